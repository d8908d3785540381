import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriNN
import Testing
@testable import PetriLearn

/// End-to-end checks of the study machinery on the bundled sample (needs the weights `make setup` installs).
@Suite(.serialized) struct StudyTests {
    static func sample() throws -> Dataset {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Samples/bccd-wbc-mini")
        return try Dataset.imageFolder(root)
    }

    @Test func learningCurveRecordsAreConsistentAndBeatChance() throws {
        let ds = try Self.sample()
        let bank = FeatureBank(dataset: ds)
        bank.useDiskCache = false
        var records: [CurveRecord] = []
        try LearningCurve(sizes: [5, nil], seeds: [0, 1]).run(
            dataset: ds, bank: bank,
            methods: [try MethodEntry(MethodSpec(parsing: "lp")), try MethodEntry(MethodSpec(parsing: "proto")),
                      MethodEntry(id: "auto", method: AutoMethod(candidates: [LinearProbeMethod(), NearestNeighbourMethod(.prototype)]))]
        ) { records.append($0) }
        #expect(records.count == 2 * 2 * 3)
        for r in records {
            #expect(r.trainCount == (r.size == 5 ? 20 : 84 - r.testCount))
            #expect(r.testCount == 25)                     // round(0.3 × (24, 20, 16, 24)) = 7 + 6 + 5 + 7
            #expect(r.confusion.flatMap { $0 }.reduce(0, +) == r.testCount)
            let recalls = r.perClassRecall.compactMap { $0 }
            #expect(abs(r.balancedAccuracy - recalls.reduce(0, +) / Double(recalls.count)) < 1e-12)
            #expect(r.probabilities.allSatisfy { abs($0.reduce(0, +) - 1) < 1e-3 })
        }
        // Frozen ImageNet features on white cells: far above chance (0.25) with every training image.
        let lpAll = records.filter { $0.method.hasPrefix("lp") && $0.size == nil }.map(\.balancedAccuracy)
        #expect(lpAll.reduce(0, +) / Double(lpAll.count) > 0.6)
        #expect(records.filter { $0.method == "auto" }.allSatisfy { $0.chosen != nil })
    }

    @Test func featureRowsAreComputedOnlyWhereAsked() throws {
        let ds = try Self.sample()
        let full = FeatureBank(dataset: ds)
        full.useDiskCache = false
        let spec = FeatureSpec(views: 2, crops: [0.7])
        let all = try spec.matrix(full)
        let lazy = FeatureBank(dataset: ds)
        lazy.useDiskCache = false
        var passes: [Int] = []
        lazy.progress = { _, _, total in passes.append(total) }
        let first = [3, 0, 40], second = [40, 7, 0, 60]
        let x1 = try spec.matrix(lazy, items: first)
        let x2 = try spec.matrix(lazy, items: second)
        for (x, items) in [(x1, first), (x2, second)] {
            #expect(x.rows(items).maxAbsDifference(all.rows(items)) < 1e-6)
        }
        // Rows never asked for are NaN (a stray read shows), and only new rows went through the network.
        #expect(x2.rows([1, 2]).withUnsafeBufferPointer { $0.allSatisfy(\.isNaN) })
        #expect(passes.filter { $0 > 0 }.max() == 3)
        #expect(Set(passes).isSubset(of: [3, 2]))
    }

    /// `viewRows` trains on each view's features as a row and predicts from the view-averaged features; `train`
    /// saves exactly that head (`fitHead`), so saved models predict what `curve` measured.
    @Test func mlpOnViewRowsTrainsOnEveryViewAndPredictsFromTheMean() throws {
        let ds = try Self.sample()
        let bank = FeatureBank(dataset: ds)
        bank.useDiskCache = false
        var method = MLPMethod(features: FeatureSpec(views: 2))
        method.head.steps = 20
        method.viewRows = true
        let context = MethodContext(dataset: ds, bank: bank, seed: 3)
        let train = [0, 1, 30, 31, 50, 51, 70, 71], test = [5, 40, 60]
        let fitted = try method.fitHead(train: train, context: context)
        var single = method.features
        single.views = 1
        let rows = try (0..<2).map { try single.matrix(bank, view: $0, items: train).rows(train) }
        let labels = train.map { context.labels[$0] }
        let manual = method.head.fit(Tensor.concatenate(rows: rows), labels: labels + labels, classes: context.classes, seed: 3)
        #expect(fitted.w1.maxAbsDifference(manual.w1) == 0)
        let averaged = try method.features.matrix(bank, items: train + test)
        let p = try method.predict(train: train, test: test, context: context)
        #expect(p.maxAbsDifference(manual.probabilities(averaged.rows(test))) < 1e-6)
        method.viewRows = false
        #expect(try method.fitHead(train: train, context: context).w1.maxAbsDifference(manual.w1) > 1e-4)
    }

