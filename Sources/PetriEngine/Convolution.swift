import CDNNL
import Foundation

/// The full geometry of a 2-D convolution over NHWC activations, with asymmetric padding
/// (TensorFlow's "same" padding puts the extra row/column at the bottom/right).
public struct Conv2DGeometry: Hashable, Sendable, CustomStringConvertible {
    public var batch: Int
    public var height: Int
    public var width: Int
    public var inChannels: Int
    public var outChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var padTop: Int
    public var padBottom: Int
    public var padLeft: Int
    public var padRight: Int
    public var groups: Int

    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, strideHeight: Int = 1, strideWidth: Int = 1,
                padTop: Int = 0, padBottom: Int = 0, padLeft: Int = 0, padRight: Int = 0, groups: Int = 1) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0, "channels not divisible by groups")
        self.batch = batch; self.height = height; self.width = width
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight; self.strideWidth = strideWidth
        self.padTop = padTop; self.padBottom = padBottom; self.padLeft = padLeft; self.padRight = padRight
        self.groups = groups
    }

    /// TensorFlow "same" padding: output = ceil(input / stride); the odd extra pad goes bottom/right.
    public static func samePadding(input: Int, kernel: Int, stride: Int) -> (before: Int, after: Int) {
        let out = (input + stride - 1) / stride
        let total = max((out - 1) * stride + kernel - input, 0)
        return (total / 2, total - total / 2)
    }

    public var outHeight: Int { (height + padTop + padBottom - kernelHeight) / strideHeight + 1 }
    public var outWidth: Int { (width + padLeft + padRight - kernelWidth) / strideWidth + 1 }
    public var inputShape: [Int] { [batch, height, width, inChannels] }
    public var outputShape: [Int] { [batch, outHeight, outWidth, outChannels] }
    public var weightShape: [Int] { [outChannels, inChannels / groups, kernelHeight, kernelWidth] }
    /// Multiply-accumulates ×2 for one forward pass.
    public var flops: Double {
        2 * Double(batch * outHeight * outWidth * outChannels) * Double(inChannels / groups * kernelHeight * kernelWidth)
    }

    public var description: String {
        "conv \(kernelHeight)×\(kernelWidth)/\(strideHeight) \(inChannels)→\(outChannels) g\(groups) at \(batch)×\(height)×\(width)"
    }

    var sourceDescriptor: MemoryDescriptor { .nhwc(n: batch, h: height, w: width, c: inChannels) }
    var destinationDescriptor: MemoryDescriptor { .nhwc(n: batch, h: outHeight, w: outWidth, c: outChannels) }
    /// Weights in Petri's storage order ([O, I/g, kH, kW] = oihw, or goihw when grouped).
    var plainWeightsDescriptor: MemoryDescriptor {
        groups == 1
            ? MemoryDescriptor(dims: weightShape, tag: dnnl_oihw)
            : MemoryDescriptor(dims: [groups, outChannels / groups, inChannels / groups, kernelHeight, kernelWidth],
                               tag: dnnl_goihw)
    }
    /// "Let the primitive choose": plain weights with NHWC data select a reference kernel (see DNNLError).
    var anyWeightsDescriptor: MemoryDescriptor {
        groups == 1
            ? MemoryDescriptor(dims: weightShape, tag: dnnl_format_tag_any)
            : MemoryDescriptor(dims: [groups, outChannels / groups, inChannels / groups, kernelHeight, kernelWidth],
                               tag: dnnl_format_tag_any)
    }
    var strides: [Int] { [strideHeight, strideWidth] }
    var padLow: [Int] { [padTop, padLeft] }
    var padHigh: [Int] { [padBottom, padRight] }
}

/// Convolution weights reordered into the layout a particular kernel wants. Reordering is done once per
/// weight update, not per call.
public final class PackedWeights: @unchecked Sendable {
    let storage: TensorStorage
    let layout: MemoryDescriptor

    init(storage: TensorStorage, layout: MemoryDescriptor) {
        self.storage = storage
        self.layout = layout
    }
}

/// A convolution forward kernel for one geometry, with optional bias, accumulation into the output
/// (a fused residual add) and a fused activation. Kernels are cached by their configuration.
public final class Conv2DForward: @unchecked Sendable {
    struct Key: Hashable {
        let geometry: Conv2DGeometry
        let bias: Bool
        let activation: FusedActivation
        let accumulate: Bool
        let training: Bool
        /// Kernels are per compute lane (`ComputeLanes`): oneDNN fixes a kernel's thread count at creation.
        var lane = ComputeLanes.current
    }

    public let geometry: Conv2DGeometry
    public let hasBias: Bool
    public let accumulates: Bool
    let primitive: Primitive
    let weightsLayout: MemoryDescriptor
    private let packWeights: Reorder

    public var implementation: String { primitive.implementation }

