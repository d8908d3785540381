import Foundation
import PetriEngine

/// A named image transform. Preprocessing transforms are deterministic and applied identically at
/// training and prediction time; augmentations draw from `rng` and are applied at training time only.
public protocol ImageTransform: Sendable {
    /// The transform and its parameters, as written in a pipeline spec (e.g. `clahe(clip=2,tiles=8)`).
    var spec: String { get }
    func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage
}

extension ImageTransform {
    /// Applies a deterministic transform (no randomness used).
    public func callAsFunction(_ image: FloatImage) -> FloatImage {
        var rng = SeededGenerator(seed: 0)
        return apply(image, rng: &rng)
    }
}

// MARK: - Geometry

/// Largest centred square (or `fraction` of the shorter side) cropped from the middle.
public struct CenterCrop: ImageTransform {
    public var fraction: Double
    public init(fraction: Double = 1) { self.fraction = fraction }
    public var spec: String { "centercrop(fraction=\(fraction))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let side = max(1, Int((Double(min(image.width, image.height)) * fraction).rounded()))
        return image.cropped(x: (image.width - side) / 2, y: (image.height - side) / 2, width: side, height: side)
    }
}

/// Pads the shorter side so the image becomes square, mirroring the border (no black bars the model
/// could learn from).
public struct PadToSquare: ImageTransform {
    public init() {}
    public var spec: String { "padsquare" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let side = max(image.width, image.height)
        if image.width == image.height { return image }
        let ox = (side - image.width) / 2, oy = (side - image.height) / 2
        var out = FloatImage(width: side, height: side)
        for y in 0..<side {
            let sy = reflectIndex(y - oy, image.height)
            for x in 0..<side {
                let sx = reflectIndex(x - ox, image.width)
                for c in 0..<3 { out[x, y, c] = image[sx, sy, c] }
            }
        }
        return out
    }
}

/// The image shrunk by `factor` (≥ 1) inside a mirrored surround, same size as before: the opposite of a
/// central crop, for images taken at a higher magnification than a model's training images.
public struct ZoomOut: ImageTransform {
    public var factor: Double
    public init(factor: Double) { self.factor = max(1, factor) }
    public var spec: String { "zoomout(factor=\(factor))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        guard factor > 1 else { return image }
        let w = Int((Double(image.width) * factor).rounded()), h = Int((Double(image.height) * factor).rounded())
        let ox = (w - image.width) / 2, oy = (h - image.height) / 2
        var canvas = FloatImage(width: w, height: h)
        for y in 0..<h {
            let sy = reflectIndex(y - oy, image.height)
            for x in 0..<w {
                let sx = reflectIndex(x - ox, image.width)
                for c in 0..<3 { canvas[x, y, c] = image[sx, sy, c] }
            }
        }
        return canvas.resized(width: image.width, height: image.height)
    }
}

/// Antialiased resize to `size`×`size`.
public struct Resize: ImageTransform {
    public var size: Int
    public init(size: Int) { self.size = size }
    public var spec: String { "resize(size=\(size))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        image.resized(width: size, height: size)
    }
}

/// Mirror index into 0..<n (…2 1 0 1 2… at the low border): "reflect" padding without repeating the edge.
@inline(__always) func reflectIndex(_ i: Int, _ n: Int) -> Int {
    if n == 1 { return 0 }
    let period = 2 * (n - 1)
    var k = i % period
    if k < 0 { k += period }
    return k < n ? k : period - k
}

// MARK: - Intensity

/// Luma (BT.601) in all three channels.
public struct Greyscale: ImageTransform {
    public init() {}
    public var spec: String { "grey" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        .grey(width: image.width, height: image.height, plane: image.luma)
    }
}