    /// Each candidate's out-of-fold probabilities are its inner-fold models' predictions of their held-out
    /// images: scored fold by fold they give back the inner-CV score `auto` chose by; a blend's are the mean.
    @Test func outOfFoldProbabilitiesReproduceTheInnerScores() throws {
        let ds = try Self.sample()
        let bank = FeatureBank(dataset: ds)
        bank.useDiskCache = false
        let context = MethodContext(dataset: ds, bank: bank, seed: 5)
        let candidates: [any FewShotMethod] = [LinearProbeMethod(), NearestNeighbourMethod(.prototype)]
        let auto = AutoMethod(candidates: candidates)
        let train = Array(ds.items.indices)
        let outcome = try auto.select(train: train, context: context)
        let folds = try #require(auto.innerFolds(train: train, context: context, repeat: 0))
        for c in candidates {
            let oof = try #require(outcome.outOfFold[c.name])
            #expect(oof.shape == [train.count, 4])
            let perFold = folds.map { fold in
                auto.foldScore(oof.rows(fold), fold: fold, train: train, context: context)
            }
            #expect(abs(perFold.reduce(0, +) / Double(folds.count) - outcome.scores[c.name]!) < 1e-12)
        }
        let blend = EnsembleMethod(candidates)
        let mean = try #require(outcome.outOfFoldProbabilities(blend))
        let expected = (outcome.outOfFold[candidates[0].name]! + outcome.outOfFold[candidates[1].name]!).scaled(by: 0.5)
        #expect(mean.maxAbsDifference(expected) < 1e-6)
        // Below 10 images per class there is no inner cross-validation, hence nothing to calibrate on.
        let few = [0, 1, 2, 24, 25, 26, 44, 45, 46, 60, 61, 62]
        #expect(try auto.select(train: few, context: context).outOfFold.isEmpty)
    }

    /// The saved calibration: temperature, accept threshold and conformal threshold fitted on out-of-fold
    /// predictions, applied to new probabilities, and kept through the model file.
    @Test func savedTriageRulesFitAndApply() throws {
        // 20 images at confidence 0.9 of which 16 right, 20 at 0.6 of which 10 right (two classes).
        var labels: [Int] = [], probabilities: [[Double]] = []
        for i in 0..<20 { labels.append(i < 16 ? 0 : 1); probabilities.append([0.9, 0.1]) }
        for i in 0..<20 { labels.append(i < 10 ? 1 : 0); probabilities.append([0.4, 0.6]) }
        let t = SavedModel.Triage(labels: labels, probabilities: probabilities, classes: 2, targetAccuracy: 0.8, alpha: 0.2)
        #expect(t.calibrationImages == 40)
        let sure = Calibration.tempered([[0.9, 0.1]], temperature: t.temperature)[0][0]
        #expect(abs(try #require(t.acceptThreshold) - sure) < 1e-12)   // only the 0.9 group is ≥ 80% right
        #expect(t.acceptedFraction == 0.5)
        #expect(t.apply([0.9, 0.1]).accepted && !t.apply([0.4, 0.6]).accepted)
        #expect(t.apply([0.4, 0.6]).set.count == 2)                    // unsure: both classes in the set
        let back = try JSONDecoder().decode(SavedModel.Triage.self, from: JSONEncoder().encode(t))
        #expect(back.acceptThreshold == t.acceptThreshold && back.conformalThreshold == t.conformalThreshold)
    }

