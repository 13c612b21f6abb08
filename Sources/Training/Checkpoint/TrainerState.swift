import Compute
import Foundation
import Models
import WeightSync

/// Which model a checkpoint belongs to: the architecture, the weight layout (every parameter's name and
/// shape) and a digest of the model's configuration. A run resumes only from its own model.
public struct ModelFingerprint: Sendable, Codable, Equatable {
    public var architecture: String
    /// ``WeightLayout/fingerprint`` of the f32 layout, hex.
    public var layout: String
    /// FNV-1a of the normalised config.json (``ModelConfig/encodedJSON()``, dtype left out), hex.
    public var config: String

    public init(config: ModelConfig) {
        architecture = config.architecture.rawValue
        layout = String(WeightLayout(table: ParameterTable(config: config), dtype: .f32).fingerprint, radix: 16)
        var c = config
        c.torchDtype = nil
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in c.encodedJSON() {
            hash ^= UInt64(b)
            hash &*= 0x0000_0100_0000_01b3
        }
        self.config = String(hash, radix: 16)
    }

    /// Why a checkpoint of `other` cannot continue training this model (nil: it can).
    public func mismatch(_ other: ModelFingerprint) -> String? {
        if architecture != other.architecture { return "it is a \(other.architecture) model, this run trains \(architecture)" }
        if layout != other.layout { return "its parameters (names and shapes) differ from this model's" }
        if config != other.config { return "its config.json differs from this model's" }
        return nil
    }
}

/// `trainer_state.json`: where a run stands, enough for `--resume` to continue it exactly.
public struct TrainerState: Sendable, Codable, Equatable {
    /// Optimizer steps done.
    public var step: Int
    public var schedule: LearningRateSchedule
    public var hyper: AdamWHyperparameters
    public var maxGradNorm: Float?
    /// Rows of the data consumed so far (step × batch size); the next batch starts here.
    public var dataPosition: Int
    public var batchSize: Int
    public var gradientAccumulation: Int
    /// The data order's random state: epoch e's permutation is drawn from (seed, e) (see ``BatchSampler``).
    public var shuffle: Bool
    public var seed: UInt64
    public var model: ModelFingerprint

    public init(step: Int, schedule: LearningRateSchedule, hyper: AdamWHyperparameters, maxGradNorm: Float?,
                dataPosition: Int, batchSize: Int, gradientAccumulation: Int, shuffle: Bool, seed: UInt64, model: ModelFingerprint) {
        self.step = step
        self.schedule = schedule
        self.hyper = hyper
        self.maxGradNorm = maxGradNorm
        self.dataPosition = dataPosition
        self.batchSize = batchSize
        self.gradientAccumulation = gradientAccumulation
        self.shuffle = shuffle
        self.seed = seed
        self.model = model
    }

    public static let fileName = "trainer_state.json"

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Reads `directory/trainer_state.json`, naming the directory when it is missing or malformed.
    public static func load(directory: String) throws -> TrainerState {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError("\(directory) is not a training checkpoint (it has no \(fileName))")
        }
        do {
            return try JSONDecoder().decode(TrainerState.self, from: data)
        } catch {
            throw TrainingError("\(path) is not a valid trainer state: \(error)")
        }
    }
}
