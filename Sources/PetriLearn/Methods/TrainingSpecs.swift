import Foundation
import PetriNN

/// Fine-tuning an EfficientNet-Lite (`FineTuneMethod`): `finetune` (every layer), `partial` (above stage 5, on
/// cached trunk activations), `scratch-lite0` (the architecture from random weights).
///
/// Text: `finetune:b=lite0:e=30:min=100:c=0.5:aug=cells:lr=0.001:body=0.1:after=stage5:bs=16:views=8:lpft=1:tta=1`.
public struct FineTuneSpec: Hashable, Sendable {
    public var backbone: String
    /// nil: every layer trains.
    public var trainAfter: FeatureLevel?
    public var epochs = 15
    public var minimumSteps = 40
    public var crop = 1.0
    /// A policy name or canonical steps joined by `+` (`ImageStepsText.augmentation`).
    public var augmentation = "cells"
    public var learningRate: Float = 1e-3
    public var bodyLearningRateScale: Float = 0.1
    public var batchSize = 16
    public var cachedViews = 8
    public var linearProbeHead = true
    public var testTimeAugmentation = true
    public var pretrained = true
    public var batchNorm = BatchNormMode.frozen

    public init(backbone: String = defaultBackbone, trainAfter: FeatureLevel? = nil) {
        self.backbone = backbone
        self.trainAfter = trainAfter
    }

    /// The same architecture from random initialisation, trained with batch statistics.
    public static func randomInit(backbone: String) -> FineTuneSpec {
        var s = FineTuneSpec(backbone: backbone)
        s.pretrained = false
        s.batchNorm = .batch
        s.learningRate = 2e-3
        s.bodyLearningRateScale = 1
        s.minimumSteps = 200
        return s
    }

    public func method() throws -> FineTuneMethod {
        var m = FineTuneMethod(backbone: backbone, trainAfter: trainAfter, augmentation: ImageStepsText.pipelineText(augmentation))
        m.epochs = epochs
        m.minimumSteps = minimumSteps
        m.crop = crop
        m.learningRate = learningRate
        m.bodyLearningRateScale = bodyLearningRateScale
        m.batchSize = batchSize
        m.cachedViews = cachedViews
        m.linearProbeHead = linearProbeHead
        m.testTimeAugmentation = testTimeAugmentation
        m.pretrained = pretrained
        m.batchNorm = batchNorm
        return m
    }
}

extension FineTuneSpec: KeyedSpec {
    static func bases(backbone: String) -> [(keyword: String, value: FineTuneSpec)] {
        [("finetune", FineTuneSpec(backbone: backbone)), ("partial", FineTuneSpec(backbone: backbone, trainAfter: .stage(5))),
         ("scratch-lite0", randomInit(backbone: backbone))]
    }

    var keys: [SpecKey<FineTuneSpec>] {
        [
            SpecKey(name: "b", allowed: "one backbone: lite0, lite1, lite2 or a trained backbone's name",
                    text: { [SpecText.backbone($0.backbone)] },
                    set: { s, t in
                        s.backbone = try SpecText.readBackbone(t)
                        if s.backbone.hasPrefix("random:") { throw SpecProblem("use pretrained=0 for random weights") }
                    }),
            SpecKey(name: "after", allowed: "train only above stem, stage1…stage7; none: every layer",
                    text: { [$0.trainAfter?.description ?? "none"] },
                    set: { s, t in
                        if t == "none" { s.trainAfter = nil; return }
                        guard let l = FeatureLevel(t), l != .head else { throw SpecProblem("unknown level") }
                        s.trainAfter = l
                    }),
            SpecKey(name: "e", allowed: "epochs, 1…10000", text: { [String($0.epochs)] },
                    set: { $0.epochs = try SpecText.integer($1, 1...10_000) }),
            SpecKey(name: "min", allowed: "at least this many steps, 0…1000000", text: { [String($0.minimumSteps)] },
                    set: { $0.minimumSteps = try SpecText.integer($1, 0...1_000_000) }),
            SpecKey(name: "c", allowed: "central-crop fraction in (0, 1]", text: { [SpecText.number($0.crop)] },
                    set: { $0.crop = try SpecText.real($1, above: 0, through: 1) }),
            SpecKey(name: "aug", allowed: "none, light, cells, ultrasound, or transform steps joined by '+'",
                    text: { [$0.augmentation] }, set: { $0.augmentation = try ImageStepsText.augmentation($1) }),
            SpecKey(name: "lr", allowed: "learning rate in (0, 10]", text: { [SpecText.number($0.learningRate)] },
                    set: { $0.learningRate = Float(try SpecText.real($1, above: 0, through: 10)) }),
            SpecKey(name: "body", allowed: "body learning rate as a fraction of the head's, (0, 1]",
                    text: { [SpecText.number($0.bodyLearningRateScale)] },
                    set: { $0.bodyLearningRateScale = Float(try SpecText.real($1, above: 0, through: 1)) }),
            SpecKey(name: "bs", allowed: "batch size, 1…1024", text: { [String($0.batchSize)] },
                    set: { $0.batchSize = try SpecText.integer($1, 1...1024) }),
            SpecKey(name: "views", allowed: "augmented views cached per image (partial), 1…64", text: { [String($0.cachedViews)] },
                    set: { $0.cachedViews = try SpecText.integer($1, 1...64) }),
            SpecKey(name: "lpft", allowed: "0 or 1", text: { [$0.linearProbeHead ? "1" : "0"] },
                    set: { $0.linearProbeHead = try SpecText.flag($1) }),
            SpecKey(name: "tta", allowed: "0 or 1", text: { [$0.testTimeAugmentation ? "1" : "0"] },
                    set: { $0.testTimeAugmentation = try SpecText.flag($1) }),
            SpecKey(name: "pretrained", allowed: "0 or 1", text: { [$0.pretrained ? "1" : "0"] },
                    set: { $0.pretrained = try SpecText.flag($1) }),
            SpecKey(name: "bn", allowed: "frozen or batch", text: { [$0.batchNorm.rawValue] },
                    set: { $0.batchNorm = BatchNormMode(rawValue: try SpecText.oneOf($1, ["frozen", "batch"]))! }),
        ]
    }
}

