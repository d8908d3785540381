import Foundation
import PetriEngine

/// Colour-space helpers for stain handling.
enum ColorSpace {
    /// Reinhard et al. 2001: RGB → LMS → log10 → lαβ (decorrelated opponent axes).
    static func rgbToLab(_ r: Float, _ g: Float, _ b: Float) -> (Float, Float, Float) {
        let l = max(0.3811 * r + 0.5783 * g + 0.0402 * b, 1e-6)
        let m = max(0.1967 * r + 0.7244 * g + 0.0782 * b, 1e-6)
        let s = max(0.0241 * r + 0.1288 * g + 0.8444 * b, 1e-6)
        let L = log10(l), M = log10(m), S = log10(s)
        return ((L + M + S) / Float(3).squareRoot(), (L + M - 2 * S) / Float(6).squareRoot(),
                (L - M) / Float(2).squareRoot())
    }

    static func labToRgb(_ l: Float, _ a: Float, _ b: Float) -> (Float, Float, Float) {
        let p = l / Float(3).squareRoot(), q = a / Float(6).squareRoot(), t = b / Float(2).squareRoot()
        let L = Foundation.pow(10, p + q + t), M = Foundation.pow(10, p + q - t), S = Foundation.pow(10, p - 2 * q)
        return (4.4679 * L - 3.5873 * M + 0.1193 * S, -1.2186 * L + 2.3809 * M - 0.1624 * S,
                0.0497 * L - 0.2439 * M + 1.2045 * S)
    }

    /// Ruifrok & Johnston's stain vectors (rows: haematoxylin, eosin, DAB), as in scikit-image.
    static let rgbFromHED: [[Float]] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]
    static let hedFromRGB: [[Float]] = invert3(rgbFromHED)

    static func invert3(_ m: [[Float]]) -> [[Float]] {
        let a = m.map { $0.map(Double.init) }
        let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        var inv = [[Float]](repeating: [0, 0, 0], count: 3)
        for i in 0..<3 {
            for j in 0..<3 {
                let r = [0, 1, 2].filter { $0 != j }, c = [0, 1, 2].filter { $0 != i }
                let minor = a[r[0]][c[0]] * a[r[1]][c[1]] - a[r[0]][c[1]] * a[r[1]][c[0]]
                inv[i][j] = Float(((i + j) % 2 == 0 ? 1 : -1) * minor / det)
            }
        }
        return inv
    }

    /// Optical density → stain concentrations (row vector times matrix), and back.
    static func rgbToHED(_ p: [Float]) -> [Float] {
        let od = (0..<3).map { -Foundation.log(max(p[$0], 1e-6)) }
        return (0..<3).map { j in (0..<3).reduce(0) { $0 + od[$1] * hedFromRGB[$1][j] } }
    }

    static func hedToRGB(_ hed: [Float]) -> [Float] {
        (0..<3).map { j in Foundation.exp(-(0..<3).reduce(0) { $0 + hed[$1] * rgbFromHED[$1][j] }) }
    }
}

/// Reinhard colour normalisation: matches the mean and standard deviation of each lαβ channel to a target's.
public struct ReinhardNormalization: ImageTransform {
    public var targetMean: [Float]
    public var targetStd: [Float]

    /// Default target: statistics of a typical May-Grünwald-Giemsa smear (fit your own with `fit`).
    public init(targetMean: [Float] = [-0.37, -0.022, 0.012], targetStd: [Float] = [0.14, 0.02, 0.035]) {
        self.targetMean = targetMean
        self.targetStd = targetStd
    }

    static let defaultTarget = ReinhardNormalization()
    /// The target's keys in a spec: channel means `l`, `a`, `b`, deviations `sl`, `sa`, `sb`.
    static let keys = ["l", "a", "b", "sl", "sa", "sb"]

    /// `reinhard` for the default target, else `reinhard(l=…,a=…,b=…,sl=…,sa=…,sb=…)`.
    public var spec: String {
        let values = targetMean + targetStd
        guard values != Self.defaultTarget.targetMean + Self.defaultTarget.targetStd else { return "reinhard" }
        return "reinhard(" + zip(Self.keys, values).map { "\($0)=\($1)" }.joined(separator: ",") + ")"
    }

