import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn

/// `petri evaluate`: a saved model scored on labelled images — e.g. another lab's images of the same classes.
/// Class names are matched to the model's case-insensitively; images of other classes are left out with a
/// warning. For a calibrated model it also says how its accept/review marks and prediction sets held up.
public struct Evaluation {
    public var model: String
    public var dataset: DatasetPolicy
    public var adaptation = AdaptationSettings()

    public init(model: String, dataset: DatasetPolicy) {
        self.model = model
        self.dataset = dataset
    }

    /// The report's lines and the per-image CSV (path, label, predicted, confidence[, triage, set]).
    public func run(reporter: StudyReporter) throws -> (lines: [String], csv: String) {
        let saved = try SavedModel.read(URL(fileURLWithPath: model))
        if !dataset.preprocessing.isEmpty, dataset.preprocessing.spec != saved.preprocessing {
            reporter.warning("--preprocess ignored: the model's own preprocessing ('\(saved.preprocessing)') is applied")
        }
        let data = try dataset.load(reporter: reporter)
        let (ds, unknown) = data.relabelled(as: saved.classNames)
        for c in unknown { reporter.warning("class '\(c)' is not one of the model's (\(saved.classNames.joined(separator: ", "))): its images are left out") }
        guard !ds.items.isEmpty else { throw StudyError.failed("no image of \(data.root.path) belongs to a class the model knows") }
        let adapted = try adaptation.apply(saved, ds, labelled: true, file: model, reporter: reporter)
        let (p, steps, familiar) = (adapted.probabilities, adapted.steps, adapted.familiar)
        if adapted.changesTheModel, saved.triage != nil {
            reporter.note("the model was adapted to these images (heads or batch norms): its calibration no longer applies, so every prediction is marked 'review'")
        }
        let k = saved.classNames.count, n = ds.items.count
        var rows = (0..<n).map { i in (0..<k).map { Double(p[flat: i * k + $0]) } }
        let labels = ds.items.map(\.label)
        var marks: [(accepted: Bool, set: [Int])] = []
        if let triage = saved.triage {
            for i in rows.indices {
                let t = triage.apply(rows[i])
                rows[i] = t.probabilities
                marks.append((t.accepted && (familiar?[i] ?? true) && !adapted.changesTheModel, t.set))
            }
        }
        let predicted = rows.map { r in r.indices.max { r[$0] < r[$1] }! }
        let confusion = Metrics.confusionMatrix(labels: labels, predictions: predicted, classes: k)
        var lines = [
            "model: \(model) (\(saved.method), trained on \(saved.trainingImages) images of \(saved.trainedOn))",
            "data: \(data.root.path), \(n) images" + (steps.isEmpty ? "" : ", adapted by \(steps.spec)")
                + (adapted.changesTheModel ? "; the model's \(adapted.modelParts) adapted to them" : ""),
            String(format: "balanced accuracy %.3f · accuracy %.3f · macro-F1 %.3f (chance %.3f)",
                   Metrics.balancedAccuracy(labels: labels, predictions: predicted, classes: k), Metrics.accuracy(labels: labels, predictions: predicted),
                   Metrics.macroF1(labels: labels, predictions: predicted, classes: k), 1 / Double(Set(labels).count)),
            "per-class recall (row: true class; columns: predicted " + saved.classNames.joined(separator: ", ") + ")",
        ]
        let width = saved.classNames.map(\.count).max() ?? 0
        for (c, recall) in Metrics.perClassRecall(confusion).enumerated() {
            guard let recall else { continue }
            lines.append("  \(saved.classNames[c].padding(toLength: width, withPad: " ", startingAt: 0))  \(String(format: "%.3f", recall))  "
                         + confusion[c].map { String(format: "%4d", $0) }.joined(separator: " "))
        }
        if let familiar {
            let unfamiliar = familiar.indices.filter { !familiar[$0] }
            let right = unfamiliar.filter { predicted[$0] == labels[$0] }.count
            lines.append(String(format: "unlike every training image: %d of %d (%.0f%%), %.1f%% of them right; the rest %.1f%% right", unfamiliar.count, n,
                                100 * Double(unfamiliar.count) / Double(n), unfamiliar.isEmpty ? 0.0 : 100 * Double(right) / Double(unfamiliar.count),
                                n == unfamiliar.count ? 0.0 : 100 * Double(labels.indices.filter { familiar[$0] && predicted[$0] == labels[$0] }.count) / Double(n - unfamiliar.count)))
        }
        if let triage = saved.triage {
            let accepted = marks.indices.filter { marks[$0].accepted }
            let right = accepted.filter { predicted[$0] == labels[$0] }.count
            let covered = marks.indices.filter { marks[$0].set.contains(labels[$0]) }.count
            lines.append(String(format: "marked 'accept': %d of %d (%.0f%%), %.1f%% of them right (calibrated for %.0f%% on the training data); accepted and wrong: %.1f%% of all images",
                                accepted.count, n, 100 * Double(accepted.count) / Double(n),
                                accepted.isEmpty ? 0.0 : 100 * Double(right) / Double(accepted.count), 100 * triage.targetAccuracy,
                                100 * Double(accepted.count - right) / Double(n)))
            lines.append(String(format: "prediction sets held the true class for %.1f%% of images (aimed at %.0f%%), %.2f classes on average",
                                100 * Double(covered) / Double(n), 100 * (1 - triage.alpha), Double(marks.reduce(0) { $0 + $1.set.count }) / Double(n)))
        }
        var csv = "path,label,predicted,confidence" + (marks.isEmpty ? "" : ",triage,set") + (familiar == nil ? "" : ",familiar") + "\n"
        for (i, item) in ds.items.enumerated() {
            var line = CSV.field(item.path) + "," + CSV.field(saved.classNames[labels[i]]) + "," + CSV.field(saved.classNames[predicted[i]])
                + "," + String(format: "%.4f", rows[i][predicted[i]])
            if !marks.isEmpty {
                line += "," + (marks[i].accepted ? "accept" : "review") + "," + CSV.field(marks[i].set.map { saved.classNames[$0] }.joined(separator: "|"))
            }
            if let familiar { line += familiar[i] ? ",yes" : ",no" }
            csv += line + "\n"
        }
        return (lines, csv)
    }
}
