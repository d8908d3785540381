import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriNN

/// What a method gets for one (split, size, seed): the dataset, its labels, shared frozen features.
public struct MethodContext {
    public let dataset: Dataset
    public let labels: [Int]
    public let classes: Int
    public let bank: FeatureBank
    public var seed: UInt64
    /// Progress of long methods (stage, done, total).
    public var progress: ((String, Int, Int) -> Void)?

    public init(dataset: Dataset, bank: FeatureBank, seed: UInt64) {
        self.dataset = dataset
        labels = dataset.items.map(\.label)
        classes = dataset.classNames.count
        self.bank = bank
        self.seed = seed
    }
}

/// A way to learn a classifier from `train` and predict `test`: class probabilities `[test.count, classes]`.
public protocol FewShotMethod {
    /// The method and its settings, as recorded in results (e.g. `lp[efficientnet-lite0,head,tta8]`).
    var name: String { get }
    func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor
    /// Trains a network (seconds per fit, not milliseconds): `auto` then reuses its inner-fold models.
    var isExpensive: Bool { get }
    /// Whether several fits may run at once on `ComputeLanes` (single-threaded kernels each): true for
    /// networks too small to keep both cores busy, and only for methods whose fits share no mutable state.
    var fitsRunSideBySide: Bool { get }
    /// Computes what fits on subsets of `items` will share (frozen features), so that fits running side by
    /// side only read it.
    func prepare(items: [Int], context: MethodContext) throws
    /// How many models it averages, i.e. its weight in a blend where every model has one vote (an MLP with a
    /// partner feature set: 2).
    var votes: Int { get }
}

extension FewShotMethod {
    public var votes: Int { 1 }
    public var isExpensive: Bool { false }
    public var fitsRunSideBySide: Bool { false }
    public func prepare(items: [Int], context: MethodContext) throws {}
}

/// A classifier fitted by a method: predicts items of a context's dataset (the images it was not trained on).
public protocol FittedClassifier {
    func probabilities(_ items: [Int], context: MethodContext) throws -> Tensor
}

/// A method whose fitted model can be kept: for `auto`'s fold ensembles and for model files.
public protocol FittableMethod: FewShotMethod {
    func fit(train: [Int], context: MethodContext) throws -> any FittedClassifier
}

extension FittableMethod {
    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        try fit(train: train, context: context).probabilities(test, context: context)
    }
}

/// Where frozen features come from: backbones × levels, optionally averaged over the 8 dihedral views.
public struct FeatureSpec: Sendable, Hashable, CustomStringConvertible {
    public var backbones: [String]
    public var levels: [FeatureLevel]
    public var views: Int
    /// Central crops (fraction of the shorter side) each giving a feature block; `[1]` = the whole image.
    /// Several scales let the probe see both a centred object (a blood cell) and its context.
    public var crops: [Double]

    public init(backbones: [String] = ["efficientnet-lite0"], levels: [FeatureLevel] = [.head], views: Int = 1,
                crops: [Double] = [1]) {
        self.backbones = backbones
        self.levels = levels
        self.views = views
        self.crops = crops
    }

    public var description: String {
        backbones.map { $0.replacingOccurrences(of: "efficientnet-", with: "") }.joined(separator: "+") + ","
            + levels.map(\.description).joined(separator: "+") + (views > 1 ? ",tta\(views)" : "")
            + (crops == [1] ? "" : ",crop" + crops.map { "\($0)" }.joined(separator: "+"))
    }

    /// `[items, D]`: the blocks concatenated (each L2-normalised when there are several). Only the rows of
    /// `items` are computed (nil: all); the others are NaN.
    public func matrix(_ bank: FeatureBank, items: [Int]? = nil) throws -> Tensor {
        // All levels of a backbone come from one pass, if planned: a spec not planned up front (auto's
        // candidates at the chosen crop) would otherwise run each backbone once per level.
        bank.plan([self])
        var blocks: [Tensor] = []
        for c in crops { for b in backbones { for l in levels {
            blocks.append(try bank.features(backbone: b, level: l, views: views, crop: c, items: items))
        } } }
        return concatenateFeatures(blocks)
    }

    /// `[items, D]` for one dihedral view only (`views` ignored).
    public func matrix(_ bank: FeatureBank, view: Int, items: [Int]? = nil) throws -> Tensor {
        bank.plan([self])
        var blocks: [Tensor] = []
        for c in crops { for b in backbones { for l in levels {
            blocks.append(try bank.features(backbone: b, level: l, view: view, crop: c, items: items))
        } } }
        return concatenateFeatures(blocks)
    }
}

