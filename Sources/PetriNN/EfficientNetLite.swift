import Foundation
import PetriEngine

/// The architecture of an EfficientNet-Lite variant. None of this is in the checkpoint files: it comes from
/// TensorFlow's `efficientnet_lite_builder.py` (Lite = EfficientNet without squeeze-excite, ReLU6 instead of
/// swish, stem and head widths and the first/last stage depths not scaled).
public struct EfficientNetLiteConfig: Sendable, Hashable {
    public var name: String
    public var widthCoefficient: Double
    public var depthCoefficient: Double
    public var inputSize: Int
    public var dropout: Double
    public var batchNormEpsilon: Float = 1e-3

    /// (repeats, kernel, stride, expand ratio, in, out) of the seven stages before scaling (B0 = Lite0).
    static let baseStages: [(repeats: Int, kernel: Int, stride: Int, expand: Int, input: Int, output: Int)] = [
        (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
        (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320),
    ]

    public static let lite0 = EfficientNetLiteConfig(name: "efficientnet-lite0", widthCoefficient: 1.0,
                                                     depthCoefficient: 1.0, inputSize: 224, dropout: 0.2)
    public static let lite1 = EfficientNetLiteConfig(name: "efficientnet-lite1", widthCoefficient: 1.0,
                                                     depthCoefficient: 1.1, inputSize: 240, dropout: 0.2)
    public static let lite2 = EfficientNetLiteConfig(name: "efficientnet-lite2", widthCoefficient: 1.1,
                                                     depthCoefficient: 1.2, inputSize: 260, dropout: 0.3)

    /// Channels of the activations at a feature level (what `EfficientNetLite.channels(at:)` gives, without
    /// building the network).
    public func channels(at level: FeatureLevel) -> Int {
        switch level {
        case .stem: 32
        case let .stage(s): blocks.last { $0.stage == s - 1 }?.output ?? 0
        case .head: EfficientNetLite.featureWidth
        }
    }

    /// TensorFlow's channel rounding: to a multiple of 8, never more than 10% below the scaled width.
    func roundFilters(_ filters: Int) -> Int {
        let scaled = Double(filters) * widthCoefficient
        var rounded = max(8, Int(scaled + 4) / 8 * 8)
        if Double(rounded) < 0.9 * scaled { rounded += 8 }
        return rounded
    }

    /// One entry per MBConv block: (kernel, stride, expand ratio, in, out, stage index 0...6).
    public var blocks: [(kernel: Int, stride: Int, expand: Int, input: Int, output: Int, stage: Int)] {
        var out: [(Int, Int, Int, Int, Int, Int)] = []
        for (i, s) in Self.baseStages.enumerated() {
            let fixed = i == 0 || i == Self.baseStages.count - 1
            let repeats = fixed ? s.repeats : Int((depthCoefficient * Double(s.repeats)).rounded(.up))
            let input = i == 0 ? 32 : roundFilters(s.input)
            let output = roundFilters(s.output)
            for r in 0..<repeats {
                out.append((s.kernel, r == 0 ? s.stride : 1, s.expand, r == 0 ? input : output, output, i))
            }
        }
        return out.map { (kernel: $0.0, stride: $0.1, expand: $0.2, input: $0.3, output: $0.4, stage: $0.5) }
    }
}

/// Mobile inverted bottleneck: 1×1 expand → k×k depthwise → 1×1 project, ReLU6, residual when shapes allow.
public final class MBConvBlock: Module {
    public let expandConv: Conv2D?
    public let bn0: BatchNorm2D?
    public let depthwiseConv: Conv2D
    public let bn1: BatchNorm2D
    public let projectConv: Conv2D
    public let bn2: BatchNorm2D
    public let hasResidual: Bool

