import Foundation
import Testing
@testable import PetriEngine

/// `.npy` headers are checked against the bytes that follow before anything is read.
@Suite struct NPYTests {
    static func file(major: UInt8 = 1, header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        let length: [UInt8] = major == 1 ? [UInt8(h.count & 0xFF), UInt8(h.count >> 8)]
            : [UInt8(h.count & 0xFF), UInt8(h.count >> 8 & 0xFF), 0, 0]
        return [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0] + length + h + data
    }

    @Test func headersAreChecked() throws {
        let good = Self.file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data: [UInt8](repeating: 0, count: 24))
        let h = try NPY.Header(good, name: "x")
        #expect(h.shape == [2, 3] && h.count == 6 && h.itemSize == 4)
        let cases: [([UInt8], String)] = [
            (Self.file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data: [UInt8](repeating: 0, count: 23)), "needs 24 bytes"),
            (Self.file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", data: []), "shape"),
            (Self.file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", data: []), "larger than"),
            (Self.file(header: "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", data: [UInt8](repeating: 0, count: 16)), "dtype"),
            (Self.file(header: "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", data: [0, 0, 0, 0]), "Fortran"),
            (Array(Self.file(major: 2, header: "", data: []).prefix(10)), "truncated header"),
            (Self.file(major: 9, header: "{}", data: []), "version 9"),
            (Self.file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", data: []), "shape"),
        ]
        for (bytes, word) in cases {
            #expect { _ = try NPY.Header(bytes, name: "bad.npy") } throws: { "\($0)".contains("bad.npy") && "\($0)".contains(word) }
        }
    }
}
