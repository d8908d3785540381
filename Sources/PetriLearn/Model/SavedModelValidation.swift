import Foundation
import PetriData
import PetriNN

extension FeatureSpec {
    /// The width of the feature matrix this spec gives: every crop × backbone × level block side by side.
    /// Throws when a backbone is not known to the registry.
    public func width() throws -> Int {
        var total = 0
        for b in backbones {
            let arch = try ModelRegistry.entry(b.hasPrefix("random:") ? String(b.dropFirst(7)) : b).architecture
            total += levels.map { arch.channels(at: $0) }.reduce(0, +)
        }
        return total * crops.count
    }
}

extension SavedModel {
    /// Checks every field against the others before the model is used: the class count against every head
    /// and network, feature widths against what the backbones give, array lengths against the shapes they
    /// claim, finite numbers, crops in (0, 1], views in 1…8, a positive temperature. A model file is refused
    /// with one message naming the field and what is wrong, never used to give NaN or shifted probabilities.
    public func validate() throws {
        let k = classNames.count
        guard k >= 2 else { throw SavedModelProblem("classNames: \(k) class(es), a classifier needs at least two") }
        guard classNames.allSatisfy({ !$0.isEmpty }), Set(classNames).count == k else {
            throw SavedModelProblem("classNames: an empty or repeated name")
        }
        do { _ = try TransformPipeline.parse(preprocessing) } catch { throw SavedModelProblem("preprocessing '\(preprocessing)': \(error)") }
        guard head != nil || mlp != nil || networks != nil else { throw SavedModelProblem("the file holds no classifier (head, mlp or networks)") }
        guard !(head != nil && (mlp != nil || networks != nil)) else { throw SavedModelProblem("head: a logistic head cannot be blended with other heads") }
        if head != nil || mlp != nil {
            let width = try Self.checkFeatures(featureSpec, levels: levels, views: views, crops: crops ?? [1], field: "")
            if let head {
                guard head.classes == k else { throw SavedModelProblem("head.classes: \(head.classes), the model has \(k) classes") }
                if let width, head.features != width { throw SavedModelProblem("head.features: \(head.features), the backbones give \(width)") }
                guard head.weights.count == head.classes * head.features, head.intercepts.count == head.classes else {
                    throw SavedModelProblem("head: \(head.weights.count) weights and \(head.intercepts.count) intercepts for \(head.classes) classes × \(head.features) features")
                }
                try Self.finite(head.weights + head.intercepts, "head")
            }
            if let mlp { try Self.check(mlp, classes: k, width: width, field: "mlp") }
            for (i, p) in (partnerHeads ?? []).enumerated() {
                guard mlp != nil else { throw SavedModelProblem("partnerHeads: partner heads without a main mlp") }
                let w = try Self.checkFeatures(p.featureSpec, levels: p.levels, views: p.views, crops: p.crops, field: "partnerHeads[\(i)].")
                try Self.check(p.mlp, classes: k, width: w, field: "partnerHeads[\(i)].mlp")
            }
        } else if partnerHeads != nil {
            throw SavedModelProblem("partnerHeads: partner heads without a main mlp")
        }
        if let networks {
            guard !networks.isEmpty, networks.count <= 64 else { throw SavedModelProblem("networks: \(networks.count) networks (1…64)") }
            for (i, n) in networks.enumerated() {
                guard n.classes == k else { throw SavedModelProblem("networks[\(i)].classes: \(n.classes), the model has \(k) classes") }
                guard (1...8).contains(n.views) else { throw SavedModelProblem("networks[\(i)].views: \(n.views) (1…8)") }
                if let c = n.crop, !(c > 0 && c <= 1) { throw SavedModelProblem("networks[\(i)].crop: \(c) (in (0, 1])") }
                do { _ = try n.restored(file: "") } catch let DatasetError.malformed(_, reason) {
                    throw SavedModelProblem("networks[\(i)]: \(reason)")
                }
                for (name, values) in n.parameters { try Self.finite(values, "networks[\(i)].\(name)") }
            }
        }
        if let t = triage {
            guard t.temperature.isFinite, t.temperature > 0 else { throw SavedModelProblem("triage.temperature: \(t.temperature) (must be positive)") }
            guard t.targetAccuracy > 0, t.targetAccuracy <= 1 else { throw SavedModelProblem("triage.targetAccuracy: \(t.targetAccuracy) (in (0, 1])") }
            guard t.alpha > 0, t.alpha < 1 else { throw SavedModelProblem("triage.alpha: \(t.alpha) (in (0, 1))") }
            for (name, v) in [("acceptThreshold", t.acceptThreshold), ("conformalThreshold", t.conformalThreshold)] {
                if let v, !(v >= 0 && v <= 1) { throw SavedModelProblem("triage.\(name): \(v) (in [0, 1])") }
            }
        }
        if let f = familiarity {
            let width = EfficientNetLite.featureWidth
            guard f.features == width, f.mean.count == width, f.dims >= 1, f.dims <= 256, f.components.count == f.dims * width,
                  f.count >= 2, f.count <= 100_000, f.points.count == f.count * f.dims, f.residuals.count == f.count,
                  f.neighbours >= 1, f.neighbours < f.count else {
                throw SavedModelProblem("familiarity: sizes that do not fit together (\(f.dims) components of \(f.features) features, \(f.count) images)")
            }
            guard f.threshold.isFinite, f.threshold > 0, f.quantile > 0, f.quantile <= 1, f.margin.isFinite, f.margin > 0 else {
                throw SavedModelProblem("familiarity.threshold: \(f.threshold) (must be a positive number)")
            }
            try Self.finite(f.mean + f.components + f.points + f.residuals, "familiarity")
            if let im = f.images {
                guard im.mean.count == ImageStatistics.names.count, im.std.count == im.mean.count, im.low.count == im.mean.count,
                      im.high.count == im.mean.count, (im.mean + im.std).allSatisfy(\.isFinite), zip(im.low, im.high).allSatisfy({ $0 <= $1 })
                else { throw SavedModelProblem("familiarity.images: \(im.mean.count) statistics, or a range upside down") }
            }
        }
        if let r = scaleReference {
            let width = EfficientNetLite.featureWidth
            guard r.mean.count == width, r.std.count == width else {
                throw SavedModelProblem("scaleReference: \(r.mean.count) means and \(r.std.count) deviations, Lite0's head gives \(width)")
            }
            try Self.finite(r.mean + r.std, "scaleReference")
        }
        if let c = colourReference {
            guard c.mean.count == 3, c.std.count == 3, (c.mean + c.std).allSatisfy(\.isFinite), c.std.allSatisfy({ $0 > 0 }) else {
                throw SavedModelProblem("colourReference: 3 finite channel means and 3 positive deviations expected")
            }
        }
    }

