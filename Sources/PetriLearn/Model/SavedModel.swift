import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriNN

/// A trained classifier as a versioned file: the frozen-feature recipe (backbones, levels, views,
/// preprocessing), the fitted head, and the class names — everything `predict` needs, nothing it must guess.
///
/// Version 2 adds the other heads `auto` can choose: an MLP on the same frozen features (`mlp`), or small
/// CNNs trained from scratch (`networks`, several when `auto` kept its inner-fold models as an ensemble).
/// Version-1 files (logistic head only) still read.
public struct SavedModel: Codable, Sendable {
    public static let formatName = "petri-model"
    public static let currentVersion = 2

    /// A small CNN's configuration name and every named parameter (including BatchNorm running statistics).
    public struct Network: Codable, Sendable {
        public var net: String
        public var classes: Int
        public var views: Int
        /// Central crop before the resize (absent before crops were possible: the whole image).
        public var crop: Double?
        public var parameters: [String: [Float]]
        public var shapes: [String: [Int]]

        public init(_ fitted: FittedNetwork) {
            net = fitted.model.config.name
            classes = fitted.model.classifier.weight.value.shape[0]
            views = fitted.views
            crop = fitted.crop < 1 ? fitted.crop : nil
            var p: [String: [Float]] = [:], sh: [String: [Int]] = [:]
            for (name, param) in fitted.model.namedParameters {
                p[name] = param.value.scalars
                sh[name] = param.value.shape
            }
            parameters = p
            shapes = sh
        }

        public func restored(file: String) throws -> FittedNetwork {
            guard let config = SmallCNNConfig.named(net) else {
                throw DatasetError.malformed(file, reason: "unknown network '\(net)'")
            }
            var rng = SeededGenerator(seed: 0)
            let model = SmallCNN(config, classes: classes, rng: &rng)
            for (name, param) in model.namedParameters {
                guard let values = parameters[name], shapes[name] == param.value.shape, values.count == param.value.count else {
                    throw DatasetError.malformed(file, reason: "network parameter '\(name)' is missing or has the wrong shape")
                }
                param.value = Tensor(shape: param.value.shape, data: values)
            }
            return FittedNetwork(model: model, views: views, crop: crop ?? 1)
        }
    }

    /// The MLP head's weights (`MLPHead.Fitted`) as flat arrays.
    public struct MLP: Codable, Sendable {
        public var w1: [Float], b1: [Float], w2: [Float], b2: [Float]
        public var hidden: Int, features: Int, classes: Int

        public init(_ f: MLPHead.Fitted) {
            w1 = f.w1.scalars; b1 = f.b1.scalars; w2 = f.w2.scalars; b2 = f.b2.scalars
            hidden = f.w1.shape[0]; features = f.w1.shape[1]; classes = f.w2.shape[0]
        }

        public var fitted: MLPHead.Fitted {
            MLPHead.Fitted(w1: Tensor(shape: [hidden, features], data: w1), b1: Tensor(shape: [hidden], data: b1),
                           w2: Tensor(shape: [classes, hidden], data: w2), b2: Tensor(shape: [classes], data: b2))
        }
    }

    /// An MLP head on another feature set (`MLPMethod.partners`), averaged with the main MLP's probabilities.
    public struct PartnerHead: Codable, Sendable {
        public var backbones: [String]
        public var levels: [String]
        public var views: Int
        public var crops: [Double]
        public var mlp: MLP

        public init(features: FeatureSpec, mlp: MLP) {
            backbones = features.backbones; levels = features.levels.map(\.description); views = features.views
            crops = features.crops; self.mlp = mlp
        }

        public var featureSpec: FeatureSpec {
            FeatureSpec(backbones: backbones, levels: levels.compactMap(FeatureLevel.init), views: views, crops: crops)
        }
    }

    /// Per-dimension mean and standard deviation of frozen features.
    public struct FeatureStatistics: Codable, Sendable {
        public var mean: [Float]
        public var std: [Float]

        public init(_ x: Tensor) {
            let (m, s) = columnMoments(x)
            mean = m; std = s
        }

        public init(mean: [Float], std: [Float]) {
            self.mean = mean
            self.std = std
        }
    }

