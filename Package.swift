// swift-tools-version:6.0
import PackageDescription

// Dependencies point down only: kernels <- KV <- attention <- model <- engine <- CLI/server.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]
// The hot loops live in CBanyanKernels (C intrinsics, built -O3); the Swift kernel targets hold the
// portable paths and dispatch and need no unchecked build flags.
let kernelSettings: [SwiftSetting] = strict

let package = Package(
    name: "Banyan",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "banyan", targets: ["banyan"]),
        .library(name: "BanyanEngine", targets: ["BanyanEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // -O3 measurably matters for the intrinsics kernels: prefill 110-128 GFLOP/s with it, ~50
        // with SwiftPM's default C optimisation for release (bench model, docs/BENCHMARKS.md).
        .target(name: "CBanyanKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "BanyanKernels", dependencies: ["CBanyanKernels"], swiftSettings: kernelSettings),
        .target(name: "BanyanTokenizer", swiftSettings: strict),
        .target(name: "BanyanKV", dependencies: ["BanyanKernels"], swiftSettings: strict),
        .target(name: "BanyanAttention", dependencies: ["BanyanKernels", "BanyanKV"], swiftSettings: kernelSettings),
        .target(name: "BanyanModel", dependencies: ["BanyanKernels", "BanyanKV", "BanyanAttention"],
                resources: [.copy("Builtin")], swiftSettings: strict),
        .target(name: "BanyanEngine", dependencies: ["BanyanModel", "BanyanKV", "BanyanAttention", "BanyanTokenizer",
                                                     .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                swiftSettings: strict),
        .target(name: "BanyanBench", dependencies: ["BanyanEngine", "BanyanModel", "BanyanAttention", "BanyanKV", "BanyanKernels"],
                swiftSettings: strict),
        // OpenAI request bodies -> engine requests, chat templates, choice formatting: shared by batch and serve.
        .target(name: "BanyanOpenAI", dependencies: ["BanyanEngine", "BanyanTokenizer", "BanyanModel", "BanyanKernels", "BanyanKV"],
                swiftSettings: strict),
        .target(name: "BanyanBatch", dependencies: ["BanyanOpenAI", "BanyanEngine", "BanyanTokenizer", "BanyanModel", "BanyanKernels", "BanyanKV"],
                swiftSettings: strict),
        .target(name: "BanyanServer", dependencies: [
            "BanyanOpenAI", "BanyanEngine", "BanyanModel", "BanyanKernels", "BanyanKV",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        .executableTarget(name: "banyan", dependencies: [
            "BanyanEngine", "BanyanTokenizer", "BanyanBench", "BanyanBatch", "BanyanServer",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        .target(name: "BanyanTestSupport", dependencies: ["BanyanKernels"], swiftSettings: strict),

        .testTarget(name: "BanyanKernelsTests", dependencies: ["BanyanKernels", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanTokenizerTests", dependencies: ["BanyanTokenizer", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanKVTests", dependencies: ["BanyanKV", "BanyanKernels", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanAttentionTests", dependencies: ["BanyanAttention", "BanyanKV", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanModelTests", dependencies: ["BanyanModel", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanEngineTests", dependencies: ["BanyanEngine", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanBenchTests", dependencies: ["BanyanBench", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanBatchTests", dependencies: ["BanyanBatch", "BanyanEngine", "BanyanTokenizer", "BanyanModel", "BanyanKernels", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanOpenAITests", dependencies: ["BanyanOpenAI", "BanyanEngine", "BanyanModel", "BanyanKernels", "BanyanTestSupport"], swiftSettings: strict),
        .testTarget(name: "BanyanServerTests", dependencies: [
            "BanyanServer", "BanyanOpenAI", "BanyanEngine", "BanyanTokenizer", "BanyanModel", "BanyanKernels", "BanyanTestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ], swiftSettings: strict),
        .testTarget(name: "BanyanCLITests", dependencies: ["BanyanTestSupport"], swiftSettings: strict),
    ]
)
