import ArgumentParser
import Foundation
import PetriData
import PetriEval
import PetriLearn

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
              petri train ../shared/datasets/bccd-wbc-crops --out bccd.petri
              petri evaluate bccd.petri other-lab/ --max-per-class 100
              petri evaluate bccd.petri other-lab/ --adapt auto --adapt-heads --adapt-norm
            The last adapts the magnification and the model to the new images (no labels used); it assumes a \
            roughly even class mix.
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
        let saved = try SavedModel.read(URL(fileURLWithPath: model))
        if dataset.preprocess != "none", (try? dataset.preprocessing().spec) != saved.preprocessing {
            printError("warning: --preprocess ignored: the model's own preprocessing ('\(saved.preprocessing)') is applied")
        }
        let data = try dataset.load(quiet: quiet)
        let (ds, unknown) = data.relabelled(as: saved.classNames)
        for c in unknown { printError("warning: class '\(c)' is not one of the model's (\(saved.classNames.joined(separator: ", "))): its images are left out") }
        let items = ds.items
        guard !items.isEmpty else { throw PetriCLIError("no image of \(data.root.path) belongs to a class the model knows") }
        let stages = StageProgress(quiet: quiet)
        let steps = try adaptation.imageSteps(saved, ds, file: model, quiet: quiet)
        let p = try saved.probabilities(ds, adaptation: steps, headAdaptation: adaptation.headAdaptation(saved, ds, labelled: true, quiet: quiet), adaptNetworkNormalisation: adaptation.adaptNorm, file: model) { stage, d, t in stages.update(stage, d, t) }
        let k = saved.classNames.count
        var rows = (0..<items.count).map { i in (0..<k).map { Double(p[flat: i * k + $0]) } }
        let labels = items.map { $0.label }
        var marks: [(accepted: Bool, set: [Int])] = []
        if let triage = saved.triage {
            for i in rows.indices {
                let t = triage.apply(rows[i])
                rows[i] = t.probabilities
                marks.append((t.accepted, t.set))
            }
        }
        let predicted = rows.map { r in r.indices.max { r[$0] < r[$1] }! }
        let confusion = Metrics.confusionMatrix(labels: labels, predictions: predicted, classes: k)
        print("model: \(model) (\(saved.method), trained on \(saved.trainingImages) images of \(saved.trainedOn))")
        print("data: \(data.root.path), \(items.count) images" + (steps.isEmpty ? "" : ", adapted by \(steps.spec)"))
        print(String(format: "balanced accuracy %.3f · accuracy %.3f · macro-F1 %.3f (chance %.3f)",
                     Metrics.balancedAccuracy(labels: labels, predictions: predicted, classes: k),
                     Metrics.accuracy(labels: labels, predictions: predicted),
                     Metrics.macroF1(labels: labels, predictions: predicted, classes: k),
                     1 / Double(Set(labels).count)))
        let width = saved.classNames.map(\.count).max() ?? 0
        print("per-class recall (row: true class; columns: predicted " + saved.classNames.joined(separator: ", ") + ")")
        for (c, recall) in Metrics.perClassRecall(confusion).enumerated() {
            guard let recall else { continue }
            print("  \(saved.classNames[c].padding(toLength: width, withPad: " ", startingAt: 0))  \(String(format: "%.3f", recall))  "
                  + confusion[c].map { String(format: "%4d", $0) }.joined(separator: " "))
        }
        if let triage = saved.triage {
            let accepted = marks.indices.filter { marks[$0].accepted }
            let right = accepted.filter { predicted[$0] == labels[$0] }.count
            let covered = marks.indices.filter { marks[$0].set.contains(labels[$0]) }.count
            print(String(format: "marked 'accept': %d of %d (%.0f%%), %.1f%% of them right (calibrated for %.0f%% on the training data)",
                         accepted.count, items.count, 100 * Double(accepted.count) / Double(items.count),
                         accepted.isEmpty ? 0 : 100 * Double(right) / Double(accepted.count), 100 * triage.targetAccuracy))
            print(String(format: "prediction sets held the true class for %.1f%% of images (aimed at %.0f%%), %.2f classes on average",
                         100 * Double(covered) / Double(items.count), 100 * (1 - triage.alpha),
                         Double(marks.reduce(0) { $0 + $1.set.count }) / Double(items.count)))
        }
        if let out {
            func field(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
            var csv = "path,label,predicted,confidence" + (marks.isEmpty ? "" : ",triage,set") + "\n"
            for (i, item) in items.enumerated() {
                var line = field(item.path) + "," + field(saved.classNames[labels[i]]) + "," + field(saved.classNames[predicted[i]])
                line += "," + String(format: "%.4f", rows[i][predicted[i]])
                if !marks.isEmpty {
                    let set: [String] = marks[i].set.map { saved.classNames[$0] }
                    line += "," + (marks[i].accepted ? "accept" : "review") + "," + field(set.joined(separator: "|"))
                }
                csv += line + "\n"
            }
            try Data(csv.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
            if !quiet { printError("wrote \(out)") }
        }
    }
}

