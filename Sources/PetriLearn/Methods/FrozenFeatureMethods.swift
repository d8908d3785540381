import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriNN

/// Linear probe: L2-normalised frozen features + multinomial logistic regression, C by inner CV.
public struct LinearProbeMethod: FewShotMethod {
    public var features: FeatureSpec
    public var probe = LinearProbe()

    public init(features: FeatureSpec = FeatureSpec()) { self.features = features }
    public var name: String { "lp[\(features)" + (probe.cGrid.count == 1 ? String(format: ",C%g", probe.cGrid[0]) : "") + "]" }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let x = try features.matrix(context.bank, items: train + test)
        let model = probe.fit(x.rows(train), labels: train.map { context.labels[$0] }, classes: context.classes,
                              seed: context.seed)
        return model.probabilities(x.rows(test))
    }
}

/// Small MLP head on frozen features (see `MLPHead`).
public struct MLPMethod: FewShotMethod {
    public var features: FeatureSpec
    public var head = MLPHead()

    /// Train on every dihedral view of each image as its own row (feature-level augmentation) and average
    /// the test probabilities over views, instead of training and testing on view-averaged features.
    public var viewRows = false

    /// Also train on this many colour-shifted copies of each training image (`ColourShift`), rows with the
    /// same label: a head that leans less on colour, for another lab's stain and scanner. Each copy's frozen
    /// features are computed (and cached) like the image's own, so each copy costs one more feature pass
    /// over the training images. Prediction is unchanged.
    public var colourCopies = 0
    /// Dihedral views averaged for each copy's features (nil: as many as `features.views`). Copy k with one
    /// view uses orientation k − 1, so copies vary in orientation too, at an eighth of the feature cost.
    public var copyViews: Int?
    private let copyBanks = PreprocessedBanks()

    /// Other feature sets, each with its own head of the same recipe; the heads' probabilities are averaged
    /// with the main one's. Heads on ImageNet and on CellNet features make different errors, so their average
    /// beats either alone and one head on the features concatenated (docs/results.md).
    public var partners: [FeatureSpec] = []

    public init(features: FeatureSpec = FeatureSpec(), partners: [FeatureSpec] = []) {
        self.features = features
        self.partners = partners
    }
    /// Full-batch fits on a few hundred rows: matrix products too small for two cores, so inner-fold fits
    /// run side by side on their features, computed once beforehand.
    public var fitsRunSideBySide: Bool { !viewRows && colourCopies == 0 }
    public func prepare(items: [Int], context: MethodContext) throws {
        for spec in [features] + partners { _ = try spec.matrix(context.bank, items: items) }
    }
    public var name: String {
        "mlp[\(features)" + partners.map { " | \($0)" }.joined() + (viewRows ? ",rows" : "")
            + (head.hidden != 256 ? ",h\(head.hidden)" : "")
            + (head.steps != 300 ? ",s\(head.steps)" : "") + (colourCopies > 0 ? ",colour\(colourCopies)" : "")
            + (colourCopies > 0 && copyViews != nil ? "x\(copyViews!)v" : "") + "]"
    }

    /// One vote per feature source (backbone set): heads on the same backbones at two image scales are one
    /// model seen twice, not two.
    public var votes: Int { Set(([features] + partners).map(\.backbones)).count }

    /// The method for one of its feature sets alone (0: `features`, then each partner).
    public func member(_ i: Int) -> MLPMethod {
        var m = self
        m.features = i == 0 ? features : partners[i - 1]
        m.partners = []
        return m
    }

    /// Features of colour-shifted copy `k` of the `train` images (rows of `train` only).
    func copyRows(_ k: Int, train: [Int], context: MethodContext, view: Int? = nil) throws -> Tensor {
        var dataset = context.dataset
        dataset.preprocessing = TransformPipeline(dataset.preprocessing.steps + [ColourShift(copy: k)])
        let bank = copyBanks.bank(dataset: dataset, like: context.bank)
        if view == nil, copyViews == 1 {
            var single = features
            single.views = 1
            return try single.matrix(bank, view: (k - 1) % 8, items: train).rows(train)
        }
        if view == nil, let copyViews, copyViews != features.views {
            var fewer = features
            fewer.views = copyViews
            return try fewer.matrix(bank, items: train).rows(train)
        }
        if let view {
            var single = features
            single.views = 1
            return try single.matrix(bank, view: view, items: train).rows(train)
        }
        return try features.matrix(bank, items: train).rows(train)
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        var sum: Tensor?
        for i in 0...partners.count {
            let m = member(i)
            let x = try m.features.matrix(context.bank, items: train + test)
            let p = try m.fitHead(train: train, context: context, averaged: x).probabilities(x.rows(test))
            if sum == nil { sum = p } else { sum!.add(p) }
        }
        return partners.isEmpty ? sum! : sum!.scaled(by: 1 / Float(partners.count + 1))
    }

