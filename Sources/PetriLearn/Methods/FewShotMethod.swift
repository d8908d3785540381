import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriNN

/// What a method gets for one (split, size, seed): the dataset, its labels, shared frozen features.
public struct MethodContext {
    public let dataset: Dataset
    public let labels: [Int]
    public let classes: Int
    public let bank: FeatureBank
    public var seed: UInt64
    /// Progress of long methods (stage, done, total).
    public var progress: ((String, Int, Int) -> Void)?
    /// The processes training one network together (data-parallel pretraining), when there are several.
    public var reducer: GradientReducer?

    public init(dataset: Dataset, bank: FeatureBank, seed: UInt64) {
        self.dataset = dataset
        labels = dataset.items.map(\.label)
        classes = dataset.classNames.count
        self.bank = bank
        self.seed = seed
    }
}

/// A way to learn a classifier from `train` and predict `test`: class probabilities `[test.count, classes]`.
public protocol FewShotMethod {
    /// The method and its settings, as recorded in results (e.g. `lp[efficientnet-lite0,head,tta8]`).
    var name: String { get }
    func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor
    /// Trains a network (seconds per fit, not milliseconds): `auto` then reuses its inner-fold models.
    var isExpensive: Bool { get }
    /// Whether several fits may run at once on `ComputeLanes` (single-threaded kernels each): true for
    /// networks too small to keep both cores busy, and only for methods whose fits share no mutable state.
    var fitsRunSideBySide: Bool { get }
    /// Computes what fits on subsets of `items` will share (frozen features), so that fits running side by
    /// side only read it.
    func prepare(items: [Int], context: MethodContext) throws
    /// How many models it averages, i.e. its weight in a blend where every model has one vote (an MLP with a
    /// partner feature set: 2).
    var votes: Int { get }
}

extension FewShotMethod {
    public var votes: Int { 1 }
    public var isExpensive: Bool { false }
    public var fitsRunSideBySide: Bool { false }
    public func prepare(items: [Int], context: MethodContext) throws {}
}

/// A classifier fitted by a method: predicts items of a context's dataset (the images it was not trained on).
public protocol FittedClassifier {
    func probabilities(_ items: [Int], context: MethodContext) throws -> Tensor
}

/// A method whose fitted model can be kept: for `auto`'s fold ensembles and for model files.
public protocol FittableMethod: FewShotMethod {
    func fit(train: [Int], context: MethodContext) throws -> any FittedClassifier
}

extension FittableMethod {
    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        try fit(train: train, context: context).probabilities(test, context: context)
    }
}
