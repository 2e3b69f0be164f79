// swift-tools-version:6.0
import PackageDescription

// Kernels are only fast when Swift may use this CPU's vector units (AVX-512, FMA): by default it targets
// baseline x86-64 and turns `addingProduct` into a libm call per lane (see docs/platform.md).
let native: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "native"])]

let package = Package(
    name: "Keel",
    products: [
        .executable(name: "keel", targets: ["keel"]),
        .library(name: "KeelTrain", targets: ["KeelTrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZMA", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CBrotli", pkgConfig: "libbrotlidec", providers: [.apt(["libbrotli-dev"])]),
        // An HTML5 parser (MyHTML, Debian's libmodest-dev): web pages parsed as browsers parse them.
        .systemLibrary(name: "CMyHTML", providers: [.apt(["libmodest-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // bf16 products on AMX / AVX512-BF16; its functions name their instruction sets themselves, so the
        // library loads on any x86-64 and Keel picks the engine at run time.
        .target(name: "CBFloat16", cSettings: [.unsafeFlags(["-O2"])]),
        // AdamW's update, vectorised by clang for this CPU; no contraction keeps PyTorch's rounding order.
        .target(name: "CAdamW", cSettings: [.unsafeFlags(["-O2", "-march=native", "-ffp-contract=off", "-fno-math-errno"])]),
        // llama.cpp's block formats (Q8_0, Q4_0, Q4_1, Q4_K) and their dot products on AVX2 / AVX-VNNI / AVX512-VNNI,
        // each function naming its instruction set; no contraction, so quantized bytes equal ggml's reference.
        .target(name: "CQuant", cSettings: [.unsafeFlags(["-O2", "-ffp-contract=off", "-fno-math-errno"])]),
        .target(name: "CMappedFiles"),
        .target(name: "KeelCore", dependencies: ["CMappedFiles"], swiftSettings: native),
        .target(name: "KeelKernels", dependencies: ["KeelCore", "COpenBLAS", "CBFloat16", "CAdamW", "CQuant"], swiftSettings: native),
        .target(name: "KeelModel", dependencies: ["KeelCore", "KeelKernels", "KeelComm"], swiftSettings: native),
        .target(name: "KeelData", dependencies: ["KeelCore", "CZlib", "CZstd"], swiftSettings: native),
        // Web data: WARC reading, HTTP responses, character sets, main-content extraction, filters, deduplication.
        .target(name: "CProcessControl"),
        .target(name: "KeelWeb", dependencies: ["KeelCore", "KeelData", "CZlib", "CLZMA", "CBrotli", "CZstd", "CMyHTML", "CProcessControl"], swiftSettings: native),
        // Communication sits below the model (so parallel layers may call collectives); strategies above it.
        .target(name: "KeelComm", dependencies: ["KeelCore", "CMPI"], swiftSettings: native),
        .target(name: "KeelParallel", dependencies: ["KeelCore", "KeelKernels", "KeelModel", "KeelComm"], swiftSettings: native),
        .target(name: "KeelCheckpoint", dependencies: ["KeelCore", "KeelModel", "KeelComm", "CZstd"], swiftSettings: native),
        // Generation: a KV-cache decoder over a trained model (fp32 or llama.cpp's quantized formats), sampling.
        .target(name: "KeelInference", dependencies: ["KeelCore", "KeelKernels", "KeelModel"], swiftSettings: native),
        // Charts as standalone SVG (the planner's sweeps, run reports).
        .target(name: "KeelPlot", swiftSettings: native),
        // The scale planner: an analytic model of memory and step time for tp × pp × dp layouts on a cluster.
        .target(name: "KeelPlan", dependencies: ["KeelCore", "KeelModel", "KeelParallel"], swiftSettings: native),
        .target(
            name: "KeelTrain",
            dependencies: ["KeelCore", "KeelKernels", "KeelModel", "KeelData", "KeelCheckpoint", "KeelComm", "KeelParallel", "KeelInference", "TOMLKit"],
            swiftSettings: native),
        // Run reports: a run directory's metrics, config and hardware as one HTML page of charts.
        .target(name: "KeelReport", dependencies: ["KeelCore", "KeelPlot", "KeelTrain"], swiftSettings: native),
        .executableTarget(
            name: "keel",
            dependencies: ["KeelTrain", "KeelWeb", "KeelInference", "KeelPlan", "KeelPlot", "KeelReport", "CProcessControl",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: native),
        .testTarget(name: "KeelKernelsTests", dependencies: ["KeelKernels", "KeelComm"], swiftSettings: native),
        .testTarget(name: "KeelDataTests", dependencies: ["KeelData", "KeelCore"], swiftSettings: native),
        .testTarget(name: "KeelModelTests", dependencies: ["KeelModel", "KeelCheckpoint", "KeelKernels", "KeelComm", "KeelData", "KeelInference"], swiftSettings: native),
        .testTarget(name: "KeelCommTests", dependencies: ["KeelComm", "KeelCore"], swiftSettings: native),
        .testTarget(name: "KeelParallelTests", dependencies: ["KeelParallel", "KeelComm", "KeelModel", "KeelCore"], swiftSettings: native),
        .testTarget(name: "KeelTrainTests", dependencies: ["KeelTrain", "KeelData"], swiftSettings: native),
        .testTarget(name: "KeelInferenceTests", dependencies: ["KeelInference", "KeelModel", "KeelKernels", "KeelCore"], swiftSettings: native),
        .testTarget(name: "KeelPlanTests", dependencies: ["KeelPlan", "KeelPlot", "KeelParallel", "KeelModel"], swiftSettings: native),
        .testTarget(name: "KeelReportTests", dependencies: ["KeelReport", "KeelTrain", "KeelCore"], swiftSettings: native),
        .testTarget(name: "KeelWebTests", dependencies: ["KeelWeb", "KeelCore", "KeelData", "CZlib"], swiftSettings: native),
    ]
)
