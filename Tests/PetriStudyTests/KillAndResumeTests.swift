import Foundation
import PetriLearn
import PetriStore
import Testing

/// `petri curve` killed with SIGKILL at any moment, then run again with `--resume`, ends with exactly the
/// results of an uninterrupted run (seconds aside) in its JSON file and in the run store; two runs writing one
/// store at once both finish complete. Runs the `petri` binary that `make test` builds first.
@Suite(.serialized) struct KillAndResumeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/debug/petri")
    static let available = FileManager.default.isExecutableFile(atPath: binary.path)
    static let arguments = [root.appendingPathComponent("Samples/bccd-wbc-mini").path, "--sizes", "5,all", "--seeds", "0,1",
                            "--method", "lp,proto", "--quiet"]

    final class Run {
        let dir: URL
        var json: String { dir.appendingPathComponent("curve.jsonl").path }
        var store: String { dir.appendingPathComponent("runs.sqlite").path }

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("petri-kill-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }

        func start(_ extra: [String] = [], json: String? = nil) throws -> Process {
            let p = Process()
            p.executableURL = KillAndResumeTests.binary
            p.arguments = ["curve"] + KillAndResumeTests.arguments + ["--json", json ?? self.json, "--runs", store] + extra
            p.standardOutput = FileHandle.nullDevice
            let err = dir.appendingPathComponent("stderr-\(UUID().uuidString).txt")
            _ = FileManager.default.createFile(atPath: err.path, contents: nil)
            p.standardError = try FileHandle(forWritingTo: err)
            try p.run()
            return p
        }

        func lines(_ path: String? = nil) -> [[String: Any]] {
            guard let data = FileManager.default.contents(atPath: path ?? json) else { return [] }
            return data.split(separator: 0x0A).compactMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }
        }
    }

    /// Each result's key and what it measured (everything but the seconds; numbers to 12 significant digits,
    /// since a JSON round trip through the store may move the last digit).
    static func outcome(_ o: [String: Any]) -> String {
        func rounded(_ v: Any) -> Any {
            switch v {
            case let d as [String: Any]: return d.mapValues(rounded)
            case let a as [Any]: return a.map(rounded)
            case let n as NSNumber: return String(format: "%.12g", n.doubleValue)
            default: return v
            }
        }
        var o = o
        o["seconds"] = nil
        return String(decoding: (try? JSONSerialization.data(withJSONObject: rounded(o), options: [.sortedKeys])) ?? Data(), as: UTF8.self)
    }

    static func reference() throws -> Set<String> {
        let run = try Run()
        let p = try run.start(["--no-store"])
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        return Set(run.lines().map(outcome))
    }

    /// Kills after `records` results are in the file, or after `delay` seconds; resumes; compares.
    func killThenResume(records: Int?, delay: Double?, reference: Set<String>) throws {
        let run = try Run()
        let p = try run.start()
        let started = Date()
        while p.isRunning {
            if let records, run.lines().count >= records { break }
            if let delay, Date().timeIntervalSince(started) >= delay { break }
            usleep(2_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let again = try run.start(["--resume"])
        again.waitUntilExit()
        if again.terminationStatus != 0 {
            // Killed before the run was recorded: nothing to resume, so the same command starts afresh.
            let fresh = try run.start()
            fresh.waitUntilExit()
            #expect(fresh.terminationStatus == 0)
        }
        let lines = run.lines()
        #expect(lines.count == reference.count, "killed at \(records.map { "\($0) records" } ?? "\(delay!) s"): \(lines.count) lines")
        #expect(Set(lines.map(Self.outcome)) == reference)
        let store = try RunStore(path: run.store)
        let latest = try #require(try store.runs(limit: 1).first)
        #expect(latest.status == "finished")
        let stored = try store.records(run: latest.id, withPredictions: true)
        #expect(Set(stored.map { Self.outcome($0.json) }) == reference)
        #expect(stored.allSatisfy { $0.probabilities.count == $0.testCount })
    }

    @Test(.enabled(if: available, "needs .build/debug/petri: `make test` builds it first"))
    func aKilledRunLosesNothing() throws {
        let reference = try Self.reference()
        #expect(reference.count == 8)
        for records in [1, 3, 6] { try killThenResume(records: records, delay: nil, reference: reference) }
        for delay in slowTests ? [0.05, 0.3, 0.6, 1.0, 1.5] : [0.3] { try killThenResume(records: nil, delay: delay, reference: reference) }
    }

    @Test(.enabled(if: available, "needs .build/debug/petri: `make test` builds it first"))
    func twoRunsShareAStore() throws {
        let run = try Run()
        let other = run.dir.appendingPathComponent("other.jsonl").path
        let a = try run.start(), b = try run.start(json: other)
        a.waitUntilExit()
        b.waitUntilExit()
        let errors = try FileManager.default.contentsOfDirectory(atPath: run.dir.path).filter { $0.hasPrefix("stderr-") }
            .map { try String(contentsOf: run.dir.appendingPathComponent($0), encoding: .utf8) }
        #expect(a.terminationStatus == 0 && b.terminationStatus == 0, "\(errors)")
        let store = try RunStore(path: run.store)
        let runs = try store.runs(limit: 10)
        #expect(runs.count == 2 && runs.allSatisfy { $0.status == "finished" && $0.resultCount == 8 })
        #expect(run.lines().count == 8 && run.lines(other).count == 8)
    }
}
