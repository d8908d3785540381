import ArgumentParser
import Dispatch
import Foundation
import PetriData
import PetriLearn
import PetriStore

/// Run-store options shared by `petri curve` and `petri study`.
struct StoreOptions: ParsableArguments {
    @Option(help: "The run store (SQLite). Default: $PETRI_RUNS, else ~/.local/share/petri/runs.sqlite.")
    var runs: String?

    @Flag(help: "Continue the latest unfinished run with the same settings and data, skipping what it finished.")
    var resume = false

    @Flag(help: "Do not record this run in the run store.")
    var noStore = false
}

/// Records one run in the store as it goes: a row for the run, one per finished result (with predictions),
/// and its final status. Ctrl-C or SIGTERM mark it `interrupted` before exiting; a killed run is shown as
/// interrupted by `petri runs` (its process is gone). With `--resume` it takes over the matching unfinished
/// run and reports which results are already there.
final class RunRecorder {
    let store: RunStore?
    let runID: Int64?
    /// Results already in the resumed run.
    private(set) var completed: Set<RunKey> = []
    /// The resumed run's results (for the report).
    private(set) var earlier: [CurveRecord] = []
    private var signalSources: [DispatchSourceSignal] = []

    init(options: StoreOptions, kind: String, dataset: Dataset, dataHash: String, config: [String: Any], quiet: Bool) throws {
        guard !options.noStore else {
            store = nil
            runID = nil
            if options.resume { throw ValidationError("--resume needs the run store (drop --no-store)") }
            return
        }
        let store = try RunStore(path: options.runs ?? RunStore.defaultPath)
        self.store = store
        var settings = config
        settings["kind"] = kind
        settings["data_hash"] = dataHash
        let configHash = SHA256.hex(String(decoding: try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys]), as: UTF8.self))
        let command = (["petri"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        if options.resume {
            guard let previous = try store.resumable(configHash: configHash) else {
                throw PetriCLIError("--resume: no unfinished \(kind) run with these settings and data in \(store.path) (see `petri runs`)")
            }
            try store.reopen(previous.id)
            runID = previous.id
            completed = try store.completedKeys(run: previous.id)
            earlier = try store.records(run: previous.id)
            if !quiet { printError("resuming run \(previous.id): \(completed.count) results already done") }
        } else {
            runID = try store.begin(kind: kind, dataset: dataset.root.path, dataHash: dataHash, configHash: configHash,
                                    config: settings, command: command)
            if !quiet { printError("run \(runID!) recorded in \(store.path)") }
        }
        installSignalHandlers()
    }

    func isDone(_ key: RunKey) -> Bool { completed.contains(key) }

    func record(_ r: CurveRecord, dataset: Dataset) throws {
        guard let store, let runID else { return }
        try store.add(r, run: runID, paths: r.test.map { dataset.items[$0].path }, labels: r.test.map { dataset.items[$0].label })
    }

    func finish(seconds: Double, output: String? = nil) {
        guard let store, let runID else { return }
        try? store.finish(runID, seconds: seconds, output: output)
    }

    func fail() {
        guard let store, let runID else { return }
        try? store.finish(runID, status: "failed")
    }

    private func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [store, runID] in
                if let store, let runID {
                    try? store.finish(runID, status: "interrupted")
                    printError("\ninterrupted: run \(runID) keeps its finished results; continue with --resume")
                }
                exit(sig == SIGINT ? 130 : 143)
            }
            source.resume()
            signalSources.append(source)
        }
    }
}

struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List, show and compare the runs recorded in the run store.",
        discussion: """
            Every `petri curve` and `petri study` run is recorded (settings, data hash, versions, per-seed \
            metrics, test predictions, timings) in a SQLite file: $PETRI_RUNS, else \
            ~/.local/share/petri/runs.sqlite.

            Examples:
              petri runs                 # the latest runs
              petri runs 12              # one run: mean balanced accuracy per method and size
              petri runs 12 15           # two or more runs side by side
            """)

    @Argument(help: "Run ids: one to show it, several to compare them; none to list.")
    var ids: [Int64] = []

    @Option(help: "The run store (SQLite).")
    var runs: String?

    @Option(help: "How many runs to list.")
    var limit = 20

    func run() throws {
        let path = runs ?? RunStore.defaultPath
        guard FileManager.default.fileExists(atPath: path) else {
            print("no runs yet (\(path) does not exist)")
            return
        }
        let store = try RunStore(path: path)
        if ids.isEmpty {
            let list = try store.runs(limit: limit)
            if list.isEmpty { print("no runs yet in \(path)"); return }
            let date = DateFormatter()
            date.dateFormat = "yyyy-MM-dd HH:mm"
            print("  id  started           kind   status       results  time     dataset")
            for r in list {
                print(String(format: "%4lld  %@  %-5@  %-11@  %7d  %7@  %@", r.id, date.string(from: r.startedAt), r.kind,
                             r.effectiveStatus, r.resultCount, r.seconds.map { String(format: "%.0fs", $0) } ?? "-",
                             r.dataset))
            }
            return
        }
        var columns: [(RunSummary, [CurveRecord])] = []
        for id in ids {
            guard let r = try store.run(id) else { throw PetriCLIError("no run \(id) in \(path)") }
            columns.append((r, try store.records(run: id, withPredictions: false)))
        }
        for (r, records) in columns {
            print("run \(r.id): \(r.kind), \(r.effectiveStatus), \(r.resultCount) results, data \(r.dataHash.prefix(12))")
            print("  \(r.command)")
            if columns.count == 1 { printSummary(records) }
        }
        guard columns.count > 1 else { return }
        // Side by side: mean balanced accuracy per (method, size) in each run.
        var keys: [String] = []
        for (_, records) in columns { for rec in records where !keys.contains("\(rec.method)|\(rec.sizeLabel)") {
            keys.append("\(rec.method)|\(rec.sizeLabel)")
        } }
        print("balanced accuracy, mean (seeds): " + columns.map { "run \($0.0.id)" }.joined(separator: " | "))
        for key in keys {
            let parts = key.split(separator: "|").map(String.init)
            let cells = columns.map { (_, records) -> String in
                let v = records.filter { $0.method == parts[0] && $0.sizeLabel == parts[1] }.map(\.balancedAccuracy)
                return v.isEmpty ? "-" : String(format: "%.3f (%d)", v.reduce(0, +) / Double(v.count), v.count)
            }
            print("  \(parts[0]) n=\(parts[1]): " + cells.joined(separator: " | "))
        }
    }
}
