import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriNN

/// Which question a study's default methods answer.
public enum Comparison: String, CaseIterable, Sendable {
    /// Does ImageNet transfer help: auto, linear probes, prototypes, a CNN from scratch, random features.
    case transfer
    /// One frozen-feature recipe on the images after each of `preprocessings`.
    case preprocessing
    /// One CNN from scratch under each of `augmentations`.
    case augmentation
    /// An MLP on ImageNet Lite0 features and on those of every backbone `petri pretrain` made.
    case backbones

    /// The preprocessing the `preprocessing` comparison tries (the original study's list, plus stain normalisation).
    public static let preprocessings = ["none", "grey", "clahe", "reinhard", "macenko", "tophat", "sobel", "lbp"]
    /// The augmentations the `augmentation` comparison tries, one at a time and together (`cells`).
    public static let augmentations: [(name: String, policy: String)] = [
        ("none", "none"), ("flips", "dihedral"), ("crops", "crop(scale=0.6-1)"), ("colour", "hsv(h=0.03,s=0.15,v=0.1)"),
        ("stain", "hed(sigma=0.05,bias=0.01)"), ("blur", "blur(sigma=0.1-1.5)"), ("noise", "noise(std=0.03)"), ("all", "cells"),
    ]

    /// The comparison's methods. `backbones` needs at least one trained backbone in the weights folders.
    public func methods() throws -> [MethodSpec] {
        let text: String
        switch self {
        case .transfer: text = "auto,lp,lp-tta,proto,scratch-mini,lp-random"
        // Lite0's last two levels with dihedral averaging, an MLP head: auto's usual frozen recipe, one backbone.
        case .preprocessing: text = Self.preprocessings.map { "mlp:b=lite0:l=stage6+head:v=8" + ($0 == "none" ? "" : "@" + $0) }.joined(separator: ",")
        case .augmentation: text = Self.augmentations.map { "scratch:net=cnn-mini:aug=" + $0.policy }.joined(separator: ",")
        case .backbones:
            let trained = ModelRegistry.trainedNames
            guard !trained.isEmpty else {
                throw StudyError.invalidSetting("--compare backbones", "no backbone trained with `petri pretrain` in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: " or "))")
            }
            text = (["lite0"] + trained).map { "mlp:b=\($0):l=stage6+head:v=8" }.joined(separator: ",")
        }
        return try MethodSpec.list(text)
    }
}

/// How a study evaluates: learning curves (`fewShot`) or the original study's protocol (`kFold`: a held-out set,
/// then repeated stratified k-fold on the rest, with fold-model ensembles scored on the held-out set).
public enum StudyProtocol: Sendable, Equatable {
    case fewShot
    case kFold(folds: Int, repeats: Int, holdout: Double)

    var settings: [String: Any] {
        switch self {
        case .fewShot: ["protocol": "few-shot"]
        case let .kFold(folds, repeats, holdout): ["protocol": "kfold", "folds": folds, "repeats": repeats, "holdout": holdout]
        }
    }
}

/// `petri study`: methods compared on a dataset by a protocol, every result recorded as it finishes, then a
/// report (rendered by the caller, e.g. PetriReport's `StudyReport.html`) and a JSON run record beside it.
public struct Study {
    public var dataset: DatasetPolicy
    public var methods: [MethodSpec]
    public var sizes: [Int?] = [5, 10, 20, nil]
    public var seeds: [UInt64] = [0, 1, 2, 3, 4]
    public var evaluation = StudyProtocol.fewShot
    /// The backbone of the report's map of the images and its activation maps.
    public var backbone = defaultBackbone
    /// The report; the run record goes beside it as `.json`.
    public var report = "petri-report.html"
    public var store = StoreSettings()
    public var command = "petri study"
    /// Warn about every trained backbone pretrained on a set of this name, not only those the methods read.
    public var checkEveryTrainedBackbone = false
    /// Only this part of the evaluations, written to `records`; no report (`from` makes it from the parts).
    public var shard: Shard?
    /// A JSON-lines file the records are appended to, with their test predictions and the data hash.
    public var records: String?
    /// Make the report from these record files (the shards' `records`, or their merge) instead of evaluating.
    public var from: [String] = []

