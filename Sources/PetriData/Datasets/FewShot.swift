import Foundation
import PetriEngine

/// The few-shot protocol for one seed (the original study's, as `petri curve` runs it):
/// 1. per class, shuffle with the seed and put round(30%) of the images (at least one) into the test set,
///    keeping duplicate groups whole;
/// 2. the rest of each class, in the same shuffled order, is the pool: a training set of size n takes its
///    first n images (all of them when the class has fewer).
public struct FewShotSplit: Sendable, Codable, Equatable {
    public var seed: UInt64
    public var testFraction: Double
    /// Item indices of the test set (sorted).
    public var test: [Int]
    /// Per class, the training pool in draw order.
    public var pools: [[Int]]

    /// Shuffles per class with a generator seeded by `seed`; groups (duplicates, patients) move together.
    public init(labels: [Int], groups: [String?] = [], classes: Int, seed: UInt64, testFraction: Double = 0.3) {
        self.seed = seed
        self.testFraction = testFraction
        let all = Splits.groups(labels: labels, groups: groups)
        var rng = SeededGenerator(seed: seed, stream: "fewshot")
        var test: [Int] = []
        var pools = [[Int]](repeating: [], count: classes)
        for c in 0..<classes {
            var gs = all.indices.filter { all[$0].label == c }
            gs.shuffle(using: &rng)
            let total = gs.reduce(0) { $0 + all[$1].members.count }
            guard total > 0 else { continue }
            var want = max(1, Int((Double(total) * testFraction).rounded()))
            if total >= 2 { want = min(want, total - 1) }
            var taken = 0
            for g in gs {
                if taken < want {
                    test += all[g].members
                    taken += all[g].members.count
                } else {
                    pools[c] += all[g].members
                }
            }
        }
        self.test = test.sorted()
        self.pools = pools
    }

    /// The training set with up to `perClass` images of each class (nil: the whole pool).
    public func training(perClass: Int?) -> [Int] {
        pools.flatMap { pool in perClass.map { Array(pool.prefix($0)) } ?? pool }.sorted()
    }
}

/// A split saved to disk with item paths (relative to the dataset root), so it can be re-used and
/// audited, and applied again only to the same dataset.
public struct SavedSplit: Codable, Sendable {
    public var dataset: String
    public var protocolName: String
    public var seed: UInt64
    public var test: [String]
    /// class name → pool in draw order
    public var pools: [String: [String]]

    public init(_ split: FewShotSplit, dataset: Dataset) {
        self.dataset = dataset.root.path
        protocolName = "few-shot test=\(split.testFraction)"
        seed = split.seed
        test = split.test.map { dataset.items[$0].relativePath }
        pools = Dictionary(uniqueKeysWithValues: split.pools.enumerated().map { c, pool in
            (dataset.classNames[c], pool.map { dataset.items[$0].relativePath })
        })
    }

    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: url, options: .atomic)
    }

    public static func read(_ url: URL) throws -> SavedSplit {
        do { return try JSONDecoder().decode(SavedSplit.self, from: Data(contentsOf: url)) } catch {
            throw DatasetError.malformed(url.path, reason: "not a Petri split file: \(error.localizedDescription)")
        }
    }

    /// Maps the saved paths back onto `dataset`; every path must exist in it.
    public func apply(to dataset: Dataset, testFraction: Double = 0.3) throws -> FewShotSplit {
        let index = Dictionary(dataset.items.enumerated().map { ($1.relativePath, $0) }, uniquingKeysWith: { a, _ in a })
        func find(_ p: String) throws -> Int {
            guard let i = index[p] else {
                throw DatasetError.malformed(dataset.root.path, reason: "split file names \(p), which is not in this dataset")
            }
            return i
        }
        var split = FewShotSplit(labels: [], classes: 0, seed: seed, testFraction: testFraction)
        split.test = try test.map(find).sorted()
        split.pools = try dataset.classNames.map { try (pools[$0] ?? []).map(find) }
        return split
    }
}
