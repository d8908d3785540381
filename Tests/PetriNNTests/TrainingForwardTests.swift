import Foundation
import PetriEngine
import Testing
@testable import PetriNN

@Suite(.serialized) struct TrainingForwardTests {
    static func input() throws -> Tensor {
        EfficientNetReferenceTests.normalised(try Fixtures.npy("efficientnet-lite0-input.npy"))
    }

    /// The tape's evaluation-mode forward (separate conv, BN, ReLU6 kernels) equals the folded inference path
    /// and therefore PyTorch.
    @Test func evaluationModeTapeForwardMatchesPyTorch() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        let tape = Tape(training: false)
        var rng = SeededGenerator(seed: 0)
        let logits = try model.logits(tape.constant(try Self.input()), on: tape, rng: &rng)
        let diff = logits.value.maxAbsDifference(try Fixtures.npy("efficientnet-lite0-logits.npy"))
        #expect(diff <= 1e-3, "max |tape − PyTorch| = \(diff)")
    }

    /// Starting from cached stage-5 activations gives the same result as running from the images.
    @Test func partialForwardFromCachedActivations() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        let x = try Self.input()
        let cached = try model.activations(x, upTo: .stage(5))
        let tape = Tape(training: false)
        var rng = SeededGenerator(seed: 0)
        let partial = try model.pooledFeatures(tape.constant(cached), on: tape, startingAfter: .stage(5), rng: &rng)
        #expect(partial.value.maxAbsDifference(try model.features(x)) <= 1e-3)
        #expect(model.parameters(after: .stage(5)).count < model.trainableParameters.count)
    }

    /// One AdamW step of full fine-tuning (batch statistics, dropout, drop-connect) lowers the loss on its batch.
    @Test func fineTuningStepLowersTheLoss() throws {
        let (model, _) = try ModelRegistry.make("efficientnet-lite0")
        var rng = SeededGenerator(seed: 1)
        model.fc = model.resetClassifier(classes: 3, rng: &rng)
        let x = try Self.input()
        let labels = [0, 1, 2]
        let optimizer = AdamW([ParameterGroup(model.fc.trainableParameters, learningRateScale: 1),
                               ParameterGroup(model.parameters(after: nil), learningRateScale: 0.1, weightDecay: 0.05)],
                              learningRate: 1e-3)
        func loss(train: Bool) throws -> Float {
            let tape = Tape(training: train)
            var r = SeededGenerator(seed: 7)
            let opts = ForwardOptions(batchNorm: .frozen, dropConnect: 0, dropout: 0)
            let l = tape.softmaxCrossEntropy(try model.logits(tape.constant(x), on: tape, options: opts, rng: &r),
                                             labels: labels)
            if train {
                optimizer.zeroGradients()
                tape.backward(from: l)
                optimizer.step()
            }
            return l.value[flat: 0]
        }
        let before = try loss(train: true)
        for _ in 0..<4 { _ = try loss(train: true) }
        let after = try loss(train: false)
        #expect(after < before, "loss \(before) → \(after)")
        #expect(model.convStem.weight.gradient != nil)
    }
}
