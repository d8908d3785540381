import Foundation
import PetriData
import PetriEngine
import PetriEval

/// What purification needs from the learning layer: out-of-fold predictions of every image and how far each
/// image lies from the others in feature space.
public enum Purification {
    /// `[items, classes]`: each item predicted by `method` trained on the other folds of a stratified k-fold
    /// over `items` (exact-duplicate groups kept in one fold, so a copy cannot vouch for its own label). Rows
    /// of the dataset not in `items` are zero. Methods that allow it fit their folds side by side.
    public static func outOfFoldProbabilities(_ method: any FewShotMethod, items: [Int], folds: Int,
                                              context: MethodContext) throws -> Tensor {
        let labels = items.map { context.labels[$0] }
        let groups = items.map { context.dataset.items[$0].group }
        let split = Splits.stratifiedKFold(labels: labels, groups: groups, folds: folds, seed: context.seed)
        let fit = { (f: Int, c: MethodContext) throws -> Tensor in
            let held = Set(split[f])
            let train = items.indices.filter { !held.contains($0) }.map { items[$0] }
            return try method.predict(train: train, test: split[f].map { items[$0] }, context: c)
        }
        let predicted: [Tensor]
        if method.fitsRunSideBySide {
            try method.prepare(items: items, context: context)
            predicted = try ComputeLanes.run(split.count) { f in
                var c = context
                if f > 0 { c.progress = nil }
                return try fit(f, c)
            }
        } else {
            predicted = try split.indices.map { try fit($0, context) }
        }
        let k = context.classes
        var out = Tensor(zeros: [context.dataset.items.count, k])
        out.withUnsafeMutableBufferPointer { o in
            for (fold, p) in zip(split, predicted) {
                for (row, position) in fold.enumerated() {
                    for c in 0..<k { o[items[position] * k + c] = p[flat: row * k + c] }
                }
            }
        }
        return out
    }

    /// Per item of `items`: the mean cosine distance of its (L2-normalised) features to its `neighbours`
    /// nearest other items. Large for an image unlike any other (a wrong modality, a blank field, an
    /// artefact); near-duplicates score close to 0.
    public static func outlierScores(_ features: Tensor, items: [Int], neighbours: Int = 5) -> [Double] {
        let x = l2NormalizedRows(features.rows(items))
        let n = items.count, d = x.shape[1]
        guard n > 1 else { return [Double](repeating: 0, count: n) }
        var sims = Tensor(zeros: [n, n])
        sims.withUnsafeMutableBufferPointer { s in
            sgemm(transposeA: false, transposeB: true, m: n, n: n, k: d, a: x.storage.pointer, lda: d,
                  b: x.storage.pointer, ldb: d, c: s.baseAddress!, ldc: n)
        }
        let k = min(neighbours, n - 1)
        return (0..<n).map { i in
            var row = (0..<n).filter { $0 != i }.map { Double(1 - sims[flat: i * n + $0]) }
            row.sort()
            return row.prefix(k).reduce(0, +) / Double(k)
        }
    }

    /// Items whose score lies more than `cutoff` robust standard deviations (1.4826 × median absolute
    /// deviation) above the median, most outlying first.
    public static func outliers(_ scores: [Double], cutoff: Double = 3.5) -> [Int] {
        guard scores.count > 2 else { return [] }
        let sorted = scores.sorted()
        let median = sorted[sorted.count / 2]
        let deviations = scores.map { abs($0 - median) }.sorted()
        let spread = max(1.4826 * deviations[deviations.count / 2], 1e-12)
        return scores.indices.filter { (scores[$0] - median) / spread > cutoff }.sorted { scores[$0] > scores[$1] }
    }
}
