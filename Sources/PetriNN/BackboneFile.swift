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

    /// The header and the tensors (as a `Checkpoint`, for `Module.load`).
    public static func read(_ url: URL) throws -> (header: Header, checkpoint: Checkpoint) {
        let file = url.path
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
        guard offset + length <= bytes.count,
              let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[offset..<(offset + length)])) else {
            throw CheckpointError.malformed(file: file, reason: "damaged header")
        }
        guard header.version <= 1 else {
            throw CheckpointError.malformed(file: file, reason: "backbone file version \(header.version) is newer than this Petri understands")
        }
        offset += length
        var tensors: [StoredTensor] = []
        for t in header.tensors {
            let n = t.shape.reduce(1, *)
            guard offset + 4 * n <= bytes.count else { throw CheckpointError.malformed(file: file, reason: "truncated at \(t.name)") }
            let values = bytes[offset..<(offset + 4 * n)].withUnsafeBytes { raw in
                (0..<n).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            tensors.append(StoredTensor(name: t.name, type: .float32, shape: t.shape, values: values))
            offset += 4 * n
        }
        guard offset == bytes.count else { throw CheckpointError.malformed(file: file, reason: "\(bytes.count - offset) bytes after the last tensor") }
        return (header, Checkpoint(file: file, tensors: tensors))
    }
}
