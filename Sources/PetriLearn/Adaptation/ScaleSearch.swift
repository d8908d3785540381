import Foundation
import PetriData
import PetriEngine

extension SavedModel {
    /// Scales `adaptationDistances` tries on another lab's images: below 1 a central crop of that fraction (their
    /// cells look larger), above 1 the image shrunk by that factor inside a mirrored surround (`ZoomOut`:
    /// their cells look smaller). The search is surer cropping than shrinking: a mirrored surround looks like
    /// nothing in the training images, so it tends to choose too little shrinking.
    public static let adaptationScales: [Double] = [2.5, 2, 1.6, 1.3, 1, 0.85, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35]

    /// The transform for one of `adaptationScales`.
    public static func scaleTransform(_ scale: Double) -> [any ImageTransform] {
        scale < 1 ? [CenterCrop(fraction: scale)] : scale > 1 ? [ZoomOut(factor: scale)] : []
    }

    /// One way of showing another lab's images to the model: at a scale, and with their colour matched to the
    /// training images' (`colourMatch`: each image's lαβ means and deviations brought to the training images'
    /// average, Reinhard et al. 2001) or as they are.
    public struct ImageAdaptation: Sendable, Equatable {
        public var scale: Double
        public var colour: Bool

        public init(scale: Double, colour: Bool = false) {
            self.scale = scale
            self.colour = colour
        }
    }

    /// The steps of an adaptation: the scale's, then the colour match (on what the model will see).
    public func steps(_ a: ImageAdaptation) -> [any ImageTransform] {
        Self.scaleTransform(a.scale) + (a.colour ? colourMatch.map { [$0] } ?? [] : [])
    }

    /// Another magnification (and, with `colour`, another stain), found from the images alone: for each scale,
    /// as they are and with their colour matched (when the model file has the training images' colour), how far
    /// the images' mean frozen feature (single-view Lite0, L2-normalised, at most `sample` images) lies from the
    /// training images' — squared distance over the training features' total variance. Cells imaged at twice
    /// the magnification of the training images look most like them at a crop near 0.5. Sorted best first.
    public func adaptationDistances(_ dataset: Dataset, scales: [Double] = SavedModel.adaptationScales, colour: Bool = true,
                                    sample: Int = 64, file: String = "model",
                                    progress: ((String, Int, Int) -> Void)? = nil) throws -> [(adaptation: ImageAdaptation, distance: Double)] {
        guard let scaleReference else {
            throw DatasetError.malformed(file, reason: "the model file has no reference for finding the scale (train it again with this Petri)")
        }
        var dataset = dataset
        var rng = SeededGenerator(seed: 0)
        if dataset.items.count > sample { dataset.items = Array(dataset.items.shuffled(using: &rng).prefix(sample)) }
        let base = try TransformPipeline.parse(preprocessing)
        let candidates = scales.flatMap { s in [ImageAdaptation(scale: s)] + (colour && colourMatch != nil ? [ImageAdaptation(scale: s, colour: true)] : []) }
        var out: [(adaptation: ImageAdaptation, distance: Double)] = []
        for a in candidates {
            var d = dataset
            d.preprocessing = TransformPipeline(steps(a) + base.steps)
            let bank = FeatureBank(dataset: d)
            bank.progress = progress
            let spec = Self.scaleReferenceSpec
            bank.plan([spec])
            let (mean, _) = columnMoments(l2NormalizedRows(try spec.matrix(bank)))
            // Squared distance between the mean features over the training features' total variance: per-
            // dimension z-scores would be ruled by near-constant dimensions.
            var sum = 0.0, variance = 0.0
            for j in mean.indices {
                let d = Double(mean[j] - scaleReference.mean[j])
                sum += d * d
                variance += Double(scaleReference.std[j] * scaleReference.std[j])
            }
            out.append((a, sum / max(variance, 1e-12)))
        }
        return out.sorted { $0.distance < $1.distance }
    }

    /// The scale alone (`adaptationDistances` without colour matching).
    public func scaleDistances(_ dataset: Dataset, scales: [Double] = SavedModel.adaptationScales, sample: Int = 64,
                               file: String = "model", progress: ((String, Int, Int) -> Void)? = nil) throws -> [(scale: Double, distance: Double)] {
        try adaptationDistances(dataset, scales: scales, colour: false, sample: sample, file: file, progress: progress)
            .map { ($0.adaptation.scale, $0.distance) }
    }
}
