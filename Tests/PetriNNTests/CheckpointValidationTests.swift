import Foundation
import PetriEngine
import Testing
@testable import PetriNN

/// Checkpoints built to break size arithmetic or the stack are refused with a message, never a trap.
@Suite struct CheckpointValidationTests {
    func write(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-ckpt-\(UUID().uuidString).pth")
        try Data(bytes).write(to: url)
        return url
    }

    func refused(_ bytes: [UInt8], _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = try write(bytes)
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try Checkpoint(contentsOf: url)
            Issue.record("accepted", sourceLocation: sourceLocation)
        } catch {
            let text = "\(error)"
            #expect(text.contains(url.path), "\(text)", sourceLocation: sourceLocation)
            for w in words { #expect(text.contains(w), "\(text)", sourceLocation: sourceLocation) }
        }
    }

    /// The legacy format's storage counts follow the pickles: set one to 2⁶³ − 1 and to 2³² − 1.
    @Test func storageCountsPastTheFile() throws {
        let data = [UInt8](try Data(contentsOf: Fixtures.url("tiny-legacy.pth")))
        var reader = PickleReader(file: "x", bytes: data)
        for _ in 0..<5 { _ = try reader.load { _ in .storage(StorageReference(key: "0", type: .float32, elementCount: nil)) } }
        for v: UInt64 in [0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF, 0x8000_0000_0000_0000] {
            var b = data
            for i in 0..<8 { b[reader.position + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
            try refused(b, ["storage"])
        }
    }

    /// A pickle nested 100,000 tuples deep, and one appending a list to itself.
    @Test func deepAndCyclicPicklesAreRefused() throws {
        let deep: [UInt8] = [0x80, 0x02, 0x29] + [UInt8](repeating: 0x85, count: 100_000) + [0x2E]
        var reader = PickleReader(file: "deep.pth", bytes: deep)
        #expect { _ = try reader.load { $0 } } throws: { "\($0)".contains("nested deeper") }
        let cyclic: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E]   // [], memo 0, get 0, APPEND
        var r2 = PickleReader(file: "cyclic.pth", bytes: cyclic)
        #expect { _ = try r2.load { $0 } } throws: { "\($0)".contains("placed in itself") }
        // A huge string length must not pass the end of the data.
        let long: [UInt8] = [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x61, 0x2E]
        var r3 = PickleReader(file: "long.pth", bytes: long)
        #expect { _ = try r3.load { $0 } } throws: { "\($0)".contains("passes the end") }
    }

    /// A stored zip member whose bytes were changed after the CRC was written.
    @Test func zipCRCIsChecked() throws {
        var data = [UInt8](try Data(contentsOf: Fixtures.url("tiny-zip.pth")))
        // The storages are the stored members after data.pkl: change one byte well inside the file's data.
        let marker = Array("data/0".utf8)
        let at = (0..<(data.count - marker.count)).first { Array(data[$0..<($0 + marker.count)]) == marker }!
        data[at + marker.count + 60] ^= 0xFF
        try refused(data, ["CRC-32"])
    }
}
