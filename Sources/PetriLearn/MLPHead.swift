import Foundation
import PetriEngine

/// A small MLP on frozen features (the original study's head): L2-normalised features scaled to unit
/// per-coordinate size, one hidden ReLU layer with dropout, softmax; full-batch AdamW with weight decay,
/// label smoothing and class-balanced sample weights, a fixed number of steps with cosine decay.
/// Full batch because training sets are tiny (≤ a few thousand rows): every step sees every class.
public struct MLPHead: Sendable {
    public var hidden = 256
    public var steps = 300
    public var learningRate: Float = 3e-3
    public var weightDecay: Float = 0.05
    public var dropout: Float = 0.5
    public var labelSmoothing: Float = 0.1

    public init() {}

    public struct Fitted: Sendable {
        public var w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor

        public init(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) {
            self.w1 = w1; self.b1 = b1; self.w2 = w2; self.b2 = b2
        }

        /// `[N, classes]` probabilities for raw features `[N, D]`.
        public func probabilities(_ features: Tensor) -> Tensor {
            let tape = Tape(training: false)
            let x = tape.constant(MLPHead.standardized(features))
            let h = try! tape.activation(tape.linear(x, weight: tape.constant(w1), bias: tape.constant(b1)), .relu)
            var logits = tape.linear(h, weight: tape.constant(w2), bias: tape.constant(b2)).value
            let (n, k) = (logits.shape[0], logits.shape[1])
            logits.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: n, columns: k) }
            return logits
        }
    }

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
        /// Weight λ of the diversity term. SHOT's 1 forces an even class mix; 0.3 leaves room for a skewed one
        /// (bccd half → other half, 104 of 177 neutrophils: accuracy 0.846 as is, 0.754 with λ = 1, 0.834
        /// with 0.3) and scored best across labs too (README, "Another lab's images").
        public var diversity: Float = 0.3
        /// Weight of SHOT's pseudo-label term: cross-entropy against the nearest class centroid (cosine, in
        /// the hidden layer; centroids weighted by the predictions, then by those labels), refreshed every
        /// `pseudoLabelEvery` steps. 0: information maximisation alone. bccd → PBC, six model × draw cases:
        /// 0.535 as is, 0.596 without the term, 0.797 with 0.3.
        public var pseudoLabelWeight: Float = 0.3
        public var pseudoLabelEvery = 15
        public init() {}

        public func adapt(_ head: Fitted, to features: Tensor) -> Fitted {
            let x = MLPHead.standardized(features)
            let w1 = Parameter(head.w1), b1 = Parameter(head.b1)
            let optimizer = AdamW([ParameterGroup([w1, b1])], learningRate: learningRate)
            var pseudo: [Int] = []
            for step in 0..<steps {
                optimizer.zeroGradients()
                if pseudoLabelWeight > 0, step % pseudoLabelEvery == 0 {
                    pseudo = Self.centroidLabels(Fitted(w1: w1.value, b1: b1.value, w2: head.w2, b2: head.b2), x)
                }
                do {
                    let tape = Tape(training: false)
                    let h = try! tape.activation(tape.linear(tape.constant(x), weight: tape.parameter(w1), bias: tape.parameter(b1)), .relu)
                    let logits = tape.linear(h, weight: tape.constant(head.w2), bias: tape.constant(head.b2))
                    tape.backward(from: tape.informationMaximisation(logits, diversity: diversity))
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
        static func centroidLabels(_ head: Fitted, _ standardized: Tensor) -> [Int] {
            let tape = Tape(training: false)
            let hv = try! tape.activation(tape.linear(tape.constant(standardized), weight: tape.constant(head.w1), bias: tape.constant(head.b1)), .relu)
            let h = l2NormalizedRows(hv.value)
            var logits = tape.linear(hv, weight: tape.constant(head.w2), bias: tape.constant(head.b2)).value
            let (n, k, d) = (h.shape[0], head.w2.shape[0], h.shape[1])
            logits.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: n, columns: k) }
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

    /// Rows L2-normalised then scaled by √D, so coordinates are O(1) whatever the feature width.
    static func standardized(_ x: Tensor) -> Tensor {
        l2NormalizedRows(x).scaled(by: Float(x.shape[1]).squareRoot())
    }

    public func fit(_ features: Tensor, labels: [Int], classes: Int, seed: UInt64) -> Fitted {
        let x = Self.standardized(features)
        let (n, d) = (x.shape[0], x.shape[1])
        var rng = SeededGenerator(seed: seed, stream: "mlp-head")
        func normal(_ shape: [Int], std: Float) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in rng.normal() * std })
        }
        let w1 = Parameter(normal([hidden, d], std: (2 / Float(d)).squareRoot()))
        let b1 = Parameter(Tensor(zeros: [hidden]))
        let w2 = Parameter(normal([classes, hidden], std: (1 / Float(hidden)).squareRoot()))
        let b2 = Parameter(Tensor(zeros: [classes]))
        let optimizer = AdamW([ParameterGroup([w1, w2], weightDecay: weightDecay), ParameterGroup([b1, b2])],
                              learningRate: learningRate)
        let schedule = WarmupCosineSchedule(peak: learningRate, totalSteps: steps, warmupFraction: 0.05)
        // Class-balanced weights: each class contributes equally to the loss (balanced accuracy).
        var counts = [Int](repeating: 0, count: classes)
        for l in labels { counts[l] += 1 }
        let weights = labels.map { Float(n) / Float(classes * max(1, counts[$0])) }
        for step in 0..<steps {
            optimizer.learningRate = schedule(step)
            optimizer.zeroGradients()
            do {   // the tape (and its references to the weights) ends before the in-place update
                let tape = Tape(training: true)
                let input = tape.constant(x)
                var h = try! tape.activation(tape.linear(input, weight: tape.parameter(w1), bias: tape.parameter(b1)), .relu)
                h = tape.dropout(h, rate: dropout, using: &rng)
                let logits = tape.linear(h, weight: tape.parameter(w2), bias: tape.parameter(b2))
                let loss = tape.softmaxCrossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing, sampleWeights: weights)
                tape.backward(from: loss)
            }
            optimizer.step()
        }
        return Fitted(w1: w1.value, b1: b1.value, w2: w2.value, b2: b2.value)
    }
}
