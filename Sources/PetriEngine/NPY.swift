import Foundation

/// Reads and writes NumPy `.npy` files (format 1.0/2.0, little-endian, C order): float32 matrices for
/// features, uint8 arrays for reference images.
public enum NPY {
    public enum Error: Swift.Error, CustomStringConvertible {
        case malformed(String, reason: String)
        public var description: String {
            switch self { case let .malformed(p, r): "\(p): not a readable .npy file: \(r)" }
        }
    }

    /// What an `.npy` header says, checked against the bytes that follow it.
    public struct Header: Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        /// Where the values start, and how many bytes they take.
        public var dataOffset: Int
        public var count: Int
        public var itemSize: Int

        /// Item sizes of the dtypes Petri reads (little-endian or byte-sized; `<U…` strings: 4 bytes a character).
        public static func itemSize(_ dtype: String) -> Int? {
            switch dtype {
            case "|u1", "|i1", "|b1": 1
            case "<u2", "<i2": 2
            case "<f4", "<i4", "<u4": 4
            case "<f8", "<i8", "<u8": 8
            default:
                if dtype.hasPrefix("<U"), let w = Int(dtype.dropFirst(2)), w >= 1, w <= 1024 { 4 * w } else { nil }
            }
        }

        /// Parses and checks a header: magic, version (1, 2 or 3), header length, dtype, C order, a shape of
        /// non-negative dimensions whose byte size fits in the bytes after the header. `name` names the array.
        public init(_ bytes: [UInt8], name: String, maxBytes: Int = 2 << 30) throws {
            func bad(_ reason: String) -> Error { .malformed(name, reason: reason) }
            guard bytes.count >= 10, bytes.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) else { throw bad("missing magic") }
            let major = bytes[6]
            let length: Int, start: Int
            switch major {
            case 1:
                length = Int(bytes[8]) | Int(bytes[9]) << 8
                start = 10
            case 2, 3:
                guard bytes.count >= 12 else { throw bad("truncated header") }
                length = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
                start = 12
            default: throw bad("format version \(major) (Petri reads 1, 2 and 3)")
            }
            guard length <= bytes.count - start, length <= 1 << 20 else { throw bad("truncated header") }
            let text = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
            func field(_ key: String) -> Substring? {
                guard let r = text.range(of: "'\(key)':") else { return nil }
                return text[r.upperBound...].drop { $0 == " " }
            }
            guard let d = field("descr"), d.first == "'", let dEnd = d.dropFirst().firstIndex(of: "'") else { throw bad("no dtype") }
            dtype = String(d[d.index(after: d.startIndex)..<dEnd])
            guard let size = Self.itemSize(dtype) else { throw bad("unsupported dtype \(dtype)") }
            itemSize = size
            guard let f = field("fortran_order"), f.hasPrefix("False") else { throw bad("Fortran order (or none given) is not supported") }
            guard let sh = field("shape"), sh.first == "(", let close = sh.firstIndex(of: ")") else { throw bad("no shape") }
            let parts = sh[sh.index(after: sh.startIndex)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
            let dims = parts.compactMap { Int($0) }
            guard dims.count == parts.count, dims.count <= 8, dims.allSatisfy({ $0 >= 0 }) else { throw bad("shape (\(parts.joined(separator: ", ")))") }
            shape = dims
            dataOffset = start + length
            guard let n = Checked.count(dims, limit: maxBytes), let byteCount = Checked.product(n, size, limit: maxBytes) else {
                throw bad("shape \(dims) is larger than Petri reads")
            }
            guard byteCount <= bytes.count - dataOffset else {
                throw bad("shape \(dims) of \(dtype) needs \(byteCount) bytes, the file holds \(bytes.count - dataOffset)")
            }
            count = n
        }
    }

    /// An array read from a file: its shape and values as Float (whatever the stored numeric dtype).
    public static func read(_ url: URL) throws -> (shape: [Int], values: [Float], dtype: String) {
        let path = url.path
        guard let data = FileManager.default.contents(atPath: path) else { throw Error.malformed(path, reason: "cannot read") }
        let bytes = [UInt8](data)
        let h = try Header(bytes, name: path)
        guard !h.dtype.hasPrefix("<U") else { throw Error.malformed(path, reason: "a string array, not numbers") }
        let body = h.dataOffset, dtype = h.dtype
        var values = [Float](repeating: 0, count: h.count)
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + body
            for i in 0..<h.count {
                switch dtype {
                case "<f4": values[i] = base.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                case "<i4": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                case "<u4": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                case "<f8": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
                case "<i8": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                case "<u8": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                case "<i2": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
                case "<u2": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                case "|i1": values[i] = Float(base.load(fromByteOffset: i, as: Int8.self))
                default: values[i] = Float(base.load(fromByteOffset: i, as: UInt8.self))
                }
            }
        }
        return (h.shape, values, dtype)
    }

    public static func readTensor(_ url: URL) throws -> Tensor {
        let r = try read(url)
        return Tensor(shape: r.shape, data: r.values)
    }

    /// The bytes of a float32 `.npy` file holding `tensor`.
    public static func encode(_ tensor: Tensor) -> Data {
        let shapeText = tensor.shape.count == 1 ? "(\(tensor.shape[0]),)"
            : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad so that magic + version + length + header is a multiple of 64, ending with a newline.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let n = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(n & 0xFF), UInt8(n >> 8)])
        data.append(header.data(using: .utf8)!)
        tensor.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4)) }
        return data
    }
}
