import Foundation
import PetriEngine

/// A grid of thumbnails: each row an original followed by augmented copies, to see what a policy does.
public enum ContactSheet {
    public static func make(originals: [FloatImage], pipeline: TransformPipeline, copies: Int, cell: Int = 128,
                            seed: UInt64) -> RGBImage {
        let gap = 4, cols = copies + 1
        let width = cols * cell + (cols + 1) * gap, height = originals.count * cell + (originals.count + 1) * gap
        var sheet = FloatImage(width: width, height: height, repeating: 1)
        var rng = SeededGenerator(seed: seed, stream: "augment-preview")
        for (r, original) in originals.enumerated() {
            for c in 0..<cols {
                let img = c == 0 ? original : pipeline.apply(original, rng: &rng)
                let scale = Double(cell) / Double(max(img.width, img.height))
                let w = max(1, Int(Double(img.width) * scale)), h = max(1, Int(Double(img.height) * scale))
                let thumb = img.clamped().resized(width: w, height: h)
                let ox = gap + c * (cell + gap) + (cell - w) / 2, oy = gap + r * (cell + gap) + (cell - h) / 2
                for y in 0..<h { for x in 0..<w { for ch in 0..<3 { sheet[ox + x, oy + y, ch] = thumb[x, y, ch] } } }
            }
        }
        return sheet.rgb
    }
}
