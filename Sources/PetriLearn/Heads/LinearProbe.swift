import Foundation
import PetriData
import PetriEngine
import PetriEval

/// A linear probe on frozen features: L2-normalised features, multinomial logistic regression, with the
/// regularisation strength chosen by inner stratified cross-validation on the training data only.
public struct LinearProbe: Sendable {
    public var cGrid: [Double] = [0.3, 1, 3, 10, 30, 100]
    public var innerFolds = 3

    public init() {}

    public struct Model: Sendable {
        public var regression: LogisticRegression.Fitted
        public var c: Double

        public func probabilities(_ features: Tensor) -> Tensor {
            regression.probabilities(l2NormalizedRows(features))
        }
    }

    /// Fits on training features, choosing C by inner cross-validated balanced accuracy (ties → smaller C).
    public func fit(_ features: Tensor, labels: [Int], classes: Int, seed: UInt64) -> Model {
        let x = l2NormalizedRows(features)
        var bestC = cGrid.first ?? 1
        let minClass = (0..<classes).map { c in labels.filter { $0 == c }.count }.filter { $0 > 0 }.min() ?? 0
        let folds = min(innerFolds, minClass)
        if cGrid.count > 1 && folds >= 2 {
            let testFolds = Splits.stratifiedKFold(labels: labels, folds: folds, seed: seed)
            var best = -1.0
            // Warm starts along the (ascending) C path, one chain per fold.
            var previous = [LogisticRegression.Fitted?](repeating: nil, count: testFolds.count)
            for c in cGrid.sorted() {
                var scores: [Double] = []
                for (f, test) in testFolds.enumerated() {
                    let testSet = Set(test)
                    let train = labels.indices.filter { !testSet.contains($0) }
                    let fitted = LogisticRegression(c: c).fit(x.rows(train), labels: train.map { labels[$0] },
                                                              classes: classes, warmStart: previous[f])
                    previous[f] = fitted
                    let p = fitted.probabilities(x.rows(test))
                    scores.append(Metrics.balancedAccuracy(labels: test.map { labels[$0] },
                                                           predictions: argmaxRows(p), classes: classes))
                }
                let mean = scores.reduce(0, +) / Double(scores.count)
                if mean > best + 1e-9 { best = mean; bestC = c }
            }
        }
        return Model(regression: LogisticRegression(c: bestC).fit(x, labels: labels, classes: classes), c: bestC)
    }
}

/// Index of the largest entry of each row of `[N, K]`.
public func argmaxRows(_ p: Tensor) -> [Int] {
    let k = p.shape[1]
    return p.withUnsafeBufferPointer { b in
        (0..<p.shape[0]).map { i in
            var best = 0
            for j in 1..<k where b[i * k + j] > b[i * k + best] { best = j }
            return best
        }
    }
}

/// Repeated stratified k-fold cross-validation of a classifier on precomputed features.
public struct CrossValidation {
    public struct Fold: Sendable {
        public var repeatIndex: Int
        public var fold: Int
        public var test: [Int]
        public var predictions: [Int]
        public var probabilities: [[Double]]
        public var balancedAccuracy: Double
        public var chosenC: Double
    }

    public static func run(features: Tensor, labels: [Int], groups: [String?] = [], classes: Int, folds: Int,
                           repeats: Int, seed: UInt64, probe: LinearProbe = LinearProbe(),
                           progress: ((Int, Int) -> Void)? = nil) -> [Fold] {
        var out: [Fold] = []
        let total = folds * repeats
        for r in 0..<repeats {
            let testFolds = Splits.stratifiedKFold(labels: labels, groups: groups, folds: folds,
                                                   seed: seed &+ UInt64(r) &* 1_000_003)
            for (f, test) in testFolds.enumerated() {
                let testSet = Set(test)
                let train = labels.indices.filter { !testSet.contains($0) }
                let model = probe.fit(features.rows(train), labels: train.map { labels[$0] }, classes: classes,
                                      seed: seed &+ UInt64(r * folds + f))
                let p = model.probabilities(features.rows(test))
                let predictions = argmaxRows(p)
                let probs = (0..<test.count).map { i in (0..<classes).map { Double(p[flat: i * classes + $0]) } }
                out.append(Fold(repeatIndex: r, fold: f, test: test, predictions: predictions, probabilities: probs,
                                balancedAccuracy: Metrics.balancedAccuracy(labels: test.map { labels[$0] },
                                                                           predictions: predictions, classes: classes),
                                chosenC: model.c))
                progress?(out.count, total)
            }
        }
        return out
    }
}
