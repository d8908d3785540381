import ArgumentParser
import Foundation
import PetriLearn
import PetriReport
import PetriStudy

struct StudyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "study",
        abstract: "Compare approaches on your data across training-set sizes and write an HTML report.",
        discussion: """
            Runs the few-shot protocol (see `petri curve`) for several methods — by default Petri's `auto`, \
            ImageNet frozen features with a linear probe (plain and with dihedral test-time averaging), nearest \
            class prototypes, a small CNN trained from scratch, and a random-feature control — and writes a \
            self-contained HTML report (learning curves, per-class recall, confusion matrix, most-misclassified \
            images, whether confidence can be trusted, labels to check, a 2-D map of the images) and a JSON run \
            record (config, seeds, data hash, versions, every per-seed result). The run is also recorded in the \
            run store (see `petri runs`); --resume continues an interrupted one. --compare preprocessing, \
            augmentation or backbones asks which preprocessing, augmentation or pretrained backbone (ImageNet or \
            a CellNet from `petri pretrain`) helps, measured on the same splits; any method can also run on \
            preprocessed images as METHOD@STEPS (e.g. mlp@reinhard, lp@clahe+grey).

            Examples:
              petri study Samples/bccd-wbc-mini --out report.html
              petri study Samples/bccd-wbc-mini --protocol kfold --folds 5 --repeats 4 --methods auto,lp,scratch-mini
              petri study Samples/bccd-wbc-mini --compare preprocessing --sizes 5,20 --out preprocessing.html
              petri study Samples/bccd-wbc-mini --compare backbones   # ImageNet against the CellNets
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Training images per class, comma-separated; 'all' for the whole training pool.")
    var sizes = "5,10,20,all"

    @Option(help: "Seeds, comma-separated.")
    var seeds = "0,1,2,3,4"

    @Option(help: "Methods, comma-separated (see `petri curve --help`); default: those of --compare.")
    var methods: String?

    @Option(help: "Which question the default methods answer: transfer (does ImageNet transfer help: auto, linear probes, prototypes, a CNN from scratch, random features), preprocessing (one frozen-feature recipe on images after each of \(Comparison.preprocessings.joined(separator: ", "))), augmentation (one CNN from scratch under each of \(Comparison.augmentations.map(\.name).joined(separator: ", "))), or backbones (an MLP on ImageNet Lite0 features and on those of every backbone `petri pretrain` made).")
    var compare = "transfer"

    @Option(help: "Backbone of single-backbone methods, of the report's map of the images and its activation maps.")
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

    @Option(help: "Run only part K of N of the evaluations (K/N) and write their records to --records; no report. Make the report from all parts with --from.")
    var shard: String?

    @Option(help: "Also write every record, with its test predictions, as JSON lines to this file.")
    var records: String?

    @Option(help: "Make the report from these record files (comma-separated; e.g. the shards' --records) instead of evaluating.")
    var from: String?

    func study() throws -> Study {
        guard let comparison = Comparison(rawValue: compare) else {
            throw ValidationError("--compare must be \(Comparison.allCases.map(\.rawValue).joined(separator: ", ")), not '\(compare)'")
        }
        let specs = try methods.map { try Arguments.methods($0, backbone: backbone) } ?? studyCall { try comparison.methods() }
        var study = Study(dataset: try dataset.policy(), methods: specs)
        study.sizes = try Arguments.sizes(sizes)
        study.seeds = try Arguments.seeds(seeds)
        switch protocol_ {
        case "few-shot": study.evaluation = .fewShot
        case "kfold":
            guard folds >= 2, repeats >= 1, holdout > 0, holdout < 1 else { throw ValidationError("kfold needs --folds ≥ 2, --repeats ≥ 1 and --holdout in (0, 1)") }
            study.evaluation = .kFold(folds: folds, repeats: repeats, holdout: holdout)
        default: throw ValidationError("--protocol must be few-shot or kfold, not '\(protocol_)'")
        }
        study.backbone = backbone
        study.report = out
        study.store = store.settings
        study.command = Arguments.commandLine
        study.checkEveryTrainedBackbone = methods == nil && comparison == .backbones
        study.shard = try shard.map { text in try studyCall { try Shard(text) } }
        study.records = records
        study.from = from.map { $0.split(separator: ",").map(String.init) } ?? []
        if study.shard != nil, records == nil { throw ValidationError("--shard needs --records FILE for its results") }
        if !study.from.isEmpty, study.shard != nil { throw ValidationError("--from makes the report of finished shards; it takes no --shard") }
        if !study.from.isEmpty { study.store.enabled = false }
        return study
    }

    func validate() throws { _ = try study() }

    func run() throws {
        let study = try self.study()
        let outcome = try studyCall { try study.run(reporter: TerminalReporter(quiet: quiet), render: StudyReport.html) }
        ResultSummary.lines(outcome.records).forEach { print($0) }
        if let shard = study.shard {
            return print("shard \(shard): \(outcome.records.count) results in \(records!); the report: petri study \(dataset.data) --from FILES")
        }
        print("report: \(URL(fileURLWithPath: out).path)")
        print("run record: \(outcome.recordURL(besides: URL(fileURLWithPath: out)).path)")
        if let best = outcome.headline {
            print("best method at n=\(best.size) per class: \(best.method)")
            print(String(format: "balanced accuracy: %.3f (95%% interval %.3f–%.3f, %d seeds)", best.summary.mean,
                         best.summary.low, best.summary.high, best.summary.count))
        }
        print(String(format: "time taken: %.0f s", outcome.seconds))
    }
}
