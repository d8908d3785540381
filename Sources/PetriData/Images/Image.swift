import Foundation

/// An 8-bit RGB image, pixels interleaved row by row (`[H, W, 3]`).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]
    /// What the file held before conversion to 8-bit RGB (for `petri inspect`).
    public var sourceChannels: Int
    public var sourceBitDepth: Int

    public init(width: Int, height: Int, pixels: [UInt8], sourceChannels: Int = 3, sourceBitDepth: Int = 8) {
        precondition(pixels.count == width * height * 3, "pixel count does not match \(width)×\(height)×3")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.sourceChannels = sourceChannels
        self.sourceBitDepth = sourceBitDepth
    }

    public subscript(x: Int, y: Int, c: Int) -> UInt8 { pixels[(y * width + x) * 3 + c] }
}

/// Why an image could not be decoded. Every case names the file.
public struct ImageDecodingError: Error, CustomStringConvertible, Equatable {
    public enum Reason: Equatable, Sendable {
        case unreadable(String)
        case unsupportedFormat(String)
        case corrupt(String)
        case tooLarge(width: Int, height: Int, limit: Int)
    }

    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public var summary: String {
        switch reason {
        case let .unreadable(r): "cannot read file: \(r)"
        case let .unsupportedFormat(r): "unsupported image: \(r)"
        case let .corrupt(r): "corrupt image: \(r)"
        case let .tooLarge(w, h, limit): "image is \(w)×\(h) = \(w * h) pixels, over the limit of \(limit) (raise --max-pixels to allow it)"
        }
    }

    public var description: String { "\(path): \(summary)" }
}

/// Decodes JPEG (TurboJPEG), PNG (libpng), TIFF (libtiff) and BMP into 8-bit RGB.
///
/// - Greyscale becomes three equal channels; alpha is dropped (as PIL's `convert("RGB")` does).
/// - 16-bit and floating-point images are stretched from their own min…max to 0…255, since
///   microscopy files rarely use the full 16-bit range.
/// - A truncated or damaged file is an error, never a partially grey image.
/// - Images over `maxPixels` are refused from their header, before any pixel memory is allocated.
public struct ImageDecoder: Sendable {
    public var maxPixels: Int
    /// TIFF page (directory) to read; multi-page stacks default to the first.
    public var tiffPage: Int

    public static let defaultMaxPixels = 64_000_000

    public init(maxPixels: Int = ImageDecoder.defaultMaxPixels, tiffPage: Int = 0) {
        self.maxPixels = maxPixels
        self.tiffPage = tiffPage
    }

    public enum Format: String, Sendable { case jpeg, png, tiff, bmp }

    public static func sniff(_ bytes: [UInt8]) -> Format? {
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return .tiff }
        if bytes.starts(with: [0x42, 0x4D]) { return .bmp }
        return nil
    }

    public func decode(contentsOf url: URL) throws -> RGBImage {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ImageDecodingError(path: url.path, reason: .unreadable((error as NSError).localizedDescription))
        }
        return try decode([UInt8](data), path: url.path)
    }

    /// Decodes an encoded image held in memory; `path` is used in error messages.
    public func decode(_ bytes: [UInt8], path: String) throws -> RGBImage {
        guard !bytes.isEmpty else { throw ImageDecodingError(path: path, reason: .corrupt("the file is empty")) }
        guard let format = ImageDecoder.sniff(bytes) else {
            throw ImageDecodingError(path: path, reason: .unsupportedFormat(
                "not a JPEG, PNG, TIFF or BMP file (first bytes \(bytes.prefix(4).map { String(format: "%02x", $0) }.joined()))"))
        }
        func fail(_ r: ImageDecodingError.Reason) -> ImageDecodingError { ImageDecodingError(path: path, reason: r) }
        switch format {
        case .jpeg: return try JPEGCodec.decode(bytes, maxPixels: maxPixels, fail: fail)
        case .png: return try PNGCodec.decode(bytes, maxPixels: maxPixels, fail: fail)
        case .tiff: return try TIFFCodec.decode(bytes, page: tiffPage, maxPixels: maxPixels, fail: fail)
        case .bmp: return try BMPCodec.decode(bytes, maxPixels: maxPixels, fail: fail)
        }
    }

}

typealias FailFunction = (ImageDecodingError.Reason) -> ImageDecodingError

func checkPixelLimit(width: Int, height: Int, maxPixels: Int, fail: FailFunction) throws {
    guard width > 0, height > 0 else { throw fail(.corrupt("image has no pixels (\(width)×\(height))")) }
    guard width * height <= maxPixels else { throw fail(.tooLarge(width: width, height: height, limit: maxPixels)) }
}

/// Maps samples of any range to 0…255 by the image's own min and max (constant images become 0).
func stretchToBytes(_ values: [Float]) -> [UInt8] {
    guard let lo = values.min(), let hi = values.max(), hi > lo else {
        return [UInt8](repeating: 0, count: values.count)
    }
    let scale = 255 / (hi - lo)
    return values.map { UInt8(min(255, max(0, (($0 - lo) * scale).rounded()))) }
}

/// Expands `channels`-per-pixel samples to RGB: grey → 3 copies, grey+alpha and RGBA drop alpha.
func expandToRGB(_ samples: [UInt8], pixelCount: Int, channels: Int) -> [UInt8] {
    if channels == 3 { return samples }
    var out = [UInt8](repeating: 0, count: pixelCount * 3)
    for i in 0..<pixelCount {
        if channels <= 2 {
            let v = samples[i * channels]
            out[i * 3] = v; out[i * 3 + 1] = v; out[i * 3 + 2] = v
        } else {
            for c in 0..<3 { out[i * 3 + c] = samples[i * channels + c] }
        }
    }
    return out
}
