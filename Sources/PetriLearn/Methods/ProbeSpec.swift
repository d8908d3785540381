import Foundation
import PetriNN

/// A head on frozen features: `lp` (logistic regression), `mlp`, `knn` (5 nearest neighbours), `proto` (nearest
/// class mean), with where the features come from and, for `mlp`, how its head trains.
///
/// Text: `lp:b=lite0+lite1:l=stage6+head:v=8:c=0.5`; `mlp:…:h=128:steps=600:rows=1:colour=2:cv=1:with=cellnet`.
public struct ProbeSpec: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        case lp, mlp, knn, proto
    }

    public var kind: Kind
    public var features: FeatureSpec
    /// MLP only: train on every dihedral view as its own row (`MLPMethod.viewRows`).
    public var viewRows = false
    public var hidden = MLPHead().hidden
    public var steps = MLPHead().steps
    /// MLP only: colour-shifted copies of each training image (`MLPMethod.colourCopies`) and the views of each.
    public var colourCopies = 0
    public var copyViews: Int?
    /// MLP only: the backbone sets of further heads, each on the same levels, views and crops, averaged.
    public var partners: [[String]] = []

    public init(_ kind: Kind, features: FeatureSpec = FeatureSpec()) {
        self.kind = kind
        self.features = features
    }

    /// The method it describes.
    public func method() -> any FewShotMethod {
        switch kind {
        case .lp: return LinearProbeMethod(features: features)
        case .knn: return NearestNeighbourMethod(.knn(5), features: features)
        case .proto: return NearestNeighbourMethod(.prototype, features: features)
        case .mlp:
            var m = MLPMethod(features: features, partners: partners.map { b in var p = features; p.backbones = b; return p })
            m.viewRows = viewRows
            m.colourCopies = colourCopies
            m.copyViews = copyViews
            m.head.hidden = hidden
            m.head.steps = steps
            return m
        }
    }
}

extension ProbeSpec: KeyedSpec {
    static func bases(backbone: String) -> [(keyword: String, value: ProbeSpec)] {
        Kind.allCases.map { ($0.rawValue, ProbeSpec($0, features: FeatureSpec(backbones: [backbone]))) }
    }

    /// The feature keys of every probe, then the MLP's own.
    var keys: [SpecKey<ProbeSpec>] {
        let featureKeys: [SpecKey<ProbeSpec>] = [
            SpecKey(name: "b", allowed: "backbones joined by '+': lite0, lite1, lite2, random-lite0…, or a trained backbone's name",
                    text: { [$0.features.backbones.map(SpecText.backbone).joined(separator: "+")] },
                    set: { $0.features.backbones = try Self.backbones($1) }),
            SpecKey(name: "l", allowed: "levels joined by '+': stem, stage1…stage7, head",
                    text: { [$0.features.levels.map(\.description).joined(separator: "+")] },
                    set: { s, t in
                        let levels = try t.split(separator: "+", omittingEmptySubsequences: false).map { part -> FeatureLevel in
                            guard let l = FeatureLevel(String(part)), String(part) != "last" else { throw SpecProblem("unknown level '\(part)'") }
                            return l
                        }
                        guard Set(levels).count == levels.count else { throw SpecProblem("a level given twice") }
                        s.features.levels = levels
                    }),
            SpecKey(name: "v", allowed: "dihedral views averaged, 1…8",
                    text: { [String($0.features.views)] },
                    set: { $0.features.views = try SpecText.integer($1, 1...8) }),
            SpecKey(name: "c", allowed: "central-crop fractions joined by '+', each in (0, 1]",
                    text: { [$0.features.crops.map(SpecText.number).joined(separator: "+")] },
                    set: { s, t in
                        s.features.crops = try t.split(separator: "+", omittingEmptySubsequences: false)
                            .map { try SpecText.real(String($0), above: 0, through: 1) }
                    }),
        ]
        guard kind == .mlp else { return featureKeys }
        return featureKeys + [
            SpecKey(name: "rows", allowed: "0 or 1", text: { [$0.viewRows ? "1" : "0"] },
                    set: { $0.viewRows = try SpecText.flag($1) }),
            SpecKey(name: "h", allowed: "hidden units, 1…65536", text: { [String($0.hidden)] },
                    set: { $0.hidden = try SpecText.integer($1, 1...65536) }),
            SpecKey(name: "steps", allowed: "training steps, 1…1000000", text: { [String($0.steps)] },
                    set: { $0.steps = try SpecText.integer($1, 1...1_000_000) }),
            SpecKey(name: "colour", allowed: "colour-shifted copies per image, 0…16", text: { [String($0.colourCopies)] },
                    set: { $0.colourCopies = try SpecText.integer($1, 0...16) }),
            SpecKey(name: "cv", allowed: "dihedral views of each colour copy, 1…8", text: { [$0.copyViews.map(String.init) ?? "-"] },
                    set: { $0.copyViews = try SpecText.integer($1, 1...8) }),
            SpecKey(name: "with", allowed: "the backbones of a further head (joined by '+'); repeatable", repeatable: true,
                    text: { $0.partners.map { $0.map(SpecText.backbone).joined(separator: "+") } },
                    set: { $0.partners.append(try Self.backbones($1)) }),
        ]
    }

    static func backbones(_ text: String) throws -> [String] {
        let list = try text.split(separator: "+", omittingEmptySubsequences: false).map { try SpecText.readBackbone(String($0)) }
        guard Set(list).count == list.count else { throw SpecProblem("a backbone given twice") }
        return list
    }
}
