import ArgumentParser
import Foundation
import PetriLearn
import PetriStudy

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classifier on all of a dataset and save it as a model file.",
        discussion: """
            With --method auto (the default) the recipe is chosen exactly as `petri curve --method auto` \
            evaluates it: the image scale, then MLP heads on ImageNet and CellNet features, a small CNN from \
            scratch or their blend, by 3-fold cross-validation on the data (`auto:cellnet=none`: ImageNet \
            features only). Probes are refitted on all of it; a network winner is saved as the ensemble of its \
            three cross-validation models (what `curve` scores). The model file holds the method asked for, the \
            recipe chosen, the fitted weights and the class names. For an honest estimate of accuracy on new \
            images, run `petri study` or `petri curve`.

            With auto and at least 10 images per class, the cross-validation's out-of-fold predictions also \
            calibrate the model: a temperature for its probabilities, the confidence from which `predict` \
            marks a prediction 'accept' (--target-accuracy) and a conformal threshold for prediction sets \
            (--coverage). They hold for images like the training images, not for a new lab or scanner.

            Examples:
              petri train Samples/bccd-wbc-mini --out wbc.petri
              petri train Samples/bccd-wbc-mini --method lp-multi --out wbc-lp.petri
              petri predict wbc.petri new-images/ --out predictions.csv
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Output model file.")
    var out: String

    @Option(help: "auto (auto:cellnet=NAME|none), auto-fast, an lp or mlp variant, or a scratch net (scratch, scratch-mini, scratch-small).")
    var method = "auto"

    @Option(help: "Backbone of single-backbone recipes.")
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

    func training() throws -> ModelTraining {
        var t = ModelTraining(dataset: try dataset.policy())
        let specs = try Arguments.methods(method, backbone: backbone)
        guard specs.count == 1 else { throw ValidationError("--method: one method, not \(specs.count)") }
        t.method = specs[0]
        t.seed = seed
        t.targetAccuracy = targetAccuracy
        t.coverage = coverage
        t.colourCopies = colourCopies
        try studyCall { try t.validate() }
        return t
    }

    func validate() throws { _ = try training() }

    func run() throws {
        let (model, summary) = try studyCall { try training().run(reporter: TerminalReporter(quiet: quiet)) }
        try model.write(to: URL(fileURLWithPath: out))
        print("model: \(out)")
        summary.forEach { print($0) }
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
            most probable first), then — when the model keeps its training images' look — familiar ('no': \
            unlike every training image, so marked 'review'), then one probability per class.

            Examples:
              petri predict wbc.petri new-images/ --out predictions.csv
              petri predict wbc.petri other-lab/ --adapt auto --out predictions.csv
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
        var prediction = Prediction(model: model, inputs: inputs)
        prediction.adaptation = try adaptation.settings()
        let reporter = TerminalReporter(quiet: quiet)
        let (csv, images) = try studyCall { try prediction.run(reporter: reporter) }
        guard let out else { return print(csv, terminator: "") }
        try write(csv, to: out)
        reporter.note("wrote \(out) (\(images) images)")
    }
}

struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Score a saved model on a labelled dataset — e.g. another lab's images of the same classes.",
        discussion: """
            The dataset's class names are matched to the model's by name (case-insensitive); images of classes \
            the model does not know are left out with a warning. Prints balanced accuracy over the classes \
            present, accuracy, macro-F1, per-class recall and the confusion matrix, and — when the model was \
            calibrated by `petri train` — how its accept/review marks and prediction sets held up: out-of-fold \
            calibration assumes images like the training images, and a new lab, stain or scanner is where it \
            breaks. Never train and evaluate on the same images: the figure would mean nothing.

            Examples:
              petri train my-lab/ --out my-lab.petri
              petri evaluate my-lab.petri other-lab/ --max-per-class 100
              petri evaluate my-lab.petri other-lab/ --adapt auto
            The last finds the new images' magnification and, when nearly all of them still look unlike every \
            training image, adapts the model to them as well (no labels used; that assumes a roughly even class \
            mix). `--adapt scale` leaves the model alone; `--adapt-heads` / `--adapt-norm` adapt it whatever the \
            images look like.
            """)

    @Argument(help: "Model file written by `petri train`.")
    var model: String

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Also write the per-image predictions as CSV (path, label, predicted, confidence, triage, set).")
    var out: String?

    @OptionGroup(title: "Adapting to another lab's images") var adaptation: AdaptationOptions

    @Flag(help: "No progress output.")
    var quiet = false

    func run() throws {
        var evaluation = Evaluation(model: model, dataset: try dataset.policy())
        evaluation.adaptation = try adaptation.settings()
        let reporter = TerminalReporter(quiet: quiet)
        let (lines, csv) = try studyCall { try evaluation.run(reporter: reporter) }
        lines.forEach { print($0) }
        if let out {
            try write(csv, to: out)
            reporter.note("wrote \(out)")
        }
    }
}
