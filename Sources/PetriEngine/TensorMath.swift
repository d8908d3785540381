import Foundation

// Small elementwise helpers in plain Swift (vectorised by the compiler in release builds).
extension Tensor {
    /// self += other (same shape).
    public mutating func add(_ other: Tensor) {
        precondition(count == other.count, "adding \(other.shape) to \(shape)")
        withUnsafeMutableBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                for i in 0..<a.count { a[i] += b[i] }
            }
        }
    }

    /// self += alpha · other
    public mutating func add(_ other: Tensor, scaledBy alpha: Float) {
        precondition(count == other.count)
        withUnsafeMutableBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                for i in 0..<a.count { a[i] += alpha * b[i] }
            }
        }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        var c = a
        c.add(b)
        return c
    }

    public func scaled(by s: Float) -> Tensor {
        var c = self
        c.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= s } }
        return c
    }

    /// Elementwise product.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.count == b.count)
        var c = a
        c.withUnsafeMutableBufferPointer { p in
            b.withUnsafeBufferPointer { q in for i in 0..<p.count { p[i] *= q[i] } }
        }
        return c
    }

    public var sum: Double { withUnsafeBufferPointer { $0.reduce(0) { $0 + Double($1) } } }

    /// Uniform random values in [low, high).
    public static func uniform(_ shape: [Int], low: Float = -1, high: Float = 1,
                               using rng: inout SeededGenerator) -> Tensor {
        var t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = Float.random(in: low..<high, using: &rng) } }
        return t
    }

    /// Normal random values with the given standard deviation.
    public static func normal(_ shape: [Int], std: Float = 1, using rng: inout SeededGenerator) -> Tensor {
        var t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = std * rng.normal() } }
        return t
    }
}
