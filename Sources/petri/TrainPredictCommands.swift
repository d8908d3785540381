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
            evaluates it: the image scale, then MLP heads on ImageNet and CellNet features, a small CNN from \
            scratch or their blend, by 3-fold cross-validation on the data (`auto:cellnet=none`: ImageNet \
            features only, better for a model that will meet other labs' images). Probes are refitted on all of it; a network \
            winner is saved as the ensemble of its three cross-validation models (what `curve` scores). The \
            model file holds the recipe, the fitted weights and the class names. For an honest estimate of \
            accuracy on new images, run `petri study` or `petri curve`.

            With auto and at least 10 images per class, the cross-validation's out-of-fold predictions also \
            calibrate the model: a temperature for its probabilities, the confidence from which `predict` \
            marks a prediction 'accept' (--target-accuracy) and a conformal threshold for prediction sets \
            (--coverage). They hold for images like the training images, not for a new lab or scanner.

            Example:
              petri train Samples/bccd-wbc-mini --out wbc.petri
              petri train Samples/bccd-wbc-mini --method lp-multi --out wbc-lp.petri
              petri predict wbc.petri new-images/ --out predictions.csv
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Output model file.")
    var out: String

    @Option(help: "auto (auto:cellnet=NAME|none), auto-fast, an lp or mlp variant, or a scratch net (scratch, scratch-mini, scratch-small).")
    var method = "auto"

    @Option(help: "Backbone for single-backbone recipes.")
    var backbone = "efficientnet-lite0"

    @Option(help: "Seed for the inner cross-validation and for training.")
    var seed: UInt64 = 0

    @Option(help: "Accuracy the predictions marked 'accept' should reach (calibrated on out-of-fold predictions; auto only).")
    var targetAccuracy = 0.95

    @Option(help: "Share of images whose prediction set should hold the true class (split conformal; auto only).")
    var coverage = 0.9

    @Option(help: "Fit the final MLP head also on this many colour-shifted copies of each image (a head that leans less on colour, for images from other labs; one more feature pass per copy). The inner cross-validation scores are of the recipe without copies.")
    var colourCopies = 0

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard colourCopies >= 0, colourCopies <= 16 else { throw ValidationError("--colour-copies must be 0…16") }
        guard targetAccuracy > 0, targetAccuracy <= 1 else { throw ValidationError("--target-accuracy must be in (0, 1]") }
        guard coverage > 0, coverage < 1 else { throw ValidationError("--coverage must be in (0, 1)") }
    }

    func run() throws {
        let ds = try dataset.load(quiet: quiet)
        let methodSpec: MethodSpec
        do { methodSpec = try MethodSpec(parsing: self.method, backbone: backbone) } catch { throw ValidationError("\(error)") }
        let method = try MethodArguments.entries([methodSpec])[0].method
        warnAboutPretrainingOverlap(ds, backbones: backbonesUsed(method))
        let bank = FeatureBank(dataset: ds)
        bank.plan(featureSpecs(method))
        let stages = StageProgress(quiet: quiet)
        bank.progress = { stage, d, t in stages.update(stage, d, t) }
        var context = MethodContext(dataset: ds, bank: bank, seed: seed)
        context.progress = bank.progress
        let all = Array(ds.items.indices)
        var chosen = method, scores: [String: Double] = [:], foldModels: [String: [any FittedClassifier]] = [:]
        var triage: SavedModel.Triage?
        if let auto = method as? AutoMethod {
            let outcome = try auto.select(train: all, keepModels: true, context: context)
            chosen = outcome.chosen
            scores = outcome.scores
            foldModels = outcome.foldModels
            if let oof = outcome.outOfFoldProbabilities(chosen) {
                let k = context.classes
                let rows = (0..<all.count).map { i in (0..<k).map { Double(oof[flat: i * k + $0]) } }
                triage = SavedModel.Triage(labels: context.labels, probabilities: rows, classes: k,
                                           targetAccuracy: targetAccuracy, alpha: 1 - coverage)
            }
        }
        var spec = FeatureSpec(backbones: [], levels: [], views: 1, crops: [1])
        var head: LogisticRegression.Fitted?, c: Double?, mlp: SavedModel.MLP?, networks: [SavedModel.Network]?
        var partnerHeads: [SavedModel.PartnerHead]?
        // A blend saves each member; `predict` averages the MLP's and the networks' probabilities.
        let members = (chosen as? EnsembleMethod).map(\.members) ?? [chosen]
        for member in members {
            switch member {
            case let lp as LinearProbeMethod where members.count == 1:
                spec = lp.features
                let fitted = lp.probe.fit(try spec.matrix(bank), labels: context.labels, classes: context.classes, seed: seed)
                head = fitted.regression
                c = fitted.c
            case var m as MLPMethod where mlp == nil:
                spec = m.features
                if colourCopies > 0 { m.colourCopies = colourCopies }
                mlp = SavedModel.MLP(try m.member(0).fitHead(train: all, context: context))
                if !m.partners.isEmpty {
                    partnerHeads = try m.partners.indices.map { i in
                        SavedModel.PartnerHead(features: m.partners[i], mlp: SavedModel.MLP(try m.member(i + 1).fitHead(train: all, context: context)))
                    }
                }
            case let s as ScratchMethod where networks == nil:
                let models = try foldModels[s.name] ?? [s.fit(train: all, context: context)]
                networks = models.compactMap { ($0 as? FittedNetwork).map(SavedModel.Network.init) }
            default:
                throw ValidationError("--method \(self.method) (\(chosen.name)) cannot be saved; use auto, an lp or mlp variant, or scratch")
            }
        }
        let formatter = ISO8601DateFormatter()
        var model = SavedModel(
            classNames: ds.classNames, backbones: spec.backbones, levels: spec.levels.map(\.description), views: spec.views,
            crops: spec.crops, preprocessing: ds.preprocessing.spec, head: head, regularisation: c, mlp: mlp, networks: networks,
            method: chosen.name, trainedOn: ds.root.path, dataHash: datasetHash(ds), trainingImages: ds.items.count,
            innerCVBalancedAccuracy: scores[chosen.name], created: formatter.string(from: Date()), petriVersion: PetriVersion.string)
        model.triage = triage
        model.partnerHeads = partnerHeads
        model.trainedBackbones = SavedModel.trainedBackboneIdentities(spec.backbones + (partnerHeads ?? []).flatMap(\.backbones))
        model.scaleReference = SavedModel.FeatureStatistics(l2NormalizedRows(try SavedModel.scaleReferenceSpec.matrix(bank)))
        try model.write(to: URL(fileURLWithPath: out))
        print("model: \(out)")
        let detail = c.map { ", C = \($0)" }
            ?? (networks.map { $0.count > 1 ? ", \(mlp != nil ? "with an " : "")ensemble of \($0.count) cross-validation models" : "" } ?? "")
        print("recipe: \(chosen.name)\(detail), \(ds.items.count) images, \(ds.classNames.count) classes")
        if colourCopies > 0 {
            print(mlp != nil ? "the MLP head also trained on \(colourCopies) colour-shifted copies of each image"
                             : "--colour-copies ignored: the recipe has no MLP head (its networks train with colour augmentation already)")
        }
        if let s = scores[chosen.name] {
            print(String(format: "3-fold cross-validated balanced accuracy of this recipe: %.3f", s))
        }
        if let t = triage {
            let accept = t.acceptThreshold.map {
                String(format: "predictions with confidence ≥ %.3f are marked 'accept' (out of fold: %.0f%% of images, right ≥ %.0f%% of the time); the rest 'review'", $0, t.acceptedFraction * 100, t.targetAccuracy * 100)
            } ?? String(format: "no confidence level reached %.0f%% accuracy out of fold: every prediction is marked 'review'", t.targetAccuracy * 100)
            print(String(format: "calibration (out-of-fold predictions of %d images): temperature %.2f; ", t.calibrationImages, t.temperature) + accept)
            print(t.conformalThreshold == nil
                  ? String(format: "prediction sets: too few images for %.0f%% coverage; every set holds every class", (1 - t.alpha) * 100)
                  : String(format: "prediction sets aim to hold the true class for %.0f%% of images", (1 - t.alpha) * 100))
        } else if method is AutoMethod {
            print("no calibration saved: inner cross-validation needs at least \(AutoMethod(candidates: []).blendBelow) images per class; predictions carry no accept/review mark")
        }
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images with a saved model; writes CSV (path, label, confidence, one probability per class).",
        discussion: """
            Arguments are image files or folders (searched recursively). Unreadable files are reported on \
            stderr and skipped. Columns: path, label, confidence, then — when the model was calibrated by \
            `petri train` — triage ('accept' or 'review') and set (the classes the image may be, '|'-separated, \
            most probable first), then one probability per class.

            Example:
              petri predict wbc.petri new-images/ --out predictions.csv
            """)

    @Argument(help: "Model file written by `petri train`.")
    var model: String

    @Argument(help: "Images or folders of images.")
    var inputs: [String]

    @OptionGroup(title: "Adapting to another lab's images") var adaptation: AdaptationOptions

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
        let steps = try adaptation.imageSteps(saved, ds, file: model, quiet: quiet)
        let p = try saved.probabilities(ds, adaptation: steps, headAdaptation: adaptation.headAdaptation(saved, ds, labelled: false, quiet: quiet), adaptNetworkNormalisation: adaptation.adaptNorm, file: model) { stage, d, t in stages.update(stage, d, t) }
        let k = saved.classNames.count
        func csvField(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        // With calibration in the model: tempered probabilities, an accept/review mark and the prediction set.
        let triage = saved.triage
        var csv = "path,label,confidence," + (triage == nil ? "" : "triage,set,")
            + saved.classNames.map { csvField("p_" + $0) }.joined(separator: ",") + "\n"
        var accepted = 0
        for (i, item) in ds.items.enumerated() {
            var row = (0..<k).map { Double(p[flat: i * k + $0]) }
            var marks = ""
            if let triage {
                let t = triage.apply(row)
                row = t.probabilities
                if t.accepted { accepted += 1 }
                marks = (t.accepted ? "accept," : "review,") + csvField(t.set.map { saved.classNames[$0] }.joined(separator: "|")) + ","
            }
            let best = row.indices.max { row[$0] < row[$1] }!
            csv += "\(csvField(item.path)),\(csvField(saved.classNames[best])),\(String(format: "%.4f", row[best])),\(marks)"
                + row.map { String(format: "%.4f", $0) }.joined(separator: ",") + "\n"
        }
        if let triage, !quiet {
            printError("\(accepted) of \(ds.items.count) predictions marked 'accept' (confidence at which \(String(format: "%.0f%%", triage.targetAccuracy * 100)) of out-of-fold predictions were right); check the 'review' ones")
        }
        if let out {
            try Data(csv.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
            if !quiet { printError("wrote \(out) (\(ds.items.count) images)") }
        } else {
            print(csv, terminator: "")
        }
    }
}
