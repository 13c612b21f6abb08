// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

// Numeric modules are optimised in every configuration: `swift run colocate demo` and `swift test` build
// debug, and an unoptimised SIMD kernel is ~100x slower. On x86-64 the kernels target x86-64-v3
// (AVX2 + FMA + F16C; every x86 server of the last decade); `Compute.CPUFeatures` checks it at start.
#if arch(x86_64)
let vectorISA = ["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"]
#else
let vectorISA: [String] = []
#endif
let fast: [SwiftSetting] = strict + [
    .unsafeFlags(["-O"] + vectorISA, .when(configuration: .debug)),
    .unsafeFlags(["-Ounchecked"] + vectorISA, .when(configuration: .release)),
]

let package = Package(
    name: "colocate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "colocate", targets: ["colocate"]),
        .library(name: "Colocate", targets: ["Compute", "Models", "Cluster", "Collectives", "WeightSync", "Engine", "Training", "RL"]),
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
        .target(name: "RL", dependencies: ["Compute", "Models", "Cluster", "WeightSync", "Engine", "Training", "Collectives"], swiftSettings: strict),
        .executableTarget(
            name: "colocate",
            dependencies: [
                "Compute", "Models", "Cluster", "Collectives", "WeightSync", "Engine", "Training", "RL", "CShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict),
        .testTarget(name: "ComputeTests", dependencies: ["Compute"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Compute"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Compute"]),
        .testTarget(name: "CollectivesTests", dependencies: ["Collectives", "Compute"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Compute", "WeightSync", "Collectives", "Cluster"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Training", "WeightSync", "Cluster", "Models", "Compute"]),
        .testTarget(name: "RLTests", dependencies: ["RL", "Training", "Engine", "Cluster", "Models", "Compute"]),
        // System tests: the built binary, and the library driving real worker processes of it.
        .testTarget(name: "CLITests", dependencies: ["colocate", "Engine", "Training", "RL", "Cluster", "Models", "WeightSync", "Compute"]),
    ],
    swiftLanguageModes: [.v6]
)