/// Contrast-limited adaptive histogram equalisation (Zuiderveld 1994) of the luma, chroma kept:
/// per tile a histogram clipped at `clip` × the mean bin count, the excess spread evenly, and
/// mappings bilinearly interpolated between tile centres.
public struct CLAHE: ImageTransform {
    public var clip: Double
    public var tiles: Int
    public init(clip: Double = 2, tiles: Int = 8) { self.clip = clip; self.tiles = tiles }
    public var spec: String { "clahe(clip=\(clip),tiles=\(tiles))" }

    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let w = image.width, h = image.height
        let y = image.luma
        let equalised = CLAHE.equalise(y, width: w, height: h, tiles: tiles, clip: clip)
        // Keep chroma: add the luma change to every channel (YCbCr with Cb, Cr fixed).
        var out = image
        for i in 0..<(w * h) {
            let d = equalised[i] - y[i]
            for c in 0..<3 { out.pixels[i * 3 + c] = max(0, min(1, image.pixels[i * 3 + c] + d)) }
        }
        return out
    }

    static func equalise(_ plane: [Float], width w: Int, height h: Int, tiles: Int, clip: Double) -> [Float] {
        let bins = 256
        let tx = max(1, min(tiles, w)), ty = max(1, min(tiles, h))
        var maps = [[Float]](repeating: [], count: tx * ty)
        for j in 0..<ty {
            for i in 0..<tx {
                let x0 = i * w / tx, x1 = (i + 1) * w / tx, y0 = j * h / ty, y1 = (j + 1) * h / ty
                var hist = [Double](repeating: 0, count: bins)
                for yy in y0..<y1 { for xx in x0..<x1 { hist[bin(plane[yy * w + xx])] += 1 } }
                let count = Double((x1 - x0) * (y1 - y0))
                let limit = max(1, clip * count / Double(bins))
                var excess = 0.0
                for b in 0..<bins where hist[b] > limit { excess += hist[b] - limit; hist[b] = limit }
                for b in 0..<bins { hist[b] += excess / Double(bins) }
                var cdf = 0.0
                maps[j * tx + i] = hist.map { cdf += $0; return Float(cdf / count) }
            }
        }
        var out = [Float](repeating: 0, count: w * h)
        for yy in 0..<h {
            // Position relative to tile centres, clamped at the borders.
            let fy = (Double(yy) + 0.5) / Double(h) * Double(ty) - 0.5
            let j0 = max(0, min(ty - 1, Int(fy.rounded(.down)))), j1 = min(ty - 1, j0 + 1)
            let wy = Float(max(0, min(1, fy - Double(j0))))
            for xx in 0..<w {
                let fx = (Double(xx) + 0.5) / Double(w) * Double(tx) - 0.5
                let i0 = max(0, min(tx - 1, Int(fx.rounded(.down)))), i1 = min(tx - 1, i0 + 1)
                let wx = Float(max(0, min(1, fx - Double(i0))))
                let b = bin(plane[yy * w + xx])
                let top = (1 - wx) * maps[j0 * tx + i0][b] + wx * maps[j0 * tx + i1][b]
                let bottom = (1 - wx) * maps[j1 * tx + i0][b] + wx * maps[j1 * tx + i1][b]
                out[yy * w + xx] = (1 - wy) * top + wy * bottom
            }
        }
        return out
    }

    @inline(__always) static func bin(_ v: Float) -> Int { max(0, min(255, Int((v * 255).rounded()))) }
}

// MARK: - Morphology, thresholds, edges, texture (on luma; results are grey images)

/// Grey-level erosion or dilation with a (2r+1)² square, as two separable 1-D passes.
func morphology(_ plane: [Float], width w: Int, height h: Int, radius r: Int, dilate: Bool) -> [Float] {
    func pass(_ src: [Float], horizontal: Bool) -> [Float] {
        var out = src
        for y in 0..<h {
            for x in 0..<w {
                var best: Float = dilate ? -.infinity : .infinity
                for d in -r...r {
                    let xx = horizontal ? x + d : x, yy = horizontal ? y : y + d
                    guard xx >= 0, xx < w, yy >= 0, yy < h else { continue }
                    let v = src[yy * w + xx]
                    best = dilate ? max(best, v) : min(best, v)
                }
                out[y * w + x] = best
            }
        }
        return out
    }
    return pass(pass(plane, horizontal: true), horizontal: false)
}

/// White top-hat: luma minus its morphological opening with a (2r+1)² square. Keeps bright details
/// smaller than the square (granules, nuclei) and removes the background.
public struct WhiteTopHat: ImageTransform {
    public var radius: Int
    public init(radius: Int = 7) { self.radius = radius }
    public var spec: String { "tophat(radius=\(radius))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let y = image.luma, w = image.width, h = image.height
        let opened = morphology(morphology(y, width: w, height: h, radius: radius, dilate: false),
                                width: w, height: h, radius: radius, dilate: true)
        return .grey(width: w, height: h, plane: zip(y, opened).map { max(0, $0 - $1) })
    }
}

/// Otsu's threshold of a 256-bin histogram: the level maximising the between-class variance.
/// Returns the bin index t such that values in bins ≤ t form the lower class.
public func otsuThreshold(histogram: [Double]) -> Int {
    let total = histogram.reduce(0, +)
    guard total > 0 else { return 0 }
    let sumAll = histogram.enumerated().reduce(0.0) { $0 + Double($1.offset) * $1.element }
    var weightLow = 0.0, sumLow = 0.0, best = -1.0, threshold = 0
    for t in 0..<histogram.count {
        weightLow += histogram[t]
        sumLow += Double(t) * histogram[t]
        let weightHigh = total - weightLow
        if weightLow == 0 || weightHigh == 0 { continue }
        let meanLow = sumLow / weightLow, meanHigh = (sumAll - sumLow) / weightHigh
        let between = weightLow * weightHigh * (meanLow - meanHigh) * (meanLow - meanHigh)
        if between > best { best = between; threshold = t }
    }
    return threshold
}

