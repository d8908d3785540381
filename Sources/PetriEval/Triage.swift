import Foundation

/// Whether a classifier's confidence can be trusted, from labelled predictions (`probabilities`: one row per
/// image, summing to 1): calibration (Guo et al. 2017), selective classification (Geifman & El-Yaniv 2017)
/// and split conformal prediction (Angelopoulos & Bates 2021). Pure functions; the caller decides which
/// images calibrate and which evaluate, and must never calibrate and evaluate on the same images.
public enum Calibration {
    /// One equal-width bin of confidence (the top probability): how many images fell in it, their mean
    /// confidence and how many of them were right.
    public struct Bin: Sendable, Equatable {
        public var lower: Double, upper: Double
        public var count: Int
        public var meanConfidence: Double
        public var accuracy: Double
    }

    /// Confidence (top probability) and whether the top class is the label, per image.
    static func confidences(labels: [Int], probabilities: [[Double]]) -> [(confidence: Double, correct: Bool)] {
        precondition(labels.count == probabilities.count, "one probability row per label")
        return zip(labels, probabilities).map { y, p in
            let top = p.indices.max { p[$0] < p[$1] } ?? 0
            return (p[top], top == y)
        }
    }

    /// `bins` equal-width confidence bins over [0, 1] (the last one closed); empty bins are kept with count 0.
    public static func reliability(labels: [Int], probabilities: [[Double]], bins: Int = 10) -> [Bin] {
        var count = [Int](repeating: 0, count: bins), right = count
        var confidence = [Double](repeating: 0, count: bins)
        for (c, correct) in confidences(labels: labels, probabilities: probabilities) {
            let b = min(bins - 1, max(0, Int(c * Double(bins))))
            count[b] += 1
            confidence[b] += c
            if correct { right[b] += 1 }
        }
        return (0..<bins).map { b in
            Bin(lower: Double(b) / Double(bins), upper: Double(b + 1) / Double(bins), count: count[b],
                meanConfidence: count[b] == 0 ? 0 : confidence[b] / Double(count[b]),
                accuracy: count[b] == 0 ? 0 : Double(right[b]) / Double(count[b]))
        }
    }

    /// Expected calibration error: Σ_bins |bin| / n · |accuracy(bin) − mean confidence(bin)|.
    public static func expectedCalibrationError(labels: [Int], probabilities: [[Double]], bins: Int = 10) -> Double {
        let n = Double(labels.count)
        guard n > 0 else { return 0 }
        return reliability(labels: labels, probabilities: probabilities, bins: bins)
            .reduce(0) { $0 + Double($1.count) / n * abs($1.accuracy - $1.meanConfidence) }
    }

    /// Mean −log p(label), with probabilities floored at 1e-12.
    public static func negativeLogLikelihood(labels: [Int], probabilities: [[Double]]) -> Double {
        guard !labels.isEmpty else { return 0 }
        return zip(labels, probabilities).reduce(0) { $0 - log(max($1.1[$1.0], 1e-12)) } / Double(labels.count)
    }

    /// Probabilities re-tempered: softmax(log p / T). T > 1 softens overconfident predictions, T < 1 sharpens.
    public static func tempered(_ probabilities: [[Double]], temperature t: Double) -> [[Double]] {
        probabilities.map { p in
            let logits = p.map { log(max($0, 1e-12)) / t }
            let m = logits.max() ?? 0
            let e = logits.map { exp($0 - m) }
            let s = e.reduce(0, +)
            return e.map { $0 / s }
        }
    }

    /// The temperature minimising the negative log-likelihood of `labels` (temperature scaling: one
    /// parameter, so it cannot change which class is predicted). Golden-section search on log T in
    /// [log 0.05, log 20]; the NLL is convex in 1/T for fixed logits, so the search finds the minimum.
    public static func fitTemperature(labels: [Int], probabilities: [[Double]]) -> Double {
        guard !labels.isEmpty else { return 1 }
        func loss(_ logT: Double) -> Double {
            negativeLogLikelihood(labels: labels, probabilities: tempered(probabilities, temperature: exp(logT)))
        }
        var (a, b) = (log(0.05), log(20.0))
        let g = (5.0.squareRoot() - 1) / 2
        var c = b - g * (b - a), d = a + g * (b - a)
        var fc = loss(c), fd = loss(d)
        for _ in 0..<60 {
            if fc < fd { b = d; d = c; fd = fc; c = b - g * (b - a); fc = loss(c) }
            else { a = c; c = d; fc = fd; d = a + g * (b - a); fd = loss(d) }
        }
        return exp((a + b) / 2)
    }
}

