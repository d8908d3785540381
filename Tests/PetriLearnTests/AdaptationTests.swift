import Foundation
import PetriData
import PetriEngine
import PetriNN
import Testing
@testable import PetriLearn

/// Preprocessing set on a dataset, preprocessing as part of a method, and finding another lab's
/// magnification (needs the weights `make setup` installs).
@Suite(.serialized) struct AdaptationTests {
    /// `Dataset.preprocessing` reaches frozen features, a saved model records it and applies it to images
    /// given without it, and `--adapt` steps run before it.
    @Test func datasetPreprocessingReachesFeaturesAndSavedModels() throws {
        let plain = try StudyTests.sample()
        var grey = plain
        grey.preprocessing = TransformPipeline([Greyscale()])
        func features(_ ds: Dataset) throws -> Tensor {
            let bank = FeatureBank(dataset: ds)
            bank.useDiskCache = false
            return try FeatureSpec().matrix(bank)
        }
        let xPlain = try features(plain), xGrey = try features(grey)
        #expect(xPlain.maxAbsDifference(xGrey) > 0.05)
        // The same features as the extractor's own preprocessing gives.
        let e = try FeatureExtractor(backbone: "efficientnet-lite0", level: .head)
        e.cacheDirectory = nil
        e.preprocessing = TransformPipeline([Greyscale()])
        let direct = try e.extractLevels(plain, items: plain.items).features[.head]!
        #expect(direct.maxAbsDifference(xGrey) < 1e-5)

        let fitted = LinearProbe().fit(xGrey, labels: plain.items.map(\.label), classes: 4, seed: 0)
        let model = SavedModel(classNames: plain.classNames, backbones: ["efficientnet-lite0"], levels: ["head"], views: 1, crops: [1],
                               preprocessing: grey.preprocessing.spec, head: fitted.regression, regularisation: fitted.c,
                               method: "lp", trainedOn: "sample", dataHash: "x", trainingImages: plain.items.count,
                               innerCVBalancedAccuracy: nil, created: "now", petriVersion: "test")
        #expect(model.preprocessing == "grey")
        #expect(try model.probabilities(plain).maxAbsDifference(fitted.probabilities(xGrey)) < 1e-5)
        // Adaptation steps come first: a central crop, then the model's greyscale.
        var cropGrey = plain
        cropGrey.preprocessing = TransformPipeline([CenterCrop(fraction: 0.6), Greyscale()])
        let adapted = try model.probabilities(plain, adaptation: TransformPipeline([CenterCrop(fraction: 0.6)]))
        #expect(adapted.maxAbsDifference(fitted.probabilities(try features(cropGrey))) < 1e-5)
    }

    /// `inner@steps` predicts what `inner` predicts on the preprocessed dataset, with its own features.
    @Test func preprocessedMethodEqualsTheMethodOnPreprocessedImages() throws {
        let plain = try StudyTests.sample()
        var grey = plain
        grey.preprocessing = TransformPipeline([Greyscale()])
        let train = Array(stride(from: 0, to: plain.items.count, by: 2)), test = Array(stride(from: 1, to: plain.items.count, by: 2))
        let bank = FeatureBank(dataset: plain), greyBank = FeatureBank(dataset: grey)
        bank.useDiskCache = false
        greyBank.useDiskCache = false
        let method = PreprocessedMethod(LinearProbeMethod(), preprocessing: TransformPipeline([Greyscale()]))
        #expect(method.name == LinearProbeMethod().name + "@grey")
        let viaWrapper = try method.predict(train: train, test: test, context: MethodContext(dataset: plain, bank: bank, seed: 0))
        let direct = try LinearProbeMethod().predict(train: train, test: test, context: MethodContext(dataset: grey, bank: greyBank, seed: 0))
        #expect(viaWrapper.maxAbsDifference(direct) < 1e-5)
        // The caller's bank is left alone: its features are of the plain images.
        let plainPredictions = try LinearProbeMethod().predict(train: train, test: test, context: MethodContext(dataset: plain, bank: bank, seed: 0))
        #expect(plainPredictions.maxAbsDifference(direct) > 1e-3)
    }

