import Foundation
import PetriEngine
import PetriNN

extension DataConfig {
    /// Resizes (antialiased) to `inputSize`² and normalises as the backbone expects: `[H, W, 3]` floats.
    public func normalizedPixels(_ image: RGBImage) -> [Float] {
        normalizedPixels(FloatImage(image))
    }

    /// `[H, W, 3]` floats for a 0…1 image.
    public func normalizedPixels(_ image: FloatImage) -> [Float] {
        let s = inputSize
        var out = Resampler.resize(image.pixels, width: image.width, height: image.height, channels: 3, toWidth: s, height: s)
        let scale = (0..<3).map { 1 / std[$0] }
        let offset = (0..<3).map { mean[$0] / std[$0] }
        for i in 0..<(s * s) {
            for c in 0..<3 { out[i * 3 + c] = out[i * 3 + c] * scale[c] - offset[c] }
        }
        return out
    }

    /// A batch `[N, inputSize, inputSize, 3]` ready for the backbone, from 0…1 images.
    public func batch(_ images: [FloatImage]) -> Tensor {
        let s = inputSize
        var t = Tensor(uninitialized: [images.count, s, s, 3])
        t.withUnsafeMutableBufferPointer { p in
            for (i, img) in images.enumerated() {
                let px = normalizedPixels(img)
                px.withUnsafeBufferPointer { (p.baseAddress! + i * s * s * 3).update(from: $0.baseAddress!, count: px.count) }
            }
        }
        return t
    }

    /// A batch `[N, inputSize, inputSize, 3]` ready for the backbone.
    public func batch(_ images: [RGBImage]) -> Tensor {
        batch(images.map(FloatImage.init))
    }
}
