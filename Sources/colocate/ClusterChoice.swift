import ArgumentParser
import Cluster
import Compute

/// `--cluster local|ray[:ADDRESS]`: which backend places the actors of a command.
struct ClusterChoice {
    static let help: ArgumentHelp = "Where actors run: local (this host), or ray[:ADDRESS] (a Ray cluster: `auto` by default, or HOST:PORT of its head; needs `bash python/install-ray.sh`)."

    /// nil: this host; else Ray's address.
    var rayAddress: String?

    init(parsing text: String) throws {
        if text == "local" {
            rayAddress = nil
        } else if text == "ray" {
            rayAddress = "auto"
        } else if text.hasPrefix("ray:"), text.count > 4 {
            rayAddress = String(text.dropFirst(4))
        } else {
            throw CLIError("--cluster must be local, ray or ray:ADDRESS, not '\(text)'")
        }
    }
}