    /// Purification's out-of-fold predictions: every asked item predicted once, by a model of the other folds;
    /// rows not asked for stay zero. Outlier scores single out an image unlike the rest.
    @Test func purificationPredictsEveryImageOutOfFoldAndFindsTheOddOne() throws {
        let ds = try Self.sample()
        let bank = FeatureBank(dataset: ds)
        bank.useDiskCache = false
        let context = MethodContext(dataset: ds, bank: bank, seed: 2)
        let items = Array(0..<ds.items.count).filter { $0 % 7 != 0 }
        let p = try Purification.outOfFoldProbabilities(NearestNeighbourMethod(.prototype), items: items, folds: 4, context: context)
        let k = ds.classNames.count
        for i in 0..<ds.items.count {
            let sum = (0..<k).reduce(Float(0)) { $0 + p[flat: i * k + $1] }
            #expect(abs(sum - (items.contains(i) ? 1 : 0)) < 1e-4)
        }
        // Frozen features separate white-cell types well above chance out of fold.
        let predicted = items.map { i in (0..<k).max { p[flat: i * k + $0] < p[flat: i * k + $1] }! }
        #expect(Metrics.balancedAccuracy(labels: items.map { ds.items[$0].label }, predictions: predicted, classes: k) > 0.5)
        // Nine points in a tight bundle and one orthogonal to it.
        var x = Tensor(zeros: [10, 3])
        for i in 0..<9 { x[flat: i * 3] = 1; x[flat: i * 3 + 1] = Float(i) * 0.01 }
        x[flat: 9 * 3 + 2] = 1
        let scores = Purification.outlierScores(x, items: Array(0..<10), neighbours: 3)
        #expect(Purification.outliers(scores).first == 9)
        #expect(abs(scores[9] - 1) < 1e-6 && scores.dropLast().allSatisfy { $0 < 0.01 })
        // Median 1, median absolute deviation 0.05 (robust sd 0.074): only 5 is beyond 3.5 of them.
        #expect(Purification.outliers([1, 1.1, 0.9, 1, 1.05, 0.95, 5]) == [6])
    }

    @Test func autoIsReproducibleWithFitsSideBySide() throws {
        // Two from-scratch candidates: auto runs them side by side, and each one's 3 inner-fold fits side by
        // side again (nested compute lanes). The same seed must give the same numbers, bit for bit.
        let ds = try Self.sample()
        let tiny = SmallCNNConfig(name: "test-tiny", channels: [8, 16], kernelSize: 3, inputSize: 32)
        func candidate(_ steps: Int) -> ScratchMethod {
            var m = ScratchMethod(tiny)
            m.recipe.minimumSteps = steps
            m.recipe.epochs = 1
            m.testTimeAugmentation = false
            return m
        }
        let auto = AutoMethod(candidates: [candidate(12), candidate(16)])
        let byClass = Dictionary(grouping: ds.items.indices, by: { ds.items[$0].label })
        let train = (0..<4).flatMap { Array(byClass[$0]!.prefix(12)) }
        let test = (0..<4).flatMap { Array(byClass[$0]!.dropFirst(12).prefix(3)) }
        func once() throws -> (AutoMethod.Outcome, Tensor) {
            let bank = FeatureBank(dataset: ds)
            bank.useDiskCache = false
            return try auto.run(train: train, test: test, context: MethodContext(dataset: ds, bank: bank, seed: 7))
        }
        let (a, pa) = try once(), (b, pb) = try once()
        #expect(pa.shape == [test.count, 4])
        #expect(pa.maxAbsDifference(pb) == 0)
        #expect(a.chosenLabel == b.chosenLabel)
        for name in [candidate(12).name, candidate(16).name] {
            #expect(a.scores[name] == b.scores[name])
            #expect(a.foldEnsembles[name]!.maxAbsDifference(b.foldEnsembles[name]!) == 0)
        }
    }

