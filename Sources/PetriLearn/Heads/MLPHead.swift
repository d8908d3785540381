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
