// swift-tools-version: 6.0
// Petri: small-data biomedical image classification on a laptop CPU.
//
// Layers (a lower layer never imports a higher one):
//   C libraries (CDNNL, CTurboJPEG, CPNG, CTIFF)
//   → PetriEngine   tensors, oneDNN kernels, autograd, optimizers
//   → PetriNN       modules, EfficientNet-Lite, checkpoint reader, model registry
//   → PetriData     image decoding, preprocessing, datasets
//   → PetriLearn    heads (logistic regression, ...), feature extraction and caching
//   → PetriEval     metrics
//   → PetriReport   the self-contained HTML report
//   → PetriStore    the SQLite run store (GRDB): every run, its config, results and predictions
//   → petri         the command-line tool (no logic of its own)
import PackageDescription

let package = Package(
    name: "Petri",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "petri", targets: ["petri"]),
        .library(name: "PetriEngine", targets: ["PetriEngine"]),
        .library(name: "PetriNN", targets: ["PetriNN"]),
        .library(name: "PetriData", targets: ["PetriData"]),
        .library(name: "PetriLearn", targets: ["PetriLearn"]),
        .library(name: "PetriEval", targets: ["PetriEval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CTIFF", path: "Sources/CTIFF"),
        .target(name: "PetriEngine", dependencies: ["CDNNL"]),
        .target(name: "PetriNN", dependencies: ["PetriEngine", "ZIPFoundation"]),
        .target(name: "PetriData", dependencies: ["PetriEngine", "PetriNN", "CTurboJPEG", "CPNG", "CTIFF", "ZIPFoundation"]),
        .target(name: "PetriEval", dependencies: []),
        .target(name: "PetriLearn", dependencies: ["PetriEngine", "PetriNN", "PetriData", "PetriEval"]),
        .target(name: "PetriReport", dependencies: ["PetriEngine", "PetriData", "PetriLearn", "PetriEval"]),
        .target(name: "PetriStore", dependencies: ["PetriLearn", .product(name: "GRDB", package: "GRDB.swift")]),
        .executableTarget(
            name: "petri",
            dependencies: [
                "PetriEngine", "PetriNN", "PetriData", "PetriLearn", "PetriEval", "PetriReport", "PetriStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "petri-bench", dependencies: ["PetriEngine", "PetriNN", "PetriData", "PetriLearn"]),
        .testTarget(name: "PetriEngineTests", dependencies: ["PetriEngine"]),
        .testTarget(name: "PetriNNTests", dependencies: ["PetriNN", "PetriData"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "PetriDataTests", dependencies: ["PetriData"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PetriLearnTests", dependencies: ["PetriLearn", "PetriEval"]),
        .testTarget(name: "PetriStoreTests", dependencies: ["PetriStore", "PetriLearn"]),
        .testTarget(name: "PetriReportTests", dependencies: ["PetriReport"]),
    ],
    swiftLanguageModes: [.v5]
)
