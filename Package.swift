// swift-tools-version: 6.1
import PackageDescription

// colocate runs on Linux only: it is built on memfd, SCM_RIGHTS, SO_PEERCRED, prctl(PR_SET_PDEATHSIG),
// futexes and the CUDA driver. Say so here rather than fail deep inside a build.
#if !os(Linux)
#error("colocate builds and runs on Linux only (memfd, SCM_RIGHTS, SO_PEERCRED, prctl, futex, CUDA)")
#endif

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

// Numeric modules are optimised in every configuration: `swift run colocate demo` and `swift test` build
// debug, and an unoptimised SIMD kernel is ~100x slower. Release keeps `-O`, never `-Ounchecked`: bounds
// and overflow checks stay on, above all where data arrives from another process; a hot loop that
// needs it drops them locally (`&+`, unsafe buffer pointers). On x86-64 the kernels target x86-64-v3
// (AVX2 + FMA + F16C; every x86 server of the last decade); `Compute.CPUFeatures` checks it at start.
#if arch(x86_64)
let vectorISA = ["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"]
#else
let vectorISA: [String] = []
#endif
let fast: [SwiftSetting] = strict + [.unsafeFlags(["-O"] + vectorISA)]

let package = Package(
    name: "colocate",
    products: [
        .executable(name: "colocate", targets: ["colocate"]),
        .library(name: "Colocate", targets: ["Compute", "Models", "Cluster", "Collectives", "WeightSync", "Engine", "Training", "Colocation", "RL"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Declarations only: CUDA driver / NVRTC / cuBLASLt / NCCL types and function-pointer types.
        // Nothing is linked; the libraries are opened with dlopen at run time.
        .target(name: "CCUDA"),
        // Tiny C helpers for what Swift cannot call directly (variadic prctl, CMSG macros).
        .target(name: "CShims"),
        .target(name: "Compute", dependencies: ["CCUDA", "CShims"], swiftSettings: fast),
        .target(name: "Models", dependencies: ["Compute"], swiftSettings: fast),
        .target(name: "Cluster", dependencies: ["Compute", "CShims"], swiftSettings: strict),
        // All-reduce among ranks: shared memory between the processes of virtual CPU devices, NCCL on GPUs.
        .target(name: "Collectives", dependencies: ["Compute", "CCUDA", "CShims"], swiftSettings: fast),
        .target(name: "WeightSync", dependencies: ["Compute", "Models", "CShims"], swiftSettings: strict),
        .target(name: "Training", dependencies: ["Compute", "Models", "WeightSync", "Cluster", "Collectives", "CShims"], swiftSettings: strict),
        .target(name: "Engine", dependencies: ["Compute", "Models", "WeightSync", "Cluster", "Collectives", "CShims"], swiftSettings: fast),
        // The GRPO loop: tasks and rewards, advantages, the policy loss, metrics, engines and trainers in step.
        .target(name: "RL", dependencies: ["Compute", "Models", "Cluster", "Colocation", "WeightSync", "Engine", "Training", "Collectives"], swiftSettings: strict),
        // The seed's trainer + engine layout over devices; above Cluster, which knows nothing of either.
        .target(name: "Colocation", dependencies: ["Cluster", "Compute"], swiftSettings: strict),
        // `cuda-check` and the actors tests and benchmarks spawn (not in the production worker registry).
        .target(name: "Diagnostics", dependencies: ["Compute", "Models", "Cluster", "Collectives", "Training"], swiftSettings: strict),
        // `colocate bench …`: measurements, beside the CLI and never below it.
        .target(
            name: "Benchmarks",
            dependencies: [
                "Compute", "Models", "Cluster", "Collectives", "WeightSync", "Engine", "Training", "Colocation", "Diagnostics",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: fast),
        // Thin commands: parse flags, call into the modules.
        .executableTarget(
            name: "colocate",
            dependencies: [
                "Compute", "Models", "Cluster", "Collectives", "WeightSync", "Engine", "Training", "RL", "Colocation", "Diagnostics", "Benchmarks",
                "CShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .testTarget(name: "ComputeTests", dependencies: ["Compute", "CShims"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Compute"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Compute", "Diagnostics", "Engine", "Models", "RL"]),
        .testTarget(name: "ColocationTests", dependencies: ["Colocation", "Cluster", "Compute"]),
        .testTarget(name: "CollectivesTests", dependencies: ["Collectives", "Compute"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Compute", "WeightSync", "Collectives", "Cluster"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Training", "WeightSync", "Cluster", "Models", "Compute"]),
        .testTarget(name: "RLTests", dependencies: ["RL", "Training", "Engine", "Cluster", "Models", "Compute"]),
        // System tests: the built binary, and the library driving real worker processes of it.
        .testTarget(name: "CLITests", dependencies: ["colocate", "Engine", "Training", "RL", "Cluster", "Models", "WeightSync", "Compute"]),
    ],
    swiftLanguageModes: [.v6]
)