/// Linear probe: L2-normalised frozen features + multinomial logistic regression, C by inner CV.
public struct LinearProbeMethod: FewShotMethod {
    public var features: FeatureSpec
    public var probe = LinearProbe()

    public init(features: FeatureSpec = FeatureSpec()) { self.features = features }
    public var name: String { "lp[\(features)" + (probe.cGrid.count == 1 ? String(format: ",C%g", probe.cGrid[0]) : "") + "]" }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let x = try features.matrix(context.bank, items: train + test)
        let model = probe.fit(x.rows(train), labels: train.map { context.labels[$0] }, classes: context.classes,
                              seed: context.seed)
        return model.probabilities(x.rows(test))
    }
}

/// Small MLP head on frozen features (see `MLPHead`).
public struct MLPMethod: FewShotMethod {
    public var features: FeatureSpec
    public var head = MLPHead()

    /// Train on every dihedral view of each image as its own row (feature-level augmentation) and average
    /// the test probabilities over views, instead of training and testing on view-averaged features.
    public var viewRows = false

    /// Also train on this many colour-shifted copies of each training image (`ColourShift`), rows with the
    /// same label: a head that leans less on colour, for another lab's stain and scanner. Each copy's frozen
    /// features are computed (and cached) like the image's own, so each copy costs one more feature pass
    /// over the training images. Prediction is unchanged.
    public var colourCopies = 0
    /// Dihedral views averaged for each copy's features (nil: as many as `features.views`). Copy k with one
    /// view uses orientation k − 1, so copies vary in orientation too, at an eighth of the feature cost.
    public var copyViews: Int?
    private let copyBanks = PreprocessedBanks()

    /// Other feature sets, each with its own head of the same recipe; the heads' probabilities are averaged
    /// with the main one's. Heads on ImageNet and on CellNet features make different errors: on PBC (crop 0.4,
    /// 5 seeds) the two heads averaged scored 0.947 at n=20 where either alone scored 0.930–0.936, and better
    /// than one head on the features concatenated (0.932).
    public var partners: [FeatureSpec] = []

    public init(features: FeatureSpec = FeatureSpec(), partners: [FeatureSpec] = []) {
        self.features = features
        self.partners = partners
    }
    /// Full-batch fits on a few hundred rows: matrix products too small for two cores, so inner-fold fits
    /// run side by side on their features, computed once beforehand.
    public var fitsRunSideBySide: Bool { !viewRows && colourCopies == 0 }
    public func prepare(items: [Int], context: MethodContext) throws {
        for spec in [features] + partners { _ = try spec.matrix(context.bank, items: items) }
    }
    public var name: String {
        "mlp[\(features)" + partners.map { " | \($0)" }.joined() + (viewRows ? ",rows" : "")
            + (head.hidden != 256 ? ",h\(head.hidden)" : "")
            + (head.steps != 300 ? ",s\(head.steps)" : "") + (colourCopies > 0 ? ",colour\(colourCopies)" : "")
            + (colourCopies > 0 && copyViews != nil ? "x\(copyViews!)v" : "") + "]"
    }

    /// One vote per feature source (backbone set): heads on the same backbones at two image scales are one
    /// model seen twice, not two.
    public var votes: Int { Set(([features] + partners).map(\.backbones)).count }

    /// The method for one of its feature sets alone (0: `features`, then each partner).
    public func member(_ i: Int) -> MLPMethod {
        var m = self
        m.features = i == 0 ? features : partners[i - 1]
        m.partners = []
        return m
    }

    /// Features of colour-shifted copy `k` of the `train` images (rows of `train` only).
    func copyRows(_ k: Int, train: [Int], context: MethodContext, view: Int? = nil) throws -> Tensor {
        var dataset = context.dataset
        dataset.preprocessing = TransformPipeline(dataset.preprocessing.steps + [ColourShift(copy: k)])
        let bank = copyBanks.bank(dataset: dataset, like: context.bank)
        if view == nil, copyViews == 1 {
            var single = features
            single.views = 1
            return try single.matrix(bank, view: (k - 1) % 8, items: train).rows(train)
        }
        if view == nil, let copyViews, copyViews != features.views {
            var fewer = features
            fewer.views = copyViews
            return try fewer.matrix(bank, items: train).rows(train)
        }
        if let view {
            var single = features
            single.views = 1
            return try single.matrix(bank, view: view, items: train).rows(train)
        }
        return try features.matrix(bank, items: train).rows(train)
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        var sum: Tensor?
        for i in 0...partners.count {
            let m = member(i)
            let x = try m.features.matrix(context.bank, items: train + test)
            let p = try m.fitHead(train: train, context: context, averaged: x).probabilities(x.rows(test))
            if sum == nil { sum = p } else { sum!.add(p) }
        }
        return partners.isEmpty ? sum! : sum!.scaled(by: 1 / Float(partners.count + 1))
    }

