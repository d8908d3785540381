import CDNNL
import Foundation

// Every call into oneDNN's C API lives in this file (and nowhere else), so that moving to oneDNN 3.x,
// which replaced the `*_desc_init` functions used here, touches one file.

/// An error reported by oneDNN, or a kernel choice Petri refuses.
public enum DNNLError: Error, CustomStringConvertible {
    case status(Int, operation: String)
    /// oneDNN picked a reference (`ref:`) implementation, roughly 1000× slower than its JIT kernels.
    /// It always means a layout or attribute the fast kernels do not support: a bug to fix, never to accept.
    case referenceKernel(implementation: String, operation: String)

    public var description: String {
        switch self {
        case let .status(code, op):
            let names = [1: "out_of_memory", 2: "invalid_arguments", 3: "unimplemented",
                         4: "iterator_ends", 5: "runtime_error", 6: "not_required"]
            return "oneDNN \(op) failed: \(names[code] ?? "status \(code)")"
        case let .referenceKernel(impl, op):
            return "oneDNN chose the reference kernel '\(impl)' for \(op); this layout/attribute combination is unsupported by its fast kernels"
        }
    }
}

@inline(__always)
func dnnlCheck(_ status: dnnl_status_t, _ operation: @autoclosure () -> String) throws {
    if status != dnnl_success { throw DNNLError.status(Int(status.rawValue), operation: operation()) }
}

/// The CPU engine, and one in-order stream per compute lane (`ComputeLanes`). oneDNN parallelises each
/// primitive itself with OpenMP; Petri runs kernels from one thread per lane, each lane with its own
/// primitives (the kernel caches are keyed by lane).
final class DNNLRuntime: @unchecked Sendable {
    static let shared = DNNLRuntime()
    let engine: dnnl_engine_t
    let lock = NSLock()
    private var streams: [Int: dnnl_stream_t] = [:]

    private init() {
        var e: dnnl_engine_t?
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, let engine = e else {
            fatalError("oneDNN: cannot create the CPU engine")
        }
        self.engine = engine
    }

    /// The stream of the calling thread's lane.
    var stream: dnnl_stream_t {
        let lane = ComputeLanes.current
        return lock.withLock {
            if let s = streams[lane] { return s }
            var s: dnnl_stream_t?
            guard dnnl_stream_create(&s, engine, UInt32(dnnl_stream_default_flags.rawValue)) == dnnl_success,
                  let stream = s else { fatalError("oneDNN: cannot create a stream") }
            streams[lane] = stream
            return stream
        }
    }
}

/// Primitive attributes with a user-managed scratchpad (each primitive gets its own buffer, so kernels
/// created on one thread may run on another: oneDNN's shared library scratchpad forbids that).
func makeScratchpadAttributes(_ attr: dnnl_primitive_attr_t? = nil) throws -> dnnl_primitive_attr_t {
    var a = attr
    if a == nil { try dnnlCheck(dnnl_primitive_attr_create(&a), "attribute creation") }
    try dnnlCheck(dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user), "scratchpad mode")
    return a!
}

/// Describes the layout of a tensor to oneDNN (dims + format tag, or "any" to let a primitive choose).
struct MemoryDescriptor {
    var raw = dnnl_memory_desc_t()

    init(dims: [Int], tag: dnnl_format_tag_t) {
        let d = dims.map(Int64.init)
        let status = dnnl_memory_desc_init_by_tag(&raw, Int32(d.count), d, dnnl_f32, tag)
        precondition(status == dnnl_success, "oneDNN rejected memory descriptor \(dims)")
    }

    init(raw: dnnl_memory_desc_t) { self.raw = raw }

    var byteCount: Int {
        var r = raw
        return dnnl_memory_desc_get_size(&r)
    }

    static func == (a: MemoryDescriptor, b: MemoryDescriptor) -> Bool {
        var x = a.raw, y = b.raw
        return dnnl_memory_desc_equal(&x, &y) != 0
    }

