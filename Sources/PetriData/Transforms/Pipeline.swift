import Foundation
import PetriEngine

/// A sequence of transforms, written and read as a spec such as
/// `dihedral, crop(scale=0.6-1), hsv(h=0.03,s=0.15,v=0.1,p=0.8)` (`p=`: apply the step with that probability).
/// The spec is what runs record, so a pipeline can always be rebuilt from a run record.
public struct TransformPipeline: Sendable {
    public var steps: [any ImageTransform]

    public init(_ steps: [any ImageTransform] = []) { self.steps = steps }

    public var spec: String { steps.isEmpty ? "none" : steps.map(\.spec).joined(separator: ", ") }
    public var isEmpty: Bool { steps.isEmpty }

    public func apply(_ image: FloatImage, rng: inout SeededGenerator) -> FloatImage {
        steps.reduce(image) { $1.apply($0, rng: &rng) }
    }

    /// Applies a deterministic pipeline (preprocessing).
    public func callAsFunction(_ image: FloatImage) -> FloatImage {
        var rng = SeededGenerator(seed: 0)
        return apply(image, rng: &rng)
    }

    /// The built-in augmentation policies.
    public static let policies: [String: String] = [
        "none": "",
        "light": "hflip, crop(scale=0.8-1), intensity(brightness=0.1,contrast=0.1,gamma=0.1,p=0.5)",
        "cells": "dihedral, crop(scale=0.6-1), hsv(h=0.03,s=0.15,v=0.1,p=0.8), hed(sigma=0.05,bias=0.01,p=0.5), blur(sigma=0.1-1,p=0.2)",
        "ultrasound": "hflip, rotate(degrees=10), crop(scale=0.8-1), intensity(brightness=0.2,contrast=0.2,gamma=0.2,p=0.8), speckle(std=0.15,p=0.5)",
    ]

