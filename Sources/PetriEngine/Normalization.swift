import CDNNL
import Foundation

/// Batch normalisation kernels over NHWC activations, forward (training: batch statistics; or with given
/// statistics) and backward, with learnable per-channel scale and shift.
public final class BatchNormKernels: @unchecked Sendable {
    struct Key: Hashable {
        let shape: [Int]
        let epsilon: Float
        let globalStats: Bool
        var lane = ComputeLanes.current
    }

    public let shape: [Int]
    public let usesGivenStatistics: Bool
    let forward: Primitive
    let backward: Primitive

    private nonisolated(unsafe) static var cache: [Key: BatchNormKernels] = [:]
    private static let cacheLock = NSLock()

    /// `useGivenStatistics`: normalise with supplied mean/variance (frozen BN) instead of the batch's.
    public static func make(shape: [Int], epsilon: Float, useGivenStatistics: Bool) throws -> BatchNormKernels {
        let key = Key(shape: shape, epsilon: epsilon, globalStats: useGivenStatistics)
        if let k = cacheLock.withLock({ cache[key] }) { return k }
        let k = try BatchNormKernels(key)
        cacheLock.withLock { cache[key] = k }
        return k
    }

    private init(_ key: Key) throws {
        precondition(key.shape.count == 4, "batch norm expects [N, H, W, C]")
        shape = key.shape
        usesGivenStatistics = key.globalStats
        let md = MemoryDescriptor.nhwc(n: shape[0], h: shape[1], w: shape[2], c: shape[3])
        var flags = UInt32(dnnl_use_scale.rawValue | dnnl_use_shift.rawValue)
        if key.globalStats { flags |= UInt32(dnnl_use_global_stats.rawValue) }
        var f = try OpDescriptors.batchNorm(prop: dnnl_forward_training, data: md, epsilon: key.epsilon, flags: flags)
        forward = try Primitive(opDesc: &f, attr: nil, operation: "batch norm forward \(shape)")
        var b = try OpDescriptors.batchNormBackward(diffData: md, data: md, epsilon: key.epsilon, flags: flags)
        backward = try Primitive(opDesc: &b, attr: nil, hint: forward.descriptor,
                                 operation: "batch norm backward \(shape)")
    }

    /// y = γ·(x − μ)/√(σ² + ε) + β. Returns y and the statistics used (the batch's, or the given ones).
    public func forward(_ x: Tensor, scale: Tensor, shift: Tensor, mean: Tensor? = nil,
                        variance: Tensor? = nil) -> (y: Tensor, mean: Tensor, variance: Tensor) {
        precondition(x.shape == shape)
        let c = shape[3]
        let y = Tensor(uninitialized: shape)
        let m = mean ?? Tensor(uninitialized: [c]), v = variance ?? Tensor(uninitialized: [c])
        precondition(usesGivenStatistics == (mean != nil && variance != nil))
        forward.execute([(Arg.src, UnsafeMutableRawPointer(x.storage.pointer)),
                         (Arg.dst, UnsafeMutableRawPointer(y.storage.pointer)),
                         (Arg.scale, UnsafeMutableRawPointer(scale.storage.pointer)),
                         (Arg.shift, UnsafeMutableRawPointer(shift.storage.pointer)),
                         (Arg.mean, UnsafeMutableRawPointer(m.storage.pointer)),
                         (Arg.variance, UnsafeMutableRawPointer(v.storage.pointer))])
        return (y, m, v)
    }

