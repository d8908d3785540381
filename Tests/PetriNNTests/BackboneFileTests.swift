import Foundation
import PetriEngine
import Testing
@testable import PetriNN

/// A backbone Petri trained round-trips through its file and the registry (needs the Lite0 weights).
@Suite struct BackboneFileTests {
    @Test func trainedBackboneRoundTripsThroughTheRegistry() throws {
        guard let dir = ModelRegistry.weightSearchPath.first(where: {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("efficientnet-lite0-57934424.pth").path)
        }) else {
            print("skipped: ImageNet Lite0 weights not installed (run make setup)")
            return
        }
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        // Stand-in for training: change the head convolution a little.
        let head = try #require(model.namedParameters.first { $0.0 == "_conv_head.weight" }).1
        head.value = head.value.scaled(by: 1.01)
        let name = "test-backbone-\(UUID().uuidString.prefix(8))"
        let url = dir.appendingPathComponent(name + ".petri-backbone")
        defer { try? FileManager.default.removeItem(at: url) }
        try BackboneFile.write(model, base: "efficientnet-lite0", trainedOn: ["test"], recipe: "scaled head", to: url)

        let entry = try ModelRegistry.entry(name)
        #expect(entry.fingerprint != nil && entry.dataConfig.inputSize == 224)
        #expect(ModelRegistry.trainedNames.contains(name))
        let (back, _) = try ModelRegistry.make(name)
        let original = Dictionary(model.namedParameters.map { ($0.0, $0.1.value) }, uniquingKeysWith: { a, _ in a })
        for (n, p) in back.namedParameters where !n.hasPrefix("_fc.") {
            #expect(p.value.maxAbsDifference(original[n]!) == 0, "\(n)")
        }
        var rng = SeededGenerator(seed: 1)
        let x = Tensor(shape: [1, 224, 224, 3], data: (0..<(224 * 224 * 3)).map { _ in Float.random(in: -1...1, using: &rng) })
        #expect(try back.features(x).maxAbsDifference(try model.features(x)) < 1e-5)
        let (imagenet, _) = try ModelRegistry.make("efficientnet-lite0")
        #expect(try back.features(x).maxAbsDifference(try imagenet.features(x)) > 1e-3)

        // A damaged file says so, naming it.
        var bytes = try Data(contentsOf: url)
        bytes.removeLast(100)
        try bytes.write(to: url)
        #expect { try BackboneFile.read(url) } throws: { "\($0)".contains(url.path) && "\($0)".contains("truncated") }
        #expect { try ModelRegistry.entry("no-such-backbone") } throws: { "\($0)".contains("unknown backbone") }
    }
}
