import Foundation

/// Owns a 64-byte-aligned block of `Float`s (large ones recycled by `BufferPool`). Shared by `Tensor` values until one of them writes
/// (copy on write), so passing tensors around never copies pixel or activation data.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        precondition(count >= 0, "negative element count")
        self.count = count
        pointer = BufferPool.allocate(max(count, 1) * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: max(count, 1))
    }

    private var byteCount: Int { max(count, 1) * MemoryLayout<Float>.stride }

    deinit { BufferPool.release(UnsafeMutableRawPointer(pointer), byteCount) }
}

/// A dense, row-major Float32 tensor.
///
/// Conventions used throughout Petri:
/// - images and activations are `[N, H, W, C]` (NHWC);
/// - features and logits are `[N, D]`;
/// - convolution weights are `[O, I/groups, kH, kW]` (PyTorch's order, so checkpoints map one to one).
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public private(set) var storage: TensorStorage

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(count: shape.reduce(1, *))
        storage.pointer.initialize(repeating: 0, count: storage.count)
    }

    /// A tensor whose contents are undefined until written (for outputs of kernels).
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(count: shape.reduce(1, *))
    }

    public init(shape: [Int], repeating value: Float) {
        self.init(uninitialized: shape)
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count,
                     "shape \(shape) holds \(shape.reduce(1, *)) elements, data has \(data.count)")
        self.init(uninitialized: shape)
        data.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: data.count) }
    }

    init(shape: [Int], storage: TensorStorage) {
        precondition(shape.reduce(1, *) == storage.count)
        self.shape = shape
        self.storage = storage
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// Read-only pointer to the elements; valid only inside `body`.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// Mutable pointer to the elements (copies the storage first if it is shared).
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: storage.count))
    }

    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = TensorStorage(count: storage.count)
            copy.pointer.update(from: storage.pointer, count: storage.count)
            storage = copy
        }
    }

    public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }

    public subscript(flat index: Int) -> Float {
        get { storage.pointer[index] }
        set { makeUnique(); storage.pointer[index] = newValue }
    }

    /// The same elements viewed with another shape (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage)
    }

    /// Rows `range` of the first axis, copied.
    public func slice(rows range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let rowSize = count / max(shape[0], 1)
        let out = Tensor(uninitialized: [range.count] + shape.dropFirst())
        out.storage.pointer.update(from: storage.pointer + range.lowerBound * rowSize, count: range.count * rowSize)
        return out
    }

    /// Concatenates tensors along the first axis.
    public static func concatenate(rows parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty)
        let tail = Array(parts[0].shape.dropFirst())
        precondition(parts.allSatisfy { Array($0.shape.dropFirst()) == tail }, "mismatched shapes")
        let out = Tensor(uninitialized: [parts.reduce(0) { $0 + $1.shape[0] }] + tail)
        var offset = 0
        for p in parts {
            (out.storage.pointer + offset).update(from: p.storage.pointer, count: p.count)
            offset += p.count
        }
        return out
    }

    /// Largest absolute elementwise difference; shapes must match.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "shapes \(shape) and \(other.shape) differ")
        var m: Float = 0
        for i in 0..<count { m = max(m, abs(storage.pointer[i] - other.storage.pointer[i])) }
        return m
    }
}
