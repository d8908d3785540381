import Foundation
import PetriData
import PetriEngine
import PetriEval

/// One result of the few-shot protocol: a method trained on `size` images per class with one seed.
public struct CurveRecord: Sendable {
    public var dataset: String
    public var method: String
    /// For `auto`: the candidate it chose, the central crops it chose them for (the chosen one first) and the
    /// inner-CV scores.
    public var chosen: String?
    public var scales: [Double]?
    public var innerScores: [String: Double] = [:]
    /// Images per class (nil = all).
    public var size: Int?
    public var seed: UInt64
    public var trainCount: Int
    public var testCount: Int
    public var balancedAccuracy: Double
    public var accuracy: Double
    public var macroF1: Double
    public var auc: Double?
    public var perClassRecall: [Double?]
    public var confusion: [[Int]]
    public var seconds: Double
    public var classNames: [String]
    /// Test item indices and their predicted probabilities (for reports: misclassified images, calibration).
    public var test: [Int] = []
    public var probabilities: [[Double]] = []
    /// `few-shot` (the protocol's learning curves), `cv` (one fold of repeated k-fold; `seed` numbers the
    /// fold) or `holdout` (an ensemble of the fold models on the held-out set).
    public var evaluation = "few-shot"
    /// `auto` with `diagnostics=probabilities`: what it saw (written under `evidence`).
    public var evidence: AutoEvidence?

    public var sizeLabel: String { size.map(String.init) ?? "all" }
    /// What the result is stored and resumed under.
    public var key: RunKey { RunKey(method: method, size: size, seed: seed) }

    public init(dataset: String, method: String, chosen: String? = nil, innerScores: [String: Double] = [:], size: Int?,
                seed: UInt64, trainCount: Int, testCount: Int, balancedAccuracy: Double, accuracy: Double, macroF1: Double,
                auc: Double?, perClassRecall: [Double?], confusion: [[Int]], seconds: Double, classNames: [String],
                test: [Int] = [], probabilities: [[Double]] = []) {
        self.dataset = dataset
        self.method = method
        self.chosen = chosen
        self.innerScores = innerScores
        self.size = size
        self.seed = seed
        self.trainCount = trainCount
        self.testCount = testCount
        self.balancedAccuracy = balancedAccuracy
        self.accuracy = accuracy
        self.macroF1 = macroF1
        self.auc = auc
        self.perClassRecall = perClassRecall
        self.confusion = confusion
        self.seconds = seconds
        self.classNames = classNames
        self.test = test
        self.probabilities = probabilities
    }

    /// The JSON-lines object (`size` is a number, or "all").
    public var json: [String: Any] {
        var o: [String: Any] = [
            "dataset": dataset, "method": method, "size": size.map { $0 as Any } ?? "all", "seed": seed,
            "n_train": trainCount, "n_test": testCount, "balanced_accuracy": balancedAccuracy, "accuracy": accuracy,
            "macro_f1": macroF1, "auc": auc as Any? ?? NSNull(),
            "per_class_recall": perClassRecall.map { $0 as Any? ?? NSNull() }, "confusion": confusion,
            "seconds": seconds, "classes": classNames,
        ]
        if let chosen { o["chosen"] = chosen; o["inner_scores"] = innerScores }
        if let scales { o["scales"] = scales }
        if evaluation != "few-shot" { o["evaluation"] = evaluation }
        if let evidence { o["evidence"] = evidence.json }
        return o
    }
}

extension CurveRecord {
    /// The JSON-lines object with the test predictions too (`test`: item indices into the dataset,
    /// `probabilities`: one row per test item), for records a report is later made from.
    public var jsonWithPredictions: [String: Any] {
        var o = json
        o["test"] = test
        o["probabilities"] = probabilities
        return o
    }

