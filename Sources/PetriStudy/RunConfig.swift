import Foundation
import PetriData
import PetriLearn
import PetriNN

/// The settings that identify a run: everything that changes its results. The run store keys `--resume` by
/// its hash (with the data's), a report shows it, and a run record keeps it.
public struct RunConfig {
    /// `curve` or `study`.
    public var kind: String
    public var dataset: DatasetPolicy
    public var sizes: [Int?]
    public var seeds: [UInt64]
    /// The methods' keys (their specs' texts), in order.
    public var methods: [String]
    /// The backbone of single-backbone presets, of the report's map and activation maps.
    public var backbone: String
    /// Settings of the protocol beyond sizes and seeds (`protocol`, `folds`, ...), recorded as given.
    public var protocolSettings: [String: Any] = [:]
    /// Identities of the trained backbones (CellNet) the methods read, by name: a run resumes only on the same.
    public var trainedBackbones: [String: String]?

    public init(kind: String, dataset: DatasetPolicy, sizes: [Int?], seeds: [UInt64], methods: [MethodEntry], backbone: String) {
        self.kind = kind
        self.dataset = dataset
        self.sizes = sizes
        self.seeds = seeds
        self.methods = methods.map(\.id)
        self.backbone = backbone
        trainedBackbones = SavedModel.trainedBackboneIdentities(Array(methods.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1.method)) }))
    }

    /// The config as recorded (JSON object), with the data hash and Petri's version.
    public func json(dataHash: String) -> [String: Any] {
        var o: [String: Any] = [
            "kind": kind, "sizes": sizes.map { $0.map(String.init) ?? "all" }, "seeds": seeds, "methods": methods,
            "backbone": backbone, "petri": PetriVersion.string, "data_hash": dataHash,
        ]
        o.merge(dataset.configEntries) { a, _ in a }
        o.merge(protocolSettings) { a, _ in a }
        if let trainedBackbones { o["trained_backbones"] = trainedBackbones }
        return o
    }

    /// SHA-256 of the recorded config's canonical JSON.
    public static func hash(_ json: [String: Any]) -> String {
        SHA256.hex(String(decoding: (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data(), as: UTF8.self))
    }
}

/// Petri's version, as runs and model files record it.
public enum PetriVersion {
    public static let string = "0.1.0"
}

/// SHA-256 over the sorted (path, label, content hash) of every item: identifies the exact data a run used.
public func datasetHash(_ ds: Dataset) -> String {
    let lines = ds.items.map { item in
        "\(item.relativePath)\t\(ds.classNames[item.label])\t\((try? ds.contents(of: item)).map(SHA256.hex) ?? "unreadable")"
    }.sorted()
    return SHA256.hex(lines.joined(separator: "\n"))
}