    /// How far to trust a prediction, fitted on out-of-fold predictions of the training images (each predicted
    /// by an inner cross-validation model that never saw it, as `auto` already computes them): a temperature
    /// for the probabilities, the confidence from which a prediction is accepted without review, and a
    /// split-conformal score threshold for prediction sets. The final model is refitted on every training image
    /// (or is the fold models' average), so these are close to, not exactly, its own calibration — cross-fitted
    /// estimates of the kind the report checks on test images.
    public struct Triage: Codable, Sendable {
        public var temperature: Double
        /// Predictions whose (tempered) confidence reaches `acceptThreshold` were right at least this often
        /// out of fold; nil threshold: no confidence level did, so every prediction needs review.
        public var targetAccuracy: Double
        public var acceptThreshold: Double?
        /// Share of the training images the threshold accepted out of fold.
        public var acceptedFraction: Double
        /// Conformal sets aim to hold the true class for a share 1 − α of images; nil threshold: too few
        /// calibration images for that α (the set is every class).
        public var alpha: Double
        public var conformalThreshold: Double?
        public var calibrationImages: Int
        public var outOfFoldBalancedAccuracy: Double

        public init(labels: [Int], probabilities: [[Double]], classes: Int, targetAccuracy: Double = 0.95, alpha: Double = 0.1) {
            temperature = Calibration.fitTemperature(labels: labels, probabilities: probabilities)
            let tempered = Calibration.tempered(probabilities, temperature: temperature)
            self.targetAccuracy = targetAccuracy
            acceptThreshold = SelectiveClassification.threshold(forAccuracy: targetAccuracy, labels: labels, probabilities: tempered)
            let confidences = tempered.map { $0.max() ?? 0 }
            acceptedFraction = acceptThreshold.map { t in Double(confidences.filter { $0 >= t }.count) / Double(max(1, labels.count)) } ?? 0
            self.alpha = alpha
            conformalThreshold = ConformalPrediction.threshold(labels: labels, probabilities: tempered, alpha: alpha)
            calibrationImages = labels.count
            let predictions = tempered.map { p in p.indices.max { p[$0] < p[$1] } ?? 0 }
            outOfFoldBalancedAccuracy = Metrics.balancedAccuracy(labels: labels, predictions: predictions, classes: classes)
        }

        /// The tempered probabilities of one image, whether it is accepted without review, and its prediction
        /// set (most probable class first).
        public func apply(_ probabilities: [Double]) -> (probabilities: [Double], accepted: Bool, set: [Int]) {
            let p = Calibration.tempered([probabilities], temperature: temperature)[0]
            let accepted = acceptThreshold.map { (p.max() ?? 0) >= $0 } ?? false
            return (p, accepted, ConformalPrediction.predictionSet(p, threshold: conformalThreshold))
        }
    }

    public var format = SavedModel.formatName
    public var version = SavedModel.currentVersion
    public var classNames: [String]
    public var backbones: [String]
    public var levels: [String]
    public var views: Int
    /// Central-crop fractions whose features are concatenated (absent in files before crops: the whole image).
    public var crops: [Double]?
    public var preprocessing: String
    /// The logistic-regression head on frozen features (nil when the model is an MLP or networks).
    public var head: LogisticRegression.Fitted?
    public var regularisation: Double?
    public var mlp: MLP?
    /// Heads on other feature sets (a CellNet's) whose probabilities are averaged with `mlp`'s (absent: none).
    public var partnerHeads: [PartnerHead]?
    /// Identity (`BackboneEntry.identity`) of every trained backbone (CellNet) the heads read, by name: a
    /// backbone file replaced since training gives other features, so `probabilities` refuses it.
    public var trainedBackbones: [String: String]?
    public var networks: [Network]?
    /// Calibration and triage rules (absent when training had too few images for inner cross-validation).
    public var triage: Triage?
    /// Single-view ImageNet Lite0 features of the training images (`scaleReferenceSpec`), whatever the
    /// recipe: how the training images look, for finding another lab's magnification (`scaleDistances`).
    public var scaleReference: FeatureStatistics?

    /// What the training images look like, for telling unfamiliar images apart (absent in older files).
    public var familiarity: Familiarity?
    /// The training images' mean lαβ colour statistics (`ReinhardNormalization.fit`, as the model sees them):
    /// the target `--adapt auto` can bring another lab's stain to (absent in older files).
    public var colourReference: FeatureStatistics?
    /// Another lab's images with their colour matched to the training images' (nil: no `colourReference`).
    public var colourMatch: ReinhardNormalization? {
        colourReference.map { ReinhardNormalization(targetMean: $0.mean, targetStd: $0.std) }
    }

    /// The features `scaleReference` and `familiarity` hold.
    public static let scaleReferenceSpec = FeatureSpec(backbones: ["efficientnet-lite0"], levels: [.head], views: 1)
    /// The identities of the trained backbones among `backbones` and the partner heads' (for `trainedBackbones`).
    public static func trainedBackboneIdentities(_ names: [String]) -> [String: String]? {
        var out: [String: String] = [:]
        for n in Set(names) { if let id = (try? ModelRegistry.entry(n))?.identity { out[n] = id } }
        return out.isEmpty ? nil : out
    }

