import Foundation
import PetriEngine
import PetriNN
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
        let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow, data.count >= bytes else {
            throw DatasetError.malformed(name, reason: "\(data.count) bytes of data for \(count) values of \(size) bytes")
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
    /// All arrays of an `.npz` file (C order only), each checked (`NPY.Header`) before it is used; at most
    /// `maxBytes` inflated in all.
    static func read(_ url: URL, maxBytes: Int = 4 << 30) throws -> [String: NumpyArray] {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw DatasetError.malformed(url.path, reason: "not a readable .npz (zip) archive")
        }
        var out: [String: NumpyArray] = [:]
        var total = 0
        for entry in archive where entry.path.hasSuffix(".npy") {
            let name = String(entry.path.dropLast(4))
            let bytes: [UInt8]
            do { bytes = try ZipEntries.contents(archive, entry, limit: maxBytes - total, what: entry.path) } catch {
                throw DatasetError.malformed(url.path, reason: "\(error)")
            }
            total += bytes.count
            out[name] = try parse(bytes, name: "\(url.path)#\(name)")
        }
        return out
    }

    static func parse(_ bytes: [UInt8], name: String) throws -> NumpyArray {
        let h: NPY.Header
        do { h = try NPY.Header(bytes, name: name) } catch let NPY.Error.malformed(_, reason) {
            throw DatasetError.malformed(name, reason: reason)
        }
        return NumpyArray(name: name, dtype: h.dtype, shape: h.shape,
                          data: Array(bytes[h.dataOffset..<(h.dataOffset + h.count * h.itemSize)]))
    }
}