    /// Images of the same cells at half the magnification (each shrunk into a mirrored surround) look most
    /// like the training images at a central crop near 0.5; the training images themselves as they are.
    /// (The other direction, shrinking, is searched too but found less surely: see `adaptationScales`.)
    @Test(.enabled(if: slowTests, "set PETRI_SLOW_TESTS=1")) func scaleDistancesFindAnotherMagnification() throws {
        let sample = try StudyTests.sample()
        let bank = FeatureBank(dataset: sample)
        bank.useDiskCache = false
        var model = SavedModel(classNames: sample.classNames, backbones: [], levels: [], views: 1, crops: [1], preprocessing: "none",
                               head: nil, regularisation: nil, method: "test", trainedOn: "sample", dataHash: "x",
                               trainingImages: sample.items.count, innerCVBalancedAccuracy: nil, created: "now", petriVersion: "test")
        model.scaleReference = SavedModel.FeatureStatistics(l2NormalizedRows(try SavedModel.scaleReferenceSpec.matrix(bank)))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petri-zoom-\(UUID())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let decoder = ImageDecoder()
        for item in sample.items {
            let image = FloatImage(try sample.image(of: item, decoder: decoder))
            let folder = dir.appendingPathComponent(sample.classNames[item.label])
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try ZoomOut(factor: 2)(image).rgb.writePNG(to: folder.appendingPathComponent(UUID().uuidString + ".png"))
        }
        let zoomedOut = try Dataset.imageFolder(dir)
        let far = try model.scaleDistances(zoomedOut)
        #expect([0.45, 0.5, 0.6].contains(far[0].scale), "distances: \(far)")
        let same = try model.scaleDistances(sample)
        #expect(same[0].scale == 1, "distances: \(same)")
        // Another stain (the same images with their colour shifted): matching their colour to the training
        // images' brings them closer than any scale as they are.
        let target = ReinhardNormalization.fit(try sample.items.map { FloatImage(try sample.image(of: $0, decoder: decoder)) })
        model.colourReference = SavedModel.FeatureStatistics(mean: target.targetMean, std: target.targetStd)
        let stained = dir.appendingPathComponent("stained")
        for item in sample.items {
            var image = FloatImage(try sample.image(of: item, decoder: decoder))
            for i in 0..<(image.width * image.height) {
                image.pixels[i * 3] *= 0.55
                image.pixels[i * 3 + 2] = min(1, image.pixels[i * 3 + 2] * 1.2 + 0.1)
            }
            let folder = stained.appendingPathComponent(sample.classNames[item.label])
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try image.rgb.writePNG(to: folder.appendingPathComponent(UUID().uuidString + ".png"))
        }
        let restained = try model.adaptationDistances(try Dataset.imageFolder(stained), scales: [1, 0.7])
        #expect(restained.count == 4 && restained[0].adaptation == .init(scale: 1, colour: true), "distances: \(restained)")
        #expect(!(try model.adaptationDistances(try Dataset.imageFolder(stained), scales: [1], colour: false)).contains { $0.adaptation.colour })
        // Without a reference (an older model file) it says what to do.
        model.scaleReference = nil
        #expect { try model.scaleDistances(sample) } throws: { "\($0)".contains("train it again") }
    }