    public init(kernel: Int, stride: Int, expand: Int, input: Int, output: Int, epsilon: Float) {
        let hidden = input * expand
        if expand != 1 {
            expandConv = Conv2D(inChannels: input, outChannels: hidden, kernelSize: 1)
            bn0 = BatchNorm2D(channels: hidden, epsilon: epsilon)
        } else {
            expandConv = nil
            bn0 = nil
        }
        depthwiseConv = Conv2D(inChannels: hidden, outChannels: hidden, kernelSize: kernel, stride: stride,
                               groups: hidden)
        bn1 = BatchNorm2D(channels: hidden, epsilon: epsilon)
        projectConv = Conv2D(inChannels: hidden, outChannels: output, kernelSize: 1)
        bn2 = BatchNorm2D(channels: output, epsilon: epsilon)
        hasResidual = stride == 1 && input == output
    }

    public var namedParameters: [(String, Parameter)] {
        scoped("_expand_conv", expandConv) + scoped("_bn0", bn0) + scoped("_depthwise_conv", depthwiseConv)
            + scoped("_bn1", bn1) + scoped("_project_conv", projectConv) + scoped("_bn2", bn2)
    }
}

/// EfficientNet-Lite with PyTorch-checkpoint parameter names (`_conv_stem`, `_blocks.N...`, `_fc`).
///
/// Input: `[N, H, W, 3]` images normalised as in `dataConfig` (ImageNet weights: (x/255 − 0.5)/0.5).
public final class EfficientNetLite: Module {
    public let config: EfficientNetLiteConfig
    public let convStem: Conv2D
    public let bn0: BatchNorm2D
    public let blocks: [MBConvBlock]
    public let convHead: Conv2D
    public let bn1: BatchNorm2D
    public var fc: Linear
    /// Index of the last block of each of the seven stages.
    public let stageEnds: [Int]

    public static let featureWidth = 1280

    public init(_ config: EfficientNetLiteConfig, classes: Int = 1000) {
        self.config = config
        let eps = config.batchNormEpsilon
        convStem = Conv2D(inChannels: 3, outChannels: 32, kernelSize: 3, stride: 2)
        bn0 = BatchNorm2D(channels: 32, epsilon: eps)
        let specs = config.blocks
        blocks = specs.map {
            MBConvBlock(kernel: $0.kernel, stride: $0.stride, expand: $0.expand, input: $0.input, output: $0.output,
                        epsilon: eps)
        }
        stageEnds = (0..<7).map { s in specs.lastIndex { $0.stage == s }! }
        convHead = Conv2D(inChannels: specs.last!.output, outChannels: Self.featureWidth, kernelSize: 1)
        bn1 = BatchNorm2D(channels: Self.featureWidth, epsilon: eps)
        fc = Linear(inFeatures: Self.featureWidth, outFeatures: classes)
    }

    public var namedParameters: [(String, Parameter)] {
        var all = scoped("_conv_stem", convStem) + scoped("_bn0", bn0)
        for (i, b) in blocks.enumerated() { all += scoped("_blocks.\(i)", b) }
        return all + scoped("_conv_head", convHead) + scoped("_bn1", bn1) + scoped("_fc", fc)
    }

    /// Channels of the activations at a feature level.
    public func channels(at level: FeatureLevel) -> Int {
        switch level {
        case .stem: 32
        case let .stage(s): blocks[stageEnds[s - 1]].projectConv.outChannels
        case .head: Self.featureWidth
        }
    }

    // MARK: Inference (batch norm folded into the convolutions, activations fused)

    private lazy var stemUnit = FoldedConvBN(convStem, bn0, activation: .relu6)
    private lazy var headUnit = FoldedConvBN(convHead, bn1, activation: .relu6)
    private lazy var blockUnits: [(expand: FoldedConvBN?, depthwise: FoldedConvBN, project: FoldedConvBN)] =
        blocks.map { b in
            (b.expandConv.map { FoldedConvBN($0, b.bn0!, activation: .relu6) },
             FoldedConvBN(b.depthwiseConv, b.bn1, activation: .relu6),
             FoldedConvBN(b.projectConv, b.bn2, activation: .none))
        }

