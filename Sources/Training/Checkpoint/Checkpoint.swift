import CShims
import Compute
import Foundation
import Models
import WeightSync

/// A training checkpoint as a Hugging Face model directory that transformers loads as it is —
/// `config.json`, `model.safetensors` (f32; a tied embedding stored once, as HF saves it) and the
/// tokenizer files of the source model — plus the optimizer beside it: `optimizer.safetensors`
/// (`exp_avg.<name>` and `exp_avg_sq.<name>`, torch's names for m and v) and `trainer_state.json`.
///
/// Saving is atomic: everything is written into a temporary sibling directory and fsynced, then
/// swapped into place with one rename (`renameat2(RENAME_EXCHANGE)` when a checkpoint is already there),
/// so a failed or interrupted save leaves the previous checkpoint intact.
public enum Checkpoint {
    /// Files of the source model copied into every checkpoint when present.
    public static let copiedFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                     "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model"]

    /// Checks that `directory` can receive a checkpoint (before training starts, so a bad `--out`
    /// fails at once): its parent is a writable directory (made when missing), and `directory` is
    /// absent, empty, or an earlier checkpoint.
    public static func checkWritable(_ directory: String) throws {
        let parent = parentDirectory(of: directory)
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("cannot write the checkpoint \(directory): cannot create \(parent)")
        }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw TrainingError("cannot write the checkpoint \(directory): \(parent) is not writable")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw TrainingError("cannot write the checkpoint \(directory): it is a file") }
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            guard contents.isEmpty || contents.contains(TrainerState.fileName) else {
                throw TrainingError("cannot write the checkpoint \(directory): it exists and is not a training checkpoint; refusing to replace it")
            }
        }
    }

    /// Writes a checkpoint of `weights` (host f32 tensors, by name, in layout order), the optimizer's
    /// moments (host flat f32 buffers of `layout`) and `state` into `directory`, copying the
    /// configuration and tokenizer files of `modelDirectory`.
    public static func save(to directory: String, modelDirectory: String, layout: WeightLayout,
                            weights: Tensor, m: Tensor, v: Tensor, state: TrainerState) throws {
        try checkWritable(directory)
        let parent = parentDirectory(of: directory)
        let prefix = "." + (directory as NSString).lastPathComponent + ".tmp-"
        removeAbandonedSaves(in: parent, prefix: prefix)
        let temporary = parent + "/" + prefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(temporary, 0o755) == 0 else {
            throw TrainingError("cannot write the checkpoint \(directory): cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        do {
            func views(_ flat: Tensor, prefix: String) -> [(name: String, tensor: Tensor)] {
                layout.entries.map { e in
                    (prefix + e.name, Tensor(memory: flat.memory!, byteOffset: flat.byteOffset + e.offset, dtype: .f32, shape: e.shape))
                }
            }
            do {
                try SafeTensorsWriter.write(views(weights, prefix: ""), metadata: ["format": "pt"], to: temporary + "/model.safetensors")
                try SafeTensorsWriter.write(views(m, prefix: "exp_avg.") + views(v, prefix: "exp_avg_sq."),
                                            metadata: ["step": String(state.step)], to: temporary + "/optimizer.safetensors")
            } catch {
                throw TrainingError("cannot write the checkpoint \(directory): \(error.message)")
            }
            for file in copiedFiles {
                let source = modelDirectory + "/" + file
                guard let data = FileManager.default.contents(atPath: source) else { continue }
                try writeFile(temporary + "/" + file, data, checkpoint: directory)
            }
            try writeFile(temporary + "/" + TrainerState.fileName, try state.encoded(), checkpoint: directory)
            try syncDirectory(temporary)
            try swapIntoPlace(temporary, directory)
            try syncDirectory(parent)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// The checkpoint's state after checking it belongs to `config`'s model.
    public static func state(of directory: String, for config: ModelConfig) throws -> TrainerState {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainingError("--resume \(directory): no such checkpoint directory")
        }
        let state = try TrainerState.load(directory: directory)
        if let why = ModelFingerprint(config: config).mismatch(state.model) {
            throw TrainingError("--resume \(directory) is a checkpoint of another model: \(why)")
        }
        return state
    }

    /// Reads the optimizer's moments of `directory` as flat host buffers of `layout`.
    public static func loadMoments(from directory: String, layout: WeightLayout) throws -> (m: Tensor, v: Tensor) {
        let path = directory + "/optimizer.safetensors"
        do {
            let file = try SafeTensorsFile(path: path)
            let m = try Tensor.zeros([layout.totalBytes / 4]), v = try Tensor.zeros([layout.totalBytes / 4])
            for e in layout.entries {
                for (prefix, flat) in [("exp_avg.", m), ("exp_avg_sq.", v)] {
                    let t = try file.tensor(prefix + e.name)
                    guard t.dtype == .f32, t.shape == e.shape else {
                        throw TrainingError("\(path): \(prefix + e.name) is \(t.dtype.rawValue) \(t.shape); expected F32 \(e.shape)")
                    }
                    (flat.rawPointer + e.offset).copyMemory(from: t.rawPointer, byteCount: e.byteCount)
                }
            }
            return (m, v)
        } catch let error as SafeTensorsError {
            throw TrainingError("cannot read the optimizer state \(path): \(error.message)")
        }
    }

    /// Removes the temporary directories of saves whose process died mid-save (killed, or lost power):
    /// `<prefix><pid>-<random>` where no process `pid` runs any more.
    static func removeAbandonedSaves(in parent: String, prefix: String) {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count).split(separator: "-").first ?? ""), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: parent + "/" + entry) }
        }
    }

    static func parentDirectory(of directory: String) -> String {
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        return url.deletingLastPathComponent().path
    }

    private static func writeFile(_ path: String, _ data: Data, checkpoint: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrainingError("cannot write the checkpoint \(checkpoint): cannot create \(path)") }
        defer { close(fd) }
        let ok = data.withUnsafeBytes { raw -> Bool in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
        guard ok, fsync(fd) == 0 else {
            throw TrainingError("cannot write the checkpoint \(checkpoint): writing \(path) failed: \(String(cString: strerror(errno)))")
        }
    }

    private static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = fsync(fd)
    }

    /// Puts `temporary` at `directory`: an atomic exchange when a checkpoint is already there (then the
    /// old one, now at `temporary`, is removed), a plain rename otherwise.
    private static func swapIntoPlace(_ temporary: String, _ directory: String) throws {
        if rename(temporary, directory) == 0 { return }
        // rename onto a non-empty directory fails (ENOTEMPTY/EEXIST): exchange the two instead.
        guard errno == ENOTEMPTY || errno == EEXIST else {
            throw TrainingError("cannot write the checkpoint \(directory): rename failed: \(String(cString: strerror(errno)))")
        }
        guard cshim_rename_exchange(temporary, directory) == 0 else {
            throw TrainingError("cannot write the checkpoint \(directory): exchange failed: \(String(cString: strerror(errno)))")
        }
        try? FileManager.default.removeItem(atPath: temporary)
    }
}

#if canImport(Glibc)
import Glibc
#endif
