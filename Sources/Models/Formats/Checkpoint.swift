#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Compute

/// A checkpoint that cannot be opened or written; one line naming the directory or file.
public struct CheckpointError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The weights of a Hugging Face model directory: `model.safetensors`, or shards listed by
/// `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard file}}`).
///
/// Every shard is mapped and validated when the checkpoint opens, and every tensor the index lists is
/// checked to be in its shard, so that lookups after `init` cannot fail for a listed name.
public final class Checkpoint: @unchecked Sendable {
    // Immutable after init.

    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public let directory: String
    /// The files holding the tensors (one, or the shards in file-name order).
    public let files: [SafeTensorsFile]
    /// Tensor names: shard by shard, in data order within each.
    public let names: [String]
    private let locations: [String: (file: SafeTensorsFile, info: SafeTensorInfo)]

    public init(directory: String) throws {
        self.directory = directory
        let single = directory + "/" + Self.singleFileName
        let index = directory + "/" + Self.indexFileName
        if FileIO.isRegularFile(single) {
            let file = try SafeTensorsFile(path: single)
            files = [file]
            names = file.tensorNames
            locations = Dictionary(uniqueKeysWithValues: file.allInfo.map { ($0.name, (file, $0)) })
            return
        }
        guard FileIO.isRegularFile(index) else {
            // Something that is there but not a file is named as what it is, not reported as absent.
            for path in [single, index] {
                var st = stat()
                if stat(path, &st) == 0 {
                    throw CheckpointError("\(path) is \(FileIO.kindName(st.st_mode)), not a regular file")
                }
            }
            throw CheckpointError("no \(Self.singleFileName) or \(Self.indexFileName) in \(directory)")
        }
        let weightMap = try Self.readWeightMap(index)
        var shards: [String: SafeTensorsFile] = [:]
        for shardName in Set(weightMap.map(\.shard)).sorted() {
            shards[shardName] = try SafeTensorsFile(path: directory + "/" + shardName)
        }
        var locations: [String: (file: SafeTensorsFile, info: SafeTensorInfo)] = [:]
        for (tensor, shardName) in weightMap {
            let file = shards[shardName]!
            guard let info = file.info(tensor) else {
                throw CheckpointError("\(index): tensor '\(tensor)' is listed in shard \(shardName) but that file does not hold it")
            }
            locations[tensor] = (file, info)
        }
        let files = shards.sorted { $0.key < $1.key }.map(\.value)
        self.files = files
        self.names = files.flatMap { file in file.tensorNames.filter { locations[$0]?.file === file } }
        self.locations = locations
    }

    /// Reads and checks the index: a `weight_map` object of plain file names in this directory.
    private static func readWeightMap(_ path: String) throws -> [(tensor: String, shard: String)] {
        let json: JSONValue
        do {
            json = try JSONValue.parse(try FileIO.readFile(path))
        } catch let error as JSONParseError {
            throw CheckpointError("\(path): not valid JSON: \(error)")
        }
        guard json.objectMembers != nil else { throw CheckpointError("\(path): not a JSON object") }
        guard let map = json["weight_map"]?.objectMembers else {
            throw CheckpointError("\(path): no weight_map object")
        }
        guard !map.isEmpty else { throw CheckpointError("\(path): weight_map lists no tensors") }
        return try map.map { member in
            guard let shard = member.value.stringValue else {
                throw CheckpointError("\(path): weight_map entry of '\(member.key)' is a JSON \(member.value.typeName), not a file name")
            }
            // Shards are files beside the index; anything else could read outside the checkpoint.
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw CheckpointError("\(path): weight_map entry of '\(member.key)' names '\(shard)', which is not a file in the checkpoint directory")
            }
            return (member.key, shard)
        }
    }

    public func info(_ name: String) -> SafeTensorInfo? { locations[name]?.info }

    /// The file holding tensor `name`.
    public func file(of name: String) -> SafeTensorsFile? { locations[name]?.file }

    /// Tensor `name` as a (zero-copy where aligned) view of its file's mapping.
    public func tensor(_ name: String) throws -> Tensor {
        guard let location = locations[name] else {
            throw CheckpointError("\(directory): no tensor '\(name)' in the checkpoint")
        }
        return try location.file.tensor(name)
    }

    /// Writes `tensors` as a checkpoint in `directory` (created if missing): one `model.safetensors`
    /// when they fit in `maxShardBytes` (or it is nil), else shards `model-0000i-of-0000n.safetensors`
    /// filled in order, a tensor larger than the limit alone in its shard, plus the index. A stale
    /// single file or index that would shadow what was written is removed.
    ///
    /// `metadata` goes into every file; its default marks the tensors as PyTorch's, which
    /// Hugging Face transformers requires to load a checkpoint.
    public static func write(
        tensors: [(name: String, tensor: Tensor)], to directory: String, maxShardBytes: Int? = nil,
        metadata: [String: String] = ["format": "pt"]
    ) throws {
        try FileIO.makeDirectories(directory)
        let single = directory + "/" + singleFileName
        let index = directory + "/" + indexFileName
        let total = tensors.reduce(0) { $0 + $1.tensor.byteCount }
        guard let maxShardBytes, total > maxShardBytes else {
            try SafeTensorsWriter.write(tensors, metadata: metadata, to: single)
            unlink(index)
            return
        }
        var shards: [[(name: String, tensor: Tensor)]] = [[]]
        var shardBytes = 0
        for entry in tensors {
            if shardBytes > 0 && shardBytes + entry.tensor.byteCount > maxShardBytes {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(entry)
            shardBytes += entry.tensor.byteCount
        }
        var weightMap: [(key: String, value: JSONValue)] = []
        for (i, shard) in shards.enumerated() {
            let name = "model-\(zeroPadded(i + 1))-of-\(zeroPadded(shards.count)).safetensors"
            try SafeTensorsWriter.write(shard, metadata: metadata, to: directory + "/" + name)
            weightMap += shard.map { ($0.name, .string(name)) }
        }
        weightMap.sort { $0.key < $1.key }
        let json = JSONValue.object([
            ("metadata", .object([("total_size", .int(total))])),
            ("weight_map", .object(weightMap)),
        ])
        try FileIO.writeAtomically(index, bytes: Array((json.serialized(indent: 2) + "\n").utf8))
        unlink(single)
    }

    private static func zeroPadded(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 5 - s.count)) + s
    }
}
