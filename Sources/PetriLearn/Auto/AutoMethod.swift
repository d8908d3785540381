import Foundation
import PetriData
import PetriEngine
import PetriEval

/// Picks among candidate methods by stratified inner cross-validation on the training set only, then predicts
/// with the winner refitted on the whole training set (or, for networks, the mean of its inner-fold models).
///
/// With several `crops`, it first picks the image scale (`chooseScales`): a cheap probe is scored by inner CV on
/// each central crop, and the candidates are then built for the crops chosen (`candidatesForCrop`). Objects
/// centred in a wider field (a white cell among red cells) are seen far better at a tight crop; images that
/// already fill the frame keep the whole image.
///
/// Below `blendBelow` images in the smallest class there is no inner CV: the inner folds would hold one to three
/// images per class, too few to choose by, so the first two candidates are blended (`selectWithoutInnerCV`).
/// Petri's default recipe (`AutoRecipe`) builds one from an `AutoSpec`; the rules' margins and how they were
/// validated are in docs/results.md.
public struct AutoMethod: FewShotMethod {
    public var candidates: [any FewShotMethod]
    public var innerFolds = 3
    public var crops: [Double] = [1]
    /// The candidates for the chosen scales: the chosen crop first, then (`scaleEnsemble`) the runner-up.
    public var candidatesForCrop: (([Double]) -> [any FewShotMethod])?
    public var scaleProbe: ((Double) -> any FewShotMethod)?
    /// A challenger replaces the first candidate (the default) only when its mean per-fold gain exceeds this
    /// plus one standard error of the paired gains: inner folds of 20–80 images move by several points on noise.
    public var candidateMargin = 0.02
    /// When a smaller crop wins and the runner-up scale is within the score's runner-up margin of it, the
    /// candidates get both scales (heads at each, averaged): the probe cannot rank near-equal scales.
    public var scaleEnsemble = true
    /// How many differently seeded inner k-fold splits score each image scale (one split is noise).
    public var scaleRepeats = 3
    public var scaleScore = ScaleScore.trueClassProbability
    /// Expensive candidates (trained networks) are not refitted on the whole training set: the models of the
    /// inner folds, which predicted the test images alongside their held-out fold, are averaged instead.
    public var reuseFoldModels = true
    /// Also consider the soft vote of the first candidate and the best of the others, scored on the same inner
    /// folds from the members' fold predictions (no extra fit): a frozen-feature head and a network trained from
    /// scratch make different errors.
    public var blend = true
    /// The blend keeps the default as half of it, so it needs less evidence than a replacement: a mean inner
    /// gain of this much over the default (and over the challenger chosen so far), no standard error.
    public var blendMargin = 0.03
    /// Below this many images in the smallest class, no inner CV: the blend of the first two candidates.
    public var blendBelow = 10
    /// Record each candidate's test-set balanced accuracy and each probe split's scores (`test: …`,
    /// `scale0: …`) — for studying the rules only, never used to choose.
    public var recordTestScores = false
    /// Record the evidence to replay other rules offline (`Outcome.evidence`): each candidate's out-of-fold and
    /// test probabilities, and those of `diagnosticCandidates` (scored on the same folds, never chosen).
    public var recordProbabilities = false
    public var diagnosticCandidates: (([Double]) -> [any FewShotMethod])?
    /// Stop after the scale choice and predict with the scale probe at the chosen crop (studying the scale rule).
    public var probeOnly = false

    public var label = "auto"
    public var name: String { label }

    public init(candidates: [any FewShotMethod]) { self.candidates = candidates }

    public init(crops: [Double], scaleProbe: @escaping (Double) -> any FewShotMethod,
                candidates: @escaping ([Double]) -> [any FewShotMethod]) {
        self.crops = crops
        self.scaleProbe = scaleProbe
        self.candidatesForCrop = candidates
        self.candidates = candidates([crops.first ?? 1])
    }

    /// Picks the scale, then the candidate; with `test`, also gives the fold ensembles of expensive candidates.
    /// `keepModels`: keep the inner-fold models of expensive candidates (a saved model is their ensemble).
    public func select(train: [Int], test: [Int] = [], keepModels: Bool = false, context: MethodContext) throws -> Outcome {
        var scores: [String: Double] = [:]
        var pool = candidates
        var scales = [crops.first ?? 1]
        if crops.count > 1, let candidatesForCrop {
            scales = try chooseScales(train: train, test: test, context: context, scores: &scores)
            if probeOnly, let scaleProbe {
                var outcome = Outcome(chosen: scaleProbe(scales[0]), scores: scores)
                outcome.scales = scales
                return outcome
            }
            pool = candidatesForCrop(scales)
        }
        var outcome: Outcome
        if blend, pool.count > 1, smallestClass(train, context) < blendBelow {
            outcome = try selectWithoutInnerCV(pool, train: train, test: test, scales: scales, scores: scores, context: context)
        } else if pool.count > 1, let folds = innerFolds(train: train, context: context, repeat: 0) {
            outcome = try selectByInnerCV(pool, folds: folds, train: train, test: test, scales: scales,
                                          keepModels: keepModels, scores: scores, context: context)
        } else {
            outcome = Outcome(chosen: pool[0], scores: scores)
        }
        outcome.scales = scales
        return outcome
    }

