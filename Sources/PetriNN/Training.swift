import Foundation
import PetriEngine

/// How batch norm behaves while training.
public enum BatchNormMode: String, Sendable, Codable {
    /// Normalise with each batch's statistics and update the running ones (standard training).
    case batch
    /// Normalise with the running (pretrained) statistics; γ and β still learn. The right choice for tiny
    /// batches, whose statistics are too noisy.
    case frozen
}

extension Conv2D {
    /// Differentiable convolution on a tape.
    public func callAsFunction(_ x: Var, on tape: Tape) throws -> Var {
        try tape.conv2d(x, tape.parameter(weight), geometry: geometry(for: x.shape))
    }
}

extension BatchNorm2D {
    public func callAsFunction(_ x: Var, on tape: Tape, mode: BatchNormMode) throws -> Var {
        let batchStats = tape.training && mode == .batch
        return try tape.batchNorm(x, scale: tape.parameter(weight), shift: tape.parameter(bias),
                                  runningMean: runningMean, runningVariance: runningVariance, epsilon: epsilon,
                                  momentum: momentum, useBatchStatistics: batchStats)
    }
}

/// Convolution → batch norm → activation on a tape. With running statistics (frozen BN, or evaluation)
/// the three run as one convolution with folded weights and a fused activation.
func convBatchNorm(_ conv: Conv2D, _ bn: BatchNorm2D, _ x: Var, on tape: Tape, mode: BatchNormMode,
                   activation: FusedActivation) throws -> Var {
    if tape.training && mode == .batch {
        let h = try bn(conv(x, on: tape), on: tape, mode: mode)
        switch activation {
        case .none: return h
        case .relu: return try tape.activation(h, .relu)
        case .relu6: return try tape.activation(h, .relu6)
        }
    }
    return try tape.convBatchNormFrozen(x, tape.parameter(conv.weight), geometry: conv.geometry(for: x.shape),
                                        scale: tape.parameter(bn.weight), shift: tape.parameter(bn.bias),
                                        mean: bn.runningMean.value, variance: bn.runningVariance.value,
                                        epsilon: bn.epsilon, activation: activation)
}

extension Linear {
    public func callAsFunction(_ x: Var, on tape: Tape) -> Var {
        tape.linear(x, weight: tape.parameter(weight), bias: tape.parameter(bias))
    }
}

/// Options of a differentiable EfficientNet forward pass.
public struct ForwardOptions {
    public var batchNorm: BatchNormMode = .batch
    /// Stochastic depth rate of the last block (scaled linearly from 0 for the first), as in EfficientNet.
    public var dropConnect: Float = 0.2
    public var dropout: Float = 0.2

    public init(batchNorm: BatchNormMode = .batch, dropConnect: Float = 0.2, dropout: Float = 0.2) {
        self.batchNorm = batchNorm
        self.dropConnect = dropConnect
        self.dropout = dropout
    }
}

extension MBConvBlock {
    public func callAsFunction(_ x: Var, on tape: Tape, options: ForwardOptions, dropConnect: Float,
                               rng: inout SeededGenerator) throws -> Var {
        var h = x
        let mode = options.batchNorm
        if let e = expandConv, let bn = bn0 { h = try convBatchNorm(e, bn, h, on: tape, mode: mode, activation: .relu6) }
        h = try convBatchNorm(depthwiseConv, bn1, h, on: tape, mode: mode, activation: .relu6)
        h = try convBatchNorm(projectConv, bn2, h, on: tape, mode: mode, activation: .none)
        guard hasResidual else { return h }
        return tape.add(tape.dropPath(h, rate: dropConnect, using: &rng), x)
    }
}

extension EfficientNetLite {
    /// The blocks after `level` (all blocks for nil = from the images).
    func blockRange(after level: FeatureLevel?) -> Range<Int> {
        switch level {
        case nil, .stem?: 0..<blocks.count
        case let .stage(s)?: (stageEnds[s - 1] + 1)..<blocks.count
        case .head?: blocks.count..<blocks.count
        }
    }

