import Foundation
import PetriNN

/// Petri's default recipe, built from an `AutoSpec`:
/// 1. the image scale — the whole image or a central crop of 0.7, 0.5 or 0.4 of the shorter side — chosen by a
///    logistic-regression probe on one view of Lite0's (and the CellNet's) head features (`scaleProbe`);
/// 2. at that scale, the candidates (`candidates`): MLP heads on stage-6 + head features of ImageNet Lite0, 1 and
///    2 and on the CellNet's, averaged over the dihedral views, and a small CNN trained from scratch;
/// 3. below 10 images per class their blend, above it what inner cross-validation supports (`AutoMethod`).
public enum AutoRecipe {
    /// The domain backbone paired with ImageNet: Petri's CellNet (`weights/cellnet.petri-backbone`, installed
    /// into the weights folder by `make setup`; weights/README.md says what it was trained on).
    public static let defaultCellNet = "cellnet"
    /// The crops the scale probe compares, the whole image first.
    public static let crops: [Double] = [1, 0.7, 0.5, 0.4]

    /// The method. A missing default CellNet is a warning (`warn`) and ImageNet features only; a CellNet named
    /// in the spec that is missing is an error.
    public static func method(_ spec: AutoSpec, warn: (String) -> Void = { _ in }) throws -> AutoMethod {
        var partner: String?
        if let name = spec.cellnet {
            if (try? ModelRegistry.entry(name)) != nil {
                partner = name
            } else if name == defaultCellNet {
                warn("backbone '\(name)' is not in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: ", ")): `auto` uses ImageNet features only. Run `make setup` to install it.")
            } else {
                throw SpecProblem("cellnet=\(name): no backbone '\(name)' in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: ", ")) (trained ones: \(ModelRegistry.trainedNames.joined(separator: ", ")))")
            }
        }
        let probeBackbones = [ModelRegistry.names[0]] + (spec.probeWithCellNet ? partner.map { [$0] } ?? [] : [])
        var m = AutoMethod(crops: crops,
                           scaleProbe: { c in scaleProbe(backbones: probeBackbones, crop: c) },
                           candidates: { scales in candidates(crops: scales, scratch: spec.scratch, cellnet: partner, views: spec.views) })
        m.scaleScore = spec.scaleScore
        m.recordTestScores = spec.diagnostics.contains(.testScores) || spec.diagnostics.contains(.probabilities)
        if spec.diagnostics.contains(.probabilities) {
            m.recordProbabilities = true
            m.diagnosticCandidates = { scales in diagnosticProbes(crop: scales[0], views: spec.views, cellnet: partner) }
        }
        m.probeOnly = spec.diagnostics.contains(.probeOnly)
        m.label = MethodSpec.auto(spec).description
        return m
    }

    /// The probe that ranks image scales: logistic regression on one view of the backbones' head features at a
    /// fixed C = 10 (the peers' LP setting): choosing C by its own inner CV costs 19 fits per probe for a ranking
    /// that C hardly moves.
    public static func scaleProbe(backbones: [String], crop: Double) -> LinearProbeMethod {
        var probe = LinearProbeMethod(features: FeatureSpec(backbones: backbones, crops: [crop]))
        probe.probe.cGrid = [10]
        return probe
    }

    /// Recorded beside the candidates for studying the rules (never chosen), all at the chosen crop: the peers'
    /// linear probe (Lite0 head features, one view), logistic regression on the MLP family's main features and,
    /// with a CellNet, on Lite0's and the CellNet's head features side by side (what the scale probe reads).
    public static func diagnosticProbes(crop: Double, views: Int, cellnet: String?) -> [any FewShotMethod] {
        [LinearProbeMethod(features: FeatureSpec(crops: [crop])),
         LinearProbeMethod(features: FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: views, crops: [crop]))]
            + (cellnet.map { [LinearProbeMethod(features: FeatureSpec(backbones: [ModelRegistry.names[0], $0], crops: [crop]))] } ?? [])
    }

    /// What `auto` chooses among at the chosen `crops` (the chosen crop first, then the runner-up):
    /// - one MLP family: a head on ImageNet Lite0+1+2 stage-6 + head features at the chosen crop, with partner
    ///   heads (averaged) on the CellNet's at that crop and on both at the runner-up crop. An MLP is at least as
    ///   good as logistic regression on the same features on every set measured, so choosing between the two on a
    ///   few images would only add noise;
    /// - with `scratch`, cnn-mini trained from scratch on the same crop: it wins on some kinds of images (white
    ///   cells) and loses on others, hence the choice.
    public static func candidates(crops: [Double], scratch: Bool = true, cellnet: String? = nil, views: Int = 8) -> [any FewShotMethod] {
        let multiLevel = FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: views, crops: [crops[0]])
        var partners: [FeatureSpec] = []
        for (i, c) in crops.prefix(2).enumerated() {
            for backbones in [ModelRegistry.names] + (cellnet.map { [[$0]] } ?? []) where !(i == 0 && backbones == ModelRegistry.names) {
                var spec = multiLevel
                spec.backbones = backbones
                spec.crops = [c]
                partners.append(spec)
            }
        }
        var list: [any FewShotMethod] = [MLPMethod(features: multiLevel, partners: partners)]
        if scratch { list.append(ScratchMethod(.cnnMini, crop: crops[0])) }
        return list
    }
}