/// Binary mask (1 above Otsu's threshold of the luma, else 0); `invert` for dark objects on a bright
/// background (stained cells on a smear).
public struct OtsuMask: ImageTransform {
    public var invert: Bool
    public init(invert: Bool = false) { self.invert = invert }
    public var spec: String { "otsu(invert=\(invert))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let y = image.luma
        var hist = [Double](repeating: 0, count: 256)
        for v in y { hist[CLAHE.bin(v)] += 1 }
        let t = otsuThreshold(histogram: hist)
        return .grey(width: image.width, height: image.height,
                     plane: y.map { (CLAHE.bin($0) > t) != invert ? 1 : 0 })
    }
}

/// Local mean threshold: 1 where luma > mean of its `block`² window − `offset`.
public struct AdaptiveThreshold: ImageTransform {
    public var block: Int
    public var offset: Double
    public init(block: Int = 15, offset: Double = 0.02) { self.block = block; self.offset = offset }
    public var spec: String { "adaptive(block=\(block),offset=\(offset))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let w = image.width, h = image.height, y = image.luma, r = block / 2
        // Integral image for O(1) window sums.
        var integral = [Double](repeating: 0, count: (w + 1) * (h + 1))
        for yy in 0..<h {
            var row = 0.0
            for xx in 0..<w {
                row += Double(y[yy * w + xx])
                integral[(yy + 1) * (w + 1) + xx + 1] = integral[yy * (w + 1) + xx + 1] + row
            }
        }
        var out = [Float](repeating: 0, count: w * h)
        for yy in 0..<h {
            for xx in 0..<w {
                let x0 = max(0, xx - r), x1 = min(w, xx + r + 1), y0 = max(0, yy - r), y1 = min(h, yy + r + 1)
                let s = integral[y1 * (w + 1) + x1] - integral[y0 * (w + 1) + x1] - integral[y1 * (w + 1) + x0]
                    + integral[y0 * (w + 1) + x0]
                let mean = s / Double((x1 - x0) * (y1 - y0))
                out[yy * w + xx] = Double(y[yy * w + xx]) > mean - offset ? 1 : 0
            }
        }
        return .grey(width: w, height: h, plane: out)
    }
}

/// Sobel gradient magnitude of the luma (edges replicated), scaled so a 0→1 step edge gives 1.
public struct SobelMagnitude: ImageTransform {
    public init() {}
    public var spec: String { "sobel" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let w = image.width, h = image.height, y = image.luma
        func at(_ x: Int, _ yy: Int) -> Float { y[max(0, min(h - 1, yy)) * w + max(0, min(w - 1, x))] }
        var out = [Float](repeating: 0, count: w * h)
        for yy in 0..<h {
            for x in 0..<w {
                let gx = (at(x + 1, yy - 1) + 2 * at(x + 1, yy) + at(x + 1, yy + 1))
                    - (at(x - 1, yy - 1) + 2 * at(x - 1, yy) + at(x - 1, yy + 1))
                let gy = (at(x - 1, yy + 1) + 2 * at(x, yy + 1) + at(x + 1, yy + 1))
                    - (at(x - 1, yy - 1) + 2 * at(x, yy - 1) + at(x + 1, yy - 1))
                out[yy * w + x] = min(1, (gx * gx + gy * gy).squareRoot() / 4)
            }
        }
        return .grey(width: w, height: h, plane: out)
    }
}

/// Local binary patterns: for each pixel the 8-bit code of which of its 8 neighbours (radius 1, clockwise
/// from the top-left, edges replicated) are ≥ the centre, scaled to 0…1 (code / 255).
public struct LocalBinaryPattern: ImageTransform {
    public init() {}
    public var spec: String { "lbp" }
    static let offsets = [(-1, -1), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0)]
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let w = image.width, h = image.height, y = image.luma.map(CLAHE.bin)
        var out = [Float](repeating: 0, count: w * h)
        for yy in 0..<h {
            for x in 0..<w {
                let centre = y[yy * w + x]
                var code = 0
                for (k, (dx, dy)) in Self.offsets.enumerated() {
                    let n = y[max(0, min(h - 1, yy + dy)) * w + max(0, min(w - 1, x + dx))]
                    if n >= centre { code |= 1 << (7 - k) }
                }
                out[yy * w + x] = Float(code) / 255
            }
        }
        return .grey(width: w, height: h, plane: out)
    }
}
