import Compute
import Foundation

/// A user-facing CLI error: printed as one line by ArgumentParser, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum CLIParse {
    /// "1,2,3" → [1, 2, 3]; anything else is a clear error.
    static func ids(_ list: String) throws -> [Int32] {
        let parts = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, !list.isEmpty else { throw CLIError("no token ids given") }
        return try parts.map { p in
            // Parsed wide first, so that an id past 32 bits is reported as written, not clamped.
            if let wide = Int(p) {
                guard wide >= 0, let v = Int32(exactly: wide) else {
                    throw CLIError("token id \(wide) is out of range (ids are 0...\(Int32.max))")
                }
                return v
            }
            let digits = p.hasPrefix("-") ? p.dropFirst() : Substring(p)
            if !digits.isEmpty && digits.allSatisfy({ ("0"..."9").contains($0) }) {
                throw CLIError("token id \(p) is out of range (ids are 0...\(Int32.max))")
            }
            throw CLIError("'\(p)' is not a token id (a non-negative integer)")
        }
    }

    /// Swift repairs invalid UTF-8 in arguments silently; text prompts must be refused instead.
    static func requireUTF8Arguments() throws {
        for i in 1..<Int(CommandLine.argc) {
            guard let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) != nil else {
                throw CLIError("argument \(i) is not valid UTF-8 text")
            }
        }
    }

    static func dtype(_ name: String) throws -> DType {
        guard let t = DType(name: name), t.isFloatingPoint else { throw CLIError("unknown dtype '\(name)' (use f32, bf16 or f16)") }
        return t
    }

    /// A trainer's precision flag: `f32`, or `bf16-mixed` (GPUs: f32 master weights and AdamW, bf16
    /// matmuls); `auto` (nil) is bf16-mixed on CUDA and f32 on the CPU, which trains in f32 only.
    /// Returns whether the mixed recipe is on.
    static func mixedPrecision(_ name: String?, device: String) throws -> Bool {
        switch name ?? "auto" {
        case "auto": return device == "cuda"
        case "f32": return false
        case "bf16-mixed":
            guard device == "cuda" else { throw CLIError("bf16-mixed training runs on GPUs (--device cuda); the CPU trains in f32") }
            return true
        case let other: throw CLIError("unknown trainer precision '\(other)' (use f32, bf16-mixed or auto)")
        }
    }

    /// An engine's weight dtype flag; `auto` (nil) is bf16 on CUDA (as vLLM serves) and f32 on the CPU.
    static func engineDType(_ name: String?, device: String) throws -> DType {
        guard let name, name != "auto" else { return device == "cuda" ? .bf16 : .f32 }
        return try dtype(name)
    }
}

enum CLIOutput {
    static func printJSON(_ object: Any) throws {
        // JSONSerialization's errors are NSCocoaErrorDomain codes; the usual cause is a NaN or an
        // infinity, which JSON cannot hold.
        guard JSONSerialization.isValidJSONObject(object), !containsNonFinite(object) else {
            throw CLIError("cannot print the result as JSON: it holds a value JSON cannot represent (NaN or infinity)")
        }
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        } catch {
            throw CLIError("cannot print the result as JSON: \((error as NSError).localizedDescription)")
        }
        print(String(decoding: data, as: UTF8.self))
    }

    private static func containsNonFinite(_ value: Any) -> Bool {
        switch value {
        case let d as Double: !d.isFinite
        case let f as Float: !f.isFinite
        case let array as [Any]: array.contains(where: containsNonFinite)
        case let object as [String: Any]: object.values.contains(where: containsNonFinite)
        default: false
        }
    }
}

/// Chooses the compute backend for `--device`: `cpu`, `cuda` (GPU 0) or `cuda:N`.
enum Backends {
    /// `memoryUtilization` is the share of the GPU's memory the CUDA backend may allocate.
    static func make(device: String, memoryUtilization: Double = 0.9) throws -> any ComputeBackend {
        switch device {
        case "cpu":
            try CPUFeatures.check()
            return CPUBackend()
        case _ where device == "cuda" || device.hasPrefix("cuda:"):
            let ordinalText = device == "cuda" ? "0" : String(device.dropFirst("cuda:".count))
            guard let ordinal = Int(ordinalText), ordinal >= 0 else {
                throw CLIError("unknown device '\(device)' (use cpu, cuda or cuda:N)")
            }
            if let reason = CUDA.unavailableReason {
                let prefix = "CUDA is not available"
                throw CLIError(reason.hasPrefix(prefix) ? reason : "\(prefix): \(reason)")
            }
            let gpu = try CUDA.load().device(ordinal)
            let backend = try CUDABackend(device: gpu, memoryUtilization: memoryUtilization)
            // Generation and training allocate the same shapes step after step: reuse device blocks.
            backend.cachesAllocations = true
            return backend
        default:
            throw CLIError("unknown device '\(device)' (use cpu, cuda or cuda:N)")
        }
    }
}