    /// Images per inference pass through the high-resolution layers (stem and stages 1–2, ≥ 56 px).
    /// Whole batches of full-resolution activations (32 × 112 × 112 × 96 floats = 154 MB) stream from memory
    /// at every layer; one image at a time stays in the L2/L3 caches (`make bench` measures the difference).
    public var earlyMicroBatch = 1
    /// Images per pass through the low-resolution layers, where larger batches make the 1×1 convolutions
    /// (matrix products with few rows at 7×7) more efficient and the activations are small.
    public var lateMicroBatch = 8

    /// The last block that runs at high resolution (end of stage 2).
    var earlyPhaseEnd: Int { stageEnds[1] }

    /// Activations `[N, h, w, C]` at `level` (inference mode).
    public func activations(_ images: Tensor, upTo level: FeatureLevel = .head) throws -> Tensor {
        precondition(images.rank == 4 && images.shape[3] == 3, "expects [N, H, W, 3] images, got \(images.shape)")
        let lastBlock: Int
        switch level {
        case .stem: lastBlock = -1
        case let .stage(s): lastBlock = stageEnds[s - 1]
        case .head: lastBlock = blocks.count - 1
        }
        let earlyEnd = min(lastBlock, earlyPhaseEnd)
        var x = try inChunks(images, of: earlyMicroBatch) { part in
            try self.runBlocks(self.stemUnit(part), 0..<(earlyEnd + 1))
        }
        if lastBlock > earlyEnd {
            x = try inChunks(x, of: lateMicroBatch) { part in try self.runBlocks(part, (earlyEnd + 1)..<(lastBlock + 1)) }
        }
        if level == .head { x = try inChunks(x, of: lateMicroBatch) { try self.headUnit($0) } }
        return x
    }

    private func inChunks(_ x: Tensor, of size: Int, _ body: (Tensor) throws -> Tensor) throws -> Tensor {
        let n = x.shape[0], step = max(1, size)
        if n <= step { return try body(x) }
        return Tensor.concatenate(rows: try stride(from: 0, to: n, by: step).map {
            try body(x.slice(rows: $0..<min($0 + step, n)))
        })
    }

    private func runBlocks(_ input: Tensor, _ range: Range<Int>) throws -> Tensor {
        var x = input
        for i in range {
            let unit = blockUnits[i]
            var h = x
            if let e = unit.expand { h = try e(h) }
            h = try unit.depthwise(h)
            // The residual add is fused into the projection (oneDNN sum post-op accumulates into x's buffer).
            x = try unit.project(h, accumulatingInto: blocks[i].hasResidual ? x : nil)
        }
        return x
    }

    /// Pooled features at several levels from one pass through the network: `[N, C_level]` per level.
    public func features(_ images: Tensor, levels: [FeatureLevel]) throws -> [FeatureLevel: Tensor] {
        precondition(!levels.isEmpty)
        func blockEnd(_ l: FeatureLevel) -> Int {
            switch l {
            case .stem: -1
            case let .stage(s): stageEnds[s - 1]
            case .head: blocks.count
            }
        }
        let deepest = levels.map(blockEnd).max()!
        var pooled: [FeatureLevel: [Tensor]] = [:]
        func capture(_ x: Tensor, after block: Int) {
            for l in levels where blockEnd(l) == block { pooled[l, default: []].append(globalAveragePool(x)) }
        }
        let earlyEnd = min(deepest, earlyPhaseEnd)
        var parts: [Tensor] = []
        let n = images.shape[0]
        for start in stride(from: 0, to: n, by: max(1, earlyMicroBatch)) {
            var x = try stemUnit(images.slice(rows: start..<min(start + max(1, earlyMicroBatch), n)))
            capture(x, after: -1)
            for i in 0..<(earlyEnd + 1) where i < blocks.count {
                x = try runBlocks(x, i..<(i + 1))
                capture(x, after: i)
            }
            parts.append(x)
        }
        if deepest > earlyEnd {
            let mid = Tensor.concatenate(rows: parts)
            for start in stride(from: 0, to: n, by: max(1, lateMicroBatch)) {
                var x = mid.slice(rows: start..<min(start + max(1, lateMicroBatch), n))
                for i in (earlyEnd + 1)..<min(deepest + 1, blocks.count) {
                    x = try runBlocks(x, i..<(i + 1))
                    capture(x, after: i)
                }
                if deepest == blocks.count { capture(try headUnit(x), after: blocks.count) }
            }
        }
        return pooled.mapValues { $0.count == 1 ? $0[0] : Tensor.concatenate(rows: $0) }
    }

