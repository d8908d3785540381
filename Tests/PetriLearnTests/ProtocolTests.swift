import Foundation
import PetriData
import PetriEngine
import PetriEval
import Testing
@testable import PetriLearn

/// A stand-in method for checking protocol mechanics without images: with probability `skill` it gives the
/// true class all the mass, otherwise class (label + 1) mod K — deterministically per item.
struct StubMethod: FewShotMethod {
    var name: String
    var skill: Double

    func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let k = context.classes
        var out = Tensor(zeros: [test.count, k])
        for (r, i) in test.enumerated() {
            let right = Double((i * 7919) % 100) / 100 < skill
            let label = context.labels[i]
            out[flat: r * k + (right ? label : (label + 1) % k)] = 1
        }
        return out
    }
}

/// An "expensive" stub (like a network trained from scratch) that logs the training-set sizes it was fitted on.
final class FitLog: @unchecked Sendable { var trainSizes: [Int] = [] }

struct ExpensiveStub: FewShotMethod {
    var name: String
    var skill: Double
    let log: FitLog
    var isExpensive: Bool { true }

    func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        log.trainSizes.append(train.count)
        return try StubMethod(name: name, skill: skill).predict(train: train, test: test, context: context)
    }
}

@Suite struct ProtocolTests {
    /// 3 classes × 20 items; no files are read (stub methods need none).
    static func syntheticDataset() -> Dataset {
        let items = (0..<60).map { DatasetItem(path: "/nonexistent/\($0).png", relativePath: "\($0).png", label: $0 % 3) }
        return Dataset(root: URL(fileURLWithPath: "/nonexistent"), classNames: ["a", "b", "c"], items: items)
    }

