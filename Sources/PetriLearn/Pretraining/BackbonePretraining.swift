import Foundation
import PetriData
import PetriEngine
import PetriNN

/// A domain backbone ("CellNet"): an ImageNet EfficientNet-Lite trained to tell apart the classes of pooled
/// labelled sets (`Dataset.pooled`), with the fine-tuning recipe of `partial` — the layers above `after` train,
/// on trunk activations of `views` augmented views per image computed once (nil `after`: every layer).
public struct BackbonePretraining: Sendable {
    public var base = "efficientnet-lite0"
    public var after: FeatureLevel? = .stage(3)
    public var epochs = 8
    public var views = 4
    public var seed: UInt64 = 0
    /// Images per (global) batch.
    public var batchSize = 16

    public init() {}

    var method: FineTuneMethod {
        var m = FineTuneMethod(backbone: base, trainAfter: after)
        m.epochs = epochs
        m.cachedViews = views
        m.batchSize = batchSize
        return m
    }

    /// The recipe as the backbone file records it.
    public func recipe(images: Int, classes: Int, version: String) -> String {
        "\(method.name), seed \(seed), \(images) images, \(classes) classes, Petri \(version)"
    }

    /// Bytes of cached trunk activations for `images` images (0 when every layer trains).
    public func activationBytes(images: Int) throws -> Double {
        guard let after else { return 0 }
        let (probe, config) = try ModelRegistry.make(base)
        let side = config.inputSize
        let perView = try probe.activations(Tensor(zeros: [1, side, side, 3]), upTo: after).count
        return Double(perView) * 4 * Double(views) * Double(images)
    }

    /// The trained network (its classifier is the pretraining task's, unused as a backbone). With `reducer`,
    /// this process trains on its slice of every batch with the others (data-parallel); with `checkpoint`, the
    /// state is saved every few steps and a run killed before the end resumes from it.
    public func train(_ pooled: Dataset, reducer: GradientReducer? = nil, checkpoint: TrainingCheckpoint? = nil,
                      progress: ((String, Int, Int) -> Void)?) throws -> EfficientNetLite {
        var context = MethodContext(dataset: pooled, bank: FeatureBank(dataset: pooled), seed: seed)
        context.progress = progress
        context.reducer = reducer
        var m = method
        m.checkpoint = checkpoint
        return try m.trainedModel(train: Array(pooled.items.indices), context: context).model
    }
}