    /// NHWC activations of logical shape [N, C, H, W] as oneDNN names dims.
    static func nhwc(n: Int, h: Int, w: Int, c: Int) -> MemoryDescriptor {
        MemoryDescriptor(dims: [n, c, h, w], tag: dnnl_nhwc)
    }
}

/// Post-operations fused into a primitive's output.
public enum FusedActivation: Hashable, Sendable {
    case none, relu, relu6
}

/// A created primitive together with its descriptor, and the memory objects it is run with
/// (re-pointed at each call's buffers, so running costs no allocation).
final class Primitive: @unchecked Sendable {
    let descriptor: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t
    let implementation: String
    private var memories: [Int32: dnnl_memory_t] = [:]
    /// This primitive's own scratchpad (user-managed mode), if it needs one.
    private let scratchpad: TensorStorage?
    /// Guards `memories` (re-pointed on every call) should a lane's primitive ever be reached from two threads.
    private let executionLock = NSLock()

    /// Refuse reference kernels (see `DNNLError.referenceKernel`). Tests run with this on.
    nonisolated(unsafe) static var allowReferenceKernels = false
    /// Every implementation name created so far, for diagnostics and the `ref:` test.
    nonisolated(unsafe) static var createdImplementations = Set<String>()

    convenience init(opDesc: UnsafeRawPointer, attr: dnnl_primitive_attr_t?, hint: dnnl_primitive_desc_t? = nil,
         operation: String) throws {
        let a = try makeScratchpadAttributes(attr)
        defer { if attr == nil { dnnl_primitive_attr_destroy(a) } }
        var pd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&pd, opDesc, a, DNNLRuntime.shared.engine, hint),
                      "\(operation) descriptor")
        try self.init(descriptor: pd!, operation: operation)
    }

    init(descriptor pd: dnnl_primitive_desc_t, operation: String) throws {
        var name: UnsafePointer<CChar>?
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name)
        let impl = name.map { String(cString: $0) } ?? "?"
        if impl.hasPrefix("ref") && !Primitive.allowReferenceKernels {
            dnnl_primitive_desc_destroy(pd)
            throw DNNLError.referenceKernel(implementation: impl, operation: operation)
        }
        var p: dnnl_primitive_t?
        let st = dnnl_primitive_create(&p, pd)
        if st != dnnl_success { dnnl_primitive_desc_destroy(pd) }
        try dnnlCheck(st, "\(operation) primitive")
        descriptor = pd
        primitive = p!
        implementation = impl
        let scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0).map { MemoryDescriptor(raw: $0.pointee).byteCount } ?? 0
        scratchpad = scratch > 0 ? TensorStorage(count: (scratch + 3) / 4) : nil
        DNNLRuntime.shared.lock.withLock { _ = Primitive.createdImplementations.insert("\(operation): \(impl)") }
    }

    deinit {
        for m in memories.values { dnnl_memory_destroy(m) }
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(descriptor)
    }

    func memoryDescriptor(_ query: dnnl_query_t, index: Int32 = 0) -> MemoryDescriptor {
        MemoryDescriptor(raw: dnnl_primitive_desc_query_md(descriptor, query, index)!.pointee)
    }

    /// Runs the primitive on the given buffers (`arg` → pointer); each arg's layout is the one the
    /// primitive was created with.
    func execute(_ args: [(arg: Int32, pointer: UnsafeMutableRawPointer)]) {
        let rt = DNNLRuntime.shared
        let stream = rt.stream
        executionLock.lock()
        defer { executionLock.unlock() }
        var execArgs = [dnnl_exec_arg_t]()
        execArgs.reserveCapacity(args.count + 1)
        var all = args
        if let scratchpad { all.append((Int32(DNNL_ARG_SCRATCHPAD), UnsafeMutableRawPointer(scratchpad.pointer))) }
        for (arg, ptr) in all {
            let mem: dnnl_memory_t
            if let m = memories[arg] {
                mem = m
                dnnl_memory_set_data_handle_v2(m, ptr, stream)
            } else {
                let md = dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, arg)!
                var m: dnnl_memory_t?
                precondition(dnnl_memory_create(&m, md, rt.engine, ptr) == dnnl_success,
                             "oneDNN: cannot create memory for arg \(arg) of \(implementation)")
                memories[arg] = m!
                mem = m!
            }
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: mem))
        }
        let status = dnnl_primitive_execute(primitive, stream, Int32(execArgs.count), execArgs)
        if status != dnnl_success {
            let detail = args.map { a -> String in
                let md = dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, a.arg)!.pointee
                return "arg \(a.arg): ndims \(md.ndims)"
            }.joined(separator: ", ")
            preconditionFailure("oneDNN: executing \(implementation) failed (\(status.rawValue)); \(detail)")
        }
        dnnl_stream_wait(stream)
    }
}