    public init(dataset: DatasetPolicy, methods: [MethodSpec]) {
        self.dataset = dataset
        self.methods = methods
    }

    /// Runs what is not done yet, then writes `render(outcome)` to `report` and the run record beside it.
    @discardableResult
    public func run(reporter: StudyReporter, render: (StudyOutcome) throws -> String) throws -> StudyOutcome {
        let start = Date()
        let ds = try dataset.load(reporter: reporter)
        let entries = try methods.map { try MethodEntry($0, warn: reporter.warning) }
        StudyChecks.pretrainingOverlap(ds, backbones: checkEveryTrainedBackbone ? nil : StudyChecks.backbones(entries), reporter: reporter)
        let bank = FeatureBank(dataset: ds)
        bank.progress = reporter.progressCallback
        let hash = datasetHash(ds)
        var config = RunConfig(kind: "study", dataset: dataset, sizes: sizes, seeds: seeds, methods: entries, backbone: backbone)
        config.protocolSettings = evaluation.settings
        if let shard {
            guard evaluation == .fewShot else { throw StudyError.invalidSetting("--shard", "works with the few-shot protocol") }
            config.protocolSettings["shard"] = shard.description
        }
        var records: [CurveRecord]
        var recorder: RunRecorder?
        if from.isEmpty {
            let r = try RunRecorder(store, config: config, dataHash: hash, command: command, reporter: reporter)
            reporter.recording(r)
            recorder = r
            records = r.earlier
            let out = self.records.map(JSONLinesFile.init)
            let mine = shard?.keys(methods: entries.map(\.id), sizes: sizes, seeds: seeds)
            do {
                try evaluate(entries, ds, bank, r, skip: { !(mine?.contains($0) ?? true) || r.isDone($0) }) { rec in
                    records.append(rec)
                    try out?.append(rec.jsonWithPredictions.merging(["data_hash": hash]) { a, _ in a })
                }
            } catch {
                r.fail()
                throw error
            }
            if shard != nil {
                r.finish(seconds: Date().timeIntervalSince(start), output: self.records)
                return StudyOutcome(dataset: ds, records: records, command: command, seeds: seeds, dataHash: hash,
                                    versions: versions(config), seconds: Date().timeIntervalSince(start))
            }
        } else {
            records = try Self.read(from, dataHash: hash)
        }
        var outcome = StudyOutcome(dataset: ds, records: records, command: command, seeds: seeds, dataHash: hash,
                                   versions: versions(config), seconds: Date().timeIntervalSince(start))
        outcome.config = config.json(dataHash: hash)
        outcome.embedding = try? bank.features(backbone: backbone, level: .head, view: 0)
        addActivationMaps(&outcome, reporter: reporter)
        if entries.contains(where: { $0.method is AutoMethod }) { addLabelChecks(&outcome, bank: bank, reporter: reporter) }
        let url = URL(fileURLWithPath: report)
        try Data(try render(outcome).utf8).write(to: url, options: .atomic)
        try outcome.writeRecord(to: outcome.recordURL(besides: url))
        recorder?.finish(seconds: outcome.seconds, output: url.path)
        return outcome
    }

