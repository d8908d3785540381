import Foundation
import PetriEngine

/// What `petri inspect` reports about a dataset: class balance, image formats, unreadable files, exact
/// duplicates (same bytes or pixels), duplicates with conflicting labels, and near-duplicates.
public struct DatasetInspection: Sendable {
    public struct Unreadable: Sendable { public let path: String; public let reason: String }
    public struct NearDuplicate: Sendable {
        public let a: Int
        public let b: Int
        public let correlation: Float
    }

    public var classCounts: [Int] = []
    public var sizes: [(width: Int, height: Int)] = []
    public var channels: [Int: Int] = [:]
    public var bitDepths: [Int: Int] = [:]
    public var unreadable: [Unreadable] = []
    /// Groups of item indices with identical content (each group has ≥ 2 members).
    public var exactDuplicates: [[Int]] = []
    /// The subset of `exactDuplicates` whose members carry different labels.
    public var conflictingDuplicates: [[Int]] = []
    /// Pairs of different-content images whose 32×32 grey thumbnails correlate at ≥ the threshold.
    public var nearDuplicates: [NearDuplicate] = []
    public var contentHashes: [String?] = []

    /// Exact-duplicate group keys per item (the content hash when the item has a duplicate, else nil):
    /// pass as split groups so duplicates never straddle train and test.
    public var duplicateGroups: [String?] {
        var out = [String?](repeating: nil, count: contentHashes.count)
        for g in exactDuplicates { for i in g { out[i] = contentHashes[i] } }
        return out
    }
}

extension Dataset {
    /// Reads every image once. `nearThreshold`: Pearson correlation of 32×32 grey thumbnails above which two
    /// images count as near-duplicates (0.95 flags re-encodings, small crops and adjacent video frames).
    public func inspect(decoder: ImageDecoder = ImageDecoder(), nearThreshold: Float = 0.95,
                        progress: ((Int, Int) -> Void)? = nil) -> DatasetInspection {
        var r = DatasetInspection()
        r.classCounts = classCounts
        r.contentHashes = [String?](repeating: nil, count: items.count)
        let side = 32
        var thumbs = [Float](repeating: 0, count: items.count * side * side)
        var readable = [Bool](repeating: false, count: items.count)
        for (i, item) in items.enumerated() {
            do {
                let bytes = try contents(of: item)
                r.contentHashes[i] = SHA256.hex(bytes)
                let img = try image(of: item, decoder: decoder, bytes: bytes)
                r.sizes.append((img.width, img.height))
                r.channels[img.sourceChannels, default: 0] += 1
                r.bitDepths[img.sourceBitDepth, default: 0] += 1
                // Zero-mean, unit-norm thumbnail: dot products are correlations.
                var t = Resampler.resize(FloatImage(img).luma, width: img.width, height: img.height, channels: 1,
                                         toWidth: side, height: side)
                let mean = t.reduce(0, +) / Float(t.count)
                t = t.map { $0 - mean }
                let norm = t.reduce(0) { $0 + $1 * $1 }.squareRoot()
                if norm > 1e-6 {
                    for k in 0..<t.count { thumbs[i * side * side + k] = t[k] / norm }
                    readable[i] = true
                }
            } catch {
                r.unreadable.append(.init(path: item.path, reason: (error as? ImageDecodingError)?.summary ?? "\(error)"))
            }
            progress?(i + 1, items.count)
        }
        var byHash: [String: [Int]] = [:]
        for (i, h) in r.contentHashes.enumerated() { if let h { byHash[h, default: []].append(i) } }
        r.exactDuplicates = byHash.values.filter { $0.count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }
        r.conflictingDuplicates = r.exactDuplicates.filter { Set($0.map { items[$0].label }).count > 1 }

        // All-pairs correlation in blocks (sgemm), skipping pairs with identical content.
        let n = items.count, d = side * side, block = 1024
        thumbs.withUnsafeBufferPointer { tp in
            var corr = [Float](repeating: 0, count: block * block)
            for i0 in stride(from: 0, to: n, by: block) {
                let ni = min(block, n - i0)
                for j0 in stride(from: i0, to: n, by: block) {
                    let nj = min(block, n - j0)
                    corr.withUnsafeMutableBufferPointer { cp in
                        sgemm(transposeA: false, transposeB: true, m: ni, n: nj, k: d, a: tp.baseAddress! + i0 * d,
                              lda: d, b: tp.baseAddress! + j0 * d, ldb: d, c: cp.baseAddress!, ldc: nj)
                    }
                    for a in 0..<ni {
                        let i = i0 + a
                        guard readable[i] else { continue }
                        for b in 0..<nj {
                            let j = j0 + b
                            guard j > i, readable[j], corr[a * nj + b] >= nearThreshold,
                                  r.contentHashes[i] != r.contentHashes[j] else { continue }
                            r.nearDuplicates.append(.init(a: i, b: j, correlation: corr[a * nj + b]))
                        }
                    }
                }
            }
        }
        r.nearDuplicates.sort { $0.correlation > $1.correlation }
        return r
    }
}
