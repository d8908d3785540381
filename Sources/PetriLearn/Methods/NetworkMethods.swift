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
    /// False: the same architecture from random initialisation (the from-scratch control), which needs
    /// batch-statistics BN (`batchNorm = .batch`): its running statistics mean nothing yet.
    public var pretrained = true
    public var batchNorm: BatchNormMode = .frozen
    /// Start the new classifier from a logistic regression fitted on the frozen network's pooled features
    /// of the training images (LP-FT, Kumar et al. 2022) instead of at random: the head warm-up phase done in
    /// closed form, so the first body updates follow a sensible head instead of undoing pretrained features.
    public var linearProbeHead = true
    /// Partial fine-tuning: augmented views of each training image pushed once through the frozen trunk and
    /// kept in memory; training then runs only the layers above `trainAfter` on them.
    public var cachedViews = 8
    /// Where training on cached activations saves its state every few steps, and resumes from.
    public var checkpoint: TrainingCheckpoint?

    public init(backbone: String = "efficientnet-lite0", trainAfter: FeatureLevel? = nil, augmentation: String = "cells") {
        self.backbone = backbone
        self.trainAfter = trainAfter
        self.augmentation = augmentation
    }

    public var isExpensive: Bool { true }
    public var name: String {
        (trainAfter.map { "partial[\($0)]" } ?? (pretrained ? "finetune" : "scratch")) + "[\(backbone.replacingOccurrences(of: "efficientnet-", with: "")),\(augmentation),e\(epochs)"
            + (minimumSteps != 40 ? ",min\(minimumSteps)" : "") + (crop < 1 ? ",crop\(crop)" : "") + (batchNorm == .batch ? ",bn" : "") + (pretrained && linearProbeHead ? ",lpft" : "")
            + (trainAfter != nil && cachedViews > 0 ? ",cached\(cachedViews)" : "") + "]"
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let (model, data, preprocessing) = try trainedModel(train: train, context: context)
        return try predictWithViews(test: test, context: context, dataConfig: data, preprocessing: preprocessing,
                                    views: testTimeAugmentation ? 8 : 1) { try model.logits($0) }
    }

    /// The network trained on `train` (with its data config and the crop it was trained at): what `predict`
    /// tests, and what `petri pretrain` keeps as a new backbone.
    public func trainedModel(train: [Int], context: MethodContext) throws -> (model: EfficientNetLite, data: DataConfig, preprocessing: TransformPipeline) {
        let (model, data) = try ModelRegistry.make(backbone)
        var rng = SeededGenerator(seed: context.seed, stream: "finetune")
        if !pretrained { model.initializeRandomly(using: &rng) }
        model.fc = model.resetClassifier(classes: context.classes, rng: &rng)
        let preprocessing = TransformPipeline(crop < 1 ? [CenterCrop(fraction: crop)] : [])
        if pretrained && linearProbeHead {
            try initializeHeadByLinearProbe(model, data: data, preprocessing: preprocessing, train: train, context: context)
        }
        let body = model.parameters(after: trainAfter)
        let optimizer = AdamW([ParameterGroup(model.fc.trainableParameters, learningRateScale: 1, weightDecay: 0),
                               ParameterGroup(body, learningRateScale: bodyLearningRateScale, weightDecay: weightDecay)],
                              learningRate: learningRate)
        let options = ForwardOptions(batchNorm: batchNorm, dropConnect: 0.2, dropout: 0.2)
        let recipe = TrainingRecipe(epochs: epochs, minimumSteps: minimumSteps, batchSize: batchSize,
                                    microBatch: batchNorm == .batch ? batchSize : microBatch, learningRate: learningRate,
                                    labelSmoothing: labelSmoothing, augmentation: augmentation)
        if let level = trainAfter, cachedViews > 0 {
            try trainOnCachedActivations(model, level: level, data: data, preprocessing: preprocessing, recipe: recipe,
                                         optimizer: optimizer, options: options, train: train, context: context, rng: &rng)
        } else {
            try recipe.train(train: train, context: context, dataConfig: data, preprocessing: preprocessing,
                             optimizer: optimizer, rng: &rng) { x, tape, rng in
                var input = x
                if let level = trainAfter { input = tape.constant(try model.activations(x.value, upTo: level)) }
                return try model.logits(input, on: tape, startingAfter: trainAfter, options: options, rng: &rng)
            }
        }
        return (model, data, preprocessing)
    }
}