    /// A colour-shifted copy is a fixed function of the image and the copy number, and a real change.
    @Test func colourShiftIsDeterministicPerImageAndCopy() throws {
        let sample = try StudyTests.sample()
        let decoder = ImageDecoder()
        let a = FloatImage(try sample.image(of: sample.items[0], decoder: decoder))
        let b = FloatImage(try sample.image(of: sample.items[1], decoder: decoder))
        #expect(ColourShift(copy: 1)(a) == ColourShift(copy: 1)(a))
        #expect(ColourShift(copy: 1)(a) != ColourShift(copy: 2)(a))
        func meanShift(_ x: FloatImage, _ y: FloatImage) -> Float {
            zip(x.pixels, y.pixels).map { abs($0 - $1) }.reduce(0, +) / Float(x.pixels.count)
        }
        #expect(meanShift(a, ColourShift(copy: 1)(a)) > 0.01)
        // Copies differ from image to image: the per-channel gains of copy 1 are not the same for a and b.
        func channelRatio(_ x: FloatImage, _ y: FloatImage, _ c: Int) -> Float {
            let n = x.width * x.height
            return (0..<n).map { y.pixels[$0 * 3 + c] }.reduce(0, +) / max(1e-6, (0..<n).map { x.pixels[$0 * 3 + c] }.reduce(0, +))
        }
        #expect(abs(channelRatio(a, ColourShift(copy: 1)(a), 0) - channelRatio(b, ColourShift(copy: 1)(b), 0)) > 1e-3)
        #expect(try TransformPipeline.parse("colourshift(copy=2)").spec == "colourshift(copy=2)")
    }

    /// An MLP with colour copies is the same head fitted on the training rows followed by each copy's rows.
    @Test(.enabled(if: slowTests, "set PETRI_SLOW_TESTS=1")) func mlpColourCopiesTrainOnTheCopiesRows() throws {
        let plain = try StudyTests.sample()
        let train = Array(stride(from: 0, to: plain.items.count, by: 4))
        let bank = FeatureBank(dataset: plain)
        bank.useDiskCache = false
        var method = MLPMethod()
        method.colourCopies = 2
        #expect(method.name.hasSuffix(",colour2]"))
        #expect(!method.fitsRunSideBySide)
        let context = MethodContext(dataset: plain, bank: bank, seed: 3)
        let fitted = try method.fitHead(train: train, context: context)
        var blocks = [try FeatureSpec().matrix(bank, items: train).rows(train)]
        for k in 1...2 {
            var shifted = plain
            shifted.preprocessing = TransformPipeline([ColourShift(copy: k)])
            let b = FeatureBank(dataset: shifted)
            b.useDiskCache = false
            blocks.append(try FeatureSpec().matrix(b, items: train).rows(train))
        }
        let labels = train.map { plain.items[$0].label }
        let expected = MLPHead().fit(Tensor.concatenate(rows: blocks), labels: labels + labels + labels, classes: 4, seed: 3)
        #expect(fitted.w1.maxAbsDifference(expected.w1) < 1e-6)
        #expect(fitted.w2.maxAbsDifference(expected.w2) < 1e-6)
        // One view per copy: copy k's rows are its orientation k − 1 alone (here copy 2: a quarter turn).
        var spec = FeatureSpec()
        spec.views = 2
        var oneView = MLPMethod(features: spec)
        oneView.colourCopies = 2
        oneView.copyViews = 1
        #expect(oneView.name.hasSuffix(",colour2x1v]"))
        let fittedOne = try oneView.fitHead(train: train, context: context)
        var rows = [try spec.matrix(bank, items: train).rows(train)]
        for k in 1...2 {
            var shifted = plain
            shifted.preprocessing = TransformPipeline([ColourShift(copy: k)])
            let b = FeatureBank(dataset: shifted)
            b.useDiskCache = false
            rows.append(try FeatureSpec().matrix(b, view: k - 1, items: train).rows(train))
        }
        let expectedOne = MLPHead().fit(Tensor.concatenate(rows: rows), labels: labels + labels + labels, classes: 4, seed: 3)
        #expect(fittedOne.w1.maxAbsDifference(expectedOne.w1) < 1e-6)
    }

