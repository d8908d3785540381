import Foundation
import PetriData
import PetriEngine
import PetriEval

/// Inner cross-validation on a training set: how `auto` scores its scale probes and candidates.
extension AutoMethod {
    /// One method's inner cross-validation on a training set.
    struct InnerResult {
        /// Mean balanced accuracy over the folds, and each fold's.
        var score: Double
        var extra: Tensor?
        var models: [any FittedClassifier]
        var perFold: [Double]
        /// Each fold's probabilities for its own held-out items.
        var foldProbabilities: [Tensor]
        var seconds = 0.0

        /// `[count, classes]`: row i from the fold that held training position i out.
        func outOfFold(folds: [[Int]], count: Int, classes: Int) -> Tensor {
            var oof = Tensor(zeros: [count, classes])
            for (fold, p) in zip(folds, foldProbabilities) {
                for (row, position) in fold.enumerated() {
                    for c in 0..<classes { oof[flat: position * classes + c] = p[flat: row * classes + c] }
                }
            }
            return oof
        }
    }

    /// Scores `method` on each fold of `train` (mean balanced accuracy); with `extraTest`, each fold model
    /// also predicts those items and their mean probabilities are returned.
    func innerScore(_ method: any FewShotMethod, train: [Int], folds testFolds: [[Int]], extraTest: [Int] = [],
                    keepModels: Bool = false, context: MethodContext) throws -> InnerResult {
        var s: [Double] = []
        var extra: Tensor? = extraTest.isEmpty ? nil : Tensor(zeros: [extraTest.count, context.classes])
        var models: [any FittedClassifier] = []
        var own: [Tensor] = []
        // Each fold: (model if kept, probabilities of its held-out items then of `extraTest`).
        let fitFold = { (f: Int, context: MethodContext) throws -> ((any FittedClassifier)?, Tensor) in
            let inFold = Set(testFolds[f])
            let innerTrain = train.indices.filter { !inFold.contains($0) }.map { train[$0] }
            let innerTest = testFolds[f].map { train[$0] }
            if keepModels, let fittable = method as? any FittableMethod {
                let model = try fittable.fit(train: innerTrain, context: context)
                return (model, try model.probabilities(innerTest + extraTest, context: context))
            }
            return (nil, try method.predict(train: innerTrain, test: innerTest + extraTest, context: context))
        }
        let fitted: [((any FittedClassifier)?, Tensor)]
        if method.fitsRunSideBySide && testFolds.count > 1 {
            try method.prepare(items: train + extraTest, context: context)
            // Fold fits side by side, one core each; only the first reports progress.
            fitted = try ComputeLanes.run(testFolds.count) { f in
                var c = context
                if f > 0 { c.progress = nil }
                return try fitFold(f, c)
            }
        } else {
            fitted = try testFolds.indices.map { try fitFold($0, context) }
        }
        for (fold, (model, p)) in zip(testFolds, fitted) {
            let innerTest = fold.map { train[$0] }
            if let model { models.append(model) }
            own.append(extraTest.isEmpty ? p : p.rows(Array(0..<innerTest.count)))
            s.append(foldScore(own.last!, fold: fold, train: train, context: context))
            if !extraTest.isEmpty {
                extra!.add(p.rows(Array(innerTest.count..<(innerTest.count + extraTest.count))).scaled(by: 1 / Float(testFolds.count)))
            }
        }
        return InnerResult(score: s.reduce(0, +) / Double(s.count), extra: extra, models: models, perFold: s, foldProbabilities: own)
    }

    /// Class-balanced mean probability of the true class over the held-out items of a fold.
    func softScore(_ p: Tensor, fold: [Int], train: [Int], context: MethodContext) -> Double {
        var sum = [Double](repeating: 0, count: context.classes), count = sum
        for (row, position) in fold.enumerated() {
            let label = context.labels[train[position]]
            sum[label] += Double(p[flat: row * context.classes + label])
            count[label] += 1
        }
        let present = (0..<context.classes).filter { count[$0] > 0 }
        return present.map { sum[$0] / count[$0] }.reduce(0, +) / Double(max(1, present.count))
    }

    func foldScore(_ p: Tensor, fold: [Int], train: [Int], context: MethodContext) -> Double {
        Metrics.balancedAccuracy(labels: fold.map { context.labels[train[$0]] }, predictions: argmaxRows(p), classes: context.classes)
    }

    /// Stratified folds of `train` (positions into it), `innerFolds` of them or fewer when the smallest class is
    /// smaller; nil below two per class. Repeat `r` draws another split.
    func innerFolds(train: [Int], context: MethodContext, repeat r: Int) -> [[Int]]? {
        let labels = train.map { context.labels[$0] }
        let smallest = (0..<context.classes).map { c in labels.filter { $0 == c }.count }.filter { $0 > 0 }.min() ?? 0
        let folds = min(innerFolds, smallest)
        guard folds >= 2 else { return nil }
        let groups = train.map { context.dataset.items[$0].group }
        return Splits.stratifiedKFold(labels: labels, groups: groups, folds: folds, seed: context.seed &+ 17 &+ UInt64(r) &* 7919)
    }

    /// Mean and standard error of the paired differences `a − b` (split by split or fold by fold).
    static func pairedGain(_ a: [Double], over b: [Double]) -> (mean: Double, standardError: Double) {
        let gains = zip(a, b).map { $0 - $1 }
        let mean = gains.reduce(0, +) / Double(gains.count)
        guard gains.count > 1 else { return (mean, 0) }
        let sd = (gains.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(gains.count - 1)).squareRoot()
        return (mean, sd / Double(gains.count).squareRoot())
    }

    /// Whether a challenger with these per-fold scores replaces the current choice: paired per-fold gains over
    /// the first (default) candidate must exceed `candidateMargin` plus one standard error, and beat the
    /// gain of the challenger chosen so far.
    func challengerWins(_ perFold: [Double], baseline: [Double], bestGain: inout Double) -> Bool {
        let gain = Self.pairedGain(perFold, over: baseline)
        guard gain.mean > candidateMargin + gain.standardError, gain.mean > bestGain else { return false }
        bestGain = gain.mean
        return true
    }
}
