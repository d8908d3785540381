import Foundation

/// Classification metrics as pure functions of labels and scores (scikit-learn's definitions).
public enum Metrics {
    /// counts[true][predicted]
    public static func confusionMatrix(labels: [Int], predictions: [Int], classes: Int) -> [[Int]] {
        precondition(labels.count == predictions.count)
        var m = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (t, p) in zip(labels, predictions) { m[t][p] += 1 }
        return m
    }

    /// Recall of each class; nil for a class absent from `labels`.
    public static func perClassRecall(_ confusion: [[Int]]) -> [Double?] {
        confusion.indices.map { c in
            let total = confusion[c].reduce(0, +)
            return total == 0 ? nil : Double(confusion[c][c]) / Double(total)
        }
    }

    /// Mean recall over the classes present in `labels`.
    public static func balancedAccuracy(labels: [Int], predictions: [Int], classes: Int) -> Double {
        let recalls = perClassRecall(confusionMatrix(labels: labels, predictions: predictions, classes: classes))
            .compactMap { $0 }
        return recalls.isEmpty ? 0 : recalls.reduce(0, +) / Double(recalls.count)
    }

    public static func accuracy(labels: [Int], predictions: [Int]) -> Double {
        guard !labels.isEmpty else { return 0 }
        return Double(zip(labels, predictions).filter { $0 == $1 }.count) / Double(labels.count)
    }

    /// Unweighted mean of per-class F1 over classes present in labels or predictions (F1 = 0 when undefined).
    public static func macroF1(labels: [Int], predictions: [Int], classes: Int) -> Double {
        let m = confusionMatrix(labels: labels, predictions: predictions, classes: classes)
        var scores: [Double] = []
        for c in 0..<classes {
            let tp = Double(m[c][c])
            let actual = Double(m[c].reduce(0, +))
            let predicted = Double(m.reduce(0) { $0 + $1[c] })
            if actual == 0 && predicted == 0 { continue }
            scores.append(actual + predicted == 0 ? 0 : 2 * tp / (actual + predicted))
        }
        return scores.isEmpty ? 0 : scores.reduce(0, +) / Double(scores.count)
    }

    /// Area under the ROC curve of `scores` for positives vs the rest (ties count one half).
    public static func binaryAUC(positive: [Bool], scores: [Double]) -> Double? {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        let nPos = positive.filter { $0 }.count, nNeg = positive.count - nPos
        guard nPos > 0, nNeg > 0 else { return nil }
        // Mann–Whitney U with average ranks for ties.
        var rankSum = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let avgRank = Double(i + j) / 2 + 1
            for k in i...j where positive[order[k]] { rankSum += avgRank }
            i = j + 1
        }
        return (rankSum - Double(nPos) * Double(nPos + 1) / 2) / (Double(nPos) * Double(nNeg))
    }

    /// One-vs-rest macro AUC over classes present in `labels` (probabilities: rows per sample).
    public static func macroAUC(labels: [Int], probabilities: [[Double]]) -> Double? {
        guard let k = probabilities.first?.count else { return nil }
        let aucs = (0..<k).compactMap { c in
            binaryAUC(positive: labels.map { $0 == c }, scores: probabilities.map { $0[c] })
        }
        return aucs.isEmpty ? nil : aucs.reduce(0, +) / Double(aucs.count)
    }
}

/// Mean, sample standard deviation and a 95% t-interval of repeated measurements; the interval is cut to
/// `range` when given (a balanced accuracy's interval from two seeds must not read 1.14).
public struct Summary: Sendable, CustomStringConvertible {
    public let mean: Double
    public let standardDeviation: Double
    public let low: Double
    public let high: Double
    public let count: Int

    public init(_ values: [Double], within range: ClosedRange<Double>? = nil) {
        count = values.count
        let m = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        mean = m
        if values.count > 1 {
            let v = values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)
            standardDeviation = v.squareRoot()
            let half = Summary.tQuantile975(degreesOfFreedom: values.count - 1) * standardDeviation
                / Double(values.count).squareRoot()
            low = range.map { max($0.lowerBound, m - half) } ?? m - half
            high = range.map { min($0.upperBound, m + half) } ?? m + half
        } else {
            standardDeviation = 0
            low = m
            high = m
        }
    }

    /// Two-sided 95% Student-t quantiles (exact table to 30 degrees of freedom, normal beyond).
    static func tQuantile975(degreesOfFreedom df: Int) -> Double {
        let table: [Double] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
                               2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                               2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
        return df >= 1 && df <= 30 ? table[df - 1] : 1.960
    }

    public var description: String {
        String(format: "%.3f ± %.3f (95%% CI %.3f–%.3f, n=%d)", mean, standardDeviation, low, high, count)
    }
}

/// Two methods measured on the same splits (same seeds, same test images): the per-split differences,
/// which are far less noisy than comparing each method's own mean ± interval (split-to-split variation
/// is shared and cancels).
public struct PairedDifference: Sendable {
    /// Mean of `other − baseline` over the shared splits, with a 95% t-interval (cut to −1…1).
    public let summary: Summary
    /// Splits where `other` scored higher, lower.
    public let wins: Int
    public let losses: Int

    /// `baseline` and `other` keyed by split (e.g. the seed); only keys present in both count.
    public init?(baseline: [UInt64: Double], other: [UInt64: Double]) {
        let keys = Set(baseline.keys).intersection(other.keys).sorted()
        guard !keys.isEmpty else { return nil }
        let d = keys.map { other[$0]! - baseline[$0]! }
        summary = Summary(d, within: -1...1)
        wins = d.filter { $0 > 1e-12 }.count
        losses = d.filter { $0 < -1e-12 }.count
    }

    /// Whether the interval excludes 0 (needs at least two splits).
    public var isClear: Bool { summary.count > 1 && (summary.low > 0 || summary.high < 0) }
}
