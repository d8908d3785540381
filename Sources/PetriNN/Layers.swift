import Foundation
import PetriEngine

/// Something with named parameters, like PyTorch's `state_dict` (names are dotted paths).
public protocol Module: AnyObject {
    /// Parameters and buffers with names relative to this module.
    var namedParameters: [(String, Parameter)] { get }
}

extension Module {
    /// Prefixes a child's names with `prefix.`.
    public func scoped(_ prefix: String, _ child: Module?) -> [(String, Parameter)] {
        guard let child else { return [] }
        return child.namedParameters.map { ("\(prefix).\($0.0)", $0.1) }
    }

    public var trainableParameters: [Parameter] { namedParameters.map(\.1).filter(\.trainable) }
}

/// A 2-D convolution over NHWC activations, without bias (EfficientNet's convolutions are all followed
/// by batch norm). Padding is TensorFlow "same", computed per input size.
public final class Conv2D: Module {
    /// `[O, I/groups, kH, kW]`
    public let weight: Parameter
    public let stride: Int
    public let groups: Int

    public init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1, groups: Int = 1) {
        self.weight = Parameter(Tensor(zeros: [outChannels, inChannels / groups, kernelSize, kernelSize]))
        self.stride = stride
        self.groups = groups
    }

    public var namedParameters: [(String, Parameter)] { [("weight", weight)] }
    public var outChannels: Int { weight.value.shape[0] }
    public var inChannels: Int { weight.value.shape[1] * groups }
    public var kernelSize: Int { weight.value.shape[2] }

    /// The geometry of this layer on an input of shape `[N, H, W, C]`.
    public func geometry(for inputShape: [Int]) -> Conv2DGeometry {
        precondition(inputShape.count == 4 && inputShape[3] == inChannels,
                     "Conv2D expects [N, H, W, \(inChannels)], got \(inputShape)")
        let k = kernelSize
        let ph = Conv2DGeometry.samePadding(input: inputShape[1], kernel: k, stride: stride)
        let pw = Conv2DGeometry.samePadding(input: inputShape[2], kernel: k, stride: stride)
        return Conv2DGeometry(batch: inputShape[0], height: inputShape[1], width: inputShape[2],
                              inChannels: inChannels, outChannels: outChannels, kernelHeight: k, kernelWidth: k,
                              strideHeight: stride, strideWidth: stride, padTop: ph.before, padBottom: ph.after,
                              padLeft: pw.before, padRight: pw.after, groups: groups)
    }
}

/// Batch normalisation over the channel axis of NHWC activations.
public final class BatchNorm2D: Module {
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Parameter
    public let runningVariance: Parameter
    public let batchesTracked: Parameter
    public let epsilon: Float
    /// PyTorch convention: new = (1 - momentum)·old + momentum·batch.
    public let momentum: Float

    public init(channels: Int, epsilon: Float = 1e-3, momentum: Float = 0.01) {
        weight = Parameter(Tensor(shape: [channels], repeating: 1))
        bias = Parameter(Tensor(zeros: [channels]))
        runningMean = Parameter(Tensor(zeros: [channels]), trainable: false)
        runningVariance = Parameter(Tensor(shape: [channels], repeating: 1), trainable: false)
        batchesTracked = Parameter(Tensor(zeros: []), trainable: false)
        self.epsilon = epsilon
        self.momentum = momentum
    }

    public var namedParameters: [(String, Parameter)] {
        [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVariance),
         ("num_batches_tracked", batchesTracked)]
    }

    /// Per-channel (scale, shift) so that inference BN is y = scale·x + shift.
    public func inferenceAffine() -> (scale: [Float], shift: [Float]) {
        let g = weight.value.scalars, b = bias.value.scalars
        let m = runningMean.value.scalars, v = runningVariance.value.scalars
        var scale = [Float](repeating: 0, count: g.count), shift = scale
        for c in 0..<g.count {
            scale[c] = g[c] / (v[c] + epsilon).squareRoot()
            shift[c] = b[c] - m[c] * scale[c]
        }
        return (scale, shift)
    }
}

/// y = x·Wᵀ + b for x of shape `[N, in]`; W is `[out, in]` as in PyTorch.
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter

    public init(inFeatures: Int, outFeatures: Int) {
        weight = Parameter(Tensor(zeros: [outFeatures, inFeatures]))
        bias = Parameter(Tensor(zeros: [outFeatures]))
    }

    public var namedParameters: [(String, Parameter)] { [("weight", weight), ("bias", bias)] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let n = x.shape[0], inF = weight.value.shape[1], outF = weight.value.shape[0]
        precondition(x.shape == [n, inF], "Linear expects [N, \(inF)], got \(x.shape)")
        var y = Tensor(uninitialized: [n, outF])
        let b = bias.value.scalars
        y.withUnsafeMutableBufferPointer { yp in
            for i in 0..<n { for j in 0..<outF { yp[i * outF + j] = b[j] } }
            x.withUnsafeBufferPointer { xp in
                weight.value.withUnsafeBufferPointer { wp in
                    sgemm(transposeA: false, transposeB: true, m: n, n: outF, k: inF, a: xp.baseAddress!, lda: inF,
                          b: wp.baseAddress!, ldb: inF, beta: 1, c: yp.baseAddress!, ldc: outF)
                }
            }
        }
        return y
    }
}

/// Errors met when mapping checkpoint tensors onto a module.
public struct WeightLoadingError: Error, CustomStringConvertible {
    public var file: String
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var misshaped: [(name: String, expected: [Int], found: [Int])] = []

    public var description: String {
        var lines = ["\(file): the checkpoint does not fit the model:"]
        if !missing.isEmpty { lines.append("  missing (\(missing.count)): " + missing.prefix(8).joined(separator: ", ")) }
        if !unexpected.isEmpty {
            lines.append("  unexpected (\(unexpected.count)): " + unexpected.prefix(8).joined(separator: ", "))
        }
        for m in misshaped.prefix(8) { lines.append("  \(m.name): model expects \(m.expected), file has \(m.found)") }
        return lines.joined(separator: "\n")
    }
}

extension Module {
    /// Copies every tensor of `checkpoint` into the parameter of the same name. All names must match
    /// and all shapes agree (names listed in `ignoring` may be absent or unexpected), else nothing is changed.
    public func load(_ checkpoint: Checkpoint, ignoring: Set<String> = []) throws {
        var error = WeightLoadingError(file: checkpoint.file)
        let params = Dictionary(namedParameters, uniquingKeysWith: { a, _ in a })
        var assignments: [(Parameter, Tensor)] = []
        for t in checkpoint.tensors where !ignoring.contains(t.name) {
            guard let p = params[t.name] else { error.unexpected.append(t.name); continue }
            guard p.value.shape == t.shape else {
                error.misshaped.append((t.name, p.value.shape, t.shape)); continue
            }
            assignments.append((p, t.tensor))
        }
        let present = Set(checkpoint.tensors.map(\.name))
        error.missing = namedParameters.map(\.0).filter { !present.contains($0) && !ignoring.contains($0) }
        guard error.missing.isEmpty, error.unexpected.isEmpty, error.misshaped.isEmpty else { throw error }
        for (p, t) in assignments { p.value = t }
    }
}
