import ArgumentParser
import Foundation
import PetriData
import PetriLearn

struct SplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Save the few-shot protocol split of a dataset for one seed (test set and training pools) as JSON.",
        discussion: """
            The split is the one `petri curve` and `petri study` use for that seed: per class, a seeded shuffle, \
            round(--test-fraction × count) images (at least one) to the test set, exact duplicates and CSV groups \
            kept whole; the rest, in draw order, is the pool whose first n images form the n-per-class training set. \
            The file names images by their path inside the dataset, so it can be audited and re-used.

            Example:
              petri split Samples/bccd-wbc-mini --seed 0 --out split-seed0.json
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Seed.")
    var seed: UInt64 = 0

    @Option(help: "Fraction of each class in the test set.")
    var testFraction = 0.3

    @Option(help: "Output JSON file.")
    var out: String

    func validate() throws {
        guard testFraction > 0 && testFraction < 1 else { throw ValidationError("--test-fraction must be in (0, 1)") }
    }

    func run() throws {
        let ds = try dataset.load(quiet: true)
        let groups: [String?] = ds.items.map { $0.group ?? (try? ds.contents(of: $0)).map(SHA256.hex) }
        let split = FewShotSplit(labels: ds.items.map(\.label), groups: groups, classes: ds.classNames.count, seed: seed,
                                 testFraction: testFraction)
        try SavedSplit(split, dataset: ds).write(to: URL(fileURLWithPath: out))
        print("wrote \(out): \(split.test.count) test images; pools " + zip(ds.classNames, split.pools).map { "\($0) \($1.count)" }.joined(separator: ", "))
    }
}
