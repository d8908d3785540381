import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriNN

/// Averages the class probabilities of several methods (soft voting): steadier than any one member when
/// their errors differ, and than picking one by a noisy inner cross-validation on a few images.
public struct EnsembleMethod: FewShotMethod {
    public var members: [any FewShotMethod]
    public var label: String?
    /// Each member's weight (normalised when used); nil: equal.
    public var weights: [Float]?

    public init(_ members: [any FewShotMethod], label: String? = nil, weights: [Float]? = nil) {
        precondition(weights == nil || weights!.count == members.count, "one weight per member")
        self.members = members
        self.label = label
        self.weights = weights
    }

    /// The members weighted by their `votes`: every model inside counts once (an MLP pair and a CNN: 2 : 1).
    public static func votingBlend(_ members: [any FewShotMethod], label: String) -> EnsembleMethod {
        let votes = members.map(\.votes)
        return EnsembleMethod(members, label: label, weights: votes.allSatisfy { $0 == votes[0] } ? nil : votes.map(Float.init))
    }

    public var name: String { label ?? "ensemble[" + members.map(\.name).joined(separator: " + ") + "]" }
    public var votes: Int { members.map(\.votes).reduce(0, +) }

    /// The normalised weights.
    public var normalisedWeights: [Float] {
        let w = weights ?? Array(repeating: 1, count: members.count)
        let total = w.reduce(0, +)
        return w.map { $0 / total }
    }

    /// The weighted mean of the members' probabilities (one per member, in order).
    public func combine(_ parts: [Tensor]) -> Tensor {
        var sum = parts[0].scaled(by: normalisedWeights[0])
        for (p, w) in zip(parts.dropFirst(), normalisedWeights.dropFirst()) { sum.add(p.scaled(by: w)) }
        return sum
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        combine(try members.map { try $0.predict(train: train, test: test, context: context) })
    }
}

/// A method run on preprocessed images (stain normalisation, CLAHE, top-hat...), named `inner@spec`: the
/// preprocessing study compares `mlp`, `mlp@reinhard`, `mlp@clahe` on the same splits and seeds. The
/// preprocessing goes after the dataset's own; features of the preprocessed images get their own bank
/// (and their own disk-cache entries, keyed by the preprocessing).
public struct PreprocessedMethod: FewShotMethod {
    public var inner: any FewShotMethod
    public var preprocessing: TransformPipeline
    private let banks = PreprocessedBanks()

    public init(_ inner: any FewShotMethod, preprocessing: TransformPipeline) {
        self.inner = inner
        self.preprocessing = preprocessing
    }

    public var name: String { inner.name + "@" + preprocessing.spec.replacingOccurrences(of: ", ", with: "+") }
    public var isExpensive: Bool { inner.isExpensive }
    public var fitsRunSideBySide: Bool { inner.fitsRunSideBySide }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        try inner.predict(train: train, test: test, context: preprocessed(context))
    }

    public func prepare(items: [Int], context: MethodContext) throws {
        try inner.prepare(items: items, context: preprocessed(context))
    }

    /// The context with the preprocessing added to its dataset, and a feature bank for it that lives as
    /// long as the caller's bank (one per study, shared by every split and seed).
    func preprocessed(_ context: MethodContext) -> MethodContext {
        var dataset = context.dataset
        dataset.preprocessing = TransformPipeline(dataset.preprocessing.steps + preprocessing.steps)
        var c = MethodContext(dataset: dataset, bank: banks.bank(dataset: dataset, like: context.bank), seed: context.seed)
        c.progress = context.progress
        return c
    }
}

/// The feature banks of a `PreprocessedMethod` or of an MLP's colour copies, made on first use for the
/// caller's bank.
/// One per dataset preprocessing (keyed by its spec), all for the same caller's bank.
final class PreprocessedBanks: @unchecked Sendable {
    private let lock = NSLock()
    private weak var owner: FeatureBank?
    private var banks: [String: FeatureBank] = [:]

    func bank(dataset: Dataset, like outer: FeatureBank) -> FeatureBank {
        lock.withLock {
            if owner !== outer { banks = [:]; owner = outer }
            if let bank = banks[dataset.preprocessing.spec] { return bank }
            let b = FeatureBank(dataset: dataset)
            b.batchSize = outer.batchSize
            b.useDiskCache = outer.useDiskCache
            b.progress = outer.progress
            b.plannedLevels = outer.plannedLevels
            banks[dataset.preprocessing.spec] = b
            return b
        }
    }
}
