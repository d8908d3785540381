import Foundation
import PetriEngine
import Testing
@testable import PetriData

func fixture(_ name: String) -> URL {
    Bundle.module.resourceURL!.appendingPathComponent("Fixtures").appendingPathComponent(name)
}

/// The pattern written by scripts/reference/make_image_fixtures.py (5 × 4 pixels).
enum Pattern {
    static let width = 5, height = 4
    static func rgb(_ x: Int, _ y: Int) -> [Int] { [40 * x, 50 * y, 20 * (x + y)] }
    static func grey(_ x: Int, _ y: Int) -> Int { 10 * x + 60 * y }
    static func grey16Stretched(_ x: Int, _ y: Int) -> Int {
        let v = Double(3000 * x + 5000 * y), max = Double(3000 * 4 + 5000 * 3)
        return Int((v * 255 / max).rounded())
    }

    static func maxDifference(_ image: RGBImage, _ expected: (Int, Int) -> [Int]) -> Int {
        var m = 0
        for y in 0..<height { for x in 0..<width { for c in 0..<3 {
            m = max(m, abs(Int(image[x, y, c]) - expected(x, y)[c]))
        } } }
        return m
    }
}

@Suite struct DecoderTests {
    let decoder = ImageDecoder()

    @Test(arguments: ["rgb.png", "rgb.tif", "rgb.bmp"])
    func losslessRGBIsExact(file: String) throws {
        let img = try decoder.decode(contentsOf: fixture(file))
        #expect(img.width == 5 && img.height == 4)
        #expect(Pattern.maxDifference(img) { Pattern.rgb($0, $1) } == 0)
    }

    @Test(arguments: ["grey.png", "palette.bmp"])
    func greyBecomesThreeEqualChannels(file: String) throws {
        let img = try decoder.decode(contentsOf: fixture(file))
        #expect(Pattern.maxDifference(img) { x, y in [Pattern.grey(x, y), Pattern.grey(x, y), Pattern.grey(x, y)] } == 0)
    }

    @Test(arguments: ["grey16.png", "grey16.tif"])
    func sixteenBitIsStretchedToItsRange(file: String) throws {
        let img = try decoder.decode(contentsOf: fixture(file))
        #expect(img.sourceBitDepth == 16)
        let g = { (x: Int, y: Int) in [Pattern.grey16Stretched(x, y), Pattern.grey16Stretched(x, y), Pattern.grey16Stretched(x, y)] }
        #expect(Pattern.maxDifference(img, g) <= 1)
    }

    @Test func alphaIsDroppedNotComposited() throws {
        let img = try decoder.decode(contentsOf: fixture("rgba.png"))
        #expect(img.sourceChannels == 4)
        #expect(Pattern.maxDifference(img) { Pattern.rgb($0, $1) } == 0)
    }

    @Test func palettePNG() throws {
        let img = try decoder.decode(contentsOf: fixture("palette.png"))
        #expect(Pattern.maxDifference(img) { Pattern.rgb($0, $1) } <= 8)
    }

    @Test func jpegMatchesPILExactly() throws {
        let img = try decoder.decode(contentsOf: fixture("pbc-monocyte.jpg"))
        let reference = try NPY.read(fixture("pbc-monocyte-pil.npy"))
        #expect(reference.shape == [img.height, img.width, 3])
        let diff = zip(img.pixels, reference.values).map { abs(Float($0) - $1) }.max() ?? 0
        #expect(diff == 0, "max difference to PIL: \(diff)")
    }

    @Test func highQualityJPEGIsClose() throws {
        let img = try decoder.decode(contentsOf: fixture("rgb-q100.jpg"))
        #expect(Pattern.maxDifference(img) { Pattern.rgb($0, $1) } <= 4)
    }

    @Test func cmykJPEGBecomesRGB() throws {
        let img = try decoder.decode(contentsOf: fixture("cmyk.jpg"))
        #expect(img.sourceChannels == 4)
        #expect(Pattern.maxDifference(img) { Pattern.rgb($0, $1) } <= 8)
    }

    @Test func multiPageTIFFReadsTheRequestedPage() throws {
        let first = try decoder.decode(contentsOf: fixture("two-pages.tif"))
        #expect(Pattern.maxDifference(first) { Pattern.rgb($0, $1) } == 0)
        let second = try ImageDecoder(tiffPage: 1).decode(contentsOf: fixture("two-pages.tif"))
        #expect(Pattern.maxDifference(second) { x, y in Pattern.rgb(x, y).map { 255 - $0 } } == 0)
        #expect { try ImageDecoder(tiffPage: 5).decode(contentsOf: fixture("two-pages.tif")) } throws: {
            "\($0)".contains("page 5") && "\($0)".contains("two-pages.tif")
        }
    }

    @Test(arguments: [
        ("truncated.jpg", "corrupt"), ("truncated.png", "corrupt"), ("not-an-image.png", "not a JPEG"),
        ("empty.jpg", "empty"), ("does-not-exist.png", "cannot read"),
    ])
    func badFilesGiveAnErrorNamingTheFile(file: String, expected: String) throws {
        #expect { try decoder.decode(contentsOf: fixture(file)) } throws: { error in
            let text = "\(error)"
            return text.contains(file) && text.contains(expected)
        }
    }

    @Test func imagesOverThePixelLimitAreRefusedFromTheHeader() throws {
        let small = ImageDecoder(maxPixels: 10)
        for file in ["rgb.png", "rgb-q100.jpg", "rgb.tif", "rgb.bmp"] {
            #expect(throws: ImageDecodingError.self) { try small.decode(contentsOf: fixture(file)) }
            do { _ = try small.decode(contentsOf: fixture(file)) } catch let e as ImageDecodingError {
                #expect(e.reason == .tooLarge(width: 5, height: 4, limit: 10))
            }
        }
    }

    @Test func randomBytesNeverCrash() {
        var rng = SeededGenerator(seed: 1)
        for magic in [[0xFF, 0xD8, 0xFF], [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], [0x49, 0x49, 0x2A, 0x00],
                      [0x42, 0x4D]] as [[UInt8]] {
            for length in [4, 60, 600] {
                let bytes = magic + (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                #expect(throws: ImageDecodingError.self) { try decoder.decode(bytes, path: "fuzz") }
            }
        }
    }
}

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(String(repeating: "a", count: 1_000)) ==
                "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}

@Suite struct ResizeTests {
    @Test func constantImageStaysConstant() {
        let src = [Float](repeating: 7, count: 37 * 23 * 3)
        let out = Resampler.resize(src, width: 37, height: 23, channels: 3, toWidth: 11, height: 9)
        #expect(out.allSatisfy { abs($0 - 7) < 1e-4 })
    }

    @Test func downscaleByTwoAveragesPairs() {
        // A 4×1 ramp 0, 10, 20, 30 halved with an antialiased triangle filter of support 2:
        // output 0 covers input centres 0.5 and 1.5 with weights from the tent → (0·3 + 10·3 + 20·1)/7 ≈ 7.14.
        let out = Resampler.resize([0, 10, 20, 30], width: 4, height: 1, channels: 1, toWidth: 2, height: 1)
        #expect(abs(out[0] - 50.0 / 7) < 1e-4)
        #expect(abs(out[1] - 160.0 / 7) < 1e-4)
    }
}