/// Selective classification: accept a prediction only when its confidence reaches a threshold, and send the
/// rest to a person.
public enum SelectiveClassification {
    /// One operating point: accept the images with confidence ≥ `threshold`.
    public struct Point: Sendable, Equatable {
        public var threshold: Double
        /// Fraction of images accepted.
        public var coverage: Double
        /// Error rate among the accepted images.
        public var risk: Double
    }

    /// The risk–coverage curve: one point per distinct confidence, from the most confident images down
    /// (ties enter together), ending at full coverage.
    public static func riskCoverage(labels: [Int], probabilities: [[Double]]) -> [Point] {
        let scored = Calibration.confidences(labels: labels, probabilities: probabilities).sorted { $0.confidence > $1.confidence }
        var points: [Point] = []
        var errors = 0
        for (i, s) in scored.enumerated() {
            if !s.correct { errors += 1 }
            if i + 1 < scored.count && scored[i + 1].confidence == s.confidence { continue }
            points.append(Point(threshold: s.confidence, coverage: Double(i + 1) / Double(scored.count),
                                risk: Double(errors) / Double(i + 1)))
        }
        return points
    }

    /// Area under the risk–coverage curve: the mean over k = 1…n of the error rate among the k most confident
    /// images (ties share their group's rate). Lower is better; a perfect ranking of errors gives the minimum.
    public static func areaUnderRiskCoverage(labels: [Int], probabilities: [[Double]]) -> Double {
        let n = labels.count
        guard n > 0 else { return 0 }
        var area = 0.0, previous = 0
        for p in riskCoverage(labels: labels, probabilities: probabilities) {
            let k = Int((p.coverage * Double(n)).rounded())
            area += Double(k - previous) * p.risk
            previous = k
        }
        return area / Double(n)
    }

    /// The lowest confidence threshold whose accepted images (confidence ≥ threshold) reach `accuracy` on
    /// these labelled images, i.e. the largest coverage at that accuracy; nil when even the most confident
    /// group falls short.
    public static func threshold(forAccuracy target: Double, labels: [Int], probabilities: [[Double]]) -> Double? {
        riskCoverage(labels: labels, probabilities: probabilities).last { 1 - $0.risk >= target - 1e-12 }?.threshold
    }
}

/// Split conformal prediction with the "least ambiguous" score 1 − p(label): sets that contain the true class
/// with probability ≥ 1 − α over exchangeable calibration and test images, whatever the model.
public enum ConformalPrediction {
    /// The score threshold q: the ⌈(n + 1)(1 − α)⌉-th smallest calibration score. nil when that rank exceeds
    /// n (too few calibration images for this α: e.g. 19 are needed for α = 0.05): only the set of every
    /// class would guarantee the coverage.
    public static func threshold(labels: [Int], probabilities: [[Double]], alpha: Double) -> Double? {
        precondition(alpha > 0 && alpha < 1, "alpha in (0, 1)")
        let scores = zip(labels, probabilities).map { 1 - $1[$0] }.sorted()
        let rank = Int((Double(scores.count + 1) * (1 - alpha)).rounded(.up))
        guard rank >= 1, rank <= scores.count else { return nil }
        return scores[rank - 1]
    }

    /// Classes whose score 1 − p is at most `threshold` (nil threshold: every class), most probable first —
    /// and never empty: the top class is always in. The score alone leaves a set empty when no class is
    /// likely enough, which happens on images unlike the calibration images; adding the top class only raises coverage.
    public static func predictionSet(_ probabilities: [Double], threshold: Double?) -> [Int] {
        let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
        guard let q = threshold else { return order }
        let set = order.filter { 1 - probabilities[$0] <= q + 1e-12 }
        return set.isEmpty ? Array(order.prefix(1)) : set
    }
}

