import Foundation
import PetriEngine
import ZIPFoundation

/// One tensor read from a checkpoint, made contiguous (row-major) whatever its stored strides.
public struct StoredTensor: Sendable {
    public let name: String
    public let type: StorageType
    public let shape: [Int]
    /// Values converted to Float32 (int64 `num_batches_tracked` counters included).
    public let values: [Float]

    public var tensor: Tensor { Tensor(shape: shape, data: values) }
}

/// A PyTorch checkpoint (`torch.save` of a state dict), read without Python and without executing
/// anything: both the legacy format (torch < 1.6) and the zip format.
///
/// The file is untrusted: every count, shape, stride and offset is checked with overflow-safe arithmetic
/// against the bytes actually present before anything is allocated; the pickle is at most `maxPickleBytes`
/// and `PickleReader.maxDepth` deep; a tensor holds at most `maxTensorElements` values and the checkpoint
/// `maxTotalElements`; zip entries are checked against their CRC-32; floating-point values must be finite.
/// A bad file is refused with one `CheckpointError` naming it and the problem.
public struct Checkpoint: Sendable {
    public static let maxPickleBytes = 64 << 20
    public static let maxTensorElements = 1 << 26
    public static let maxTotalElements = 1 << 27

    public let file: String
    /// Tensors in the order the file lists them.
    public let tensors: [StoredTensor]

    public subscript(name: String) -> StoredTensor? { tensors.first { $0.name == name } }

    /// Tensors read some other way (a `BackboneFile`).
    public init(file: String, tensors: [StoredTensor]) {
        self.file = file
        self.tensors = tensors
    }

