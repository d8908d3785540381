import Foundation
import PetriEngine

/// Multinomial logistic regression with an L2 penalty on the weights (not the intercepts), fitted by
/// L-BFGS. `c` is scikit-learn's inverse regularisation strength: it minimises
/// C·Σ cross-entropy + ½‖W‖².
public struct LogisticRegression: Sendable {
    public var c: Double
    public var maxIterations: Int
    /// Weight each sample by n / (classes · n_class) (scikit-learn's class_weight="balanced"), so every
    /// class counts equally however many images it has: what balanced accuracy rewards.
    public var balanceClasses: Bool

    public init(c: Double = 1, maxIterations: Int = 500, balanceClasses: Bool = true) {
        self.c = c
        self.maxIterations = maxIterations
        self.balanceClasses = balanceClasses
    }

    /// A fitted model: weights `[classes, features]` and intercepts.
    public struct Fitted: Sendable, Codable {
        public var weights: [Float]
        public var intercepts: [Float]
        public var classes: Int
        public var features: Int
        public var converged: Bool

        /// Class probabilities `[N, classes]` for features `[N, features]`.
        public func probabilities(_ x: Tensor) -> Tensor {
            precondition(x.rank == 2 && x.shape[1] == features, "expected [N, \(features)] features, got \(x.shape)")
            let n = x.shape[0]
            var z = Tensor(uninitialized: [n, classes])
            z.withUnsafeMutableBufferPointer { zp in
                for i in 0..<n { for k in 0..<classes { zp[i * classes + k] = intercepts[k] } }
                x.withUnsafeBufferPointer { xp in
                    weights.withUnsafeBufferPointer { wp in
                        sgemm(transposeA: false, transposeB: true, m: n, n: classes, k: features, a: xp.baseAddress!,
                              lda: features, b: wp.baseAddress!, ldb: features, beta: 1, c: zp.baseAddress!,
                              ldc: classes)
                    }
                }
                softmaxRows(zp.baseAddress!, rows: n, columns: classes)
            }
            return z
        }
    }

    /// Fits on features `[N, D]` and labels in 0..<classes, starting from `warmStart` when given (a fit of
    /// the same data with a nearby C converges in far fewer iterations).
    public func fit(_ x: Tensor, labels: [Int], classes: Int, warmStart: Fitted? = nil) -> Fitted {
        precondition(x.rank == 2 && x.shape[0] == labels.count, "features and labels disagree")
        let n = x.shape[0], d = x.shape[1], k = classes
        let lambda = 1 / (c * Double(max(n, 1)))
        var counts = [Int](repeating: 0, count: k)
        for l in labels { counts[l] += 1 }
        let present = counts.filter { $0 > 0 }.count
        let sampleWeight: [Double] = labels.map { l in
            balanceClasses ? Double(n) / (Double(present) * Double(counts[l])) : 1
        }
        var z = [Float](repeating: 0, count: n * k)
        var w = [Float](repeating: 0, count: k * d)
        var gw = [Float](repeating: 0, count: k * d)
        let objective: ([Double], inout [Double]) -> Double = { params, grad in
            for i in 0..<(k * d) { w[i] = Float(params[i]) }
            var loss = 0.0
            x.withUnsafeBufferPointer { xp in
                z.withUnsafeMutableBufferPointer { zp in
                    for i in 0..<n { for j in 0..<k { zp[i * k + j] = Float(params[k * d + j]) } }
                    w.withUnsafeBufferPointer { wp in
                        sgemm(transposeA: false, transposeB: true, m: n, n: k, k: d, a: xp.baseAddress!, lda: d,
                              b: wp.baseAddress!, ldb: d, beta: 1, c: zp.baseAddress!, ldc: k)
                    }
                    for i in 0..<n {
                        let row = zp.baseAddress! + i * k
                        var m = row[0]
                        for j in 1..<k { m = max(m, row[j]) }
                        var s: Double = 0
                        for j in 0..<k { s += Foundation.exp(Double(row[j] - m)) }
                        let logZ = Double(m) + Foundation.log(s)
                        let wi = sampleWeight[i]
                        loss -= wi * (Double(row[labels[i]]) - logZ)
                        // row becomes w·(p − y)/n, the gradient w.r.t. the logits
                        for j in 0..<k {
                            let p = Foundation.exp(Double(row[j]) - logZ)
                            row[j] = Float(wi * (p - (j == labels[i] ? 1 : 0)) / Double(n))
                        }
                    }
                    gw.withUnsafeMutableBufferPointer { gp in
                        sgemm(transposeA: true, transposeB: false, m: k, n: d, k: n, a: zp.baseAddress!, lda: k,
                              b: xp.baseAddress!, ldb: d, c: gp.baseAddress!, ldc: d)
                    }
                }
            }
            loss /= Double(n)
            var penalty = 0.0
            for i in 0..<(k * d) {
                penalty += params[i] * params[i]
                grad[i] = Double(gw[i]) + lambda * params[i]
            }
            for j in 0..<k {
                var s = 0.0
                for i in 0..<n { s += Double(z[i * k + j]) }
                grad[k * d + j] = s
            }
            return loss + 0.5 * lambda * penalty
        }
        var solver = LBFGS()
        solver.maxIterations = maxIterations
        var start = [Double](repeating: 0, count: k * d + k)
        if let w = warmStart, w.classes == k, w.features == d {
            for i in 0..<(k * d) { start[i] = Double(w.weights[i]) }
            for j in 0..<k { start[k * d + j] = Double(w.intercepts[j]) }
        }
        let result = solver.minimize(start, objective)
        return Fitted(weights: result.x[0..<(k * d)].map(Float.init), intercepts: result.x[(k * d)...].map(Float.init),
                      classes: k, features: d, converged: result.converged)
    }
}

/// In-place row-wise softmax.
public func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
    for i in 0..<rows {
        let row = p + i * columns
        var m = row[0]
        for j in 1..<columns { m = max(m, row[j]) }
        var s: Float = 0
        for j in 0..<columns { row[j] = Foundation.exp(row[j] - m); s += row[j] }
        for j in 0..<columns { row[j] /= s }
    }
}

/// Scales each row to unit Euclidean length (rows of zeros stay zero).
public func l2NormalizedRows(_ x: Tensor) -> Tensor {
    var out = x
    let d = x.shape[1]
    out.withUnsafeMutableBufferPointer { p in
        for i in 0..<x.shape[0] {
            var s: Float = 0
            for j in 0..<d { s += p[i * d + j] * p[i * d + j] }
            let inv = s > 0 ? 1 / s.squareRoot() : 0
            for j in 0..<d { p[i * d + j] *= inv }
        }
    }
    return out
}

extension Tensor {
    /// Rows at `indices`, in that order.
    public func rows(_ indices: [Int]) -> Tensor {
        let d = count / Swift.max(shape[0], 1)
        var out = Tensor(uninitialized: [indices.count] + shape.dropFirst())
        out.withUnsafeMutableBufferPointer { o in
            withUnsafeBufferPointer { p in
                for (r, i) in indices.enumerated() {
                    (o.baseAddress! + r * d).update(from: p.baseAddress! + i * d, count: d)
                }
            }
        }
        return out
    }
}
