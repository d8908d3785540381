import Foundation
import PetriData
import PetriEngine
import PetriNN
import Testing
@testable import PetriLearn

/// A model file's fields are checked against each other when it is read: each broken field is refused with a
/// message naming the file and the field, never used.
@Suite struct ModelFileValidationTests {
    static func valid(classes: Int = 2) -> SavedModel {
        let hidden = 4, features = 1280
        var rng = SeededGenerator(seed: 3)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() * 0.01 } }
        let fitted = MLPHead.Fitted(w1: Tensor(shape: [hidden, features], data: values(hidden * features)), b1: Tensor(zeros: [hidden]),
                                    w2: Tensor(shape: [classes, hidden], data: values(classes * hidden)), b2: Tensor(zeros: [classes]))
        var m = SavedModel(classNames: (0..<classes).map { "c\($0)" }, backbones: ["efficientnet-lite0"], levels: ["head"], views: 1,
                           crops: [1], preprocessing: "none", head: nil, regularisation: nil, mlp: SavedModel.MLP(fitted),
                           method: "mlp", trainedOn: "x", dataHash: "h", trainingImages: 10, innerCVBalancedAccuracy: nil,
                           created: "now", petriVersion: "test")
        m.triage = SavedModel.Triage(labels: [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1], probabilities: (0..<12).map { $0 % 2 == 0 ? [0.8, 0.2] : [0.3, 0.7] },
                                     classes: 2)
        return m
    }

    func refused(_ model: SavedModel, _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-invalid-\(UUID().uuidString).petri")
        defer { try? FileManager.default.removeItem(at: url) }
        try model.write(to: url)
        do {
            _ = try SavedModel.read(url)
            Issue.record("accepted a model that should be refused (\(words))", sourceLocation: sourceLocation)
        } catch {
            let text = "\(error)"
            #expect(text.hasPrefix(url.path), "\(text)", sourceLocation: sourceLocation)
            for w in words { #expect(text.contains(w), "\(text)", sourceLocation: sourceLocation) }
        }
    }

    @Test func aValidModelReads() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-valid-\(UUID().uuidString).petri")
        defer { try? FileManager.default.removeItem(at: url) }
        try Self.valid().write(to: url)
        #expect(try SavedModel.read(url).classNames == ["c0", "c1"])
    }

    /// A backbone name no registry knows (it may be a trained one not installed here) passes `read`, and is
    /// refused when the model is used, naming the file and the backbone — before any image is read.
    @Test func anUnknownBackboneIsNamedWhenTheModelIsUsed() throws {
        var m = Self.valid()
        m.backbones = ["x"]
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Dataset.load(root.appendingPathComponent("Samples/bccd-wbc-mini"))
        #expect(throws: (any Error).self) { _ = try m.probabilities(data, file: "m.petri") }
        do { _ = try m.probabilities(data, file: "m.petri") } catch {
            #expect("\(error)".hasPrefix("m.petri: it needs backbone 'x': unknown backbone 'x'"), "\(error)")
        }
    }

    @Test func brokenFieldsAreNamed() throws {
        var m = Self.valid()
        m.classNames = ["c0", "c1", "c2"]                   // three names for a two-class head
        try refused(m, ["mlp.classes: 2", "3 classes"])
        m = Self.valid(); m.classNames = ["c0"]
        try refused(m, ["classNames", "at least two"])
        m = Self.valid(); m.classNames = ["c0", ""]
        try refused(m, ["classNames", "empty or repeated"])
        m = Self.valid(); m.crops = [0]
        try refused(m, ["crops", "(0, 1]"])
        m = Self.valid(); m.crops = [0.5, 0.5]
        try refused(m, ["crops"])
        m = Self.valid(); m.views = 1_000_000_000
        try refused(m, ["views", "1…8"])
        m = Self.valid(); m.levels = ["stage9"]
        try refused(m, ["levels"])
        m = Self.valid(); m.mlp!.w1.removeLast(10)           // truncated weights
        try refused(m, ["mlp:", "values for 4 hidden units"])
        m = Self.valid(); m.mlp!.features = 999; m.mlp!.w1 = [Float](repeating: 0, count: 4 * 999)
        try refused(m, ["mlp.features: 999", "1280"])
        m = Self.valid(); m.triage!.temperature = -1
        try refused(m, ["triage.temperature"])
        m = Self.valid(); m.preprocessing = "sharpen"
        try refused(m, ["preprocessing 'sharpen'"])
        m = Self.valid(); m.mlp = nil
        try refused(m, ["no classifier"])
        m = Self.valid()
        m.networks = [SavedModel.Network(FittedNetwork(model: SmallCNN(.cnnMini, classes: 2, rng: &globalRNG), views: 1))]
        m.networks![0].net = "resnet"
        try refused(m, ["networks[0]", "unknown network 'resnet'"])
        m = Self.valid()
        m.networks = [SavedModel.Network(FittedNetwork(model: SmallCNN(.cnnMini, classes: 3, rng: &globalRNG), views: 1))]
        try refused(m, ["networks[0].classes: 3"])
    }
}

nonisolated(unsafe) var globalRNG = SeededGenerator(seed: 0)
