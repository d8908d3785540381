import Foundation
import PetriData
import PetriEngine

extension SavedModel {
    /// What the training images look like, kept in the model file so that `predict` and `evaluate` can tell
    /// when new images are unlike all of them — another lab, stain, scanner or magnification — and no mark
    /// calibrated on the training images can be trusted.
    ///
    /// Two measures, both of which an image must pass to be familiar:
    /// - its features: the distance from its single-view Lite0 features (L2-normalised; `scaleReferenceSpec`) to
    ///   its `neighbours`-th nearest training image, in the training features' top principal components plus
    ///   what lies outside them (the residuals, assumed orthogonal), at most `threshold`: the `quantile` of the
    ///   training images' own distances to their nearest others (each left out of its own neighbours), times
    ///   `margin`;
    /// - its look: brightness, contrast, saturation, colour cast, sharpness and size each within the training
    ///   images' range (`ImageStatistics.Reference`). Features alone miss another lab's images once a crop has
    ///   made their cells look the right size; their stain and scanner still show in colour and sharpness.
    public struct Familiarity: Codable, Sendable {
        public var mean: [Float]
        /// `dims` orthonormal rows of `features` values.
        public var components: [Float]
        public var dims: Int
        public var features: Int
        /// `count` training images projected (`dims` values each), and their squared residual norms.
        public var points: [Float]
        public var residuals: [Float]
        public var count: Int
        public var neighbours: Int
        public var quantile: Double
        public var margin: Double
        public var threshold: Double
        /// How the training images look (brightness, colour, sharpness, size), for saying what differs.
        public var images: ImageStatistics.Reference?

        /// The reference of training features `x` `[n, D]` (L2-normalised rows); at most `maxPoints` images are
        /// kept (an even subsample).
        public init(_ x: Tensor, images: [ImageStatistics]?, dims: Int = 32, neighbours: Int = 5, quantile: Double = 0.99,
                    margin: Double = 1.1, maxPoints: Int = 2000) {
            let n = x.shape[0], d = x.shape[1]
            let m = max(1, min(dims, n - 1, d))
            var mu = [Float](repeating: 0, count: d)
            x.withUnsafeBufferPointer { p in for i in 0..<n { for j in 0..<d { mu[j] += p[i * d + j] } } }
            mu = mu.map { $0 / Float(max(n, 1)) }
            let centred = Self.centre(x, mu)
            let c = Self.principalComponents(centred, count: m)
            mean = mu
            components = c
            self.dims = m
            features = d
            let keep = n <= maxPoints ? Array(0..<n) : (0..<maxPoints).map { $0 * n / maxPoints }
            let (proj, res) = Self.project(centred.rows(keep), c, m)
            points = proj
            residuals = res
            count = keep.count
            self.neighbours = max(1, min(neighbours, keep.count - 1))
            self.quantile = quantile
            self.margin = margin
            self.images = images.flatMap { $0.isEmpty ? nil : ImageStatistics.Reference($0) }
            threshold = 0
            // Each kept training image's distance to its nearest others, itself left out.
            let own = Self.kthDistances(proj, res, count: keep.count, dims: m, queries: proj, queryResiduals: res,
                                        queryCount: keep.count, k: self.neighbours, leaveOut: true)
            let sorted = own.sorted()
            threshold = sorted.isEmpty ? .infinity : sorted[min(sorted.count - 1, Int((quantile * Double(sorted.count)).rounded(.up)) - 1)] * margin
        }

        /// Each image's distance to its nearest training images (rows of `x`, `[N, features]`, L2-normalised).
        public func distances(_ x: Tensor) -> [Double] {
            precondition(x.shape[1] == features, "expected \(features) features")
            let (proj, res) = Self.project(Self.centre(x, mean), components, dims)
            return Self.kthDistances(points, residuals, count: count, dims: dims, queries: proj, queryResiduals: res,
                                     queryCount: x.shape[0], k: neighbours, leaveOut: false)
        }