    /// Reads back `json` (e.g. from the run store); `test` and `probabilities` come separately, or from the
    /// object itself when it holds them (`jsonWithPredictions`).
    public init?(json o: [String: Any], test: [Int] = [], probabilities: [[Double]] = []) {
        guard let method = o["method"] as? String, let seed = (o["seed"] as? NSNumber)?.uint64Value,
              let bal = (o["balanced_accuracy"] as? NSNumber)?.doubleValue else { return nil }
        self.init(dataset: o["dataset"] as? String ?? "", method: method, chosen: o["chosen"] as? String,
                  innerScores: (o["inner_scores"] as? [String: NSNumber])?.mapValues(\.doubleValue) ?? [:],
                  size: (o["size"] as? NSNumber)?.intValue, seed: seed,
                  trainCount: (o["n_train"] as? NSNumber)?.intValue ?? 0, testCount: (o["n_test"] as? NSNumber)?.intValue ?? 0,
                  balancedAccuracy: bal, accuracy: (o["accuracy"] as? NSNumber)?.doubleValue ?? 0,
                  macroF1: (o["macro_f1"] as? NSNumber)?.doubleValue ?? 0, auc: (o["auc"] as? NSNumber)?.doubleValue,
                  perClassRecall: (o["per_class_recall"] as? [Any])?.map { ($0 as? NSNumber)?.doubleValue } ?? [],
                  confusion: o["confusion"] as? [[Int]] ?? [], seconds: (o["seconds"] as? NSNumber)?.doubleValue ?? 0,
                  classNames: o["classes"] as? [String] ?? [],
                  test: test.isEmpty ? (o["test"] as? [NSNumber])?.map(\.intValue) ?? [] : test,
                  probabilities: probabilities.isEmpty ? (o["probabilities"] as? [[NSNumber]])?.map { $0.map(\.doubleValue) } ?? [] : probabilities)
        evaluation = o["evaluation"] as? String ?? "few-shot"
        scales = (o["scales"] as? [NSNumber])?.map(\.doubleValue)
        evidence = (o["evidence"] as? [String: Any]).flatMap(AutoEvidence.init(json:))
    }
}

/// A method under the name its results are keyed by: a spec's text, or any name for a method of one's own.
public struct MethodEntry {
    public var id: String
    public var method: any FewShotMethod

    public init(id: String, method: any FewShotMethod) {
        self.id = id
        self.method = method
    }

    /// The method of `spec`, keyed by the spec's text.
    public init(_ spec: MethodSpec, warn: (String) -> Void = { _ in }) throws {
        self.init(id: spec.description, method: try spec.method(warn: warn))
    }

    /// A method keyed by its own `name`.
    public init(_ method: any FewShotMethod) { self.init(id: method.name, method: method) }
}

/// Runs the few-shot protocol for methods × sizes × seeds: per seed a stratified test split (30% per class,
/// exact duplicates and CSV groups on one side), then training sets of the first n images per class of the rest.
public struct LearningCurve {
    public var sizes: [Int?]
    public var seeds: [UInt64]
    public var testFraction = 0.3

    public init(sizes: [Int?], seeds: [UInt64]) {
        self.sizes = sizes
        self.seeds = seeds
    }

    /// Calls `record` after each (seed, size, method) so callers can write results as they come
    /// (an interrupted run keeps what finished). `skip` returns true for results already on disk.
    public func run(dataset: Dataset, bank: FeatureBank, methods: [MethodEntry],
                    skip: (RunKey) -> Bool = { _ in false },
                    record: (CurveRecord) throws -> Void) throws {
        let labels = dataset.items.map(\.label)
        let classes = dataset.classNames.count
        bank.plan(methods.map(\.method).flatMap(featureSpecs))
        // Exact duplicates never straddle train and test; CSV groups are respected too.
        let groups: [String?] = dataset.items.map { item in
            item.group ?? (try? dataset.contents(of: item)).map(SHA256.hex)
        }
        for seed in seeds {
            let split = FewShotSplit(labels: labels, groups: groups, classes: classes, seed: seed, testFraction: testFraction)
            for size in sizes {
                let train = split.training(perClass: size)
                for entry in methods where !skip(RunKey(method: entry.id, size: size, seed: seed)) {
                    let start = Date()
                    var context = MethodContext(dataset: dataset, bank: bank, seed: seed)
                    context.progress = bank.progress
                    let (p, outcome) = try predictions(entry.method, train: train, test: split.test, context: context)
                    try record(makeRecord(dataset: dataset, method: entry.id, outcome: outcome, size: size,
                                          seed: seed, train: train, test: split.test, probabilities: p, start: start))
                }
            }
        }
    }
}