    /// The head fitted on `train`: on view-averaged features, or with `viewRows` on each view's features as
    /// its own row. Either way it predicts from view-averaged features (averaging the per-view probabilities
    /// instead scored the same within 0.004 on bccd, PBC and busi at n=5, 10 seeds), so a saved model needs
    /// nothing more.
    /// `averaged`: `features.matrix` with at least the rows of `train`, when the caller has it already.
    public func fitHead(train: [Int], context: MethodContext, averaged: Tensor? = nil) throws -> MLPHead.Fitted {
        precondition(partners.isEmpty, "fitHead fits one feature set: use member(i)")
        let labels = train.map { context.labels[$0] }
        var blocks: [Tensor]
        if viewRows, features.views > 1 {
            blocks = try (0..<features.views).map { v in
                var single = features
                single.views = 1
                return try single.matrix(context.bank, view: v, items: train).rows(train)
            }
            for k in stride(from: 1, through: colourCopies, by: 1) {
                blocks += try (0..<features.views).map { try copyRows(k, train: train, context: context, view: $0) }
            }
        } else {
            blocks = [try (averaged ?? features.matrix(context.bank, items: train)).rows(train)]
            for k in stride(from: 1, through: colourCopies, by: 1) { blocks.append(try copyRows(k, train: train, context: context)) }
        }
        return head.fit(blocks.count == 1 ? blocks[0] : Tensor.concatenate(rows: blocks),
                        labels: Array((0..<blocks.count).map { _ in labels }.joined()), classes: context.classes, seed: context.seed)
    }
}

/// Cosine-similarity classifiers on L2-normalised frozen features: k nearest neighbours (distance-weighted
/// votes) or nearest class prototype (mean feature per class), with softmax-like scores.
public struct NearestNeighbourMethod: FewShotMethod {
    public enum Kind: Sendable { case knn(Int), prototype }
    public var kind: Kind
    public var features: FeatureSpec
    /// Sharpness of the similarity → probability map.
    public var temperature: Float = 0.05

    public init(_ kind: Kind, features: FeatureSpec = FeatureSpec()) {
        self.kind = kind
        self.features = features
    }

    public var name: String {
        switch kind {
        case let .knn(k): "knn\(k)[\(features)]"
        case .prototype: "proto[\(features)]"
        }
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let x = l2NormalizedRows(try features.matrix(context.bank, items: train + test))
        let d = x.shape[1], k = context.classes
        let testX = x.rows(test)
        var out = Tensor(zeros: [test.count, k])
        switch kind {
        case .prototype:
            var protos = Tensor(zeros: [k, d])
            protos.withUnsafeMutableBufferPointer { p in
                for i in train { for j in 0..<d { p[context.labels[i] * d + j] += x[flat: i * d + j] } }
            }
            protos = l2NormalizedRows(protos)
            var sims = Tensor(zeros: [test.count, k])
            sims.withUnsafeMutableBufferPointer { s in
                sgemm(transposeA: false, transposeB: true, m: test.count, n: k, k: d, a: testX.storage.pointer, lda: d,
                      b: protos.storage.pointer, ldb: d, c: s.baseAddress!, ldc: k)
            }
            let present = Set(train.map { context.labels[$0] })
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<test.count {
                    for c in 0..<k { o[i * k + c] = present.contains(c) ? sims[flat: i * k + c] / temperature : -1e9 }
                }
                softmaxRows(o.baseAddress!, rows: test.count, columns: k)
            }
        case let .knn(neighbours):
            let trainX = x.rows(train)
            var sims = Tensor(zeros: [test.count, train.count])
            sims.withUnsafeMutableBufferPointer { s in
                sgemm(transposeA: false, transposeB: true, m: test.count, n: train.count, k: d, a: testX.storage.pointer,
                      lda: d, b: trainX.storage.pointer, ldb: d, c: s.baseAddress!, ldc: train.count)
            }
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<test.count {
                    let row = (0..<train.count).map { sims[flat: i * train.count + $0] }
                    let nearest = row.indices.sorted { row[$0] > row[$1] }.prefix(neighbours)
                    for j in nearest { o[i * k + context.labels[train[j]]] += Foundation.exp((row[j] - 1) / temperature) }
                    let total = (0..<k).reduce(Float(0)) { $0 + o[i * k + $1] }
                    for c in 0..<k { o[i * k + c] = total > 0 ? o[i * k + c] / total : 1 / Float(k) }
                }
            }
        }
        return out
    }
}

