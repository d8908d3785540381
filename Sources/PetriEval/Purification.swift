import Foundation

/// Finding images whose label is probably wrong, from out-of-fold predicted probabilities (each image predicted
/// by a model that did not train on it): confident learning (Northcutt et al., JAIR 2021).
public enum LabelIssues {
    /// An image whose given label the model disputes with confidence.
    public struct Issue: Sendable, Equatable {
        public var index: Int
        public var given: Int
        public var suggested: Int
        /// Out-of-fold probability of the given label (lower: more suspect) and of the suggested one.
        public var givenProbability: Double
        public var suggestedProbability: Double

        public init(index: Int, given: Int, suggested: Int, givenProbability: Double, suggestedProbability: Double) {
            self.index = index; self.given = given; self.suggested = suggested
            self.givenProbability = givenProbability; self.suggestedProbability = suggestedProbability
        }
    }

    /// Per-class thresholds: the mean out-of-fold probability of class j over the images labelled j (the
    /// model's typical confidence in a class it is right about; a class it finds hard gets a lower bar).
    public static func thresholds(labels: [Int], probabilities: [[Double]], classes: Int) -> [Double] {
        (0..<classes).map { j in
            let own = zip(labels, probabilities).filter { $0.0 == j }.map { $0.1[j] }
            return own.isEmpty ? 1 : own.reduce(0, +) / Double(own.count)
        }
    }

    /// The off-diagonal of the confident joint: image x labelled i is an issue when, among the classes j whose
    /// probability reaches their threshold (p_j(x) ≥ t_j), the most probable is not i. Sorted most suspect
    /// first (lowest probability of the given label).
    public static func find(labels: [Int], probabilities: [[Double]], classes: Int) -> [Issue] {
        precondition(labels.count == probabilities.count, "one probability row per label")
        let t = thresholds(labels: labels, probabilities: probabilities, classes: classes)
        var issues: [Issue] = []
        for (x, (i, p)) in zip(labels, probabilities).enumerated() {
            let confident = (0..<classes).filter { p[$0] >= t[$0] }
            guard let j = confident.max(by: { p[$0] < p[$1] }), j != i else { continue }
            issues.append(Issue(index: x, given: i, suggested: j, givenProbability: p[i], suggestedProbability: p[j]))
        }
        return issues.sorted { ($0.givenProbability, $0.index) < ($1.givenProbability, $1.index) }
    }
}