    /// Provenance: how and on what it was trained. `spec`: the method asked for (a `MethodSpec`'s text; absent in
    /// files before specs); `method`: the recipe it chose and fitted, as a label.
    public var spec: String?
    public var method: String
    public var trainedOn: String
    public var dataHash: String
    public var trainingImages: Int
    public var innerCVBalancedAccuracy: Double?
    public var created: String
    public var petriVersion: String

    public init(classNames: [String], backbones: [String], levels: [String], views: Int, crops: [Double], preprocessing: String,
                head: LogisticRegression.Fitted?, regularisation: Double?, mlp: MLP? = nil, networks: [Network]? = nil,
                method: String, trainedOn: String,
                dataHash: String, trainingImages: Int, innerCVBalancedAccuracy: Double?, created: String,
                petriVersion: String) {
        self.classNames = classNames; self.backbones = backbones; self.levels = levels; self.views = views; self.crops = crops
        self.preprocessing = preprocessing; self.head = head; self.regularisation = regularisation
        self.mlp = mlp; self.networks = networks
        self.method = method; self.trainedOn = trainedOn; self.dataHash = dataHash
        self.trainingImages = trainingImages; self.innerCVBalancedAccuracy = innerCVBalancedAccuracy
        self.created = created; self.petriVersion = petriVersion
    }

