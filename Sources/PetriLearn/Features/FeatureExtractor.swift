import Foundation
import PetriData
import PetriEngine
import PetriNN

/// Computes pooled backbone features for image files, decoding the next batch on a background thread
/// while the engine runs the current one, and caching each image's features on disk under a key made of
/// the image bytes' SHA-256, the backbone, its weights, its preprocessing and the feature level.
public final class FeatureExtractor {
    public let backbone: String
    public let level: FeatureLevel
    /// Further levels computed in the same pass and cached alongside (read them with `extractLevels`).
    public var extraLevels: [FeatureLevel] = []
    public let model: EfficientNetLite
    public let dataConfig: DataConfig
    public var batchSize = 32
    public var decoder = ImageDecoder()
    /// nil disables the cache.
    public var cacheDirectory: URL?
    /// Deterministic preprocessing applied before the backbone's own resize and normalisation
    /// (part of the cache key).
    public var preprocessing = TransformPipeline()

    public struct Failure: Sendable {
        public let path: String
        public let reason: String
    }

    public struct Result {
        /// `[kept.count, D]`, rows in the order of `kept`.
        public var features: Tensor
        /// Indices (into the input paths) of the images that could be read.
        public var kept: [Int]
        public var failures: [Failure]
        public var cacheHits: Int
    }

    public init(backbone: String, level: FeatureLevel = .head, pretrained: Bool = true) throws {
        self.backbone = backbone
        self.level = level
        (model, dataConfig) = try ModelRegistry.make(backbone, pretrained: pretrained)
        let entry = try ModelRegistry.entry(backbone)
        baseKey = "petri-features-v1|\(backbone)|\(pretrained ? entry.weightsFile + (entry.fingerprint.map { "@" + $0 } ?? "") : "random")|\(dataConfig.fingerprint)"
        cacheDirectory = FeatureExtractor.defaultCacheDirectory
    }

    let baseKey: String

    static func key(_ base: String, _ preprocessing: TransformPipeline) -> String {
        SHA256.hex(base + "|pre=" + preprocessing.spec)
    }
    public var featureWidth: Int { model.channels(at: level) }

