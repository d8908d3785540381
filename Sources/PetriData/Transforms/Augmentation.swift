import Foundation
import PetriEngine

/// One of the 8 symmetries of the square: `k` quarter turns clockwise, then an optional horizontal flip.
public func dihedral(_ image: FloatImage, turns k: Int, flip: Bool) -> FloatImage {
    let w = image.width, h = image.height
    let (ow, oh) = k % 2 == 0 ? (w, h) : (h, w)
    var out = FloatImage(width: ow, height: oh)
    for y in 0..<oh {
        for x in 0..<ow {
            let fx = flip ? ow - 1 - x : x
            // Inverse map of a clockwise rotation by k·90°.
            let (sx, sy): (Int, Int)
            switch k % 4 {
            case 0: (sx, sy) = (fx, y)
            case 1: (sx, sy) = (y, h - 1 - fx)
            case 2: (sx, sy) = (w - 1 - fx, h - 1 - y)
            default: (sx, sy) = (w - 1 - y, fx)
            }
            for c in 0..<3 { out[x, y, c] = image[sx, sy, c] }
        }
    }
    return out
}

/// A random one of the 8 dihedral orientations (or, with `verticalFlips: false`, only identity and the
/// horizontal mirror — for images with a meaningful up, such as ultrasound).
public struct RandomDihedral: ImageTransform {
    public var verticalFlips: Bool
    public init(verticalFlips: Bool = true) { self.verticalFlips = verticalFlips }
    public var spec: String { verticalFlips ? "dihedral" : "hflip" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        if !verticalFlips { return Bool.random(using: &rng) ? dihedral(image, turns: 0, flip: true) : image }
        let r = Int.random(in: 0..<8, using: &rng)
        return dihedral(image, turns: r % 4, flip: r >= 4)
    }
}

/// Random-resized crop (Inception style): a region of `scale` × the area with aspect ratio in `ratio`
/// (log-uniform), resized back to the input size.
public struct RandomResizedCrop: ImageTransform {
    public var scale: ClosedRange<Double>
    public var ratio: ClosedRange<Double>
    public init(scale: ClosedRange<Double> = 0.6...1, ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3)) {
        self.scale = scale
        self.ratio = ratio
    }
    public var spec: String { "crop(scale=\(scale.lowerBound)-\(scale.upperBound))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let area = Double(image.width * image.height)
        for _ in 0..<10 {
            let target = area * Double.random(in: scale, using: &rng)
            let logRatio = Double.random(in: Foundation.log(ratio.lowerBound)...Foundation.log(ratio.upperBound), using: &rng)
            let ar = Foundation.exp(logRatio)
            let w = Int((target * ar).squareRoot().rounded()), h = Int((target / ar).squareRoot().rounded())
            guard w >= 1, h >= 1, w <= image.width, h <= image.height else { continue }
            let x = Int.random(in: 0...(image.width - w), using: &rng), y = Int.random(in: 0...(image.height - h), using: &rng)
            return image.cropped(x: x, y: y, width: w, height: h).resized(width: image.width, height: image.height)
        }
        return image
    }
}

/// Rotation by a random angle in ±`degrees` about the centre, bilinear, with reflection padding (no
/// black corners).
public struct RandomRotation: ImageTransform {
    public var degrees: Double
    public init(degrees: Double = 15) { self.degrees = degrees }
    public var spec: String { "rotate(degrees=\(degrees))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        rotate(image, radians: Double.random(in: -degrees...degrees, using: &rng) * .pi / 180)
    }

    public func rotate(_ image: FloatImage, radians: Double) -> FloatImage {
        let w = image.width, h = image.height
        let cx = Double(w - 1) / 2, cy = Double(h - 1) / 2, c = Foundation.cos(radians), s = Foundation.sin(radians)
        var out = FloatImage(width: w, height: h)
        for y in 0..<h {
            for x in 0..<w {
                let dx = Double(x) - cx, dy = Double(y) - cy
                let sx = c * dx + s * dy + cx, sy = -s * dx + c * dy + cy
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let fx = Float(sx - Double(x0)), fy = Float(sy - Double(y0))
                let xa = reflectIndex(x0, w), xb = reflectIndex(x0 + 1, w)
                let ya = reflectIndex(y0, h), yb = reflectIndex(y0 + 1, h)
                for ch in 0..<3 {
                    let top = (1 - fx) * image[xa, ya, ch] + fx * image[xb, ya, ch]
                    let bottom = (1 - fx) * image[xa, yb, ch] + fx * image[xb, yb, ch]
                    out[x, y, ch] = (1 - fy) * top + fy * bottom
                }
            }
        }
        return out
    }
}

