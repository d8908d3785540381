import CPNG
import Foundation

/// PNG through libpng's simplified API (no setjmp needed). The input buffer stays pinned from
/// begin to finish: libpng keeps a pointer into it.
enum PNGCodec {
    static func decode(_ bytes: [UInt8], maxPixels: Int, fail: FailFunction) throws -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        return try bytes.withUnsafeBufferPointer { src -> RGBImage in
            defer { png_image_free(&image) }
            func message() -> String {
                withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            }
            guard png_image_begin_read_from_memory(&image, src.baseAddress, src.count) != 0 else {
                throw fail(.corrupt(message()))
            }
            let w = Int(image.width), h = Int(image.height)
            try checkPixelLimit(width: w, height: h, maxPixels: maxPixels, fail: fail)
            let fileFormat = image.format
            let sixteenBit = fileFormat & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0
            let hasColor = fileFormat & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
            let hasAlpha = fileFormat & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
            let sourceChannels = (hasColor ? 3 : 1) + (hasAlpha ? 1 : 0)
            // Ask for the file's own channels (no compositing, no gamma conversion) and convert here.
            let channels = sourceChannels
            var format = (hasColor ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0) | (hasAlpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
            if sixteenBit { format |= UInt32(PNG_FORMAT_FLAG_LINEAR) }
            image.format = format
            if sixteenBit {
                var raw = [UInt16](repeating: 0, count: w * h * channels)
                let ok = raw.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
                guard ok != 0 else { throw fail(.corrupt(message())) }
                // Linear 16-bit samples: take the colour samples, stretch them to 8 bits.
                var colour = [Float](); colour.reserveCapacity(w * h * min(channels, 3))
                let keep = hasColor ? 3 : 1
                for i in 0..<(w * h) { for c in 0..<keep { colour.append(Float(raw[i * channels + c])) } }
                return RGBImage(width: w, height: h,
                                pixels: expandToRGB(stretchToBytes(colour), pixelCount: w * h, channels: keep),
                                sourceChannels: sourceChannels, sourceBitDepth: 16)
            }
            var raw = [UInt8](repeating: 0, count: w * h * channels)
            let ok = raw.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
            guard ok != 0 else { throw fail(.corrupt(message())) }
            return RGBImage(width: w, height: h, pixels: expandToRGB(raw, pixelCount: w * h, channels: channels),
                            sourceChannels: sourceChannels)
        }
    }
}

extension RGBImage {
    /// Encodes as an 8-bit RGB PNG (libpng simplified API).
    public func pngData() throws -> [UInt8] {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR)
        var size: Int = 0
        // First call measures, second writes.
        let measured = pixels.withUnsafeBufferPointer {
            png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil)
        }
        guard measured != 0, size > 0 else { throw ImageDecodingError(path: "<png encoder>", reason: .corrupt("cannot encode PNG")) }
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { dst in
            pixels.withUnsafeBufferPointer { png_image_write_to_memory(&image, dst.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
        }
        png_image_free(&image)
        guard ok != 0 else { throw ImageDecodingError(path: "<png encoder>", reason: .corrupt("cannot encode PNG")) }
        return Array(out.prefix(size))
    }

    /// Writes a PNG atomically (temporary file, then rename): a crash never leaves a partial file.
    public func writePNG(to url: URL) throws {
        try Data(try pngData()).write(to: url, options: .atomic)
    }
}