extension FineTuneMethod {
    /// Sets the classifier to a class-balanced logistic regression on the pooled features (as the network
    /// computes them, not normalised) of the un-augmented training images.
    func initializeHeadByLinearProbe(_ model: EfficientNetLite, data: DataConfig, preprocessing: TransformPipeline,
                                     train: [Int], context: MethodContext) throws {
        let decoder = ImageDecoder(), items = context.dataset.items
        var parts: [Tensor] = []
        for chunk in stride(from: 0, to: train.count, by: 32) {
            let idx = Array(train[chunk..<min(chunk + 32, train.count)])
            let images = try idx.map { preprocessing(try context.dataset.preparedImage(of: items[$0], decoder: decoder)) }
            parts.append(try model.features(data.batch(images), level: .head))
        }
        let fitted = LogisticRegression(c: 1).fit(Tensor.concatenate(rows: parts), labels: train.map { context.labels[$0] },
                                                  classes: context.classes)
        model.fc.weight.value = Tensor(shape: [context.classes, fitted.features], data: fitted.weights)
        model.fc.bias.value = Tensor(shape: [context.classes], data: fitted.intercepts)
    }

    /// Partial fine-tuning on cached trunk activations: `cachedViews` augmented views of every training image
    /// go through the frozen trunk (inference kernels) once; each step then draws a class-balanced batch of
    /// cached activations and trains only the layers above `level`.
    func trainOnCachedActivations(_ model: EfficientNetLite, level: FeatureLevel, data: DataConfig,
                                  preprocessing: TransformPipeline, recipe: TrainingRecipe, optimizer: Optimizer,
                                  options: ForwardOptions, train: [Int], context: MethodContext,
                                  rng: inout SeededGenerator) throws {
        var order: [Int] = []
        for _ in 0..<cachedViews { order += train }
        let loader = BatchLoader(dataset: context.dataset, items: context.dataset.items, order: order, batchSize: 32,
                                 dataConfig: data, preprocessing: preprocessing,
                                 augmentation: try TransformPipeline.augmentation(recipe.augmentation), seed: context.seed,
                                 imageCache: DecodedImageCache())
        var parts: [Tensor] = [], labels: [Int] = []
        while let batch = loader.nextBatch() {
            parts.append(try model.activations(batch.input, upTo: level))
            labels += batch.labels
            context.progress?("caching trunk activations", labels.count, order.count)
        }
        let cache = Tensor.concatenate(rows: parts)
        let steps = recipe.steps(trainCount: train.count)
        let schedule = WarmupCosineSchedule(peak: recipe.learningRate, totalSteps: steps, warmupFraction: 0.1)
        let byClass = Dictionary(grouping: labels.indices, by: { labels[$0] })
        let classes = byClass.keys.sorted()
        let trainable = optimizer.groups.flatMap(\.parameters)
        var first = 0
        if let checkpoint, let adam = optimizer as? AdamW, let saved = try checkpoint.restore(parameters: trainable, optimizer: adam) {
            (first, rng) = saved
            context.progress?("resuming after step", first, steps)
        }
        for step in first..<steps {
            optimizer.learningRate = schedule(step)
            optimizer.zeroGradients()
            // Class-balanced: batch slot s takes a random cached view of class s mod C.
            var rows: [Int] = []
            for s in 0..<recipe.batchSize {
                let pool = byClass[classes[(s + step) % classes.count]]!
                rows.append(pool[Int.random(in: 0..<pool.count, using: &rng)])
            }
            // Activations above the cache point are small: the whole batch at once — or, data-parallel, this
            // process's slice of it, with the gradients then summed over the processes.
            let window = context.reducer?.slice(of: rows.count) ?? 0..<rows.count
            let part = Array(rows[window])
            let tape = Tape(training: true)
            if context.reducer != nil { tape.rowWindow = (window.lowerBound, rows.count) }
            if !part.isEmpty {
                let logits = try model.logits(tape.constant(cache.rows(part)), on: tape, startingAfter: level,
                                              options: options, rng: &rng)
                let loss = tape.softmaxCrossEntropy(logits, labels: part.map { labels[$0] }, labelSmoothing: recipe.labelSmoothing)
                tape.backward(from: loss, seed: Tensor(shape: [], data: [Float(part.count) / Float(rows.count)]))
            }
            context.reducer?.reduce(optimizer)
            optimizer.step()
            context.progress?("training", step + 1, steps)
            if let checkpoint, let adam = optimizer as? AdamW, (step + 1) % checkpoint.every == 0, step + 1 < steps {
                try checkpoint.save(step: step + 1, rng: rng, parameters: trainable, optimizer: adam)
            }
        }
    }
}