    @Test func autoPicksTheScaleWhoseProbeScoresBestThenItsCandidates() throws {
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 0)
        var auto = AutoMethod(crops: [1, 0.5], scaleProbe: { c in StubMethod(name: "probe\(c)", skill: c < 1 ? 1 : 0.4) },
                              candidates: { c in [StubMethod(name: "weak\(c[0])", skill: 0.3), StubMethod(name: "strong\(c[0])", skill: 0.9)] })
        let train = Array(0..<45)
        let (winner, scores) = try auto.choose(train: train, context: context)
        #expect(winner.name == "strong0.5")
        #expect(scores["scale: probe0.5"]! > scores["scale: probe1.0"]!)
        // A smaller crop must win by the margin: with equal probes the whole image stays.
        auto.scaleProbe = { c in StubMethod(name: "probe\(c)", skill: 0.8) }
        #expect(try auto.choose(train: train, context: context).0.name == "strong1.0")
        // Among smaller crops the best wins outright, even by less than the margin over the next one.
        auto.crops = [1, 0.7, 0.5]
        auto.scaleProbe = { c in StubMethod(name: "probe\(c)", skill: c == 1 ? 0.4 : c == 0.7 ? 0.8 : 0.85) }
        let (w, s) = try auto.choose(train: train, context: context)
        #expect(s["scale: probe0.5"]! > s["scale: probe0.7"]!)
        #expect(w.name == "strong0.5")
        // The candidates also get the runner-up scale when the probe cannot tell the two apart (here equal:
        // the first listed wins, the other joins), only the chosen one without `scaleEnsemble`, and only the
        // chosen one when it leads clearly.
        auto.candidatesForCrop = { c in [StubMethod(name: "at" + c.map { "\($0)" }.joined(separator: "+"), skill: 0.9)] }
        auto.scaleProbe = { c in StubMethod(name: "probe\(c)", skill: c == 1 ? 0.4 : 0.85) }
        #expect(try auto.choose(train: train, context: context).0.name == "at0.7+0.5")
        auto.scaleEnsemble = false
        #expect(try auto.choose(train: train, context: context).0.name == "at0.7")
        auto.scaleEnsemble = true
        auto.scaleProbe = { c in StubMethod(name: "probe\(c)", skill: c == 1 ? 0.4 : c == 0.7 ? 0.6 : 0.9) }
        #expect(try auto.choose(train: train, context: context).0.name == "at0.5")
        // The whole image chosen: one scale.
        auto.scaleEnsemble = true
        auto.scaleProbe = { c in StubMethod(name: "probe\(c)", skill: 0.8) }
        #expect(try auto.choose(train: train, context: context).0.name == "at1.0")
    }

    /// A probe that is right on every item with probability `truth` on the true class (the rest spread evenly):
    /// balanced accuracy 1 whatever `truth` (above 1/K), the true-class probability `truth`.
    struct SoftProbe: FewShotMethod {
        var name: String
        var truth: Float
        func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
            let k = context.classes
            var out = Tensor(zeros: [test.count, k])
            for (r, i) in test.enumerated() {
                for c in 0..<k { out[flat: r * k + c] = c == context.labels[i] ? truth : (1 - truth) / Float(k - 1) }
            }
            return out
        }
    }

    /// The scale probe is scored by the true-class probability and a crop must raise it by a quarter (plus
    /// one standard error); balanced accuracy cannot see a gain once every item is right.
    @Test func aCropMustRaiseTheTrueClassProbabilityByAQuarter() throws {
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 4)
        func chosen(crop truth: Float, score: AutoMethod.ScaleScore) throws -> String {
            var auto = AutoMethod(crops: [1, 0.5], scaleProbe: { c in SoftProbe(name: "probe\(c)", truth: c < 1 ? truth : 0.5) },
                                  candidates: { c in [StubMethod(name: "at\(c[0])", skill: 0.9)] })
            auto.scaleScore = score
            let (winner, scores) = try auto.choose(train: Array(0..<45), context: context)
            #expect(abs(scores["scale-p: probe1.0"]! - 0.5) < 1e-6)
            #expect(abs(scores["scale: probe1.0"]! - 1) < 1e-9)
            return winner.name
        }
        #expect(try chosen(crop: 0.6, score: .trueClassProbability) == "at1.0")   // +20 %: not enough
        #expect(try chosen(crop: 0.7, score: .trueClassProbability) == "at0.5")   // +40 %
        #expect(try chosen(crop: 0.7, score: .balancedAccuracy) == "at1.0")       // 1.0 against 1.0
    }

    /// The class-balanced mean true-class probability of a fold, by hand: class 0 items 0.9 and 0.5 (mean 0.7),
    /// class 1 item 0.2: (0.7 + 0.2) / 2.
    @Test func softScoreIsTheClassBalancedTrueClassProbability() {
        let items = (0..<3).map { DatasetItem(path: "/nonexistent/\($0).png", relativePath: "\($0).png", label: $0 == 2 ? 1 : 0) }
        let ds = Dataset(root: URL(fileURLWithPath: "/nonexistent"), classNames: ["a", "b"], items: items)
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 0)
        let p = Tensor(shape: [3, 2], data: [0.9, 0.1, 0.5, 0.5, 0.8, 0.2])
        let auto = AutoMethod(candidates: [])
        #expect(abs(auto.softScore(p, fold: [0, 1, 2], train: [0, 1, 2], context: context) - 0.45) < 1e-6)
    }

    @Test func autoAveragesTheInnerFoldModelsOfAnExpensiveWinnerInsteadOfRefitting() throws {
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 1)
        let log = FitLog()
        let auto = AutoMethod(candidates: [StubMethod(name: "cheap", skill: 0.3), ExpensiveStub(name: "net", skill: 1, log: log)])
        let train = Array(0..<45), test = Array(45..<60)
        let (outcome, p) = try auto.run(train: train, test: test, context: context)
        #expect(outcome.chosen.name == "net")
        #expect(outcome.scores["seconds: net"] != nil)
        #expect(log.trainSizes == [30, 30, 30])  // three inner folds, no refit on all 45
        #expect(outcome.foldEnsemble != nil)
        // Each fold model is right on every test item here, so their mean is one-hot on the true class.
        for (r, i) in test.enumerated() { #expect(abs(p[flat: r * 3 + ds.items[i].label] - 1) < 1e-6) }
        // A cheap winner is refitted on the whole training set as before.
        let cheapWins = AutoMethod(candidates: [StubMethod(name: "cheap", skill: 0.9), ExpensiveStub(name: "net", skill: 0.2, log: log)])
        #expect(try cheapWins.run(train: train, test: test, context: context).0.foldEnsemble == nil)
    }

    /// Two methods each right on half the items, confidently where right and barely wrong elsewhere: alone
    /// ~50%, their soft vote right everywhere. `auto` scores the blend from the fold predictions it already
    /// has and picks it; its test prediction is the members' mean.
    @Test func autoBlendsTwoCandidatesWhoseErrorsDiffer() throws {
        struct HalfRight: FewShotMethod {
            var name: String
            var parity: Int
            func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
                let k = context.classes
                var out = Tensor(zeros: [test.count, k])
                for (r, i) in test.enumerated() {
                    let label = context.labels[i], right = i % 2 == parity
                    out[flat: r * k + label] = right ? 0.9 : 0.45
                    out[flat: r * k + (label + 1) % k] = right ? 0.1 : 0.55
                }
                return out
            }
        }
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 2)
        var auto = AutoMethod(candidates: [HalfRight(name: "even", parity: 0), HalfRight(name: "odd", parity: 1)])
        let train = Array(0..<45), test = Array(45..<60)
        let (outcome, p) = try auto.run(train: train, test: test, context: context)
        #expect(outcome.chosen.name == "blend[even + odd]")
        #expect(outcome.scores["blend[even + odd]"]! > 0.99)
        #expect(outcome.scores["even"]! < 0.7 && outcome.scores["odd"]! < 0.7)
        for (r, i) in test.enumerated() { #expect(abs(p[flat: r * 3 + ds.items[i].label] - 0.675) < 1e-6) }
        auto.blend = false
        #expect(try auto.run(train: train, test: test, context: context).0.chosen.name != "blend[even + odd]")
    }

    /// Below `blendBelow` images per class there is nothing to choose by: the first two candidates are each
    /// fitted once on the whole training set and their probabilities averaged.
    @Test func belowTenPerClassAutoBlendsWithoutInnerCrossValidation() throws {
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 3)
        let log = FitLog()
        let auto = AutoMethod(candidates: [StubMethod(name: "cheap", skill: 0.9), ExpensiveStub(name: "net", skill: 0.5, log: log)])
        let train = Array(0..<24), test = Array(45..<60)   // 8 per class
        let (outcome, p) = try auto.run(train: train, test: test, context: context)
        #expect(outcome.chosen.name == "blend[cheap + net]")
        #expect(log.trainSizes == [24])
        let cheap = try StubMethod(name: "cheap", skill: 0.9).predict(train: train, test: test, context: context)
        let net = try StubMethod(name: "net", skill: 0.5).predict(train: train, test: test, context: context)
        #expect(p.maxAbsDifference((cheap + net).scaled(by: 0.5)) < 1e-6)
    }

    /// The diagnostics for replaying the rules (`recordTestScores`) record every candidate's inner folds and test
    /// score, also below `blendBelow`, and the probe's test score at each crop, without changing the choice or
    /// the predictions.
    @Test func diagnosticsRecordTheEvidenceAndChangeNothing() throws {
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 4)
        let log = FitLog()
        var auto = AutoMethod(crops: [1, 0.5], scaleProbe: { c in StubMethod(name: "probe\(c)", skill: c < 1 ? 0.9 : 0.5) },
                              candidates: { c in [StubMethod(name: "cheap\(c[0])", skill: 0.9), ExpensiveStub(name: "net\(c[0])", skill: 0.6, log: log)] })
        for train in [Array(0..<24), Array(0..<45)] {   // 8 and 15 per class
            let test = Array(45..<60)
            let (plain, p) = try auto.run(train: train, test: test, context: context)
            auto.recordTestScores = true
            let (studied, q) = try auto.run(train: train, test: test, context: context)
            auto.recordTestScores = false
            #expect(studied.chosen.name == plain.chosen.name)
            #expect(p.maxAbsDifference(q) < 1e-6)
            let s = studied.scores, blend = "blend[cheap0.5 + net0.5]"
            for name in ["cheap0.5", "net0.5", blend] {
                #expect(s["test: " + name] != nil, "test: \(name)")
                #expect(s["fold0: " + name] != nil && s["fold1: " + name] != nil, "fold0: \(name)")
                let folds = (0..<3).compactMap { s["fold\($0): " + name] }
                #expect(abs(folds.reduce(0, +) / Double(folds.count) - s[name]!) < 1e-9)
            }
            #expect(s["test: probe0.5"]! > s["test: probe1.0"]!)
            if train.count == 24 {
                let labels = test.map { context.labels[$0] }
                let truth = Metrics.balancedAccuracy(labels: labels, predictions: argmaxRows(q), classes: 3)
                #expect(abs(s["test: " + blend]! - truth) < 1e-9)
            }
        }
    }

    /// `recordProbabilities`: every candidate's out-of-fold and test probabilities and a diagnostic method's, from
    /// which the record's own test scores and blend are recomputed exactly; the choice and prediction unchanged.
    @Test func evidenceReplaysTheScoresAndChangesNothing() throws {
        let ds = Self.syntheticDataset()
        let context = MethodContext(dataset: ds, bank: FeatureBank(dataset: ds), seed: 4)
        let log = FitLog()
        var auto = AutoMethod(candidates: [StubMethod(name: "cheap", skill: 0.8), ExpensiveStub(name: "net", skill: 0.6, log: log)])
        for train in [Array(0..<24), Array(0..<45)] {   // 8 (blend, no inner CV) and 15 per class (inner CV)
            let test = Array(45..<60)
            let (plain, p) = try auto.run(train: train, test: test, context: context)
            auto.recordTestScores = true
            auto.recordProbabilities = true
            auto.diagnosticCandidates = { _ in [StubMethod(name: "side", skill: 0.7)] }
            let (studied, q) = try auto.run(train: train, test: test, context: context)
            auto.recordTestScores = false
            auto.recordProbabilities = false
            #expect(studied.chosen.name == plain.chosen.name)
            #expect(p.maxAbsDifference(q) < 1e-6)
            let e = try #require(studied.evidence)
            #expect(e.trainLabels == train.map { context.labels[$0] })
            #expect(e.testLabels == test.map { context.labels[$0] })
            #expect(e.folds.count == train.count && Set(e.folds) == [0, 1, 2])
            let roundTrip = try #require(AutoEvidence(json: e.json))
            for name in ["cheap", "net", "side"] {
                let rows = try #require(roundTrip.test[name], "test: \(name)")
                let predicted = rows.map { r in r.indices.max { r[$0] < r[$1] }! }
                let score = Metrics.balancedAccuracy(labels: e.testLabels, predictions: predicted, classes: 3)
                #expect(abs(score - studied.scores["test: " + name]!) < 1e-9, "\(name)")
                let oof = try #require(roundTrip.outOfFold[name])
                for f in 0..<3 {
                    let positions = e.folds.indices.filter { e.folds[$0] == f }
                    let fold = Metrics.balancedAccuracy(labels: positions.map { e.trainLabels[$0] },
                                                        predictions: positions.map { r in oof[r].indices.max { oof[r][$0] < oof[r][$1] }! }, classes: 3)
                    #expect(abs(fold - studied.scores["fold\(f): " + name]!) < 1e-9, "fold\(f): \(name)")
                }
            }
            if train.count == 24 {   // the prediction is the 1 : 1 blend of the recorded test probabilities
                let blend = zip(e.test["cheap"]!, e.test["net"]!).map { a, b in zip(a, b).map { ($0 + $1) / 2 } }
                for (i, r) in blend.enumerated() { for c in 0..<3 { #expect(abs(Double(r[c]) - Double(q[flat: i * 3 + c])) < 1e-4) } }
            }
        }
    }

    @Test func repeatedCrossValidationCoversThePoolAndKeepsTheHoldoutApart() throws {
        let ds = Self.syntheticDataset()
        let bank = FeatureBank(dataset: ds)
        var records: [CurveRecord] = []
        let cv = RepeatedCrossValidation(folds: 4, repeats: 2, holdoutFraction: 0.1, seed: 3)
        try cv.run(dataset: ds, bank: bank, methods: [MethodEntry(StubMethod(name: "oracle", skill: 1)), MethodEntry(StubMethod(name: "half", skill: 0.5))]) {
            records.append($0)
        }
        #expect(records.count == 2 * (4 * 2 + 2))
        let holdout = try #require(records.first { $0.evaluation == "holdout" })
        #expect(holdout.testCount == 6)  // round(0.1 × 20) per class
        let held = Set(holdout.test)
        for rep in 0..<2 {
            let folds = records.filter { $0.method == "oracle" && $0.evaluation == "cv" && Int($0.seed) / 4 == rep }
            #expect(folds.count == 4)
            let covered = folds.flatMap(\.test)
            #expect(covered.count == 54 && Set(covered).count == 54)  // every pool item exactly once per repeat
            #expect(held.isDisjoint(with: covered))
            #expect(folds.allSatisfy { $0.trainCount + $0.testCount == 54 && $0.balancedAccuracy == 1 })
        }
        let names = RepeatedCrossValidation.ensembleNames("oracle")
        #expect(records.first { $0.method == names.mean }?.balancedAccuracy == 1)
        #expect(records.first { $0.method == names.vote }?.balancedAccuracy == 1)
        // Fold ensembles of the half-right stub are right exactly where each member is (same items).
        let half = records.first { $0.method == RepeatedCrossValidation.ensembleNames("half").vote }!
        let expected = holdout.test.filter { Double(($0 * 7919) % 100) / 100 < 0.5 }.count
        #expect(half.confusion.indices.map { half.confusion[$0][$0] }.reduce(0, +) == expected)
    }
}
