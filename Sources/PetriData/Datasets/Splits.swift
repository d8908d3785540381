import Foundation
import PetriEngine

/// Stratified, group-aware splitting. Items sharing a group (a patient, or exact duplicates) always land
/// on the same side; a group is stratified by its most common label.
public enum Splits {
    struct Group {
        var members: [Int]
        var label: Int
    }

    static func groups(labels: [Int], groups: [String?]) -> [Group] {
        precondition(groups.isEmpty || groups.count == labels.count)
        var byKey: [String: Int] = [:]
        var out: [Group] = []
        for i in labels.indices {
            if let key = groups.isEmpty ? nil : groups[i] {
                if let g = byKey[key] { out[g].members.append(i); continue }
                byKey[key] = out.count
            }
            out.append(Group(members: [i], label: labels[i]))
        }
        for g in out.indices where out[g].members.count > 1 {
            var counts: [Int: Int] = [:]
            for m in out[g].members { counts[labels[m], default: 0] += 1 }
            out[g].label = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!.key
        }
        return out
    }

    /// Test-set indices for each of `folds` folds. Every index appears in exactly one fold.
    public static func stratifiedKFold(labels: [Int], groups groupKeys: [String?] = [], folds: Int,
                                       seed: UInt64) -> [[Int]] {
        precondition(folds >= 2, "k-fold needs at least 2 folds")
        let all = groups(labels: labels, groups: groupKeys)
        var rng = SeededGenerator(seed: seed, stream: "kfold")
        var foldItems = [[Int]](repeating: [], count: folds)
        var foldClassCount = [[Int: Int]](repeating: [:], count: folds)
        let byClass = Dictionary(grouping: all.indices, by: { all[$0].label })
        for label in byClass.keys.sorted() {
            var gs = byClass[label]!
            gs.shuffle(using: &rng)
            // Larger groups first, so the greedy fill below stays balanced.
            gs.sort { all[$0].members.count > all[$1].members.count }
            for g in gs {
                let target = (0..<folds).min {
                    (foldClassCount[$0][label] ?? 0, foldItems[$0].count, $0)
                        < (foldClassCount[$1][label] ?? 0, foldItems[$1].count, $1)
                }!
                foldItems[target] += all[g].members
                foldClassCount[target][label, default: 0] += all[g].members.count
            }
        }
        return foldItems.map { $0.sorted() }
    }

    /// Per class, shuffles with `seed` and puts round(`testFraction`·count) images (at least one, and never
    /// all when the class has two or more) into the test set, keeping groups whole: the test split of the
    /// few-shot protocol (`FewShotSplit`), with everything else as training set.
    public static func stratifiedHoldout(labels: [Int], groups groupKeys: [String?] = [], testFraction: Double,
                                         seed: UInt64) -> (train: [Int], test: [Int]) {
        let split = FewShotSplit(labels: labels, groups: groupKeys, classes: (labels.max() ?? -1) + 1, seed: seed,
                                 testFraction: testFraction)
        return (split.training(perClass: nil), split.test)
    }
}