    /// Globally average-pooled features `[N, C]` at `level` (1280-d at the head).
    public func features(_ images: Tensor, level: FeatureLevel = .head) throws -> Tensor {
        globalAveragePool(try activations(images, upTo: level))
    }

    /// ImageNet logits `[N, classes]` (inference; dropout is the identity).
    public func logits(_ images: Tensor) throws -> Tensor {
        fc(try features(images))
    }
}

/// Where features are taken from: the stem, the end of stage 1...7, or the 1280-d head.
public enum FeatureLevel: Hashable, Sendable, CustomStringConvertible {
    case stem
    case stage(Int)
    case head

    public init?(_ text: String) {
        switch text {
        case "stem": self = .stem
        case "head", "last": self = .head
        default:
            guard text.hasPrefix("stage"), let s = Int(text.dropFirst(5)), (1...7).contains(s) else { return nil }
            self = .stage(s)
        }
    }

    public var description: String {
        switch self {
        case .stem: "stem"
        case let .stage(s): "stage\(s)"
        case .head: "head"
        }
    }
}

/// Mean over H and W of NHWC activations: `[N, H, W, C]` → `[N, C]`.
public func globalAveragePool(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4)
    let n = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3]
    var out = Tensor(zeros: [n, c])
    let inv = 1 / Float(hw)
    out.withUnsafeMutableBufferPointer { o in
        x.withUnsafeBufferPointer { p in
            for i in 0..<n {
                let dst = o.baseAddress! + i * c
                for s in 0..<hw {
                    let src = p.baseAddress! + (i * hw + s) * c
                    for ch in 0..<c { dst[ch] += src[ch] }
                }
                for ch in 0..<c { dst[ch] *= inv }
            }
        }
    }
    return out
}

/// A convolution with its batch norm folded in (w' = w·γ/σ, b' = β − μ·γ/σ) and its activation fused,
/// for inference. Folded and packed weights are rebuilt only when a parameter changes.
final class FoldedConvBN {
    let conv: Conv2D
    let bn: BatchNorm2D
    let activation: FusedActivation
    private var foldedFrom: [Int] = []
    private var weight = Tensor(zeros: [0])
    private var bias = Tensor(zeros: [0])
    private var packed: PackedWeights?

    init(_ conv: Conv2D, _ bn: BatchNorm2D, activation: FusedActivation) {
        self.conv = conv
        self.bn = bn
        self.activation = activation
    }

    private func refold() {
        let versions = [conv.weight.version, bn.weight.version, bn.bias.version, bn.runningMean.version,
                        bn.runningVariance.version]
        if versions == foldedFrom { return }
        let (scale, shift) = bn.inferenceAffine()
        var w = conv.weight.value
        let perOut = w.count / scale.count
        w.withUnsafeMutableBufferPointer { p in
            for o in 0..<scale.count { for i in 0..<perOut { p[o * perOut + i] *= scale[o] } }
        }
        weight = w
        bias = Tensor(shape: [shift.count], data: shift)
        packed = nil
        foldedFrom = versions
    }

    func callAsFunction(_ x: Tensor, accumulatingInto residual: Tensor? = nil) throws -> Tensor {
        refold()
        let kernel = try Conv2DForward.make(conv.geometry(for: x.shape), bias: true, activation: activation,
                                            accumulate: residual != nil)
        if packed == nil || !kernel.accepts(packed!) { packed = kernel.pack(weight) }
        return kernel(x, weights: packed!, bias: bias, accumulatingInto: residual)
    }
}