    public init(contentsOf url: URL) throws {
        let file = url.path
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= 1 << 30 else {
            throw CheckpointError.malformed(file: file, reason: "\(size) bytes, larger than any backbone checkpoint Petri reads (1 GiB)")
        }
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw CheckpointError.malformed(file: file, reason: "cannot read: \(error.localizedDescription)")
        }
        if data.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            tensors = try Checkpoint.readZip(url: url, file: file)
        } else {
            tensors = try Checkpoint.readLegacy(bytes: [UInt8](data), file: file)
        }
        self.file = file
    }

    // MARK: Legacy format: five pickles, then each storage as int64 count + raw little-endian data.

    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    static func readLegacy(bytes: [UInt8], file: String) throws -> [StoredTensor] {
        var reader = PickleReader(file: file, bytes: bytes)
        let noPersistent: (PickleValue) throws -> PickleValue = { _ in
            throw CheckpointError.malformed(file: file, reason: "unexpected persistent id in the header")
        }
        guard case let .bytes(magic) = try reader.load(persistentLoad: noPersistent), magic == legacyMagic else {
            throw CheckpointError.malformed(file: file, reason: "not a PyTorch checkpoint (magic number missing)")
        }
        guard let proto = try reader.load(persistentLoad: noPersistent).int, proto == 1001 else {
            throw CheckpointError.malformed(file: file, reason: "unsupported legacy protocol version")
        }
        _ = try reader.load(persistentLoad: noPersistent)   // sys_info (endianness, type sizes)
        let root = try reader.load { try storageReference($0, file: file) }
        guard let keys = try reader.load(persistentLoad: noPersistent).tuple?.compactMap(\.string) else {
            throw CheckpointError.malformed(file: file, reason: "storage key list missing")
        }
        var position = reader.position
        var storages: [String: ArraySlice<UInt8>] = [:]
        for key in keys {
            guard bytes.count - position >= 8 else {
                throw CheckpointError.malformed(file: file, reason: "truncated at storage \(key)")
            }
            var count: UInt64 = 0
            for i in 0..<8 { count |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
            position += 8
            let (size, declared) = try storageInfo(key, in: root, file: file)
            guard let n = Checked.int(count), let byteCount = Checked.product(n, size, limit: bytes.count - position) else {
                throw CheckpointError.malformed(file: file, reason: "storage \(key) claims \(count) elements, more than the file holds")
            }
            if let declared, declared != n {
                throw CheckpointError.malformed(file: file, reason: "storage \(key) holds \(n) elements but its tensors were told \(declared)")
            }
            storages[key] = bytes[position..<(position + byteCount)]
            position += byteCount
        }
        return try materialize(root: root, file: file) { ref in
            guard let s = storages[ref.key] else {
                throw CheckpointError.malformed(file: file, reason: "storage \(ref.key) missing")
            }
            return s
        }
    }

    // MARK: Zip format: `<name>/data.pkl` plus one file per storage under `<name>/data/`.

    static func readZip(url: URL, file: String) throws -> [StoredTensor] {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw CheckpointError.malformed(file: file, reason: "unreadable zip: \(error)")
        }
        func contents(_ entry: Entry, limit: Int, what: String) throws -> [UInt8] {
            do { return try ZipEntries.contents(archive, entry, limit: limit, what: what) } catch let p as ZipEntries.Problem {
                throw CheckpointError.malformed(file: file, reason: p.description)
            }
        }
        guard let pickleEntry = archive.first(where: { $0.path.hasSuffix("data.pkl") }) else {
            throw CheckpointError.malformed(file: file, reason: "zip without data.pkl")
        }
        let prefix = String(pickleEntry.path.dropLast("data.pkl".count))
        var reader = PickleReader(file: file, bytes: try contents(pickleEntry, limit: maxPickleBytes, what: "data.pkl"))
        let root = try reader.load { try storageReference($0, file: file) }
        var cache: [String: [UInt8]] = [:]
        return try materialize(root: root, file: file) { ref in
            if let c = cache[ref.key] { return c[...] }
            guard let entry = archive["\(prefix)data/\(ref.key)"] else {
                throw CheckpointError.malformed(file: file, reason: "storage \(ref.key) missing from zip")
            }
            // A storage holds its declared elements; none may pass the checkpoint's limit.
            let limit = Checked.product(ref.elementCount ?? maxTotalElements, ref.type.byteSize, limit: maxTotalElements * 8) ?? 0
            let c = try contents(entry, limit: limit, what: "storage \(ref.key)")
            if let n = ref.elementCount, c.count != n * ref.type.byteSize {
                throw CheckpointError.malformed(file: file, reason: "storage \(ref.key) holds \(c.count) bytes, not \(n) elements of \(ref.type.byteSize)")
            }
            cache[ref.key] = c
            return c[...]
        }
    }

    // MARK: Shared

    /// A storage persistent id: ('storage', storage_type, key, location, size[, view_metadata]) in both formats.
    private static func storageReference(_ pid: PickleValue, file: String) throws -> PickleValue {
        guard let t = pid.tuple, t.count >= 5, t[0].string == "storage",
              case let .global(_, typeName) = t[1], let type = StorageType(rawValue: typeName),
              let key = t[2].string else {
            throw CheckpointError.malformed(file: file, reason: "unsupported persistent id")
        }
        if let n = t[4].int, n < 0 { throw CheckpointError.malformed(file: file, reason: "storage \(key) of \(n) elements") }
        return .storage(StorageReference(key: key, type: type, elementCount: t[4].int))
    }

    /// The element size of a storage and the element count its tensors were given.
    private static func storageInfo(_ key: String, in root: PickleValue, file: String) throws -> (size: Int, count: Int?) {
        var found: (Int, Int?)?
        visitTensors(root) { _, t in if t.storage.key == key { found = (t.storage.type.byteSize, t.storage.elementCount) } }
        guard let f = found else {
            throw CheckpointError.malformed(file: file, reason: "storage \(key) is used by no tensor")
        }
        return f
    }

    private static func visitTensors(_ root: PickleValue, _ body: (String, TensorReference) -> Void) {
        guard case let .dict(d) = root else { return }
        for (k, v) in zip(d.keys, d.values) {
            if case let .tensor(t) = v, let name = k.string { body(name, t) }
        }
    }

    private static func materialize(root: PickleValue, file: String,
                                    storage: (StorageReference) throws -> ArraySlice<UInt8>) throws -> [StoredTensor] {
        var dict: PickleDict
        switch root {
        case let .dict(d): dict = d
        default: throw CheckpointError.malformed(file: file, reason: "top-level object is not a state dict")
        }
        // A checkpoint saved as {"state_dict": {...}} is accepted too.
        if dict.keys.count == 1, dict.keys[0].string == "state_dict", case let .dict(inner) = dict.values[0] {
            dict = inner
        }
        var out: [StoredTensor] = []
        var total = 0
        for (k, v) in zip(dict.keys, dict.values) {
            guard let name = k.string else { continue }
            guard case let .tensor(t) = v else { continue }
            guard let count = Checked.count(t.shape, limit: maxTensorElements),
                  let sum = Checked.sum(total, count, limit: maxTotalElements) else {
                throw CheckpointError.malformed(file: file, reason: "tensor \(name) of shape \(t.shape) is larger than Petri reads (\(maxTensorElements) values a tensor, \(maxTotalElements) in all)")
            }
            total = sum
            let raw = try storage(t.storage)
            out.append(StoredTensor(name: name, type: t.storage.type, shape: t.shape,
                                    values: try gather(t, count: count, raw: raw, file: file, name: name)))
        }
        return out
    }

    /// Copies a strided view out of its storage into row-major order (`count` values, already checked).
    private static func gather(_ t: TensorReference, count: Int, raw: ArraySlice<UInt8>, file: String, name: String) throws -> [Float] {
        let size = t.storage.type.byteSize
        let elements = raw.count / size
        var maxIndex: Int? = t.offset
        for (d, s) in zip(t.shape, t.strides) where d > 0 {
            maxIndex = maxIndex.flatMap { m in Checked.product(d - 1, s).flatMap { Checked.sum(m, $0) } }
        }
        guard count == 0 || (maxIndex.map { $0 < elements } ?? false) else {
            throw CheckpointError.malformed(file: file, reason: "tensor \(name) reaches outside its storage")
        }
        var out = [Float](repeating: 0, count: count)
        raw.withUnsafeBytes { buf in
            func value(_ i: Int) -> Float {
                let p = buf.baseAddress! + i * size
                switch t.storage.type {
                case .float32: return p.loadUnaligned(as: Float.self)
                case .float64: return Float(p.loadUnaligned(as: Double.self))
                case .float16: return Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self)))
                case .int64: return Float(p.loadUnaligned(as: Int64.self))
                case .int32: return Float(p.loadUnaligned(as: Int32.self))
                case .int16: return Float(p.loadUnaligned(as: Int16.self))
                case .int8: return Float(p.loadUnaligned(as: Int8.self))
                case .uint8, .bool: return Float(p.load(as: UInt8.self))
                }
            }
            var index = [Int](repeating: 0, count: t.shape.count)
            for flat in 0..<count {
                var src = t.offset
                for d in 0..<index.count { src += index[d] * t.strides[d] }
                out[flat] = value(src)
                var d = index.count - 1
                while d >= 0 {
                    index[d] += 1
                    if index[d] < t.shape[d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
        }
        guard out.allSatisfy(\.isFinite) else {
            throw CheckpointError.malformed(file: file, reason: "tensor \(name) holds values that are not finite numbers")
        }
        return out
    }
}