/// How `evaluate` and `predict` adapt a saved model to images from another lab, using those images
/// only (no labels): their magnification. Measured on bccd → PBC, matching it is what helps (0.28 → 0.48
/// balanced accuracy); shifting the features' moments or the class balance to the training set's did not
/// (README, "Another lab's images").
struct AdaptationOptions: ParsableArguments {
    @Option(help: "Steps applied to the images before the model's own preprocessing: 'auto' (find the central crop or zoom-out at which they look most like the training images — another magnification), or a spec such as 'centercrop(fraction=0.5)'.")
    var adapt = "none"

    @Flag(help: "Also adapt the model's frozen-feature heads to the new images, without their labels: the hidden layer is trained to make the heads' predictions on them confident and spread over the classes (information maximisation, as in SHOT). Assumes the images cover the classes roughly evenly.")
    var adaptHeads = false

    @Flag(help: "Also adapt the model's networks trained from scratch to the new images, without their labels: each batch norm's statistics are recomputed on them (AdaBN). Assumes the images hold the model's classes in a not too uneven mix.")
    var adaptNorm = false

    @Option(help: "Steps of head adaptation (with --adapt-heads).")
    var adaptSteps = 60

    @Option(help: "Weight of the class-diversity term of head adaptation (default 0.3; 1 forces an even class mix).")
    var adaptDiversity: Float?

    @Option(help: "Weight of the pseudo-label term of head adaptation (default 0.3; 0 leaves it out).")
    var adaptPseudoLabels: Float?

    func validate() throws {
        if adapt != "auto" { _ = try pipeline() }
        guard adaptSteps > 0 else { throw ValidationError("--adapt-steps must be positive") }
        for (name, v) in [("--adapt-diversity", adaptDiversity), ("--adapt-pseudo-labels", adaptPseudoLabels)] {
            if let v, !(v >= 0 && v.isFinite) { throw ValidationError("\(name) must be a non-negative number") }
        }
    }

    /// The head adaptation asked for, with warnings when it cannot apply.
    func headAdaptation(_ model: SavedModel, _ dataset: Dataset, labelled: Bool, quiet: Bool) -> MLPHead.Adaptation? {
        if adaptNorm, model.networks == nil { printError("warning: --adapt-norm: this model has no network trained from scratch (\(model.kind)); nothing is adapted (--adapt-heads adapts MLP heads)") }
        if adaptHeads || adaptNorm {
            let flag = adaptHeads ? "--adapt-heads" : "--adapt-norm"
            var counts: [Int: Int] = [:]
            for item in dataset.items { counts[item.label, default: 0] += 1 }
            if labelled, counts.count < model.classNames.count {
                printError("warning: \(flag) assumes the images hold all of the model's \(model.classNames.count) classes; these hold \(counts.count) (measured: with half the classes absent it made things worse)")
            } else if labelled, let most = counts.values.max(), let least = counts.values.min(), most > 3 * least {
                printError("warning: \(flag) assumes a not too uneven class mix; these images range from \(least) to \(most) per class (measured on bccd's, 20 to 205: it cost balanced accuracy where balanced subsets gained)")
            }
        }
        guard adaptHeads else { return nil }
        if model.mlp == nil { printError("warning: --adapt-heads: this model has no frozen-feature MLP head (\(model.kind)); nothing is adapted") }
        if model.networks != nil, model.mlp != nil, !adaptNorm { printError("warning: --adapt-heads adapts the MLP heads only, not the model's networks (--adapt-norm adapts those)") }
        if dataset.items.count < 50 { printError("warning: --adapt-heads learns from the new images' predictions as a whole; \(dataset.items.count) image(s) are few for that (50 or more)") }
        var a = MLPHead.Adaptation()
        a.steps = adaptSteps
        if let adaptDiversity { a.diversity = adaptDiversity }
        if let adaptPseudoLabels { a.pseudoLabelWeight = adaptPseudoLabels }
        return a
    }

    func pipeline() throws -> TransformPipeline {
        do { return try TransformPipeline.parse(adapt) } catch { throw ValidationError("--adapt: \(error)") }
    }

    /// The image steps: `--adapt`'s spec, or for `auto` the central crop found from the images (reported on stderr).
    func imageSteps(_ model: SavedModel, _ dataset: Dataset, file: String, quiet: Bool) throws -> TransformPipeline {
        guard adapt == "auto" else { return try pipeline() }
        if dataset.items.count < 20 {
            printError("warning: --adapt auto compares the images' average look with the training images'; \(dataset.items.count) image(s) are too few for that to be reliable (20 or more)")
        }
        let stages = StageProgress(quiet: quiet)
        let distances = try model.scaleDistances(dataset, file: file) { stage, d, t in stages.update("scale: " + stage, d, t) }
        let best = distances[0].scale
        let steps = SavedModel.scaleTransform(best)
        if !quiet {
            printError("scale: the images look most like the training images " + (steps.isEmpty ? "as they are" : "after \(steps[0].spec)")
                       + " (feature distance at each scale, < 1 a central crop, > 1 shrunk: "
                       + distances.sorted { $0.scale > $1.scale }.map { String(format: "%g: %.2f", $0.scale, $0.distance) }.joined(separator: ", ") + ")")
        }
        return TransformPipeline(steps)
    }
}