    /// Gradients with respect to x, γ and β, given the statistics the forward pass used.
    /// (oneDNN 2.x wants the shift argument in the backward pass too, though the result does not use it.)
    public func backward(_ dy: Tensor, input x: Tensor, scale: Tensor, shift: Tensor, mean: Tensor,
                         variance: Tensor) -> (dx: Tensor, dScale: Tensor, dShift: Tensor) {
        let c = shape[3]
        let dx = Tensor(uninitialized: shape)
        let dScale = Tensor(uninitialized: [c]), dShift = Tensor(uninitialized: [c])
        backward.execute([(Arg.src, UnsafeMutableRawPointer(x.storage.pointer)),
                          (Arg.diffDst, UnsafeMutableRawPointer(dy.storage.pointer)),
                          (Arg.scale, UnsafeMutableRawPointer(scale.storage.pointer)),
                          (Arg.shift, UnsafeMutableRawPointer(shift.storage.pointer)),
                          (Arg.mean, UnsafeMutableRawPointer(mean.storage.pointer)),
                          (Arg.variance, UnsafeMutableRawPointer(variance.storage.pointer)),
                          (Arg.diffSrc, UnsafeMutableRawPointer(dx.storage.pointer)),
                          (Arg.diffScale, UnsafeMutableRawPointer(dScale.storage.pointer)),
                          (Arg.diffShift, UnsafeMutableRawPointer(dShift.storage.pointer))])
        return (dx, dScale, dShift)
    }
}

/// Elementwise activations through oneDNN (forward and backward), on tensors of any shape.
public enum Activation: Hashable, Sendable {
    case relu, relu6
    /// The same functions with a backward pass computed from the output (y), not the input: used when
    /// the forward activation was fused into a convolution and only its output exists.
    case reluFromOutput, relu6FromOutput

    var algorithm: (dnnl_alg_kind_t, Float, Float) {
        switch self {
        case .relu: (dnnl_eltwise_relu, 0, 0)
        case .relu6: (dnnl_eltwise_clip_v2, 0, 6)
        case .reluFromOutput: (dnnl_eltwise_relu_use_dst_for_bwd, 0, 0)
        case .relu6FromOutput: (dnnl_eltwise_clip_v2_use_dst_for_bwd, 0, 6)
        }
    }

    var usesOutputForBackward: Bool { self == .reluFromOutput || self == .relu6FromOutput }
}

public final class EltwiseKernels: @unchecked Sendable {
    struct Key: Hashable { let count: Int; let activation: Activation; var lane = ComputeLanes.current }
    let forward: Primitive
    let backward: Primitive
    let count: Int
    let usesOutputForBackward: Bool

    private nonisolated(unsafe) static var cache: [Key: EltwiseKernels] = [:]
    private static let cacheLock = NSLock()

    public static func make(_ activation: Activation, count: Int) throws -> EltwiseKernels {
        let key = Key(count: count, activation: activation)
        if let k = cacheLock.withLock({ cache[key] }) { return k }
        let k = try EltwiseKernels(key)
        cacheLock.withLock { cache[key] = k }
        return k
    }

    private init(_ key: Key) throws {
        count = key.count
        usesOutputForBackward = key.activation.usesOutputForBackward
        // Flat 1-D view: elementwise ops do not care about the shape.
        let md = MemoryDescriptor(dims: [key.count], tag: dnnl_a)
        let (alg, alpha, beta) = key.activation.algorithm
        var f = try OpDescriptors.eltwise(prop: dnnl_forward_training, algorithm: alg, data: md, alpha: alpha, beta: beta)
        forward = try Primitive(opDesc: &f, attr: nil, operation: "eltwise \(key.activation)")
        var b = try OpDescriptors.eltwiseBackward(algorithm: alg, diffData: md, data: md, alpha: alpha, beta: beta)
        backward = try Primitive(opDesc: &b, attr: nil, hint: forward.descriptor,
                                 operation: "eltwise backward \(key.activation)")
    }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.count == count)
        let y = Tensor(uninitialized: x.shape)
        forward.execute([(Arg.src, UnsafeMutableRawPointer(x.storage.pointer)),
                         (Arg.dst, UnsafeMutableRawPointer(y.storage.pointer))])
        return y
    }

    /// ∂L/∂x given the forward input x (or, for the `…FromOutput` activations, the forward output y).
    public func backward(_ dy: Tensor, input x: Tensor) -> Tensor {
        let dx = Tensor(uninitialized: x.shape)
        backward.execute([(usesOutputForBackward ? Arg.dst : Arg.src, UnsafeMutableRawPointer(x.storage.pointer)),
                          (Arg.diffDst, UnsafeMutableRawPointer(dy.storage.pointer)),
                          (Arg.diffSrc, UnsafeMutableRawPointer(dx.storage.pointer))])
        return dx
    }
}