/// Picks among candidate methods by stratified inner cross-validation on the training set only
/// (balanced accuracy, ties to the earlier candidate), then refits the winner on the whole training set.
///
/// With several `crops`, it first picks the image scale: a cheap probe (`scaleProbe`, one backbone, one
/// view) is scored by the same inner CV on each central crop, and the candidates are then built for the
/// winning crop (`candidatesForCrop`). Objects centred in a wider field (a white cell among red cells)
/// are seen far better at a tight crop; crops that already fill the frame lose nothing by the check.
public struct AutoMethod: FewShotMethod {
    public var candidates: [any FewShotMethod]
    public var innerFolds = 3
    public var crops: [Double] = [1]
    /// The candidates for the chosen scales: the chosen crop first, then (`scaleEnsemble`) the runner-up.
    public var candidatesForCrop: (([Double]) -> [any FewShotMethod])?
    public var scaleProbe: ((Double) -> any FewShotMethod)?
    /// Another candidate (or the blend) replaces the first (the default: the frozen-feature head) only when
    /// its mean per-fold gain exceeds this plus one standard error of the paired gains. Inner folds of 20–80
    /// images still move by 0.05–0.1 on noise: on busi n=20 the blend won by 0.002–0.024 on three seeds and lost
    /// 0.01–0.05 on the test set; on bccd n=20 it won by 0.04–0.14 on every seed and gained 0.05 on average.
    public var candidateMargin = 0.02

    public init(candidates: [any FewShotMethod]) { self.candidates = candidates }

    public init(crops: [Double], scaleProbe: @escaping (Double) -> any FewShotMethod,
                candidates: @escaping ([Double]) -> [any FewShotMethod]) {
        self.crops = crops
        self.scaleProbe = scaleProbe
        self.candidatesForCrop = candidates
        self.candidates = candidates([crops.first ?? 1])
    }

    /// When a smaller crop wins and the runner-up scale (the next best probe score, the whole image
    /// included) is within the margin plus one standard error of it, also give the candidates the runner-up,
    /// for models that can average two scales. The probe cannot rank near-equal scales: on PBC at n=20 it
    /// put crop 0.5 above 0.4 on 2 of 5 seeds (inner 0.850 vs 0.842, test 0.921 vs 0.963); heads at both
    /// crops averaged scored 0.951 over 5 seeds, crop 0.4 alone 0.947, crop 0.5 alone 0.922.
    public var scaleEnsemble = true

    public var label = "auto"
    public var name: String { label }

    /// How many differently seeded inner k-fold splits score each image scale. The scale probe is cheap (one
    /// backbone, one view, cached features); one split is noise: busi seed 0 picked crop 0.7 on 15 images and
    /// lost 0.1; at 20 per class one split picked a crop on 4 of 5 busi seeds (MLP at the chosen crop 0.702 vs
    /// 0.734 with 3 splits, which kept the whole image on 4), bccd 0.792 vs 0.806, PBC 0.926 vs 0.917 (seed 1
    /// took crop 0.5 over 0.4).
    public var scaleRepeats = 3
    /// What the scale probe is scored by on the inner folds, and how much a crop must gain by it.
    public enum ScaleScore: String, Sendable {
        /// The class-balanced mean probability of the true class, gains relative (ratio − 1): a crop is chosen
        /// when it raises it by a quarter plus one standard error. On 15–40 images, balanced accuracy moves in
        /// steps of 1/5 of a class and chose crops on noise (busi n=5: 4 of 10 seeds, each losing 0.03–0.05;
        /// PBC: 0.5 or 0.7 instead of 0.4 on 5 of 10). The probability moves smoothly, ranked PBC's 0.4 first on
        /// 20 of 20 evaluations, and its relative gain separates the sets (10 seeds each, gain minus SE): PBC
        /// +0.28 to +0.62 at n=5, +0.31 to +0.45 at n=20; busi, bccd and pneumonia at most +0.23 and +0.13,
        /// where crops lose (a Lite0+CellNet probe at each crop, test set: busi 0.585 whole vs 0.574 at 0.7,
        /// bccd 0.695 vs 0.637). Relative, because the probe's probabilities shrink towards 1/K by an amount
        /// that varies with the set (PBC's whole-image mean 0.21–0.29 with 8 classes, busi 0.36–0.48 with 3).
        case trueClassProbability
        /// Balanced accuracy, gains as differences, margin 0.02 (sessions 4–8).
        case balancedAccuracy

        /// How much the best crop must gain over the whole image, beyond one standard error.
        public var cropMargin: Double { self == .trueClassProbability ? 0.25 : 0.02 }
        /// Within how much (beyond one standard error) the runner-up scale must be of the chosen crop to join it.
        /// Relative leads of PBC's 0.4 over 0.5: 0.02–0.07 at n=20, 0.04–0.24 at n=5.
        public var runnerUpMargin: Double { self == .trueClassProbability ? 0.10 : 0.02 }