/// A small CNN trained from scratch (`ScratchMethod`): `scratch` (CBR-Tiny-like), `scratch-small`, `scratch-mini`.
///
/// Text: `scratch:net=cbr-small:min=600:e=40:aug=cells:lr=0.002:bs=16:c=0.4`.
public struct ScratchSpec: Hashable, Sendable {
    public var net: String
    public var minimumSteps = 400
    public var epochs = 30
    public var augmentation = "cells"
    public var learningRate: Float = 2e-3
    public var batchSize = 16
    public var crop = 1.0

    public init(net: String = SmallCNNConfig.cbrTiny.name, crop: Double = 1) {
        self.net = net
        self.crop = crop
    }

    public func method() throws -> ScratchMethod {
        guard let config = SmallCNNConfig.named(net) else { throw SpecProblem("unknown net '\(net)'") }
        var m = ScratchMethod(config, augmentation: ImageStepsText.pipelineText(augmentation), crop: crop)
        m.recipe.minimumSteps = minimumSteps
        m.recipe.epochs = epochs
        m.recipe.learningRate = learningRate
        m.recipe.batchSize = batchSize
        m.recipe.microBatch = batchSize
        return m
    }
}

extension ScratchSpec: KeyedSpec {
    static func bases(backbone: String) -> [(keyword: String, value: ScratchSpec)] {
        [("scratch", ScratchSpec(net: SmallCNNConfig.cbrTiny.name)), ("scratch-small", ScratchSpec(net: SmallCNNConfig.cbrSmall.name)),
         ("scratch-mini", ScratchSpec(net: SmallCNNConfig.cnnMini.name))]
    }

    var keys: [SpecKey<ScratchSpec>] {
        [
            SpecKey(name: "net", allowed: SmallCNNConfig.all.map(\.name).joined(separator: ", "), text: { [$0.net] },
                    set: { $0.net = try SpecText.oneOf($1, SmallCNNConfig.all.map(\.name)) }),
            SpecKey(name: "min", allowed: "at least this many steps, 0…1000000", text: { [String($0.minimumSteps)] },
                    set: { $0.minimumSteps = try SpecText.integer($1, 0...1_000_000) }),
            SpecKey(name: "e", allowed: "epochs, 1…10000", text: { [String($0.epochs)] },
                    set: { $0.epochs = try SpecText.integer($1, 1...10_000) }),
            SpecKey(name: "aug", allowed: "none, light, cells, ultrasound, or transform steps joined by '+'",
                    text: { [$0.augmentation] }, set: { $0.augmentation = try ImageStepsText.augmentation($1) }),
            SpecKey(name: "lr", allowed: "learning rate in (0, 10]", text: { [SpecText.number($0.learningRate)] },
                    set: { $0.learningRate = Float(try SpecText.real($1, above: 0, through: 10)) }),
            SpecKey(name: "bs", allowed: "batch size, 1…1024", text: { [String($0.batchSize)] },
                    set: { $0.batchSize = try SpecText.integer($1, 1...1024) }),
            SpecKey(name: "c", allowed: "central-crop fraction in (0, 1]", text: { [SpecText.number($0.crop)] },
                    set: { $0.crop = try SpecText.real($1, above: 0, through: 1) }),
        ]
    }
}
