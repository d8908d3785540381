import Foundation
import PetriData
import PetriEngine
import PetriNN

/// Frozen-backbone features of every item of a dataset, per (backbone, level, dihedral view), computed
/// once (and cached on disk by `FeatureExtractor`) and shared by every method, split and seed of a study.
public final class FeatureBank {
    public let dataset: Dataset
    public var batchSize = 32
    public var useDiskCache = true
    public var progress: ((String, Int, Int) -> Void)?
    private var extractors: [String: FeatureExtractor] = [:]
    private var memory: [String: Tensor] = [:]
    /// Levels to compute together per backbone (one pass through the network gives them all).
    public var plannedLevels: [String: Set<FeatureLevel>] = [:]

    /// Registers the features `specs` will ask for, so each backbone runs once per view for all its levels.
    public func plan(_ specs: [FeatureSpec]) {
        // Written only when something is new: fits running side by side (`ComputeLanes`) call this on
        // features computed beforehand, and must only read.
        for s in specs { for b in s.backbones where !Set(s.levels).isSubset(of: plannedLevels[b, default: []]) {
            plannedLevels[b, default: []].formUnion(s.levels)
        } }
    }

    public init(dataset: Dataset) { self.dataset = dataset }

    private func extractor(_ backbone: String, _ level: FeatureLevel) throws -> FeatureExtractor {
        let key = "\(backbone)|\(level)"
        if let e = extractors[key] { return e }
        // "random:NAME" = the architecture with random weights (the random-feature control).
        let random = backbone.hasPrefix("random:")
        let e = try FeatureExtractor(backbone: random ? String(backbone.dropFirst(7)) : backbone, level: level,
                                     pretrained: !random)
        e.batchSize = batchSize
        if !useDiskCache { e.cacheDirectory = nil }
        extractors[key] = e
        return e
    }

    /// `[items, D]` features of one view. Throws if an item cannot be read (drop unreadable items first
    /// with `readableItems`).
    ///
    /// - Parameter items: the dataset rows needed (nil: all). Only those are computed; rows not computed
    ///   yet are NaN, so that reading one by mistake cannot go unnoticed. A learning curve at 5 images per
    ///   class needs its 20 training and ~100 test images, not the whole pool: at a newly chosen crop that
    ///   is a third of the backbone passes.
    public func features(backbone: String, level: FeatureLevel = .head, view: Int = 0, crop: Double = 1,
                         items: [Int]? = nil) throws -> Tensor {
        try compute(backbone: backbone, level: level, views: [view], crop: crop, items: items)
        return memory[Self.key(backbone, level, view, crop)]!
    }

    static func key(_ backbone: String, _ level: FeatureLevel, _ view: Int, _ crop: Double) -> String {
        "\(backbone)|\(level)|\(view)|\(crop)"
    }

    /// Which rows of each memory entry hold computed features.
    private var computedRows: [String: [Bool]] = [:]

    /// Fills the memory for `views` of (backbone, crop) at `level` and the planned levels, for `items` (nil:
    /// all): one pass per image for all views and levels, over the images some view still misses.
    private func compute(backbone: String, level: FeatureLevel, views: [Int], crop: Double, items: [Int]?) throws {
        let wanted = items ?? Array(dataset.items.indices)
        var missingViews: [Int] = [], missingSet = Set<Int>()
        for v in views {
            let done = computedRows[Self.key(backbone, level, v, crop)]
            let missing = wanted.filter { done?[$0] != true }
            if !missing.isEmpty { missingViews.append(v); missingSet.formUnion(missing) }
        }
        guard !missingViews.isEmpty else { return }
        let missing = missingSet.sorted()
        let e = try extractor(backbone, level)
        e.extraLevels = Array(plannedLevels[backbone, default: []].subtracting([level])).sorted { "\($0)" < "\($1)" }
        e.preprocessing = TransformPipeline(crop < 1 ? [CenterCrop(fraction: crop)] : [])
        let label = "features \(backbone)" + (missingViews.count > 1 ? " \(missingViews.count) views" : " view \(missingViews[0])")
            + (crop < 1 ? " crop \(crop)" : "")
        let r = try e.extractViews(dataset, items: missing.map { dataset.items[$0] }, views: missingViews) { [progress] done, total in
            progress?(label, done, total)
        }
        guard r.failures.isEmpty else {
            throw DatasetError.malformed(r.failures[0].path, reason: r.failures[0].reason)
        }
        let n = dataset.items.count
        for (vi, v) in missingViews.enumerated() {
            for (l, t) in r.features[vi] {
                let key = Self.key(backbone, l, v, crop)
                let width = t.shape[1]
                var full = memory.removeValue(forKey: key) ?? Tensor(shape: [n, width], repeating: .nan)
                var done = computedRows.removeValue(forKey: key) ?? [Bool](repeating: false, count: n)
                full.withUnsafeMutableBufferPointer { f in
                    t.withUnsafeBufferPointer { src in
                        for (row, item) in missing.enumerated() {
                            for j in 0..<width { f[item * width + j] = src[row * width + j] }
                            done[item] = true
                        }
                    }
                }
                memory[key] = full
                computedRows[key] = done
            }
        }
    }

    /// Mean of the features over `views` dihedral orientations (test-time augmentation of frozen features),
    /// for `items` (nil: all; other rows NaN).
    public func features(backbone: String, level: FeatureLevel = .head, views: Int, crop: Double = 1,
                         items: [Int]? = nil) throws -> Tensor {
        try compute(backbone: backbone, level: level, views: Array(0..<max(1, views)), crop: crop, items: items)
        var sum = try features(backbone: backbone, level: level, view: 0, crop: crop, items: items)
        for v in 1..<max(1, views) { sum.add(try features(backbone: backbone, level: level, view: v, crop: crop, items: items)) }
        return views > 1 ? sum.scaled(by: 1 / Float(views)) : sum
    }

    /// The dataset without items that cannot be read, and the failures (path, reason).
    public static func readableItems(_ dataset: Dataset, decoder: ImageDecoder = ImageDecoder()) -> (Dataset, [(String, String)]) {
        var out = dataset
        var failures: [(String, String)] = []
        out.items = dataset.items.filter { item in
            do { _ = try dataset.image(of: item, decoder: decoder); return true } catch {
                failures.append((item.path, (error as? ImageDecodingError)?.summary ?? "\(error)"))
                return false
            }
        }
        return (out, failures)
    }
}

/// Concatenates feature matrices column-wise, each block L2-normalised first so no backbone dominates.
public func concatenateFeatures(_ blocks: [Tensor]) -> Tensor {
    precondition(!blocks.isEmpty)
    if blocks.count == 1 { return blocks[0] }
    let n = blocks[0].shape[0], widths = blocks.map { $0.shape[1] }, total = widths.reduce(0, +)
    var out = Tensor(uninitialized: [n, total])
    let normalised = blocks.map(l2NormalizedRows)
    out.withUnsafeMutableBufferPointer { o in
        var offset = 0
        for (b, block) in normalised.enumerated() {
            block.withUnsafeBufferPointer { p in
                for i in 0..<n { for j in 0..<widths[b] { o[i * total + offset + j] = p[i * widths[b] + j] } }
            }
            offset += widths[b]
        }
    }
    return out
}