    func smallestClass(_ train: [Int], _ context: MethodContext) -> Int {
        (0..<context.classes).map { c in train.filter { context.labels[$0] == c }.count }.filter { $0 > 0 }.min() ?? 0
    }

    /// Too few images to choose by: the soft vote of the first two candidates, each fitted on all of them.
    func selectWithoutInnerCV(_ pool: [any FewShotMethod], train: [Int], test: [Int], scales: [Double] = [1],
                              scores: [String: Double], context: MethodContext) throws -> Outcome {
        var outcome = Outcome(chosen: Self.blend(pool[0], pool[1]), scores: scores)
        guard recordTestScores, !test.isEmpty else { return outcome }
        // For replaying the rules: what inner CV would have said here (recorded only, the choice stays the blend).
        let folds = innerFolds(train: train, context: context, repeat: 0)
        var results: [InnerResult] = []
        if let folds {
            results = try scoreCandidates(Array(pool.prefix(2)), folds: folds, train: train, test: [], keepModels: false, context: context)
            for (c, r) in zip(pool.prefix(2), results) { recordInner(c.name, r.perFold, into: &outcome.scores) }
            let member = Self.blend(pool[0], pool[1])
            recordInner(member.name, blendFolds(member, results[0], results[1], folds: folds, train: train, context: context), into: &outcome.scores)
        }
        for c in pool.prefix(2) {
            let p = try c.predict(train: train, test: test, context: context)
            outcome.refitPredictions[c.name] = p
            outcome.scores["test: " + c.name] = Metrics.balancedAccuracy(
                labels: test.map { context.labels[$0] }, predictions: argmaxRows(p), classes: context.classes)
        }
        let vote = Self.blend(pool[0], pool[1])
        let p = vote.combine([outcome.refitPredictions[pool[0].name]!, outcome.refitPredictions[pool[1].name]!])
        outcome.scores["test: " + vote.name] = Metrics.balancedAccuracy(
            labels: test.map { context.labels[$0] }, predictions: argmaxRows(p), classes: context.classes)
        if recordProbabilities {
            var scores = outcome.scores
            outcome.evidence = try evidence(Array(pool.prefix(2)), results: results, folds: folds, scales: scales, train: train,
                                            test: test, outcome: &outcome, scores: &scores, context: context)
            outcome.scores = scores
        }
        return outcome
    }

    /// Scores every candidate on the inner folds, then keeps the default unless a challenger or the blend of the
    /// default with the best challenger wins by its margin.
    func selectByInnerCV(_ pool: [any FewShotMethod], folds: [[Int]], train: [Int], test: [Int], scales: [Double] = [1],
                         keepModels: Bool, scores initial: [String: Double], context: MethodContext) throws -> Outcome {
        var scores = initial
        var outcome = Outcome(chosen: pool[0], scores: [:])
        let results = try scoreCandidates(pool, folds: folds, train: train, test: test, keepModels: keepModels,
                                          context: context)
        var bestGain = 0.0
        for (i, (candidate, r)) in zip(pool, results).enumerated() {
            scores[candidate.name] = r.score
            scores["seconds: " + candidate.name] = r.seconds
            if recordTestScores { recordInner(candidate.name, r.perFold, into: &scores) }
            if let e = r.extra { outcome.foldEnsembles[candidate.name] = e }
            outcome.outOfFold[candidate.name] = r.outOfFold(folds: folds, count: train.count, classes: context.classes)
            if !r.models.isEmpty { outcome.foldModels[candidate.name] = r.models }
            if i > 0, challengerWins(r.perFold, baseline: results[0].perFold, bestGain: &bestGain) { outcome.chosen = candidate }
        }
        if recordProbabilities && !test.isEmpty {
            outcome.evidence = try evidence(pool, results: results, folds: folds, scales: scales, train: train, test: test,
                                            outcome: &outcome, scores: &scores, context: context)
        }
        if blend {
            let partner = (1..<pool.count).max { results[$0].score < results[$1].score }!
            let member = Self.blend(pool[0], pool[partner])
            let perFold = blendFolds(member, results[0], results[partner], folds: folds, train: train, context: context)
            let mean = perFold.reduce(0, +) / Double(perFold.count)
            scores[member.name] = mean
            if recordTestScores { recordInner(member.name, perFold, into: &scores) }
            let gain = mean - results[0].score
            if gain > blendMargin, gain > bestGain {
                bestGain = gain
                outcome.chosen = member
            }
            if recordTestScores && !test.isEmpty {
                scores["test: " + member.name] = try testScore(member, outcome: outcome, train: train, test: test, context: context)
            }
        }
        if recordTestScores && !test.isEmpty {
            for c in pool { scores["test: " + c.name] = try testScore(c, outcome: outcome, train: train, test: test, context: context) }
        }
        outcome.scores = scores
        return outcome
    }

