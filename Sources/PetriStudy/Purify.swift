import Foundation
import PetriData
import PetriEval
import PetriLearn

/// `petri purify`: the images to check before trusting a dataset — likely label errors and outliers
/// (`LabelCheck`), identical images under different labels and near-identical pairs across classes. Nothing is
/// changed or deleted: a person decides.
public struct Purify {
    public var dataset: DatasetPolicy
    public var folds = 5
    /// Central crop (fraction of the shorter side) for the features.
    public var crop = 1.0
    public var outlierCutoff = 3.5
    public var seed: UInt64 = 0
    /// How many of each finding the summary lists.
    public var show = 15

    public init(dataset: DatasetPolicy) { self.dataset = dataset }

    public func validate() throws {
        guard folds >= 2 else { throw StudyError.invalidSetting("--folds", "must be at least 2") }
        guard crop > 0, crop <= 1 else { throw StudyError.invalidSetting("--crop", "must be in (0, 1]") }
    }

    /// The summary's lines and every finding as CSV (kind, path, label, suggested, p_label, p_suggested, score).
    public func run(reporter: StudyReporter) throws -> (lines: [String], csv: String) {
        try validate()
        let ds = try dataset.load(reporter: reporter)
        let smallest = ds.classCounts.filter { $0 > 0 }.min() ?? 0
        guard smallest >= folds else { throw StudyError.invalidSetting("--folds", "the smallest class has \(smallest) images, fewer than --folds \(folds)") }
        let bank = FeatureBank(dataset: ds)
        bank.progress = reporter.progressCallback
        var context = MethodContext(dataset: ds, bank: bank, seed: seed)
        context.progress = bank.progress
        let check = try LabelCheck.run(ds, context: context, crop: crop, folds: folds, outlierCutoff: outlierCutoff)
        let inspection = ds.inspect()
        let crossNear = inspection.nearDuplicates.filter { ds.items[$0.a].label != ds.items[$0.b].label }
        let labels = ds.items.map(\.label), k = ds.classNames.count
        func name(_ i: Int) -> String { ds.items[i].relativePath }
        func cls(_ c: Int) -> String { ds.classNames[c] }
        let predictions = check.probabilities.map { r in r.indices.max { r[$0] < r[$1] }! }
        var lines = [
            "dataset: \(ds.root.path) (\(ds.items.count) images, \(k) classes)",
            String(format: "out-of-fold balanced accuracy of the MLP (%d folds): %.3f", folds,
                   Metrics.balancedAccuracy(labels: labels, predictions: predictions, classes: k)),
            "likely label errors: \(check.issues.count) (\(String(format: "%.1f", 100 * Double(check.issues.count) / Double(max(1, ds.items.count))))% of images), most suspect first",
        ]
        for i in check.issues.prefix(show) {
            lines.append(String(format: "  %@  labelled %@ (p %.2f), looks like %@ (p %.2f)", name(i.index), cls(i.given), i.givenProbability,
                                cls(i.suggested), i.suggestedProbability))
        }
        lines.append("outliers: \(check.outliers.count)")
        for i in check.outliers.prefix(show) {
            lines.append(String(format: "  %@  [%@] mean distance to 5 nearest %.3f", name(i), cls(labels[i]), check.outlierScores[i]))
        }
        lines.append("identical images under different labels: \(inspection.conflictingDuplicates.count) group(s)")
        for g in inspection.conflictingDuplicates.prefix(show) { lines.append("  " + g.map { "\(name($0)) [\(cls(labels[$0]))]" }.joined(separator: " == ")) }
        lines.append("near-duplicates across classes: \(crossNear.count) pair(s)")
        for d in crossNear.prefix(show) {
            lines.append(String(format: "  %@ [%@] ~ %@ [%@] (%.3f)", name(d.a), cls(labels[d.a]), name(d.b), cls(labels[d.b]), d.correlation))
        }
        let f = CSV.field
        var csv = "kind,path,label,suggested,p_label,p_suggested,score\n"
        for i in check.issues {
            csv += "label,\(f(name(i.index))),\(f(cls(i.given))),\(f(cls(i.suggested))),"
                + String(format: "%.4f,%.4f,", i.givenProbability, i.suggestedProbability) + "\n"
        }
        for i in check.outliers { csv += "outlier,\(f(name(i))),\(f(cls(labels[i]))),,,," + String(format: "%.4f", check.outlierScores[i]) + "\n" }
        for g in inspection.conflictingDuplicates {
            for i in g { csv += "conflicting-duplicate,\(f(name(i))),\(f(cls(labels[i]))),,,,\n" }
        }
        for d in crossNear {
            for (i, j) in [(d.a, d.b), (d.b, d.a)] {
                csv += "near-duplicate,\(f(name(i))),\(f(cls(labels[i]))),\(f(cls(labels[j]))),,," + String(format: "%.4f", d.correlation) + "\n"
            }
        }
        return (lines, csv)
    }
}
