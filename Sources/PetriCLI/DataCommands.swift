import ArgumentParser
import Foundation
import PetriData
import PetriEngine
import PetriLearn
import PetriNN
import PetriStudy

/// Which backbone features to compute, and how.
struct BackboneOptions: ParsableArguments {
    @Option(help: "Backbone: \(ModelRegistry.names.joined(separator: ", ")), or a trained backbone's name (e.g. cellnet).")
    var backbone = "efficientnet-lite0"

    @Option(help: "Feature level: head (1280-d), stem, or stage1...stage7 (globally average-pooled).")
    var level = "head"

    @Flag(help: "Recompute features even if cached (the cache is keyed by image bytes, backbone and preprocessing).")
    var noCache = false

    @Option(help: "Images per forward pass.")
    var batchSize = 32

    @Option(help: "Refuse images with more pixels than this.")
    var maxPixels = ImageDecoder.defaultMaxPixels

    @Option(help: "Preprocessing applied before the backbone's resize, e.g. 'clahe' or 'reinhard, centercrop(fraction=0.9)'.")
    var preprocess = "none"

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws { _ = try export(from: "") }

    func export(from data: String) throws -> FeatureExport {
        var e = FeatureExport(source: data)
        e.backbone = backbone
        guard let l = FeatureLevel(level) else { throw ValidationError("--level: unknown level '\(level)' (head, stem, stage1…stage7)") }
        e.level = l
        do { e.preprocessing = try TransformPipeline.parse(preprocess) } catch { throw ValidationError("--preprocess: \(error)") }
        e.useCache = !noCache
        e.batchSize = batchSize
        e.maxPixels = maxPixels
        try studyCall { try e.validate() }
        return e
    }
}

struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Extract frozen backbone features for every image of a dataset.",
        discussion: """
            Writes OUT (float32 .npy, one row per readable image) and OUT.txt (the image paths in row order). \
            Unreadable images are listed on stderr and skipped.

            Example:
              petri features Samples/bccd-wbc-mini --backbone efficientnet-lite0 --out wbc.npy
              petri features Samples/bccd-wbc-mini --backbone cellnet --level stage6 --out wbc-cellnet.npy
            """)

    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Output .npy file.")
    var out: String

    @OptionGroup var options: BackboneOptions

    func run() throws {
        let reporter = TerminalReporter(quiet: options.quiet)
        let (dataset, result) = try studyCall { try options.export(from: data).run(reporter: reporter) }
        try NPY.encode(result.features).write(to: URL(fileURLWithPath: out), options: .atomic)
        try write(result.kept.map { dataset.items[$0].path }.joined(separator: "\n") + "\n", to: out + ".txt")
        reporter.note("wrote \(out) \(result.features.shape) and \(out).txt (\(result.cacheHits) from cache)")
    }
}

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Cross-validated balanced accuracy of a linear probe on frozen features.",
        discussion: """
            Extracts (cached) features, then runs repeated stratified k-fold cross-validation of an \
            L2-regularised logistic regression (C chosen by inner cross-validation on each training fold). \
            Exact-duplicate images are kept on one side of every split.

            Example:
              petri probe Samples/bccd-wbc-mini --folds 5 --repeats 2 --seed 0
            """)

    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Folds per repeat.")
    var folds = 5

    @Option(help: "Repeats of the k-fold split.")
    var repeats = 2

    @Option(help: "Seed for splits.")
    var seed: UInt64 = 0

    @OptionGroup var options: BackboneOptions

    func run() throws {
        let start = Date()
        var probe = ProbeRun(features: try options.export(from: data))
        probe.folds = folds
        probe.repeats = repeats
        probe.seed = seed
        try studyCall { try probe.run(reporter: TerminalReporter(quiet: options.quiet)) }.forEach { print($0) }
        print(String(format: "time: %.1fs", Date().timeIntervalSince(start)))
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Report class balance, image formats, unreadable files and (near-)duplicates of a dataset.",
        discussion: """
            Exact duplicates are images with identical bytes (or pixels, for .npz). Duplicates filed under \
            different classes are label conflicts. Near-duplicates are different files whose 32×32 grey \
            thumbnails correlate at ≥ --near-threshold (re-encodings, small shifts, adjacent video frames). \
            Petri keeps exact duplicates on one side of every split; near-duplicates are reported for you to judge.

            Examples:
              petri inspect Samples/bccd-wbc-mini
              petri inspect data.csv --json report.json
            """)

    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Thumbnail correlation at or above which two images count as near-duplicates.")
    var nearThreshold: Float = 0.95

    @Option(help: "How many examples of each finding to list.")
    var show = 10

    @Option(help: "Also write the findings as JSON to this file.")
    var json: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func run() throws {
        var inspection = InspectionRun(source: data)
        inspection.nearThreshold = nearThreshold
        inspection.show = show
        let (lines, findings) = try studyCall { try inspection.run(reporter: TerminalReporter(quiet: quiet)) }
        lines.forEach { print($0) }
        if let json {
            try JSONSerialization.data(withJSONObject: findings, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: json), options: .atomic)
        }
    }
}

