/// Uncompressed Windows BMP (1/4/8-bit palette, 24-bit, 32-bit), parsed in Swift.
enum BMPCodec {
    static func decode(_ b: [UInt8], maxPixels: Int, fail: FailFunction) throws -> RGBImage {
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func i32(_ o: Int) -> Int { Int(Int32(bitPattern: UInt32(u32(o)))) }
        guard b.count >= 54 else { throw fail(.corrupt("BMP header truncated")) }
        let dataOffset = u32(10), headerSize = u32(14)
        guard headerSize >= 40 else { throw fail(.unsupportedFormat("BMP core header (OS/2) variant")) }
        let w = i32(18), rawH = i32(22), bpp = u16(28), compression = u32(30)
        let h = abs(rawH), topDown = rawH < 0
        try checkPixelLimit(width: w, height: h, maxPixels: maxPixels, fail: fail)
        guard compression == 0 || (compression == 3 && bpp == 32) else {
            throw fail(.unsupportedFormat("compressed BMP (compression \(compression))"))
        }
        guard [1, 4, 8, 24, 32].contains(bpp) else { throw fail(.unsupportedFormat("\(bpp)-bit BMP")) }
        var palette: [(UInt8, UInt8, UInt8)] = []
        if bpp <= 8 {
            let colours = u32(46) == 0 ? 1 << bpp : u32(46)
            let start = 14 + headerSize
            guard start + colours * 4 <= b.count else { throw fail(.corrupt("BMP palette truncated")) }
            palette = (0..<colours).map { (b[start + $0 * 4 + 2], b[start + $0 * 4 + 1], b[start + $0 * 4]) }
        }
        let rowBytes = (w * bpp + 31) / 32 * 4
        guard dataOffset + rowBytes * h <= b.count else { throw fail(.corrupt("BMP pixel data truncated")) }
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let row = dataOffset + (topDown ? y : h - 1 - y) * rowBytes
            for x in 0..<w {
                let o = (y * w + x) * 3
                switch bpp {
                case 24, 32:
                    let p = row + x * (bpp / 8)
                    pixels[o] = b[p + 2]; pixels[o + 1] = b[p + 1]; pixels[o + 2] = b[p]
                default:
                    let bit = x * bpp
                    let byte = Int(b[row + bit / 8])
                    let index = (byte >> (8 - bpp - bit % 8)) & ((1 << bpp) - 1)
                    guard index < palette.count else { throw fail(.corrupt("BMP palette index out of range")) }
                    (pixels[o], pixels[o + 1], pixels[o + 2]) = palette[index]
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels, sourceChannels: bpp == 32 ? 4 : 3,
                        sourceBitDepth: min(bpp, 8))
    }
}
