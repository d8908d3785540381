import Foundation
import GRDB
import PetriLearn

/// A run as listed by `petri runs`.
public struct RunSummary: Sendable {
    public var id: Int64
    public var kind: String
    public var dataset: String
    public var dataHash: String
    public var configHash: String
    /// The run's settings as JSON (command line, sizes, seeds, methods, versions, ...).
    public var config: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(configJSON.utf8))) as? [String: Any] ?? [:] }
    public var configJSON: String
    public var command: String
    public var startedAt: Date
    public var finishedAt: Date?
    /// `running`, `finished`, `interrupted` or `failed`. A `running` run whose process is gone was killed.
    public var status: String
    public var processID: Int32
    public var seconds: Double?
    public var output: String?
    public var resultCount: Int

    /// `status`, with a `running` run whose process no longer exists shown as `interrupted`.
    public var effectiveStatus: String {
        guard status == "running" else { return status }
        return kill(processID, 0) == 0 || errno == EPERM ? "running" : "interrupted"
    }
}

/// The SQLite run store: every `petri curve` / `petri study` run with its config, one row per
/// (method, size, seed) result with its metrics, and the test-set predictions behind each result.
///
/// Results are written as they finish (one transaction each, with its predictions), so an interrupted run
/// keeps what finished and `--resume` can continue it.
public final class RunStore {
    public let path: String
    private let queue: DatabaseQueue