        public func isFamiliar(_ distance: Double) -> Bool { distance <= threshold }

        static func centre(_ x: Tensor, _ mu: [Float]) -> Tensor {
            var c = x
            let d = mu.count
            c.withUnsafeMutableBufferPointer { p in for i in 0..<x.shape[0] { for j in 0..<d { p[i * d + j] -= mu[j] } } }
            return c
        }

        /// The top `count` principal directions of centred rows `x`, by subspace iteration (orthonormal rows).
        static func principalComponents(_ x: Tensor, count m: Int) -> [Float] {
            let n = x.shape[0], d = x.shape[1]
            var rng = SeededGenerator(seed: 0, stream: "familiarity")
            var v = [Float]((0..<(m * d)).map { _ in rng.normal() })
            var y = [Float](repeating: 0, count: n * m)
            for _ in 0..<25 {
                orthonormalise(&v, rows: m, columns: d)
                x.withUnsafeBufferPointer { xp in
                    v.withUnsafeBufferPointer { vp in
                        y.withUnsafeMutableBufferPointer { yp in   // Y = X Vᵀ  [n, m]
                            sgemm(transposeA: false, transposeB: true, m: n, n: m, k: d, a: xp.baseAddress!, lda: d,
                                  b: vp.baseAddress!, ldb: d, c: yp.baseAddress!, ldc: m)
                        }
                    }
                    y.withUnsafeBufferPointer { yp in
                        v.withUnsafeMutableBufferPointer { vp in   // V = Yᵀ X  [m, d]
                            sgemm(transposeA: true, transposeB: false, m: m, n: d, k: n, a: yp.baseAddress!, lda: m,
                                  b: xp.baseAddress!, ldb: d, c: vp.baseAddress!, ldc: d)
                        }
                    }
                }
            }
            orthonormalise(&v, rows: m, columns: d)
            return v
        }

        /// Modified Gram–Schmidt on the rows (a row that vanishes is replaced by a unit vector).
        static func orthonormalise(_ v: inout [Float], rows: Int, columns d: Int) {
            for r in 0..<rows {
                for q in 0..<r {
                    var dot: Float = 0
                    for j in 0..<d { dot += v[r * d + j] * v[q * d + j] }
                    for j in 0..<d { v[r * d + j] -= dot * v[q * d + j] }
                }
                var norm: Float = 0
                for j in 0..<d { norm += v[r * d + j] * v[r * d + j] }
                norm = norm.squareRoot()
                if norm < 1e-12 {
                    for j in 0..<d { v[r * d + j] = j == r % d ? 1 : 0 }
                } else {
                    for j in 0..<d { v[r * d + j] /= norm }
                }
            }
        }

        /// Projections `[N, m]` of centred rows and their squared residual norms.
        static func project(_ x: Tensor, _ c: [Float], _ m: Int) -> (points: [Float], residuals: [Float]) {
            let n = x.shape[0], d = x.shape[1]
            var p = [Float](repeating: 0, count: n * m)
            x.withUnsafeBufferPointer { xp in
                c.withUnsafeBufferPointer { cp in
                    p.withUnsafeMutableBufferPointer { pp in
                        sgemm(transposeA: false, transposeB: true, m: n, n: m, k: d, a: xp.baseAddress!, lda: d,
                              b: cp.baseAddress!, ldb: d, c: pp.baseAddress!, ldc: m)
                    }
                }
            }
            let residuals = (0..<n).map { i -> Float in
                var total: Float = 0, inside: Float = 0
                x.withUnsafeBufferPointer { xp in for j in 0..<d { total += xp[i * d + j] * xp[i * d + j] } }
                for j in 0..<m { inside += p[i * m + j] * p[i * m + j] }
                return max(0, total - inside)
            }
            return (p, residuals)
        }