        func gain(_ a: [Double], over b: [Double]) -> (mean: Double, standardError: Double) {
            self == .trueClassProbability
                ? AutoMethod.pairedGain(zip(a, b).map { $0 / max($1, 1e-9) }, over: b.map { _ in 1 })
                : AutoMethod.pairedGain(a, over: b)
        }
    }
    public var scaleScore = ScaleScore.trueClassProbability
    /// Expensive candidates (trained networks) are not refitted on the whole training set: the models of
    /// the inner folds, which predicted the test images alongside their held-out fold, are averaged instead
    /// (an ensemble of k models on (k−1)/k of the data; saves a training run per evaluation).
    public var reuseFoldModels = true

    /// Also consider the soft vote of the first candidate and the best of the others (`EnsembleMethod`),
    /// scored on the same inner folds from the members' fold predictions (no extra fit). A frozen-feature
    /// head and a network trained from scratch make different errors.
    public var blend = true
    /// From `blendBelow` images per class, the blend replaces the default when its inner mean exceeds the
    /// default's by this much. With the paired rule's standard error on 3 folds it lost bccd n=20 seed 0
    /// (inner 0.807 vs 0.768, test 0.921 vs 0.807); with no margin it won busi n=20 on 0.002–0.024 and lost
    /// 0.003–0.05 on the test set. bccd's gains were 0.04–0.14 on every seed.
    public var blendMargin = 0.03
    /// Below this many images in the smallest class, no inner CV: the blend of the first two candidates,
    /// each fitted on the whole training set. On 15–40 images the inner folds hold 1–3 images per class and
    /// their scores move by 0.1–0.2 on noise (inner vs test below), so choosing is a coin toss; the soft vote
    /// of a frozen-feature MLP and a from-scratch CNN was within 0.01 of the better of the two on every set
    /// measured at n=5 and ahead of both by 0.02–0.04 on PBC and bccd (see the README).
    public var blendBelow = 10
    /// Record each candidate's test-set balanced accuracy in the scores (`test: …`) — for studying the
    /// selection rule only (costs a refit per candidate; never used to choose).
    public var recordTestScores = false

    public struct Outcome {
        public var chosen: any FewShotMethod
        /// Inner-CV balanced accuracy per candidate (`scale: …` for the scale probes) and seconds each took
        /// (`seconds: …`), as recorded in results.
        public var scores: [String: Double]
        /// Mean test probabilities of the inner-fold models of each expensive candidate, by name.
        public var foldEnsembles: [String: Tensor] = [:]
        /// The inner-fold models of expensive candidates, by name, when `select` was asked to keep them.
        public var foldModels: [String: [any FittedClassifier]] = [:]

        /// Out-of-fold probabilities of each candidate scored by inner cross-validation, by name: `[train, classes]`,
        /// row i predicted by the inner-fold model that did not see training image i (empty below `blendBelow`).
        public var outOfFold: [String: Tensor] = [:]

        /// Out-of-fold probabilities of `method` (a candidate, or a blend as the mean of its members'), when
        /// inner cross-validation ran: what calibration and abstention thresholds are fitted on.
        public func outOfFoldProbabilities(_ method: any FewShotMethod) -> Tensor? {
            if let p = outOfFold[method.name] { return p }
            guard let blend = method as? EnsembleMethod else { return nil }
            let parts = blend.members.compactMap { outOfFold[$0.name] }
            guard parts.count == blend.members.count, !parts.isEmpty else { return nil }
            return blend.combine(parts)
        }

        /// Test probabilities of candidates already refitted on the whole training set (for the diagnostics
        /// of `recordTestScores`, so that they are not fitted twice).
        public var refitPredictions: [String: Tensor] = [:]

        /// The chosen method's test probabilities from inner-fold models, when it is expensive.
        public var foldEnsemble: Tensor? { foldEnsembles[chosen.name] }

        /// The chosen method as recorded: its name, and how its expensive members predict.
        public var chosenLabel: String {
            let members = (chosen as? EnsembleMethod)?.members ?? [chosen]
            return chosen.name + (members.contains { foldEnsembles[$0.name] != nil } ? " (inner-fold ensemble)" : "")
        }

        /// Test probabilities of `method` (a candidate or a blend of candidates): its inner-fold models' mean
        /// when it is expensive, else refitted on all of `train`.
        func predictions(_ method: any FewShotMethod, train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
            if let e = foldEnsembles[method.name] ?? refitPredictions[method.name] { return e }
            guard let blend = method as? EnsembleMethod else { return try method.predict(train: train, test: test, context: context) }
            return blend.combine(try blend.members.map { try predictions($0, train: train, test: test, context: context) })
        }
    }

