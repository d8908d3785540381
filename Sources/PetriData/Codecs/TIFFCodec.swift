import CTIFF
import Foundation

/// TIFF through libtiff, read from memory with its error messages captured (not printed).
/// Reads one page (directory) of multi-page stacks. 8-bit and palette/bilevel images go through libtiff's
/// RGBA reader; 16-bit, 32-bit and float samples are read raw and stretched to 8 bits.
enum TIFFCodec {
    /// The in-memory file libtiff reads through client callbacks, plus the last error message.
    final class Stream {
        let bytes: [UInt8]
        var offset = 0
        var lastError: String?
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }

    static func decode(_ bytes: [UInt8], page: Int, maxPixels: Int, fail: FailFunction) throws -> RGBImage {
        let stream = Stream(bytes)
        let context = Unmanaged.passRetained(stream)
        defer { context.release() }
        guard let options = TIFFOpenOptionsAlloc() else { throw fail(.corrupt("cannot initialise libtiff")) }
        defer { TIFFOpenOptionsFree(options) }
        let capture: TIFFErrorHandlerExtR = { _, user, module, format, args in
            guard let user, let format, let args else { return 1 }
            let s = Unmanaged<Stream>.fromOpaque(user).takeUnretainedValue()
            var buffer = [CChar](repeating: 0, count: 512)
            _ = vsnprintf(&buffer, buffer.count, format, args)
            let text = String(cString: buffer)
            s.lastError = module.map { "\(String(cString: $0)): \(text)" } ?? text
            return 1
        }
        let ignore: TIFFErrorHandlerExtR = { _, _, _, _, _ in 1 }
        TIFFOpenOptionsSetErrorHandlerExtR(options, capture, context.toOpaque())
        TIFFOpenOptionsSetWarningHandlerExtR(options, ignore, nil)

        let read: TIFFReadWriteProc = { handle, buffer, size in
            let s = Unmanaged<Stream>.fromOpaque(handle!).takeUnretainedValue()
            let n = max(0, min(Int(size), s.bytes.count - s.offset))
            s.bytes.withUnsafeBytes { src in buffer!.copyMemory(from: src.baseAddress! + s.offset, byteCount: n) }
            s.offset += n
            return tmsize_t(n)
        }
        let write: TIFFReadWriteProc = { _, _, _ in 0 }
        let seek: TIFFSeekProc = { handle, offset, whence in
            let s = Unmanaged<Stream>.fromOpaque(handle!).takeUnretainedValue()
            let base: Int = whence == SEEK_CUR ? s.offset : (whence == SEEK_END ? s.bytes.count : 0)
            let target = base + Int(Int64(bitPattern: offset))
            guard target >= 0 else { return toff_t(UInt64.max) }
            s.offset = target
            return toff_t(target)
        }
        let close: TIFFCloseProc = { _ in 0 }
        let size: TIFFSizeProc = { handle in
            toff_t(Unmanaged<Stream>.fromOpaque(handle!).takeUnretainedValue().bytes.count)
        }
        let map: TIFFMapFileProc = { _, _, _ in 0 }
        let unmap: TIFFUnmapFileProc = { _, _, _ in }

        // "m": libtiff must not try to memory-map our callbacks.
        guard let tif = TIFFClientOpenExt("memory", "rm", context.toOpaque(), read, write, seek, close, size, map,
                                          unmap, options) else {
            throw fail(.corrupt(stream.lastError ?? "libtiff could not open the file"))
        }
        defer { TIFFClose(tif) }

        if page > 0 {
            let pages = Int(TIFFNumberOfDirectories(tif))
            guard page < pages, TIFFSetDirectory(tif, tdir_t(page)) != 0 else {
                throw fail(.unsupportedFormat("page \(page) requested, the file has \(pages) page(s)"))
            }
        }
        func field16(_ tag: Int32) -> UInt16 {
            var v: UInt16 = 0
            _ = withUnsafeMutablePointer(to: &v) { p in withVaList([p]) { TIFFVGetFieldDefaulted(tif, UInt32(tag), $0) } }
            return v
        }
        func field32(_ tag: Int32) -> UInt32 {
            var v: UInt32 = 0
            _ = withUnsafeMutablePointer(to: &v) { p in withVaList([p]) { TIFFVGetFieldDefaulted(tif, UInt32(tag), $0) } }
            return v
        }
        let w = Int(field32(TIFFTAG_IMAGEWIDTH)), h = Int(field32(TIFFTAG_IMAGELENGTH))
        try checkPixelLimit(width: w, height: h, maxPixels: maxPixels, fail: fail)
        let bits = Int(field16(TIFFTAG_BITSPERSAMPLE))
        let samples = Int(field16(TIFFTAG_SAMPLESPERPIXEL))
        let sampleFormat = Int(field16(TIFFTAG_SAMPLEFORMAT))
        let planar = Int(field16(TIFFTAG_PLANARCONFIG))
        // EXTRASAMPLES is (uint16 count, uint16 *types): two out-arguments.
        var extraCount: UInt16 = 0
        var extraTypes: UnsafeMutablePointer<UInt16>?
        _ = withUnsafeMutablePointer(to: &extraCount) { c in
            withUnsafeMutablePointer(to: &extraTypes) { t in
                withVaList([c, t]) { TIFFVGetFieldDefaulted(tif, UInt32(TIFFTAG_EXTRASAMPLES), $0) }
            }
        }
        let extraSamples = Int(extraCount)
        let colourSamples = max(1, samples - extraSamples) >= 3 ? 3 : 1

        if bits > 8 {
            guard TIFFIsTiled(tif) == 0, planar == PLANARCONFIG_CONTIG, [16, 32].contains(bits) else {
                throw fail(.unsupportedFormat("\(bits)-bit \(TIFFIsTiled(tif) != 0 ? "tiled" : "planar") TIFF"))
            }
            let lineBytes = Int(TIFFScanlineSize(tif))
            var line = [UInt8](repeating: 0, count: lineBytes)
            var values = [Float](); values.reserveCapacity(w * h * colourSamples)
            for row in 0..<h {
                let ok = line.withUnsafeMutableBytes { TIFFReadScanline(tif, $0.baseAddress, UInt32(row), 0) }
                guard ok >= 0 else { throw fail(.corrupt(stream.lastError ?? "cannot read row \(row)")) }
                line.withUnsafeBytes { raw in
                    for x in 0..<w {
                        for c in 0..<colourSamples {
                            let i = x * samples + c
                            let v: Float
                            switch (bits, sampleFormat) {
                            case (16, Int(SAMPLEFORMAT_INT)): v = Float(raw.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
                            case (16, _): v = Float(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                            case (32, Int(SAMPLEFORMAT_IEEEFP)): v = raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                            case (32, Int(SAMPLEFORMAT_INT)): v = Float(raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                            default: v = Float(raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                            }
                            values.append(v.isFinite ? v : 0)
                        }
                    }
                }
            }
            return RGBImage(width: w, height: h,
                            pixels: expandToRGB(stretchToBytes(values), pixelCount: w * h, channels: colourSamples),
                            sourceChannels: samples, sourceBitDepth: bits)
        }

        var raster = [UInt32](repeating: 0, count: w * h)
        let ok = raster.withUnsafeMutableBufferPointer {
            TIFFReadRGBAImageOriented(tif, UInt32(w), UInt32(h), $0.baseAddress, Int32(ORIENTATION_TOPLEFT), 1)
        }
        guard ok != 0 else { throw fail(.corrupt(stream.lastError ?? "libtiff could not decode the pixels")) }
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<(w * h) {
            let p = raster[i]   // ABGR: red in the low byte
            pixels[i * 3] = UInt8(p & 0xFF)
            pixels[i * 3 + 1] = UInt8((p >> 8) & 0xFF)
            pixels[i * 3 + 2] = UInt8((p >> 16) & 0xFF)
        }
        return RGBImage(width: w, height: h, pixels: pixels, sourceChannels: samples, sourceBitDepth: bits)
    }
}
