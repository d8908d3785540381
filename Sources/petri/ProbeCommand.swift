import ArgumentParser
import Foundation
import PetriData
import PetriEval
import PetriLearn

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Cross-validated balanced accuracy of a linear probe on frozen ImageNet features.",
        discussion: """
            Extracts (cached) features, then runs repeated stratified k-fold cross-validation of an \
            L2-regularised logistic regression (C chosen by inner cross-validation on each training fold). \
            Exact-duplicate images are kept on one side of every split.

            Example:
              petri probe Samples/bccd-wbc-mini --folds 5 --repeats 2 --seed 0
            """)

    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Folds per repeat.")
    var folds = 5

    @Option(help: "Repeats of the k-fold split.")
    var repeats = 2

    @Option(help: "Seed for splits.")
    var seed: UInt64 = 0

    @OptionGroup var options: BackboneOptions

    func validate() throws {
        guard folds >= 2 else { throw ValidationError("--folds must be at least 2") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let start = Date()
        let (dataset, result) = try options.extract(from: data)
        let labels = result.kept.map { dataset.items[$0].label }
        let classes = dataset.classNames.count
        guard Set(labels).count >= 2 else {
            throw PetriCLIError("\(dataset.root.path): need at least two classes with readable images")
        }
        let smallest = (0..<classes).map { c in labels.filter { $0 == c }.count }.filter { $0 > 0 }.min()!
        guard smallest >= folds else {
            throw PetriCLIError("\(dataset.root.path): the smallest class has \(smallest) image(s), fewer than --folds \(folds)")
        }
        // Exact duplicates (same bytes) share a group so they never straddle train and test;
        // groups given by a CSV are respected too.
        let groups: [String?] = result.kept.map { i in
            dataset.items[i].group ?? (try? dataset.contents(of: dataset.items[i])).map(SHA256.hex)
        }
        let progress = ProgressLine("cross-validation", quiet: options.quiet)
        let cv = CrossValidation.run(features: result.features, labels: labels, groups: groups, classes: classes,
                                     folds: folds, repeats: repeats, seed: seed, progress: progress.update)
        let summary = Summary(cv.map(\.balancedAccuracy), within: 0...1)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for f in cv { for (i, p) in zip(f.test, f.predictions) { confusion[labels[i]][p] += 1 } }
        let recall = Metrics.perClassRecall(confusion)
        print("dataset: \(dataset.root.path) (\(labels.count) images, \(classes) classes)")
        print("method: linear probe on \(options.backbone) \(options.level) features, \(folds)-fold × \(repeats), seed \(seed)")
        print("balanced accuracy: \(summary)")
        for c in 0..<classes {
            let r = recall[c].map { String(format: "%.3f", $0) } ?? "n/a"
            print("  recall \(dataset.classNames[c]): \(r)")
        }
        print(String(format: "time: %.1fs", Date().timeIntervalSince(start)))
    }
}
