import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriNN

/// `petri train`: a classifier fitted on all of a dataset, as a model file. With `auto`, the recipe is chosen
/// exactly as `curve` evaluates it; probes are refitted on all images; a network winner is kept as the ensemble
/// of its inner cross-validation models (what `curve` scores). With inner CV (auto, ≥ 10 images per class) its
/// out-of-fold predictions also calibrate the model (`SavedModel.Triage`).
public struct ModelTraining {
    public var dataset: DatasetPolicy
    public var method = MethodSpec.auto(AutoSpec())
    public var seed: UInt64 = 0
    /// Accuracy the predictions marked `accept` should reach, out of fold.
    public var targetAccuracy = 0.95
    /// Share of images whose prediction set should hold the true class (split conformal).
    public var coverage = 0.9
    /// Also fit the final MLP head on this many colour-shifted copies of each image.
    public var colourCopies = 0

    public init(dataset: DatasetPolicy) { self.dataset = dataset }

    public func validate() throws {
        guard (0...16).contains(colourCopies) else { throw StudyError.invalidSetting("--colour-copies", "must be 0…16") }
        guard targetAccuracy > 0, targetAccuracy <= 1 else { throw StudyError.invalidSetting("--target-accuracy", "must be in (0, 1]") }
        guard coverage > 0, coverage < 1 else { throw StudyError.invalidSetting("--coverage", "must be in (0, 1)") }
    }

    /// The fitted model, and what to tell the user about it.
    public func run(reporter: StudyReporter) throws -> (model: SavedModel, summary: [String]) {
        try validate()
        let ds = try dataset.load(reporter: reporter)
        let method = try method.method(warn: reporter.warning)
        StudyChecks.pretrainingOverlap(ds, backbones: backbonesUsed(method), reporter: reporter)
        let bank = FeatureBank(dataset: ds)
        bank.plan(featureSpecs(method))
        bank.progress = reporter.progressCallback
        var context = MethodContext(dataset: ds, bank: bank, seed: seed)
        context.progress = bank.progress
        let all = Array(ds.items.indices)
        var chosen = method, cvScore: Double?, foldModels: [String: [any FittedClassifier]] = [:], triage: SavedModel.Triage?
        if let auto = method as? AutoMethod {
            let outcome = try auto.select(train: all, keepModels: true, context: context)
            chosen = outcome.chosen
            cvScore = outcome.scores[chosen.name]
            foldModels = outcome.foldModels
            if let oof = outcome.outOfFoldProbabilities(chosen) {
                let k = context.classes
                triage = SavedModel.Triage(labels: context.labels, probabilities: (0..<all.count).map { i in (0..<k).map { Double(oof[flat: i * k + $0]) } },
                                           classes: k, targetAccuracy: targetAccuracy, alpha: 1 - coverage)
            }
        }
        var parts = try FittedParts(chosen, context: context, foldModels: foldModels, colourCopies: colourCopies, asked: self.method)
        var model = SavedModel(
            classNames: ds.classNames, backbones: parts.spec.backbones, levels: parts.spec.levels.map(\.description), views: parts.spec.views,
            crops: parts.spec.crops, preprocessing: ds.preprocessing.spec, head: parts.head, regularisation: parts.c, mlp: parts.mlp,
            networks: parts.networks, method: chosen.name, trainedOn: ds.root.path, dataHash: datasetHash(ds), trainingImages: ds.items.count,
            innerCVBalancedAccuracy: cvScore, created: ISO8601DateFormatter().string(from: Date()), petriVersion: PetriVersion.string)
        model.spec = self.method.description
        model.triage = triage
        model.partnerHeads = parts.partners
        model.trainedBackbones = SavedModel.trainedBackboneIdentities(parts.spec.backbones + (parts.partners ?? []).flatMap(\.backbones))
        let reference = l2NormalizedRows(try SavedModel.scaleReferenceSpec.matrix(bank))
        model.scaleReference = SavedModel.FeatureStatistics(reference)
        let decoder = ImageDecoder()
        var looks: [ImageStatistics] = [], colours: [(mean: [Float], std: [Float])] = []
        for item in ds.items {
            guard let image = try? ds.preparedImage(of: item, decoder: decoder) else { continue }
            looks.append(ImageStatistics(image))
            colours.append(ReinhardNormalization.statistics(image))
        }
        model.familiarity = SavedModel.Familiarity(reference, images: looks)
        if !colours.isEmpty {
            let target = ReinhardNormalization.fit(statistics: colours)
            model.colourReference = SavedModel.FeatureStatistics(mean: target.targetMean, std: target.targetStd)
        }
        parts.images = ds.items.count
        parts.classes = ds.classNames.count
        return (model, summary(model, parts: parts, auto: method is AutoMethod))
    }