    private nonisolated(unsafe) static var cache: [Key: Conv2DForward] = [:]
    private static let cacheLock = NSLock()

    /// The (cached) kernel for this configuration. `training` selects oneDNN's forward-training propagation,
    /// which backward kernels need as a hint.
    public static func make(_ geometry: Conv2DGeometry, bias: Bool, activation: FusedActivation = .none,
                            accumulate: Bool = false, training: Bool = false) throws -> Conv2DForward {
        let key = Key(geometry: geometry, bias: bias, activation: activation, accumulate: accumulate,
                      training: training)
        if let k = cacheLock.withLock({ cache[key] }) { return k }
        let k = try Conv2DForward(key)
        cacheLock.withLock { cache[key] = k }
        return k
    }

    private init(_ key: Key) throws {
        let g = key.geometry
        geometry = g
        hasBias = key.bias
        accumulates = key.accumulate
        var desc = try OpDescriptors.convolution(
            prop: key.training ? dnnl_forward_training : dnnl_forward_inference,
            src: g.sourceDescriptor, weights: g.anyWeightsDescriptor,
            bias: key.bias ? MemoryDescriptor(dims: [g.outChannels], tag: dnnl_a) : nil,
            dst: g.destinationDescriptor, strides: g.strides, padLow: g.padLow, padHigh: g.padHigh)
        let attr = try makeAttributes(accumulate: key.accumulate, activation: key.activation)
        defer { dnnl_primitive_attr_destroy(attr) }
        primitive = try Primitive(opDesc: &desc, attr: attr, operation: "convolution (\(g))")
        weightsLayout = primitive.memoryDescriptor(dnnl_query_weights_md)
        packWeights = try Reorder(from: g.plainWeightsDescriptor, to: weightsLayout)
    }

    /// Reorders `[O, I/g, kH, kW]` weights into this kernel's layout.
    public func pack(_ weights: Tensor) -> PackedWeights {
        precondition(weights.shape == geometry.weightShape,
                     "weights \(weights.shape) do not fit \(geometry) (expected \(geometry.weightShape))")
        let storage = TensorStorage(count: weightsLayout.byteCount / 4)
        weights.withUnsafeBufferPointer { packWeights(UnsafeRawPointer($0.baseAddress!), storage.pointer) }
        return PackedWeights(storage: storage, layout: weightsLayout)
    }

    /// Whether `packed` is already in this kernel's layout (so it can be reused across batch sizes).
    public func accepts(_ packed: PackedWeights) -> Bool { packed.layout == weightsLayout }

    /// y = act(conv(x, w) + b [+ y]). With `accumulate`, `output` must hold the tensor to add.
    public func callAsFunction(_ x: Tensor, weights: PackedWeights, bias: Tensor? = nil,
                               accumulatingInto output: Tensor? = nil) -> Tensor {
        precondition(x.shape == geometry.inputShape, "input \(x.shape) does not fit \(geometry)")
        precondition(accepts(weights), "weights packed for another kernel layout")
        precondition(hasBias == (bias != nil), "bias presence differs from the kernel's")
        var y: Tensor
        if accumulates {
            guard let o = output, o.shape == geometry.outputShape else {
                preconditionFailure("accumulating convolution needs an output of shape \(geometry.outputShape)")
            }
            y = o
            y.makeUnique()
        } else {
            y = Tensor(uninitialized: geometry.outputShape)
        }
        var args: [(arg: Int32, pointer: UnsafeMutableRawPointer)] = [
            (Arg.src, UnsafeMutableRawPointer(x.storage.pointer)),
            (Arg.weights, UnsafeMutableRawPointer(weights.storage.pointer)),
            (Arg.dst, UnsafeMutableRawPointer(y.storage.pointer)),
        ]
        if let b = bias {
            precondition(b.count == geometry.outChannels)
            args.append((Arg.bias, UnsafeMutableRawPointer(b.storage.pointer)))
        }
        primitive.execute(args)
        return y
    }
}

/// Backward kernels of a convolution for one geometry: gradients with respect to the input, the weights
/// and (with `bias`) the bias, in Petri's plain layouts.
public final class Conv2DBackward: @unchecked Sendable {
    struct Key: Hashable { let geometry: Conv2DGeometry; let bias: Bool; var lane = ComputeLanes.current }
    public let geometry: Conv2DGeometry
    public let hasBias: Bool
    let forward: Primitive
    let data: Primitive
    let weights: Primitive
    let dataWeightsLayout: MemoryDescriptor
    let diffWeightsLayout: MemoryDescriptor
    private let packForData: Reorder
    private let unpackDiffWeights: Reorder?

    private nonisolated(unsafe) static var cache: [Key: Conv2DBackward] = [:]
    private static let cacheLock = NSLock()