    /// `$PETRI_RUNS`, else `$XDG_DATA_HOME/petri/runs.sqlite` (default `~/.local/share/petri/runs.sqlite`).
    public static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["PETRI_RUNS"], !p.isEmpty { return p }
        let base = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share").path
        return base + "/petri/runs.sqlite"
    }

    public init(path: String = RunStore.defaultPath) throws {
        self.path = path
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var config = Configuration()
        // Write-ahead logging: each result is one committed transaction, readers never block the writer, and
        // several runs may write one store at once (each waits its turn for at most a minute).
        config.journalMode = .wal
        config.busyMode = .timeout(60)
        queue = try DatabaseQueue(path: path, configuration: config)
        // Two runs opening a new store at once both try to create its tables: the loser's transaction fails
        // and rolls back, and on its next try the migration is already there.
        for attempt in 0... {
            do {
                try Self.migrator.migrate(queue)
                break
            } catch {
                guard attempt < 20 else { throw error }
                usleep(50_000)
            }
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.create(table: "run") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("kind", .text).notNull()
                t.column("dataset", .text).notNull()
                t.column("dataHash", .text).notNull()
                t.column("configHash", .text).notNull().indexed()
                t.column("config", .text).notNull()
                t.column("command", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime)
                t.column("status", .text).notNull()
                t.column("pid", .integer).notNull()
                t.column("seconds", .double)
                t.column("output", .text)
            }
            try db.create(table: "result") { t in
                t.autoIncrementedPrimaryKey("id")
                t.belongsTo("run", onDelete: .cascade).notNull()
                t.column("method", .text).notNull()
                t.column("size", .text).notNull()
                t.column("seed", .integer).notNull()
                t.column("nTrain", .integer).notNull()
                t.column("balancedAccuracy", .double).notNull()
                t.column("accuracy", .double).notNull()
                t.column("macroF1", .double).notNull()
                t.column("auc", .double)
                t.column("seconds", .double).notNull()
                t.column("chosen", .text)
                /// The full record as written to JSON lines (per-class recall, confusion, inner scores, ...).
                t.column("record", .text).notNull()
                t.uniqueKey(["runId", "method", "size", "seed"])
            }
            try db.create(table: "prediction") { t in
                t.belongsTo("result", onDelete: .cascade).notNull()
                t.column("item", .integer).notNull()
                t.column("path", .text).notNull()
                t.column("label", .integer).notNull()
                t.column("predicted", .integer).notNull()
                /// Class probabilities as a JSON array.
                t.column("probabilities", .text).notNull()
            }
        }
        return m
    }

    /// Starts a run; returns its id.
    public func begin(kind: String, dataset: String, dataHash: String, configHash: String, config: [String: Any],
                      command: String) throws -> Int64 {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
        return try queue.write { db in
            try db.execute(sql: """
                INSERT INTO run (kind, dataset, dataHash, configHash, config, command, startedAt, status, pid)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)
                """, arguments: [kind, dataset, dataHash, configHash, json, command, Date(), Int(getpid())])
            return db.lastInsertedRowID
        }
    }

    /// Takes over an earlier run to continue it (`--resume`): marks it running under this process.
    public func reopen(_ id: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE run SET status = 'running', pid = ?, finishedAt = NULL WHERE id = ?",
                           arguments: [Int(getpid()), id])
        }
    }

    /// Records one finished result and its predictions (`paths[i]`, `labels[i]` of test item `record.test[i]`).
    public func add(_ record: CurveRecord, run: Int64, paths: [String], labels: [Int]) throws {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: record.json, options: [.sortedKeys]), as: UTF8.self)
        try queue.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO result (runId, method, size, seed, nTrain, balancedAccuracy, accuracy, macroF1, auc,
                  seconds, chosen, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [run, record.method, record.sizeLabel, Int64(record.seed), record.trainCount,
                                 record.balancedAccuracy, record.accuracy, record.macroF1, record.auc, record.seconds,
                                 record.chosen, json])
            let resultID = db.lastInsertedRowID
            for (i, item) in record.test.enumerated() where i < record.probabilities.count {
                let p = record.probabilities[i]
                let predicted = p.indices.max { p[$0] < p[$1] } ?? 0
                let probs = "[" + p.map { String(format: "%.6g", $0) }.joined(separator: ",") + "]"
                try db.execute(sql: "INSERT INTO prediction (resultId, item, path, label, predicted, probabilities) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [resultID, item, i < paths.count ? paths[i] : "", i < labels.count ? labels[i] : -1,
                                           predicted, probs])
            }
        }
    }

    /// Marks a run finished (or `interrupted` / `failed`), with its total time and output file.
    public func finish(_ id: Int64, status: String = "finished", seconds: Double? = nil, output: String? = nil) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE run SET status = ?, finishedAt = ?, seconds = COALESCE(?, seconds), output = COALESCE(?, output) WHERE id = ?",
                           arguments: [status, Date(), seconds, output, id])
        }
    }

    public func runs(limit: Int = 50) throws -> [RunSummary] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT run.*, (SELECT COUNT(*) FROM result WHERE result.runId = run.id) AS resultCount
                FROM run ORDER BY id DESC LIMIT ?
                """, arguments: [limit]).map(Self.summary)
        }
    }

    public func run(_ id: Int64) throws -> RunSummary? {
        try queue.read { db in
            try Row.fetchOne(db, sql: """
                SELECT run.*, (SELECT COUNT(*) FROM result WHERE result.runId = run.id) AS resultCount
                FROM run WHERE id = ?
                """, arguments: [id]).map(Self.summary)
        }
    }

    /// The latest run with this config that did not finish (the one `--resume` continues).
    public func resumable(configHash: String) throws -> RunSummary? {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT run.*, (SELECT COUNT(*) FROM result WHERE result.runId = run.id) AS resultCount
                FROM run WHERE configHash = ? AND status != 'finished' ORDER BY id DESC
                """, arguments: [configHash]).map(Self.summary)
        }.first { $0.effectiveStatus != "running" }
    }

    /// The results of a run, with their test predictions, in the order they were recorded.
    public func records(run id: Int64, withPredictions: Bool = true) throws -> [CurveRecord] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, record FROM result WHERE runId = ? ORDER BY id", arguments: [id]).compactMap { row in
                let rid: Int64 = row["id"]
                let text: String = row["record"]
                guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return nil }
                var test: [Int] = [], probs: [[Double]] = []
                if withPredictions {
                    for p in try Row.fetchAll(db, sql: "SELECT item, probabilities FROM prediction WHERE resultId = ? ORDER BY rowid",
                                              arguments: [rid]) {
                        test.append(p["item"])
                        let ps: String = p["probabilities"]
                        probs.append((try? JSONSerialization.jsonObject(with: Data(ps.utf8)) as? [Double]) ?? [])
                    }
                }
                return CurveRecord(json: o, test: test, probabilities: probs)
            }
        }
    }

    /// The keys of the results a run already has.
    public func completedKeys(run id: Int64) throws -> Set<RunKey> {
        try queue.read { db in
            Set(try Row.fetchAll(db, sql: "SELECT method, size, seed FROM result WHERE runId = ?", arguments: [id]).compactMap { row in
                let m: String = row["method"], s: String = row["size"], seed: Int64 = row["seed"]
                return RunKey(method: m, sizeLabel: s, seed: UInt64(bitPattern: seed))
            })
        }
    }

    private static func summary(_ row: Row) -> RunSummary {
        RunSummary(id: row["id"], kind: row["kind"], dataset: row["dataset"], dataHash: row["dataHash"],
                   configHash: row["configHash"], configJSON: row["config"], command: row["command"],
                   startedAt: row["startedAt"], finishedAt: row["finishedAt"], status: row["status"],
                   processID: Int32(truncatingIfNeeded: row["pid"] as Int64), seconds: row["seconds"], output: row["output"],
                   resultCount: row["resultCount"])
    }
}
