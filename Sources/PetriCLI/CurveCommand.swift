import ArgumentParser
import Foundation
import PetriLearn
import PetriStudy

struct CurveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curve",
        abstract: "Learning curves by the few-shot protocol: methods × training-set sizes × seeds, as JSON lines.",
        discussion: """
            For each seed: a stratified 30% test split (duplicates kept together), then training sets of the \
            first n images per class of the rest (n from --sizes; "all" = the whole pool). One JSON object per \
            (method, size, seed) with method, size, seed, n_train, balanced_accuracy, accuracy, macro_f1, auc, \
            per_class_recall, confusion, seconds. Results already in --json are skipped (resume).

            Methods (docs/methods.md has the whole grammar): \(MethodSpec.keywords.joined(separator: ", ")). \
            Spelled out: lp:/mlp:/knn:/proto:b=lite0+lite1:l=stage6+head:v=8:c=0.5 (mlp: with=cellnet adds a \
            head on another backbone, averaged), finetune:…, scratch:…, auto:cellnet=NAME|none:views=4, \
            avg(A|B) (soft vote), METHOD@STEPS (on preprocessed images). A bad setting is an error naming it.

            `auto` pairs an MLP head on ImageNet Lite0+1+2 features with one on Petri's CellNet (Lite0 \
            pretrained on PBC and NIH malaria cells): do not judge it on those sets with the shipped CellNet \
            (--method auto:cellnet=NAME with one pretrained without them, or auto:cellnet=none).

            Examples:
              petri curve Samples/bccd-wbc-mini --sizes 5,10,all --seeds 0,1,2 --json curve.jsonl
              petri curve my-cells/ --max-per-class 100 --method auto:cellnet=none,lp,mlp@reinhard --json cells.jsonl
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Training images per class, comma-separated; 'all' for the whole training pool.")
    var sizes = "5,10,20,50,all"

    @Option(help: "Seeds, comma-separated.")
    var seeds = "0,1,2,3,4"

    @Option(help: "Methods, comma-separated.")
    var method = "auto"

    @Option(help: "Backbone of single-backbone methods (lp, mlp, finetune, …).")
    var backbone = "efficientnet-lite0"

    @Option(help: "Write JSON lines here (appending; existing results are skipped).")
    var json: String?

    @Flag(help: "Each JSON line also holds the test items (indices into the images as loaded, after --max-per-class) and their class probabilities.")
    var predictions = false

    @Flag(help: "No progress output.")
    var quiet = false

    @Option(help: "Run only part K of N of the evaluations (K/N, e.g. 2/8 for the second of eight Slurm array tasks); merge the parts' JSON lines with `petri runs merge`.")
    var shard: String?

    @OptionGroup var store: StoreOptions

    func run() throws {
        let start = Date()
        var curve = CurveRun(dataset: try dataset.policy(), sizes: try Arguments.sizes(sizes), seeds: try Arguments.seeds(seeds),
                             methods: try Arguments.methods(method, backbone: backbone))
        curve.backbone = backbone
        curve.jsonLines = json
        curve.predictionsInFile = predictions
        curve.store = store.settings
        curve.command = Arguments.commandLine
        curve.shard = try shard.map { text in try studyCall { try Shard(text) } }
        let reporter = TerminalReporter(quiet: quiet)
        let results = try studyCall {
            try curve.run(reporter: reporter) { r in reporter.note(ResultSummary.line(r)) }
        }
        ResultSummary.lines(results).forEach { print($0) }
        print(String(format: "time: %.1fs", Date().timeIntervalSince(start)))
    }

    func validate() throws {
        _ = try Arguments.sizes(sizes)
        _ = try Arguments.seeds(seeds)
        _ = try Arguments.methods(method, backbone: backbone)
        if let shard { _ = try studyCall { try Shard(shard) } }
    }
}