    @Test func savedModelRoundTripsAndPredicts() throws {
        let ds = try Self.sample()
        let bank = FeatureBank(dataset: ds)
        bank.useDiskCache = false
        let spec = FeatureSpec()
        let x = try spec.matrix(bank)
        let fitted = LinearProbe().fit(x, labels: ds.items.map(\.label), classes: 4, seed: 0)
        let model = SavedModel(classNames: ds.classNames, backbones: spec.backbones, levels: ["head"], views: 1, crops: [1],
                               preprocessing: "none", head: fitted.regression, regularisation: fitted.c, method: "lp",
                               trainedOn: ds.root.path, dataHash: "x", trainingImages: ds.items.count,
                               innerCVBalancedAccuracy: nil, created: "now", petriVersion: "test")
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-model-\(UUID()).petri")
        defer { try? FileManager.default.removeItem(at: url) }
        try model.write(to: url)
        let back = try SavedModel.read(url)
        let p = try back.probabilities(ds)
        let expected = fitted.probabilities(x)
        #expect(p.maxAbsDifference(expected) < 1e-5)
        // A newer format version is refused with a clear message.
        var text = try String(contentsOf: url, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"version\":\(SavedModel.currentVersion)", with: "\"version\":99")
        try text.write(to: url, atomically: true, encoding: .utf8)
        #expect { try SavedModel.read(url) } throws: { "\($0)".contains("newer") }
    }

    /// Model file version 2: an MLP head and from-scratch networks (an ensemble) read back to the same
    /// predictions, and `predict` needs nothing but the file.
    @Test(.enabled(if: slowTests, "set PETRI_SLOW_TESTS=1")) func savedMLPAndNetworkModelsRoundTrip() throws {
        let ds = try Self.sample()
        let bank = FeatureBank(dataset: ds)
        bank.useDiskCache = false
        let context = MethodContext(dataset: ds, bank: bank, seed: 0)
        let all = Array(ds.items.indices)
        var scratch = ScratchMethod(.cnnMini)
        scratch.recipe.minimumSteps = 12
        scratch.recipe.epochs = 1
        scratch.testTimeAugmentation = false
        let nets = try [0, 1].map { s -> FittedNetwork in
            var c = context
            c.seed = UInt64(s)
            return try #require(try scratch.fit(train: all, context: c) as? FittedNetwork)
        }
        let mlpFitted = MLPHead().fit(try FeatureSpec().matrix(bank), labels: context.labels, classes: 4, seed: 0)
        func roundTrip(_ model: SavedModel) throws -> SavedModel {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-model-\(UUID()).petri")
            defer { try? FileManager.default.removeItem(at: url) }
            try model.write(to: url)
            return try SavedModel.read(url)
        }
        func saved(mlp: SavedModel.MLP?, networks: [SavedModel.Network]?) -> SavedModel {
            SavedModel(classNames: ds.classNames, backbones: mlp == nil ? [] : ["efficientnet-lite0"], levels: mlp == nil ? [] : ["head"],
                       views: 1, crops: [1], preprocessing: "none", head: nil, regularisation: nil, mlp: mlp, networks: networks,
                       method: "test", trainedOn: ds.root.path, dataHash: "x", trainingImages: ds.items.count,
                       innerCVBalancedAccuracy: nil, created: "now", petriVersion: "test")
        }
        let netModel = try roundTrip(saved(mlp: nil, networks: nets.map(SavedModel.Network.init)))
        #expect(netModel.kind == "networks")
        var expected = Tensor(zeros: [all.count, 4])
        for n in nets { expected.add(try n.probabilities(all, context: context)) }
        #expect(try netModel.probabilities(ds).maxAbsDifference(expected.scaled(by: 0.5)) < 1e-5)
        let mlpModel = try roundTrip(saved(mlp: SavedModel.MLP(mlpFitted), networks: nil))
        #expect(mlpModel.kind == "mlp")
        let mlpProbabilities = mlpFitted.probabilities(try FeatureSpec().matrix(bank))
        #expect(try mlpModel.probabilities(ds).maxAbsDifference(mlpProbabilities) < 1e-5)
        // auto's blend: the MLP and the networks in one file, their probabilities averaged.
        let blend = try roundTrip(saved(mlp: SavedModel.MLP(mlpFitted), networks: nets.map(SavedModel.Network.init)))
        #expect(blend.kind == "mlp+networks")
        var mean = expected.scaled(by: 0.5)
        mean.add(mlpProbabilities)
        #expect(try blend.probabilities(ds).maxAbsDifference(mean.scaled(by: 0.5)) < 1e-5)
        // A network trained on a central crop keeps it.
        var cropped = scratch
        cropped.crop = 0.6
        let croppedNet = try #require(try cropped.fit(train: all, context: context) as? FittedNetwork)
        let croppedModel = try roundTrip(saved(mlp: nil, networks: [SavedModel.Network(croppedNet)]))
        #expect(try croppedModel.probabilities(ds).maxAbsDifference(croppedNet.probabilities(all, context: context)) < 1e-5)
        #expect(try croppedNet.probabilities(all, context: context).maxAbsDifference(try nets[0].probabilities(all, context: context)) > 1e-3)
        // Adapting to the images (no labels): the saved blend adapts each head and each network as the parts
        // would by hand (AdaBN for the networks, information maximisation + pseudo-labels for the head).
        let x = try FeatureSpec().matrix(bank)
        let adaptedHead = MLPHead.Adaptation().adapt(mlpFitted, to: x).probabilities(x)
        #expect(try mlpModel.probabilities(ds, headAdaptation: MLPHead.Adaptation()).maxAbsDifference(adaptedHead) < 1e-5)
        #expect(adaptedHead.maxAbsDifference(mlpProbabilities) > 1e-3)
        let blendAdapted = try blend.probabilities(ds, headAdaptation: MLPHead.Adaptation(), adaptNetworkNormalisation: true)
        var byHand = Tensor(zeros: [all.count, 4])
        for n in nets {
            try n.adaptNormalisation(to: all, context: context)   // in place: `nets` are not used after this
            byHand.add(try n.probabilities(all, context: context))
        }
        #expect(byHand.scaled(by: 0.5).maxAbsDifference(expected.scaled(by: 0.5)) > 1e-3)
        var adaptedMean = byHand.scaled(by: 0.5)
        adaptedMean.add(adaptedHead)
        #expect(blendAdapted.maxAbsDifference(adaptedMean.scaled(by: 0.5)) < 1e-4)
    }
}

