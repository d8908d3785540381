import Foundation
import PetriEngine
import Testing
@testable import PetriNN

@Suite struct SmallCNNTests {
    /// AdaBN: after `adaptNormalisation` on two batches of images from "another lab" (shifted and scaled
    /// inputs), every batch norm normalises those images' pre-norm activations to mean 0 and variance 1 per
    /// channel over all of them (γ = 1, β = 0 at initialisation), layer by layer.
    @Test func adaptNormalisationTakesEachLayersStatisticsFromTheNewImages() throws {
        var rng = SeededGenerator(seed: 3)
        let config = SmallCNNConfig(name: "test", channels: [4, 6], kernelSize: 3, inputSize: 16)
        let model = SmallCNN(config, classes: 2, rng: &rng)
        let batches = (0..<2).map { _ in
            Tensor(shape: [5, 16, 16, 3], data: (0..<(5 * 16 * 16 * 3)).map { _ in 2.5 * rng.normal() + 1.5 })
        }
        try model.adaptNormalisation(to: batches)
        for layer in model.convs.indices {
            var values: [[Float]] = Array(repeating: [], count: config.channels[layer])
            for batch in batches {
                let tape = Tape(training: false)
                var h = tape.constant(batch)
                for j in 0..<layer {
                    h = try model.norms[j](model.convs[j](h, on: tape), on: tape, mode: .batch)
                    h = tape.maxPool(h, kernel: 3, stride: 2, padding: 1, relu: true)
                }
                let y = try model.norms[layer](model.convs[layer](h, on: tape), on: tape, mode: .batch).value.scalars
                for (k, v) in y.enumerated() { values[k % values.count].append(v) }
            }
            for channel in values {
                let mean = channel.reduce(0, +) / Float(channel.count)
                let variance = channel.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(channel.count - 1)
                #expect(abs(mean) < 1e-3, "layer \(layer): mean \(mean)")
                #expect(abs(variance - 1) < 1e-2, "layer \(layer): variance \(variance)")
            }
        }
    }

    /// Weighted AdaBN: weights of one everywhere give the plain statistics; weight 2 on the first batch's images
    /// and 0 on the second's give the statistics of the first batch alone.
    @Test func weightedNormalisationCountsEachImageByItsWeight() throws {
        var rng = SeededGenerator(seed: 4)
        let config = SmallCNNConfig(name: "test", channels: [4, 6], kernelSize: 3, inputSize: 16)
        let a = Tensor(shape: [3, 16, 16, 3], data: (0..<(3 * 16 * 16 * 3)).map { _ in rng.normal() + 2 })
        let b = Tensor(shape: [2, 16, 16, 3], data: (0..<(2 * 16 * 16 * 3)).map { _ in 3 * rng.normal() - 1 })
        func stats(_ m: SmallCNN) -> [Float] { m.norms.flatMap { $0.runningMean.value.scalars + $0.runningVariance.value.scalars } }
        func fresh() -> SmallCNN { var r = SeededGenerator(seed: 9); return SmallCNN(config, classes: 2, rng: &r) }
        let plain = fresh(), ones = fresh(), onlyA = fresh(), aAlone = fresh()
        try plain.adaptNormalisation(to: [a, b])
        try ones.adaptNormalisation(to: [a, b], weights: [[1, 1, 1], [1, 1]])
        try onlyA.adaptNormalisation(to: [a, b], weights: [[2, 2, 2], [0, 0]])
        try aAlone.adaptNormalisation(to: [a])
        #expect(zip(stats(plain), stats(ones)).allSatisfy { abs($0 - $1) < 1e-5 })
        // The first layer's mean is the same; the unbiased variance's denominator counts weights, so it differs
        // a little, and so do the layers computed after it.
        #expect(zip(onlyA.norms[0].runningMean.value.scalars, aAlone.norms[0].runningMean.value.scalars).allSatisfy { abs($0 - $1) < 1e-4 })
        #expect(zip(stats(onlyA), stats(aAlone)).allSatisfy { abs($0 - $1) < 1e-2 * max(1, abs($1)) })
        #expect(zip(stats(plain), stats(onlyA)).contains { abs($0 - $1) > 1e-2 })
    }

    /// Horizontal vs vertical stripes at random phases: trivially learnable, so a from-scratch net that
    /// trains at all (forward, batch-stat BN, pooling, backward, AdamW) must fit them.
    @Test func learnsStripeOrientationFromScratch() throws {
        var rng = SeededGenerator(seed: 1)
        let side = 32, n = 16
        var data: [Float] = [], labels: [Int] = []
        for i in 0..<n {
            let label = i % 2, phase = Int.random(in: 0..<4, using: &rng)
            for y in 0..<side { for x in 0..<side {
                let v: Float = ((label == 0 ? y : x) + phase) % 4 < 2 ? 0.8 : -0.8
                for _ in 0..<3 { data.append(v + Float.random(in: -0.1...0.1, using: &rng)) }
            } }
            labels.append(label)
        }
        let images = Tensor(shape: [n, side, side, 3], data: data)
        let config = SmallCNNConfig(name: "test", channels: [8, 16], kernelSize: 3, inputSize: side)
        let model = SmallCNN(config, classes: 2, rng: &rng)
        model.dropout = 0
        let optimizer = AdamW([ParameterGroup(model.trainableParameters)], learningRate: 1e-2)
        var firstLoss: Float = 0, lastLoss: Float = 0
        for step in 0..<40 {
            optimizer.zeroGradients()
            let tape = Tape(training: true)
            let loss = tape.softmaxCrossEntropy(try model.logits(tape.constant(images), on: tape, rng: &rng), labels: labels)
            tape.backward(from: loss)
            optimizer.step()
            if step == 0 { firstLoss = loss.value[flat: 0] }
            lastLoss = loss.value[flat: 0]
        }
        #expect(lastLoss < firstLoss * 0.3)
        // Inference (running statistics) classifies the training images.
        let logits = try model.logits(images)
        let predicted = (0..<n).map { logits[flat: 2 * $0 + 1] > logits[flat: 2 * $0] ? 1 : 0 }
        #expect(predicted == labels)
        #expect(model.namedParameters.count == 2 * 6 + 2)
    }
}
