import Foundation

/// Recycles the large blocks behind `TensorStorage`.
///
/// A training step allocates the same activations and gradients step after step, most of them far above the
/// size from which the C allocator maps fresh pages from the kernel for each request (at most 32 MiB in glibc)
/// and returns them on free. Every such buffer is then zero-filled page by page by the kernel on first touch:
/// with batch-statistics batch norm at batch 32 that page-faulting took as long as the arithmetic. Freed blocks
/// of at least `minimumBytes` are kept here instead, by size, and handed out again for a request of the same
/// rounded size.
///
/// At most `limitBytes` are kept (a quarter of physical memory): when a block would exceed it, the blocks
/// freed longest ago are released first. Blocks handed out again hold whatever their last user wrote; a tensor
/// made `uninitialized` must be written before it is read (debug builds fill every block with NaN to catch a
/// read before a write).
public enum BufferPool {
    /// Blocks smaller than this go straight back to the C allocator, whose own free lists reuse them.
    public static let minimumBytes = 1 << 20
    /// Sizes are rounded up to whole pages, so that near sizes share blocks.
    static let granularity = 4096
    public static let limitBytes = Int(min(ProcessInfo.processInfo.physicalMemory / 4, UInt64(Int.max)))

    private struct Block { let pointer: UnsafeMutableRawPointer; let stamp: Int }
    private nonisolated(unsafe) static var free: [Int: [Block]] = [:]
    private nonisolated(unsafe) static var keptBytes = 0
    private nonisolated(unsafe) static var clock = 0
    private static let lock = NSLock()

    /// The byte count a block for `bytes` is allocated with.
    static func roundedSize(_ bytes: Int) -> Int {
        bytes < minimumBytes ? bytes : (bytes + granularity - 1) / granularity * granularity
    }

    /// A 64-byte-aligned block of at least `bytes` (its size is `roundedSize(bytes)`).
    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        let size = roundedSize(bytes)
        if size >= minimumBytes, let p = lock.withLock({ () -> UnsafeMutableRawPointer? in
            guard let block = free[size]?.popLast() else { return nil }
            keptBytes -= size
            return block.pointer
        }) {
            return poisoned(p, size)
        }
        // 64-byte alignment lets oneDNN's AVX-512 kernels use aligned loads on our buffers.
        return poisoned(UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), size)
    }

    /// Returns a block from `allocate(bytes)`: kept for reuse, or freed.
    static func release(_ pointer: UnsafeMutableRawPointer, _ bytes: Int) {
        let size = roundedSize(bytes)
        guard size >= minimumBytes, size <= limitBytes else { pointer.deallocate(); return }
        var evicted: [UnsafeMutableRawPointer] = []
        lock.withLock {
            while keptBytes + size > limitBytes, let (oldest, i) = oldestBlock() {
                evicted.append(free[oldest]![i].pointer)
                free[oldest]!.remove(at: i)
                if free[oldest]!.isEmpty { free[oldest] = nil }
                keptBytes -= oldest
            }
            clock += 1
            free[size, default: []].append(Block(pointer: pointer, stamp: clock))
            keptBytes += size
        }
        for p in evicted { p.deallocate() }
    }

    /// The size and index of the block freed longest ago (callers hold the lock).
    private static func oldestBlock() -> (Int, Int)? {
        var best: (size: Int, index: Int, stamp: Int)?
        for (size, blocks) in free {
            for (i, b) in blocks.enumerated() where b.stamp < best?.stamp ?? .max { best = (size, i, b.stamp) }
        }
        return best.map { ($0.size, $0.index) }
    }

    /// Gives every kept block back to the C allocator (after a memory-hungry phase, for a long-lived process).
    public static func releaseKept() {
        let blocks = lock.withLock { () -> [UnsafeMutableRawPointer] in
            let all = free.values.flatMap { $0.map(\.pointer) }
            free = [:]
            keptBytes = 0
            return all
        }
        for p in blocks { p.deallocate() }
    }

    /// The bytes kept for reuse now.
    public static var kept: Int { lock.withLock { keptBytes } }

    private static func poisoned(_ p: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer {
        #if DEBUG
        p.bindMemory(to: Float.self, capacity: size / 4).initialize(repeating: .nan, count: size / 4)
        #endif
        return p
    }
}
