import Foundation
import PetriData
import PetriEval
import PetriLearn

/// `petri curve`: learning curves by the few-shot protocol — methods × training-set sizes × seeds — each result
/// appended to a JSON-lines file and recorded in the run store as it finishes. Results already in the file (same
/// preprocessing) or in a resumed run are skipped.
public struct CurveRun {
    public var dataset: DatasetPolicy
    public var sizes: [Int?]
    public var seeds: [UInt64]
    public var methods: [MethodSpec]
    public var backbone = defaultBackbone
    /// The JSON-lines file results are appended to (nil: none).
    public var jsonLines: String?
    /// Each line also holds the test items and their probabilities (`CurveRecord.jsonWithPredictions`).
    public var predictionsInFile = false
    public var store = StoreSettings()
    /// The command line, as the run store records it.
    public var command = "petri curve"
    /// Only this part of the evaluations (nil: all).
    public var shard: Shard?

    public init(dataset: DatasetPolicy, sizes: [Int?], seeds: [UInt64], methods: [MethodSpec]) {
        self.dataset = dataset
        self.sizes = sizes
        self.seeds = seeds
        self.methods = methods
    }

    /// Runs what is not done yet; `finished` sees each new result. Returns every result, earlier ones included.
    @discardableResult
    public func run(reporter: StudyReporter, finished: (CurveRecord) -> Void = { _ in }) throws -> [CurveRecord] {
        let start = Date()
        let ds = try dataset.load(reporter: reporter)
        let entries = try methods.map { try MethodEntry($0, warn: reporter.warning) }
        StudyChecks.pretrainingOverlap(ds, backbones: StudyChecks.backbones(entries), reporter: reporter)
        let bank = FeatureBank(dataset: ds)
        bank.progress = reporter.progressCallback
        var config = RunConfig(kind: "curve", dataset: dataset, sizes: sizes, seeds: seeds, methods: entries, backbone: backbone)
        if let shard { config.protocolSettings["shard"] = shard.description }
        let mine = shard?.keys(methods: entries.map(\.id), sizes: sizes, seeds: seeds)
        let recorder = try RunRecorder(store, config: config, dataHash: datasetHash(ds), command: command, reporter: reporter)
        reporter.recording(recorder)
        let out = jsonLines.map(JSONLinesFile.init)
        let preprocess = ds.preprocessing.isEmpty ? [:] : ["preprocess": ds.preprocessing.spec]
        var inFile = try out?.keys(preprocessing: ds.preprocessing.spec) ?? []
        // A resumed run and its file may each hold results the other lacks (a run killed between the two
        // writes): the file gets the store's, and the store's missing ones are computed again (the same
        // seed gives the same result) without a second line in the file.
        if let out, store.resume {
            for r in recorder.earlier where !inFile.contains(r.key) {
                try out.append(line(r).merging(preprocess) { a, _ in a })
                inFile.insert(r.key)
            }
        }
        let skip = { (key: RunKey) in
            !(mine?.contains(key) ?? true) || recorder.isDone(key) || (inFile.contains(key) && !(store.resume && recorder.runID != nil))
        }
        var results = recorder.earlier
        do {
            try LearningCurve(sizes: sizes, seeds: seeds).run(dataset: ds, bank: bank, methods: entries, skip: skip) { r in
                results.append(r)
                try recorder.record(r, dataset: ds)
                if let out, !inFile.contains(r.key) { try out.append(line(r).merging(preprocess) { a, _ in a }) }
                finished(r)
            }
        } catch {
            recorder.fail()
            throw error
        }
        recorder.finish(seconds: Date().timeIntervalSince(start), output: jsonLines)
        return results
    }

    func line(_ r: CurveRecord) -> [String: Any] { predictionsInFile ? r.jsonWithPredictions : r.json }
}

/// A JSON-lines file of results: one object per line, each appended with one `write` to a file opened for
/// appending, so an interrupted run keeps what finished and two runs appending at once do not interleave lines.
/// A last line cut off by a kill is dropped before the next append.
public struct JSONLinesFile {
    public let path: String
    public init(path: String) { self.path = path }

    /// The keys of the results already in the file for runs with this preprocessing (`none`: without).
    public func keys(preprocessing: String) throws -> Set<RunKey> {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var done = Set<RunKey>()
        for l in data.split(separator: 0x0A) {
            guard let o = try? JSONSerialization.jsonObject(with: Data(l)) as? [String: Any] else { continue }
            guard (o["preprocess"] as? String ?? "none") == preprocessing, let key = RunKey(json: o) else { continue }
            done.insert(key)
        }
        return done
    }

    public func append(_ object: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        data.append(0x0A)
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw StudyError.failed("\(path): cannot open for appending: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try dropTornLine(fd)
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw StudyError.failed("\(path): cannot append a result: \(String(cString: strerror(errno)))") }
    }

    /// Cuts a last line that has no newline (its write was interrupted) back to the previous newline.
    private func dropTornLine(_ fd: Int32) throws {
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return }
        var last: UInt8 = 0
        guard pread(fd, &last, 1, size - 1) == 1, last != 0x0A else { return }
        var end = size - 1
        var byte: UInt8 = 0
        while end > 0, pread(fd, &byte, 1, end - 1) == 1, byte != 0x0A { end -= 1 }
        guard ftruncate(fd, end) == 0 else { throw StudyError.failed("\(path): cannot drop a cut-off last line") }
    }
}

/// Text summaries of results, as the commands print them.
public enum ResultSummary {
    /// Mean ± sd and 95% interval of balanced accuracy per method and size, one line each, after a title.
    public static func lines(_ results: [CurveRecord]) -> [String] {
        let methods = results.map(\.method).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let sizes = results.map(\.sizeLabel).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        guard !results.isEmpty else { return [] }
        var out = ["balanced accuracy, mean ± sd [95% CI] (seeds)"]
        for m in methods {
            for s in sizes {
                let rs = results.filter { $0.method == m && $0.sizeLabel == s }
                guard let first = rs.first else { continue }
                let sum = Summary(rs.map(\.balancedAccuracy), within: 0...1)
                let label = first.evaluation == "cv" ? "k-fold" : first.evaluation == "holdout" ? "held-out" : "n=" + s
                out.append(String(format: "  %@  %@: %.3f ± %.3f [%.3f, %.3f] (%d)", m, label, sum.mean, sum.standardDeviation,
                                  sum.low, sum.high, sum.count))
            }
        }
        return out
    }

    /// One result as progress: `auto n=5 seed 0: balanced accuracy 0.735 via … (12.3s)`.
    public static func line(_ r: CurveRecord) -> String {
        String(format: "%@ n=%@ seed %llu: balanced accuracy %.3f%@ (%.1fs)", r.method, r.sizeLabel, r.seed,
               r.balancedAccuracy, r.chosen.map { " via \($0)" } ?? "", r.seconds)
    }
}
