import Foundation

/// Where the study layer sends what a person running it should see, apart from results: warnings (a class
/// dropped, a backbone that has seen the test images), notes (what was loaded, which run is recorded) and
/// progress. The command line prints them on stderr; a program using Petri from Swift may collect or drop them.
public protocol StudyReporter: AnyObject {
    func warning(_ text: String)
    func note(_ text: String)
    /// A stage of work (`features efficientnet-lite0 8 views`, `training`) with `done` of `total` steps.
    func progress(_ stage: String, _ done: Int, _ total: Int)
    /// A run is being recorded in the run store (the command line marks it interrupted on Ctrl-C).
    func recording(_ recorder: RunRecorder)
}

extension StudyReporter {
    public func recording(_ recorder: RunRecorder) {}
}

/// Keeps warnings and notes (each distinct warning once) and drops progress.
public final class CollectingReporter: StudyReporter, @unchecked Sendable {
    private let lock = NSLock()
    public private(set) var warnings: [String] = []
    public private(set) var notes: [String] = []

    public init() {}

    public func warning(_ text: String) {
        lock.withLock { if !warnings.contains(text) { warnings.append(text) } }
    }

    public func note(_ text: String) { lock.withLock { notes.append(text) } }
    public func progress(_ stage: String, _ done: Int, _ total: Int) {}
}

extension StudyReporter {
    /// The progress callback the learning layers take.
    public var progressCallback: (String, Int, Int) -> Void { { [weak self] in self?.progress($0, $1, $2) } }
}