    /// $PETRI_CACHE_DIR/features, or $XDG_CACHE_HOME/petri/features (~/.cache/petri/features).
    public static var defaultCacheDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let d = env["PETRI_CACHE_DIR"], !d.isEmpty { return URL(fileURLWithPath: d).appendingPathComponent("features") }
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("petri/features")
    }

    private func cacheURL(_ key: String, contentHash: String, level: FeatureLevel) -> URL? {
        cacheDirectory?.appendingPathComponent(String(key.prefix(16)))
            .appendingPathComponent(String(contentHash.prefix(2)))
            .appendingPathComponent("\(contentHash)-\(level).f32")
    }

    private func readCache(_ key: String, _ hash: String, level: FeatureLevel) -> [Float]? {
        guard let url = cacheURL(key, contentHash: hash, level: level), let data = try? Data(contentsOf: url),
              data.count == model.channels(at: level) * 4 else { return nil }
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return values.allSatisfy(\.isFinite) ? values : nil   // a damaged entry is computed again
    }

    private func writeCache(_ key: String, _ hash: String, level: FeatureLevel, _ row: UnsafeBufferPointer<Float>) {
        guard let url = cacheURL(key, contentHash: hash, level: level) else { return }
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Atomic: a crash never leaves a short file that would later be read as features.
        try? Data(buffer: row).write(to: url, options: .atomic)
    }

    /// Features for image files (see `extract(_:items:progress:)`).
    public func extract(_ paths: [String], progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        let items = paths.map { DatasetItem(path: $0, relativePath: $0, label: 0) }
        return try extract(Dataset(root: URL(fileURLWithPath: "/"), classNames: ["?"], items: items), items: items,
                           progress: progress)
    }

    /// Features for `items` of `dataset` at `level`. Unreadable images are skipped and reported in
    /// `failures`, never fatal. `progress(done, total)` is called after each batch.
    public func extract(_ dataset: Dataset, items: [DatasetItem], progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        let (byLevel, kept, failures, hits) = try extractLevels(dataset, items: items, progress: progress)
        return Result(features: byLevel[level]!, kept: kept, failures: failures, cacheHits: hits)
    }

    /// Features at `level` and every `extraLevels` entry from one pass per image.
    public func extractLevels(_ dataset: Dataset, items: [DatasetItem], progress: ((Int, Int) -> Void)? = nil) throws
        -> (features: [FeatureLevel: Tensor], kept: [Int], failures: [Failure], cacheHits: Int) {
        let r = try extractViews(dataset, items: items, views: [0], progress: progress)
        return (r.features[0], r.kept, r.failures, r.cacheHits)
    }

    /// Features of dihedral `views` (0…7, applied after `preprocessing`) of every item, at `level` and every
    /// `extraLevels` entry: `features[i]` belongs to `views[i]`. Each image is decoded, preprocessed and
    /// resized once; its views are orientations of the resized input (resizing to a square commutes with
    /// the dihedral group), so 8 views cost 8 forward passes and one decode. Each view is cached under the
    /// key the single-view path uses (preprocessing followed by `DihedralView`).
    public func extractViews(_ dataset: Dataset, items: [DatasetItem], views: [Int], progress: ((Int, Int) -> Void)? = nil) throws
        -> (features: [[FeatureLevel: Tensor]], kept: [Int], failures: [Failure], cacheHits: Int) {
        let levels = [level] + extraLevels.filter { $0 != level }
        // The dataset's own preprocessing runs first and is part of the cache key like ours.
        let pipeline = TransformPipeline(dataset.preprocessing.steps + preprocessing.steps)
        let viewKeys = views.map { v in
            FeatureExtractor.key(baseKey, v == 0 ? pipeline : TransformPipeline(pipeline.steps + [DihedralView(v)]))
        }
        // rows[view][item][level]
        var rows = [[[FeatureLevel: [Float]]?]](repeating: [[FeatureLevel: [Float]]?](repeating: nil, count: items.count),
                                                count: views.count)
        var hashes = [String?](repeating: nil, count: items.count)
        var failures: [Failure] = []
        var pending: [Int] = []
        var hits = 0
        for (i, item) in items.enumerated() {
            do {
                let hash = SHA256.hex(try dataset.contents(of: item))
                hashes[i] = hash
                var complete = true
                for vi in views.indices {
                    var cached: [FeatureLevel: [Float]] = [:]
                    for l in levels { if let r = readCache(viewKeys[vi], hash, level: l) { cached[l] = r } }
                    if cached.count == levels.count { rows[vi][i] = cached } else { complete = false }
                }
                if complete { hits += 1 } else { pending.append(i) }
            } catch {
                failures.append(Failure(path: item.path, reason: (error as? ImageDecodingError)?.summary ?? "\(error)"))
            }
        }
        var done = items.count - pending.count
        progress?(done, items.count)

        // Producer: decode + preprocess + resize the next images while the engine runs the current batch.
        // A batch holds (image, view) pairs, all views of an image together.
        let perBatch = max(1, batchSize / views.count)
        let batches = stride(from: 0, to: pending.count, by: perBatch).map {
            Array(pending[$0..<min($0 + perBatch, pending.count)])
        }
        let prepared = PrefetchBuffer<(indices: [Int], input: Tensor?, failures: [Failure])>(capacity: 1)
        let decoder = self.decoder, config = self.dataConfig, preprocess = pipeline
        let side = config.inputSize
        let producer = Thread {
            for batch in batches {
                var ok: [Int] = [], inputs: [[Float]] = [], bad: [Failure] = []
                for i in batch {
                    do {
                        inputs.append(config.normalizedPixels(preprocess(FloatImage(try dataset.image(of: items[i], decoder: decoder)))))
                        ok.append(i)
                    } catch {
                        bad.append(Failure(path: items[i].path, reason: (error as? ImageDecodingError)?.summary ?? "\(error)"))
                    }
                }
                var input: Tensor?
                if !ok.isEmpty {
                    let plane = side * side * 3
                    var t = Tensor(uninitialized: [ok.count * views.count, side, side, 3])
                    t.withUnsafeMutableBufferPointer { p in
                        for (r, px) in inputs.enumerated() {
                            for (vi, v) in views.enumerated() {
                                px.withUnsafeBufferPointer { src in
                                    dihedralPixels(src, side: side, view: v, into: p.baseAddress! + (r * views.count + vi) * plane)
                                }
                            }
                        }
                    }
                    input = t
                }
                prepared.put((ok, input, bad))
            }
        }
        producer.stackSize = 8 << 20
        producer.start()
        for _ in batches {
            let (indices, input, bad) = prepared.take()
            failures += bad
            if let input {
                let f = try model.features(input, levels: levels)
                for (r, i) in indices.enumerated() {
                    for vi in views.indices {
                        let row = r * views.count + vi
                        var entry: [FeatureLevel: [Float]] = [:]
                        for l in levels {
                            let width = model.channels(at: l)
                            f[l]!.withUnsafeBufferPointer { fp in
                                let values = UnsafeBufferPointer(rebasing: fp[(row * width)..<((row + 1) * width)])
                                entry[l] = Array(values)
                                if let h = hashes[i] { writeCache(viewKeys[vi], h, level: l, values) }
                            }
                        }
                        rows[vi][i] = entry
                    }
                }
            }
            done += indices.count + bad.count
            progress?(done, items.count)
        }
        let kept = items.indices.filter { i in rows.allSatisfy { $0[i] != nil } }
        var out: [[FeatureLevel: Tensor]] = []
        for vi in views.indices {
            var byLevel: [FeatureLevel: Tensor] = [:]
            for l in levels {
                let width = model.channels(at: l)
                var features = Tensor(uninitialized: [kept.count, width])
                features.withUnsafeMutableBufferPointer { p in
                    for (r, i) in kept.enumerated() {
                        rows[vi][i]![l]!.withUnsafeBufferPointer { (p.baseAddress! + r * width).update(from: $0.baseAddress!, count: width) }
                    }
                }
                byLevel[l] = features
            }
            out.append(byLevel)
        }
        let order = Dictionary(items.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { a, _ in a })
        failures.sort { (order[$0.path] ?? 0) < (order[$1.path] ?? 0) }
        return (out, kept, failures, hits)
    }
}

/// Writes dihedral view `view` (as `DihedralView`: `view % 4` clockwise quarter turns, mirrored from 4 on) of
/// a square `[side, side, 3]` image to `out`.
func dihedralPixels(_ src: UnsafeBufferPointer<Float>, side s: Int, view: Int, into out: UnsafeMutablePointer<Float>) {
    let k = view % 4, flip = view >= 4
    for y in 0..<s {
        for x in 0..<s {
            let fx = flip ? s - 1 - x : x
            let (sx, sy): (Int, Int)
            switch k {
            case 0: (sx, sy) = (fx, y)
            case 1: (sx, sy) = (y, s - 1 - fx)
            case 2: (sx, sy) = (s - 1 - fx, s - 1 - y)
            default: (sx, sy) = (s - 1 - y, fx)
            }
            let o = (y * s + x) * 3, i = (sy * s + sx) * 3
            out[o] = src[i]; out[o + 1] = src[i + 1]; out[o + 2] = src[i + 2]
        }
    }
}
