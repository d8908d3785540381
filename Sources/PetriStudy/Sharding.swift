import Foundation
import PetriLearn

/// One of `count` parts of a run's evaluations (`--shard K/N`), so that N jobs — a Slurm array, say — each run
/// one command and together run everything once. The evaluations (method × size × seed) are ordered method by
/// method, size by size, seed by seed, and dealt round-robin: each shard gets about 1/N of every method at every
/// size. Splits, seeds and records are exactly those of the unsharded run.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    /// 1…count.
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) throws {
        guard count >= 1, (1...count).contains(index) else { throw StudyError.invalidSetting("--shard", "\(index)/\(count) (K/N with 1 ≤ K ≤ N)") }
        self.index = index
        self.count = count
    }

    /// `K/N`.
    public init(_ text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
            throw StudyError.invalidSetting("--shard", "'\(text)' is not K/N")
        }
        try self.init(index: k, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    /// The keys of this shard's evaluations.
    public func keys(methods: [String], sizes: [Int?], seeds: [UInt64]) -> Set<RunKey> {
        var out = Set<RunKey>(), i = 0
        for m in methods {
            for size in sizes {
                for seed in seeds {
                    if i % count == index - 1 { out.insert(RunKey(method: m, size: size, seed: seed)) }
                    i += 1
                }
            }
        }
        return out
    }
}

/// Merging the JSON-lines files of several runs or shards (`petri runs merge`): every result once, in the order
/// first seen; a result found twice with different figures is an error naming both files.
public enum RecordMerge {
    public static func merge(_ inputs: [String], into output: String) throws -> (results: Int, duplicates: Int) {
        var seen: [String: (line: String, file: String)] = [:], order: [String] = [], duplicates = 0
        for file in inputs {
            guard let data = FileManager.default.contents(atPath: file) else { throw StudyError.failed("\(file): cannot read") }
            for (n, line) in data.split(separator: 0x0A).enumerated() {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let key = RunKey(json: o) else {
                    throw StudyError.failed("\(file):\(n + 1): not a result record")
                }
                let id = key.description + "|" + (o["preprocess"] as? String ?? "none") + "|" + (o["evaluation"] as? String ?? "few-shot")
                var measured = o
                measured["seconds"] = nil
                let text = String(decoding: try JSONSerialization.data(withJSONObject: measured, options: [.sortedKeys]), as: UTF8.self)
                if let earlier = seen[id] {
                    duplicates += 1
                    guard earlier.line == text else {
                        throw StudyError.failed("\(file):\(n + 1): \(key) differs from the same result in \(earlier.file)")
                    }
                    continue
                }
                seen[id] = (text, file)
                order.append(id)
            }
        }
        let out = order.map { seen[$0]!.line }.joined(separator: "\n") + (order.isEmpty ? "" : "\n")
        try Data(out.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
        return (order.count, duplicates)
    }
}
