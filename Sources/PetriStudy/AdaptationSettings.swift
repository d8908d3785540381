import Foundation
import PetriData
import PetriEngine
import PetriLearn

/// How `evaluate` and `predict` adapt a saved model to images from another lab, from those images alone (no
/// labels): their magnification (`images`), the frozen-feature heads (`heads`, SHOT-style) and the networks'
/// batch-norm statistics (`norm`, AdaBN). Both model adaptations are transductive: they use the images predicted.
public struct AdaptationSettings: Sendable {
    public enum Images: Sendable {
        case none
        /// The central crop or zoom-out at which the images look most like the training images; the model is
        /// left as it is unless `--adapt-heads` / `--adapt-norm` ask.
        case scale
        /// `scale`, each scale also tried with the images' colour matched to the training images' (`colourMatch`).
        case scaleColour
        /// `scale`, then the heads and batch norms adapted too when nearly all images are still unlike every
        /// training image (`modelAdaptationShare`); familiar images keep the model as trained, and its marks.
        case auto
        /// `auto` with the colour tried as in `scaleColour`. Not the default: chosen by the same feature distance
        /// the colour match made things worse on most cross-lab pairs measured (docs/results.md, "Another lab's
        /// images").
        case autoColour
        case steps(TransformPipeline)

        /// The `--adapt` text it is read from.
        public var spec: String {
            switch self {
            case .none: "none"
            case .scale: "scale"
            case .scaleColour: "scale-colour"
            case .auto: "auto"
            case .autoColour: "auto-colour"
            case let .steps(p): p.spec
            }
        }

        /// Whether the heads and batch norms are adapted by the share of unfamiliar images.
        public var decidesModelAdaptation: Bool {
            switch self { case .auto, .autoColour: true; default: false }
        }
    }

    /// The share of images unlike every training image (after the image steps) from which `auto` adapts the
    /// model itself: "nearly all". Below it enough of the folder looks like the training images that the model's
    /// own predictions are the better guide, and learning from the folder's predictions as a whole can collapse.
    public static let modelAdaptationShare = 0.9

    public var images = Images.none
    public var heads = false
    public var norm = false
    public var steps = 60
    /// Weights of head adaptation's diversity and pseudo-label terms (nil: `MLPHead.Adaptation`'s defaults).
    public var diversity: Float?
    public var pseudoLabels: Float?
    /// The class mix both model adaptations assume: even, or estimated from the model's predictions.
    public var classMix = MLPHead.Adaptation.ClassMix.even

    public init() {}

    /// `adapt`: `none`, `scale`, `scale-colour`, `auto`, `auto-colour` or a pipeline spec such as `centercrop(fraction=0.5)`.
    public init(adapt: String, heads: Bool = false, norm: Bool = false, steps: Int = 60, diversity: Float? = nil,
                pseudoLabels: Float? = nil, classMix: String = "even") throws {
        guard let mix = MLPHead.Adaptation.ClassMix(rawValue: classMix) else {
            throw StudyError.invalidSetting("--adapt-class-mix", "'\(classMix)' (even or estimated)")
        }
        self.classMix = mix
        switch adapt {
        case "none": images = .none
        case "scale": images = .scale
        case "scale-colour", "scale-color": images = .scaleColour
        case "auto": images = .auto
        case "auto-colour", "auto-color": images = .autoColour
        default:
            do { images = .steps(try TransformPipeline.parse(adapt)) } catch { throw StudyError.invalidSetting("--adapt", "\(error)") }
        }
        guard steps > 0 else { throw StudyError.invalidSetting("--adapt-steps", "must be positive") }
        for (name, v) in [("--adapt-diversity", diversity), ("--adapt-pseudo-labels", pseudoLabels)] {
            if let v, !(v >= 0 && v.isFinite) { throw StudyError.invalidSetting(name, "must be a non-negative number") }
        }
        self.heads = heads
        self.norm = norm
        self.steps = steps
        self.diversity = diversity
        self.pseudoLabels = pseudoLabels
    }

