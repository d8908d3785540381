import Foundation
import PetriData
import PetriLearn
import PetriStore

/// Where and whether a run is recorded in the run store.
public struct StoreSettings: Sendable {
    /// The SQLite file; nil: `RunStore.defaultPath`.
    public var path: String?
    /// Continue the latest unfinished run with the same config and data, skipping what it finished.
    public var resume = false
    /// False: the run is not recorded (`--no-store`).
    public var enabled = true

    public init(path: String? = nil, resume: Bool = false, enabled: Bool = true) {
        self.path = path
        self.resume = resume
        self.enabled = enabled
    }
}

/// Records one run in the store as it goes: a row for the run, one per finished result (with predictions),
/// and its final status. With `resume` it takes over the matching unfinished run and knows which results are
/// already there. A killed run is shown as interrupted by `petri runs` (its process is gone); `interrupted()`
/// marks it so at once, for a signal handler.
public final class RunRecorder {
    let store: RunStore?
    public let runID: Int64?
    /// Results already in the resumed run.
    public private(set) var completed: Set<RunKey> = []
    /// The resumed run's results (for the report).
    public private(set) var earlier: [CurveRecord] = []

    public init(_ settings: StoreSettings, config: RunConfig, dataHash: String, command: String, reporter: StudyReporter) throws {
        guard settings.enabled else {
            store = nil
            runID = nil
            if settings.resume { throw StudyError.invalidSetting("--resume", "it needs the run store (drop --no-store)") }
            return
        }
        let store = try RunStore(path: settings.path ?? RunStore.defaultPath)
        self.store = store
        let recorded = config.json(dataHash: dataHash)
        let configHash = RunConfig.hash(recorded)
        if settings.resume {
            guard let previous = try store.resumable(configHash: configHash) else {
                throw StudyError.failed("--resume: no unfinished \(config.kind) run with these settings and data in \(store.path) (see `petri runs`)")
            }
            try store.reopen(previous.id)
            runID = previous.id
            completed = try store.completedKeys(run: previous.id)
            earlier = try store.records(run: previous.id)
            reporter.note("resuming run \(previous.id): \(completed.count) results already done")
        } else {
            runID = try store.begin(kind: config.kind, dataset: config.dataset.source, dataHash: dataHash, configHash: configHash,
                                    config: recorded, command: command)
            reporter.note("run \(runID!) recorded in \(store.path)")
        }
    }

    public func isDone(_ key: RunKey) -> Bool { completed.contains(key) }

    public func record(_ r: CurveRecord, dataset: Dataset) throws {
        guard let store, let runID else { return }
        try store.add(r, run: runID, paths: r.test.map { dataset.items[$0].path }, labels: r.test.map { dataset.items[$0].label })
    }

    public func finish(seconds: Double, output: String? = nil) {
        guard let store, let runID else { return }
        try? store.finish(runID, seconds: seconds, output: output)
    }

    public func fail() {
        guard let store, let runID else { return }
        try? store.finish(runID, status: "failed")
    }

    /// Marks the run interrupted (from a signal handler, before the process exits); its results stay.
    public func interrupted() {
        guard let store, let runID else { return }
        try? store.finish(runID, status: "interrupted")
    }
}