        /// For each query, the distance to its `k`-th nearest reference point (`leaveOut`: queries are the
        /// references themselves, each skipping its own).
        static func kthDistances(_ ref: [Float], _ refResiduals: [Float], count: Int, dims m: Int, queries: [Float],
                                 queryResiduals: [Float], queryCount: Int, k: Int, leaveOut: Bool) -> [Double] {
            (0..<queryCount).map { q in
                var best = [Double](repeating: .infinity, count: k)
                for r in 0..<count where !(leaveOut && r == q) {
                    var s = Double(refResiduals[r] + queryResiduals[q])
                    for j in 0..<m {
                        let diff = Double(queries[q * m + j] - ref[r * m + j])
                        s += diff * diff
                    }
                    if s < best[k - 1] {
                        var i = k - 1
                        while i > 0 && best[i - 1] > s { best[i] = best[i - 1]; i -= 1 }
                        best[i] = s
                    }
                }
                return best[k - 1].squareRoot()
            }
        }
    }
}

extension SavedModel {
    /// Whether each image is like the training images (`Familiarity`), seen as the model sees them: after
    /// `adaptation` and the model's preprocessing; with the reason when it is not. Nil when the model file has
    /// no reference (an older file).
    public func familiar(_ dataset: Dataset, adaptation: TransformPipeline = TransformPipeline(), file: String = "model",
                         progress: ((String, Int, Int) -> Void)? = nil) throws -> [(familiar: Bool, reason: String?)]? {
        guard let familiarity, let distances = try familiarityDistances(dataset, adaptation: adaptation, file: file, progress: progress) else {
            return nil
        }
        let looks = familiarity.images.map { _ in statistics(dataset, adaptation: adaptation) }
        return distances.indices.map { i in
            if !familiarity.isFamiliar(distances[i]) { return (false, "features") }
            if let ref = familiarity.images, let look = looks?[i] ?? nil, let why = ref.outside(look) { return (false, why) }
            return (true, nil)
        }
    }

    /// Each image's statistics as the model sees it (nil for one that cannot be read).
    func statistics(_ dataset: Dataset, adaptation: TransformPipeline) -> [ImageStatistics?] {
        var dataset = dataset
        guard let base = try? TransformPipeline.parse(preprocessing) else { return dataset.items.map { _ in nil } }
        dataset.preprocessing = TransformPipeline(adaptation.steps + base.steps)
        let decoder = ImageDecoder()
        return dataset.items.map { (try? dataset.preparedImage(of: $0, decoder: decoder)).map(ImageStatistics.init) }
    }

    /// Each image's feature distance to the training images (`Familiarity.distances`).
    public func familiarityDistances(_ dataset: Dataset, adaptation: TransformPipeline = TransformPipeline(), file: String = "model",
                                     progress: ((String, Int, Int) -> Void)? = nil) throws -> [Double]? {
        guard let familiarity else { return nil }
        var dataset = dataset
        do { dataset.preprocessing = TransformPipeline(adaptation.steps + (try TransformPipeline.parse(preprocessing)).steps) } catch {
            throw DatasetError.malformed(file, reason: "unknown preprocessing '\(preprocessing)': \(error)")
        }
        let bank = FeatureBank(dataset: dataset)
        bank.progress = progress
        bank.plan([Self.scaleReferenceSpec])
        return familiarity.distances(l2NormalizedRows(try Self.scaleReferenceSpec.matrix(bank)))
    }

    /// How the images look (`ImageStatistics`), as the model sees them; unreadable ones left out.
    public func imageStatistics(_ dataset: Dataset, adaptation: TransformPipeline = TransformPipeline()) -> [ImageStatistics] {
        var dataset = dataset
        guard let base = try? TransformPipeline.parse(preprocessing) else { return [] }
        dataset.preprocessing = TransformPipeline(adaptation.steps + base.steps)
        let decoder = ImageDecoder()
        return dataset.items.compactMap { (try? dataset.preparedImage(of: $0, decoder: decoder)).map(ImageStatistics.init) }
    }
}
