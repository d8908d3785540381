import ArgumentParser
import Foundation
import PetriData
import PetriEval
import PetriLearn
import PetriNN

/// Dataset options shared by the study commands.
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

    func preprocessing() throws -> TransformPipeline {
        do { return try TransformPipeline.parse(preprocess) } catch { throw ValidationError("--preprocess: \(error)") }
    }

    func validate() throws { _ = try preprocessing() }

    /// `["preprocess": spec]` when there is preprocessing (absent otherwise, so earlier runs still match).
    var preprocessConfig: [String: Any] {
        let spec = (try? preprocessing().spec) ?? preprocess
        return spec == "none" ? [:] : ["preprocess": spec]
    }

    /// Loads, drops unreadable files and small classes, applies the per-class draw; reports all of it.
    func load(quiet: Bool) throws -> Dataset {
        var ds = try Dataset.load(URL(fileURLWithPath: data))
        for w in ds.warnings { printError("warning: \(w)") }
        let (readable, failures) = FeatureBank.readableItems(ds)
        for (p, r) in failures { printError("skipped \(p): \(r)") }
        ds = readable
        let before = ds.classNames
        ds = ds.droppingClasses(smallerThan: minClassSize)
        for w in ds.warnings.dropFirst(ds.warnings.count - (before.count - ds.classNames.count)) { printError("warning: \(w)") }
        if let m = maxPerClass { ds = ds.limitingClasses(to: m, seed: drawSeed) }
        ds.preprocessing = try preprocessing()
        guard ds.classNames.count >= 2 else { throw DatasetError.tooFewClasses(ds.root.path, found: ds.classNames) }
        if !quiet {
            printError("dataset: \(ds.items.count) images, " + zip(ds.classNames, ds.classCounts).map { "\($0) \($1)" }.joined(separator: ", "))
        }
        return ds
    }
}

/// Reads `--method` lists into specs and builds their methods, as argument errors (exit 64) when they are wrong.
enum MethodArguments {
    static func specs(_ list: String, backbone: String) throws -> [MethodSpec] {
        do { return try MethodSpec.list(list, backbone: backbone) } catch { throw ValidationError("\(error)") }
    }

    static func entries(_ specs: [MethodSpec]) throws -> [MethodEntry] {
        do { return try specs.map { try MethodEntry($0, warn: Warnings.once) } } catch { throw ValidationError("\(error)") }
    }
}

