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
    /// The processes of a data-parallel run (MPI); rank 0 writes the backbone and reports.
    public var reducer: GradientReducer?
    /// Steps between saved training states.
    public var checkpointEvery = 50

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
        let lead = (reducer?.rank ?? 0) == 0
        let reporter: StudyReporter = lead ? reporter : CollectingReporter()
        if let reducer, reducer.size > training.batchSize {
            throw StudyError.invalidSetting("ranks", "\(reducer.size) processes for batches of \(training.batchSize) images")
        }
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
        reporter.note("training on \(pooled.items.count) images, \(pooled.classNames.count) classes"
                      + (reducer.map { ", \($0.size) processes" } ?? ""))
        let url: URL
        if let out {
            url = URL(fileURLWithPath: out)
        } else {
            guard let dir = ModelRegistry.weightSearchPath.last else { throw StudyError.failed("no weights folder") }
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            url = dir.appendingPathComponent(name + "." + BackboneFile.fileExtension)
        }
        // The state every `checkpointEvery` steps beside the backbone, for a killed job to resume (same settings, same images).
        let settings = "\(sets) \(name) \(perClass) \(training.base) \(training.after.map(\.description) ?? "none") \(training.epochs) \(training.views) \(training.seed) \(training.batchSize) "
            + pooled.items.map(\.relativePath).joined(separator: "|")
        var checkpoint = TrainingCheckpoint(url: url.appendingPathExtension("resume"), every: checkpointEvery, key: SHA256.hex(settings))
        checkpoint.writes = lead
        let model = try training.train(pooled, reducer: reducer, checkpoint: training.after == nil ? nil : checkpoint,
                                       progress: reporter.progressCallback)
        if lead {
            try BackboneFile.write(model, base: training.base, trainedOn: sources,
                                   recipe: training.recipe(images: pooled.items.count, classes: pooled.classNames.count, version: PetriVersion.string),
                                   to: url)
            try? FileManager.default.removeItem(at: checkpoint.url)
        }
        return url
    }
}
