import Foundation

/// The class mix of new images, estimated from a model's predictions alone (Saerens, Latinne & Decaestecker
/// 2002): EM on the priors — each image's posterior is re-weighted by the ratio of the estimated mix to the
/// mix the model was trained for, and the mix is the mean re-weighted posterior, until it settles. Petri's heads
/// and networks train class-balanced, so their training mix is uniform.
public enum ClassPrior {
    /// The estimated mix (sums to 1), and the posteriors re-weighted for it.
    public static func estimate(_ posteriors: [[Double]], trainingPrior: [Double]? = nil, iterations: Int = 200,
                                tolerance: Double = 1e-7) -> (prior: [Double], posteriors: [[Double]]) {
        guard let k = posteriors.first?.count, k > 0 else { return ([], posteriors) }
        let source = trainingPrior ?? [Double](repeating: 1 / Double(k), count: k)
        var prior = source
        var adjusted = posteriors
        for _ in 0..<iterations {
            adjusted = posteriors.map { adjust($0, prior: prior, trainingPrior: source) }
            var next = [Double](repeating: 0, count: k)
            for row in adjusted { for j in 0..<k { next[j] += row[j] } }
            next = next.map { max($0 / Double(posteriors.count), 1e-6) }
            let total = next.reduce(0, +)
            next = next.map { $0 / total }
            let change = zip(next, prior).map { abs($0 - $1) }.max() ?? 0
            prior = next
            if change < tolerance { break }
        }
        return (prior, posteriors.map { adjust($0, prior: prior, trainingPrior: source) })
    }

    /// A posterior for a model trained on `trainingPrior`, moved to classes mixed as `prior`.
    public static func adjust(_ p: [Double], prior: [Double], trainingPrior: [Double]) -> [Double] {
        var q = (0..<p.count).map { p[$0] * prior[$0] / max(trainingPrior[$0], 1e-12) }
        let total = q.reduce(0, +)
        if total > 0 { q = q.map { $0 / total } }
        return q
    }
}
