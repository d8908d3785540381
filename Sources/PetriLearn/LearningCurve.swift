import Foundation
import PetriData
import PetriEngine
import PetriEval

/// One result of the few-shot protocol: a method trained on `size` images per class with one seed.
public struct CurveRecord: Sendable {
    public var dataset: String
    public var method: String
    /// For `auto`: the candidate it chose and the inner-CV scores.
    public var chosen: String?
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

    public var sizeLabel: String { size.map(String.init) ?? "all" }

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
        return o
    }
}

extension CurveRecord {
    /// Reads back `json` (e.g. from the run store); `test` and `probabilities` come separately.
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
                  classNames: o["classes"] as? [String] ?? [], test: test, probabilities: probabilities)
    }
}

/// Runs the few-shot protocol (../shared/design/protocol.md) for methods × sizes × seeds.
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
    public func run(dataset: Dataset, bank: FeatureBank, methods: [any FewShotMethod],
                    skip: (String, Int?, UInt64) -> Bool = { _, _, _ in false },
                    record: (CurveRecord) throws -> Void) throws {
        let labels = dataset.items.map(\.label)
        let classes = dataset.classNames.count
        bank.plan(methods.flatMap(featureSpecs))
        // Exact duplicates never straddle train and test; CSV groups are respected too.
        let groups: [String?] = dataset.items.map { item in
            item.group ?? (try? dataset.contents(of: item)).map(SHA256.hex)
        }
        for seed in seeds {
            let split = FewShotSplit(labels: labels, groups: groups, classes: classes, seed: seed, testFraction: testFraction)
            let testLabels = split.test.map { labels[$0] }
            for size in sizes {
                let train = split.training(perClass: size)
                for method in methods where !skip(method.name, size, seed) {
                    let start = Date()
                    var context = MethodContext(dataset: dataset, bank: bank, seed: seed)
                    context.progress = bank.progress
                    var chosen: String?, scores: [String: Double] = [:]
                    let p: Tensor
                    if let auto = method as? AutoMethod {
                        let (winner, s) = try auto.choose(train: train, context: context)
                        chosen = winner.name
                        scores = s
                        p = try winner.predict(train: train, test: split.test, context: context)
                    } else {
                        p = try method.predict(train: train, test: split.test, context: context)
                    }
                    let predictions = argmaxRows(p)
                    let probs = (0..<split.test.count).map { i in (0..<classes).map { Double(p[flat: i * classes + $0]) } }
                    let confusion = Metrics.confusionMatrix(labels: testLabels, predictions: predictions, classes: classes)
                    try record(CurveRecord(
                        dataset: dataset.root.path, method: method.name, chosen: chosen, innerScores: scores, size: size,
                        seed: seed, trainCount: train.count, testCount: split.test.count,
                        balancedAccuracy: Metrics.balancedAccuracy(labels: testLabels, predictions: predictions, classes: classes),
                        accuracy: Metrics.accuracy(labels: testLabels, predictions: predictions),
                        macroF1: Metrics.macroF1(labels: testLabels, predictions: predictions, classes: classes),
                        auc: Metrics.macroAUC(labels: testLabels, probabilities: probs),
                        perClassRecall: Metrics.perClassRecall(confusion), confusion: confusion,
                        seconds: Date().timeIntervalSince(start), classNames: dataset.classNames,
                        test: split.test, probabilities: probs))
                }
            }
        }
    }
}

/// The frozen-feature specs a method (or `auto`'s candidates) will ask for.
func featureSpecs(_ method: any FewShotMethod) -> [FeatureSpec] {
    switch method {
    case let m as LinearProbeMethod: [m.features]
    case let m as NearestNeighbourMethod: [m.features]
    case let m as MLPMethod: [m.features]
    case let m as AutoMethod: m.candidates.flatMap(featureSpecs) + (m.scaleProbe.map { probe in m.crops.flatMap { featureSpecs(probe($0)) } } ?? [])
    case let m as EnsembleMethod: m.members.flatMap(featureSpecs)
    default: []
    }
}