    /// The head fitted on `train`: on view-averaged features, or with `viewRows` on each view's features as
    /// its own row. Either way it predicts from view-averaged features (averaging the per-view probabilities
    /// instead scores the same within noise), so a saved model needs nothing more.
    /// `averaged`: `features.matrix` with at least the rows of `train`, when the caller has it already.
    public func fitHead(train: [Int], context: MethodContext, averaged: Tensor? = nil) throws -> MLPHead.Fitted {
        precondition(partners.isEmpty, "fitHead fits one feature set: use member(i)")
        let labels = train.map { context.labels[$0] }
        var blocks: [Tensor]
        if viewRows, features.views > 1 {
            blocks = try (0..<features.views).map { v in
                var single = features
                single.views = 1
                return try single.matrix(context.bank, view: v, items: train).rows(train)
            }
            for k in stride(from: 1, through: colourCopies, by: 1) {
                blocks += try (0..<features.views).map { try copyRows(k, train: train, context: context, view: $0) }
            }
        } else {
            blocks = [try (averaged ?? features.matrix(context.bank, items: train)).rows(train)]
            for k in stride(from: 1, through: colourCopies, by: 1) { blocks.append(try copyRows(k, train: train, context: context)) }
        }
        return head.fit(blocks.count == 1 ? blocks[0] : Tensor.concatenate(rows: blocks),
                        labels: Array((0..<blocks.count).map { _ in labels }.joined()), classes: context.classes, seed: context.seed)
    }
}

/// Cosine-similarity classifiers on L2-normalised frozen features: k nearest neighbours (distance-weighted
/// votes) or nearest class prototype (mean feature per class), with softmax-like scores.
public struct NearestNeighbourMethod: FewShotMethod {
    public enum Kind: Sendable { case knn(Int), prototype }
    public var kind: Kind
    public var features: FeatureSpec
    /// Sharpness of the similarity → probability map.
    public var temperature: Float = 0.05

    public init(_ kind: Kind, features: FeatureSpec = FeatureSpec()) {
        self.kind = kind
        self.features = features
    }

    public var name: String {
        switch kind {
        case let .knn(k): "knn\(k)[\(features)]"
        case .prototype: "proto[\(features)]"
        }
    }

    public func predict(train: [Int], test: [Int], context: MethodContext) throws -> Tensor {
        let x = l2NormalizedRows(try features.matrix(context.bank, items: train + test))
        let d = x.shape[1], k = context.classes
        let testX = x.rows(test)
        var out = Tensor(zeros: [test.count, k])
        switch kind {
        case .prototype:
            var protos = Tensor(zeros: [k, d])
            protos.withUnsafeMutableBufferPointer { p in
                for i in train { for j in 0..<d { p[context.labels[i] * d + j] += x[flat: i * d + j] } }
            }
            protos = l2NormalizedRows(protos)
            var sims = Tensor(zeros: [test.count, k])
            sims.withUnsafeMutableBufferPointer { s in
                sgemm(transposeA: false, transposeB: true, m: test.count, n: k, k: d, a: testX.storage.pointer, lda: d,
                      b: protos.storage.pointer, ldb: d, c: s.baseAddress!, ldc: k)
            }
            let present = Set(train.map { context.labels[$0] })
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<test.count {
                    for c in 0..<k { o[i * k + c] = present.contains(c) ? sims[flat: i * k + c] / temperature : -1e9 }
                }
                softmaxRows(o.baseAddress!, rows: test.count, columns: k)
            }
        case let .knn(neighbours):
            let trainX = x.rows(train)
            var sims = Tensor(zeros: [test.count, train.count])
            sims.withUnsafeMutableBufferPointer { s in
                sgemm(transposeA: false, transposeB: true, m: test.count, n: train.count, k: d, a: testX.storage.pointer,
                      lda: d, b: trainX.storage.pointer, ldb: d, c: s.baseAddress!, ldc: train.count)
            }
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<test.count {
                    let row = (0..<train.count).map { sims[flat: i * train.count + $0] }
                    let nearest = row.indices.sorted { row[$0] > row[$1] }.prefix(neighbours)
                    for j in nearest { o[i * k + context.labels[train[j]]] += Foundation.exp((row[j] - 1) / temperature) }
                    let total = (0..<k).reduce(Float(0)) { $0 + o[i * k + $1] }
                    for c in 0..<k { o[i * k + c] = total > 0 ? o[i * k + c] / total : 1 / Float(k) }
                }
            }
        }
        return out
    }
}
