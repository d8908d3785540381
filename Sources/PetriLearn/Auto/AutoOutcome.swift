import Foundation
import PetriEngine

extension AutoMethod {
    /// What `select` chose on a training set, with the evidence.
    public struct Outcome {
        public var chosen: any FewShotMethod
        /// Inner-CV balanced accuracy per candidate (`scale: …` / `scale-p: …` for the scale probes) and seconds
        /// each took (`seconds: …`), as recorded in results.
        public var scores: [String: Double]
        /// The central crops the candidates were built for, the chosen one first (`[1]`: the whole image).
        public var scales: [Double] = [1]
        /// Mean test probabilities of the inner-fold models of each expensive candidate, by name.
        public var foldEnsembles: [String: Tensor] = [:]
        /// The inner-fold models of expensive candidates, by name, when `select` was asked to keep them.
        public var foldModels: [String: [any FittedClassifier]] = [:]
        /// Out-of-fold probabilities of each candidate scored by inner cross-validation, by name: `[train, classes]`,
        /// row i predicted by the inner-fold model that did not see training image i (empty below `blendBelow`).
        public var outOfFold: [String: Tensor] = [:]
        /// Test probabilities of candidates already refitted on the whole training set (for the diagnostics of
        /// `recordTestScores`, so that they are not fitted twice).
        public var refitPredictions: [String: Tensor] = [:]
        /// With `recordProbabilities`: the candidates' out-of-fold and test probabilities, for replaying rules.
        public var evidence: AutoEvidence?

        public init(chosen: any FewShotMethod, scores: [String: Double]) {
            self.chosen = chosen
            self.scores = scores
        }

        /// Out-of-fold probabilities of `method` (a candidate, or a blend as the mean of its members'), when
        /// inner cross-validation ran: what calibration and abstention thresholds are fitted on.
        public func outOfFoldProbabilities(_ method: any FewShotMethod) -> Tensor? {
            if let p = outOfFold[method.name] { return p }
            guard let blend = method as? EnsembleMethod else { return nil }
            let parts = blend.members.compactMap { outOfFold[$0.name] }
            guard parts.count == blend.members.count, !parts.isEmpty else { return nil }
            return blend.combine(parts)
        }

        /// The chosen method's test probabilities from inner-fold models, when it is expensive.
        public var foldEnsemble: Tensor? { foldEnsembles[chosen.name] }

        /// The chosen method as recorded: its name, and how its expensive members predict.
        public var chosenLabel: String {
            let members = (chosen as? EnsembleMethod)?.members ?? [chosen]
            return chosen.name + (members.contains { foldEnsembles[$0.name] != nil } ? " (inner-fold ensemble)" : "")
        }

        /// Test probabilities of `method` (a candidate or a blend of candidates): its inner-fold models' mean
        /// when it is expensive, else refitted on all of `train`.
        func predictions(_ method: any FewShotMethod, train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
            if let e = foldEnsembles[method.name] ?? refitPredictions[method.name] { return e }
            guard let blend = method as? EnsembleMethod else { return try method.predict(train: train, test: test, context: context) }
            return blend.combine(try blend.members.map { try predictions($0, train: train, test: test, context: context) })
        }
    }
}
