import Foundation

/// One self-overwriting progress line on stderr: stage, done/total, rate and ETA. Silent with `quiet`,
/// and plain (one line per update, at most every 2 s) when stderr is not a terminal.
final class ProgressLine {
    let stage: String
    let quiet: Bool
    private let start = Date()
    private var lastPrint = Date.distantPast
    private let isTerminal = isatty(STDERR_FILENO) != 0

    init(_ stage: String, quiet: Bool) {
        self.stage = stage
        self.quiet = quiet
    }

    func update(_ done: Int, _ total: Int) {
        guard !quiet else { return }
        let now = Date()
        let finished = done >= total
        guard finished || now.timeIntervalSince(lastPrint) >= (isTerminal ? 0.2 : 2) else { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 && !finished ? String(format: ", ETA %.0fs", Double(total - done) / rate) : ""
        // A stage that finishes at once (features from the cache) has no meaningful rate.
        let line = finished && elapsed < 0.5
            ? String(format: "%@: %d/%d (%.1fs)", stage, done, total, elapsed)
            : String(format: "%@: %d/%d (%.1f/s%@, %.1fs)", stage, done, total, rate, eta, elapsed)
        if isTerminal {
            FileHandle.standardError.write(("\r\u{1B}[K" + line + (finished ? "\n" : "")).data(using: .utf8)!)
        } else {
            FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}

/// Progress of a multi-stage job (feature passes, training steps, ...): a fresh `ProgressLine`, with its own
/// rate and ETA, whenever the stage named by the reporter changes.
final class StageProgress {
    let quiet: Bool
    private var stage = ""
    private var line: ProgressLine?

    init(quiet: Bool) { self.quiet = quiet }

    func update(_ stage: String, _ done: Int, _ total: Int) {
        if stage != self.stage || line == nil || done < 2 {
            self.stage = stage
            line = ProgressLine(stage, quiet: quiet)
        }
        line?.update(done, total)
    }
}