/// Training a network end to end on the training images, shared by fine-tuning and training from scratch:
/// class-balanced sampling, an augmentation policy, linear warm-up then cosine decay, label smoothing,
/// gradients accumulated over micro-batches (same result, less memory, cache-friendlier).
public struct TrainingRecipe: Sendable {
    /// Passes over the (class-balanced) training set; steps = epochs · n / batch, at least `minimumSteps`.
    public var epochs: Int
    public var minimumSteps: Int
    public var batchSize: Int
    public var microBatch: Int
    public var learningRate: Float
    public var labelSmoothing: Float
    public var augmentation: String

    public init(epochs: Int, minimumSteps: Int, batchSize: Int, microBatch: Int, learningRate: Float,
                labelSmoothing: Float, augmentation: String) {
        self.epochs = epochs
        self.minimumSteps = minimumSteps
        self.batchSize = batchSize
        self.microBatch = microBatch
        self.learningRate = learningRate
        self.labelSmoothing = labelSmoothing
        self.augmentation = augmentation
    }

    public func steps(trainCount: Int) -> Int { max(minimumSteps, epochs * trainCount / batchSize) }

    /// Runs the optimisation; `logits(batchInput, tape, rng)` is the differentiable forward pass.
    public func train(train: [Int], context: MethodContext, dataConfig: DataConfig, preprocessing: TransformPipeline,
                      optimizer: Optimizer, rng: inout SeededGenerator,
                      logits: (Var, Tape, inout SeededGenerator) throws -> Var) throws {
        let steps = steps(trainCount: train.count)
        let schedule = WarmupCosineSchedule(peak: learningRate, totalSteps: steps, warmupFraction: 0.1)
        // Class-balanced sampling: every class equally often, whatever its count (balanced accuracy).
        let byClass = Dictionary(grouping: train, by: { context.labels[$0] })
        let classes = byClass.keys.sorted()
        var order: [Int] = []
        // Shuffle class by class in sorted order: `mapValues` would follow the dictionary's per-process hash
        // order and hand the random stream to the classes differently on every run (same seed, other result).
        var pools: [Int: [Int]] = [:]
        for c in classes { pools[c] = byClass[c]!.shuffled(using: &rng) }
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
        let augmentation = try TransformPipeline.augmentation(augmentation)
        let cache = DecodedImageCache()
        let batches = phasedBatches(order: order, context: context, dataConfig: dataConfig, preprocessing: preprocessing,
                                    augmentation: augmentation, cache: cache)
        var step = 0
        for batch in batches {
            optimizer.learningRate = schedule(step)
            optimizer.zeroGradients()
            let n = batch.labels.count
            for start in stride(from: 0, to: n, by: microBatch) {
                let part = start..<min(start + microBatch, n)
                let tape = Tape(training: true)
                let x = tape.constant(part.count == n ? batch.input : batch.input.slice(rows: part))
                let out = try logits(x, tape, &rng)
                let loss = tape.softmaxCrossEntropy(out, labels: Array(batch.labels[part]), labelSmoothing: labelSmoothing)
                tape.backward(from: loss, seed: Tensor(shape: [], data: [Float(part.count) / Float(n)]))
            }
            optimizer.step()
            step += 1
            context.progress?("training", step, steps)
        }
    }
}

