import Foundation
import PetriData
import PetriEngine
import PetriLearn
import Testing
@testable import PetriStudy

/// The commands' behaviour through the study layer, on the bundled sample (needs the weights `make setup`
/// installs).
@Suite(.serialized) struct StudyLayerTests {
    static let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Samples/bccd-wbc-mini").path

    static func temporary(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petri-study-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name)
    }

    /// A curve appends one JSON line per result and records it; run again, it finds everything done.
    @Test func curveWritesEachResultOnceAndSkipsWhatIsDone() throws {
        let json = try Self.temporary("curve.jsonl").path
        let store = try Self.temporary("runs.sqlite").path
        var curve = CurveRun(dataset: DatasetPolicy(source: Self.sample), sizes: [5], seeds: [0, 1], methods: try MethodSpec.list("lp,proto"))
        curve.jsonLines = json
        curve.store = StoreSettings(path: store)
        let reporter = CollectingReporter()
        var finished: [RunKey] = []
        let first = try curve.run(reporter: reporter) { finished.append($0.key) }
        #expect(Set(finished) == Set([RunKey(method: "lp", size: 5, seed: 0), RunKey(method: "proto", size: 5, seed: 0),
                                      RunKey(method: "lp", size: 5, seed: 1), RunKey(method: "proto", size: 5, seed: 1)]))
        #expect(first.count == 4 && first.allSatisfy { $0.balancedAccuracy > 0.25 })
        #expect(try JSONLinesFile(path: json).keys(preprocessing: "none") == Set(finished))
        #expect(reporter.notes.contains { $0.hasPrefix("dataset: 84 images") })
        finished = []
        try curve.run(reporter: reporter) { finished.append($0.key) }
        #expect(finished.isEmpty)
        // The same methods on preprocessed images are other results.
        curve.dataset.preprocessing = try TransformPipeline.parse("grey")
        try curve.run(reporter: reporter) { finished.append($0.key) }
        #expect(finished.count == 4)
        // Nothing unfinished to resume.
        curve.store.resume = true
        #expect(throws: StudyError.self) { try curve.run(reporter: reporter) }
    }

    /// Three shards of a curve, merged, are the unsharded curve (seconds aside); a study's shards give the
    /// report the unsharded study would.
    @Test func shardsMergedAreTheWholeRun() throws {
        func curve(_ shard: Shard?, _ name: String) throws -> String {
            var c = CurveRun(dataset: DatasetPolicy(source: Self.sample), sizes: [5, nil], seeds: [0, 1], methods: try MethodSpec.list("lp,proto,knn"))
            c.jsonLines = try Self.temporary(name).path
            c.store.enabled = false
            c.shard = shard
            try c.run(reporter: CollectingReporter())
            return c.jsonLines!
        }
        let whole = try curve(nil, "whole.jsonl")
        let parts = try (1...3).map { try curve(Shard(index: $0, count: 3), "part\($0).jsonl") }
        let merged = try Self.temporary("merged.jsonl").path
        let (results, duplicates) = try RecordMerge.merge(parts + [parts[0]], into: merged)
        #expect(results == 12 && duplicates == 4)
        func outcomes(_ path: String) throws -> Set<String> {
            let data = try #require(FileManager.default.contents(atPath: path))
            return Set(data.split(separator: 0x0A).map { line in
                var o = (try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]) ?? [:]
                o["seconds"] = nil
                return String(decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
            })
        }
        #expect(try outcomes(merged) == outcomes(whole))
        // Each part holds a third, and no evaluation twice.
        let counts = try parts.map { try outcomes($0).count }
        #expect(counts == [4, 4, 4])
        #expect(throws: StudyError.self) { try Shard("4/3") }

        // A study in two shards, then its report from their records.
        var study = Study(dataset: DatasetPolicy(source: Self.sample), methods: try MethodSpec.list("lp,proto"))
        study.sizes = [5]
        study.seeds = [0, 1]
        study.store.enabled = false
        var files: [String] = []
        for k in 1...2 {
            var s = study
            s.shard = try Shard(index: k, count: 2)
            s.records = try Self.temporary("study\(k).jsonl").path
            files.append(s.records!)
            try s.run(reporter: CollectingReporter()) { _ in "" }
        }
        var report = study
        report.from = files
        report.report = try Self.temporary("from.html").path
        let fromParts = try report.run(reporter: CollectingReporter()) { o in "\(o.records.count) records" }
        var direct = study
        direct.report = try Self.temporary("direct.html").path
        let unsharded = try direct.run(reporter: CollectingReporter()) { o in "\(o.records.count) records" }
        #expect(try String(contentsOfFile: report.report, encoding: .utf8) == "4 records")
        #expect(Set(fromParts.records.map { "\($0.key) \(String(format: "%.12f", $0.balancedAccuracy)) \($0.probabilities.count)" })
                == Set(unsharded.records.map { "\($0.key) \(String(format: "%.12f", $0.balancedAccuracy)) \($0.probabilities.count)" }))
    }

    /// A study writes what its renderer makes and a run record with the config that identifies it.
    @Test func studyWritesTheReportAndTheRunRecord() throws {
        let report = try Self.temporary("report.html")
        var study = Study(dataset: DatasetPolicy(source: Self.sample), methods: try MethodSpec.list("lp,proto"))
        study.sizes = [5]
        study.seeds = [0]
        study.report = report.path
        study.store.enabled = false
        study.command = "petri study sample"
        let outcome = try study.run(reporter: CollectingReporter()) { o in "methods: " + Set(o.records.map(\.method)).sorted().joined(separator: ",") }
        #expect(try String(contentsOf: report, encoding: .utf8) == "methods: lp,proto")
        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: outcome.recordURL(besides: report))) as? [String: Any])
        let config = try #require(record["config"] as? [String: Any])
        #expect(config["methods"] as? [String] == ["lp", "proto"] && config["protocol"] as? String == "few-shot")
        #expect(config["sizes"] as? [String] == ["5"] && config["kind"] as? String == "study")
        #expect((record["results"] as? [Any])?.count == 2 && record["command"] as? String == "petri study sample")
        #expect(outcome.headline?.size == "5" && outcome.embedding?.shape == [84, 1280])
        #expect(!outcome.activationMaps.isEmpty && outcome.purificationRecipe == nil)
    }

    /// A trained probe predicts the images it was given, with the spec it was asked for in the model file;
    /// evaluated on another copy of its own data it scores well (never do this to judge a model).
    @Test func trainPredictAndEvaluate() throws {
        var training = ModelTraining(dataset: DatasetPolicy(source: Self.sample))
        training.method = try MethodSpec(parsing: "lp")
        let (model, summary) = try training.run(reporter: CollectingReporter())
        #expect(model.spec == "lp" && model.kind == "logistic" && summary[0].hasPrefix("recipe: lp[lite0,head], C = "))
        let file = try Self.temporary("wbc.petri")
        try model.write(to: file)
        let reread = try SavedModel.read(file)
        #expect(reread.spec == "lp" && reread.classNames == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"])
        let (csv, images) = try Prediction(model: file.path, inputs: [Self.sample + "/monocyte"]).run(reporter: CollectingReporter())
        #expect(images == 16 && csv.split(separator: "\n").count == 17 && csv.hasPrefix("path,label,confidence,familiar,p_eosinophil"))
        let (lines, evaluated) = try Evaluation(model: file.path, dataset: DatasetPolicy(source: Self.sample)).run(reporter: CollectingReporter())
        #expect(lines.contains { $0.hasPrefix("balanced accuracy ") } && evaluated.split(separator: "\n").count == 85)
        #expect(throws: StudyError.self) { try Prediction(model: file.path, inputs: ["/no/such/folder"]).run(reporter: CollectingReporter()) }

        // Another stain: unfamiliar as they are, and still unfamiliar with their colour matched to the training
        // images' (the match would otherwise hide the difference the check looks for).
        let match = try #require(reread.colourMatch)
        #expect(match.targetMean.count == 3 && match.targetStd.allSatisfy { $0 > 0 })
        let other = try Dataset.imageFolder(try Self.stainedCopy(24))
        let asThey = try #require(try FamiliarityCheck.flags(reread, other, adaptation: TransformPipeline(), file: "m", reporter: CollectingReporter(), tries: []))
        let matched = try #require(try FamiliarityCheck.flags(reread, other, adaptation: TransformPipeline([match]), file: "m", reporter: CollectingReporter(), tries: []))
        #expect(asThey.filter { !$0 }.count > asThey.count / 2)
        #expect(matched == asThey)
    }

    /// The sample's first `count` images with another stain: red weakened, green strengthened.
    static func stainedCopy(_ count: Int) throws -> URL {
        let stained = try Self.temporary("stained")
        var sample = try Dataset.imageFolder(URL(fileURLWithPath: Self.sample))
        sample.items = Array(sample.items.prefix(count))
        let decoder = ImageDecoder()
        for item in sample.items {
            var image = FloatImage(try sample.image(of: item, decoder: decoder))
            for i in 0..<(image.width * image.height) { image.pixels[i * 3] *= 0.4; image.pixels[i * 3 + 1] = min(1, image.pixels[i * 3 + 1] * 1.3) }
            let folder = stained.appendingPathComponent(sample.classNames[item.label])
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try image.rgb.writePNG(to: folder.appendingPathComponent(UUID().uuidString + ".png"))
        }
        return stained
    }

    /// `--adapt auto` adapts the model's heads only when nearly all images are unlike every training image:
    /// on the training lab's own images it leaves the model (and its marks) alone; on another stain it adapts
    /// the heads and marks nothing `accept`; `--adapt scale` never touches the model. (The MLP head is the
    /// trained probe's logistic regression behind a ReLU and an identity layer: cheap, and a real head.)
    @Test func autoAdaptsTheModelOnlyWhereNearlyAllImagesAreUnfamiliar() throws {
        var training = ModelTraining(dataset: DatasetPolicy(source: Self.sample))
        training.method = try MethodSpec(parsing: "lp")
        var (model, _) = try training.run(reporter: CollectingReporter())
        let lr = try #require(model.head)
        let k = lr.classes
        model.mlp = SavedModel.MLP(MLPHead.Fitted(
            w1: Tensor(shape: [k, lr.features], data: lr.weights), b1: Tensor(shape: [k], data: lr.intercepts),
            w2: Tensor(shape: [k, k], data: (0..<(k * k)).map { $0 % (k + 1) == 0 ? 1 : 0 }), b2: Tensor(zeros: [k])))
        model.head = nil
        let file = try Self.temporary("mlp.petri")
        try model.write(to: file)
        #expect(try SavedModel.read(file).kind == "mlp")

        var rule = try AdaptationSettings(adapt: "auto")
        let reporter = CollectingReporter()
        rule.decideModelAdaptation(model, familiar: Array(repeating: false, count: 9) + [true], reporter: reporter)
        #expect(rule.heads && !rule.norm && reporter.notes.contains { $0.contains("90% of the images are unlike every training image, so the model's heads are adapted") })
        rule = try AdaptationSettings(adapt: "auto")
        rule.decideModelAdaptation(model, familiar: Array(repeating: false, count: 8) + [true, true], reporter: CollectingReporter())
        #expect(!rule.heads && !rule.norm)

        var ownImages = DatasetPolicy(source: Self.sample)
        ownImages.maxPerClass = 6
        var own = Evaluation(model: file.path, dataset: ownImages)
        own.adaptation = try AdaptationSettings(adapt: "auto")
        let ownReporter = CollectingReporter()
        let ownLines = try own.run(reporter: ownReporter).lines
        #expect(!ownLines[1].contains("adapted to them") && ownReporter.notes.contains { $0.hasSuffix("so the model is left as it is") })

        var other = Evaluation(model: file.path, dataset: DatasetPolicy(source: try Self.stainedCopy(40).path))
        other.adaptation = try AdaptationSettings(adapt: "auto")
        let otherReporter = CollectingReporter()
        let (otherLines, otherCSV) = try other.run(reporter: otherReporter)
        #expect(otherLines[1].hasSuffix("the model's heads adapted to them") && !otherCSV.contains(",accept,"))
        // The warning suggests only what was not asked: after `auto`, labelling a sample; after `scale`, the model too.
        #expect(otherReporter.warnings.contains { $0.hasSuffix("means little on them. Label a sample and measure it with `petri evaluate`.") })
        other.adaptation = try AdaptationSettings(adapt: "scale")
        let scaleReporter = CollectingReporter()
        #expect(!(try other.run(reporter: scaleReporter)).lines[1].contains("adapted to them"))
        #expect(scaleReporter.warnings.contains { $0.hasSuffix("Try --adapt-heads / --adapt-norm, or label a sample and measure it with `petri evaluate`.") })
    }

    @Test func datasetPolicyDropsSmallClassesAndRefusesTooFew() throws {
        var policy = DatasetPolicy(source: Self.sample)
        policy.minClassSize = 20
        let reporter = CollectingReporter()
        let ds = try policy.load(reporter: reporter)
        #expect(ds.classNames == ["eosinophil", "lymphocyte", "neutrophil"])
        #expect(reporter.warnings.contains { $0.contains("'monocyte' has 16 image(s), fewer than 20: dropped") })
        policy.minClassSize = 25
        #expect(throws: DatasetError.self) { try policy.load(reporter: reporter) }
        #expect(throws: StudyError.self) { try DatasetPolicy(source: Self.sample, preprocessing: "sharpen") }
    }
}
