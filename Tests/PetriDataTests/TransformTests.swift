import Foundation
import PetriEngine
import Testing
@testable import PetriData

func ramp(_ w: Int, _ h: Int) -> FloatImage {
    var img = FloatImage(width: w, height: h)
    for y in 0..<h { for x in 0..<w {
        img[x, y, 0] = Float(x) / Float(w); img[x, y, 1] = Float(y) / Float(h); img[x, y, 2] = Float(x + y) / Float(w + h)
    } }
    return img
}

@Suite struct TransformTests {
    @Test func otsuOnAKnownHistogram() {
        // Two equal spikes at 50 and 200: every threshold in 50..<200 separates them perfectly;
        // the first maximiser is 50.
        var h = [Double](repeating: 0, count: 256)
        h[50] = 100; h[200] = 100
        #expect(otsuThreshold(histogram: h) == 50)
        // Hand-computed: bins 0,1,2,3 with counts 1,2,2,1 → between-class variance peaks at t = 1
        // (w0=3/6, μ0=(0+2)/3, μ1=(4+3)/3 → σ²_B = 0.25·(7/3−2/3)² = 0.694 vs t=2: (5/6)(1/6)(1.2−3)²=0.45).
        var g = [Double](repeating: 0, count: 256)
        g[0] = 1; g[1] = 2; g[2] = 2; g[3] = 1
        #expect(otsuThreshold(histogram: g) == 1)
    }

    @Test func otsuMaskSplitsTwoLevels() {
        let img = FloatImage.grey(width: 4, height: 1, plane: [0.1, 0.1, 0.9, 0.9])
        #expect(OtsuMask()(img).pixels == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
        #expect(OtsuMask(invert: true)(img).pixels.first == 1)
    }

    @Test func hedRoundTripIsIdentity() {
        let img = ramp(9, 7).clamped()
        let back = HEDJitter.transform(FloatImage(width: 9, height: 7, pixels: img.pixels.map { max($0, 0.01) }),
                                       alpha: [1, 1, 1], beta: [0, 0, 0])
        let original = img.pixels.map { max($0, 0.01) }
        #expect(zip(back.pixels, original).map { abs($0 - $1) }.max()! < 1e-4)
        // The matrix inverse really is one.
        let m = ColorSpace.rgbFromHED, inv = ColorSpace.hedFromRGB
        for i in 0..<3 { for j in 0..<3 {
            let v = (0..<3).reduce(Float(0)) { $0 + m[i][$1] * inv[$1][j] }
            #expect(abs(v - (i == j ? 1 : 0)) < 1e-5)
        } }
    }

    @Test func claheWithOneTileAndNoClipIsHistogramEqualisation() {
        // Values 0, 1/255, 2/255, 3/255 with counts 1, 1, 1, 1 → CDF 1/4, 2/4, 3/4, 1.
        let plane: [Float] = [0, 1, 2, 3].map { $0 / 255 }
        let out = CLAHE.equalise(plane, width: 4, height: 1, tiles: 1, clip: 1000)
        #expect(zip(out, [0.25, 0.5, 0.75, 1] as [Float]).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test func claheRaisesContrastOfAFlatImage() {
        var img = FloatImage(width: 32, height: 32)
        for y in 0..<32 { for x in 0..<32 { for c in 0..<3 { img[x, y, c] = 0.45 + 0.1 * Float(x) / 32 } } }
        let out = CLAHE(clip: 4, tiles: 2)(img)
        let before = img.luma, after = out.luma
        #expect(after.max()! - after.min()! > 2 * (before.max()! - before.min()!))
    }

    @Test func topHatKeepsSmallBrightSpotsAndRemovesLargeOnes() {
        var plane = [Float](repeating: 0.1, count: 30 * 30)
        plane[5 * 30 + 5] = 0.9                                   // 1-px spot
        for y in 10..<28 { for x in 10..<28 { plane[y * 30 + x] = 0.8 } }   // 18-px square
        let out = WhiteTopHat(radius: 3)(FloatImage.grey(width: 30, height: 30, plane: plane)).luma
        #expect(abs(out[5 * 30 + 5] - 0.8) < 1e-5)
        #expect(out[20 * 30 + 20] < 1e-5)
    }

    @Test func sobelOfAStepEdge() {
        // Vertical step 0 → 1 between columns 2 and 3: |gx| = 4 at columns 2 and 3 → magnitude 1 after /4.
        let plane: [Float] = (0..<(6 * 5)).map { ($0 % 6) >= 3 ? 1 : 0 }
        let out = SobelMagnitude()(FloatImage.grey(width: 6, height: 5, plane: plane)).luma
        #expect(abs(out[2 * 6 + 2] - 1) < 1e-5 && abs(out[2 * 6 + 3] - 1) < 1e-5)
        #expect(out[2 * 6 + 0] == 0 && out[2 * 6 + 5] == 0)
    }