/// Brightness (multiplicative), contrast (about the mean) and gamma, each drawn within ±its range.
public struct BrightnessContrastGamma: ImageTransform {
    public var brightness: Double
    public var contrast: Double
    public var gamma: Double
    public init(brightness: Double = 0.2, contrast: Double = 0.2, gamma: Double = 0.2) {
        self.brightness = brightness; self.contrast = contrast; self.gamma = gamma
    }
    public var spec: String { "intensity(brightness=\(brightness),contrast=\(contrast),gamma=\(gamma))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let b = Float(1 + Double.random(in: -brightness...brightness, using: &rng))
        let c = Float(1 + Double.random(in: -contrast...contrast, using: &rng))
        let g = Float(Foundation.exp(Double.random(in: -gamma...gamma, using: &rng)))
        let mean = image.pixels.reduce(0, +) / Float(image.pixels.count)
        return FloatImage(width: image.width, height: image.height, pixels: image.pixels.map {
            Foundation.pow(max(0, min(1, ((($0 - mean) * c) + mean) * b)), g)
        })
    }
}

/// Hue shift (fraction of the circle), saturation and value scaling, each within ±its range.
public struct HSVJitter: ImageTransform {
    public var hue: Double
    public var saturation: Double
    public var value: Double
    public init(hue: Double = 0.03, saturation: Double = 0.15, value: Double = 0.1) {
        self.hue = hue; self.saturation = saturation; self.value = value
    }
    public var spec: String { "hsv(h=\(hue),s=\(saturation),v=\(value))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let dh = Float(Double.random(in: -hue...hue, using: &rng))
        let ds = Float(1 + Double.random(in: -saturation...saturation, using: &rng))
        let dv = Float(1 + Double.random(in: -value...value, using: &rng))
        var out = image
        out.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<(image.width * image.height) {
                var (h, s, v) = rgbToHSV(p[i * 3], p[i * 3 + 1], p[i * 3 + 2])
                // h + dh is in (−1, 2): its fractional part, as fmod(·, 1) then +1 below zero gives.
                h += dh
                h -= h.rounded(.down)
                s = min(1, s * ds); v = min(1, v * dv)
                (p[i * 3], p[i * 3 + 1], p[i * 3 + 2]) = hsvToRGB(h, s, v)
            }
        }
        return out
    }
}

func rgbToHSV(_ r: Float, _ g: Float, _ b: Float) -> (Float, Float, Float) {
    let mx = max(r, g, b), mn = min(r, g, b), d = mx - mn
    var h: Float = 0
    if d > 0 {
        if mx == r { h = (g - b) / d }   // in [−1, 1]: fmod(·, 6) would leave it unchanged
        else if mx == g { h = (b - r) / d + 2 }
        else { h = (r - g) / d + 4 }
        h /= 6
        if h < 0 { h += 1 }
    }
    return (h, mx > 0 ? d / mx : 0, mx)
}

func hsvToRGB(_ h: Float, _ s: Float, _ v: Float) -> (Float, Float, Float) {
    // hp ≥ 0, so hp − 2⌊hp/2⌋ is fmod(hp, 2), exactly (the subtraction is exact for hp < 6).
    let c = v * s, hp = h * 6, x = c * (1 - abs(hp - 2 * (hp / 2).rounded(.down) - 1)), m = v - c
    let (r, g, b): (Float, Float, Float)
    switch Int(hp) % 6 {
    case 0: (r, g, b) = (c, x, 0)
    case 1: (r, g, b) = (x, c, 0)
    case 2: (r, g, b) = (0, c, x)
    case 3: (r, g, b) = (0, x, c)
    case 4: (r, g, b) = (x, 0, c)
    default: (r, g, b) = (c, 0, x)
    }
    return (r + m, g + m, b + m)
}