    /// Checks a frozen-feature recipe; returns its width when its backbones are known (a trained backbone that
    /// is missing is reported when the model is used, naming it).
    static func checkFeatures(_ spec: FeatureSpec, levels: [String], views: Int, crops: [Double], field: String) throws -> Int? {
        guard !spec.backbones.isEmpty, spec.backbones.count <= 16 else { throw SavedModelProblem("\(field)backbones: \(spec.backbones.count) (1…16)") }
        guard !levels.isEmpty, spec.levels.count == levels.count, Set(levels).count == levels.count else {
            throw SavedModelProblem("\(field)levels: \(levels) (stem, stage1…stage7, head; each once)")
        }
        guard (1...8).contains(views) else { throw SavedModelProblem("\(field)views: \(views) (1…8)") }
        guard !crops.isEmpty, crops.count <= 8, crops.allSatisfy({ $0 > 0 && $0 <= 1 }), Set(crops).count == crops.count else {
            throw SavedModelProblem("\(field)crops: \(crops) (each in (0, 1], each once)")
        }
        return try? spec.width()
    }

    static func check(_ m: MLP, classes: Int, width: Int?, field: String) throws {
        guard m.classes == classes else { throw SavedModelProblem("\(field).classes: \(m.classes), the model has \(classes) classes") }
        guard m.hidden >= 1, m.hidden <= 1 << 16, m.features >= 1 else { throw SavedModelProblem("\(field): \(m.hidden) hidden units, \(m.features) features") }
        if let width, m.features != width { throw SavedModelProblem("\(field).features: \(m.features), the backbones give \(width)") }
        guard m.w1.count == m.hidden * m.features, m.b1.count == m.hidden, m.w2.count == m.classes * m.hidden, m.b2.count == m.classes else {
            throw SavedModelProblem("\(field): weights of \(m.w1.count), \(m.b1.count), \(m.w2.count), \(m.b2.count) values for \(m.hidden) hidden units, \(m.features) features, \(m.classes) classes")
        }
        try finite(m.w1 + m.b1 + m.w2 + m.b2, field)
    }

    static func finite(_ values: [Float], _ field: String) throws {
        guard values.allSatisfy(\.isFinite) else { throw SavedModelProblem("\(field): values that are not finite numbers") }
    }
}

/// What is wrong with a model file's fields (reported with the file's path).
struct SavedModelProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
