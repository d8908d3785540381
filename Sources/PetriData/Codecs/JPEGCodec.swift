import CTurboJPEG

/// JPEG through TurboJPEG's API, which reports errors as return codes (the classic libjpeg API calls exit()).
enum JPEGCodec {
    static func decode(_ bytes: [UInt8], maxPixels: Int, fail: FailFunction) throws -> RGBImage {
        guard let handle = tjInitDecompress() else { throw fail(.corrupt("cannot initialise the JPEG decoder")) }
        defer { tjDestroy(handle) }
        func message() -> String { String(cString: tjGetErrorStr2(handle)) }
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &w, &h, &subsampling, &colorspace)
        }
        guard header == 0 else { throw fail(.corrupt(message())) }
        try checkPixelLimit(width: Int(w), height: Int(h), maxPixels: maxPixels, fail: fail)
        let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let channels = cmyk ? 4 : 3
        var out = [UInt8](repeating: 0, count: Int(w) * Int(h) * channels)
        // STOPONWARNING: a truncated or damaged stream is an error, not a half-grey picture.
        let flags = Int32(TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING)
        let status = bytes.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, src.baseAddress, UInt(src.count), dst.baseAddress, w, 0, h,
                              Int32(cmyk ? TJPF_CMYK.rawValue : TJPF_RGB.rawValue), flags)
            }
        }
        if status != 0 {
            let warning = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
            throw fail(.corrupt((warning ? "damaged or truncated JPEG data: " : "") + message()))
        }
        let sourceChannels = colorspace == Int32(TJCS_GRAY.rawValue) ? 1 : (cmyk ? 4 : 3)
        if cmyk {
            // Adobe CMYK JPEGs store inverted ink values, so R = C·K/255 on the decoded samples.
            var rgb = [UInt8](repeating: 0, count: Int(w) * Int(h) * 3)
            for i in 0..<(Int(w) * Int(h)) {
                let k = Int(out[i * 4 + 3])
                for c in 0..<3 { rgb[i * 3 + c] = UInt8(Int(out[i * 4 + c]) * k / 255) }
            }
            return RGBImage(width: Int(w), height: Int(h), pixels: rgb, sourceChannels: 4)
        }
        return RGBImage(width: Int(w), height: Int(h), pixels: out, sourceChannels: sourceChannels)
    }
}
