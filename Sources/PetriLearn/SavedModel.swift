import Foundation
import PetriData
import PetriEngine
import PetriNN

/// A trained classifier as a versioned file: the frozen-feature recipe (backbones, levels, views,
/// preprocessing), the fitted head, and the class names — everything `predict` needs, nothing it must guess.
public struct SavedModel: Codable, Sendable {
    public static let formatName = "petri-model"
    public static let currentVersion = 1

    public var format = SavedModel.formatName
    public var version = SavedModel.currentVersion
    public var classNames: [String]
    public var backbones: [String]
    public var levels: [String]
    public var views: Int
    /// Central-crop fractions whose features are concatenated (absent in files before crops: the whole image).
    public var crops: [Double]?
    public var preprocessing: String
    public var head: LogisticRegression.Fitted
    public var regularisation: Double
    /// Provenance: how and on what it was trained.
    public var method: String
    public var trainedOn: String
    public var dataHash: String
    public var trainingImages: Int
    public var innerCVBalancedAccuracy: Double?
    public var created: String
    public var petriVersion: String

    public init(classNames: [String], backbones: [String], levels: [String], views: Int, crops: [Double], preprocessing: String,
                head: LogisticRegression.Fitted, regularisation: Double, method: String, trainedOn: String,
                dataHash: String, trainingImages: Int, innerCVBalancedAccuracy: Double?, created: String,
                petriVersion: String) {
        self.classNames = classNames; self.backbones = backbones; self.levels = levels; self.views = views; self.crops = crops
        self.preprocessing = preprocessing; self.head = head; self.regularisation = regularisation
        self.method = method; self.trainedOn = trainedOn; self.dataHash = dataHash
        self.trainingImages = trainingImages; self.innerCVBalancedAccuracy = innerCVBalancedAccuracy
        self.created = created; self.petriVersion = petriVersion
    }

    public var featureSpec: FeatureSpec {
        FeatureSpec(backbones: backbones, levels: levels.compactMap(FeatureLevel.init), views: views, crops: crops ?? [1])
    }

    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(self).write(to: url, options: .atomic)
    }

    public static func read(_ url: URL) throws -> SavedModel {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DatasetError.malformed(url.path, reason: "cannot read the model file")
        }
        struct Header: Codable { var format: String?; var version: Int? }
        guard let header = try? JSONDecoder().decode(Header.self, from: data), header.format == formatName else {
            throw DatasetError.malformed(url.path, reason: "not a Petri model file")
        }
        guard let v = header.version, v <= currentVersion else {
            throw DatasetError.malformed(url.path, reason: "model format version \(header.version ?? 0) is newer than this Petri understands (\(currentVersion)); upgrade Petri")
        }
        do { return try JSONDecoder().decode(SavedModel.self, from: data) } catch {
            throw DatasetError.malformed(url.path, reason: "damaged model file: \(error)")
        }
    }

    /// Class probabilities `[items, classes]` for the items of `dataset`.
    public func probabilities(_ dataset: Dataset, progress: ((String, Int, Int) -> Void)? = nil) throws -> Tensor {
        let bank = FeatureBank(dataset: dataset)
        bank.plan([featureSpec])
        bank.progress = progress
        let x = try featureSpec.matrix(bank)
        return head.probabilities(l2NormalizedRows(x))
    }
}
