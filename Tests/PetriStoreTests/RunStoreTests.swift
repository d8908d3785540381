import Foundation
import PetriLearn
import Testing
@testable import PetriStore

@Suite struct RunStoreTests {
    func temporaryStore() throws -> RunStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petri-store-\(UUID().uuidString)")
        return try RunStore(path: dir.appendingPathComponent("nested/runs.sqlite").path)
    }

    func record(_ method: String, size: Int?, seed: UInt64, balanced: Double) -> CurveRecord {
        CurveRecord(dataset: "/data", method: method, chosen: method == "auto" ? "lp" : nil,
                    innerScores: method == "auto" ? ["lp": 0.5] : [:], size: size, seed: seed, trainCount: 10, testCount: 3,
                    balancedAccuracy: balanced, accuracy: 0.7, macroF1: 0.6, auc: nil, perClassRecall: [1, nil],
                    confusion: [[1, 0], [1, 1]], seconds: 1.5, classNames: ["a", "b"], test: [4, 7, 9],
                    probabilities: [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    }

    @Test func resultsAndPredictionsRoundTrip() throws {
        let store = try temporaryStore()
        let run = try store.begin(kind: "curve", dataset: "/data", dataHash: "abc", configHash: "h1",
                                  config: ["sizes": "5,all"], command: "petri curve /data")
        try store.add(record("auto", size: 5, seed: 0, balanced: 0.75), run: run, paths: ["x", "y", "z"], labels: [0, 1, 1])
        try store.add(record("lp", size: nil, seed: 1, balanced: 0.5), run: run, paths: ["x", "y", "z"], labels: [0, 1, 1])
        let back = try store.records(run: run)
        #expect(back.count == 2)
        #expect(back[0].method == "auto" && back[0].size == 5 && back[0].seed == 0 && back[0].balancedAccuracy == 0.75)
        #expect(back[0].chosen == "lp" && back[0].innerScores == ["lp": 0.5])
        #expect(back[0].perClassRecall == [1, nil] && back[0].confusion == [[1, 0], [1, 1]] && back[0].auc == nil)
        #expect(back[0].test == [4, 7, 9] && back[0].probabilities == [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        #expect(back[1].size == nil && back[1].sizeLabel == "all")
        #expect(try store.completedKeys(run: run) == [RunKey(method: "auto", size: 5, seed: 0), RunKey(method: "lp", size: nil, seed: 1)])
        let summary = try #require(try store.run(run))
        #expect(summary.resultCount == 2 && summary.status == "running" && summary.config["sizes"] as? String == "5,all")
        // This process is alive, so the run shows as running and is not offered for --resume.
        #expect(summary.effectiveStatus == "running")
        #expect(try store.resumable(configHash: "h1") == nil)
    }

    @Test func interruptedRunsAreResumableFinishedAreNot() throws {
        let store = try temporaryStore()
        let a = try store.begin(kind: "study", dataset: "/d", dataHash: "x", configHash: "same", config: [:], command: "c")
        try store.finish(a, status: "interrupted")
        let b = try store.begin(kind: "study", dataset: "/d", dataHash: "x", configHash: "same", config: [:], command: "c")
        try store.finish(b, seconds: 3, output: "/r.html")
        #expect(try store.resumable(configHash: "same")?.id == a)
        #expect(try store.resumable(configHash: "other") == nil)
        try store.reopen(a)
        #expect(try store.run(a)?.status == "running")
        let finished = try #require(try store.run(b))
        #expect(finished.status == "finished" && finished.seconds == 3 && finished.output == "/r.html" && finished.finishedAt != nil)
        #expect(try store.runs().map(\.id) == [b, a])
    }

    @Test func reRecordingAResultReplacesIt() throws {
        let store = try temporaryStore()
        let run = try store.begin(kind: "curve", dataset: "/d", dataHash: "x", configHash: "h", config: [:], command: "c")
        try store.add(record("lp", size: 5, seed: 0, balanced: 0.5), run: run, paths: [], labels: [])
        try store.add(record("lp", size: 5, seed: 0, balanced: 0.6), run: run, paths: [], labels: [])
        let back = try store.records(run: run)
        #expect(back.count == 1 && back[0].balancedAccuracy == 0.6)
    }
}