    /// lαβ channel means and standard deviations of an image.
    public static func statistics(_ image: FloatImage) -> (mean: [Float], std: [Float]) {
        var sum = [Double](repeating: 0, count: 3), sq = sum
        let n = image.width * image.height
        for i in 0..<n {
            let (l, a, b) = ColorSpace.rgbToLab(image.pixels[i * 3], image.pixels[i * 3 + 1], image.pixels[i * 3 + 2])
            for (c, v) in [l, a, b].enumerated() { sum[c] += Double(v); sq[c] += Double(v * v) }
        }
        let mean = sum.map { $0 / Double(n) }
        let std = (0..<3).map { max(sq[$0] / Double(n) - mean[$0] * mean[$0], 0).squareRoot() }
        return (mean.map(Float.init), std.map(Float.init))
    }

    /// A normaliser whose target is the average statistics of `images` (e.g. the training set).
    public static func fit(_ images: [FloatImage]) -> ReinhardNormalization { fit(statistics: images.map(statistics)) }

    /// A normaliser whose target is the average of images' `statistics`.
    public static func fit(statistics stats: [(mean: [Float], std: [Float])]) -> ReinhardNormalization {
        let n = Float(max(stats.count, 1))
        return ReinhardNormalization(targetMean: (0..<3).map { c in stats.reduce(0) { $0 + $1.mean[c] } / n },
                                     targetStd: (0..<3).map { c in stats.reduce(0) { $0 + $1.std[c] } / n })
    }

    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let (mean, std) = Self.statistics(image)
        var out = image
        for i in 0..<(image.width * image.height) {
            let (l, a, b) = ColorSpace.rgbToLab(image.pixels[i * 3], image.pixels[i * 3 + 1], image.pixels[i * 3 + 2])
            let v = [l, a, b].enumerated().map { c, x in (x - mean[c]) / max(std[c], 1e-6) * targetStd[c] + targetMean[c] }
            let (r, g, bb) = ColorSpace.labToRgb(v[0], v[1], v[2])
            out.pixels[i * 3] = max(0, min(1, r)); out.pixels[i * 3 + 1] = max(0, min(1, g))
            out.pixels[i * 3 + 2] = max(0, min(1, bb))
        }
        return out
    }
}

/// Macenko et al. 2009 stain normalisation for H&E-like stains: estimates the two stain vectors of an
/// image from the extreme angles of its optical densities in the plane of their two main eigenvectors,
/// solves for concentrations, rescales them to the reference's 99th percentiles and recomposes with the
/// reference stain matrix.
public struct MacenkoNormalization: ImageTransform {
    public var referenceStains: [[Float]]          // two columns as [[h_r, e_r], [h_g, e_g], [h_b, e_b]]
    public var referenceMaxConcentrations: [Float]
    public var lightIntensity: Float = 240
    public var alpha: Float = 1
    public var beta: Float = 0.15

    public init(referenceStains: [[Float]] = [[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]],
                referenceMaxConcentrations: [Float] = [1.9705, 1.0308]) {
        self.referenceStains = referenceStains
        self.referenceMaxConcentrations = referenceMaxConcentrations
    }

    public var spec: String { "macenko" }