/// Test probabilities of `method`, with `auto`'s outcome (what it chose, on what evidence) when it is one.
func predictions(_ method: any FewShotMethod, train: [Int], test: [Int], context: MethodContext) throws -> (Tensor, AutoMethod.Outcome?) {
    guard let auto = method as? AutoMethod else { return (try method.predict(train: train, test: test, context: context), nil) }
    let (outcome, p) = try auto.run(train: train, test: test, context: context)
    return (p, outcome)
}

/// Metrics of class probabilities `p` `[test.count, classes]` against the test items' labels.
func makeRecord(dataset: Dataset, method: String, outcome: AutoMethod.Outcome?, size: Int?, seed: UInt64,
                train: [Int], test: [Int], probabilities p: Tensor, start: Date, evaluation: String = "few-shot") -> CurveRecord {
    let classes = dataset.classNames.count
    let testLabels = test.map { dataset.items[$0].label }
    let predictions = argmaxRows(p)
    let probs = (0..<test.count).map { i in (0..<classes).map { Double(p[flat: i * classes + $0]) } }
    let confusion = Metrics.confusionMatrix(labels: testLabels, predictions: predictions, classes: classes)
    var r = CurveRecord(
        dataset: dataset.root.path, method: method, chosen: outcome?.chosenLabel, innerScores: outcome?.scores ?? [:], size: size,
        seed: seed, trainCount: train.count, testCount: test.count,
        balancedAccuracy: Metrics.balancedAccuracy(labels: testLabels, predictions: predictions, classes: classes),
        accuracy: Metrics.accuracy(labels: testLabels, predictions: predictions),
        macroF1: Metrics.macroF1(labels: testLabels, predictions: predictions, classes: classes),
        auc: Metrics.macroAUC(labels: testLabels, probabilities: probs),
        perClassRecall: Metrics.perClassRecall(confusion), confusion: confusion,
        seconds: Date().timeIntervalSince(start), classNames: dataset.classNames,
        test: test, probabilities: probs)
    r.evaluation = evaluation
    r.scales = outcome?.scales
    r.evidence = outcome?.evidence
    return r
}

/// The original study's protocol: a stratified held-out set (10%), then repeated stratified k-fold
/// cross-validation on the rest. Each fold's model predicts its own fold (out-of-fold predictions, one
/// `cv` record per fold) and the held-out set; the fold models' held-out predictions are then combined
/// by mean probability and by majority vote (two `holdout` records per method).
public struct RepeatedCrossValidation {
    public var folds: Int
    public var repeats: Int
    public var holdoutFraction: Double
    public var seed: UInt64

    public init(folds: Int = 5, repeats: Int = 4, holdoutFraction: Double = 0.1, seed: UInt64 = 0) {
        self.folds = folds
        self.repeats = repeats
        self.holdoutFraction = holdoutFraction
        self.seed = seed
    }

    public static func ensembleNames(_ method: String) -> (mean: String, vote: String) {
        (method + " · fold ensemble, mean probability", method + " · fold ensemble, majority vote")
    }

