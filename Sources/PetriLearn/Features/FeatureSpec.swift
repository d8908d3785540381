import Foundation
import PetriEngine
import PetriNN

/// Where frozen features come from: backbones × levels, optionally averaged over the 8 dihedral views.
public struct FeatureSpec: Sendable, Hashable, CustomStringConvertible {
    public var backbones: [String]
    public var levels: [FeatureLevel]
    public var views: Int
    /// Central crops (fraction of the shorter side) each giving a feature block; `[1]` = the whole image.
    /// Several scales let the probe see both a centred object (a blood cell) and its context.
    public var crops: [Double]

    public init(backbones: [String] = ["efficientnet-lite0"], levels: [FeatureLevel] = [.head], views: Int = 1,
                crops: [Double] = [1]) {
        self.backbones = backbones
        self.levels = levels
        self.views = views
        self.crops = crops
    }

    public var description: String {
        backbones.map { $0.replacingOccurrences(of: "efficientnet-", with: "") }.joined(separator: "+") + ","
            + levels.map(\.description).joined(separator: "+") + (views > 1 ? ",tta\(views)" : "")
            + (crops == [1] ? "" : ",crop" + crops.map { "\($0)" }.joined(separator: "+"))
    }

    /// `[items, D]`: the blocks concatenated (each L2-normalised when there are several). Only the rows of
    /// `items` are computed (nil: all); the others are NaN.
    public func matrix(_ bank: FeatureBank, items: [Int]? = nil) throws -> Tensor {
        // All levels of a backbone come from one pass, if planned: a spec not planned up front (auto's
        // candidates at the chosen crop) would otherwise run each backbone once per level.
        bank.plan([self])
        var blocks: [Tensor] = []
        for c in crops { for b in backbones { for l in levels {
            blocks.append(try bank.features(backbone: b, level: l, views: views, crop: c, items: items))
        } } }
        return concatenateFeatures(blocks)
    }

    /// `[items, D]` for one dihedral view only (`views` ignored).
    public func matrix(_ bank: FeatureBank, view: Int, items: [Int]? = nil) throws -> Tensor {
        bank.plan([self])
        var blocks: [Tensor] = []
        for c in crops { for b in backbones { for l in levels {
            blocks.append(try bank.features(backbone: b, level: l, view: view, crop: c, items: items))
        } } }
        return concatenateFeatures(blocks)
    }
}