struct AugmentPreviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment-preview",
        abstract: "Write a contact sheet of original images and augmented copies, to see what a policy does.",
        discussion: """
            Policies: none, light, cells (dihedral + HSV/stain jitter + crop), ultrasound (intensity + speckle + \
            small rotation, no vertical flip), or your own spec such as \
            "dihedral, crop(scale=0.6-1), hed(sigma=0.05,p=0.5), blur(sigma=0.1-1,p=0.2)", or @FILE with one step per line.

            Example:
              petri augment-preview Samples/bccd-wbc-mini --policy cells --out preview.png
            """)

    @Argument(help: "Dataset (folder, CSV or .npz).")
    var data: String

    @Option(help: "Augmentation policy: a name, a spec, or @FILE.")
    var policy = "cells"

    @Option(help: "Output PNG.")
    var out = "augment-preview.png"

    @Option(help: "Rows (one image each, spread over the classes).")
    var rows = 6

    @Option(help: "Augmented copies per row.")
    var copies = 7

    @Option(help: "Seed for the random draws.")
    var seed: UInt64 = 0

    func run() throws {
        let pipeline: TransformPipeline
        do { pipeline = try TransformPipeline.augmentation(policy) } catch { throw ValidationError("--policy: \(error)") }
        guard rows >= 1, copies >= 0 else { throw ValidationError("--rows must be at least 1 and --copies at least 0") }
        var preview = AugmentationPreview(source: data, policy: pipeline)
        preview.rows = rows
        preview.copies = copies
        preview.seed = seed
        let (sheet, originals) = try studyCall { try preview.run(reporter: TerminalReporter(quiet: false)) }
        try sheet.writePNG(to: URL(fileURLWithPath: out))
        print("wrote \(out): \(originals) originals (left column) with \(copies) augmented copies each; policy: \(pipeline.spec)")
    }
}

struct SplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Save the few-shot protocol split of a dataset for one seed (test set and training pools) as JSON.",
        discussion: """
            The split is the one `petri curve` and `petri study` use for that seed: per class, a seeded shuffle, \
            round(--test-fraction × count) images (at least one) to the test set, exact duplicates and CSV groups \
            kept whole; the rest, in draw order, is the pool whose first n images form the n-per-class training set. \
            The file names images by their path inside the dataset, so it can be audited and re-used.

            Example:
              petri split Samples/bccd-wbc-mini --seed 0 --out split-seed0.json
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Seed.")
    var seed: UInt64 = 0

    @Option(help: "Fraction of each class in the test set.")
    var testFraction = 0.3

    @Option(help: "Output JSON file.")
    var out: String

    func run() throws {
        guard testFraction > 0 && testFraction < 1 else { throw ValidationError("--test-fraction must be in (0, 1)") }
        let ds = try studyCall { try dataset.policy().load(reporter: TerminalReporter(quiet: true)) }
        let split = fewShotSplit(ds, seed: seed, testFraction: testFraction)
        try SavedSplit(split, dataset: ds).write(to: URL(fileURLWithPath: out))
        print("wrote \(out): \(split.test.count) test images; pools " + zip(ds.classNames, split.pools).map { "\($0) \($1.count)" }.joined(separator: ", "))
    }
}
