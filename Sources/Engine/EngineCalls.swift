import Cluster
import Compute
import Models
import WeightSync

/// Generates for a batch of tokenised prompts on one engine rank. Every rank of a tensor-parallel
/// engine receives the same call (with the same seed) and returns the same completions.
public struct GenerateTokens: RemoteCall {
    public typealias Reply = [[Completion]]
    public static let name = "engine.generate"
    public var prompts: [[Int32]]
    public var params: SamplingParams
    public init(prompts: [[Int32]], params: SamplingParams) {
        self.prompts = prompts
        self.params = params
    }
}

/// What a rank set itself up with: its device, budget breakdown and KV cache size.
public struct DescribeRank: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var rank: Int
        public var worldSize: Int
        public var device: Device
        public var pid: Int32
        public var weightBytes: Int
        public var kvCacheBlocks: Int
        public var blockSize: Int
        public var budgetBytes: Int
        public var usedBytes: Int
        public var weightDType: DType
        /// Complete weight syncs into this rank so far (pushes and pulls; 0: the loaded weights).
        public var weightVersion: Int
        /// False when a sync began and did not finish (its trainer died mid-push): the rank refuses to
        /// generate until a complete sync.
        public var weightsComplete: Bool
        /// When the rank reached each stage of its start (nil from a rank that does not say).
        public var startup: RankStartup?
        /// The process that made the shared-memory all-reduce segment this rank joined (tensor
        /// parallelism on CPU devices): the driver, or rank 0 on a host that is not the driver's.
        public var allReduceSegmentOwner: Int32?
    }
    public static let name = "engine.describe"
    public init() {}
}
