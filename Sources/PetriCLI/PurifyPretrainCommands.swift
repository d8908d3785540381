import ArgumentParser
import Foundation
import PetriLearn
import PetriNN
import PetriStudy
#if canImport(PetriMPI)
import PetriMPI
#endif

struct PurifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purify",
        abstract: "List images to check before trusting a dataset: likely label errors, outliers and duplicates.",
        discussion: """
            Likely label errors: every image is predicted by an MLP on frozen ImageNet features (Lite0+1+2, \
            stage 6 + head, 8 dihedral views) trained on the other folds of a stratified k-fold; an image is \
            flagged when the model is confident — above that class's typical out-of-fold confidence — in \
            another class (confident learning, Northcutt et al. 2021). Outliers: images whose features are far \
            from their nearest neighbours (more than --outlier-cutoff robust standard deviations above the \
            median). Duplicates: identical images under different labels and near-identical pairs across \
            classes (as `petri inspect`). Nothing is changed or deleted: a person decides.

            Examples:
              petri purify Samples/bccd-wbc-mini --out issues.csv
              petri purify blood-smears/ --crop 0.4 --folds 5
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Folds of the cross-validation that predicts every image.")
    var folds = 5

    @Option(help: "Central crop (fraction of the shorter side) for the features; 0.4 suits cells centred in a wide field.")
    var crop = 1.0

    @Option(help: "Robust standard deviations above the median nearest-neighbour distance that make an outlier.")
    var outlierCutoff = 3.5

    @Option(help: "Seed of the folds and of the MLP.")
    var seed: UInt64 = 0

    @Option(help: "How many of each finding to print.")
    var show = 15

    @Option(help: "Write every finding as CSV (kind, path, label, suggested, p_label, p_suggested, score).")
    var out: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func purify() throws -> Purify {
        var p = Purify(dataset: try dataset.policy())
        p.folds = folds
        p.crop = crop
        p.outlierCutoff = outlierCutoff
        p.seed = seed
        p.show = show
        try studyCall { try p.validate() }
        return p
    }

    func validate() throws { _ = try purify() }

    func run() throws {
        let started = Date()
        let reporter = TerminalReporter(quiet: quiet)
        let (lines, csv) = try studyCall { try purify().run(reporter: reporter) }
        lines.forEach { print($0) }
        if let out {
            try write(csv, to: out)
            print("wrote \(out)")
        }
        reporter.note(String(format: "time: %.0f s", Date().timeIntervalSince(started)))
    }
}

/// `petri pretrain`: a domain backbone ("CellNet") from pooled labelled sets.
struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "Train a domain backbone (a \"CellNet\") on pooled labelled image sets; use it like any backbone.",
        discussion: """
            Pools the classes of every DATA (named SET/CLASS, at most --per-class images each, a seeded draw), \
            starts from an ImageNet EfficientNet-Lite and trains it to tell them all apart: the layers above \
            --after (default: stages 4–7 and the head, on trunk activations of --views augmented views computed \
            once), with the fine-tuning recipe of `petri curve --method partial`. The network without its \
            classifier is written to the weights folder as NAME.petri-backbone, and NAME then works wherever a \
            backbone does. Compare it with ImageNet on the same splits, on a set it was not trained on.

            Under `mpirun -np R` (Petri built with Open MPI) the R processes train together: each computes its \
            slice of every batch and the gradients are summed (MPI_Allreduce); rank 0 writes the backbone. The \
            state is saved every 50 steps beside the backbone (NAME.petri-backbone.resume): the same command \
            after a killed job resumes from it.

            Example:
              petri pretrain blood-smears/ malaria-cells/ --name cellnet-mine
              petri study my-cells/ --methods mlp:b=lite0:l=stage6+head:v=8,mlp:b=cellnet-mine:l=stage6+head:v=8
            """)

    @Argument(help: "Labelled image sets to pool (folders DATA/<class>/<image>, CSVs or .npz).")
    var data: [String]

    @Option(help: "Name of the new backbone (written as NAME.petri-backbone in the weights folder).")
    var name = "cellnet-lite0"

    @Option(help: "ImageNet backbone to start from.")
    var base = "efficientnet-lite0"

    @Option(help: "At most this many images per class of each set (a seeded draw).")
    var perClass = 300

    @Option(help: "Train the layers above this level (stage1…stage7), or 'none' to train every layer (slow).")
    var after = "stage3"

    @Option(help: "Passes over the pooled images.")
    var epochs = 8

    @Option(help: "Augmented views per image whose trunk activations are kept (with --after).")
    var views = 4

    @Option(help: "Seed of the draw and of training.")
    var seed: UInt64 = 0

    @Option(help: "Write the backbone here instead of the weights folder.")
    var out: String?

    @Option(help: "Save the training state every this many steps (for resuming a killed job).")
    var checkpointEvery = 50

    @Flag(help: "No progress output.")
    var quiet = false

    func pretraining() throws -> Pretraining {
        var p = Pretraining(sets: data)
        p.name = name
        p.perClass = perClass
        p.out = out
        guard ModelRegistry.names.contains(base) else { throw ValidationError("--base must be one of \(ModelRegistry.names.joined(separator: ", "))") }
        p.training.base = base
        if after == "none" { p.training.after = nil } else {
            guard let level = FeatureLevel(after), level != .head else { throw ValidationError("--after: unknown level '\(after)' (stem, stage1…stage7, none)") }
            p.training.after = level
        }
        p.training.epochs = epochs
        p.training.views = views
        p.training.seed = seed
        guard checkpointEvery >= 1 else { throw ValidationError("--checkpoint-every must be at least 1") }
        p.checkpointEvery = checkpointEvery
        try studyCall { try p.validate() }
        #if canImport(PetriMPI)
        p.reducer = MPIWorld.launched()
        #else
        // Started by mpirun without MPI built in: each process would train alone and all write one file.
        if let ranks = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? ProcessInfo.processInfo.environment["PMI_SIZE"],
           (Int(ranks) ?? 1) > 1 {
            throw ValidationError("started as one of \(ranks) MPI processes, but this petri was built without Open MPI: install libopenmpi-dev (Debian) and rebuild after `rm -rf ~/.cache/org.swift.swiftpm/manifests` (SwiftPM's cached reading of Package.swift)")
        }
        #endif
        return p
    }

    func run() throws {
        let start = Date()
        let p = try pretraining()
        let lead = (p.reducer?.rank ?? 0) == 0
        let url = try studyCall { try p.run(reporter: TerminalReporter(quiet: quiet || !lead)) }
        guard lead else { return }
        print("backbone: \(url.path)")
        print("use it as --backbone \(name) or in a method, e.g. mlp:b=\(name):l=stage6+head:v=8"
              + (out == nil ? "" : " (after moving it to a weights folder: \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: " or ")))"))
        print(String(format: "time: %.0fs", Date().timeIntervalSince(start)))
    }
}
