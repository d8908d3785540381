import Foundation
import PetriData
import PetriEngine
import Testing
@testable import PetriNN

/// Petri's EfficientNet-Lite against PyTorch on the same weights and the same (PIL-resized) pixels.
/// References come from scripts/reference/make_reference.py. Needs the weights `make setup` installs.
@Suite(.serialized) struct EfficientNetReferenceTests {
    static func normalised(_ pixels: Tensor) -> Tensor {
        Tensor(shape: pixels.shape, data: pixels.scalars.map { ($0 / 255 - 0.5) / 0.5 })
    }

    /// Lite0 always; Lite1 and Lite2 with the slow checks.
    @Test(arguments: slowTests ? ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"] : ["efficientnet-lite0"])
    func logitsMatchPyTorch(name: String) throws {
        let (model, data) = try ModelRegistry.make(name)
        let input = try Fixtures.npy("\(name)-input.npy")
        #expect(input.shape[1] == data.inputSize)
        let logits = try model.logits(Self.normalised(input))
        let reference = try Fixtures.npy("\(name)-logits.npy")
        let diff = logits.maxAbsDifference(reference)
        #expect(diff <= 1e-3, "\(name): max |Petri − PyTorch| = \(diff)")
    }

    @Test func pooledFeaturesMatchPyTorch() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        let input = Self.normalised(try Fixtures.npy("efficientnet-lite0-input.npy"))
        let features = try model.features(input)
        #expect(features.shape == [3, 1280])
        let diff = features.maxAbsDifference(try Fixtures.npy("efficientnet-lite0-features.npy"))
        #expect(diff <= 1e-3, "max |Petri − PyTorch| = \(diff)")
    }

    @Test func batchSizeDoesNotChangeResults() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        let input = Self.normalised(try Fixtures.npy("efficientnet-lite0-input.npy"))
        let all = try model.logits(input)
        let one = try model.logits(input.slice(rows: 1..<2))
        #expect(one.maxAbsDifference(all.slice(rows: 1..<2)) <= 1e-4)
    }

    /// End to end through Petri's own decoders and resize: the two scikit-image photos.
    @Test(arguments: [("chelsea.png", 285, "Egyptian cat"), ("coffee.png", 967, "espresso")])
    func imageNetSanity(file: String, expectedClass: Int, label: String) throws {
        let (model, data) = try ModelRegistry.make("efficientnet-lite0")
        let image = try ImageDecoder().decode(contentsOf: Fixtures.url(file))
        let logits = try model.logits(data.batch([image])).scalars
        let top = logits.indices.max { logits[$0] < logits[$1] }!
        #expect(top == expectedClass, "\(file): top-1 \(top), expected \(expectedClass) (\(label))")
    }

    @Test func intermediateStagesHaveTheirWidths() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        let input = Self.normalised(try Fixtures.npy("efficientnet-lite0-input.npy")).slice(rows: 0..<1)
        for (level, channels, side) in [(FeatureLevel.stem, 32, 112), (.stage(2), 24, 56), (.stage(4), 80, 14),
                                        (.stage(7), 320, 7), (.head, 1280, 7)] {
            let a = try model.activations(input, upTo: level)
            #expect(a.shape == [1, side, side, channels], "\(level)")
            #expect(model.channels(at: level) == channels)
        }
    }

    @Test func severalLevelsInOnePassEqualSeparatePasses() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        let input = Self.normalised(try Fixtures.npy("efficientnet-lite0-input.npy"))
        let all = try model.features(input, levels: [.stem, .stage(3), .stage(6), .head])
        for level in [FeatureLevel.stem, .stage(3), .stage(6), .head] {
            #expect(all[level]!.maxAbsDifference(try model.features(input, level: level)) < 1e-4, "\(level)")
        }
    }

    @Test func noReferenceKernelsWereUsed() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        _ = try model.logits(Tensor(zeros: [2, 224, 224, 3]))
        let refs = createdKernelImplementations().filter { $0.contains(": ref") }
        #expect(refs.isEmpty, "reference kernels: \(refs)")
    }
}

@Suite struct ArchitectureTests {
    @Test func blockCountsAndWidths() {
        #expect(EfficientNetLite(.lite0).blocks.count == 16)
        #expect(EfficientNetLite(.lite1).blocks.count == 21)
        let lite2 = EfficientNetLite(.lite2)
        #expect(lite2.blocks.count == 21)
        #expect(lite2.blocks.last!.projectConv.outChannels == 352)
        #expect(lite2.blocks[0].depthwiseConv.inChannels == 32)
    }

    @Test func tensorFlowSamePadding() {
        // stride 2 on even input: the extra row goes bottom/right
        #expect(Conv2DGeometry.samePadding(input: 224, kernel: 3, stride: 2) == (0, 1))
        #expect(Conv2DGeometry.samePadding(input: 56, kernel: 5, stride: 2) == (1, 2))
        #expect(Conv2DGeometry.samePadding(input: 15, kernel: 3, stride: 2) == (1, 1))
        #expect(Conv2DGeometry.samePadding(input: 14, kernel: 5, stride: 1) == (2, 2))
    }
}
