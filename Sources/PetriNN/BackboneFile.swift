import Foundation
import PetriEngine

/// A backbone Petri trained itself (a domain "CellNet": an ImageNet EfficientNet-Lite further trained on
/// pooled labelled cell images), stored as `NAME.petri-backbone` in the weights folder so that `NAME` works
/// wherever a backbone name does (`--backbone NAME`, `mlp:b=NAME`). The file: the magic line, a 4-byte
/// little-endian header length, a JSON header (`BackboneFile.Header`) and every tensor's float32 values,
/// little-endian, in header order. The classifier of the pretraining task is not stored.
public enum BackboneFile {
    static let magic = Array("PETRI-BACKBONE\n".utf8)
    public static let fileExtension = "petri-backbone"

    public struct Header: Codable, Sendable {
        public var format = "petri-backbone"
        public var version = 1
        /// The registered backbone whose architecture and data config this one keeps.
        public var base: String
        /// What it was trained on and how (free text for people: datasets, classes, images, steps, seed).
        public var trainedOn: [String]
        public var recipe: String
        public var created: String
        public var tensors: [TensorInfo]

        public struct TensorInfo: Codable, Sendable {
            public var name: String
            public var shape: [Int]
        }
    }

    /// Writes `model`'s parameters except its classifier (`_fc.*`), atomically.
    public static func write(_ model: EfficientNetLite, base: String, trainedOn: [String], recipe: String, to url: URL) throws {
        let params = model.namedParameters.filter { !$0.0.hasPrefix("_fc.") }
        let formatter = ISO8601DateFormatter()
        let header = Header(base: base, trainedOn: trainedOn, recipe: recipe, created: formatter.string(from: Date()),
                            tensors: params.map { Header.TensorInfo(name: $0.0, shape: $0.1.value.shape) })
        let json = try JSONEncoder().encode(header)
        var data = Data(magic)
        var length = UInt32(json.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(json)
        for (_, p) in params {
            p.value.withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: UInt8.self) { data.append(contentsOf: $0) }
            }
        }
        try data.write(to: url, options: .atomic)
    }

    /// The header and the tensors (as a `Checkpoint`, for `Module.load`). The file is untrusted: the header's
    /// length, every tensor's shape and the total are checked against the bytes present before anything is
    /// read, the base must be a registered backbone, and every value must be finite.
    public static func read(_ url: URL) throws -> (header: Header, checkpoint: Checkpoint) {
        let file = url.path
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= 1 << 30 else { throw CheckpointError.malformed(file: file, reason: "\(size) bytes, larger than a backbone file can be") }
        guard let data = try? Data(contentsOf: url, options: .mappedIfSafe) else {
            throw CheckpointError.malformed(file: file, reason: "cannot read")
        }
        let bytes = [UInt8](data)
        guard bytes.starts(with: magic), bytes.count >= magic.count + 4 else {
            throw CheckpointError.malformed(file: file, reason: "not a Petri backbone file")
        }
        var offset = magic.count
        let length = Int(UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24)
        offset += 4
        guard length <= min(bytes.count - offset, 16 << 20) else {
            throw CheckpointError.malformed(file: file, reason: "header length \(length) passes the end of the file")
        }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: Data(bytes[offset..<(offset + length)])) } catch {
            throw CheckpointError.malformed(file: file, reason: "damaged header")
        }
        guard header.format == "petri-backbone" else { throw CheckpointError.malformed(file: file, reason: "header format '\(header.format)'") }
        guard header.version >= 1, header.version <= 1 else {
            throw CheckpointError.malformed(file: file, reason: "backbone file version \(header.version) is not one this Petri understands (1)")
        }
        guard ModelRegistry.names.contains(header.base) else {
            throw CheckpointError.malformed(file: file, reason: "base '\(header.base)' is not a registered backbone (\(ModelRegistry.names.joined(separator: ", ")))")
        }
        offset += length
        // Sizes first: every shape must be non-negative and the tensors must fill the rest of the file exactly.
        var counts: [Int] = [], total = 0
        for t in header.tensors {
            guard t.shape.count <= 8, let n = Checked.count(t.shape, limit: Checkpoint.maxTensorElements),
                  let sum = Checked.sum(total, n, limit: Checkpoint.maxTotalElements) else {
                throw CheckpointError.malformed(file: file, reason: "tensor \(t.name) has an impossible shape \(t.shape)")
            }
            counts.append(n)
            total = sum
        }
        let present = bytes.count - offset
        guard Checked.product(total, 4) == present else {
            throw CheckpointError.malformed(file: file, reason: total * 4 > present
                ? "truncated: the header's tensors need \(total * 4) bytes, the file holds \(present) after the header"
                : "\(present - total * 4) bytes after the last tensor")
        }
        guard Set(header.tensors.map(\.name)).count == header.tensors.count else {
            throw CheckpointError.malformed(file: file, reason: "a tensor is listed twice")
        }
        var tensors: [StoredTensor] = []
        for (t, n) in zip(header.tensors, counts) {
            let values = bytes[offset..<(offset + 4 * n)].withUnsafeBytes { raw in
                (0..<n).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            guard values.allSatisfy(\.isFinite) else {
                throw CheckpointError.malformed(file: file, reason: "tensor \(t.name) holds values that are not finite numbers")
            }
            tensors.append(StoredTensor(name: t.name, type: .float32, shape: t.shape, values: values))
            offset += 4 * n
        }
        return (header, Checkpoint(file: file, tensors: tensors))
    }
}
