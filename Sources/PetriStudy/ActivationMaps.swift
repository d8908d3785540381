import Foundation
import PetriData
import PetriEngine
import PetriLearn
import PetriNN

/// Class activation maps (Zhou et al. 2016) for a linear head on globally pooled features: the head's
/// weights for the predicted class applied at every position of the last feature map show which parts of
/// the image drove the prediction.
public enum ClassActivationMaps {
    public struct Example {
        public var item: Int
        public var predicted: Int
        public var confidence: Float
        /// PNG of the image (at thumbnail size) with the map overlaid.
        public var overlayPNG: [UInt8]
    }

    /// Fits a Lite0-head linear probe on `train` and renders maps for `test` items.
    public static func examples(dataset: Dataset, train: [Int], test: [Int], backbone: String = "efficientnet-lite0",
                                limit: Int = 8) throws -> [Example] {
        let (model, data) = try ModelRegistry.make(backbone)
        let labels = dataset.items.map(\.label)
        let classes = dataset.classNames.count
        let decoder = ImageDecoder()
        let images = try train.map { try dataset.preparedImage(of: dataset.items[$0], decoder: decoder) }
        var feats: [Tensor] = []
        for start in stride(from: 0, to: images.count, by: 32) {
            feats.append(try model.features(data.batch(Array(images[start..<min(start + 32, images.count)]))))
        }
        let head = LinearProbe().fit(Tensor.concatenate(rows: feats), labels: train.map { labels[$0] }, classes: classes,
                                     seed: 0).regression
        var out: [Example] = []
        for i in test.prefix(limit) {
            let img = try dataset.preparedImage(of: dataset.items[i], decoder: decoder)
            let act = try model.activations(data.batch([img]))          // [1, h, w, 1280]
            let h = act.shape[1], w = act.shape[2], c = act.shape[3]
            let pooled = globalAveragePool(act)
            let norm = max(pooled.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-6)
            let p = head.probabilities(l2NormalizedRows(pooled)).scalars
            let pred = p.indices.max { p[$0] < p[$1] }!
            // Logit contribution of each position (the probe sees pooled, L2-normalised features).
            var cam = [Float](repeating: 0, count: h * w)
            act.withUnsafeBufferPointer { a in
                for pos in 0..<(h * w) {
                    var s: Float = 0
                    for ch in 0..<c { s += a[pos * c + ch] * head.weights[pred * c + ch] }
                    cam[pos] = max(0, s / norm)
                }
            }
            let mx = max(cam.max() ?? 1, 1e-6)
            cam = cam.map { $0 / mx }
            // Overlay at thumbnail size.
            let side = 160, scale = Double(side) / Double(max(img.width, img.height))
            let tw = max(1, Int(Double(img.width) * scale)), th = max(1, Int(Double(img.height) * scale))
            let thumb = img.resized(width: tw, height: th)
            let heat = Resampler.resize(cam, width: w, height: h, channels: 1, toWidth: tw, height: th)
            var blended = thumb
            for k in 0..<(tw * th) {
                let v = max(0, min(1, heat[k]))
                // red-yellow colour map, stronger where the map is stronger
                let (r, g, b): (Float, Float, Float) = (1, v, 0)
                let alpha = 0.55 * v
                blended.pixels[k * 3] = (1 - alpha) * thumb.pixels[k * 3] + alpha * r
                blended.pixels[k * 3 + 1] = (1 - alpha) * thumb.pixels[k * 3 + 1] + alpha * g
                blended.pixels[k * 3 + 2] = (1 - alpha) * thumb.pixels[k * 3 + 2] + alpha * b
            }
            let png = try blended.rgb.pngData()
            out.append(Example(item: i, predicted: pred, confidence: p[pred], overlayPNG: png))
        }
        return out
    }
}
