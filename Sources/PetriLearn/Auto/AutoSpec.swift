import Foundation

/// Petri's default method (`AutoRecipe`): the image scale, then MLP heads on ImageNet and CellNet features, a
/// small CNN from scratch or their blend. `auto-fast` leaves out the CNN.
///
/// Text: `auto:cellnet=NAME|none:views=4:probe=lite0:probe-score=accuracy:diagnostics=probabilities+test-scores`.
public struct AutoSpec: Hashable, Sendable {
    /// The trained backbone (CellNet) paired with ImageNet; nil: ImageNet features only.
    public var cellnet: String? = AutoRecipe.defaultCellNet
    /// False: no network trained from scratch among the candidates (`auto-fast`).
    public var scratch = true
    /// Dihedral views the frozen-feature heads average.
    public var views = 8
    /// The scale probe reads Lite0 and the CellNet side by side (`both`) or Lite0 alone (`lite0`).
    public var probeWithCellNet = true
    public var scaleScore = AutoMethod.ScaleScore.trueClassProbability
    /// For studying the selection rules; each changes what a record holds, so it is part of the spec.
    public var diagnostics: Set<AutoDiagnostic> = []

    public init() {}
}

/// What `auto` may add to its records for studying its own rules (never used to choose).
public enum AutoDiagnostic: String, Hashable, Sendable, CaseIterable, Comparable {
    /// Each candidate's test-set balanced accuracy and each probe split's scores, in the record's scores.
    case testScores = "test-scores"
    /// Every candidate's out-of-fold and test probabilities (`AutoEvidence`, under `evidence` in a curve record),
    /// with two logistic-regression probes beside them; implies `test-scores`.
    case probabilities
    /// Stop after the scale choice and predict with the scale probe: the scale rule alone, in seconds.
    case probeOnly = "probe-only"

    public static func < (a: AutoDiagnostic, b: AutoDiagnostic) -> Bool { a.rawValue < b.rawValue }
}

extension AutoSpec: KeyedSpec {
    static func bases(backbone: String) -> [(keyword: String, value: AutoSpec)] {
        var fast = AutoSpec()
        fast.scratch = false
        return [("auto", AutoSpec()), ("auto-fast", fast)]
    }

    var keys: [SpecKey<AutoSpec>] {
        [
            SpecKey(name: "cellnet", allowed: "a trained backbone's name, or none", text: { [$0.cellnet ?? "none"] },
                    set: { s, t in
                        if t == "none" { s.cellnet = nil; return }
                        let name = try SpecText.readBackbone(t)
                        guard !name.hasPrefix("random:"), !name.hasPrefix("efficientnet-") else {
                            throw SpecProblem("a trained backbone (made by `petri pretrain`), not an ImageNet one")
                        }
                        s.cellnet = name
                    }),
            SpecKey(name: "views", allowed: "1, 2, 4 or 8", text: { [String($0.views)] },
                    set: { s, t in
                        let v = try SpecText.integer(t, 1...8)
                        guard [1, 2, 4, 8].contains(v) else { throw SpecProblem("not 1, 2, 4 or 8") }
                        s.views = v
                    }),
            SpecKey(name: "probe", allowed: "both or lite0", text: { [$0.probeWithCellNet ? "both" : "lite0"] },
                    set: { $0.probeWithCellNet = try SpecText.oneOf($1, ["both", "lite0"]) == "both" }),
            SpecKey(name: "probe-score", allowed: "p (true-class probability) or accuracy",
                    text: { [$0.scaleScore == .trueClassProbability ? "p" : "accuracy"] },
                    set: { $0.scaleScore = try SpecText.oneOf($1, ["p", "accuracy"]) == "p" ? .trueClassProbability : .balancedAccuracy }),
            SpecKey(name: "diagnostics", allowed: AutoDiagnostic.allCases.map(\.rawValue).joined(separator: ", ") + ", joined by '+'",
                    text: { [$0.diagnostics.isEmpty ? "none" : $0.diagnostics.sorted().map(\.rawValue).joined(separator: "+")] },
                    set: { s, t in
                        s.diagnostics = Set(try t.split(separator: "+", omittingEmptySubsequences: false).map {
                            guard let d = AutoDiagnostic(rawValue: String($0)) else {
                                throw SpecProblem("unknown diagnostic '\($0)'")
                            }
                            return d
                        })
                    }),
        ]
    }
}
