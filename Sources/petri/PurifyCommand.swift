import ArgumentParser
import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriNN

struct PurifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purify",
        abstract: "List images to check before trusting a dataset: likely label errors, outliers and duplicates.",
        discussion: """
            Likely label errors: every image is predicted by an MLP on frozen ImageNet features (Lite0+1+2, \
            stage 6 + head, 8 dihedral views) trained on the other folds of a stratified k-fold; an image is \
            flagged when the model is confident — above that class's typical out-of-fold confidence — in \
            another class (confident learning, Northcutt et al. 2021). Outliers: images whose features are far \
            from their nearest neighbours (more than --outlier-cutoff robust standard deviations above the \
            median). Duplicates: identical images under different labels and near-identical pairs across \
            classes (as `petri inspect`). Nothing is changed or deleted: a person decides.

            Examples:
              petri purify ../shared/datasets/bccd-wbc-crops --out issues.csv
              petri purify pbc/ --crop 0.4 --folds 5
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Folds of the cross-validation that predicts every image.")
    var folds = 5

    @Option(help: "Central crop (fraction of the shorter side) for the features; 0.4 suits PBC's centred cells.")
    var crop = 1.0

    @Option(help: "Robust standard deviations above the median nearest-neighbour distance that make an outlier.")
    var outlierCutoff = 3.5

    @Option(help: "Seed of the folds and of the MLP.")
    var seed: UInt64 = 0

    @Option(help: "How many of each finding to print.")
    var show = 15

    @Option(help: "Write every finding as CSV (kind, path, label, suggested, p_label, p_suggested, score).")
    var out: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard folds >= 2 else { throw ValidationError("--folds must be at least 2") }
        guard crop > 0, crop <= 1 else { throw ValidationError("--crop must be in (0, 1]") }
    }

    func run() throws {
        let started = Date()
        let ds = try dataset.load(quiet: quiet)
        let smallest = ds.classCounts.filter { $0 > 0 }.min() ?? 0
        guard smallest >= folds else {
            throw ValidationError("the smallest class has \(smallest) images, fewer than --folds \(folds)")
        }
        let bank = FeatureBank(dataset: ds)
        let stages = StageProgress(quiet: quiet)
        bank.progress = { stage, d, t in stages.update(stage, d, t) }
        var context = MethodContext(dataset: ds, bank: bank, seed: seed)
        context.progress = bank.progress
        let spec = FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8, crops: [crop])
        let method = MLPMethod(features: spec)
        let all = Array(ds.items.indices)
        let p = try Purification.outOfFoldProbabilities(method, items: all, folds: folds, context: context)
        let k = ds.classNames.count
        let rows = all.map { i in (0..<k).map { Double(p[flat: i * k + $0]) } }
        let labels = all.map { ds.items[$0].label }
        let issues = LabelIssues.find(labels: labels, probabilities: rows, classes: k)
        let scores = Purification.outlierScores(try spec.matrix(bank), items: all)
        let outliers = Purification.outliers(scores, cutoff: outlierCutoff)
        let inspection = ds.inspect()
        let crossNear = inspection.nearDuplicates.filter { ds.items[$0.a].label != ds.items[$0.b].label }

        func name(_ i: Int) -> String { ds.items[i].relativePath }
        func cls(_ c: Int) -> String { ds.classNames[c] }
        let predictions = rows.map { r in r.indices.max { r[$0] < r[$1] }! }
        let oofBalanced = Metrics.balancedAccuracy(labels: labels, predictions: predictions, classes: k)
        print("dataset: \(ds.root.path) (\(ds.items.count) images, \(k) classes)")
        print(String(format: "out-of-fold balanced accuracy of the MLP (%d folds): %.3f", folds, oofBalanced))
        print("likely label errors: \(issues.count) (\(String(format: "%.1f", 100 * Double(issues.count) / Double(max(1, ds.items.count))))% of images), most suspect first")
        for i in issues.prefix(show) {
            print(String(format: "  %@  labelled %@ (p %.2f), looks like %@ (p %.2f)", name(i.index), cls(i.given), i.givenProbability,
                         cls(i.suggested), i.suggestedProbability))
        }
        print("outliers: \(outliers.count)")
        for i in outliers.prefix(show) {
            print(String(format: "  %@  [%@] mean distance to 5 nearest %.3f", name(i), cls(labels[i]), scores[i]))
        }
        print("identical images under different labels: \(inspection.conflictingDuplicates.count) group(s)")
        for g in inspection.conflictingDuplicates.prefix(show) { print("  " + g.map { "\(name($0)) [\(cls(labels[$0]))]" }.joined(separator: " == ")) }
        print("near-duplicates across classes: \(crossNear.count) pair(s)")
        for d in crossNear.prefix(show) {
            print(String(format: "  %@ [%@] ~ %@ [%@] (%.3f)", name(d.a), cls(labels[d.a]), name(d.b), cls(labels[d.b]), d.correlation))
        }

        if let out {
            func field(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
            var csv = "kind,path,label,suggested,p_label,p_suggested,score\n"
            for i in issues {
                csv += "label,\(field(name(i.index))),\(field(cls(i.given))),\(field(cls(i.suggested))),"
                    + String(format: "%.4f,%.4f,", i.givenProbability, i.suggestedProbability) + "\n"
            }
            for i in outliers {
                csv += "outlier,\(field(name(i))),\(field(cls(labels[i]))),,,," + String(format: "%.4f", scores[i]) + "\n"
            }
            for g in inspection.conflictingDuplicates {
                for i in g { csv += "conflicting-duplicate,\(field(name(i))),\(field(cls(labels[i]))),,,,\n" }
            }
            for d in crossNear {
                for (i, j) in [(d.a, d.b), (d.b, d.a)] {
                    csv += "near-duplicate,\(field(name(i))),\(field(cls(labels[i]))),\(field(cls(labels[j]))),,,"
                        + String(format: "%.4f", d.correlation) + "\n"
                }
            }
            try Data(csv.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
            print("wrote \(out)")
        }
        if !quiet { printError(String(format: "time: %.0f s", Date().timeIntervalSince(started))) }
    }
}