/// Stain jitter in haematoxylin–eosin–DAB space (Ruifrok matrix; Tellez et al. 2018): each stain's
/// concentration becomes α·c + β with α ∈ 1 ± `sigma`, β ∈ ±`bias`.
public struct HEDJitter: ImageTransform {
    public var sigma: Double
    public var bias: Double
    public init(sigma: Double = 0.05, bias: Double = 0.01) { self.sigma = sigma; self.bias = bias }
    public var spec: String { "hed(sigma=\(sigma),bias=\(bias))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let alpha = (0..<3).map { _ in Float(1 + Double.random(in: -sigma...sigma, using: &rng)) }
        let beta = (0..<3).map { _ in Float(Double.random(in: -bias...bias, using: &rng)) }
        return HEDJitter.transform(image, alpha: alpha, beta: beta)
    }

    static func transform(_ image: FloatImage, alpha: [Float], beta: [Float]) -> FloatImage {
        // od·(M⁻¹·diag(α)·M) + β·M, precomputed as one 3×3 matrix and an offset: x' = exp(−(od·A + b)).
        let m = ColorSpace.rgbFromHED, inv = ColorSpace.hedFromRGB
        var a = [Float](repeating: 0, count: 9), b = [Float](repeating: 0, count: 3)
        for i in 0..<3 { for j in 0..<3 { a[i * 3 + j] = (0..<3).reduce(0) { $0 + inv[i][$1] * alpha[$1] * m[$1][j] } } }
        for j in 0..<3 { b[j] = (0..<3).reduce(0) { $0 + beta[$1] * m[$1][j] } }
        var out = image
        out.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<(image.width * image.height) {
                let o0 = -Foundation.log(max(p[i * 3], 1e-6)), o1 = -Foundation.log(max(p[i * 3 + 1], 1e-6))
                let o2 = -Foundation.log(max(p[i * 3 + 2], 1e-6))
                for j in 0..<3 {
                    let od = o0 * a[j] + o1 * a[3 + j] + o2 * a[6 + j] + b[j]
                    p[i * 3 + j] = max(0, min(1, Foundation.exp(-od)))
                }
            }
        }
        return out
    }
}

/// Gaussian blur with σ drawn from `sigma` (separable, reflected borders).
public struct GaussianBlur: ImageTransform {
    public var sigma: ClosedRange<Double>
    public init(sigma: ClosedRange<Double> = 0.1...1.5) { self.sigma = sigma }
    public var spec: String { "blur(sigma=\(sigma.lowerBound)-\(sigma.upperBound))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        blur(image, sigma: Double.random(in: sigma, using: &rng))
    }

    public func blur(_ image: FloatImage, sigma s: Double) -> FloatImage {
        let r = max(1, Int((3 * s).rounded(.up)))
        var k = (-r...r).map { Float(Foundation.exp(-Double($0 * $0) / (2 * s * s))) }
        let total = k.reduce(0, +); k = k.map { $0 / total }
        let w = image.width, h = image.height
        var tmp = FloatImage(width: w, height: h), out = tmp
        // Reflected source positions per output position and tap, computed once (the same sums as a
        // subscripted loop, in the same order, without the per-tap index arithmetic).
        let columns = (0..<w).flatMap { x in (0...(2 * r)).map { j in reflectIndex(x + j - r, w) } }
        let rows = (0..<h).flatMap { y in (0...(2 * r)).map { j in reflectIndex(y + j - r, h) } }
        let taps = 2 * r + 1
        image.pixels.withUnsafeBufferPointer { src in
            tmp.pixels.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h { for x in 0..<w { for c in 0..<3 {
                    var acc: Float = 0
                    for j in 0..<taps { acc += k[j] * src[(y * w + columns[x * taps + j]) * 3 + c] }
                    dst[(y * w + x) * 3 + c] = acc
                } } }
            }
        }
        tmp.pixels.withUnsafeBufferPointer { src in
            out.pixels.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h { for x in 0..<w { for c in 0..<3 {
                    var acc: Float = 0
                    for j in 0..<taps { acc += k[j] * src[(rows[y * taps + j] * w + x) * 3 + c] }
                    dst[(y * w + x) * 3 + c] = acc
                } } }
            }
        }
        return out
    }
}

/// Additive Gaussian noise with standard deviation drawn up to `std`.
public struct GaussianNoise: ImageTransform {
    public var std: Double
    public init(std: Double = 0.03) { self.std = std }
    public var spec: String { "noise(std=\(std))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let s = Float(Double.random(in: 0...std, using: &rng))
        return FloatImage(width: image.width, height: image.height,
                          pixels: image.pixels.map { max(0, min(1, $0 + s * rng.normal())) })
    }
}

