import ArgumentParser
import Foundation
import PetriData
import PetriLearn
import PetriStudy

/// How a command reads its labelled images (`DatasetPolicy`).
struct DatasetOptions: ParsableArguments {
    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Drop classes with fewer images than this (with a warning).")
    var minClassSize = 10

    @Option(help: "Use at most this many images per class (a seeded, documented draw; see --draw-seed).")
    var maxPerClass: Int?

    @Option(help: "Seed of the --max-per-class draw.")
    var drawSeed: UInt64 = 0

    @Option(help: "Preprocessing every method sees, e.g. 'reinhard' (stain normalisation), 'grey', 'clahe' or 'macenko, centercrop(fraction=0.9)'; a saved model records it.")
    var preprocess = "none"

    func validate() throws { _ = try policy() }

    func policy() throws -> DatasetPolicy {
        guard minClassSize >= 1 else { throw ValidationError("--min-class-size must be at least 1") }
        if let m = maxPerClass, m < 1 { throw ValidationError("--max-per-class must be at least 1") }
        var p = try studyCall { try DatasetPolicy(source: data, preprocessing: preprocess) }
        p.minClassSize = minClassSize
        p.maxPerClass = maxPerClass
        p.drawSeed = drawSeed
        return p
    }
}

/// Run-store options shared by `petri curve` and `petri study`.
struct StoreOptions: ParsableArguments {
    @Option(help: "The run store (SQLite). Default: $PETRI_RUNS, else ~/.local/share/petri/runs.sqlite.")
    var runs: String?

    @Flag(help: "Continue the latest unfinished run with the same settings and data, skipping what it finished.")
    var resume = false

    @Flag(help: "Do not record this run in the run store.")
    var noStore = false

    var settings: StoreSettings { StoreSettings(path: runs, resume: resume, enabled: !noStore) }
}

/// How `evaluate` and `predict` adapt a model to another lab's images (`AdaptationSettings`).
struct AdaptationOptions: ParsableArguments {
    @Option(help: "How to adapt to the images without their labels: 'scale' (find the central crop or zoom-out at which they look most like the training images — another magnification), 'auto' (the same, then the model's heads and batch norms adapted to them too when nearly all of them are still unlike every training image), 'scale-colour' and 'auto-colour' (each scale also tried with their colour matched to the training images'), or image steps such as 'centercrop(fraction=0.5)'.")
    var adapt = "none"

    @Flag(help: "Also adapt the model's frozen-feature heads to the new images, without their labels: the hidden layer is trained to make the heads' predictions on them confident and spread over the classes (information maximisation, as in SHOT). Assumes the images cover the classes roughly evenly.")
    var adaptHeads = false

    @Flag(help: "Also adapt the model's networks trained from scratch to the new images, without their labels: each batch norm's statistics are recomputed on them (AdaBN). Assumes the images hold the model's classes in a not too uneven mix.")
    var adaptNorm = false

    @Option(help: "Steps of head adaptation (with --adapt-heads).")
    var adaptSteps = 60

    @Option(help: "Weight of the class-diversity term of head adaptation (default 0.3; 1 forces an even class mix).")
    var adaptDiversity: Float?

    @Option(help: "Weight of the pseudo-label term of head adaptation (default 0.3; 0 leaves it out).")
    var adaptPseudoLabels: Float?

    @Option(help: "The class mix head and batch-norm adaptation assume: even, or estimated from the model's predictions on the new images (EM, Saerens et al. 2002), for a skewed mix such as a clinic's stream.")
    var adaptClassMix = "even"

    func validate() throws { _ = try settings() }

    func settings() throws -> AdaptationSettings {
        try studyCall {
            try AdaptationSettings(adapt: adapt, heads: adaptHeads, norm: adaptNorm, steps: adaptSteps, diversity: adaptDiversity,
                                   pseudoLabels: adaptPseudoLabels, classMix: adaptClassMix)
        }
    }
}

/// Readers of list arguments.
enum Arguments {
    static func sizes(_ text: String) throws -> [Int?] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { s in
            let t = s.trimmingCharacters(in: .whitespaces)
            if t == "all" { return nil }
            guard let n = Int(t), n >= 1 else { throw ValidationError("--sizes: '\(t)' is not a positive number or 'all'") }
            return n
        }
    }

    static func seeds(_ text: String) throws -> [UInt64] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let s = UInt64($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--seeds: '\($0)' is not a seed") }
            return s
        }
    }

    static func methods(_ text: String, backbone: String) throws -> [MethodSpec] {
        try studyCall { try MethodSpec.list(text, backbone: backbone) }
    }

    /// The command line as typed, quoted where needed, for run records.
    static var commandLine: String {
        (["petri"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}