    /// The head adaptation asked for, with warnings where it cannot apply or its assumptions look broken
    /// (`labelled`: the images carry labels, so their class mix can be checked).
    public func headAdaptation(_ model: SavedModel, _ dataset: Dataset, labelled: Bool, reporter: StudyReporter) -> MLPHead.Adaptation? {
        if norm, model.networks == nil {
            reporter.warning("--adapt-norm: this model has no network trained from scratch (\(model.kind)); nothing is adapted (--adapt-heads adapts MLP heads)")
        }
        if heads || norm, labelled, classMix == .even { checkClassMix(model, dataset, flag: heads ? "--adapt-heads" : "--adapt-norm", reporter: reporter) }
        guard heads else { return nil }
        if model.mlp == nil { reporter.warning("--adapt-heads: this model has no frozen-feature MLP head (\(model.kind)); nothing is adapted") }
        if model.networks != nil, model.mlp != nil, !norm { reporter.warning("--adapt-heads adapts the MLP heads only, not the model's networks (--adapt-norm adapts those)") }
        if dataset.items.count < 50 { reporter.warning("--adapt-heads learns from the new images' predictions as a whole; \(dataset.items.count) image(s) are few for that (50 or more)") }
        var a = MLPHead.Adaptation()
        a.steps = steps
        if let diversity { a.diversity = diversity }
        if let pseudoLabels { a.pseudoLabelWeight = pseudoLabels }
        a.classMix = classMix
        return a
    }

    /// Both adaptations assume the images hold all of the model's classes in a not too uneven mix.
    func checkClassMix(_ model: SavedModel, _ dataset: Dataset, flag: String, reporter: StudyReporter) {
        var counts: [Int: Int] = [:]
        for item in dataset.items { counts[item.label, default: 0] += 1 }
        if counts.count < model.classNames.count {
            reporter.warning("\(flag) assumes the images hold all of the model's \(model.classNames.count) classes; these hold \(counts.count) (with classes absent it can make things worse)")
        } else if let most = counts.values.max(), let least = counts.values.min(), most > 3 * least {
            reporter.warning("\(flag) assumes a not too uneven class mix; these images range from \(least) to \(most) per class (on a skewed mix it can cost balanced accuracy; --adapt-class-mix estimated estimates the mix instead)")
        }
    }

    /// The image steps: the spec's, or for the searches (`scale`, `auto`, ...) those found from the images (reported
    /// as a note).
    public func imageSteps(_ model: SavedModel, _ dataset: Dataset, file: String, reporter: StudyReporter) throws -> TransformPipeline {
        let colour: Bool
        switch images {
        case .none: return TransformPipeline()
        case let .steps(p): return p
        case .scale, .auto: colour = false
        case .scaleColour, .autoColour: colour = true
        }
        let flag = images.spec
        if dataset.items.count < 20 {
            reporter.warning("--adapt \(flag) compares the images' average look with the training images'; \(dataset.items.count) image(s) are too few for that to be reliable (20 or more)")
        }
        if colour, model.colourMatch == nil {
            reporter.warning("--adapt \(flag): the model file has no record of the training images' colour (train it again with this Petri to have their colour matched too); searching the scale only")
        }
        let distances = try model.adaptationDistances(dataset, colour: colour, file: file) { reporter.progress("adaptation: " + $0, $1, $2) }
        let best = distances[0].adaptation
        let steps = model.steps(best)
        let at = { (c: Bool) in
            distances.filter { $0.adaptation.colour == c }.sorted { $0.adaptation.scale > $1.adaptation.scale }
                .map { String(format: "%g: %.2f", $0.adaptation.scale, $0.distance) }.joined(separator: ", ")
        }
        reporter.note("adaptation: the images look most like the training images "
                      + (steps.isEmpty ? "as they are" : "after " + steps.map { $0 is ReinhardNormalization ? "their colour matched to the training images'" : $0.spec }.joined(separator: ", "))
                      + " (feature distance at each scale, < 1 a central crop, > 1 shrunk: " + at(false)
                      + (distances.contains { $0.adaptation.colour } ? "; colour matched: " + at(true) : "") + ")")
        return TransformPipeline(steps)
    }

