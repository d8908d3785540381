import ArgumentParser
import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriNN
import PetriReport

struct StudyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "study",
        abstract: "Compare approaches on your data across training-set sizes and write an HTML report.",
        discussion: """
            Runs the few-shot protocol (see `petri curve`) for several methods — by default Petri's `auto`, \
            ImageNet frozen features with a linear probe (plain and with dihedral test-time averaging), nearest \
            class prototypes, a small CNN trained from scratch, and a random-feature control — and writes a self-contained HTML report (learning \
            curves, per-class recall, confusion matrix, most-misclassified images, whether confidence can be \
            trusted, labels to check, a 2-D map of the images) and \
            a JSON run record (config, seeds, data hash, versions, every per-seed result). The run is also \
            recorded in the run store (see `petri runs`); --resume continues an interrupted one. \
            --compare preprocessing, augmentation or backbones asks which preprocessing, augmentation or \
            pretrained backbone (ImageNet or a CellNet from `petri pretrain`) helps, measured on \
            the same splits; any method can also run on preprocessed images as METHOD@STEPS \
            (e.g. mlp@reinhard, lp@clahe+grey).

            Example:
              petri study Samples/bccd-wbc-mini --out report.html
              petri study Samples/bccd-wbc-mini --protocol kfold --folds 5 --repeats 4 --methods auto,lp,scratch-mini
              petri study Samples/bccd-wbc-mini --compare preprocessing --sizes 5,20 --out preprocessing.html
              petri study Samples/bccd-wbc-mini --compare backbones   # after petri pretrain
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Training images per class, comma-separated; 'all' for the whole training pool.")
    var sizes = "5,10,20,all"

    @Option(help: "Seeds, comma-separated.")
    var seeds = "0,1,2,3,4"

    @Option(help: "Methods, comma-separated (see `petri curve --help`); default: those of --compare.")
    var methods: String?

    @Option(help: "Which question the default methods answer: transfer (does ImageNet transfer help: auto, linear probes, prototypes, a CNN from scratch, random features), preprocessing (one frozen-feature recipe on images after each of \(StudyCommand.preprocessings.joined(separator: ", "))), augmentation (one CNN from scratch under each of \(StudyCommand.augmentations.map(\.0).joined(separator: ", "))), or backbones (an MLP on ImageNet Lite0 features and on those of every backbone `petri pretrain` made).")
    var compare = "transfer"

    /// The preprocessing the `preprocessing` comparison tries (the original study's list, plus stain normalisation).
    static let preprocessings = ["none", "grey", "clahe", "reinhard", "macenko", "tophat", "sobel", "lbp"]
    /// The augmentations the `augmentation` comparison tries, one at a time and together (`cells`).
    static let augmentations: [(String, String)] = [
        ("none", "none"), ("flips", "dihedral"), ("crops", "crop(scale=0.6-1)"), ("colour", "hsv(h=0.03,s=0.15,v=0.1)"),
        ("stain", "hed(sigma=0.05,bias=0.01)"), ("blur", "blur(sigma=0.1-1.5)"), ("noise", "noise(std=0.03)"), ("all", "cells"),
    ]

    /// The methods of `--methods`, or the default ones for `--compare`.
    func methodSpecs() throws -> [MethodSpec] { try MethodArguments.specs(try methodNames(), backbone: backbone) }

    func methodNames() throws -> String {
        if let methods { return methods }
        switch compare {
        case "transfer": return "auto,lp,lp-tta,proto,scratch-mini,lp-random"
        // Lite0's last two levels with dihedral averaging, an MLP head: auto's usual frozen recipe, one backbone.
        case "preprocessing": return Self.preprocessings.map { "mlp:b=lite0:l=stage6+head:v=8" + ($0 == "none" ? "" : "@" + $0) }.joined(separator: ",")
        case "augmentation": return Self.augmentations.map { "scratch:net=cnn-mini:aug=" + $0.1 }.joined(separator: ",")
        // ImageNet Lite0 against every backbone `petri pretrain` made (its features from the last two levels).
        case "backbones":
            let trained = ModelRegistry.trainedNames
            guard !trained.isEmpty else {
                throw ValidationError("--compare backbones: no backbone trained with `petri pretrain` in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: " or "))")
            }
            return (["lite0"] + trained).map { "mlp:b=\($0):l=stage6+head:v=8" }.joined(separator: ",")
        default: throw ValidationError("--compare must be transfer, preprocessing, augmentation or backbones, not '\(compare)'")
        }
    }

    @Option(help: "Backbone for single-backbone methods.")
    var backbone = "efficientnet-lite0"

    @Option(help: "The HTML report to write (the run record goes beside it as .json).")
    var out = "petri-report.html"

    @Flag(help: "No progress output.")
    var quiet = false

    @OptionGroup var store: StoreOptions

    @Option(name: .customLong("protocol"), help: "few-shot (learning curves, the default) or kfold (the original study: a held-out set, then repeated stratified k-fold on the rest, with fold-model ensembles scored on the held-out set).")
    var protocol_ = "few-shot"

    @Option(help: "kfold: folds per repeat.")
    var folds = 5

    @Option(help: "kfold: repeats (each a new shuffle).")
    var repeats = 4

    @Option(help: "kfold: fraction of each class held out.")
    var holdout = 0.1

    /// The central crop `auto` chose most often in `records` (1 when none).
    static func usualCrop(_ records: [CurveRecord]) -> Double {
        var counts: [Double: Int] = [:]
        for r in records { if let crop = r.scales?.first { counts[crop, default: 0] += 1 } }
        return counts.max { ($0.value, -$0.key) < ($1.value, -$1.key) }?.key ?? 1
    }

    func validate() throws {
        _ = try methodSpecs()
    }

    func run() throws {
        guard ["few-shot", "kfold"].contains(protocol_) else {
            throw ValidationError("--protocol must be few-shot or kfold, not '\(protocol_)'")
        }
        let start = Date()
        let curve = CurveCommand.parseOrExit(["--sizes", sizes, "--seeds", seeds, dataset.data])
        let ds = try dataset.load(quiet: quiet)
        let methodList = try MethodArguments.entries(try methodSpecs())
        if compare == "backbones" { warnAboutPretrainingOverlap(ds) }
        else { warnAboutPretrainingOverlap(ds, backbones: methodList.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1.method)) }) }
        let bank = FeatureBank(dataset: ds)
        let stages = StageProgress(quiet: quiet)
        bank.progress = { stage, done, total in stages.update(stage, done, total) }
        let hash = datasetHash(ds)
        let config: [String: Any] = [
            "dataset": dataset.data, "sizes": sizes, "seeds": seeds, "methods": methodList.map(\.id), "backbone": backbone,
            "min_class_size": dataset.minClassSize, "max_per_class": dataset.maxPerClass.map { $0 as Any } ?? NSNull(),
            "draw_seed": dataset.drawSeed, "petri": PetriVersion.string, "protocol": protocol_,
        ].merging(dataset.preprocessConfig) { a, _ in a }.merging(trainedBackboneConfig(methodList.map(\.method))) { a, _ in a }
        let recorder = try RunRecorder(options: store, kind: "study", dataset: ds, dataHash: hash, config: config, quiet: quiet)
        var records: [CurveRecord] = recorder.earlier
        let sizeList = try curve.parsedSizes(), seedList = try curve.parsedSeeds()
        let total = sizeList.count * seedList.count * methodList.count
        let runs = ProgressLine("study runs", quiet: quiet)
        do {
            if protocol_ == "kfold" {
                let cv = RepeatedCrossValidation(folds: folds, repeats: repeats, holdoutFraction: holdout, seed: seedList[0])
                let cvTotal = methodList.count * (folds * repeats + 2)
                try cv.run(dataset: ds, bank: bank, methods: methodList, skip: { m in
                    recorder.isDone(RunKey(method: RepeatedCrossValidation.ensembleNames(m).vote, size: nil, seed: seedList[0]))
                }) { r in
                    records.append(r)
                    try recorder.record(r, dataset: ds)
                    runs.update(records.count, cvTotal)
                }
            } else {
                try LearningCurve(sizes: sizeList, seeds: seedList).run(dataset: ds, bank: bank, methods: methodList,
                                                                        skip: recorder.isDone) { r in
                    records.append(r)
                    try recorder.record(r, dataset: ds)
                    runs.update(records.count, total)
                }
            }
        } catch {
            recorder.fail()
            throw error
        }
        let elapsed = Date().timeIntervalSince(start)
        let command = (["petri"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        let versions = [
            "petri": PetriVersion.string, "oneDNN": dnnlVersionString(),
            "weights": ModelRegistry.entries.map(\.weightsFile).joined(separator: ", ")
                + ((trainedBackboneConfig(methodList.map(\.method))["trained_backbones"] as? [String: String]).map { ids in
                    ids.sorted { $0.key < $1.key }.map { ", \($0.key).petri-backbone (\($0.value))" }.joined() } ?? ""),
        ]
        let input = StudyReportInput(dataset: ds, records: records,
                                     embedding: try? bank.features(backbone: backbone, level: .head, view: 0),
                                     command: command, seeds: seedList, dataHash: hash, versions: versions,
                                     seconds: elapsed)
        var report = input
        // Activation maps on seed 0's split at the largest size (a Lite0 probe; illustrative, cheap).
        let labels = ds.items.map(\.label)
        let groups: [String?] = ds.items.map { $0.group ?? (try? ds.contents(of: $0)).map(SHA256.hex) }
        let split = FewShotSplit(labels: labels, groups: groups, classes: ds.classNames.count, seed: seedList[0])
        do {
            report.activationMaps = try ClassActivationMaps.examples(
                dataset: ds, train: split.training(perClass: sizeList.last ?? nil),
                test: stride(from: 0, to: split.test.count, by: max(1, split.test.count / 8)).map { split.test[$0] },
                backbone: backbone)
        } catch {
            printError("warning: activation maps skipped: \(error)")
        }
        // Labels to check: out-of-fold predictions of every image by auto's MLP recipe at the crop auto chose
        // most often at the largest size (`petri purify`); cheap when auto ran, since its features are cached
        // by now (without auto it would mean 3 backbones × 8 views of every image: left to `petri purify`).
        if methodList.contains(where: { $0.method is AutoMethod }) { do {
            let crop = Self.usualCrop(records.filter { $0.scales != nil && $0.sizeLabel == (sizeList.last.map { $0.map(String.init) ?? "all" } ?? "all") })
            let smallest = ds.classCounts.filter { $0 > 0 }.min() ?? 0
            let folds = min(5, smallest)
            if folds >= 2 {
                var context = MethodContext(dataset: ds, bank: bank, seed: seedList[0])
                context.progress = bank.progress
                let spec = FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8, crops: [crop])
                let all = Array(ds.items.indices)
                let p = try Purification.outOfFoldProbabilities(MLPMethod(features: spec), items: all, folds: folds, context: context)
                let k = ds.classNames.count
                report.labelIssues = LabelIssues.find(labels: ds.items.map(\.label),
                                                      probabilities: all.map { i in (0..<k).map { Double(p[flat: i * k + $0]) } }, classes: k)
                report.outliers = Purification.outliers(Purification.outlierScores(try spec.matrix(bank), items: all))
                report.purificationRecipe = "Every image predicted by an MLP on frozen features (\(spec)) trained on the other \(folds) folds; flagged when it is confident in another class (confident learning). Outliers: far from their 5 nearest images in feature space."
            }
        } catch {
            printError("warning: label check skipped: \(error)")
        } }
        let outURL = URL(fileURLWithPath: out)
        try Data(StudyReport.html(report).utf8).write(to: outURL, options: .atomic)
        let record: [String: Any] = [
            "command": command, "dataset": ds.root.path, "data_hash": hash, "classes": ds.classNames,
            "sizes": sizes, "seeds": seedList, "methods": methodList.map(\.id), "versions": versions,
            "seconds": elapsed, "results": records.map(\.json),
        ]
        let recordURL = outURL.deletingPathExtension().appendingPathExtension("json")
        try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
            .write(to: recordURL, options: .atomic)
        recorder.finish(seconds: elapsed, output: outURL.path)
        printSummary(records)
        print("report: \(outURL.path)")
        print("run record: \(recordURL.path)")
        if let best = StudyReport.headline(records) {
            print("best method at n=\(best.size) per class: \(best.method)")
            print(String(format: "balanced accuracy: %.3f (95%% interval %.3f–%.3f, %d seeds)", best.summary.mean,
                         best.summary.low, best.summary.high, best.summary.count))
        }
        print(String(format: "time taken: %.0f s", elapsed))
    }
}

/// SHA-256 over the sorted (path, label, content hash) of every item: identifies the exact data a run used.
func datasetHash(_ ds: Dataset) -> String {
    let lines = ds.items.map { item in
        "\(item.relativePath)\t\(ds.classNames[item.label])\t\((try? ds.contents(of: item)).map(SHA256.hex) ?? "unreadable")"
    }.sorted()
    return SHA256.hex(lines.joined(separator: "\n"))
}