    public static func make(_ g: Conv2DGeometry, bias: Bool = false) throws -> Conv2DBackward {
        let key = Key(geometry: g, bias: bias)
        if let k = cacheLock.withLock({ cache[key] }) { return k }
        let k = try Conv2DBackward(g, bias: bias)
        cacheLock.withLock { cache[key] = k }
        return k
    }

    private init(_ g: Conv2DGeometry, bias: Bool) throws {
        geometry = g
        hasBias = bias
        let biasDescriptor = bias ? MemoryDescriptor(dims: [g.outChannels], tag: dnnl_a) : nil
        var fwdDesc = try OpDescriptors.convolution(
            prop: dnnl_forward_training, src: g.sourceDescriptor, weights: g.anyWeightsDescriptor, bias: biasDescriptor,
            dst: g.destinationDescriptor, strides: g.strides, padLow: g.padLow, padHigh: g.padHigh)
        forward = try Primitive(opDesc: &fwdDesc, attr: nil, operation: "convolution forward-training (\(g))")
        var dataDesc = try OpDescriptors.convolutionBackwardData(
            diffSrc: g.sourceDescriptor, weights: g.anyWeightsDescriptor, diffDst: g.destinationDescriptor,
            strides: g.strides, padLow: g.padLow, padHigh: g.padHigh)
        data = try Primitive(opDesc: &dataDesc, attr: nil, hint: forward.descriptor,
                             operation: "convolution backward-data (\(g))")
        var weightsDesc = try OpDescriptors.convolutionBackwardWeights(
            src: g.sourceDescriptor, diffWeights: g.anyWeightsDescriptor, diffBias: biasDescriptor,
            diffDst: g.destinationDescriptor, strides: g.strides, padLow: g.padLow, padHigh: g.padHigh)
        weights = try Primitive(opDesc: &weightsDesc, attr: nil, hint: forward.descriptor,
                                operation: "convolution backward-weights (\(g))")
        dataWeightsLayout = data.memoryDescriptor(dnnl_query_weights_md)
        diffWeightsLayout = weights.memoryDescriptor(dnnl_query_diff_weights_md)
        packForData = try Reorder(from: g.plainWeightsDescriptor, to: dataWeightsLayout)
        unpackDiffWeights = diffWeightsLayout == g.plainWeightsDescriptor
            ? nil : try Reorder(from: diffWeightsLayout, to: g.plainWeightsDescriptor)
    }

    /// ∂L/∂x for upstream gradient `dy` `[N, oH, oW, O]` and weights `[O, I/g, kH, kW]`.
    public func inputGradient(_ dy: Tensor, weights w: Tensor) -> Tensor {
        precondition(dy.shape == geometry.outputShape && w.shape == geometry.weightShape)
        let packed = TensorStorage(count: dataWeightsLayout.byteCount / 4)
        w.withUnsafeBufferPointer { packForData(UnsafeRawPointer($0.baseAddress!), packed.pointer) }
        let dx = Tensor(uninitialized: geometry.inputShape)
        data.execute([(Arg.diffDst, UnsafeMutableRawPointer(dy.storage.pointer)),
                      (Arg.weights, UnsafeMutableRawPointer(packed.pointer)),
                      (Arg.diffSrc, UnsafeMutableRawPointer(dx.storage.pointer))])
        return dx
    }

    /// ∂L/∂w `[O, I/g, kH, kW]` for input `x` and upstream gradient `dy`.
    public func weightGradient(_ dy: Tensor, input x: Tensor) -> Tensor {
        precondition(!hasBias, "use weightAndBiasGradient for a kernel with bias")
        return weightAndBiasGradient(dy, input: x).weights
    }

    /// ∂L/∂w and ∂L/∂b (= Σ dy over N, H, W; nil without bias).
    public func weightAndBiasGradient(_ dy: Tensor, input x: Tensor) -> (weights: Tensor, bias: Tensor?) {
        precondition(dy.shape == geometry.outputShape && x.shape == geometry.inputShape)
        let dw = Tensor(uninitialized: geometry.weightShape)
        let db = hasBias ? Tensor(uninitialized: [geometry.outChannels]) : nil
        let target = unpackDiffWeights == nil ? dw.storage : TensorStorage(count: diffWeightsLayout.byteCount / 4)
        var args: [(arg: Int32, pointer: UnsafeMutableRawPointer)] = [
            (Arg.src, UnsafeMutableRawPointer(x.storage.pointer)),
            (Arg.diffDst, UnsafeMutableRawPointer(dy.storage.pointer)),
            (Arg.diffWeights, UnsafeMutableRawPointer(target.pointer)),
        ]
        if let db { args.append((Arg.diffBias, UnsafeMutableRawPointer(db.storage.pointer))) }
        weights.execute(args)
        if let unpack = unpackDiffWeights { unpack(UnsafeRawPointer(target.pointer), dw.storage.pointer) }
        return (dw, db)
    }
}
