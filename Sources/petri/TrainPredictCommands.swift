import ArgumentParser
import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriNN

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classifier on all of a dataset and save it as a model file.",
        discussion: """
            With --method auto (the default) the recipe is chosen exactly as `petri curve --method auto` \
            evaluates it: the image scale, then a logistic-regression probe, an MLP head or a small CNN from \
            scratch, by 3-fold cross-validation on the data. Probes are refitted on all of it; a network \
            winner is saved as the ensemble of its three cross-validation models (what `curve` scores). The \
            model file holds the recipe, the fitted weights and the class names. For an honest estimate of \
            accuracy on new images, run `petri study` or `petri curve`.

            Example:
              petri train Samples/bccd-wbc-mini --out wbc.petri
              petri train Samples/bccd-wbc-mini --method lp-multi --out wbc-lp.petri
              petri predict wbc.petri new-images/ --out predictions.csv
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Output model file.")
    var out: String

    @Option(help: "auto, auto-fast, an lp or mlp variant, or a scratch net (scratch, scratch-mini, scratch-small).")
    var method = "auto"

    @Option(help: "Backbone for single-backbone recipes.")
    var backbone = "efficientnet-lite0"

    @Option(help: "Seed for the inner cross-validation and for training.")
    var seed: UInt64 = 0

    @Flag(help: "No progress output.")
    var quiet = false

    func run() throws {
        let ds = try dataset.load(quiet: quiet)
        let method = try MethodFactory.make(self.method, backbone: backbone)
        let bank = FeatureBank(dataset: ds)
        bank.plan(featureSpecs(method))
        let stages = StageProgress(quiet: quiet)
        bank.progress = { stage, d, t in stages.update(stage, d, t) }
        var context = MethodContext(dataset: ds, bank: bank, seed: seed)
        context.progress = bank.progress
        let all = Array(ds.items.indices)
        var chosen = method, scores: [String: Double] = [:], foldModels: [String: [any FittedClassifier]] = [:]
        if let auto = method as? AutoMethod {
            let outcome = try auto.select(train: all, keepModels: true, context: context)
            chosen = outcome.chosen
            scores = outcome.scores
            foldModels = outcome.foldModels
        }
        var spec = FeatureSpec(backbones: [], levels: [], views: 1, crops: [1])
        var head: LogisticRegression.Fitted?, c: Double?, mlp: SavedModel.MLP?, networks: [SavedModel.Network]?
        // A blend saves each member; `predict` averages the MLP's and the networks' probabilities.
        let members = (chosen as? EnsembleMethod).map(\.members) ?? [chosen]
        for member in members {
            switch member {
            case let lp as LinearProbeMethod where members.count == 1:
                spec = lp.features
                let fitted = lp.probe.fit(try spec.matrix(bank), labels: context.labels, classes: context.classes, seed: seed)
                head = fitted.regression
                c = fitted.c
            case let m as MLPMethod where mlp == nil:
                spec = m.features
                mlp = SavedModel.MLP(try m.fitHead(train: all, context: context))
            case let s as ScratchMethod where networks == nil:
                let models = try foldModels[s.name] ?? [s.fit(train: all, context: context)]
                networks = models.compactMap { ($0 as? FittedNetwork).map(SavedModel.Network.init) }
            default:
                throw ValidationError("--method \(self.method) (\(chosen.name)) cannot be saved; use auto, an lp or mlp variant, or scratch")
            }
        }
        let formatter = ISO8601DateFormatter()
        let model = SavedModel(
            classNames: ds.classNames, backbones: spec.backbones, levels: spec.levels.map(\.description), views: spec.views,
            crops: spec.crops, preprocessing: "none", head: head, regularisation: c, mlp: mlp, networks: networks,
            method: chosen.name, trainedOn: ds.root.path, dataHash: datasetHash(ds), trainingImages: ds.items.count,
            innerCVBalancedAccuracy: scores[chosen.name], created: formatter.string(from: Date()), petriVersion: PetriVersion.string)
        try model.write(to: URL(fileURLWithPath: out))
        print("model: \(out)")
        let detail = c.map { ", C = \($0)" }
            ?? (networks.map { $0.count > 1 ? ", \(mlp != nil ? "with an " : "")ensemble of \($0.count) cross-validation models" : "" } ?? "")
        print("recipe: \(chosen.name)\(detail), \(ds.items.count) images, \(ds.classNames.count) classes")
        if let s = scores[chosen.name] {
            print(String(format: "3-fold cross-validated balanced accuracy of this recipe: %.3f", s))
        }
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images with a saved model; writes CSV (path, label, confidence, one probability per class).",
        discussion: """
            Arguments are image files or folders (searched recursively). Unreadable files are reported on \
            stderr and skipped.

            Example:
              petri predict wbc.petri new-images/ --out predictions.csv
            """)

    @Argument(help: "Model file written by `petri train`.")
    var model: String

    @Argument(help: "Images or folders of images.")
    var inputs: [String]

    @Option(help: "Write the CSV here instead of standard output.")
    var out: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func run() throws {
        let saved = try SavedModel.read(URL(fileURLWithPath: model))
        var paths: [String] = []
        for input in inputs {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
                throw PetriCLIError("\(input): no such file or folder")
            }
            if isDir.boolValue {
                var warnings: [String] = []
                let url = URL(fileURLWithPath: input)
                paths += Dataset.imageFiles(under: url, warnings: &warnings).map { url.appendingPathComponent($0).path }
            } else {
                paths.append(URL(fileURLWithPath: input).path)
            }
        }
        let items = paths.map { DatasetItem(path: $0, relativePath: $0, label: 0) }
        let (ds, failures) = FeatureBank.readableItems(Dataset(root: URL(fileURLWithPath: "/"), classNames: ["?"], items: items))
        for (p, r) in failures { printError("skipped \(p): \(r)") }
        guard !ds.items.isEmpty else { throw PetriCLIError("no readable images among the inputs") }
        let stages = StageProgress(quiet: quiet)
        let p = try saved.probabilities(ds, file: model) { stage, d, t in stages.update(stage, d, t) }
        let k = saved.classNames.count
        func csvField(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        var csv = "path,label,confidence," + saved.classNames.map { csvField("p_" + $0) }.joined(separator: ",") + "\n"
        for (i, item) in ds.items.enumerated() {
            let row = (0..<k).map { p[flat: i * k + $0] }
            let best = row.indices.max { row[$0] < row[$1] }!
            csv += "\(csvField(item.path)),\(csvField(saved.classNames[best])),\(String(format: "%.4f", row[best])),"
                + row.map { String(format: "%.4f", $0) }.joined(separator: ",") + "\n"
        }
        if let out {
            try Data(csv.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
            if !quiet { printError("wrote \(out) (\(ds.items.count) images)") }
        } else {
            print(csv, terminator: "")
        }
    }
}
