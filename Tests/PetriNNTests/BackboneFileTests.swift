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

    /// The shipped CellNet (weights/, installed by `make setup`) is a Lite0 trained on PBC and NIH malaria and
    /// never on bccd — what keeps the bccd demo and the README's bccd figures fair — and differs from ImageNet.
    @Test func shippedCellNetIsWhatItsReadmeSays() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shipped = repo.appendingPathComponent("weights/cellnet.petri-backbone")
        let (header, checkpoint) = try BackboneFile.read(shipped)
        #expect(header.base == "efficientnet-lite0")
        #expect(header.trainedOn.contains { $0.hasPrefix("pbc-8class-500:") })
        #expect(header.trainedOn.contains { $0.hasPrefix("malaria-nih-50gray:") })
        #expect(!header.trainedOn.contains { $0.hasPrefix("bccd") })
        #expect(header.recipe.contains("partial[stage2]"))
        guard let installed = try? ModelRegistry.weightsURL(for: ModelRegistry.entry("cellnet")),
              (try? ModelRegistry.make("efficientnet-lite0")) != nil else {
            print("skipped: CellNet or ImageNet Lite0 weights not installed (run make setup)")
            return
        }
        #expect(try Data(contentsOf: installed) == Data(contentsOf: shipped), "the installed CellNet is not the shipped one: run make setup")
        let (imagenet, _) = try ModelRegistry.make("efficientnet-lite0")
        let original = Dictionary(imagenet.namedParameters.map { ($0.0, $0.1.value) }, uniquingKeysWith: { a, _ in a })
        // Stem and stages 1–2 stay ImageNet's; the head convolution was trained.
        #expect(try #require(checkpoint["_conv_stem.weight"]).tensor.maxAbsDifference(original["_conv_stem.weight"]!) == 0)
        #expect(try #require(checkpoint["_conv_head.weight"]).tensor.maxAbsDifference(original["_conv_head.weight"]!) > 1e-3)
    }
}
