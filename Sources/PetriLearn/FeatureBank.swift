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
        for s in specs { for b in s.backbones { plannedLevels[b, default: []].formUnion(s.levels) } }
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
    public func features(backbone: String, level: FeatureLevel = .head, view: Int = 0, crop: Double = 1) throws -> Tensor {
        try compute(backbone: backbone, level: level, views: [view], crop: crop)
        return memory["\(backbone)|\(level)|\(view)|\(crop)"]!
    }

    /// Fills the memory for `views` of (backbone, crop) at `level` and the planned levels: one pass per image
    /// for all views and levels that are missing.
    private func compute(backbone: String, level: FeatureLevel, views: [Int], crop: Double) throws {
        let missing = views.filter { memory["\(backbone)|\(level)|\($0)|\(crop)"] == nil }
        guard !missing.isEmpty else { return }
        let e = try extractor(backbone, level)
        e.extraLevels = Array(plannedLevels[backbone, default: []].subtracting([level])).sorted { "\($0)" < "\($1)" }
        e.preprocessing = TransformPipeline(crop < 1 ? [CenterCrop(fraction: crop)] : [])
        let label = "features \(backbone)" + (missing.count > 1 ? " \(missing.count) views" : " view \(missing[0])")
            + (crop < 1 ? " crop \(crop)" : "")
        let r = try e.extractViews(dataset, items: dataset.items, views: missing) { [progress] done, total in
            progress?(label, done, total)
        }
        guard r.failures.isEmpty else {
            throw DatasetError.malformed(r.failures[0].path, reason: r.failures[0].reason)
        }
        for (vi, v) in missing.enumerated() {
            for (l, t) in r.features[vi] { memory["\(backbone)|\(l)|\(v)|\(crop)"] = t }
        }
    }

    /// Mean of the features over `views` dihedral orientations (test-time augmentation of frozen features).
    public func features(backbone: String, level: FeatureLevel = .head, views: Int, crop: Double = 1) throws -> Tensor {
        try compute(backbone: backbone, level: level, views: Array(0..<max(1, views)), crop: crop)
        var sum = try features(backbone: backbone, level: level, view: 0, crop: crop)
        for v in 1..<max(1, views) { sum.add(try features(backbone: backbone, level: level, view: v, crop: crop)) }
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