    /// Stain matrix (3×2, columns H then E) and per-pixel concentrations, or nil when too few pixels are stained.
    public func decompose(_ image: FloatImage) -> (stains: [[Float]], concentrations: [[Float]])? {
        let n = image.width * image.height
        let od: [[Float]] = (0..<n).map { i in
            (0..<3).map { c in -Foundation.log((image.pixels[i * 3 + c] * 255 + 1) / lightIntensity) }
        }
        let tissue = od.filter { $0.allSatisfy { $0 >= beta } }
        guard tissue.count >= 10 else { return nil }
        // Covariance of the OD vectors and its two leading eigenvectors.
        var cov = [[Double]](repeating: [0, 0, 0], count: 3)
        let mean = (0..<3).map { c in tissue.reduce(0.0) { $0 + Double($1[c]) } / Double(tissue.count) }
        for v in tissue {
            for a in 0..<3 { for b in 0..<3 { cov[a][b] += (Double(v[a]) - mean[a]) * (Double(v[b]) - mean[b]) } }
        }
        let (values, vectors) = symmetricEigen3(cov)
        let order = values.indices.sorted { values[$0] > values[$1] }
        let e1 = vectors.map { Float($0[order[0]]) }, e2 = vectors.map { Float($0[order[1]]) }
        let angles = tissue.map { v -> Float in
            atan2(v[0] * e2[0] + v[1] * e2[1] + v[2] * e2[2], v[0] * e1[0] + v[1] * e1[1] + v[2] * e1[2])
        }.sorted()
        let lo = angles[Int(Float(angles.count - 1) * alpha / 100)]
        let hi = angles[Int(Float(angles.count - 1) * (100 - alpha) / 100)]
        func vector(_ phi: Float) -> [Float] {
            var v = (0..<3).map { e1[$0] * cos(phi) + e2[$0] * sin(phi) }
            if v.reduce(0, +) < 0 { v = v.map { -$0 } }   // optical densities are positive
            let norm = max((v.map { $0 * $0 }.reduce(0, +)).squareRoot(), 1e-6)
            return v.map { $0 / norm }
        }
        var h = vector(lo), e = vector(hi)
        if h[0] < e[0] { swap(&h, &e) }   // haematoxylin absorbs more red
        let stains = (0..<3).map { [h[$0], e[$0]] }
        // Least squares concentrations: C = (SᵀS)⁻¹Sᵀ·od.
        let a = Double(h.reduce(0) { $0 + $1 * $1 }), b = Double(zip(h, e).reduce(0) { $0 + $1.0 * $1.1 })
        let d = Double(e.reduce(0) { $0 + $1 * $1 }), det = a * d - b * b
        guard abs(det) > 1e-9 else { return nil }
        let concentrations = od.map { v -> [Float] in
            let ph = Double(zip(h, v).reduce(0) { $0 + $1.0 * $1.1 }), pe = Double(zip(e, v).reduce(0) { $0 + $1.0 * $1.1 })
            return [Float((d * ph - b * pe) / det), Float((a * pe - b * ph) / det)]
        }
        return (stains, concentrations)
    }

    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        guard let (_, conc) = decompose(image) else { return image }   // nothing stained: leave as is
        let maxC = (0..<2).map { k -> Float in
            let sorted = conc.map { $0[k] }.sorted()
            return max(sorted[Int(Float(sorted.count - 1) * 0.99)], 1e-6)
        }
        var out = image
        for (i, c) in conc.enumerated() {
            let scaled = (0..<2).map { c[$0] * referenceMaxConcentrations[$0] / maxC[$0] }
            for ch in 0..<3 {
                let od = referenceStains[ch][0] * scaled[0] + referenceStains[ch][1] * scaled[1]
                out.pixels[i * 3 + ch] = max(0, min(1, (lightIntensity * Foundation.exp(-od) - 1) / 255))
            }
        }
        return out
    }
}

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations.
/// Returns eigenvalues and the eigenvectors as columns of a 3×3 matrix.
func symmetricEigen3(_ m: [[Double]]) -> ([Double], [[Double]]) {
    var a = m
    var v: [[Double]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    for _ in 0..<50 {
        var off = 0.0
        for p in 0..<3 { for q in (p + 1)..<3 { off += a[p][q] * a[p][q] } }
        if off < 1e-20 { break }
        for p in 0..<3 {
            for q in (p + 1)..<3 where abs(a[p][q]) > 1e-15 {
                let theta = (a[q][q] - a[p][p]) / (2 * a[p][q])
                let t = (theta >= 0 ? 1 : -1) / (abs(theta) + (theta * theta + 1).squareRoot())
                let c = 1 / (t * t + 1).squareRoot(), s = t * c
                for k in 0..<3 {
                    let akp = a[k][p], akq = a[k][q]
                    a[k][p] = c * akp - s * akq
                    a[k][q] = s * akp + c * akq
                }
                for k in 0..<3 {
                    let apk = a[p][k], aqk = a[q][k]
                    a[p][k] = c * apk - s * aqk
                    a[q][k] = s * apk + c * aqk
                }
                for k in 0..<3 {
                    let vkp = v[k][p], vkq = v[k][q]
                    v[k][p] = c * vkp - s * vkq
                    v[k][q] = s * vkp + c * vkq
                }
            }
        }
    }
    return ([a[0][0], a[1][1], a[2][2]], v)
}
