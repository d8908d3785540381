import ArgumentParser
import Foundation
import PetriData
import PetriEngine
import PetriLearn
import PetriNN

struct BackboneOptions: ParsableArguments {
    @Option(help: "Backbone: \(ModelRegistry.names.joined(separator: ", ")).")
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

    func validate() throws {
        guard ModelRegistry.names.contains(backbone) else {
            throw ValidationError("unknown backbone '\(backbone)'; known: \(ModelRegistry.names.joined(separator: ", "))")
        }
        guard FeatureLevel(level) != nil else { throw ValidationError("unknown level '\(level)'") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        do { _ = try TransformPipeline.parse(preprocess) } catch { throw ValidationError("--preprocess: \(error)") }
    }

    func makeExtractor() throws -> FeatureExtractor {
        let extractor = try FeatureExtractor(backbone: backbone, level: FeatureLevel(level)!)
        extractor.batchSize = batchSize
        extractor.decoder = ImageDecoder(maxPixels: maxPixels)
        if noCache { extractor.cacheDirectory = nil }
        extractor.preprocessing = try TransformPipeline.parse(preprocess)
        return extractor
    }

    /// Loads an ImageFolder dataset and extracts features, reporting skipped files on stderr.
    func extract(from data: String) throws -> (Dataset, FeatureExtractor.Result) {
        let dataset = try Dataset.load(URL(fileURLWithPath: data))
        for w in dataset.warnings { printError("warning: \(w)") }
        let extractor = try makeExtractor()
        let progress = ProgressLine("features (\(backbone), \(level))", quiet: quiet)
        let result = try extractor.extract(dataset, items: dataset.items, progress: progress.update)
        for f in result.failures { printError("skipped \(f.path): \(f.reason)") }
        if !result.failures.isEmpty { printError("\(result.failures.count) image(s) skipped") }
        guard !result.kept.isEmpty else { throw PetriCLIError("no readable images in \(dataset.root.path)") }
        return (dataset, result)
    }
}

struct PetriCLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
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
            """)

    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Output .npy file.")
    var out: String

    @OptionGroup var options: BackboneOptions

    func run() throws {
        let (dataset, result) = try options.extract(from: data)
        let outURL = URL(fileURLWithPath: out)
        try NPY.encode(result.features).write(to: outURL, options: .atomic)
        let paths = result.kept.map { dataset.items[$0].path }.joined(separator: "\n") + "\n"
        try paths.write(to: URL(fileURLWithPath: out + ".txt"), atomically: true, encoding: .utf8)
        if !options.quiet {
            printError("wrote \(out) \(result.features.shape) and \(out).txt (\(result.cacheHits) from cache)")
        }
    }
}
