import Foundation
import PetriData
import PetriEngine
import Testing
@testable import PetriLearn

/// Telling unfamiliar images apart, estimating a new set's class mix, and the statistics that say what differs.
@Suite struct ShiftTests {
    /// Rows near one of `centres` (unit vectors), L2-normalised.
    static func cloud(_ centres: [[Float]], count: Int, spread: Float, seed: UInt64) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let d = centres[0].count
        var rows: [Float] = []
        for i in 0..<count {
            var v = centres[i % centres.count].map { $0 + spread * rng.normal() }
            let n = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            v = v.map { $0 / n }
            rows += v
        }
        return Tensor(shape: [count, d], data: rows)
    }

    static func unit(_ d: Int, _ i: Int) -> [Float] { (0..<d).map { $0 == i ? 1 : 0 } }

    @Test func imagesFromElsewhereAreUnfamiliar() throws {
        let d = 1280
        let training = Self.cloud([Self.unit(d, 0), Self.unit(d, 1)], count: 200, spread: 0.01, seed: 1)
        let f = SavedModel.Familiarity(training, images: nil)
        #expect(f.dims == 32 && f.count == 200 && f.threshold > 0)
        // New images like the training images: nearly all familiar; from elsewhere: none.
        let same = f.distances(Self.cloud([Self.unit(d, 0), Self.unit(d, 1)], count: 100, spread: 0.01, seed: 2))
        let other = f.distances(Self.cloud([Self.unit(d, 5)], count: 50, spread: 0.01, seed: 3))
        #expect(same.filter(f.isFamiliar).count >= 95)
        #expect(other.filter(f.isFamiliar).isEmpty)
        // The reference survives a model file.
        let coded = try JSONDecoder().decode(SavedModel.Familiarity.self, from: JSONEncoder().encode(f))
        #expect(coded.distances(training.rows([0, 1, 2])) == f.distances(training.rows([0, 1, 2])))
    }

    /// EM on posteriors: one-hot posteriors give their share; soft ones settle where the mix is the mean
    /// re-weighted posterior (a fixed point).
    @Test func classMixIsEstimatedFromPredictions() {
        let hard = [[Double]](repeating: [1, 0], count: 8) + [[Double]](repeating: [0, 1], count: 2)
        let (prior, _) = ClassPrior.estimate(hard)
        #expect(abs(prior[0] - 0.8) < 1e-3 && abs(prior[1] - 0.2) < 1e-3)
        let soft: [[Double]] = [[0.9, 0.1], [0.7, 0.3], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]]
        let (p, q) = ClassPrior.estimate(soft)
        let mean = (0..<2).map { j in q.map { $0[j] }.reduce(0, +) / Double(q.count) }
        #expect(abs(mean[0] - p[0]) < 1e-5 && p[0] > 0.65)
        #expect(ClassPrior.adjust([0.5, 0.5], prior: [0.8, 0.2], trainingPrior: [0.5, 0.5]) == [0.8, 0.2])
    }

    @Test func imageStatisticsNameWhatDiffers() {
        let flat = FloatImage(width: 64, height: 64, repeating: 0.5)
        var checker = flat
        for y in 0..<64 { for x in 0..<64 where (x / 2 + y / 2) % 2 == 0 { for c in 0..<3 { checker[x, y, c] = 1 } } }
        let a = ImageStatistics(flat), b = ImageStatistics(checker)
        #expect(a.values[1] < 1e-9 && a.values[4] < 1e-9 && b.values[4] > 0.01)
        // Training images of varied brightness; new ones far brighter and sharper.
        let training = (0..<10).map { i in ImageStatistics(values: [0.4 + 0.01 * Double(i), 0.1, 0.2, 0, 0.05 + 0.001 * Double(i), 16]) }
        let reference = ImageStatistics.Reference(training)
        let brighter = [ImageStatistics(values: [0.9, 0.1, 0.2, 0, 0.3, 16])]
        #expect(reference.differences(brighter) == ["sharpness higher", "brightness higher"])
        #expect(reference.differences(training).isEmpty)
        // One image at a time: inside the training range (widened by a quarter), or which statistic is out.
        #expect(training.allSatisfy { reference.outside($0) == nil })
        #expect(reference.outside(ImageStatistics(values: [0.46, 0.1, 0.2, 0, 0.052, 16])) == nil)
        #expect(reference.outside(brighter[0]) == "brightness higher")
    }
}