    /// An MLP with a partner feature set predicts the mean of one head per feature set, and a saved model
    /// holding the partner head gives the same probabilities as the method fitted on every image.
    @Test(.enabled(if: slowTests, "set PETRI_SLOW_TESTS=1")) func mlpPartnersAverageOneHeadPerFeatureSet() throws {
        let plain = try StudyTests.sample()
        let train = Array(stride(from: 0, to: plain.items.count, by: 2)), test = Array(stride(from: 1, to: plain.items.count, by: 2))
        let bank = FeatureBank(dataset: plain)
        bank.useDiskCache = false
        let context = MethodContext(dataset: plain, bank: bank, seed: 5)
        let main = FeatureSpec(levels: [.head]), partner = FeatureSpec(levels: [.stage(6)])
        let method = MLPMethod(features: main, partners: [partner])
        #expect(method.name == "mlp[lite0,head | lite0,stage6]")
        #expect(featureSpecs(method) == [main, partner])
        let paired = try method.predict(train: train, test: test, context: context)
        let a = try MLPMethod(features: main).predict(train: train, test: test, context: context)
        let b = try MLPMethod(features: partner).predict(train: train, test: test, context: context)
        #expect(paired.maxAbsDifference((a + b).scaled(by: 0.5)) < 1e-6)
        #expect(a.maxAbsDifference(b) > 1e-3)

        let all = Array(plain.items.indices)
        let model = SavedModel(classNames: plain.classNames, backbones: main.backbones, levels: ["head"], views: 1, crops: [1],
                               preprocessing: "none", head: nil, regularisation: nil,
                               mlp: SavedModel.MLP(try method.member(0).fitHead(train: all, context: context)),
                               method: method.name, trainedOn: "sample", dataHash: "x", trainingImages: all.count,
                               innerCVBalancedAccuracy: nil, created: "now", petriVersion: "test")
        var withPartner = model
        withPartner.partnerHeads = [SavedModel.PartnerHead(features: partner, mlp: SavedModel.MLP(try method.member(1).fitHead(train: all, context: context)))]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-partner-\(UUID().uuidString).petri")
        defer { try? FileManager.default.removeItem(at: url) }
        try withPartner.write(to: url)
        let restored = try SavedModel.read(url)
        let direct = try method.predict(train: all, test: all, context: context)
        #expect(try restored.probabilities(plain).maxAbsDifference(direct) < 1e-5)
        #expect(try model.probabilities(plain).maxAbsDifference(direct) > 1e-3)
    }

    /// A model records the trained backbones it reads; a replaced or missing backbone file is refused with a
    /// message naming the model file and the backbone, not used for other features.
    @Test func savedModelRefusesAReplacedTrainedBackbone() throws {
        guard let dir = ModelRegistry.weightSearchPath.first(where: {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("efficientnet-lite0-57934424.pth").path)
        }) else {
            print("skipped: ImageNet Lite0 weights not installed (run make setup)")
            return
        }
        let plain = try StudyTests.sample()
        let name = "test-identity-\(UUID().uuidString.prefix(8))"
        let url = dir.appendingPathComponent(name + ".petri-backbone")
        defer { try? FileManager.default.removeItem(at: url) }
        let (lite0, _) = try ModelRegistry.make("efficientnet-lite0")
        try BackboneFile.write(lite0, base: "efficientnet-lite0", trainedOn: ["test"], recipe: "copy", to: url)
        let identity = try #require(try ModelRegistry.entry(name).identity)
        #expect(SavedModel.trainedBackboneIdentities(["efficientnet-lite0", name]) == [name: identity])
        var model = SavedModel(classNames: plain.classNames, backbones: [name], levels: ["head"], views: 1, crops: [1],
                               preprocessing: "none", head: nil, regularisation: nil, method: "none", trainedOn: "sample",
                               dataHash: "x", trainingImages: 0, innerCVBalancedAccuracy: nil, created: "now", petriVersion: "test")
        func message(_ m: SavedModel) -> String {
            do { _ = try m.probabilities(plain, file: "m.petri"); return "" } catch { return "\(error)" }
        }
        model.trainedBackbones = [name: identity]
        #expect(message(model).contains("holds no classifier"))
        model.trainedBackbones = [name: "2020-01-01T00:00:00Z other recipe"]
        let replaced = message(model)
        #expect(replaced.contains("m.petri") && replaced.contains("was trained with backbone '\(name)'"))
        model.trainedBackbones = ["no-such-backbone": identity]
        #expect(message(model).contains("needs backbone 'no-such-backbone'"))
    }
}

