import ArgumentParser
import Foundation
import PetriLearn
import PetriStore
import PetriStudy

struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List, show and compare the runs recorded in the run store.",
        subcommands: [RunsListCommand.self, RunsMergeCommand.self], defaultSubcommand: RunsListCommand.self)
}

/// `petri runs merge OUT IN...`: the JSON lines of several runs or shards as one file.
struct RunsMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge the JSON-lines results of several runs or shards into one file (each result once).",
        discussion: """
            A result found in several files with the same figures is kept once; with different figures the merge \
            stops, naming both files. Records written by `petri study --records` keep their test predictions, so \
            `petri study DATA --from OUT` makes the report from the merged file.

            Example:
              petri runs merge curve.jsonl shard-*.jsonl
            """)

    @Argument(help: "The merged file to write.")
    var output: String

    @Argument(help: "The JSON-lines files to merge.")
    var inputs: [String]

    func run() throws {
        let (results, duplicates) = try studyCall { try RecordMerge.merge(inputs, into: output) }
        print("wrote \(output): \(results) results from \(inputs.count) files (\(duplicates) duplicates left out)")
    }
}

struct RunsListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
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
            guard let r = try store.run(id) else { throw StudyError.failed("no run \(id) in \(path)") }
            columns.append((r, try store.records(run: id, withPredictions: false)))
        }
        for (r, records) in columns {
            print("run \(r.id): \(r.kind), \(r.effectiveStatus), \(r.resultCount) results, data \(r.dataHash.prefix(12))")
            print("  \(r.command)")
            if columns.count == 1 { ResultSummary.lines(records).forEach { print($0) } }
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