    /// What was done to a model for a folder of images, and its probabilities for them.
    public struct Adapted {
        public var probabilities: Tensor
        public var steps: TransformPipeline
        /// One flag per image: like some training image (nil: the model file has no reference).
        public var familiar: [Bool]?
        public var heads: Bool
        public var norm: Bool
        /// Whether the model itself was changed (its heads or batch norms), so that the calibration fitted on the
        /// training images no longer describes it: its predictions are then never marked `accept`.
        public var changesTheModel: Bool { heads || norm }
        /// "heads", "batch norms", "heads and batch norms" or "".
        public var modelParts: String {
            [heads ? "heads" : nil, norm ? "batch norms" : nil].compactMap { $0 }.joined(separator: " and ")
        }
    }

    /// The model's probabilities for `dataset`, adapted as asked: the image steps, the familiarity of each image
    /// after them, then — asked for, or for `auto` when nearly all images are unfamiliar — the model's heads and
    /// batch norms.
    public func apply(_ model: SavedModel, _ dataset: Dataset, labelled: Bool, file: String, reporter: StudyReporter) throws -> Adapted {
        let steps = try imageSteps(model, dataset, file: file, reporter: reporter)
        let decides = images.decidesModelAdaptation && !heads && !norm
        let tries: [String]
        switch images {
        case .none where !heads && !norm: tries = ["--adapt auto (another magnification, and the model adapted to them)"]
        case .scale, .scaleColour, .steps: tries = heads || norm ? [] : ["--adapt-heads / --adapt-norm"]
        default: tries = []
        }
        let familiar = try FamiliarityCheck.flags(model, dataset, adaptation: steps, file: file, reporter: reporter, tries: tries)
        var settings = self
        if decides { settings.decideModelAdaptation(model, familiar: familiar, reporter: reporter) }
        let p = try model.probabilities(dataset, adaptation: steps,
                                        headAdaptation: settings.headAdaptation(model, dataset, labelled: labelled, reporter: reporter),
                                        adaptNetworkNormalisation: settings.norm, classMix: classMix, file: file, progress: reporter.progressCallback)
        return Adapted(probabilities: p, steps: steps, familiar: familiar, heads: settings.heads && model.mlp != nil,
                       norm: settings.norm && model.networks != nil)
    }

    /// `auto`'s rule: adapt whatever the model has of heads and trained networks when at least
    /// `modelAdaptationShare` of the images are unlike every training image; otherwise leave the model as it is.
    mutating func decideModelAdaptation(_ model: SavedModel, familiar: [Bool]?, reporter: StudyReporter) {
        guard model.mlp != nil || model.networks != nil else { return }
        let flag = images.spec
        guard let familiar, !familiar.isEmpty else {
            reporter.note("--adapt \(flag): the model file has no record of its training images' look, so the model is left as it is (--adapt-heads / --adapt-norm adapt it)")
            return
        }
        let share = Double(familiar.filter { !$0 }.count) / Double(familiar.count)
        let adapt = share >= Self.modelAdaptationShare
        heads = adapt && model.mlp != nil
        norm = adapt && model.networks != nil
        let parts = [heads ? "heads" : nil, norm ? "batch norms" : nil].compactMap { $0 }.joined(separator: " and ")
        reporter.note(String(format: "adaptation: %.0f%% of the images are unlike every training image", 100 * share)
                      + (adapt ? ", so the model's \(parts) are adapted to them (--adapt scale leaves the model as it is)"
                               : String(format: " (the model is adapted from %.0f%%), so the model is left as it is", 100 * Self.modelAdaptationShare)))
    }
}
