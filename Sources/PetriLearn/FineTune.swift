import Foundation
import PetriData
import PetriEngine
import PetriNN

/// Fine-tuning an ImageNet EfficientNet-Lite on the training images: a new classifier, AdamW with
/// discriminative learning rates (body `bodyLearningRateScale` × head), linear warm-up then cosine decay,
/// label smoothing, class-balanced sampling, an augmentation policy, and batch norm frozen to its ImageNet
/// statistics (batches of a few images give useless statistics; γ and β still learn).
///
/// With `trainAfter` set, only the layers above that level train (partial fine-tuning): the frozen trunk
/// runs in inference mode (folded, fused kernels) and no gradient flows through it.
public struct FineTuneMethod: FewShotMethod {
    public var backbone = "efficientnet-lite0"
    public var trainAfter: FeatureLevel?
    /// Passes over the (class-balanced) training set; steps = epochs · n / batch, at least `minimumSteps`.
    public var epochs = 15
    public var minimumSteps = 40
    public var batchSize = 16
    public var microBatch = 4
    public var learningRate: Float = 1e-3
    public var bodyLearningRateScale: Float = 0.1
    public var weightDecay: Float = 0.05
    public var labelSmoothing: Float = 0.1
    public var augmentation = "cells"
    /// Average predictions over the 8 dihedral views of each test image.
    public var testTimeAugmentation = true
    /// Central crop (fraction of the shorter side) before everything else, in training and prediction.
    public var crop: Double = 1

    public init(backbone: String = "efficientnet-lite0", trainAfter: FeatureLevel? = nil, augmentation: String = "cells") {
        self.backbone = backbone
        self.trainAfter = trainAfter
        self.augmentation = augmentation
    }

    public var name: String {
        (trainAfter.map { "partial[\($0)]" } ?? "finetune") + "[\(backbone.replacingOccurrences(of: "efficientnet-", with: "")),\(augmentation),e\(epochs)"
            + (minimumSteps != 40 ? ",min\(minimumSteps)" : "") + (crop < 1 ? ",crop\(crop)" : "") + "]"
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let (model, data) = try ModelRegistry.make(backbone)
        var rng = SeededGenerator(seed: context.seed, stream: "finetune")
        model.fc = model.resetClassifier(classes: context.classes, rng: &rng)
        let body = model.parameters(after: trainAfter)
        let optimizer = AdamW([ParameterGroup(model.fc.trainableParameters, learningRateScale: 1, weightDecay: 0),
                               ParameterGroup(body, learningRateScale: bodyLearningRateScale, weightDecay: weightDecay)],
                              learningRate: learningRate)
        let steps = max(minimumSteps, epochs * train.count / batchSize)
        let schedule = WarmupCosineSchedule(peak: learningRate, totalSteps: steps, warmupFraction: 0.1)

        // Class-balanced sampling: every class equally often, whatever its count (balanced accuracy).
        let byClass = Dictionary(grouping: train, by: { context.labels[$0] })
        let classes = byClass.keys.sorted()
        var order: [Int] = []
        var pools = byClass.mapValues { $0.shuffled(using: &rng) }
        var cursor: [Int: Int] = [:]
        for s in 0..<(steps * batchSize) {
            let c = classes[s % classes.count]
            var i = cursor[c, default: 0]
            if i >= pools[c]!.count { pools[c]!.shuffle(using: &rng); i = 0 }
            order.append(pools[c]![i])
            cursor[c] = i + 1
        }
        // Shuffle within the whole order so batches mix classes.
        order.shuffle(using: &rng)
        let items = context.dataset.items
        let preprocessing = TransformPipeline(crop < 1 ? [CenterCrop(fraction: crop)] : [])
        let loader = BatchLoader(dataset: context.dataset, items: items, order: order, batchSize: batchSize,
                                 dataConfig: data, preprocessing: preprocessing, augmentation: try TransformPipeline.augmentation(augmentation),
                                 seed: context.seed)
        let options = ForwardOptions(batchNorm: .frozen, dropConnect: 0.2, dropout: 0.2)
        var step = 0
        while let batch = loader.nextBatch() {
            optimizer.learningRate = schedule(step)
            optimizer.zeroGradients()
            let n = batch.labels.count
            for start in stride(from: 0, to: n, by: microBatch) {
                let part = start..<min(start + microBatch, n)
                let tape = Tape(training: true)
                var x = tape.constant(batch.input.slice(rows: part))
                if let level = trainAfter { x = tape.constant(try model.activations(x.value, upTo: level)) }
                let logits = try model.logits(x, on: tape, startingAfter: trainAfter, options: options, rng: &rng)
                let loss = tape.softmaxCrossEntropy(logits, labels: Array(batch.labels[part]), labelSmoothing: labelSmoothing)
                tape.backward(from: loss, seed: Tensor(shape: [], data: [Float(part.count) / Float(n)]))
            }
            optimizer.step()
            step += 1
            context.progress?("fine-tuning", step, steps)
        }

        // Predict: inference path (BN folded), optionally averaged over the 8 dihedral views.
        let views = testTimeAugmentation ? 8 : 1
        var out = Tensor(zeros: [test.count, context.classes])
        let decoder = ImageDecoder()
        for chunk in stride(from: 0, to: test.count, by: 32) {
            let idx = Array(test[chunk..<min(chunk + 32, test.count)])
            let images = try idx.map { preprocessing(FloatImage(try context.dataset.image(of: items[$0], decoder: decoder))) }
            for v in 0..<views {
                let view = DihedralView(v)
                var logits = try model.logits(data.batch(images.map { view($0) }))
                logits.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: idx.count, columns: context.classes) }
                out.withUnsafeMutableBufferPointer { o in
                    for r in 0..<idx.count { for c in 0..<context.classes {
                        o[(chunk + r) * context.classes + c] += logits[flat: r * context.classes + c] / Float(views)
                    } }
                }
            }
        }
        return out
    }
}