    public var featureSpec: FeatureSpec {
        FeatureSpec(backbones: backbones, levels: levels.compactMap(FeatureLevel.init), views: views, crops: crops ?? [1])
    }

    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(self).write(to: url, options: .atomic)
    }

    public static func read(_ url: URL) throws -> SavedModel {
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= 2 << 30 else { throw DatasetError.malformed(url.path, reason: "\(size) bytes, larger than a model file can be") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DatasetError.malformed(url.path, reason: "cannot read the model file")
        }
        struct Header: Codable { var format: String?; var version: Int? }
        guard let header = try? JSONDecoder().decode(Header.self, from: data), header.format == formatName else {
            throw DatasetError.malformed(url.path, reason: "not a Petri model file")
        }
        guard let v = header.version, v >= 1, v <= currentVersion else {
            throw DatasetError.malformed(url.path, reason: "model format version \(header.version ?? 0) is newer than this Petri understands (\(currentVersion)); upgrade Petri")
        }
        let model: SavedModel
        do { model = try JSONDecoder().decode(SavedModel.self, from: data) } catch {
            throw DatasetError.malformed(url.path, reason: "damaged model file: \(error)")
        }
        do { try model.validate() } catch let p as SavedModelProblem {
            throw DatasetError.malformed(url.path, reason: "inconsistent model file: \(p.message)")
        }
        return model
    }

    /// What kind of classifier the file holds: `logistic`, `mlp`, `networks` or `mlp+networks` (a blend).
    public var kind: String {
        switch (mlp != nil, networks != nil) {
        case (true, true): "mlp+networks"
        case (false, true): "networks"
        case (true, false): "mlp"
        default: "logistic"
        }
    }

    /// Class probabilities `[items, classes]` for the items of `dataset`; `file` names the model in errors.
    /// A blend (an MLP and networks) averages the members' probabilities, every model one vote (MLP heads and networks).
    ///
    /// The images get exactly the preprocessing the model was trained with, whatever `dataset` carries,
    /// after `adaptation`: steps that bring images of another lab closer to the training images (a central
    /// crop for another magnification). `headAdaptation` adapts the MLP heads and `adaptNetworkNormalisation`
    /// the networks' batch norms to these images (no labels); `classMix` says whether AdaBN assumes an even
    /// class mix or weighs the images by an estimate of theirs.
    public func probabilities(_ dataset: Dataset, adaptation: TransformPipeline = TransformPipeline(),
                              headAdaptation: MLPHead.Adaptation? = nil, adaptNetworkNormalisation: Bool = false,
                              classMix: MLPHead.Adaptation.ClassMix = .even,
                              file: String = "model",
                              progress: ((String, Int, Int) -> Void)? = nil) throws -> Tensor {
        var dataset = dataset
        do { dataset.preprocessing = TransformPipeline(adaptation.steps + (try TransformPipeline.parse(preprocessing)).steps) } catch {
            throw DatasetError.malformed(file, reason: "unknown preprocessing '\(preprocessing)': \(error)")
        }
        let bank = FeatureBank(dataset: dataset)
        bank.progress = progress
        var members: [Tensor] = []
        var weights: [Float] = []
        if let networks {
            guard !networks.isEmpty else { throw DatasetError.malformed(file, reason: "no networks in the model file") }
            var context = MethodContext(dataset: dataset, bank: bank, seed: 0)
            context.progress = progress
            var sum = Tensor(zeros: [dataset.items.count, classNames.count])
            let all = Array(dataset.items.indices)
            for (i, n) in networks.enumerated() {
                progress?("networks", i, networks.count)
                var network = try n.restored(file: file)
                if adaptNetworkNormalisation {
                    try network.adaptNormalisation(to: all, context: context)
                    if classMix == .estimated {
                        // Batch statistics follow the class mix; the network was trained on even batches. So once
                        // more, each image weighted to count its (estimated, adapted) class evenly.
                        let p = try network.probabilities(all, context: context), k = p.shape[1]
                        let (prior, q) = ClassPrior.estimate((0..<all.count).map { r in (0..<k).map { Double(p[flat: r * k + $0]) } })
                        let weights = q.map { row in Float((0..<k).map { row[$0] / (Double(k) * max(prior[$0], 1e-6)) }.reduce(0, +)) }
                        network = try n.restored(file: file)
                        try network.adaptNormalisation(to: all, context: context, weights: weights)
                    }
                }
                sum.add(try network.probabilities(all, context: context))
            }
            progress?("networks", networks.count, networks.count)
            members.append(sum.scaled(by: 1 / Float(networks.count)))
            weights.append(1)
        }
        // Every backbone the heads read must be known here (`validate()` cannot know a trained one missing from
        // this machine), and a trained one must be the file the heads were trained on.
        let read = mlp != nil || head != nil ? Set(backbones + (partnerHeads ?? []).flatMap(\.backbones)) : []
        for name in read.union((trainedBackbones ?? [:]).keys) {
            let entry: BackboneEntry
            do { entry = try ModelRegistry.entry(name.hasPrefix("random:") ? String(name.dropFirst(7)) : name) } catch {
                throw DatasetError.malformed(file, reason: "it needs backbone '\(name)': \(error)")
            }
            if let identity = trainedBackbones?[name], entry.identity != identity {
                throw DatasetError.malformed(file, reason: "it was trained with backbone '\(name)' of \(identity), but the weights folder holds '\(name)' of \(entry.identity ?? "unknown"): put the original back (make setup for Petri's CellNet) or train the model again")
            }
        }
        if mlp != nil || head != nil {
            let partners = partnerHeads ?? []
            bank.plan([featureSpec] + partners.map(\.featureSpec))
            let x = try featureSpec.matrix(bank)
            if let mlp {
                // The frozen-feature family: the main head and its partners, averaged (one member of a blend).
                // With `headAdaptation`, each head is first adapted to these images' features (no labels).
                let predict = { (head: MLPHead.Fitted, x: Tensor) in
                    (headAdaptation.map { $0.adapt(head, to: x) } ?? head).probabilities(x)
                }
                var p = predict(mlp.fitted, x)
                for partner in partners {
                    let xp = try partner.featureSpec.matrix(bank)
                    guard xp.shape[1] == partner.mlp.features else {
                        throw DatasetError.malformed(file, reason: "partner head on \(partner.backbones.joined(separator: "+")) expects \(partner.mlp.features) features, the backbone gives \(xp.shape[1]) (was the backbone file replaced?)")
                    }
                    p.add(predict(partner.mlp.fitted, xp))
                }
                members.append(partners.isEmpty ? p : p.scaled(by: 1 / Float(partners.count + 1)))
                // Every model one vote in a blend (`EnsembleMethod.votingBlend`): the heads against the networks.
                weights.append(Float(Set([backbones] + partners.map(\.backbones)).count))
            } else if let head {
                members.append(head.probabilities(l2NormalizedRows(x)))
                weights.append(1)
            }
        }
        guard !members.isEmpty else { throw DatasetError.malformed(file, reason: "the model file holds no classifier") }
        let total = weights.reduce(0, +)
        var out = members[0].scaled(by: weights[0] / total)
        for (m, w) in zip(members.dropFirst(), weights.dropFirst()) { out.add(m.scaled(by: w / total)) }
        return out
    }
}

/// Per-column mean and (population) standard deviation of `[N, D]`.
func columnMoments(_ x: Tensor) -> (mean: [Float], std: [Float]) {
    let n = x.shape[0], d = x.shape[1]
    var sum = [Double](repeating: 0, count: d), sq = sum
    x.withUnsafeBufferPointer { p in
        for i in 0..<n { for j in 0..<d { let v = Double(p[i * d + j]); sum[j] += v; sq[j] += v * v } }
    }
    let mean = sum.map { $0 / Double(max(n, 1)) }
    return (mean.map(Float.init), (0..<d).map { Float(max(sq[$0] / Double(max(n, 1)) - mean[$0] * mean[$0], 0).squareRoot()) })
}
