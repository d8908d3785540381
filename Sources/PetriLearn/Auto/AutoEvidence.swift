import Foundation
import PetriEngine
import PetriEval

/// What `auto` saw on one training set, for replaying other selection rules offline (`diagnostics=probabilities`;
/// never used to choose): every candidate's out-of-fold probabilities on the training images and its test
/// probabilities as `auto` would predict with it, plus methods recorded beside the candidates
/// (`diagnosticCandidates`). A blend of any weights, or a rule that weighs the members by inner-CV evidence, can
/// then be scored exactly from the record.
public struct AutoEvidence: Sendable {
    /// Labels of the training images (in training order) and of the test images.
    public var trainLabels: [Int]
    public var testLabels: [Int]
    /// The inner fold that held each training image out (empty when there was no inner CV).
    public var folds: [Int]
    /// By method name: `[training images][classes]` out of fold, `[test images][classes]` on the test set.
    public var outOfFold: [String: [[Float]]] = [:]
    public var test: [String: [[Float]]] = [:]

    /// The JSON object a record holds under `evidence` (probabilities rounded to 5 decimals).
    public var json: [String: Any] {
        let rows = { (t: [String: [[Float]]]) in t.mapValues { $0.map { $0.map { (Double($0) * 1e5).rounded() / 1e5 } } } }
        return ["train_labels": trainLabels, "test_labels": testLabels, "folds": folds,
                "out_of_fold": rows(outOfFold), "test": rows(test)]
    }

    public init?(json o: [String: Any]) {
        guard let train = o["train_labels"] as? [Int], let test = o["test_labels"] as? [Int] else { return nil }
        trainLabels = train
        testLabels = test
        folds = o["folds"] as? [Int] ?? []
        let read = { (v: Any?) in ((v as? [String: [[NSNumber]]]) ?? [:]).mapValues { $0.map { $0.map(\.floatValue) } } }
        outOfFold = read(o["out_of_fold"])
        self.test = read(o["test"])
    }

    init(trainLabels: [Int], testLabels: [Int], folds: [Int]) {
        self.trainLabels = trainLabels
        self.testLabels = testLabels
        self.folds = folds
    }

    static func rows(_ t: Tensor) -> [[Float]] {
        let classes = t.shape.last ?? 1
        return (0..<(t.shape.first ?? 0)).map { i in (0..<classes).map { t[flat: i * classes + $0] } }
    }
}

extension AutoMethod {
    /// The evidence of `pool` (scored on `folds` with `results`; their test probabilities from `outcome`, which
    /// keeps them so that nothing is fitted twice) and of the diagnostic methods at `scales`.
    func evidence(_ pool: [any FewShotMethod], results: [InnerResult], folds: [[Int]]?, scales: [Double],
                  train: [Int], test: [Int], outcome: inout Outcome, scores: inout [String: Double],
                  context: MethodContext) throws -> AutoEvidence {
        var foldOf = [Int](repeating: -1, count: folds == nil ? 0 : train.count)
        for (f, fold) in (folds ?? []).enumerated() { for p in fold { foldOf[p] = f } }
        var e = AutoEvidence(trainLabels: train.map { context.labels[$0] }, testLabels: test.map { context.labels[$0] }, folds: foldOf)
        for (c, r) in zip(pool, results) {
            if let folds { e.outOfFold[c.name] = AutoEvidence.rows(r.outOfFold(folds: folds, count: train.count, classes: context.classes)) }
        }
        for c in pool {
            let p = try outcome.predictions(c, train: train, test: test, context: context)
            outcome.refitPredictions[c.name] = p
            e.test[c.name] = AutoEvidence.rows(p)
        }
        for m in diagnosticCandidates?(scales) ?? [] {
            if let folds {
                let r = try innerScore(m, train: train, folds: folds, context: context)
                e.outOfFold[m.name] = AutoEvidence.rows(r.outOfFold(folds: folds, count: train.count, classes: context.classes))
                recordInner(m.name, r.perFold, into: &scores)
            }
            let p = try m.predict(train: train, test: test, context: context)
            e.test[m.name] = AutoEvidence.rows(p)
            scores["test: " + m.name] = Metrics.balancedAccuracy(
                labels: e.testLabels, predictions: argmaxRows(p), classes: context.classes)
        }
        return e
    }
}