    @Test func lbpOfAKnownNeighbourhood() {
        // Centre 5; neighbours clockwise from top-left: 9 1 9 / 1 . 9 / 9 1 1 →
        // bits (≥5): TL1 T0 TR1 R1 BR0 B0 BL1 L0 = 0b10110010 = 178.
        let values: [Float] = [9, 1, 9, 1, 5, 9, 9, 1, 1].map { $0 / 255 }
        let out = LocalBinaryPattern()(FloatImage.grey(width: 3, height: 3, plane: values)).luma
        #expect(abs(out[4] - 178.0 / 255) < 1e-6)
    }

    @Test func reinhardMatchesTargetStatistics() throws {
        let img = ramp(20, 16).clamped()
        let target = ReinhardNormalization.statistics(FloatImage(width: 20, height: 16, pixels: img.pixels.map { 0.2 + 0.6 * $0 }))
        let normaliser = ReinhardNormalization(targetMean: target.mean, targetStd: target.std)
        let out = normaliser(img)
        let got = ReinhardNormalization.statistics(out)
        for c in 0..<3 {
            #expect(abs(got.mean[c] - target.mean[c]) < 0.02)
            #expect(abs(got.std[c] - target.std[c]) < 0.02)
        }
        // A fitted target is written into the spec and read back exactly; the default target is plain `reinhard`.
        #expect(normaliser.spec.hasPrefix("reinhard(l="))
        let back = try #require(try TransformPipeline.parse(normaliser.spec).steps.first as? ReinhardNormalization)
        #expect(back.targetMean == target.mean && back.targetStd == target.std)
        #expect(ReinhardNormalization().spec == "reinhard")
        #expect(throws: (any Error).self) { try TransformPipeline.parse("reinhard(l=-0.3,sl=0)") }
    }

    @Test func macenkoRecoversAnImageMadeFromTheReferenceStains() {
        // Synthesise pixels from the reference stain matrix and concentrations whose 99th percentiles
        // equal the reference maxima: normalisation should give (nearly) the same image back.
        let m = MacenkoNormalization()
        var rng = SeededGenerator(seed: 5)
        let n = 40 * 40
        var pixels = [Float](repeating: 0, count: n * 3)
        for i in 0..<n {
            // A third pure haematoxylin, a third pure eosin, a third mixed: the extreme angles are the stains.
            var h = Float.random(in: 0.3...1.9705, using: &rng), e = Float.random(in: 0.2...1.0308, using: &rng)
            if i % 3 == 0 { e = 0 } else if i % 3 == 1 { h = 0 }
            for c in 0..<3 {
                let od = m.referenceStains[c][0] * h + m.referenceStains[c][1] * e
                pixels[i * 3 + c] = (240 * Foundation.exp(-od) - 1) / 255
            }
        }
        let img = FloatImage(width: 40, height: 40, pixels: pixels)
        let (stains, _) = m.decompose(img)!
        for c in 0..<3 {
            #expect(abs(stains[c][0] - m.referenceStains[c][0]) < 0.05)
            #expect(abs(stains[c][1] - m.referenceStains[c][1]) < 0.05)
        }
        let out = m(img)
        let diff = zip(out.pixels, img.pixels).map { abs($0 - $1) }.reduce(0, +) / Float(n * 3)
        #expect(diff < 0.03, "mean abs difference \(diff)")
    }

    @Test func dihedralGroup() {
        let img = ramp(5, 3)
        var seen = Set<[Float]>()
        for k in 0..<4 { for f in [false, true] { seen.insert(dihedral(img, turns: k, flip: f).pixels) } }
        #expect(seen.count == 8)
        var r = img
        for _ in 0..<4 { r = dihedral(r, turns: 1, flip: false) }
        #expect(r == img)
        #expect(dihedral(img, turns: 1, flip: false).width == 3)
        // One clockwise turn: the top-left pixel moves to the top-right corner.
        let turned = dihedral(img, turns: 1, flip: false)
        #expect(turned[2, 0, 0] == img[0, 0, 0])
    }

    @Test func rotationByZeroAndBlurOfAConstantChangeNothing() {
        let img = ramp(8, 6)
        let same = RandomRotation().rotate(img, radians: 0)
        #expect(zip(same.pixels, img.pixels).allSatisfy { abs($0 - $1) < 1e-5 })
        let flat = FloatImage(width: 9, height: 9, repeating: 0.4)
        #expect(GaussianBlur().blur(flat, sigma: 1.2).pixels.allSatisfy { abs($0 - 0.4) < 1e-5 })
    }