    /// Differentiable forward pass to pooled head features `[N, 1280]`.
    ///
    /// - Parameter start: where `input` comes from: nil for images `[N, H, W, 3]`, or a feature level whose
    ///   activations were computed (and cached) by a frozen trunk — then only the layers above it run,
    ///   which is what makes partial fine-tuning cheap.
    public func pooledFeatures(_ input: Var, on tape: Tape, startingAfter start: FeatureLevel? = nil,
                               options: ForwardOptions = ForwardOptions(),
                               rng: inout SeededGenerator) throws -> Var {
        var x = input
        if start == nil {
            x = try convBatchNorm(convStem, bn0, x, on: tape, mode: options.batchNorm, activation: .relu6)
        }
        if start != .head {
            for i in blockRange(after: start) {
                let rate = options.dropConnect * Float(i) / Float(blocks.count)
                x = try blocks[i](x, on: tape, options: options, dropConnect: rate, rng: &rng)
            }
            x = try convBatchNorm(convHead, bn1, x, on: tape, mode: options.batchNorm, activation: .relu6)
        }
        return tape.globalAveragePool(x)
    }

    /// Differentiable logits `[N, classes]` (dropout before the classifier in training mode).
    public func logits(_ input: Var, on tape: Tape, startingAfter start: FeatureLevel? = nil,
                       options: ForwardOptions = ForwardOptions(), rng: inout SeededGenerator) throws -> Var {
        let f = try pooledFeatures(input, on: tape, startingAfter: start, options: options, rng: &rng)
        return fc(tape.dropout(f, rate: options.dropout, using: &rng), on: tape)
    }

    /// Replaces the classifier with a freshly initialised one for `classes` outputs.
    public func resetClassifier(classes: Int, rng: inout SeededGenerator) -> Linear {
        let head = Linear(inFeatures: Self.featureWidth, outFeatures: classes)
        let bound = 1 / Float(Self.featureWidth).squareRoot()
        head.weight.value = Tensor.uniform([classes, Self.featureWidth], low: -bound, high: bound, using: &rng)
        return head
    }

    /// Parameters of the blocks after `level` plus the head convolution and its batch norm
    /// (everything a partial fine-tune of the top trains, classifier excluded).
    public func parameters(after level: FeatureLevel?) -> [Parameter] {
        var out: [Parameter] = []
        if level == nil { out += convStem.namedParameters.map(\.1) + bn0.namedParameters.map(\.1) }
        if level != .head {
            for i in blockRange(after: level) { out += blocks[i].namedParameters.map(\.1) }
            out += convHead.namedParameters.map(\.1) + bn1.namedParameters.map(\.1)
        }
        return out.filter(\.trainable)
    }
}

extension EfficientNetLite {
    /// TensorFlow EfficientNet's initialisation: convolutions N(0, 2/fan_out), batch norm γ = 1, β = 0 with
    /// unit running statistics, classifier U(±1/√fan_in). Used for training from scratch and for the
    /// random-feature control.
    public func initializeRandomly(using rng: inout SeededGenerator) {
        for (name, p) in namedParameters where p.trainable || name.hasSuffix("running_var") || name.hasSuffix("running_mean") {
            let shape = p.value.shape
            if name.hasSuffix("running_var") { p.value = Tensor(shape: shape, repeating: 1) }
            else if name.hasSuffix("running_mean") { p.value = Tensor(zeros: shape) }
            else if name.hasPrefix("_fc") {
                let bound = 1 / Float(shape.count == 2 ? shape[1] : 1).squareRoot()
                p.value = name.hasSuffix("weight") ? Tensor.uniform(shape, low: -bound, high: bound, using: &rng) : Tensor(zeros: shape)
            } else if shape.count == 4 {
                // fan_out = O · kH · kW / groups; depthwise weights have I/groups = 1.
                let fanOut = Float(shape[0] * shape[2] * shape[3]) / (shape[1] == 1 ? Float(shape[0]) : 1)
                p.value = Tensor.normal(shape, std: (2 / fanOut).squareRoot(), using: &rng)
            } else if name.hasSuffix("weight") { p.value = Tensor(shape: shape, repeating: 1) }
            else { p.value = Tensor(zeros: shape) }
        }
    }
}