    func summary(_ model: SavedModel, parts: FittedParts, auto: Bool) -> [String] {
        let detail = parts.c.map { ", C = \($0)" }
            ?? (parts.networks.map { $0.count > 1 ? ", \(parts.mlp != nil ? "with an " : "")ensemble of \($0.count) cross-validation models" : "" } ?? "")
        var lines = ["recipe: \(model.method)\(detail), \(parts.images) images, \(parts.classes) classes"]
        if colourCopies > 0 {
            lines.append(parts.mlp != nil ? "the MLP head also trained on \(colourCopies) colour-shifted copies of each image"
                                          : "--colour-copies ignored: the recipe has no MLP head (its networks train with colour augmentation already)")
        }
        if let s = model.innerCVBalancedAccuracy { lines.append(String(format: "3-fold cross-validated balanced accuracy of this recipe: %.3f", s)) }
        if let t = model.triage {
            let accept = t.acceptThreshold.map {
                String(format: "predictions with confidence ≥ %.3f are marked 'accept' (out of fold: %.0f%% of images, right ≥ %.0f%% of the time); the rest 'review'", $0, t.acceptedFraction * 100, t.targetAccuracy * 100)
            } ?? String(format: "no confidence level reached %.0f%% accuracy out of fold: every prediction is marked 'review'", t.targetAccuracy * 100)
            lines.append(String(format: "calibration (out-of-fold predictions of %d images): temperature %.2f; ", t.calibrationImages, t.temperature) + accept)
            lines.append(t.conformalThreshold == nil
                         ? String(format: "prediction sets: too few images for %.0f%% coverage; every set holds every class", (1 - t.alpha) * 100)
                         : String(format: "prediction sets aim to hold the true class for %.0f%% of images", (1 - t.alpha) * 100))
        } else if auto {
            lines.append("no calibration saved: inner cross-validation needs at least \(AutoMethod(candidates: []).blendBelow) images per class; predictions carry no accept/review mark")
        }
        return lines
    }
}

/// The fitted members of a chosen method as a model file holds them: a logistic head, an MLP family (with its
/// partner heads) and networks. A blend saves each member; `SavedModel.probabilities` averages them.
struct FittedParts {
    var spec = FeatureSpec(backbones: [], levels: [], views: 1, crops: [1])
    var head: LogisticRegression.Fitted?
    var c: Double?
    var mlp: SavedModel.MLP?
    var partners: [SavedModel.PartnerHead]?
    var networks: [SavedModel.Network]?
    var images = 0, classes = 0

    init(_ chosen: any FewShotMethod, context: MethodContext, foldModels: [String: [any FittedClassifier]], colourCopies: Int,
         asked: MethodSpec) throws {
        let all = Array(context.dataset.items.indices)
        let members = (chosen as? EnsembleMethod).map(\.members) ?? [chosen]
        for member in members {
            switch member {
            case let lp as LinearProbeMethod where members.count == 1:
                spec = lp.features
                let fitted = lp.probe.fit(try spec.matrix(context.bank), labels: context.labels, classes: context.classes, seed: context.seed)
                head = fitted.regression
                c = fitted.c
            case var m as MLPMethod where mlp == nil:
                spec = m.features
                if colourCopies > 0 { m.colourCopies = colourCopies }
                mlp = SavedModel.MLP(try m.member(0).fitHead(train: all, context: context))
                if !m.partners.isEmpty {
                    partners = try m.partners.indices.map { i in
                        SavedModel.PartnerHead(features: m.partners[i], mlp: SavedModel.MLP(try m.member(i + 1).fitHead(train: all, context: context)))
                    }
                }
            case let s as ScratchMethod where networks == nil:
                let models = try foldModels[s.name] ?? [s.fit(train: all, context: context)]
                networks = models.compactMap { ($0 as? FittedNetwork).map(SavedModel.Network.init) }
            default:
                throw StudyError.invalidSetting("--method", "\(asked) (\(chosen.name)) cannot be saved; use auto, an lp or mlp variant, or scratch")
            }
        }
    }
}

extension SavedModel {
    /// A model fitted as `training` says (the study layer's `petri train`).
    public init(fitting training: ModelTraining, reporter: StudyReporter) throws {
        self = try training.run(reporter: reporter).model
    }
}
