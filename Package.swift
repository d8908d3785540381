// swift-tools-version: 6.0
// Petri: small-data biomedical image classification on a laptop CPU.
//
// Layers, lowest first; a target imports only targets above it in this list:
//   CDNNL, CTurboJPEG, CPNG, CTIFF  one system-library target per C library (oneDNN, libjpeg-turbo, libpng, libtiff)
//   PetriEngine   tensors, oneDNN kernels, autograd, optimizers
//   PetriNN       layers, EfficientNet-Lite, small CNNs, checkpoint reader, backbone registry
//   PetriData     image codecs, datasets, preprocessing and augmentation transforms
//   PetriEval     metrics, calibration, triage (a leaf: imports nothing of Petri's)
//   PetriLearn    frozen features, heads, methods and their specs, auto, adaptation, the protocols, model files
//   PetriStore    the SQLite run store (GRDB)
//   PetriStudy    what each command does: dataset policy, run config and recording, studies, training,
//                 prediction, evaluation, purification
//   PetriReport   the self-contained HTML report of a study
//   PetriMPI      (with Open MPI: CMPI) the processes of a data-parallel pretraining run
//   PetriCLI      the commands: arguments parsed into typed values, then one call into PetriStudy
//   petri         the executable (main.swift)
//   petri-bench, petri-fuzz, PetriFuzz   the benchmark and the fuzzer behind `make bench` and `make fuzz`
import Foundation
import PackageDescription

// Data-parallel pretraining over MPI is built when Open MPI's headers are installed (Debian: libopenmpi-dev);
// without them Petri builds as before and `petri pretrain` runs in one process. PETRI_NO_MPI=1 leaves it out.
let mpiHeaders = ["/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h", "/usr/lib/aarch64-linux-gnu/openmpi/include/mpi.h",
                  "/usr/include/openmpi/mpi.h", "/opt/homebrew/include/mpi.h", "/usr/local/include/mpi.h"]
let withMPI = ProcessInfo.processInfo.environment["PETRI_NO_MPI"] == nil
    && mpiHeaders.contains { FileManager.default.fileExists(atPath: $0) }
let mpiTargets: [Target] = withMPI ? [
    .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"]), .brew(["open-mpi"])]),
    .target(name: "PetriMPI", dependencies: ["CMPI", "PetriLearn"]),
] : []

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
        .library(name: "PetriStudy", targets: ["PetriStudy"]),
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
        .target(name: "PetriStore", dependencies: ["PetriLearn", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(name: "PetriStudy", dependencies: ["PetriEngine", "PetriNN", "PetriData", "PetriEval", "PetriLearn", "PetriStore"]),
        .target(name: "PetriReport", dependencies: ["PetriEngine", "PetriData", "PetriEval", "PetriLearn", "PetriStudy"]),
        .target(
            name: "PetriCLI",
            dependencies: [
                "PetriEngine", "PetriNN", "PetriData", "PetriLearn", "PetriEval", "PetriStore", "PetriStudy", "PetriReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + (withMPI ? ["PetriMPI"] : [])),
        .executableTarget(name: "petri", dependencies: ["PetriCLI"]),
        .executableTarget(name: "petri-bench", dependencies: ["PetriEngine", "PetriNN", "PetriData", "PetriLearn"]),
        .target(name: "PetriFuzz", dependencies: ["PetriEngine", "PetriNN", "PetriData", "PetriLearn", "PetriStudy", "ZIPFoundation"]),
        .executableTarget(name: "petri-fuzz", dependencies: ["PetriFuzz"]),
        .testTarget(name: "PetriEngineTests", dependencies: ["PetriEngine"]),
        .testTarget(name: "PetriNNTests", dependencies: ["PetriNN", "PetriData"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "PetriDataTests", dependencies: ["PetriData"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PetriLearnTests", dependencies: ["PetriLearn", "PetriEval"]),
        .testTarget(name: "PetriStoreTests", dependencies: ["PetriStore", "PetriLearn"]),
        .testTarget(name: "PetriReportTests", dependencies: ["PetriReport", "PetriStudy"]),
        .testTarget(name: "PetriFuzzTests", dependencies: ["PetriFuzz"]),
        .testTarget(name: "PetriStudyTests", dependencies: ["PetriStudy", "PetriCLI", "PetriLearn", "PetriData", "PetriStore"]),
    ] + mpiTargets,
    swiftLanguageModes: [.v5]
)