/// How calibration, abstention and conformal sets would have worked on labelled predictions, estimated
/// honestly by cross-fitting: the images are split in two class-stratified halves (seeded), each half is
/// calibrated on and the other evaluated, and the two evaluations are pooled.
public struct TriageEstimate: Sendable {
    /// Expected calibration error of the raw probabilities, and after temperature scaling fitted on the other half.
    public var calibrationError: Double
    public var calibrationErrorTempered: Double
    /// Mean fitted temperature (> 1: the model was overconfident).
    public var temperature: Double
    /// Target accuracy of the abstention rule, the fraction of evaluation images accepted and their accuracy.
    public var targetAccuracy: Double
    public var acceptedFraction: Double
    public var acceptedAccuracy: Double?
    /// Conformal sets at level 1 − α: how often they held the label, their mean size, the fraction with one class.
    public var alpha: Double
    public var setCoverage: Double
    public var meanSetSize: Double
    public var singletonFraction: Double
    public var images: Int

    public init(labels: [Int], probabilities: [[Double]], classes: Int, targetAccuracy: Double = 0.95,
                alpha: Double = 0.1, seed: UInt64 = 0) {
        precondition(labels.count == probabilities.count)
        self.targetAccuracy = targetAccuracy
        self.alpha = alpha
        images = labels.count
        // Stratified halves: within each class, a seeded shuffle, alternately assigned.
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {   // splitmix64: a self-contained, seeded shuffle
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var halves: [[Int]] = [[], []]
        var turn = 0
        for c in 0..<classes {
            var members = labels.indices.filter { labels[$0] == c }
            for i in stride(from: members.count - 1, to: 0, by: -1) { members.swapAt(i, Int(next() % UInt64(i + 1))) }
            for m in members { halves[turn].append(m); turn ^= 1 }
        }
        var rawProbs: [[Double]] = [], temperedProbs: [[Double]] = [], evalLabels: [Int] = []
        var temperatures: [Double] = [], accepted = 0, acceptedRight = 0, covered = 0, sizes = 0, singletons = 0
        for h in 0..<2 {
            let cal = halves[h], ev = halves[1 - h]
            let calLabels = cal.map { labels[$0] }, calProbs = cal.map { probabilities[$0] }
            let evLabels = ev.map { labels[$0] }, evProbs = ev.map { probabilities[$0] }
            let t = Calibration.fitTemperature(labels: calLabels, probabilities: calProbs)
            temperatures.append(t)
            rawProbs += evProbs
            temperedProbs += Calibration.tempered(evProbs, temperature: t)
            evalLabels += evLabels
            let threshold = SelectiveClassification.threshold(forAccuracy: targetAccuracy, labels: calLabels, probabilities: calProbs)
            let q = ConformalPrediction.threshold(labels: calLabels, probabilities: calProbs, alpha: alpha)
            for (y, p) in zip(evLabels, evProbs) {
                let top = p.indices.max { p[$0] < p[$1] } ?? 0
                if let threshold, p[top] >= threshold {
                    accepted += 1
                    if top == y { acceptedRight += 1 }
                }
                let set = ConformalPrediction.predictionSet(p, threshold: q)
                if set.contains(y) { covered += 1 }
                sizes += set.count
                if set.count == 1 { singletons += 1 }
            }
        }
        let n = Double(max(1, evalLabels.count))
        calibrationError = Calibration.expectedCalibrationError(labels: evalLabels, probabilities: rawProbs)
        calibrationErrorTempered = Calibration.expectedCalibrationError(labels: evalLabels, probabilities: temperedProbs)
        temperature = temperatures.reduce(0, +) / Double(temperatures.count)
        acceptedFraction = Double(accepted) / n
        acceptedAccuracy = accepted > 0 ? Double(acceptedRight) / Double(accepted) : nil
        setCoverage = Double(covered) / n
        meanSetSize = Double(sizes) / n
        singletonFraction = Double(singletons) / n
    }
}
