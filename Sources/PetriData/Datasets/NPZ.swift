import Foundation
import ZIPFoundation

/// One array of a NumPy `.npz` archive, kept as raw little-endian bytes.
public struct NumpyArray: Sendable {
    public let name: String
    public let dtype: String
    public let shape: [Int]
    public let data: [UInt8]

    public var count: Int { shape.reduce(1, *) }

    /// Integer values (any integer or boolean dtype).
    public func integers() throws -> [Int] {
        let size: Int
        switch dtype {
        case "|u1", "|i1", "|b1": size = 1
        case "<u2", "<i2": size = 2
        case "<u4", "<i4": size = 4
        case "<u8", "<i8": size = 8
        default: throw DatasetError.malformed(name, reason: "expected integer labels, found dtype \(dtype)")
        }
        return data.withUnsafeBytes { raw in
            (0..<count).map { i -> Int in
                switch dtype {
                case "|i1": Int(raw.load(fromByteOffset: i, as: Int8.self))
                case "|u1", "|b1": Int(raw.load(fromByteOffset: i, as: UInt8.self))
                case "<u2": Int(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                case "<i2": Int(raw.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
                case "<u4": Int(raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                case "<i4": Int(raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                case "<u8": Int(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                default: Int(raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                }
            }
        }
    }

    /// Strings of a `<U…` (UTF-32) array.
    public func strings() throws -> [String] {
        guard dtype.hasPrefix("<U"), let width = Int(dtype.dropFirst(2)) else {
            throw DatasetError.malformed(name, reason: "expected a string array, found dtype \(dtype)")
        }
        return (0..<count).map { i in
            var s = ""
            for k in 0..<width {
                let o = (i * width + k) * 4
                let v = UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24
                if v == 0 { break }
                s.unicodeScalars.append(Unicode.Scalar(v) ?? "?")
            }
            return s
        }
    }
}

enum NPZ {
    /// All arrays of an `.npz` file (C order only).
    static func read(_ url: URL) throws -> [String: NumpyArray] {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw DatasetError.malformed(url.path, reason: "not a readable .npz (zip) archive")
        }
        var out: [String: NumpyArray] = [:]
        for entry in archive where entry.path.hasSuffix(".npy") {
            var bytes = [UInt8]()
            bytes.reserveCapacity(Int(entry.uncompressedSize))
            do { _ = try archive.extract(entry, skipCRC32: false) { bytes += $0 } } catch {
                throw DatasetError.malformed(url.path, reason: "cannot extract \(entry.path): \(error)")
            }
            let name = String(entry.path.dropLast(4))
            out[name] = try parse(bytes, name: "\(url.path)#\(name)")
        }
        return out
    }

    static func parse(_ bytes: [UInt8], name: String) throws -> NumpyArray {
        guard bytes.count >= 10, bytes.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) else {
            throw DatasetError.malformed(name, reason: "not an .npy array")
        }
        let (length, start) = bytes[6] == 1
            ? (Int(bytes[8]) | Int(bytes[9]) << 8, 10)
            : (Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24, 12)
        guard start + length <= bytes.count else { throw DatasetError.malformed(name, reason: "truncated header") }
        let header = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
        guard !header.contains("'fortran_order': True") else {
            throw DatasetError.malformed(name, reason: "Fortran-ordered arrays are not supported")
        }
        guard let d = header.range(of: "'descr': '"), let dEnd = header[d.upperBound...].firstIndex(of: "'"),
              let s = header.range(of: "'shape': ("), let sEnd = header[s.upperBound...].firstIndex(of: ")") else {
            throw DatasetError.malformed(name, reason: "unreadable .npy header")
        }
        let dtype = String(header[d.upperBound..<dEnd])
        let shape = header[s.upperBound..<sEnd].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        return NumpyArray(name: name, dtype: dtype, shape: shape, data: Array(bytes[(start + length)...]))
    }
}