    struct InnerResult {
        var score: Double
        var extra: Tensor?
        var models: [any FittedClassifier]
        var perFold: [Double]
        /// Each fold's probabilities for its own held-out items.
        var foldProbabilities: [Tensor]
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

    func innerFolds(train: [Int], context: MethodContext, repeat r: Int) -> [[Int]]? {
        let labels = train.map { context.labels[$0] }
        let smallest = (0..<context.classes).map { c in labels.filter { $0 == c }.count }.filter { $0 > 0 }.min() ?? 0
        let folds = min(innerFolds, smallest)
        guard folds >= 2 else { return nil }
        let groups = train.map { context.dataset.items[$0].group }
        return Splits.stratifiedKFold(labels: labels, groups: groups, folds: folds, seed: context.seed &+ 17 &+ UInt64(r) &* 7919)
    }

    /// The crop to use: each crop's probe is scored (`scaleScore`) on `scaleRepeats` inner splits; the
    /// best-scoring smaller crop is taken when its mean gain over the whole image (the first of `crops`)
    /// exceeds the score's crop margin plus one standard error of the per-split gains, so that a crop is
    /// chosen for a clear effect (PBC), not for noise. Among smaller crops the best mean wins outright.
    func chooseCrop(train: [Int], context: MethodContext, scores: inout [String: Double]) throws -> Double {
        try chooseScales(train: train, context: context, scores: &scores)[0]
    }

