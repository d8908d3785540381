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
            With --method auto (the default) the frozen-feature recipe is chosen by 3-fold cross-validation on \
            the data, then refitted on all of it. The model file holds the recipe, the fitted head and the class \
            names. For an honest estimate of accuracy on new images, run `petri study` or `petri curve`.

            Example:
              petri train Samples/bccd-wbc-mini --out wbc.petri
              petri predict wbc.petri new-images/ --out predictions.csv
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Output model file.")
    var out: String

    @Option(help: "auto, lp, lp-tta, lp-multi or lp-levels-multi.")
    var method = "auto"

    @Option(help: "Backbone for single-backbone recipes.")
    var backbone = "efficientnet-lite0"

    @Option(help: "Seed for the inner cross-validation.")
    var seed: UInt64 = 0

    @Flag(help: "No progress output.")
    var quiet = false

    func run() throws {
        let ds = try dataset.load(quiet: quiet)
        let auto: AutoMethod
        switch method {
        case "auto":
            // The saveable part of `auto`: the image scale, then the multi-backbone probe at that scale.
            // (MLP heads and from-scratch nets cannot be written to a model file yet.)
            auto = AutoMethod(crops: [1, 0.7, 0.5, 0.4],
                              scaleProbe: { c in LinearProbeMethod(features: FeatureSpec(backbones: [backbone], crops: [c])) },
                              candidates: { c in MethodFactory.autoCandidates(crop: c, scratch: false).filter { $0 is LinearProbeMethod } })
        default:
            guard let m = try MethodFactory.make(method, backbone: backbone) as? LinearProbeMethod else {
                throw ValidationError("--method \(method) cannot be saved yet; use auto or an lp variant")
            }
            auto = AutoMethod(candidates: [m])
        }
        let bank = FeatureBank(dataset: ds)
        bank.plan(auto.candidates.compactMap { ($0 as? LinearProbeMethod)?.features })
        let line = ProgressLine("features", quiet: quiet)
        bank.progress = { _, d, t in line.update(d, t) }
        var context = MethodContext(dataset: ds, bank: bank, seed: seed)
        context.progress = bank.progress
        let all = Array(ds.items.indices)
        let (winner, scores) = try auto.choose(train: all, context: context)
        guard let chosen = winner as? LinearProbeMethod else { throw PetriCLIError("auto chose \(winner.name), which cannot be saved yet") }
        let x = try chosen.features.matrix(bank)
        let fitted = chosen.probe.fit(x, labels: context.labels, classes: context.classes, seed: seed)
        let formatter = ISO8601DateFormatter()
        let model = SavedModel(
            classNames: ds.classNames, backbones: chosen.features.backbones,
            levels: chosen.features.levels.map(\.description), views: chosen.features.views, crops: chosen.features.crops,
            preprocessing: "none",
            head: fitted.regression, regularisation: fitted.c, method: chosen.name, trainedOn: ds.root.path,
            dataHash: datasetHash(ds), trainingImages: ds.items.count, innerCVBalancedAccuracy: scores[chosen.name],
            created: formatter.string(from: Date()), petriVersion: PetriVersion.string)
        try model.write(to: URL(fileURLWithPath: out))
        print("model: \(out)")
        print("recipe: \(chosen.name), C = \(fitted.c), \(ds.items.count) images, \(ds.classNames.count) classes")
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
        let line = ProgressLine("features", quiet: quiet)
        let p = try saved.probabilities(ds) { _, d, t in line.update(d, t) }
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