    /// `skip(method)` is true when a method's results are already stored (resume works per method).
    public func run(dataset: Dataset, bank: FeatureBank, methods: [MethodEntry],
                    skip: (String) -> Bool = { _ in false }, record: (CurveRecord) throws -> Void) throws {
        let labels = dataset.items.map(\.label)
        let classes = dataset.classNames.count
        bank.plan(methods.map(\.method).flatMap(featureSpecs))
        let groups: [String?] = dataset.items.map { item in
            item.group ?? (try? dataset.contents(of: item)).map(SHA256.hex)
        }
        let split = FewShotSplit(labels: labels, groups: groups, classes: classes, seed: seed, testFraction: holdoutFraction)
        let holdout = split.test, pool = split.training(perClass: nil)
        for entry in methods where !skip(entry.id) {
            let start = Date()
            var meanProbabilities = Tensor(zeros: [holdout.count, classes])
            var votes = Tensor(zeros: [holdout.count, classes])
            var models = 0
            for r in 0..<repeats {
                let foldSets = Splits.stratifiedKFold(labels: pool.map { labels[$0] }, groups: pool.map { groups[$0] },
                                                      folds: folds, seed: seed &+ UInt64(r) &* 1_000_003)
                for (f, fold) in foldSets.enumerated() {
                    let foldStart = Date()
                    let inFold = Set(fold)
                    let train = pool.indices.filter { !inFold.contains($0) }.map { pool[$0] }
                    let test = fold.map { pool[$0] }
                    var context = MethodContext(dataset: dataset, bank: bank, seed: seed &+ UInt64(r * folds + f))
                    context.progress = bank.progress
                    let (p, outcome) = try predictions(entry.method, train: train, test: test + holdout, context: context)
                    try record(makeRecord(dataset: dataset, method: entry.id, outcome: outcome, size: nil,
                                          seed: UInt64(r * folds + f), train: train, test: test,
                                          probabilities: p.rows(Array(0..<test.count)), start: foldStart, evaluation: "cv"))
                    let h = p.rows(Array(test.count..<(test.count + holdout.count)))
                    meanProbabilities.add(h)
                    votes.withUnsafeMutableBufferPointer { v in
                        for (i, c) in argmaxRows(h).enumerated() { v[i * classes + c] += 1 }
                    }
                    models += 1
                }
            }
            let names = Self.ensembleNames(entry.id)
            try record(makeRecord(dataset: dataset, method: names.mean, outcome: nil, size: nil, seed: seed,
                                  train: pool, test: holdout, probabilities: meanProbabilities.scaled(by: 1 / Float(models)),
                                  start: start, evaluation: "holdout"))
            // Votes as probabilities (share of fold models), ties broken towards the mean probability.
            var voteShare = votes.scaled(by: 1 / Float(models))
            voteShare.add(meanProbabilities.scaled(by: 1e-3 / Float(models)))
            voteShare = voteShare.scaled(by: 1 / 1.001)
            try record(makeRecord(dataset: dataset, method: names.vote, outcome: nil, size: nil, seed: seed,
                                  train: pool, test: holdout, probabilities: voteShare, start: start, evaluation: "holdout"))
        }
    }
}

/// The frozen-feature specs a method (or `auto`'s candidates) will ask for.
public func featureSpecs(_ method: any FewShotMethod) -> [FeatureSpec] {
    switch method {
    case let m as LinearProbeMethod: [m.features]
    case let m as NearestNeighbourMethod: [m.features]
    case let m as MLPMethod: [m.features] + m.partners
    // With several scales, only the scale probes are known up front: the candidates' features are computed
    // for the crop chosen (not also for the whole image when a crop wins: a full feature pass saved).
    case let m as AutoMethod: m.scaleProbe.map { probe in m.crops.flatMap { featureSpecs(probe($0)) } } ?? m.candidates.flatMap(featureSpecs)
    case let m as EnsembleMethod: m.members.flatMap(featureSpecs)
    // Planned on the outer bank, copied to the preprocessed bank when it is made.
    case let m as PreprocessedMethod: featureSpecs(m.inner)
    default: []
    }
}

/// Every backbone a method (or any of `auto`'s candidates) reads features from, or fine-tunes.
public func backbonesUsed(_ method: any FewShotMethod) -> Set<String> {
    switch method {
    case let m as AutoMethod:
        var all = Set(m.candidates.flatMap { backbonesUsed($0) })
        if let probe = m.scaleProbe { all.formUnion(m.crops.flatMap { backbonesUsed(probe($0)) }) }
        return all
    case let m as EnsembleMethod: return Set(m.members.flatMap { backbonesUsed($0) })
    case let m as PreprocessedMethod: return backbonesUsed(m.inner)
    case let m as FineTuneMethod: return [m.backbone]
    default: return Set(featureSpecs(method).flatMap(\.backbones))
    }
}
