import Foundation

/// The child side of `petri-fuzz`: checks mutants `start..<start+count` of one kind, one line per mutant on
/// standard output — `begin I`, then `end I OUTCOME PEAK_KB MESSAGE` — so that the parent knows which mutant a
/// crash or a hang belongs to, and how much memory each took (the peak resident size, reset before each).
public enum FuzzChild {
    public static func run(kind: FuzzKind, seed: UInt64, start: Int, count: Int, root: URL, scratch: URL) throws {
        let seeds = try FuzzSeeds(root: root, scratch: scratch)
        setvbuf(stdout, nil, _IOLBF, 0)
        for index in start..<(start + count) {
            let (bytes, ext) = try seeds.mutant(kind, index: index, seed: seed)
            let file = scratch.appendingPathComponent("mutant-\(getpid()).\(ext)")
            try Data(bytes).write(to: file)
            resetPeakMemory()
            print("begin \(index)")
            let outcome = seeds.check(kind, file: file)
            let peak = peakMemoryKB()
            switch outcome {
            case .accepted: print("end \(index) accepted \(peak)")
            case let .refused(m): print("end \(index) refused \(peak) \(oneLine(m))")
            case let .failed(m): print("end \(index) failed \(peak) \(oneLine(m))")
            }
        }
        print("done")
    }

    static func oneLine(_ s: String) -> String { String(s.replacingOccurrences(of: "\n", with: " ").prefix(300)) }

    /// Resets the kernel's peak-RSS mark (Linux: `/proc/self/clear_refs`, 5).
    static func resetPeakMemory() {
        if let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            h.write(Data("5".utf8))
            try? h.close()
        }
    }

    /// Peak resident memory since the last reset, in KiB (`VmHWM`).
    static func peakMemoryKB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}
