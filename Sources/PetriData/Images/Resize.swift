import Foundation

/// Separable resampling with a triangle (bilinear) filter whose support widens with the downscale factor,
/// i.e. antialiased like PIL's `Image.resize(..., BILINEAR)`, so a 640-px image shrunk to 224 px does not alias.
public enum Resampler {
    /// Per output position: first contributing input index and normalised weights.
    static func coefficients(input: Int, output: Int) -> [(start: Int, weights: [Float])] {
        let scale = Double(input) / Double(output)
        let filterScale = max(scale, 1)
        let support = 1.0 * filterScale
        return (0..<output).map { o in
            let center = (Double(o) + 0.5) * scale
            let lo = max(0, Int((center - support + 0.5).rounded(.down)))
            let hi = min(input, Int((center + support + 0.5).rounded(.down)))
            var w = [Double]()
            for i in lo..<max(hi, lo + 1) {
                let t = (Double(i) - center + 0.5) / filterScale
                w.append(max(0, 1 - abs(t)))
            }
            let total = w.reduce(0, +)
            return (lo, w.map { Float(total > 0 ? $0 / total : 0) })
        }
    }

    /// Resizes interleaved `channels`-sample rows of floats from w×h to ow×oh.
    public static func resize(_ src: [Float], width w: Int, height h: Int, channels c: Int,
                              toWidth ow: Int, height oh: Int) -> [Float] {
        if w == ow && h == oh { return src }
        let cx = coefficients(input: w, output: ow), cy = coefficients(input: h, output: oh)
        // Horizontal pass: h × ow.
        var mid = [Float](repeating: 0, count: h * ow * c)
        src.withUnsafeBufferPointer { s in
            mid.withUnsafeMutableBufferPointer { m in
                for y in 0..<h {
                    for x in 0..<ow {
                        let (start, weights) = cx[x]
                        let o = (y * ow + x) * c
                        for (k, wt) in weights.enumerated() {
                            let i = (y * w + start + k) * c
                            for ch in 0..<c { m[o + ch] += wt * s[i + ch] }
                        }
                    }
                }
            }
        }
        // Vertical pass: oh × ow.
        var out = [Float](repeating: 0, count: oh * ow * c)
        mid.withUnsafeBufferPointer { m in
            out.withUnsafeMutableBufferPointer { d in
                let rowLen = ow * c
                for y in 0..<oh {
                    let (start, weights) = cy[y]
                    let o = y * rowLen
                    for (k, wt) in weights.enumerated() {
                        let i = (start + k) * rowLen
                        for j in 0..<rowLen { d[o + j] += wt * m[i + j] }
                    }
                }
            }
        }
        return out
    }
}