struct CurveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curve",
        abstract: "Learning curves by the few-shot protocol: methods × training-set sizes × seeds, as JSON lines.",
        discussion: """
            For each seed: a stratified 30% test split (duplicates kept together), then training sets of the \
            first n images per class of the rest (n from --sizes; "all" = the whole pool). One JSON object per \
            (method, size, seed) with method, size, seed, n_train, balanced_accuracy, accuracy, macro_f1, auc, \
            per_class_recall, confusion, seconds. Results already in --json are skipped (resume).

            Methods: \(MethodSpec.keywords.joined(separator: ", ")). Spelled out: lp:/mlp:/knn:/proto:\
            b=lite0+lite1:l=stage6+head:v=8:c=0.5 (mlp: with=cellnet adds a head on another backbone, \
            averaged), finetune:..., scratch:..., auto:cellnet=NAME|none:views=4, avg(A|B) (soft vote), \
            METHOD@STEPS (on preprocessed images).

            `auto` pairs an MLP head on ImageNet Lite0+1+2 features with one on Petri's CellNet (Lite0 \
            pretrained on PBC and NIH malaria cells): do not judge it on those sets with the shipped CellNet \
            (--method auto:cellnet=NAME with one pretrained without them, or auto:cellnet=none).

            Examples:
              petri curve Samples/bccd-wbc-mini --sizes 5,10,all --seeds 0,1,2 --json curve.jsonl
              petri curve pbc/ --max-per-class 100 --method auto:cellnet=cellnet-bccd,lp --json pbc.jsonl
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Training images per class, comma-separated; 'all' for the whole training pool.")
    var sizes = "5,10,20,50,all"

    @Option(help: "Seeds, comma-separated.")
    var seeds = "0,1,2,3,4"

    @Option(help: "Methods, comma-separated.")
    var method = "auto"

    @Option(help: "Backbone for single-backbone methods.")
    var backbone = "efficientnet-lite0"

    @Option(help: "Write JSON lines here (appending; existing results are skipped).")
    var json: String?

    @Flag(help: "No progress output.")
    var quiet = false

    @OptionGroup var store: StoreOptions

    /// The settings that identify a run (and that `--resume` must match).
    func runConfig(_ methods: [MethodEntry]) -> [String: Any] {
        ["dataset": dataset.data, "sizes": sizes, "seeds": seeds, "methods": methods.map(\.id), "backbone": backbone,
         "min_class_size": dataset.minClassSize, "max_per_class": dataset.maxPerClass.map { $0 as Any } ?? NSNull(),
         "draw_seed": dataset.drawSeed, "petri": PetriVersion.string].merging(dataset.preprocessConfig) { a, _ in a }
            .merging(trainedBackboneConfig(methods.map(\.method))) { a, _ in a }
    }

    func parsedSizes() throws -> [Int?] {
        try sizes.split(separator: ",").map { s in
            let t = s.trimmingCharacters(in: .whitespaces)
            if t == "all" { return nil }
            guard let n = Int(t), n >= 1 else { throw ValidationError("--sizes: '\(t)' is not a positive number or 'all'") }
            return n
        }
    }

    func parsedSeeds() throws -> [UInt64] {
        try seeds.split(separator: ",").map {
            guard let s = UInt64($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--seeds: '\($0)' is not a seed") }
            return s
        }
    }

    func validate() throws {
        _ = try parsedSizes()
        _ = try parsedSeeds()
        _ = try MethodArguments.specs(method, backbone: backbone)
    }

    func run() throws {
        let start = Date()
        let ds = try dataset.load(quiet: quiet)
        let methods = try MethodArguments.entries(try MethodArguments.specs(method, backbone: backbone))
        warnAboutPretrainingOverlap(ds, backbones: methods.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1.method)) })
        let bank = FeatureBank(dataset: ds)
        let stages = StageProgress(quiet: quiet)
        bank.progress = { stage, done, total in stages.update(stage, done, total) }
        let recorder = try RunRecorder(options: store, kind: "curve", dataset: ds, dataHash: datasetHash(ds),
                                       config: runConfig(methods), quiet: quiet)
        // Resume: skip (method, size, seed) already in the JSON file.
        var done = Set<RunKey>()
        if let json, let text = try? String(contentsOfFile: json, encoding: .utf8) {
            for l in text.split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any] else { continue }
                guard (o["preprocess"] as? String ?? "none") == ds.preprocessing.spec, let key = RunKey(json: o) else { continue }
                done.insert(key)
            }
        }
        let out = json.map { JSONLinesWriter(path: $0) }
        var results: [CurveRecord] = recorder.earlier
        do {
        try LearningCurve(sizes: try parsedSizes(), seeds: try parsedSeeds()).run(
            dataset: ds, bank: bank, methods: methods,
            skip: { done.contains($0) || recorder.isDone($0) }
        ) { r in
            results.append(r)
            try out?.append(r.json.merging(dataset.preprocessConfig) { a, _ in a })
            try recorder.record(r, dataset: ds)
            if !quiet {
                printError(String(format: "%@ n=%@ seed %llu: balanced accuracy %.3f%@ (%.1fs)", r.method, r.sizeLabel, r.seed,
                                  r.balancedAccuracy, r.chosen.map { " via \($0)" } ?? "", r.seconds))
            }
        }
        } catch {
            recorder.fail()
            throw error
        }
        recorder.finish(seconds: Date().timeIntervalSince(start), output: json)
        printSummary(results)
        print(String(format: "time: %.1fs", Date().timeIntervalSince(start)))
    }
}

/// Appends one JSON object per line, flushing each, so an interrupted run keeps what finished.
final class JSONLinesWriter {
    let path: String
    init(path: String) { self.path = path }

    func append(_ object: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        data.append(0x0A)
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw PetriCLIError("\(path): cannot open for writing")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: data)
    }
}

/// Mean ± sd and 95% interval of balanced accuracy per method and size.
func printSummary(_ results: [CurveRecord]) {
    let methods = results.map(\.method).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    let sizes = results.map(\.sizeLabel).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    guard !results.isEmpty else { return }
    print("balanced accuracy, mean ± sd [95% CI] (seeds)")
    for m in methods {
        for s in sizes {
            let rs = results.filter { $0.method == m && $0.sizeLabel == s }
            guard let first = rs.first else { continue }
            let sum = Summary(rs.map(\.balancedAccuracy), within: 0...1)
            let label = first.evaluation == "cv" ? "k-fold" : first.evaluation == "holdout" ? "held-out" : "n=" + s
            print(String(format: "  %@  %@: %.3f ± %.3f [%.3f, %.3f] (%d)", m, label, sum.mean, sum.standardDeviation,
                         sum.low, sum.high, sum.count))
        }
    }
}

/// Prints each distinct warning once per process (a method built for every split warns once).
enum Warnings {
    nonisolated(unsafe) static var seen: Set<String> = []
    static let lock = NSLock()
    static func once(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        guard seen.insert(text).inserted else { return }
        printError("warning: \(text)")
    }
}

/// A backbone pretrained on this very set (by folder name) has seen its test images: its scores here would
/// flatter it. `backbones`: the ones to check (nil: every trained backbone in the weights folders).
func warnAboutPretrainingOverlap(_ ds: Dataset, backbones: Set<String>? = nil) {
    let setName = ds.root.lastPathComponent
    for name in ModelRegistry.trainedNames where backbones?.contains(name) ?? true {
        guard let url = try? ModelRegistry.weightsURL(for: ModelRegistry.entry(name)),
              let header = try? BackboneFile.read(url).header else { continue }
        if header.trainedOn.contains(where: { $0.hasPrefix(setName + ":") }) {
            printError("warning: \(name) was pretrained on a set named \(setName), like this one: it has seen these test images, so scores here flatter it (use a backbone pretrained without this set, e.g. --method auto:cellnet=NAME, or auto:cellnet=none)")
        }
    }
}

/// `["trained_backbones": name → identity]` for the trained backbones (CellNet) the methods read, so that a run
/// records which one it used and does not resume on another (absent when there are none).
func trainedBackboneConfig(_ methods: [any FewShotMethod]) -> [String: Any] {
    let used = methods.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1)) }
    guard let ids = SavedModel.trainedBackboneIdentities(Array(used)) else { return [:] }
    return ["trained_backbones": ids]
}