extension TrainingRecipe {
    /// Batches prepared in phases: `phaseBatches` batches decoded and augmented on both cores, then handed
    /// to the engine while nothing else runs, then the next phase. A loader thread running beside oneDNN's
    /// OpenMP team stalls the team at every barrier while it holds a core (a cnn-mini step takes about twice
    /// as long), so preparing first and computing after is faster in total.
    func phasedBatches(order: [Int], context: MethodContext, dataConfig: DataConfig, preprocessing: TransformPipeline,
                       augmentation: TransformPipeline, cache: DecodedImageCache, phaseBatches: Int = 25) -> PhasedBatches {
        PhasedBatches(order: order, batchSize: batchSize, phaseBatches: phaseBatches) { part, offset in
            BatchLoader(dataset: context.dataset, items: context.dataset.items, order: part, batchSize: batchSize,
                        dataConfig: dataConfig, preprocessing: preprocessing, augmentation: augmentation,
                        seed: context.seed, workers: ProcessInfo.processInfo.activeProcessorCount,
                        prefetch: phaseBatches, imageCache: cache, batchOffset: offset)
        }
    }
}

/// A sequence of training batches made phase by phase (see `TrainingRecipe.phasedBatches`).
struct PhasedBatches: Sequence, IteratorProtocol {
    let order: [Int]
    let batchSize: Int
    let phaseBatches: Int
    let makeLoader: ([Int], Int) -> BatchLoader
    private var ready: [BatchLoader.Batch] = []
    private var nextBatch = 0

    init(order: [Int], batchSize: Int, phaseBatches: Int, makeLoader: @escaping ([Int], Int) -> BatchLoader) {
        self.order = order
        self.batchSize = batchSize
        self.phaseBatches = Swift.max(1, phaseBatches)
        self.makeLoader = makeLoader
    }

    mutating func next() -> BatchLoader.Batch? {
        if ready.isEmpty {
            let start = nextBatch * batchSize
            guard start < order.count else { return nil }
            let end = Swift.min(order.count, start + phaseBatches * batchSize)
            let loader = makeLoader(Array(order[start..<end]), nextBatch)
            while let b = loader.nextBatch() { ready.append(b) }
            ready.reverse()
        }
        nextBatch += 1
        return ready.popLast()
    }
}

/// Class probabilities of the test items, averaged over `views` dihedral orientations of each image.
func predictWithViews(test: [Int], context: MethodContext, dataConfig: DataConfig, preprocessing: TransformPipeline,
                      views: Int, classes: Int? = nil, logits: (Tensor) throws -> Tensor) throws -> Tensor {
    let k = classes ?? context.classes, items = context.dataset.items
    var out = Tensor(zeros: [test.count, k])
    let decoder = ImageDecoder()
    for chunk in stride(from: 0, to: test.count, by: 32) {
        let idx = Array(test[chunk..<min(chunk + 32, test.count)])
        let images = try idx.map { preprocessing(try context.dataset.preparedImage(of: items[$0], decoder: decoder)) }
        for v in 0..<views {
            let view = DihedralView(v)
            var l = try logits(dataConfig.batch(images.map { view($0) }))
            l.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: idx.count, columns: k) }
            out.withUnsafeMutableBufferPointer { o in
                for r in 0..<idx.count { for c in 0..<k { o[(chunk + r) * k + c] += l[flat: r * k + c] / Float(views) } }
            }
        }
    }
    return out
}