/// Arguments of `Primitive.execute`, named as oneDNN names them.
enum Arg {
    static let src = Int32(DNNL_ARG_SRC)
    static let dst = Int32(DNNL_ARG_DST)
    static let weights = Int32(DNNL_ARG_WEIGHTS)
    static let bias = Int32(DNNL_ARG_BIAS)
    static let mean = Int32(DNNL_ARG_MEAN)
    static let variance = Int32(DNNL_ARG_VARIANCE)
    static let scale = Int32(DNNL_ARG_SCALE)
    static let shift = Int32(DNNL_ARG_SHIFT)
    static let workspace = Int32(DNNL_ARG_WORKSPACE)
    static let diffSrc = Int32(DNNL_ARG_DIFF_SRC)
    static let diffDst = Int32(DNNL_ARG_DIFF_DST)
    static let diffWeights = Int32(DNNL_ARG_DIFF_WEIGHTS)
    static let diffBias = Int32(DNNL_ARG_DIFF_BIAS)
    static let diffScale = Int32(DNNL_ARG_DIFF_SCALE)
    static let diffShift = Int32(DNNL_ARG_DIFF_SHIFT)
    static let from = Int32(DNNL_ARG_FROM)
    static let to = Int32(DNNL_ARG_TO)
}

/// Builds primitive attributes: fused sum (accumulate into dst) then an activation.
func makeAttributes(accumulate: Bool, activation: FusedActivation) throws -> dnnl_primitive_attr_t {
    var attr: dnnl_primitive_attr_t?
    try dnnlCheck(dnnl_primitive_attr_create(&attr), "attribute creation")
    var po: dnnl_post_ops_t?
    try dnnlCheck(dnnl_post_ops_create(&po), "post-op creation")
    defer { dnnl_post_ops_destroy(po) }
    if accumulate { try dnnlCheck(dnnl_post_ops_append_sum(po, 1), "sum post-op") }
    switch activation {
    case .none: break
    case .relu: try dnnlCheck(dnnl_post_ops_append_eltwise(po, 1, dnnl_eltwise_relu, 0, 0), "relu post-op")
    case .relu6: try dnnlCheck(dnnl_post_ops_append_eltwise(po, 1, dnnl_eltwise_clip, 0, 6), "relu6 post-op")
    }
    try dnnlCheck(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops")
    return attr!
}

/// A reorder between two layouts of the same logical tensor.
final class Reorder: @unchecked Sendable {
    let primitive: Primitive
    let source: MemoryDescriptor
    let destination: MemoryDescriptor

    init(from source: MemoryDescriptor, to destination: MemoryDescriptor) throws {
        var s = source.raw, d = destination.raw
        var pd: dnnl_primitive_desc_t?
        let engine = DNNLRuntime.shared.engine
        let attr = try makeScratchpadAttributes()
        defer { dnnl_primitive_attr_destroy(attr) }
        try dnnlCheck(dnnl_reorder_primitive_desc_create(&pd, &s, engine, &d, engine, attr), "reorder descriptor")
        primitive = try Primitive(descriptor: pd!, operation: "reorder")
        self.source = source
        self.destination = destination
    }

    func callAsFunction(_ from: UnsafeRawPointer, _ to: UnsafeMutableRawPointer) {
        primitive.execute([(Arg.from, UnsafeMutableRawPointer(mutating: from)), (Arg.to, to)])
    }
}

// MARK: - Descriptor builders (oneDNN 2.x op descriptors)

enum OpDescriptors {
    static func convolution(prop: dnnl_prop_kind_t, src: MemoryDescriptor, weights: MemoryDescriptor,
                            bias: MemoryDescriptor?, dst: MemoryDescriptor, strides: [Int],
                            padLow: [Int], padHigh: [Int]) throws -> dnnl_convolution_desc_t {
        var desc = dnnl_convolution_desc_t()
        var s = src.raw, w = weights.raw, d = dst.raw
        let st = strides.map(Int64.init), pl = padLow.map(Int64.init), ph = padHigh.map(Int64.init)
        if var b = bias?.raw {
            try dnnlCheck(dnnl_convolution_forward_desc_init(&desc, prop, dnnl_convolution_direct,
                                                             &s, &w, &b, &d, st, pl, ph), "convolution")
        } else {
            try dnnlCheck(dnnl_convolution_forward_desc_init(&desc, prop, dnnl_convolution_direct,
                                                             &s, &w, nil, &d, st, pl, ph), "convolution")
        }
        return desc
    }

    static func convolutionBackwardData(diffSrc: MemoryDescriptor, weights: MemoryDescriptor,
                                        diffDst: MemoryDescriptor, strides: [Int], padLow: [Int],
                                        padHigh: [Int]) throws -> dnnl_convolution_desc_t {
        var desc = dnnl_convolution_desc_t()
        var s = diffSrc.raw, w = weights.raw, d = diffDst.raw
        try dnnlCheck(dnnl_convolution_backward_data_desc_init(
            &desc, dnnl_convolution_direct, &s, &w, &d, strides.map(Int64.init), padLow.map(Int64.init),
            padHigh.map(Int64.init)), "convolution backward data")
        return desc
    }

    static func convolutionBackwardWeights(src: MemoryDescriptor, diffWeights: MemoryDescriptor,
                                           diffBias: MemoryDescriptor?, diffDst: MemoryDescriptor,
                                           strides: [Int], padLow: [Int],
                                           padHigh: [Int]) throws -> dnnl_convolution_desc_t {
        var desc = dnnl_convolution_desc_t()
        var s = src.raw, w = diffWeights.raw, d = diffDst.raw
        let st = strides.map(Int64.init), pl = padLow.map(Int64.init), ph = padHigh.map(Int64.init)
        if var b = diffBias?.raw {
            try dnnlCheck(dnnl_convolution_backward_weights_desc_init(
                &desc, dnnl_convolution_direct, &s, &w, &b, &d, st, pl, ph), "convolution backward weights")
        } else {
            try dnnlCheck(dnnl_convolution_backward_weights_desc_init(
                &desc, dnnl_convolution_direct, &s, &w, nil, &d, st, pl, ph), "convolution backward weights")
        }
        return desc
    }

    static func batchNorm(prop: dnnl_prop_kind_t, data: MemoryDescriptor, epsilon: Float,
                          flags: UInt32) throws -> dnnl_batch_normalization_desc_t {
        var desc = dnnl_batch_normalization_desc_t()
        var d = data.raw
        try dnnlCheck(dnnl_batch_normalization_forward_desc_init(&desc, prop, &d, epsilon, flags), "batch norm")
        return desc
    }

    static func batchNormBackward(diffData: MemoryDescriptor, data: MemoryDescriptor, epsilon: Float,
                                  flags: UInt32) throws -> dnnl_batch_normalization_desc_t {
        var desc = dnnl_batch_normalization_desc_t()
        var dd = diffData.raw, d = data.raw
        try dnnlCheck(dnnl_batch_normalization_backward_desc_init(&desc, dnnl_backward, &dd, &d, epsilon, flags),
                      "batch norm backward")
        return desc
    }

    static func eltwise(prop: dnnl_prop_kind_t, algorithm: dnnl_alg_kind_t, data: MemoryDescriptor,
                        alpha: Float, beta: Float) throws -> dnnl_eltwise_desc_t {
        var desc = dnnl_eltwise_desc_t()
        var d = data.raw
        try dnnlCheck(dnnl_eltwise_forward_desc_init(&desc, prop, algorithm, &d, alpha, beta), "eltwise")
        return desc
    }

    static func eltwiseBackward(algorithm: dnnl_alg_kind_t, diffData: MemoryDescriptor, data: MemoryDescriptor,
                                alpha: Float, beta: Float) throws -> dnnl_eltwise_desc_t {
        var desc = dnnl_eltwise_desc_t()
        var dd = diffData.raw, d = data.raw
        try dnnlCheck(dnnl_eltwise_backward_desc_init(&desc, algorithm, &dd, &d, alpha, beta), "eltwise backward")
        return desc
    }

    static func pooling(prop: dnnl_prop_kind_t, algorithm: dnnl_alg_kind_t, src: MemoryDescriptor,
                        dst: MemoryDescriptor, strides: [Int], kernel: [Int], padLow: [Int],
                        padHigh: [Int]) throws -> dnnl_pooling_v2_desc_t {
        var desc = dnnl_pooling_v2_desc_t()
        var s = src.raw, d = dst.raw
        try dnnlCheck(dnnl_pooling_v2_forward_desc_init(
            &desc, prop, algorithm, &s, &d, strides.map(Int64.init), kernel.map(Int64.init), [0, 0],
            padLow.map(Int64.init), padHigh.map(Int64.init)), "pooling")
        return desc
    }

    static func poolingBackward(algorithm: dnnl_alg_kind_t, diffSrc: MemoryDescriptor, diffDst: MemoryDescriptor,
                                strides: [Int], kernel: [Int], padLow: [Int],
                                padHigh: [Int]) throws -> dnnl_pooling_v2_desc_t {
        var desc = dnnl_pooling_v2_desc_t()
        var s = diffSrc.raw, d = diffDst.raw
        try dnnlCheck(dnnl_pooling_v2_backward_desc_init(
            &desc, algorithm, &s, &d, strides.map(Int64.init), kernel.map(Int64.init), [0, 0],
            padLow.map(Int64.init), padHigh.map(Int64.init)), "pooling backward")
        return desc
    }
}

// MARK: - BLAS

/// Row-major single-precision GEMM: C = alpha·op(A)·op(B) + beta·C, with op = transpose when asked.
/// A is M×K (K×M if transposed), B is K×N (N×K if transposed), C is M×N.
public func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    let status = dnnl_sgemm(transposeA ? 84 : 78, transposeB ? 84 : 78, Int64(m), Int64(n), Int64(k), alpha,
                            a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
    precondition(status == dnnl_success, "dnnl_sgemm failed (\(status.rawValue)) for \(m)×\(n)×\(k)")
}

/// Names of the oneDNN implementations created so far (e.g. "convolution: brg:avx512_core").
public func createdKernelImplementations() -> Set<String> {
    DNNLRuntime.shared.lock.withLock { Primitive.createdImplementations }
}

/// The oneDNN library version in use, e.g. "2.6.3".
public func dnnlVersionString() -> String {
    guard let v = dnnl_version()?.pointee else { return "?" }
    return "\(v.major).\(v.minor).\(v.patch)"
}
