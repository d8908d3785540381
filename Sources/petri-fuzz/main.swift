import Foundation
import PetriFuzz

// `make fuzz`: mutants of every format Petri reads (checkpoints, model files, backbone files, .npz datasets,
// images), each checked in a child process that reports mutant by mutant. A mutant fails when its child
// crashes or traps, takes longer than the timeout, uses more than the memory limit, or is accepted with a bad
// output (NaN or malformed probabilities) or refused without naming the file. Exits 1 on any failure, after
// listing each with `petri-fuzz replay KIND INDEX` to reproduce it.
//
//   petri-fuzz [--count N] [--seed S] [--kinds checkpoint,model,...] [--timeout S] [--max-memory-mb M] [--scratch DIR]
//   petri-fuzz replay KIND INDEX [--seed S]
//   petri-fuzz child KIND SEED START COUNT ROOT SCRATCH      (used by the parent)

var args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String, _ fallback: String) -> String {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return fallback }
    defer { args.removeSubrange(i...(i + 1)) }
    return args[i + 1]
}
let root = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
let seed = UInt64(option("--seed", "1")) ?? 1
let scratch = URL(fileURLWithPath: option("--scratch", FileManager.default.temporaryDirectory.appendingPathComponent("petri-fuzz").path))

if args.first == "child", args.count == 7, let kind = FuzzKind(rawValue: args[1]), let s = UInt64(args[2]),
   let start = Int(args[3]), let count = Int(args[4]) {
    // A hard ceiling on address space, far above the memory limit, so that a runaway allocation fails fast.
    var limit = rlimit(rlim_cur: 16 << 30, rlim_max: 16 << 30)
    setrlimit(Int32(RLIMIT_AS.rawValue), &limit)
    do { try FuzzChild.run(kind: kind, seed: s, start: start, count: count, root: URL(fileURLWithPath: args[5]), scratch: URL(fileURLWithPath: args[6])) } catch {
        print("error \(error)")
        exit(2)
    }
    exit(0)
}

if args.first == "replay", args.count == 3, let kind = FuzzKind(rawValue: args[1]), let index = Int(args[2]) {
    let seeds = try FuzzSeeds(root: root, scratch: scratch)
    let (bytes, ext) = try seeds.mutant(kind, index: index, seed: seed)
    let file = scratch.appendingPathComponent("replay-\(kind.rawValue)-\(index).\(ext)")
    try Data(bytes).write(to: file)
    print("mutant written to \(file.path)")
    print(seeds.check(kind, file: file))
    exit(0)
}

let total = Int(option("--count", "10000")) ?? 10000
let timeout = Double(option("--timeout", "60")) ?? 60
let maxMemoryKB = (Int(option("--max-memory-mb", "2048")) ?? 2048) * 1024
let kinds = option("--kinds", FuzzKind.allCases.map(\.rawValue).joined(separator: ",")).split(separator: ",").compactMap { FuzzKind(rawValue: String($0)) }
// Shares of the mutants: the formats with the most structure get the most.
let shares: [FuzzKind: Double] = [.checkpoint: 0.3, .model: 0.2, .backbone: 0.1, .npz: 0.2, .image: 0.2]
let shareTotal = kinds.map { shares[$0]! }.reduce(0, +)

print("preparing seeds in \(scratch.path)")
_ = try FuzzSeeds(root: root, scratch: scratch)

/// Lines of a child's output as they arrive (filled on the pipe's queue, taken on the main thread).
final class LineBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data(), pending: [String] = []

    func add(_ d: Data) {
        lock.withLock {
            buffer.append(d)
            while let nl = buffer.firstIndex(of: 0x0A) {
                pending.append(String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self))
                buffer.removeSubrange(buffer.startIndex...nl)
            }
        }
    }

    func take() -> [String] { lock.withLock { defer { pending = [] }; return pending } }
    var isEmpty: Bool { lock.withLock { pending.isEmpty } }
}

struct Tally { var accepted = 0, refused = 0, failures: [(Int, String)] = [], peakKB = 0 }

/// Runs mutants `range` of `kind` in children, a batch each, restarting after a crash or a hang.
func fuzz(_ kind: FuzzKind, _ range: Range<Int>) -> Tally {
    var tally = Tally()
    var next = range.lowerBound
    let batch = kind == .checkpoint || kind == .backbone ? 50 : 200
    while next < range.upperBound {
        let count = min(batch, range.upperBound - next)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        p.arguments = ["child", kind.rawValue, String(seed), String(next), String(count), root.path, scratch.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { tally.failures.append((next, "cannot start a child: \(error)")); return tally }
        var current: Int?, lastLine = Date(), finished = false
        let handle = pipe.fileHandleForReading
        let lines = LineBuffer()
        handle.readabilityHandler = { h in lines.add(h.availableData) }
        while true {
            let got = lines.take()
            for line in got {
                lastLine = Date()
                let parts = line.split(separator: " ", maxSplits: 4).map(String.init)
                switch parts.first {
                case "begin": current = Int(parts[1])
                case "end":
                    let index = Int(parts[1])!, peak = Int(parts[3]) ?? 0
                    tally.peakKB = max(tally.peakKB, peak)
                    switch parts[2] {
                    case "accepted": tally.accepted += 1
                    case "refused": tally.refused += 1
                    default: tally.failures.append((index, parts.count > 4 ? parts[4] : "failed"))
                    }
                    if peak > maxMemoryKB { tally.failures.append((index, "peak memory \(peak / 1024) MB")) }
                    current = nil
                    next = index + 1
                case "done": finished = true
                case "error": tally.failures.append((next, line)); finished = true; next = range.upperBound
                default: break
                }
            }
            if !p.isRunning && lines.isEmpty { break }
            if Date().timeIntervalSince(lastLine) > timeout {
                p.terminate()
                kill(p.processIdentifier, SIGKILL)
                tally.failures.append((current ?? next, "hang: no answer in \(Int(timeout)) s"))
                next = (current ?? next) + 1
                break
            }
            usleep(5_000)
        }
        p.waitUntilExit()
        handle.readabilityHandler = nil
        if !finished, p.terminationReason == .uncaughtSignal || p.terminationStatus != 0, let c = current {
            tally.failures.append((c, "crash: \(p.terminationReason == .uncaughtSignal ? "signal \(p.terminationStatus)" : "exit \(p.terminationStatus)")"))
            next = c + 1
        }
    }
    return tally
}

var failed = false
let start = Date()
print("kind        mutants  accepted  refused  failures  peak MB")
for kind in kinds {
    let n = Int((Double(total) * shares[kind]! / shareTotal).rounded())
    let t = fuzz(kind, 0..<n)
    print(kind.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
          + String(format: " %8d %9d %8d %9d %8d", n, t.accepted, t.refused, t.failures.count, t.peakKB / 1024))
    for (index, reason) in t.failures.prefix(20) {
        print("  \(kind.rawValue) \(index): \(reason)   (petri-fuzz replay \(kind.rawValue) \(index) --seed \(seed))")
    }
    failed = failed || !t.failures.isEmpty
}
print(String(format: "time: %.0f s", Date().timeIntervalSince(start)))
exit(failed ? 1 : 0)
