import Foundation
import PetriData
import PetriEngine
import PetriLearn

/// `petri predict`: a saved model's predictions for image files and folders (searched recursively), as CSV:
/// path, label, confidence, then — for a calibrated model — triage (`accept`/`review`) and the prediction set,
/// then — when the model knows its training images' look — `familiar` (`no`: unlike every training image, so
/// never `accept`), then one probability per class. Unreadable files are reported and skipped.
public struct Prediction {
    public var model: String
    public var inputs: [String]
    public var adaptation = AdaptationSettings()

    public init(model: String, inputs: [String]) {
        self.model = model
        self.inputs = inputs
    }

    public func run(reporter: StudyReporter) throws -> (csv: String, images: Int) {
        let saved = try SavedModel.read(URL(fileURLWithPath: model))
        let ds = try images(reporter: reporter)
        let adapted = try adaptation.apply(saved, ds, labelled: false, file: model, reporter: reporter)
        let (p, familiar) = (adapted.probabilities, adapted.familiar)
        if adapted.changesTheModel, saved.triage != nil {
            reporter.note("the model was adapted to these images (heads or batch norms): its calibration no longer applies, so every prediction is marked 'review'")
        }
        let k = saved.classNames.count
        let triage = saved.triage
        var csv = "path,label,confidence," + (triage == nil ? "" : "triage,set,") + (familiar == nil ? "" : "familiar,")
            + saved.classNames.map { CSV.field("p_" + $0) }.joined(separator: ",") + "\n"
        var accepted = 0
        for (i, item) in ds.items.enumerated() {
            var row = (0..<k).map { Double(p[flat: i * k + $0]) }
            var marks = ""
            let known = (familiar?[i] ?? true) && !adapted.changesTheModel
            if let triage {
                let t = triage.apply(row)
                row = t.probabilities
                if t.accepted && known { accepted += 1 }
                marks = (t.accepted && known ? "accept," : "review,") + CSV.field(t.set.map { saved.classNames[$0] }.joined(separator: "|")) + ","
            }
            if let familiar { marks += familiar[i] ? "yes," : "no," }
            let best = row.indices.max { row[$0] < row[$1] }!
            csv += "\(CSV.field(item.path)),\(CSV.field(saved.classNames[best])),\(String(format: "%.4f", row[best])),\(marks)"
                + row.map { String(format: "%.4f", $0) }.joined(separator: ",") + "\n"
        }
        if let triage {
            reporter.note("\(accepted) of \(ds.items.count) predictions marked 'accept' (confidence at which \(String(format: "%.0f%%", triage.targetAccuracy * 100)) of out-of-fold predictions were right); check the 'review' ones")
        }
        return (csv, ds.items.count)
    }

    /// The readable images among the inputs, as an unlabelled dataset.
    func images(reporter: StudyReporter) throws -> Dataset {
        var paths: [String] = []
        for input in inputs {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else { throw StudyError.failed("\(input): no such file or folder") }
            if isDir.boolValue {
                var warnings: [String] = []
                let url = URL(fileURLWithPath: input)
                paths += Dataset.imageFiles(under: url, warnings: &warnings).map { url.appendingPathComponent($0).path }
                for w in warnings { reporter.warning(w) }
            } else {
                paths.append(URL(fileURLWithPath: input).path)
            }
        }
        let items = paths.map { DatasetItem(path: $0, relativePath: $0, label: 0) }
        let (ds, failures) = FeatureBank.readableItems(Dataset(root: URL(fileURLWithPath: "/"), classNames: ["?"], items: items))
        for (p, r) in failures { reporter.warning("skipped \(p): \(r)") }
        guard !ds.items.isEmpty else { throw StudyError.failed("no readable images among the inputs") }
        return ds
    }
}

/// CSV fields, quoted when they hold a comma or a quote.
public enum CSV {
    public static func field(_ s: String) -> String {
        s.contains(",") || s.contains("\"") || s.contains("\n") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