/// Max or average pooling over NHWC activations, forward and backward.
public final class PoolingKernels: @unchecked Sendable {
    public enum Kind: Hashable, Sendable { case max, average }

    struct Key: Hashable { let shape: [Int]; let kind: Kind; let kernel: Int; let stride: Int; let padding: Int; var lane = ComputeLanes.current }
    let key: Key
    let forward: Primitive
    let backward: Primitive
    public let outputShape: [Int]
    let workspaceBytes: Int

    private nonisolated(unsafe) static var cache: [Key: PoolingKernels] = [:]
    private static let cacheLock = NSLock()

    /// Symmetric `padding`; average pooling excludes padding from the divisor.
    public static func make(shape: [Int], kind: Kind, kernel: Int, stride: Int, padding: Int = 0) throws -> PoolingKernels {
        let key = Key(shape: shape, kind: kind, kernel: kernel, stride: stride, padding: padding)
        if let k = cacheLock.withLock({ cache[key] }) { return k }
        let k = try PoolingKernels(key)
        cacheLock.withLock { cache[key] = k }
        return k
    }

    private init(_ key: Key) throws {
        self.key = key
        let s = key.shape
        let oh = (s[1] + 2 * key.padding - key.kernel) / key.stride + 1
        let ow = (s[2] + 2 * key.padding - key.kernel) / key.stride + 1
        outputShape = [s[0], oh, ow, s[3]]
        let src = MemoryDescriptor.nhwc(n: s[0], h: s[1], w: s[2], c: s[3])
        let dst = MemoryDescriptor.nhwc(n: s[0], h: oh, w: ow, c: s[3])
        let alg = key.kind == .max ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding
        let pads = [key.padding, key.padding]
        var f = try OpDescriptors.pooling(prop: dnnl_forward_training, algorithm: alg, src: src, dst: dst,
                                          strides: [key.stride, key.stride], kernel: [key.kernel, key.kernel],
                                          padLow: pads, padHigh: pads)
        forward = try Primitive(opDesc: &f, attr: nil, operation: "pooling \(key.kind)")
        var b = try OpDescriptors.poolingBackward(algorithm: alg, diffSrc: src, diffDst: dst,
                                                  strides: [key.stride, key.stride], kernel: [key.kernel, key.kernel],
                                                  padLow: pads, padHigh: pads)
        backward = try Primitive(opDesc: &b, attr: nil, hint: forward.descriptor, operation: "pooling backward \(key.kind)")
        workspaceBytes = key.kind == .max ? forward.memoryDescriptor(dnnl_query_workspace_md).byteCount : 0
    }

    /// Output and the workspace the backward pass needs (max pooling's argmax positions).
    public func forward(_ x: Tensor) -> (y: Tensor, workspace: TensorStorage?) {
        precondition(x.shape == key.shape)
        let y = Tensor(uninitialized: outputShape)
        var args: [(arg: Int32, pointer: UnsafeMutableRawPointer)] = [
            (Arg.src, UnsafeMutableRawPointer(x.storage.pointer)), (Arg.dst, UnsafeMutableRawPointer(y.storage.pointer)),
        ]
        var ws: TensorStorage?
        if workspaceBytes > 0 {
            ws = TensorStorage(count: (workspaceBytes + 3) / 4)
            args.append((Arg.workspace, UnsafeMutableRawPointer(ws!.pointer)))
        }
        forward.execute(args)
        return (y, ws)
    }

    public func backward(_ dy: Tensor, workspace: TensorStorage?) -> Tensor {
        let dx = Tensor(uninitialized: key.shape)
        var args: [(arg: Int32, pointer: UnsafeMutableRawPointer)] = [
            (Arg.diffDst, UnsafeMutableRawPointer(dy.storage.pointer)),
            (Arg.diffSrc, UnsafeMutableRawPointer(dx.storage.pointer)),
        ]
        if let ws = workspace { args.append((Arg.workspace, UnsafeMutableRawPointer(ws.pointer))) }
        backward.execute(args)
        return dx
    }
}