    /// The chosen crop (see `chooseCrop`), then with `scaleEnsemble` and a smaller crop chosen, the runner-up.
    func chooseScales(train: [Int], context: MethodContext, scores: inout [String: Double]) throws -> [Double] {
        guard crops.count > 1, let scaleProbe else { return [crops.first ?? 1] }
        let started = Date()
        defer { scores["seconds: scale probes"] = Date().timeIntervalSince(started) }
        let repeats = max(1, scaleRepeats)
        let splits = (0..<repeats).compactMap { innerFolds(train: train, context: context, repeat: $0) }
        guard !splits.isEmpty else { return [crops[0]] }
        var perSplit: [Double: [Double]] = [:], mean: [Double: Double] = [:]
        for c in crops {
            let probe = scaleProbe(c)
            var accuracy: [Double] = [], soft: [Double] = []
            for split in splits {
                let r = try innerScore(probe, train: train, folds: split, context: context)
                accuracy.append(r.score)
                soft.append(zip(split, r.foldProbabilities).map { softScore($1, fold: $0, train: train, context: context) }
                    .reduce(0, +) / Double(split.count))
            }
            perSplit[c] = scaleScore == .trueClassProbability ? soft : accuracy
            mean[c] = perSplit[c]!.reduce(0, +) / Double(splits.count)
            scores["scale: " + probe.name] = accuracy.reduce(0, +) / Double(splits.count)
            scores["scale-p: " + probe.name] = soft.reduce(0, +) / Double(splits.count)
            if recordTestScores {
                for r in splits.indices {
                    scores["scale\(r): " + probe.name] = accuracy[r]
                    scores["scale-p\(r): " + probe.name] = soft[r]
                }
            }
        }
        let whole = crops[0]
        var best = crops[1]
        for c in crops.dropFirst(2) where mean[c]! > mean[best]! + 1e-9 { best = c }
        let gain = scaleScore.gain(perSplit[best]!, over: perSplit[whole]!)
        guard gain.mean > scaleScore.cropMargin + gain.standardError else { return [whole] }
        guard scaleEnsemble, let runnerUp = crops.filter({ $0 != best }).max(by: { mean[$0]! < mean[$1]! }) else { return [best] }
        // The runner-up joins only when the probe cannot tell it from the best: a lead within the crop margin
        // plus one standard error. (Always taking it cost bccd n=5 0.742 → 0.716: there the runner-up of a
        // 0.7 crop was 0.4, far behind.)
        let lead = scaleScore.gain(perSplit[best]!, over: perSplit[runnerUp]!)
        return lead.mean <= scaleScore.runnerUpMargin + lead.standardError ? [best, runnerUp] : [best]
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

    /// Picks the scale, then the candidate; with `test`, also gives the fold ensembles of expensive candidates.
    public func select(train: [Int], test: [Int] = [], keepModels: Bool = false, context: MethodContext) throws -> Outcome {
        var scores: [String: Double] = [:]
        var pool = candidates
        if crops.count > 1, let candidatesForCrop {
            let scales = try chooseScales(train: train, context: context, scores: &scores)
            if ProcessInfo.processInfo.environment["PETRI_AUTO_PROBE_ONLY"] == "1", let scaleProbe {
                return Outcome(chosen: scaleProbe(scales[0]), scores: scores)
            }
            pool = candidatesForCrop(scales)
        }
        let smallestClass = (0..<context.classes).map { c in train.filter { context.labels[$0] == c }.count }
            .filter { $0 > 0 }.min() ?? 0
        if blend, pool.count > 1, smallestClass < blendBelow {
            // Too few images to choose by: the soft vote of the first two candidates, each fitted on all of them.
            var outcome = Outcome(chosen: Self.blend(pool[0], pool[1]), scores: scores)
            if recordTestScores && !test.isEmpty {
                for c in pool.prefix(2) {
                    let p = try c.predict(train: train, test: test, context: context)
                    outcome.refitPredictions[c.name] = p
                    outcome.scores["test: " + c.name] = Metrics.balancedAccuracy(
                        labels: test.map { context.labels[$0] }, predictions: argmaxRows(p), classes: context.classes)
                }
            }
            return outcome
        }
        guard pool.count > 1, let testFolds = innerFolds(train: train, context: context, repeat: 0) else {
            return Outcome(chosen: pool[0], scores: scores)
        }
        var outcome = Outcome(chosen: pool[0], scores: [:])
        var bestGain = 0.0
        var results: [InnerResult] = []
        let scoreCandidate = { (i: Int, context: MethodContext) throws -> (InnerResult, Double) in
            let start = Date()
            let reuse = reuseFoldModels && pool[i].isExpensive
            let r = try innerScore(pool[i], train: train, folds: testFolds, extraTest: reuse ? test : [],
                                   keepModels: reuse && keepModels, context: context)
            return (r, Date().timeIntervalSince(start))
        }
        // Candidates side by side when they allow it and at most one reads frozen features (the feature bank
        // is filled by one job at a time): the MLP's feature extraction then overlaps cnn-mini's fold fits,
        // every job single-threaded (see `ComputeLanes`).
        let sideBySide = pool.allSatisfy(\.fitsRunSideBySide) && pool.filter { !$0.isExpensive }.count <= 1
        if sideBySide {
            // Features first, on every core: extracted single-threaded beside the fold fits they took twice as
            // long (bccd n=20 seed 0: 63 s for the MLP's inner CV against ~20 s of extraction alone).
            for candidate in pool where !candidate.isExpensive { try candidate.prepare(items: train, context: context) }
        }
        let scored = sideBySide
            ? try ComputeLanes.run(pool.count) { i in
                var c = context
                if i > 0 { c.progress = nil }
                return try scoreCandidate(i, c)
            }
            : try pool.indices.map { try scoreCandidate($0, context) }
        for (candidate, (r, seconds)) in zip(pool, scored) {
            results.append(r)
            scores[candidate.name] = r.score
            scores["seconds: " + candidate.name] = seconds
            if let e = r.extra { outcome.foldEnsembles[candidate.name] = e }
            var oof = Tensor(zeros: [train.count, context.classes])
            for (fold, p) in zip(testFolds, r.foldProbabilities) {
                for (row, position) in fold.enumerated() {
                    for c in 0..<context.classes { oof[flat: position * context.classes + c] = p[flat: row * context.classes + c] }
                }
            }
            outcome.outOfFold[candidate.name] = oof
            if !r.models.isEmpty { outcome.foldModels[candidate.name] = r.models }
            if results.count > 1, challengerWins(r.perFold, baseline: results[0].perFold, bestGain: &bestGain) {
                outcome.chosen = candidate
            }
        }
        if blend {
            // The default and the best challenger, averaged fold by fold.
            let partner = (1..<pool.count).max { results[$0].score < results[$1].score }!
            let member = Self.blend(pool[0], pool[partner])
            let perFold = testFolds.indices.map { f in
                foldScore(member.combine([results[0].foldProbabilities[f], results[partner].foldProbabilities[f]]),
                          fold: testFolds[f], train: train, context: context)
            }
            let mean = perFold.reduce(0, +) / Double(perFold.count)
            scores[member.name] = mean
            // The blend keeps the default as half of it, so it needs less evidence than a replacement: a mean
            // gain of `blendMargin` over the default and over the challenger chosen so far, no standard error.
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

    static func blendName(_ a: any FewShotMethod, _ b: any FewShotMethod) -> String { "blend[\(a.name) + \(b.name)]" }

    /// The soft vote of two candidates, every model inside with one vote: an MLP with a CellNet partner and
    /// a CNN weigh 2 : 1. At n=5 (5 seeds, fixed crops) the three models voting equally scored bccd 0.735,
    /// busi 0.617, PBC 0.864 against 0.765, 0.581, 0.846 with the MLP pair as one half, and 0.752, 0.576,
    /// 0.841 for the ImageNet MLP and the CNN halved (before the CellNet).
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

/// Averages the class probabilities of several methods (soft voting): steadier than any one member when
/// their errors differ, and than picking one by a noisy inner cross-validation on a few images.
public struct EnsembleMethod: FewShotMethod {
    public var members: [any FewShotMethod]
    public var label: String?
    /// Each member's weight (normalised when used); nil: equal.
    public var weights: [Float]?

    public init(_ members: [any FewShotMethod], label: String? = nil, weights: [Float]? = nil) {
        precondition(weights == nil || weights!.count == members.count, "one weight per member")
        self.members = members
        self.label = label
        self.weights = weights
    }

    /// The members weighted by their `votes`: every model inside counts once (an MLP pair and a CNN: 2 : 1).
    public static func votingBlend(_ members: [any FewShotMethod], label: String) -> EnsembleMethod {
        let votes = members.map(\.votes)
        return EnsembleMethod(members, label: label, weights: votes.allSatisfy { $0 == votes[0] } ? nil : votes.map(Float.init))
    }

    public var name: String { label ?? "ensemble[" + members.map(\.name).joined(separator: " + ") + "]" }
    public var votes: Int { members.map(\.votes).reduce(0, +) }

    /// The normalised weights.
    public var normalisedWeights: [Float] {
        let w = weights ?? Array(repeating: 1, count: members.count)
        let total = w.reduce(0, +)
        return w.map { $0 / total }
    }

    /// The weighted mean of the members' probabilities (one per member, in order).
    public func combine(_ parts: [Tensor]) -> Tensor {
        var sum = parts[0].scaled(by: normalisedWeights[0])
        for (p, w) in zip(parts.dropFirst(), normalisedWeights.dropFirst()) { sum.add(p.scaled(by: w)) }
        return sum
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        combine(try members.map { try $0.predict(train: train, test: test, context: context) })
    }
}

/// A method run on preprocessed images (stain normalisation, CLAHE, top-hat...), named `inner@spec`: the
/// preprocessing study compares `mlp`, `mlp@reinhard`, `mlp@clahe` on the same splits and seeds. The
/// preprocessing goes after the dataset's own; features of the preprocessed images get their own bank
/// (and their own disk-cache entries, keyed by the preprocessing).
public struct PreprocessedMethod: FewShotMethod {
    public var inner: any FewShotMethod
    public var preprocessing: TransformPipeline
    private let banks = PreprocessedBanks()

    public init(_ inner: any FewShotMethod, preprocessing: TransformPipeline) {
        self.inner = inner
        self.preprocessing = preprocessing
    }

    public var name: String { inner.name + "@" + preprocessing.spec.replacingOccurrences(of: ", ", with: "+") }
    public var isExpensive: Bool { inner.isExpensive }
    public var fitsRunSideBySide: Bool { inner.fitsRunSideBySide }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        try inner.predict(train: train, test: test, context: preprocessed(context))
    }

    public func prepare(items: [Int], context: MethodContext) throws {
        try inner.prepare(items: items, context: preprocessed(context))
    }

    /// The context with the preprocessing added to its dataset, and a feature bank for it that lives as
    /// long as the caller's bank (one per study, shared by every split and seed).
    func preprocessed(_ context: MethodContext) -> MethodContext {
        var dataset = context.dataset
        dataset.preprocessing = TransformPipeline(dataset.preprocessing.steps + preprocessing.steps)
        var c = MethodContext(dataset: dataset, bank: banks.bank(dataset: dataset, like: context.bank), seed: context.seed)
        c.progress = context.progress
        return c
    }
}

/// The feature banks of a `PreprocessedMethod` or of an MLP's colour copies, made on first use for the
/// caller's bank.
/// One per dataset preprocessing (keyed by its spec), all for the same caller's bank.
final class PreprocessedBanks: @unchecked Sendable {
    private let lock = NSLock()
    private weak var owner: FeatureBank?
    private var banks: [String: FeatureBank] = [:]

    func bank(dataset: Dataset, like outer: FeatureBank) -> FeatureBank {
        lock.withLock {
            if owner !== outer { banks = [:]; owner = outer }
            if let bank = banks[dataset.preprocessing.spec] { return bank }
            let b = FeatureBank(dataset: dataset)
            b.batchSize = outer.batchSize
            b.useDiskCache = outer.useDiskCache
            b.progress = outer.progress
            b.plannedLevels = outer.plannedLevels
            banks[dataset.preprocessing.spec] = b
            return b
        }
    }
}