    /// Each candidate's inner-CV result. Candidates run side by side when they allow it and at most one reads
    /// frozen features (the feature bank is filled by one job at a time): the MLP's fits then overlap cnn-mini's
    /// fold fits, every job single-threaded (see `ComputeLanes`). Features are extracted first, on every core:
    /// extracted single-threaded beside the fold fits they would take twice as long.
    func scoreCandidates(_ pool: [any FewShotMethod], folds: [[Int]], train: [Int], test: [Int], keepModels: Bool,
                         context: MethodContext) throws -> [InnerResult] {
        let score = { (i: Int, context: MethodContext) throws -> InnerResult in
            let start = Date()
            let reuse = reuseFoldModels && pool[i].isExpensive
            var r = try innerScore(pool[i], train: train, folds: folds, extraTest: reuse ? test : [],
                                   keepModels: reuse && keepModels, context: context)
            r.seconds = Date().timeIntervalSince(start)
            return r
        }
        let sideBySide = pool.allSatisfy(\.fitsRunSideBySide) && pool.filter { !$0.isExpensive }.count <= 1
        guard sideBySide else { return try pool.indices.map { try score($0, context) } }
        for candidate in pool where !candidate.isExpensive { try candidate.prepare(items: train, context: context) }
        return try ComputeLanes.run(pool.count) { i in
            var c = context
            if i > 0 { c.progress = nil }
            return try score(i, c)
        }
    }

    /// Each fold's balanced accuracy of the soft vote of two candidates, from their fold predictions.
    func blendFolds(_ member: EnsembleMethod, _ a: InnerResult, _ b: InnerResult, folds: [[Int]], train: [Int],
                    context: MethodContext) -> [Double] {
        folds.indices.map { f in
            foldScore(member.combine([a.foldProbabilities[f], b.foldProbabilities[f]]), fold: folds[f], train: train, context: context)
        }
    }

    /// Diagnostics: a candidate's inner-CV mean (`NAME`) and each fold's score (`fold0: NAME`, …).
    func recordInner(_ name: String, _ perFold: [Double], into scores: inout [String: Double]) {
        scores[name] = perFold.reduce(0, +) / Double(max(1, perFold.count))
        for (f, v) in perFold.enumerated() { scores["fold\(f): " + name] = v }
    }

    /// The display name of a blend of two candidates.
    static func blendName(_ a: any FewShotMethod, _ b: any FewShotMethod) -> String { "blend[\(a.name) + \(b.name)]" }

    /// The soft vote of two candidates, every model inside with one vote (`EnsembleMethod.votingBlend`): an MLP
    /// with a CellNet partner and a CNN weigh 2 : 1.
    static func blend(_ a: any FewShotMethod, _ b: any FewShotMethod) -> EnsembleMethod {
        EnsembleMethod.votingBlend([a, b], label: blendName(a, b))
    }

    func testScore(_ method: any FewShotMethod, outcome: Outcome, train: [Int], test: [Int], context: MethodContext) throws -> Double {
        let p = try outcome.predictions(method, train: train, test: test, context: context)
        return Metrics.balancedAccuracy(labels: test.map { context.labels[$0] }, predictions: argmaxRows(p), classes: context.classes)
    }

    public func choose(train: [Int], context: MethodContext) throws -> (any FewShotMethod, [String: Double]) {
        let o = try select(train: train, context: context)
        return (o.chosen, o.scores)
    }

    /// Chooses on `train` and predicts `test`: the winner refitted on all of `train`, or the mean of its
    /// inner-fold models when it is expensive (member by member for a blend). Returns the outcome too.
    public func run(train: [Int], test: [Int], context: MethodContext) throws -> (Outcome, Tensor) {
        let o = try select(train: train, test: test, context: context)
        return (o, try o.predictions(o.chosen, train: train, test: test, context: context))
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        try run(train: train, test: test, context: context).1
    }
}
