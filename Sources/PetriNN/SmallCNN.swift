import Foundation
import PetriEngine

/// The shape of a small conv-BN-ReLU network trained from scratch.
public struct SmallCNNConfig: Sendable, Hashable {
    public var name: String
    /// Output channels of each conv-BN-ReLU block; each block is followed by a stride-2 max pool.
    public var channels: [Int]
    public var kernelSize: Int
    /// Square input side in pixels (small: these nets train from nothing, on a CPU).
    public var inputSize: Int

    public init(name: String, channels: [Int], kernelSize: Int, inputSize: Int) {
        self.name = name
        self.channels = channels
        self.kernelSize = kernelSize
        self.inputSize = inputSize
    }

    /// In the spirit of Transfusion's CBR-Tiny (Raghu et al. 2019): four 5×5 conv-BN-ReLU-maxpool blocks,
    /// narrowed (16→128 channels) and at 96 px so that it trains in minutes on two cores (~0.1 GMAC).
    public static let cbrTiny = SmallCNNConfig(name: "cbr-tiny", channels: [16, 32, 64, 128], kernelSize: 5, inputSize: 96)
    /// CBR-Small's spirit: four 3×3 blocks, 32→256 channels, 96 px (~0.14 GMAC).
    public static let cbrSmall = SmallCNNConfig(name: "cbr-small", channels: [32, 64, 128, 256], kernelSize: 3, inputSize: 96)
    /// The original study's CNNMini: three 3×3 blocks, 16→64 channels, 64 px (~0.01 GMAC).
    public static let cnnMini = SmallCNNConfig(name: "cnn-mini", channels: [16, 32, 64], kernelSize: 3, inputSize: 64)

    public static let all = [cbrTiny, cbrSmall, cnnMini]

    public static func named(_ name: String) -> SmallCNNConfig? { all.first { $0.name == name } }

    /// Inputs in [-1, 1] like the EfficientNet-Lite backbones.
    public var dataConfig: DataConfig { DataConfig(inputSize: inputSize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]) }
}

/// A small CNN: [conv k×k → BN → ReLU → maxpool 3×3 s2] × blocks → global average pool → dropout → linear.
public final class SmallCNN: Module {
    public let config: SmallCNNConfig
    public let convs: [Conv2D]
    public let norms: [BatchNorm2D]
    public let classifier: Linear
    public var dropout: Float = 0.2

    public init(_ config: SmallCNNConfig, classes: Int, rng: inout SeededGenerator) {
        self.config = config
        var convs: [Conv2D] = [], norms: [BatchNorm2D] = []
        var inC = 3
        for c in config.channels {
            convs.append(Conv2D(inChannels: inC, outChannels: c, kernelSize: config.kernelSize))
            norms.append(BatchNorm2D(channels: c, epsilon: 1e-5, momentum: 0.1))
            inC = c
        }
        self.convs = convs
        self.norms = norms
        classifier = Linear(inFeatures: inC, outFeatures: classes)
        // He-normal convolutions (fan_out, as for ReLU nets), uniform ±1/√fan_in classifier.
        for conv in convs {
            let s = conv.weight.value.shape
            conv.weight.value = Tensor.normal(s, std: (2 / Float(s[0] * s[2] * s[3])).squareRoot(), using: &rng)
        }
        let bound = 1 / Float(inC).squareRoot()
        classifier.weight.value = Tensor.uniform([classes, inC], low: -bound, high: bound, using: &rng)
    }

    public var namedParameters: [(String, Parameter)] {
        var out: [(String, Parameter)] = []
        for i in convs.indices { out += scoped("conv\(i)", convs[i]) + scoped("bn\(i)", norms[i]) }
        return out + scoped("fc", classifier)
    }

    /// Logits `[N, classes]` for images `[N, S, S, 3]`. Training tapes use batch statistics (batches of
    /// 16–32 from scratch need them) and dropout; inference uses the running statistics.
    public func logits(_ x: Var, on tape: Tape, rng: inout SeededGenerator) throws -> Var {
        var h = x
        for i in convs.indices {
            h = try norms[i](convs[i](h, on: tape), on: tape, mode: .batch)
            // ReLU then max pool as one native kernel (relu∘max = max∘relu): a third of a step otherwise.
            h = tape.maxPool(h, kernel: 3, stride: 2, padding: 1, relu: true)
        }
        h = tape.globalAveragePool(h)
        if tape.training && dropout > 0 { h = tape.dropout(h, rate: dropout, using: &rng) }
        return classifier(h, on: tape)
    }

    /// AdaBN (Li et al. 2016): replaces every batch norm's running statistics by those of `batches` (images
    /// `[N, S, S, 3]` of another lab, no labels), layer by layer — each layer's statistics are taken after the
    /// layers below it were adapted. The learned γ, β and weights are kept. Modifies this network in place.
    ///
    /// `weights` (one per image of each batch): each image's share of the statistics — e.g. to count the classes
    /// of a skewed set evenly, as the training batches did.
    public func adaptNormalisation(to batches: [Tensor], weights: [[Float]]? = nil) throws {
        for i in convs.indices {
            let channels = norms[i].runningMean.value.count
            var sum = [Double](repeating: 0, count: channels), squares = sum
            var count = 0.0
            for (b, batch) in batches.enumerated() {
                let tape = Tape(training: false)
                var h = tape.constant(batch)
                for j in 0..<i {
                    h = try norms[j](convs[j](h, on: tape), on: tape, mode: .batch)
                    h = tape.maxPool(h, kernel: 3, stride: 2, padding: 1, relu: true)
                }
                let z = try convs[i](h, on: tape).value   // NHWC
                let values = z.scalars
                let perImage = values.count / max(1, z.shape[0])
                for (k, v) in values.enumerated() {
                    let c = k % channels
                    let w = Double(weights?[b][k / perImage] ?? 1)
                    sum[c] += w * Double(v)
                    squares[c] += w * Double(v) * Double(v)
                }
                for r in 0..<z.shape[0] { count += Double(weights?[b][r] ?? 1) * Double(perImage / channels) }
            }
            guard count > 1 else { return }
            let mean = sum.map { $0 / count }
            let variance = zip(squares, mean).map { max(0, $0 / count - $1 * $1) * count / (count - 1) }
            norms[i].runningMean.value = Tensor(shape: [channels], data: mean.map(Float.init))
            norms[i].runningVariance.value = Tensor(shape: [channels], data: variance.map(Float.init))
        }
    }

    /// Inference logits.
    public func logits(_ images: Tensor) throws -> Tensor {
        var rng = SeededGenerator(seed: 0)
        let tape = Tape(training: false)
        return try logits(tape.constant(images), on: tape, rng: &rng).value
    }
}