    /// Records of earlier runs (JSON lines with predictions), every one of the same data as this study's.
    static func read(_ files: [String], dataHash: String) throws -> [CurveRecord] {
        var out: [CurveRecord] = [], seen = Set<String>()
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw StudyError.failed("\(file): cannot read") }
            for (n, line) in data.split(separator: 0x0A).enumerated() {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let r = CurveRecord(json: o) else {
                    throw StudyError.failed("\(file):\(n + 1): not a result record")
                }
                guard o["data_hash"] as? String == dataHash else {
                    throw StudyError.failed("\(file):\(n + 1): a record of other data (its data hash is not this dataset's)")
                }
                guard r.probabilities.count == r.test.count, !r.test.isEmpty else {
                    throw StudyError.failed("\(file):\(n + 1): a record without its test predictions (write records with `petri study --records`)")
                }
                if seen.insert(r.key.description + "|" + r.evaluation).inserted { out.append(r) }
            }
        }
        return out
    }

    func evaluate(_ entries: [MethodEntry], _ ds: Dataset, _ bank: FeatureBank, _ recorder: RunRecorder,
                  skip: @escaping (RunKey) -> Bool, finished: (CurveRecord) throws -> Void) throws {
        let record = { (r: CurveRecord) throws in
            try finished(r)
            try recorder.record(r, dataset: ds)
        }
        switch evaluation {
        case .fewShot:
            try LearningCurve(sizes: sizes, seeds: seeds).run(dataset: ds, bank: bank, methods: entries, skip: skip, record: record)
        case let .kFold(folds, repeats, holdout):
            let cv = RepeatedCrossValidation(folds: folds, repeats: repeats, holdoutFraction: holdout, seed: seeds[0])
            try cv.run(dataset: ds, bank: bank, methods: entries, skip: { m in
                recorder.isDone(RunKey(method: RepeatedCrossValidation.ensembleNames(m).vote, size: nil, seed: seeds[0]))
            }, record: record)
        }
    }

    func versions(_ config: RunConfig) -> [String: String] {
        let trained = (config.trainedBackbones ?? [:]).sorted { $0.key < $1.key }.map { ", \($0.key).petri-backbone (\($0.value))" }.joined()
        return ["petri": PetriVersion.string, "oneDNN": dnnlVersionString(),
                "weights": ModelRegistry.entries.map(\.weightsFile).joined(separator: ", ") + trained]
    }

    /// Activation maps on the first seed's split at the largest size (a Lite0 probe; illustrative, cheap).
    func addActivationMaps(_ outcome: inout StudyOutcome, reporter: StudyReporter) {
        let ds = outcome.dataset
        let split = FewShotSplit(labels: ds.items.map(\.label), groups: ds.items.map { $0.group ?? (try? ds.contents(of: $0)).map(SHA256.hex) },
                                 classes: ds.classNames.count, seed: seeds[0])
        do {
            outcome.activationMaps = try ClassActivationMaps.examples(
                dataset: ds, train: split.training(perClass: sizes.last ?? nil),
                test: stride(from: 0, to: split.test.count, by: max(1, split.test.count / 8)).map { split.test[$0] },
                backbone: backbone)
        } catch {
            reporter.warning("activation maps skipped: \(error)")
        }
    }

    /// Labels to check: out-of-fold predictions of every image by auto's MLP recipe at the crop auto chose most
    /// often at the largest size (`petri purify`). Cheap when auto ran, since its features are cached by now
    /// (without auto it would mean 3 backbones × 8 views of every image: left to `petri purify`).
    func addLabelChecks(_ outcome: inout StudyOutcome, bank: FeatureBank, reporter: StudyReporter) {
        let ds = outcome.dataset
        let largest = sizes.last.map { $0.map(String.init) ?? "all" } ?? "all"
        let crop = Self.usualCrop(outcome.records.filter { $0.scales != nil && $0.sizeLabel == largest })
        let folds = min(5, ds.classCounts.filter { $0 > 0 }.min() ?? 0)
        guard folds >= 2 else { return }
        do {
            var context = MethodContext(dataset: ds, bank: bank, seed: seeds[0])
            context.progress = bank.progress
            let check = try LabelCheck.run(ds, context: context, crop: crop, folds: folds)
            outcome.labelIssues = check.issues
            outcome.outliers = check.outliers
            outcome.purificationRecipe = check.recipe
        } catch {
            reporter.warning("label check skipped: \(error)")
        }
    }

    /// The central crop `auto` chose most often in `records` (1 when none).
    public static func usualCrop(_ records: [CurveRecord]) -> Double {
        var counts: [Double: Int] = [:]
        for r in records { if let crop = r.scales?.first { counts[crop, default: 0] += 1 } }
        return counts.max { ($0.value, -$0.key) < ($1.value, -$1.key) }?.key ?? 1
    }
}
