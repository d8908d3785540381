import Foundation
import Testing
@testable import PetriEngine

/// Large tensor blocks are recycled; small ones are left to the C allocator.
@Suite struct BufferPoolTests {
    // Sizes no other test allocates, so that tests running alongside cannot take the block in between.
    static let large = 1_234_567
    static let small = 12_345

    @Test func aFreedLargeBlockIsHandedOutAgainForTheSameRoundedSize() {
        var first: UnsafeMutablePointer<Float>?
        do {
            let t = Tensor(zeros: [Self.large])
            first = t.storage.pointer
        }
        // A few elements more rounds up to the same whole pages.
        let again = Tensor(uninitialized: [Self.large + 3])
        #expect(again.storage.pointer == first)
        #expect(BufferPool.roundedSize(Self.large * 4) == BufferPool.roundedSize((Self.large + 3) * 4))
        #expect(BufferPool.roundedSize(Self.large * 4) % 4096 == 0)
        #if DEBUG
        // Debug builds poison every block handed out, so a read before a write shows as NaN in the tests.
        #expect(again.scalars.allSatisfy { $0.isNaN })
        #endif
    }

    @Test func smallBlocksAreNotKeptAndKeptBlocksCanBeReleased() {
        #expect(BufferPool.roundedSize(Self.small * 4) == Self.small * 4)
        #expect(Self.small * 4 < BufferPool.minimumBytes)
        #expect(BufferPool.limitBytes > 0 && BufferPool.limitBytes <= Int(ProcessInfo.processInfo.physicalMemory))
        do { _ = Tensor(zeros: [Self.large * 2]) }
        #expect(BufferPool.kept >= BufferPool.roundedSize(Self.large * 8))
        BufferPool.releaseKept()
        // Other tests may free blocks meanwhile, but not one of this size.
        let t = Tensor(zeros: [Self.large * 2])
        #expect(t.scalars.allSatisfy { $0 == 0 })
    }
}