/// Head adaptation without labels (`MLPHead.Adaptation`) on synthetic features: three well-separated classes,
/// and "another lab" whose features are the same clusters moved by a common offset, so that the source head
/// calls most of one class another. Adapting the hidden layer to the moved features alone (confident, diverse
/// predictions) must win back accuracy, and leave an unshifted set about as it was.
@Suite struct HeadAdaptationTests {
    static func clusters(perClass: Int, offset: [Float], seed: UInt64) -> (Tensor, [Int]) {
        var rng = SeededGenerator(seed: seed)
        let d = 6
        var rows: [Float] = [], labels: [Int] = []
        for c in 0..<3 {
            for _ in 0..<perClass {
                for j in 0..<d { rows.append((j == c ? 2 : 0) + offset[j] + 0.35 * rng.normal()) }
                labels.append(c)
            }
        }
        return (Tensor(shape: [3 * perClass, d], data: rows), labels)
    }

    static func accuracy(_ p: Tensor, _ labels: [Int]) -> Double {
        let k = p.shape[1]
        let right = labels.indices.filter { i in (0..<k).max { p[flat: i * k + $0] < p[flat: i * k + $1] }! == labels[i] }
        return Double(right.count) / Double(labels.count)
    }

    @Test func adaptingToShiftedFeaturesWinsBackAccuracy() {
        let (x, y) = Self.clusters(perClass: 30, offset: [0, 0, 0, 0, 0, 0], seed: 1)
        var recipe = MLPHead()
        recipe.steps = 200
        let head = recipe.fit(x, labels: y, classes: 3, seed: 0)
        #expect(Self.accuracy(head.probabilities(x), y) > 0.95)
        let (shifted, ys) = Self.clusters(perClass: 40, offset: [1.4, 0, -1.2, 0.8, 0, 0], seed: 2)
        let before = Self.accuracy(head.probabilities(shifted), ys)
        #expect(before < 0.8, "the shift should hurt the source head (accuracy \(before))")
        var informationOnly = MLPHead.Adaptation()
        informationOnly.pseudoLabelWeight = 0
        informationOnly.diversity = 1
        for recipe in [MLPHead.Adaptation(), informationOnly] {
            let adapted = recipe.adapt(head, to: shifted)
            let after = Self.accuracy(adapted.probabilities(shifted), ys)
            #expect(after > before + 0.1, "adaptation \(before) → \(after) (pseudo-labels \(recipe.pseudoLabelWeight))")
            #expect(adapted.w2.scalars == head.w2.scalars)   // the classifier stays as trained
        }
        let (same, yss) = Self.clusters(perClass: 40, offset: [0, 0, 0, 0, 0, 0], seed: 3)
        let unshifted = Self.accuracy(MLPHead.Adaptation().adapt(head, to: same).probabilities(same), yss)
        #expect(unshifted > 0.9)
    }

    /// SHOT's pseudo-labels: on clusters the head already separates, the nearest prediction-weighted centroid
    /// of every row is its own class; moved into the shifted clusters, they beat the source head's argmax.
    @Test func centroidPseudoLabelsFollowTheClusters() {
        let (x, y) = Self.clusters(perClass: 30, offset: [0, 0, 0, 0, 0, 0], seed: 1)
        var recipe = MLPHead()
        recipe.steps = 200
        let head = recipe.fit(x, labels: y, classes: 3, seed: 0)
        #expect(MLPHead.Adaptation.centroidLabels(head, MLPHead.standardized(x)) == y)
        let (shifted, ys) = Self.clusters(perClass: 40, offset: [1.4, 0, -1.2, 0.8, 0, 0], seed: 2)
        let pseudo = MLPHead.Adaptation.centroidLabels(head, MLPHead.standardized(shifted))
        let pseudoAccuracy = Double(zip(pseudo, ys).filter { $0 == $1 }.count) / Double(ys.count)
        #expect(pseudoAccuracy > Self.accuracy(head.probabilities(shifted), ys))
    }
}