/// The 8 dihedral views of frozen features come from one decode and resize per image: the views are
/// orientations of the resized input, which must equal resizing each orientation of the original.
@Suite struct DihedralViewFeatureTests {
    @Test func viewsOfTheResizedImageEqualResizedViews() {
        var rng = SeededGenerator(seed: 5)
        var image = FloatImage(width: 37, height: 23)   // non-square: a quarter turn swaps the axes
        for y in 0..<23 { for x in 0..<37 { for c in 0..<3 { image[x, y, c] = Float.random(in: 0...1, using: &rng) } } }
        let config = DataConfig(inputSize: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
        let resized = config.normalizedPixels(image)
        for v in 0..<8 {
            let expected = config.normalizedPixels(DihedralView(v)(image))
            var got = [Float](repeating: 0, count: expected.count)
            resized.withUnsafeBufferPointer { src in
                got.withUnsafeMutableBufferPointer { dihedralPixels(src, side: 16, view: v, into: $0.baseAddress!) }
            }
            let worst = zip(got, expected).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-4, "view \(v): max difference \(worst)")
        }
    }

    /// Several views and levels in one pass equal each view computed on its own (the single-view path).
    @Test func multiViewExtractionMatchesSingleViews() throws {
        let ds = try StudyTests.sample()
        let items = Array(ds.items.prefix(6))
        let e = try FeatureExtractor(backbone: "efficientnet-lite0", level: .head)
        e.cacheDirectory = nil
        e.extraLevels = [.stage(6)]
        e.preprocessing = TransformPipeline([CenterCrop(fraction: 0.7)])
        let all = try e.extractViews(ds, items: items, views: [0, 3, 5])
        for (vi, v) in [0, 3, 5].enumerated() {
            let one = try e.extractViews(ds, items: items, views: [v])
            for level in [FeatureLevel.head, .stage(6)] {
                #expect(all.features[vi][level]!.maxAbsDifference(one.features[0][level]!) < 1e-4)
            }
        }
        // And view 3 really is another orientation (not a copy of view 0).
        #expect(all.features[1][.head]!.maxAbsDifference(all.features[0][.head]!) > 1e-3)
    }
}