/// Multiplicative (speckle) noise, as in ultrasound: x·(1 + n), n ~ N(0, σ²), σ up to `std`,
/// the same for the three channels of a pixel.
public struct SpeckleNoise: ImageTransform {
    public var std: Double
    public init(std: Double = 0.15) { self.std = std }
    public var spec: String { "speckle(std=\(std))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        let s = Float(Double.random(in: 0...std, using: &rng))
        var out = image
        for i in 0..<(image.width * image.height) {
            let f = 1 + s * rng.normal()
            for c in 0..<3 { out.pixels[i * 3 + c] = max(0, min(1, image.pixels[i * 3 + c] * f)) }
        }
        return out
    }
}

/// A transform applied with probability `probability`.
public struct Sometimes: ImageTransform {
    public var probability: Double
    public var transform: any ImageTransform
    public init(_ probability: Double, _ transform: any ImageTransform) {
        self.probability = probability
        self.transform = transform
    }
    public var spec: String {
        guard probability < 1 else { return transform.spec }
        let inner = transform.spec
        return inner.hasSuffix(")") ? String(inner.dropLast()) + ",p=\(probability))" : inner + "(p=\(probability))"
    }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        Double.random(in: 0..<1, using: &rng) < probability ? transform.apply(image, rng: &rng) : image
    }
}

/// A fixed dihedral orientation `index` in 0..<8 (quarter turns = index % 4, flipped when index ≥ 4):
/// deterministic, so features of each view can be cached and averaged (test-time augmentation).
public struct DihedralView: ImageTransform {
    public var index: Int
    public init(_ index: Int) { self.index = index }
    public var spec: String { "view(k=\(index))" }
    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        index == 0 ? image : dihedral(image, turns: index % 4, flip: index >= 4)
    }
}

/// A strong, deterministic colour change standing for another lab's stain and scanner: per-channel gains
/// (0.75–1.25), saturation (0.6–1.6), brightness (0.8–1.2) and contrast (0.7–1.4) drawn from `copy` and the
/// image's own pixels, so copy k of an image is always the same image (its frozen features can be cached)
/// and copies differ between images. Frozen-feature heads train on such copies to lean less on colour
/// (`MLPMethod.colourCopies`); it is a preprocessing step, not a random augmentation.
public struct ColourShift: ImageTransform {
    public var copy: Int
    public init(copy: Int) { self.copy = copy }
    public var spec: String { "colourshift(copy=\(copy))" }
    public func apply(_ image: FloatImage, rng _: inout SeededGenerator) -> FloatImage {
        // Content hash of a sparse sample of pixels: the per-image part of the seed.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let step = max(1, image.pixels.count / 257)
        for i in stride(from: 0, to: image.pixels.count, by: step) {
            hash = (hash ^ UInt64(image.pixels[i] * 255)) &* 0x100_0000_01b3
        }
        var rng = SeededGenerator(seed: hash &+ UInt64(copy) &* 0x9e37_79b9_7f4a_7c15, stream: "colourshift")
        let gains = (0..<3).map { _ in Float(Double.random(in: 0.75...1.25, using: &rng)) }
        let saturation = Float(Double.random(in: 0.6...1.6, using: &rng))
        let brightness = Float(Double.random(in: 0.8...1.2, using: &rng))
        let contrast = Float(Double.random(in: 0.7...1.4, using: &rng))
        var out = image
        let n = image.width * image.height
        var meanLuma: Float = 0
        out.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                for c in 0..<3 { p[i * 3 + c] = min(1, p[i * 3 + c] * gains[c]) }
                // Saturation about the pixel's grey, then brightness.
                let grey = 0.299 * p[i * 3] + 0.587 * p[i * 3 + 1] + 0.114 * p[i * 3 + 2]
                for c in 0..<3 { p[i * 3 + c] = min(1, max(0, (grey + (p[i * 3 + c] - grey) * saturation) * brightness)) }
                meanLuma += 0.299 * p[i * 3] + 0.587 * p[i * 3 + 1] + 0.114 * p[i * 3 + 2]
            }
            meanLuma /= Float(max(n, 1))
            // Contrast about the image's mean grey.
            for i in 0..<(n * 3) { p[i] = min(1, max(0, meanLuma + (p[i] - meanLuma) * contrast)) }
        }
        return out
    }
}
