import Foundation
import PetriEngine
import ZIPFoundation

/// Deterministic mutations of a file's bytes: mutant `index` of a seed file is always the same, so a failure
/// found once can be replayed (`petri-fuzz replay KIND INDEX`).
public struct Mutator {
    var rng: SeededGenerator

    public init(seed: UInt64, index: Int) {
        rng = SeededGenerator(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15, stream: "fuzz")
    }

    mutating func int(_ range: Range<Int>) -> Int { range.isEmpty ? range.lowerBound : Int.random(in: range, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    /// Values that break size arithmetic: zero, one, negative, sign bits, powers of two at the edges.
    static let interesting: [UInt64] = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                                        1 << 32, 1 << 33, 1 << 40, 1 << 62, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]

    /// One to four random edits — bit flips, bytes set to edge values, 1/2/4/8-byte integers overwritten with
    /// `interesting` values, a cut, a duplicated or deleted chunk — placed in `focus` (default: anywhere) most of
    /// the time, so that headers are hit as often as the bulk of the data.
    public mutating func mutate(_ bytes: [UInt8], focus: Range<Int>? = nil) -> [UInt8] {
        var b = bytes
        for _ in 0..<(1 + int(0..<4)) {
            guard !b.isEmpty else { return b }
            let region = focus.map { $0.clamped(to: 0..<b.count) } ?? (0..<b.count)
            let area = chance(0.85) && !region.isEmpty ? region : 0..<b.count
            let at = int(area)
            switch int(0..<7) {
            case 0:
                b[at] ^= UInt8(1) << UInt8(int(0..<8))
            case 1:
                b[at] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE][int(0..<6)]
            case 2, 3:
                let width = [1, 2, 4, 8][int(0..<4)]
                var v = Self.interesting[int(0..<Self.interesting.count)]
                if chance(0.3) { v = UInt64(bitPattern: -Int64(bitPattern: v)) }
                for k in 0..<width where at + k < b.count { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
            case 4:
                b = Array(b.prefix(at))
            case 5:
                let n = min(b.count - at, 1 + int(0..<256))
                b.insert(contentsOf: b[at..<(at + n)], at: at)
            default:
                let n = min(b.count - at, 1 + int(0..<64))
                b.removeSubrange(at..<(at + n))
            }
        }
        return b
    }

    /// A JSON document mutated in its structure: a field deleted, set to a value of another type or to an edge
    /// number, an array emptied, shortened or doubled. Falls back to byte edits when the text is not JSON.
    public mutating func mutateJSON(_ bytes: [UInt8]) -> [UInt8] {
        guard chance(0.8), let object = try? JSONSerialization.jsonObject(with: Data(bytes)) else { return mutate(bytes) }
        var root = object
        for _ in 0..<(1 + int(0..<3)) { root = mutateValue(root, depth: 0) }
        return (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])).map(Array.init) ?? mutate(bytes)
    }

    mutating func edgeValue() -> Any {
        let values: [Any] = [0, -1, 1, 2, 3, 1_000_000_000, Int.max, -Int.max, 1e308, -1e308, 0.0, -0.5, 1.5, "", "x", "NaN",
                             [Any](), [0], [String: Any](), NSNull(), true, false]
        return values[int(0..<values.count)]
    }

    mutating func mutateValue(_ value: Any, depth: Int) -> Any {
        switch value {
        case var d as [String: Any] where !d.isEmpty:
            let keys = d.keys.sorted()
            let key = keys[int(0..<keys.count)]
            if depth < 3, chance(0.6) { d[key] = mutateValue(d[key]!, depth: depth + 1) } else if chance(0.3) { d[key] = nil } else { d[key] = edgeValue() }
            return d
        case var a as [Any] where !a.isEmpty:
            switch int(0..<5) {
            case 0: return [Any]()
            case 1: return Array(a.prefix(int(0..<a.count)))
            case 2: return a + a
            case 3:
                let i = int(0..<a.count)
                a[i] = depth < 3 ? mutateValue(a[i], depth: depth + 1) : edgeValue()
                return a
            default:
                let i = int(0..<a.count)
                a[i] = edgeValue()
                return a
            }
        default:
            return edgeValue()
        }
    }

    /// A zip archive with one member replaced by `mutate(member)`, written back with correct CRCs so the
    /// mutation reaches the parser behind the zip. Nil when the bytes are not a zip this can rewrite.
    public mutating func mutateZipMember(_ bytes: [UInt8], choose: ([String]) -> [String], scratch: URL,
                                         mutate: (inout Mutator, String, [UInt8]) -> [UInt8]) -> [UInt8]? {
        let input = scratch.appendingPathExtension("in.zip"), output = scratch.appendingPathExtension("out.zip")
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: output)
        }
        guard (try? Data(bytes).write(to: input)) != nil, let source = try? Archive(url: input, accessMode: .read, pathEncoding: nil),
              let target = try? Archive(url: output, accessMode: .create, pathEncoding: nil) else { return nil }
        let entries = Array(source)
        let candidates = choose(entries.map(\.path))
        guard !candidates.isEmpty else { return nil }
        let victim = candidates[int(0..<candidates.count)]
        for entry in entries {
            var data = [UInt8]()
            guard (try? source.extract(entry, skipCRC32: true, consumer: { data += $0 })) != nil else { return nil }
            if entry.path == victim { data = mutate(&self, entry.path, data) }
            let payload = Data(data)
            do {
                try target.addEntry(with: entry.path, type: .file, uncompressedSize: Int64(payload.count),
                                    compressionMethod: entry.path.hasSuffix(".npy") && chance(0.5) ? .deflate : .none) { position, size in
                    payload.subdata(in: Int(position)..<(Int(position) + size))
                }
            } catch { return nil }
        }
        return (try? Data(contentsOf: output)).map(Array.init)
    }
}