    /// A policy by name (`none`, `light`, `cells`, `ultrasound`), a spec, or `@FILE` holding a spec.
    public static func augmentation(_ nameOrSpec: String) throws -> TransformPipeline {
        if let spec = policies[nameOrSpec] { return try parse(spec) }
        if nameOrSpec.hasPrefix("@") {
            let path = String(nameOrSpec.dropFirst())
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw PipelineError("\(path): cannot read the augmentation policy file")
            }
            let spec = text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
                .joined(separator: ",")
            return try parse(spec)
        }
        return try parse(nameOrSpec)
    }

    public static func parse(_ spec: String) throws -> TransformPipeline {
        var items: [String] = [], depth = 0, current = ""
        for ch in spec {
            if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1 }
            if (ch == "," || ch == ";") && depth == 0 {
                items.append(current); current = ""
            } else { current.append(ch) }
        }
        items.append(current)
        let steps = try items.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty && $0 != "none" }
            .map(parseItem)
        return TransformPipeline(steps)
    }

    static let known = ["centercrop", "zoomout", "padsquare", "resize", "grey", "clahe", "tophat", "otsu", "adaptive", "sobel",
                        "lbp", "reinhard", "macenko", "colourshift", "view", "dihedral", "hflip", "crop", "rotate", "intensity", "hsv", "hed",
                        "blur", "noise", "speckle"]

    static func parseItem(_ item: String) throws -> any ImageTransform {
        let text = item
        var probability = 1.0
        if text.contains("@") {
            throw PipelineError("'\(item)': write a step's probability as p=… inside its parentheses, e.g. hed(sigma=0.05,p=0.5)")
        }
        var name = text, args: [String: String] = [:]
        if let open = text.firstIndex(of: "(") {
            guard text.hasSuffix(")") else { throw PipelineError("'\(item)': missing ')'") }
            name = String(text[..<open])
            for pair in text[text.index(after: open)..<text.index(before: text.endIndex)].split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2 else { throw PipelineError("'\(item)': expected key=value, got '\(pair)'") }
                args[kv[0]] = kv[1]
            }
        }
        name = name.trimmingCharacters(in: .whitespaces).lowercased()
        var used = Set<String>()
        func number(_ key: String, _ fallback: Double) throws -> Double {
            used.insert(key)
            guard let v = args[key] else { return fallback }
            guard let d = Double(v) else { throw PipelineError("'\(item)': \(key) must be a number, got '\(v)'") }
            return d
        }
        func range(_ key: String, _ fallback: ClosedRange<Double>) throws -> ClosedRange<Double> {
            used.insert(key)
            guard let v = args[key] else { return fallback }
            let parts = v.split(separator: "-").compactMap { Double($0) }
            if parts.count == 1 { return parts[0]...parts[0] }
            guard parts.count == 2, parts[0] <= parts[1] else {
                throw PipelineError("'\(item)': \(key) must be a number or a range like 0.6-1, got '\(v)'")
            }
            return parts[0]...parts[1]
        }
        if let p = args["p"] {
            used.insert("p")
            guard let v = Double(p), (0...1).contains(v) else { throw PipelineError("'\(item)': p must be a probability in 0…1, got '\(p)'") }
            probability = v
        }
        let t: any ImageTransform
        switch name {
        case "centercrop": t = CenterCrop(fraction: try number("fraction", 1))
        case "padsquare": t = PadToSquare()
        case "zoomout": t = ZoomOut(factor: try number("factor", 2))
        case "resize": t = Resize(size: Int(try number("size", 224)))
        case "grey", "gray", "greyscale": t = Greyscale()
        case "clahe": t = CLAHE(clip: try number("clip", 2), tiles: Int(try number("tiles", 8)))
        case "tophat": t = WhiteTopHat(radius: Int(try number("radius", 7)))
        case "otsu": used.insert("invert"); t = OtsuMask(invert: args["invert"] == "true")
        case "adaptive": t = AdaptiveThreshold(block: Int(try number("block", 15)), offset: try number("offset", 0.02))
        case "sobel": t = SobelMagnitude()
        case "lbp": t = LocalBinaryPattern()
        case "reinhard":
            let d = ReinhardNormalization.defaultTarget.targetMean + ReinhardNormalization.defaultTarget.targetStd
            let v = try zip(ReinhardNormalization.keys, d).map { Float(try number($0, Double($1))) }
            guard v[3...].allSatisfy({ $0 > 0 && $0.isFinite }), v[..<3].allSatisfy(\.isFinite) else {
                throw PipelineError("'\(item)': sl, sa and sb must be positive")
            }
            t = ReinhardNormalization(targetMean: Array(v[..<3]), targetStd: Array(v[3...]))
        case "macenko": t = MacenkoNormalization()
        case "colourshift", "colorshift": t = ColourShift(copy: Int(try number("copy", 1)))
        case "dihedral": t = RandomDihedral()
        case "hflip": t = RandomDihedral(verticalFlips: false)
        case "view":
            let k = Int(try number("k", 0))
            guard (0..<8).contains(k) else { throw PipelineError("'\(item)': k must be in 0..<8") }
            t = DihedralView(k)
        case "crop": t = RandomResizedCrop(scale: try range("scale", 0.6...1))
        case "rotate": t = RandomRotation(degrees: try number("degrees", 15))
        case "intensity":
            t = BrightnessContrastGamma(brightness: try number("brightness", 0.2), contrast: try number("contrast", 0.2),
                                        gamma: try number("gamma", 0.2))
        case "hsv": t = HSVJitter(hue: try number("h", 0.03), saturation: try number("s", 0.15), value: try number("v", 0.1))
        case "hed": t = HEDJitter(sigma: try number("sigma", 0.05), bias: try number("bias", 0.01))
        case "blur": t = GaussianBlur(sigma: try range("sigma", 0.1...1.5))
        case "noise": t = GaussianNoise(std: try number("std", 0.03))
        case "speckle": t = SpeckleNoise(std: try number("std", 0.15))
        default:
            throw PipelineError("unknown transform '\(name)'; known: \(known.joined(separator: ", "))")
        }
        if let extra = Set(args.keys).subtracting(used).first {
            throw PipelineError("'\(item)': unknown parameter '\(extra)'")
        }
        return probability < 1 ? Sometimes(probability, t) : t
    }
}

public struct PipelineError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
