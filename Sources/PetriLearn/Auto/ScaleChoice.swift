import Foundation
import PetriEngine
import PetriEval

extension AutoMethod {
    /// What the scale probe is scored by on the inner folds, and how much a crop must gain by it.
    public enum ScaleScore: String, Sendable {
        /// The class-balanced mean probability of the true class, gains relative (ratio − 1): a crop is chosen
        /// when it raises it by a quarter plus one standard error. On 15–40 images balanced accuracy moves in
        /// steps of a fifth of a class, so it chooses crops on noise; the probability moves smoothly. Relative,
        /// because the probe's probabilities shrink towards 1/K by an amount that varies with the set.
        case trueClassProbability
        /// Balanced accuracy, gains as differences, margin 0.02.
        case balancedAccuracy

        /// How much the best crop must gain over the whole image, beyond one standard error.
        public var cropMargin: Double { self == .trueClassProbability ? 0.25 : 0.02 }
        /// Within how much (beyond one standard error) the runner-up scale must be of the chosen crop to join it.
        public var runnerUpMargin: Double { self == .trueClassProbability ? 0.10 : 0.02 }

        func gain(_ a: [Double], over b: [Double]) -> (mean: Double, standardError: Double) {
            self == .trueClassProbability
                ? AutoMethod.pairedGain(zip(a, b).map { $0 / max($1, 1e-9) }, over: b.map { _ in 1 })
                : AutoMethod.pairedGain(a, over: b)
        }
    }

    /// The crops to build the candidates for. Each crop's probe is scored (`scaleScore`) on `scaleRepeats` inner
    /// splits; the best-scoring smaller crop is taken when its mean gain over the whole image (the first of
    /// `crops`) exceeds the score's crop margin plus one standard error of the per-split gains, so that a crop is
    /// chosen for a clear effect, not for noise. With `scaleEnsemble`, the runner-up scale (the whole image
    /// included) joins when the probe cannot tell it from the best: a lead within the runner-up margin plus one
    /// standard error.
    /// With `recordTestScores`, each crop's probe fitted on all of `train` is also scored on `test` (recorded only).
    func chooseScales(train: [Int], test: [Int] = [], context: MethodContext, scores: inout [String: Double]) throws -> [Double] {
        guard crops.count > 1, let scaleProbe else { return [crops.first ?? 1] }
        let started = Date()
        defer { scores["seconds: scale probes"] = Date().timeIntervalSince(started) }
        let splits = (0..<max(1, scaleRepeats)).compactMap { innerFolds(train: train, context: context, repeat: $0) }
        guard !splits.isEmpty else { return [crops[0]] }
        var perSplit: [Double: [Double]] = [:], mean: [Double: Double] = [:]
        for c in crops {
            let probe = scaleProbe(c)
            var accuracy: [Double] = [], soft: [Double] = []
            for split in splits {
                let r = try innerScore(probe, train: train, folds: split, context: context)
                accuracy.append(r.score)
                soft.append(zip(split, r.foldProbabilities).map { softScore($1, fold: $0, train: train, context: context) }
                    .reduce(0, +) / Double(split.count))
            }
            perSplit[c] = scaleScore == .trueClassProbability ? soft : accuracy
            mean[c] = perSplit[c]!.reduce(0, +) / Double(splits.count)
            scores["scale: " + probe.name] = accuracy.reduce(0, +) / Double(splits.count)
            scores["scale-p: " + probe.name] = soft.reduce(0, +) / Double(splits.count)
            if recordTestScores {
                for r in splits.indices {
                    scores["scale\(r): " + probe.name] = accuracy[r]
                    scores["scale-p\(r): " + probe.name] = soft[r]
                }
                if !test.isEmpty {
                    let p = try probe.predict(train: train, test: test, context: context)
                    scores["test: " + probe.name] = Metrics.balancedAccuracy(
                        labels: test.map { context.labels[$0] }, predictions: argmaxRows(p), classes: context.classes)
                }
            }
        }
        let whole = crops[0]
        var best = crops[1]
        for c in crops.dropFirst(2) where mean[c]! > mean[best]! + 1e-9 { best = c }
        let gain = scaleScore.gain(perSplit[best]!, over: perSplit[whole]!)
        guard gain.mean > scaleScore.cropMargin + gain.standardError else { return [whole] }
        guard scaleEnsemble, let runnerUp = crops.filter({ $0 != best }).max(by: { mean[$0]! < mean[$1]! }) else { return [best] }
        let lead = scaleScore.gain(perSplit[best]!, over: perSplit[runnerUp]!)
        return lead.mean <= scaleScore.runnerUpMargin + lead.standardError ? [best, runnerUp] : [best]
    }
}
