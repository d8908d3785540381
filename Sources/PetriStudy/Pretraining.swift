import Foundation
import PetriData
import PetriLearn
import PetriNN

/// `petri pretrain`: pools the classes of every set (named SET/CLASS, at most `perClass` images each, a seeded
/// draw), trains a backbone on them (`BackbonePretraining`) and writes it as NAME.petri-backbone, after which
/// NAME works wherever a backbone name does.
public struct Pretraining {
    public var sets: [String]
    public var name = "cellnet-lite0"
    public var perClass = 300
    public var training = BackbonePretraining()
    /// Where to write the backbone (nil: the last weights folder, as NAME.petri-backbone).
    public var out: String?

    public init(sets: [String]) { self.sets = sets }

    public func validate() throws {
        guard !sets.isEmpty else { throw StudyError.invalidSetting("DATA", "give at least one labelled image set") }
        guard !name.isEmpty, !ModelRegistry.names.contains(name), !name.hasPrefix("random-"), !name.hasPrefix("lite"),
              name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw StudyError.invalidSetting("--name", "must be a new backbone name (not \(ModelRegistry.names.joined(separator: ", ")), liteN or random-…; letters, digits, '-', '_' and '.')")
        }
        guard perClass >= 1, training.epochs >= 1, training.views >= 1 else {
            throw StudyError.invalidSetting("--per-class, --epochs, --views", "must be positive")
        }
    }

    /// Trains and writes the backbone; returns where it went.
    public func run(reporter: StudyReporter) throws -> URL {
        try validate()
        var loaded: [Dataset] = []
        for path in sets {
            let ds = try Dataset.load(URL(fileURLWithPath: path))
            for w in ds.warnings { reporter.warning(w) }
            let (readable, failures) = FeatureBank.readableItems(ds)
            for (p, r) in failures { reporter.warning("skipped \(p): \(r)") }
            loaded.append(readable)
        }
        let (pooled, setNames) = try Dataset.pooled(loaded, perClass: perClass, seed: training.seed)
        let counts = pooled.classCounts
        let sources = setNames.map { set in
            set + ": " + pooled.classNames.indices.filter { pooled.classNames[$0].hasPrefix(set + "/") }
                .map { "\(pooled.classNames[$0].dropFirst(set.count + 1)) \(counts[$0])" }.joined(separator: ", ")
        }
        for s in sources { reporter.note("pooled \(s)") }
        guard pooled.classNames.count >= 2 else { throw StudyError.failed("pretraining needs at least two classes across the sets") }
        // The cached trunk activations must fit in memory: refuse before spending minutes, saying what to change.
        let bytes = try training.activationBytes(images: pooled.items.count)
        let physical = Double(ProcessInfo.processInfo.physicalMemory)
        let gib = { (b: Double) in String(format: "%.1f GiB", b / 1_073_741_824) }
        if let after = training.after, bytes > 0.7 * physical {
            let next: String = if case let .stage(s) = after { "stage\(min(7, s + 1))" } else { "stage4" }
            throw StudyError.failed("the trunk activations above \(after) of \(pooled.items.count) images × \(training.views) views need about \(gib(bytes)), more than this machine can spare (\(gib(physical)) in all): use a later --after (e.g. \(next)), fewer --views or a smaller --per-class")
        }
        if bytes > 0 { reporter.note("keeping about \(gib(bytes)) of trunk activations in memory") }
        reporter.note("training on \(pooled.items.count) images, \(pooled.classNames.count) classes")
        let model = try training.train(pooled, progress: reporter.progressCallback)
        let url: URL
        if let out {
            url = URL(fileURLWithPath: out)
        } else {
            guard let dir = ModelRegistry.weightSearchPath.last else { throw StudyError.failed("no weights folder") }
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            url = dir.appendingPathComponent(name + "." + BackboneFile.fileExtension)
        }
        try BackboneFile.write(model, base: training.base, trainedOn: sources,
                               recipe: training.recipe(images: pooled.items.count, classes: pooled.classNames.count, version: PetriVersion.string),
                               to: url)
        return url
    }
}