/// Training a small CNN from scratch (`SmallCNNConfig`): batch-statistics BN, AdamW, the shared recipe.
/// The from-scratch baseline the study asks for: what the images alone teach, without ImageNet.
public struct ScratchMethod: FittableMethod {
    public var config: SmallCNNConfig
    /// At least 400 steps of 16 whatever n: a few hundred images need steps, not epochs; far fewer steps cost
    /// accuracy, more gained little.
    public var recipe = TrainingRecipe(epochs: 30, minimumSteps: 400, batchSize: 16, microBatch: 16, learningRate: 2e-3,
                                       labelSmoothing: 0.1, augmentation: "cells")
    public var weightDecay: Float = 0.05
    public var testTimeAugmentation = true
    /// Central crop (fraction of the shorter side) before the net's resize, in training and prediction:
    /// at 64² a small cell in a wide field is a few pixels unless the field is cropped first.
    public var crop: Double = 1

    public init(_ config: SmallCNNConfig = .cbrTiny, augmentation: String = "cells", crop: Double = 1) {
        self.crop = crop
        self.config = config
        recipe.augmentation = augmentation
    }

    public var isExpensive: Bool { true }
    /// cnn-mini's kernels are too small for an OpenMP team: fold fits run side by side, a core each.
    public var fitsRunSideBySide: Bool { true }
    public var name: String {
        "scratch[\(config.name),\(recipe.augmentation),min\(recipe.minimumSteps)" + (recipe.batchSize != 16 ? ",bs\(recipe.batchSize)" : "")
            + (crop < 1 ? ",crop\(crop)" : "") + "]"
    }

    public func fit(train: [Int], context: MethodContext) throws -> any FittedClassifier {
        var rng = SeededGenerator(seed: context.seed, stream: "scratch")
        let model = SmallCNN(config, classes: context.classes, rng: &rng)
        let optimizer = AdamW([ParameterGroup(model.trainableParameters, weightDecay: weightDecay)], learningRate: recipe.learningRate)
        try recipe.train(train: train, context: context, dataConfig: config.dataConfig,
                         preprocessing: FittedNetwork.preprocessing(crop: crop),
                         optimizer: optimizer, rng: &rng) { x, tape, rng in try model.logits(x, on: tape, rng: &rng) }
        return FittedNetwork(model: model, views: testTimeAugmentation ? 8 : 1, crop: crop)
    }
}

/// A small CNN trained from scratch, predicting with its dihedral test-time views.
public struct FittedNetwork: FittedClassifier {
    public let model: SmallCNN
    public var views: Int
    /// The central crop it was trained on (1: the whole image).
    public var crop: Double

    public init(model: SmallCNN, views: Int, crop: Double = 1) {
        self.model = model
        self.views = views
        self.crop = crop
    }

    static func preprocessing(crop: Double) -> TransformPipeline {
        TransformPipeline(crop < 1 ? [CenterCrop(fraction: crop)] : [])
    }

    /// Adapts the network's batch-norm statistics to `items` (AdaBN, `SmallCNN.adaptNormalisation`), seen as
    /// they are predicted (crop and dihedral views). Modifies the shared model in place.
    /// `weights`: one per item, its share of the statistics.
    public func adaptNormalisation(to items: [Int], context: MethodContext, weights: [Float]? = nil) throws {
        var batches: [Tensor] = [], batchWeights: [[Float]] = []
        let k = model.classifier.weight.value.shape[0]
        var chunk = 0, view = 0
        _ = try predictWithViews(test: items, context: context, dataConfig: model.config.dataConfig,
                                 preprocessing: Self.preprocessing(crop: crop), views: views, classes: k) { batch in
            // Batches come chunk by chunk (32 items), each chunk once per view.
            batches.append(batch)
            if let weights { batchWeights.append(Array(weights[chunk..<(chunk + batch.shape[0])])) }
            view += 1
            if view == views { view = 0; chunk += batch.shape[0] }
            return Tensor(zeros: [batch.shape[0], k])
        }
        try model.adaptNormalisation(to: batches, weights: weights == nil ? nil : batchWeights)
    }

    public func probabilities(_ items: [Int], context: MethodContext) throws -> Tensor {
        try predictWithViews(test: items, context: context, dataConfig: model.config.dataConfig,
                             preprocessing: Self.preprocessing(crop: crop),
                             views: views, classes: model.classifier.weight.value.shape[0]) { try model.logits($0) }
    }
}
