import Foundation
import PetriEngine

extension MLPHead {
    /// Source-free adaptation to another lab's images (SHOT, Liang et al. 2020): the hidden layer is trained
    /// on the new images' features alone — no labels, no training images — to make the frozen classifier's
    /// predictions confident and diverse (`Tape.informationMaximisation`) and consistent with the clusters
    /// the new images form (pseudo-labels from class centroids), so that their features are mapped where the
    /// classifier separates classes. The output layer stays as trained. Full batch, AdamW at a small learning
    /// rate, no dropout, a fixed number of steps from the trained weights. Assumes the new images hold the
    /// model's classes (all of them, in not too uneven a mix): with half the classes absent it hurts.
    public struct Adaptation: Sendable {
        public var steps = 60
        public var learningRate: Float = 1e-3
        /// Weight λ of the diversity term. SHOT's 1 forces an even class mix; a smaller weight leaves room for a
        /// skewed one (docs/results.md, "Another lab's images").
        public var diversity: Float = 0.3
        /// Weight of SHOT's pseudo-label term: cross-entropy against the nearest class centroid (cosine, in
        /// the hidden layer; centroids weighted by the predictions, then by those labels), refreshed every
        /// `pseudoLabelEvery` steps. 0: information maximisation alone.
        public var pseudoLabelWeight: Float = 0.3
        public var pseudoLabelEvery = 15
        /// The class mix the diversity term and the centroids assume: even (SHOT's), or estimated from the head's
        /// own predictions on the new images (`ClassPrior`), for a skewed stream such as a clinic's.
        public var classMix = ClassMix.even
        public init() {}

        public enum ClassMix: String, Sendable, CaseIterable {
            case even, estimated
        }

        public func adapt(_ head: Fitted, to features: Tensor) -> Fitted {
            let x = MLPHead.standardized(features)
            var prior: [Double]?
            if classMix == .estimated {
                let p = head.probabilities(features), k = p.shape[1]
                prior = ClassPrior.estimate((0..<p.shape[0]).map { i in (0..<k).map { Double(p[flat: i * k + $0]) } }).prior
            }
            let w1 = Parameter(head.w1), b1 = Parameter(head.b1)
            let optimizer = AdamW([ParameterGroup([w1, b1])], learningRate: learningRate)
            var pseudo: [Int] = []
            for step in 0..<steps {
                optimizer.zeroGradients()
                if pseudoLabelWeight > 0, step % pseudoLabelEvery == 0 {
                    pseudo = Self.centroidLabels(Fitted(w1: w1.value, b1: b1.value, w2: head.w2, b2: head.b2), x, prior: prior)
                }
                do {
                    let tape = Tape(training: false)
                    let h = try! tape.activation(tape.linear(tape.constant(x), weight: tape.parameter(w1), bias: tape.parameter(b1)), .relu)
                    let logits = tape.linear(h, weight: tape.constant(head.w2), bias: tape.constant(head.b2))
                    tape.backward(from: tape.informationMaximisation(logits, diversity: diversity, prior: prior))
                }
                if pseudoLabelWeight > 0 {
                    let tape = Tape(training: false)
                    let h = try! tape.activation(tape.linear(tape.constant(x), weight: tape.parameter(w1), bias: tape.parameter(b1)), .relu)
                    let logits = tape.linear(h, weight: tape.constant(head.w2), bias: tape.constant(head.b2))
                    tape.backward(from: tape.softmaxCrossEntropy(logits, labels: pseudo), seed: Tensor(shape: [], data: [pseudoLabelWeight]))
                }
                optimizer.step()
            }
            return Fitted(w1: w1.value, b1: b1.value, w2: head.w2, b2: head.b2)
        }

        /// Each row's nearest class centroid by cosine in the hidden layer: centroids first weighted by the
        /// head's probabilities, then recomputed once from those nearest-centroid labels (SHOT).
        static func centroidLabels(_ head: Fitted, _ standardized: Tensor, prior: [Double]? = nil) -> [Int] {
            let tape = Tape(training: false)
            let hv = try! tape.activation(tape.linear(tape.constant(standardized), weight: tape.constant(head.w1), bias: tape.constant(head.b1)), .relu)
            let h = l2NormalizedRows(hv.value)
            var logits = tape.linear(hv, weight: tape.constant(head.w2), bias: tape.constant(head.b2)).value
            let (n, k, d) = (h.shape[0], head.w2.shape[0], h.shape[1])
            logits.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: n, columns: k) }
            if let prior {   // the centroids' weights: the predictions moved to the estimated mix
                let even = [Double](repeating: 1 / Double(k), count: k)
                for i in 0..<n {
                    let q = ClassPrior.adjust((0..<k).map { Double(logits[flat: i * k + $0]) }, prior: prior, trainingPrior: even)
                    for c in 0..<k { logits[flat: i * k + c] = Float(q[c]) }
                }
            }
            func nearest(_ weight: (Int, Int) -> Float) -> [Int] {
                var centroids = [Float](repeating: 0, count: k * d)
                for i in 0..<n {
                    for c in 0..<k {
                        let w = weight(i, c)
                        guard w != 0 else { continue }
                        for j in 0..<d { centroids[c * d + j] += w * h[flat: i * d + j] }
                    }
                }
                for c in 0..<k {
                    let norm = max(1e-12, (0..<d).map { centroids[c * d + $0] * centroids[c * d + $0] }.reduce(0, +).squareRoot())
                    for j in 0..<d { centroids[c * d + j] /= norm }
                }
                return (0..<n).map { i in
                    (0..<k).max { a, b in
                        (0..<d).map { centroids[a * d + $0] * h[flat: i * d + $0] }.reduce(0, +)
                            < (0..<d).map { centroids[b * d + $0] * h[flat: i * d + $0] }.reduce(0, +)
                    }!
                }
            }
            let soft = nearest { i, c in logits[flat: i * k + c] }
            return nearest { i, c in soft[i] == c ? 1 : 0 }
        }
    }
}
