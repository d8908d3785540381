import ArgumentParser
import Dispatch
import Foundation
import PetriLearn
import PetriStudy

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
        FileHandle.standardError.write(((isTerminal ? "\r\u{1B}[K" + line + (finished ? "\n" : "") : line + "\n")).data(using: .utf8)!)
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}

/// The study layer's reporter on a terminal: warnings always (each once), notes and progress unless quiet;
/// a run being recorded is marked interrupted on Ctrl-C or SIGTERM before the process exits.
final class TerminalReporter: StudyReporter {
    let quiet: Bool
    private let lock = NSLock()
    private var warned: Set<String> = []
    private var stage = ""
    private var line: ProgressLine?
    private var signalSources: [DispatchSourceSignal] = []

    init(quiet: Bool) { self.quiet = quiet }

    func warning(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        guard warned.insert(text).inserted else { return }
        printError((text.hasPrefix("skipped ") ? "" : "warning: ") + text)
    }

    func note(_ text: String) { if !quiet { printError(text) } }

    /// A fresh line, with its own rate and ETA, whenever the stage changes.
    func progress(_ stage: String, _ done: Int, _ total: Int) {
        lock.lock(); defer { lock.unlock() }
        if stage != self.stage || line == nil || done < 2 {
            self.stage = stage
            line = ProgressLine(stage, quiet: quiet)
        }
        line?.update(done, total)
    }

    func recording(_ recorder: RunRecorder) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                recorder.interrupted()
                if let id = recorder.runID { printError("\ninterrupted: run \(id) keeps its finished results; continue with --resume") }
                exit(sig == SIGINT ? 130 : 143)
            }
            source.resume()
            signalSources.append(source)
        }
    }
}

/// Runs a study-layer call, turning its setting errors into argument errors (exit 64); other errors exit 1
/// with their message, which names the file and the problem.
func studyCall<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as StudyError {
        if case let .invalidSetting(name, problem) = e { throw ValidationError("\(name): \(problem)") }
        throw e
    } catch let e as MethodSpecError {
        throw ValidationError("\(e)")
    }
}

/// Writes text to a file atomically.
func write(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
}