    @Test func blurOfAnImpulseIsTheGaussianAndReflectsAtBorders() {
        // σ = 0.5: radius 2, taps ∝ exp(−j²/0.5) for j = −2…2.
        let raw = (-2...2).map { Foundation.exp(-Double($0 * $0) / 0.5) }
        let k = raw.map { $0 / raw.reduce(0, +) }
        var img = FloatImage(width: 9, height: 7, repeating: 0)
        img[4, 3, 1] = 1
        let out = GaussianBlur().blur(img, sigma: 0.5)
        for y in 0..<7 { for x in 0..<9 {
            let expected = abs(x - 4) <= 2 && abs(y - 3) <= 2 ? k[x - 4 + 2] * k[y - 3 + 2] : 0
            #expect(abs(Double(out[x, y, 1]) - expected) < 1e-6)
            #expect(out[x, y, 0] == 0 && out[x, y, 2] == 0)
        } }
        // Borders reflect without repeating the edge pixel: for output column 0 the taps at offsets −1 and +1
        // both read column 1, so an impulse at (1, 0) reaches (0, 0) twice along x.
        var edge = FloatImage(width: 5, height: 5, repeating: 0)
        edge[1, 0, 0] = 1
        let c = GaussianBlur().blur(edge, sigma: 0.5)
        #expect(abs(Double(c[0, 0, 0]) - 2 * k[3] * k[2]) < 1e-6)
    }

    @Test func padToSquareAndCenterCrop() {
        let img = ramp(6, 4)
        let sq = PadToSquare()(img)
        #expect(sq.width == 6 && sq.height == 6)
        #expect(sq[0, 1, 0] == img[0, 0, 0])      // one row of padding on top
        let c = CenterCrop()(img)
        #expect(c.width == 4 && c.height == 4 && c[0, 0, 0] == img[1, 0, 0])
    }

    @Test func hsvRoundTrip() {
        for (r, g, b) in [(0.2, 0.5, 0.9), (0.9, 0.1, 0.1), (0.3, 0.3, 0.3), (0.0, 1.0, 0.5)] as [(Float, Float, Float)] {
            let (h, s, v) = rgbToHSV(r, g, b)
            let (r2, g2, b2) = hsvToRGB(h, s, v)
            #expect(abs(r - r2) < 1e-5 && abs(g - g2) < 1e-5 && abs(b - b2) < 1e-5)
        }
    }
}

@Suite struct PipelineTests {
    @Test func policiesParseAndAreDeterministicPerSeed() throws {
        for name in ["none", "light", "cells", "ultrasound"] {
            let p = try TransformPipeline.augmentation(name)
            let img = ramp(16, 12)
            var a = SeededGenerator(seed: 3), b = SeededGenerator(seed: 3)
            #expect(p.apply(img, rng: &a) == p.apply(img, rng: &b), "\(name)")
        }
        #expect(try TransformPipeline.augmentation("none").isEmpty)
        #expect(!(try TransformPipeline.augmentation("ultrasound").spec.contains("dihedral")))
    }

    @Test func specRoundTrips() throws {
        let p = try TransformPipeline.parse("dihedral, crop(scale=0.5-0.9), hsv(h=0.1,s=0.2,v=0.3,p=0.5), clahe(clip=3,tiles=4), grey(p=0.25)")
        let again = try TransformPipeline.parse(p.spec)
        #expect(again.spec == p.spec)
        #expect(p.steps.count == 5)
        #expect(p.spec.contains("hsv(h=0.1,s=0.2,v=0.3,p=0.5)") && p.spec.hasSuffix("grey(p=0.25)"))
        // `@` marks a method's preprocessing in method specs; in a pipeline it is refused with the spelling to use.
        #expect(throws: PipelineError.self) { try TransformPipeline.parse("hed(sigma=0.05)@0.5") }
        #expect(throws: PipelineError.self) { try TransformPipeline.parse("hed(sigma=0.05,p=1.5)") }
    }

    /// Shrinking into a mirrored surround keeps the size; a 2×2 checker shrunk by 2 repeats itself around the
    /// middle (the mirror continues the pattern), and the spec round-trips.
    @Test func zoomOutKeepsTheSizeAndMirrorsTheSurround() throws {
        var image = FloatImage(width: 8, height: 8)
        for y in 0..<8 { for x in 0..<8 { for c in 0..<3 { image[x, y, c] = (x < 4) == (y < 4) ? 1 : 0 } } }
        let out = ZoomOut(factor: 2)(image)
        #expect(out.width == 8 && out.height == 8)
        #expect(ZoomOut(factor: 1)(image) == image)
        // The original's four quadrants now fill the central 4×4: top-left bright, top-right dark.
        #expect(out[3, 3, 0] > 0.6 && out[4, 3, 0] < 0.4)
        let uniform = FloatImage(width: 10, height: 6, repeating: 0.3)
        #expect(ZoomOut(factor: 1.6)(uniform).pixels.allSatisfy { abs($0 - 0.3) < 1e-5 })
        #expect(try TransformPipeline.parse("zoomout(factor=1.5), colourshift(copy=2)").spec == "zoomout(factor=1.5), colourshift(copy=2)")
    }

    @Test func badSpecsNameTheProblem() {
        #expect { try TransformPipeline.parse("dihedral, sharpen") } throws: { "\($0)".contains("unknown transform 'sharpen'") }
        #expect { try TransformPipeline.parse("hsv(q=1)") } throws: { "\($0)".contains("unknown parameter 'q'") }
        #expect { try TransformPipeline.parse("blur(sigma=abc)") } throws: { "\($0)".contains("sigma") }
        #expect { try TransformPipeline.parse("noise@2") } throws: { "\($0)".contains("probability") }
    }
}
