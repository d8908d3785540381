import Foundation
import PetriData
import PetriEval
import PetriLearn
import PetriNN

/// Likely label errors and outliers of a whole dataset: every image predicted by an MLP on frozen ImageNet
/// features (Lite0+1+2, stage 6 + head, 8 dihedral views) trained on the other folds of a stratified k-fold,
/// flagged when confident in another class (confident learning); outliers far from their nearest neighbours.
public struct LabelCheck {
    public var issues: [LabelIssues.Issue]
    public var outliers: [Int]
    /// Each image's outlier score (mean distance to its 5 nearest images).
    public var outlierScores: [Double]
    /// Out-of-fold probabilities, `[image][class]`.
    public var probabilities: [[Double]]
    /// How the findings were made, in a sentence.
    public var recipe: String

    public static func run(_ ds: Dataset, context: MethodContext, crop: Double = 1, folds: Int, outlierCutoff: Double = 3.5) throws -> LabelCheck {
        let spec = FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8, crops: [crop])
        let all = Array(ds.items.indices)
        let p = try Purification.outOfFoldProbabilities(MLPMethod(features: spec), items: all, folds: folds, context: context)
        let k = ds.classNames.count
        let rows = all.map { i in (0..<k).map { Double(p[flat: i * k + $0]) } }
        let scores = Purification.outlierScores(try spec.matrix(context.bank), items: all)
        return LabelCheck(issues: LabelIssues.find(labels: ds.items.map(\.label), probabilities: rows, classes: k),
                          outliers: Purification.outliers(scores, cutoff: outlierCutoff), outlierScores: scores, probabilities: rows,
                          recipe: "Every image predicted by an MLP on frozen features (\(spec)) trained on the other \(folds) folds; flagged when it is confident in another class (confident learning). Outliers: far from their 5 nearest images in feature space.")
    }
}
