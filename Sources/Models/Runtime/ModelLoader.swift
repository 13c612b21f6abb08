import Compute

/// Reads a Hugging Face model directory into one tensor-parallel rank's weights.
public enum ModelLoader {
    /// Loads `config.json` and the weights of `directory`, keeping rank `rank`'s shard of each parameter
    /// in `dtype`. `allocate(name, shape, dtype)` makes the destination tensors (on a device, inside a budget); by default
    /// they are plain host tensors. Every parameter is checked for presence and full shape first.
    ///
    /// A destination in host memory is filled in place. One on an accelerator (CUDA) is filled through
    /// `backend`: each shard is staged in host memory, uploaded, and the staging dropped before the
    /// next, so host memory holds one shard at a time (plus the memory-mapped checkpoint).
    public static func load(
        directory: String, dtype: DType = .f32, rank: Int = 0, worldSize: Int = 1,
        backend: (any ComputeBackend)? = nil,
        allocate: (_ name: String, _ shape: [Int], _ dtype: DType) throws -> Tensor = { try Tensor.zeros($1, dtype: $2) }
    ) throws -> (config: ModelConfig, weights: [String: Tensor]) {
        let config = try ModelConfig.load(directory: directory)
        try ParameterTable.validate(config: config, tensorParallelSize: worldSize)
        let checkpoint = try Checkpoint(directory: directory)
        try checkLayers(config: config, checkpoint: checkpoint)
        let table = ParameterTable(config: config)
        var sources: [(ParameterSpec, String)] = []
        for spec in table.specs {
            guard let stored = storedName(for: spec.name, in: checkpoint) else {
                throw ModelError("\(directory): the checkpoint has no tensor \(spec.name)")
            }
            let info = checkpoint.info(stored)!
            guard info.shape == spec.shape else {
                throw ModelError("\(directory): tensor \(spec.name) has shape \(info.shape), config.json implies \(spec.shape)")
            }
            guard info.dtype.isFloatingPoint else {
                throw ModelError("\(directory): tensor \(spec.name) has dtype \(info.dtype), expected a float type")
            }
            sources.append((spec, stored))
        }
        var weights: [String: Tensor] = [:]
        for (spec, stored) in sources {
            let full = try checkpoint.tensor(stored)
            let shape = spec.shard.shardShape(of: spec.shape, worldSize: worldSize)
            let shard = try allocate(spec.name, shape, dtype)
            guard shard.shape == shape, shard.dtype == dtype, shard.isContiguous else {
                throw ModelError("the destination of \(spec.name) is \(shard), expected a contiguous \(dtype) tensor of shape \(shape)")
            }
            let staged = shard.memory != nil ? shard : try Tensor.zeros(shape, dtype: dtype)
            spec.shard.copyShard(from: UnsafeRawPointer(full.rawPointer), full.dtype, shape: spec.shape,
                                 to: staged.rawPointer, dtype, rank: rank, worldSize: worldSize)
            if shard.memory == nil {
                guard let backend else {
                    throw ModelError("\(spec.name) is allocated on \(shard.device), and loading there needs its backend")
                }
                try backend.upload(staged, into: shard)
            }
            weights[spec.name] = shard
        }
        return (config, weights)
    }

    /// Checks `num_hidden_layers` against the layers the checkpoint holds, before the parameter table
    /// (which lists every layer's tensors) is built or anything allocated: a config claiming ten
    /// million layers fails here at once.
    public static func checkLayers(config: ModelConfig, checkpoint: Checkpoint) throws(ModelError) {
        var stored = 0
        for name in checkpoint.names {
            for prefix in ["model.layers.", "model.decoder.layers.", "decoder.layers."] where name.hasPrefix(prefix) {
                let rest = name.dropFirst(prefix.count)
                if let index = Int(rest.prefix { $0 != "." }) { stored = max(stored, index + 1) }
            }
        }
        guard config.numLayers <= stored else {
            throw ModelError("\(checkpoint.directory): config.json has num_hidden_layers \(config.numLayers), but the checkpoint holds \(stored) layer\(stored == 1 ? "" : "s")")
        }
    }

    /// Checkpoints converted from fairseq or older transformers name OPT tensors without the `model.`
    /// prefix (`decoder.layers.0…`); accept both spellings.
    static func storedName(for name: String, in checkpoint: Checkpoint) -> String? {
        if checkpoint.info(name) != nil { return name }
        if name.hasPrefix("model.") {
            let short = String(name.dropFirst("model.".count))
            if checkpoint.info(short) != nil { return short }
        }
        return nil
    }
}
