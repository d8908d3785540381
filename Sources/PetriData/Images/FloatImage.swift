import Foundation

/// An RGB image as floats in 0…1, interleaved `[H, W, 3]`: the type preprocessing and augmentation
/// work on (8-bit rounding between steps would lose information).
public struct FloatImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        precondition(pixels.count == width * height * 3, "pixel count does not match \(width)×\(height)×3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public init(width: Int, height: Int, repeating value: Float = 0) {
        self.init(width: width, height: height, pixels: [Float](repeating: value, count: width * height * 3))
    }

    public init(_ image: RGBImage) {
        self.init(width: image.width, height: image.height, pixels: image.pixels.map { Float($0) / 255 })
    }

    /// Rounded and clamped back to 8 bits.
    public var rgb: RGBImage {
        RGBImage(width: width, height: height,
                 pixels: pixels.map { UInt8(max(0, min(255, ($0 * 255).rounded()))) })
    }

    @inline(__always) public subscript(x: Int, y: Int, c: Int) -> Float {
        get { pixels[(y * width + x) * 3 + c] }
        set { pixels[(y * width + x) * 3 + c] = newValue }
    }

    /// ITU-R BT.601 luma per pixel (`[H·W]`).
    public var luma: [Float] {
        (0..<(width * height)).map { 0.299 * pixels[$0 * 3] + 0.587 * pixels[$0 * 3 + 1] + 0.114 * pixels[$0 * 3 + 2] }
    }

    /// A three-channel image repeating one plane.
    public static func grey(width: Int, height: Int, plane: [Float]) -> FloatImage {
        var out = [Float](repeating: 0, count: plane.count * 3)
        for i in 0..<plane.count { out[i * 3] = plane[i]; out[i * 3 + 1] = plane[i]; out[i * 3 + 2] = plane[i] }
        return FloatImage(width: width, height: height, pixels: out)
    }

    public func clamped() -> FloatImage {
        FloatImage(width: width, height: height, pixels: pixels.map { max(0, min(1, $0)) })
    }

    /// Antialiased resize to `w`×`h`.
    public func resized(width w: Int, height h: Int) -> FloatImage {
        FloatImage(width: w, height: h, pixels: Resampler.resize(pixels, width: width, height: height, channels: 3,
                                                                 toWidth: w, height: h))
    }

    /// The sub-image starting at (x, y) of size w×h (must lie inside).
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> FloatImage {
        precondition(x >= 0 && y >= 0 && x + w <= width && y + h <= height, "crop outside the image")
        var out = [Float](repeating: 0, count: w * h * 3)
        for row in 0..<h {
            let src = ((y + row) * width + x) * 3
            out.replaceSubrange((row * w * 3)..<((row + 1) * w * 3), with: pixels[src..<(src + w * 3)])
        }
        return FloatImage(width: w, height: h, pixels: out)
    }
}
