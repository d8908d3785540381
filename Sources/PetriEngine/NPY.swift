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

    /// An array read from a file: its shape and values as Float (whatever the stored dtype).
    public static func read(_ url: URL) throws -> (shape: [Int], values: [Float], dtype: String) {
        let path = url.path
        let data = try Data(contentsOf: url)
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) else {
            throw Error.malformed(path, reason: "missing magic")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw Error.malformed(path, reason: "truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLength <= bytes.count else { throw Error.malformed(path, reason: "truncated header") }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'") else {
            throw Error.malformed(path, reason: "no dtype")
        }
        let afterQ = descrField[descrField.index(after: q1)...]
        let dtype = String(afterQ.prefix { $0 != "'" })
        if let f = field("fortran_order"), f.hasPrefix("True") {
            throw Error.malformed(path, reason: "Fortran order is not supported")
        }
        guard let shapeField = field("shape"), let open = shapeField.firstIndex(of: "("),
              let close = shapeField.firstIndex(of: ")") else { throw Error.malformed(path, reason: "no shape") }
        let shape = shapeField[shapeField.index(after: open)..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let body = headerStart + headerLength
        let size: Int
        switch dtype {
        case "<f4", "<i4": size = 4
        case "<f8", "<i8": size = 8
        case "|u1", "|i1", "|b1": size = 1
        default: throw Error.malformed(path, reason: "unsupported dtype \(dtype)")
        }
        guard bytes.count >= body + count * size else { throw Error.malformed(path, reason: "truncated data") }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + body
            for i in 0..<count {
                switch dtype {
                case "<f4": values[i] = base.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                case "<i4": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                case "<f8": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
                case "<i8": values[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                case "|i1": values[i] = Float(base.load(fromByteOffset: i, as: Int8.self))
                default: values[i] = Float(base.load(fromByteOffset: i, as: UInt8.self))
                }
            }
        }
        return (shape, values, dtype)
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
