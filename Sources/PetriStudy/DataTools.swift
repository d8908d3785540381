import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriNN

/// `petri inspect`: class balance, image formats, unreadable files, exact and near duplicates.
public struct InspectionRun {
    public var source: String
    /// Thumbnail correlation at or above which two images count as near-duplicates.
    public var nearThreshold: Float = 0.95
    /// How many examples of each finding the summary lists.
    public var show = 10

    public init(source: String) { self.source = source }

    /// The summary's lines and the findings as a JSON object.
    public func run(reporter: StudyReporter) throws -> (lines: [String], json: [String: Any]) {
        guard (0...1).contains(nearThreshold) else { throw StudyError.invalidSetting("--near-threshold", "must be in 0…1") }
        let dataset = try Dataset.load(URL(fileURLWithPath: source))
        let r = dataset.inspect(nearThreshold: nearThreshold) { reporter.progress("reading images", $0, $1) }
        let items = dataset.items
        func name(_ i: Int) -> String { "\(items[i].relativePath) [\(dataset.classNames[items[i].label])]" }
        var lines = ["dataset: \(dataset.root.path)", "images: \(items.count) in \(dataset.classNames.count) classes"]
        let width = dataset.classNames.map(\.count).max() ?? 0, maxCount = r.classCounts.max() ?? 1
        for (c, n) in zip(dataset.classNames, r.classCounts) {
            let bar = String(repeating: "█", count: max(n > 0 ? 1 : 0, n * 30 / max(maxCount, 1)))
            lines.append("  \(c.padding(toLength: width, withPad: " ", startingAt: 0))  \(String(format: "%5d", n))  \(bar)")
        }
        if let mn = r.classCounts.min(), mn > 0, let mx = r.classCounts.max(), mx > 2 * mn {
            lines.append("  imbalance: largest/smallest class = \(String(format: "%.1f", Double(mx) / Double(mn)))")
        }
        if !r.sizes.isEmpty {
            let areas = r.sizes.sorted { $0.width * $0.height < $1.width * $1.height }
            let med = areas[areas.count / 2]
            lines.append("sizes: min \(areas.first!.width)×\(areas.first!.height), median \(med.width)×\(med.height), max \(areas.last!.width)×\(areas.last!.height)")
            lines.append("channels in file: " + r.channels.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
                         + "; bit depth: " + r.bitDepths.sorted { $0.key < $1.key }.map { "\($0.key)-bit: \($0.value)" }.joined(separator: ", "))
        }
        lines.append("unreadable: \(r.unreadable.count)")
        lines += r.unreadable.prefix(show).map { "  \($0.path): \($0.reason)" }
        lines.append("exact duplicates: \(r.exactDuplicates.count) group(s), \(r.exactDuplicates.reduce(0) { $0 + $1.count }) images")
        lines += r.exactDuplicates.prefix(show).map { "  " + $0.map(name).joined(separator: " == ") }
        lines.append("conflicting labels among duplicates: \(r.conflictingDuplicates.count) group(s)")
        lines += r.conflictingDuplicates.prefix(show).map { "  " + $0.map(name).joined(separator: " == ") }
        let cross = r.nearDuplicates.filter { items[$0.a].label != items[$0.b].label }
        lines.append("near-duplicates (thumbnail correlation ≥ \(nearThreshold)): \(r.nearDuplicates.count) pair(s), \(cross.count) across classes")
        for p in (cross + r.nearDuplicates.filter { items[$0.a].label == items[$0.b].label }).prefix(show) {
            lines.append("  \(name(p.a)) ~ \(name(p.b))  (\(String(format: "%.3f", p.correlation)))")
        }
        lines += dataset.warnings.map { "warning: \($0)" }
        if dataset.classNames.count < 2 { lines.append("warning: a classifier needs at least two classes") }
        for (c, n) in zip(dataset.classNames, r.classCounts) where n == 1 {
            lines.append("warning: class '\(c)' has a single image: it cannot appear in both training and test sets")
        }
        let json: [String: Any] = [
            "dataset": dataset.root.path,
            "classes": Dictionary(uniqueKeysWithValues: zip(dataset.classNames, r.classCounts).map { ($0, $1) }),
            "unreadable": r.unreadable.map { ["path": $0.path, "reason": $0.reason] },
            "exact_duplicates": r.exactDuplicates.map { $0.map { items[$0].relativePath } },
            "conflicting_duplicates": r.conflictingDuplicates.map { $0.map { items[$0].relativePath } },
            "near_duplicates": r.nearDuplicates.map { ["a": items[$0.a].relativePath, "b": items[$0.b].relativePath, "correlation": Double($0.correlation)] as [String: Any] },
            "warnings": dataset.warnings,
        ]
        return (lines, json)
    }
}

/// Frozen features of every readable image of a dataset, from one backbone at one level.
public struct FeatureExport {
    public var source: String
    /// Any backbone name the registry knows: ImageNet `efficientnet-liteN`, or a trained one (CellNet).
    public var backbone = defaultBackbone
    public var level = FeatureLevel.head
    public var preprocessing = TransformPipeline()
    public var useCache = true
    public var batchSize = 32
    public var maxPixels = ImageDecoder.defaultMaxPixels

    public init(source: String) { self.source = source }

    public func validate() throws {
        do { _ = try ModelRegistry.entry(backbone) } catch { throw StudyError.invalidSetting("--backbone", "\(error)") }
        guard batchSize >= 1 else { throw StudyError.invalidSetting("--batch-size", "must be at least 1") }
    }

    /// The dataset, the features `[kept, D]` of its readable images and which images those are.
    public func run(reporter: StudyReporter) throws -> (dataset: Dataset, result: FeatureExtractor.Result) {
        try validate()
        let dataset = try Dataset.load(URL(fileURLWithPath: source))
        for w in dataset.warnings { reporter.warning(w) }
        let extractor = try FeatureExtractor(backbone: backbone, level: level)
        extractor.batchSize = batchSize
        extractor.decoder = ImageDecoder(maxPixels: maxPixels)
        if !useCache { extractor.cacheDirectory = nil }
        extractor.preprocessing = preprocessing
        let result = try extractor.extract(dataset, items: dataset.items) { reporter.progress("features (\(backbone), \(level))", $0, $1) }
        for f in result.failures { reporter.warning("skipped \(f.path): \(f.reason)") }
        guard !result.kept.isEmpty else { throw StudyError.failed("no readable images in \(dataset.root.path)") }
        return (dataset, result)
    }
}

/// `petri probe`: repeated stratified k-fold of a linear probe (C by inner CV) on frozen features.
public struct ProbeRun {
    public var features: FeatureExport
    public var folds = 5
    public var repeats = 2
    public var seed: UInt64 = 0

    public init(features: FeatureExport) { self.features = features }

    public func run(reporter: StudyReporter) throws -> [String] {
        guard folds >= 2 else { throw StudyError.invalidSetting("--folds", "must be at least 2") }
        guard repeats >= 1 else { throw StudyError.invalidSetting("--repeats", "must be at least 1") }
        let (dataset, result) = try features.run(reporter: reporter)
        let labels = result.kept.map { dataset.items[$0].label }
        let classes = dataset.classNames.count
        guard Set(labels).count >= 2 else { throw StudyError.failed("\(dataset.root.path): need at least two classes with readable images") }
        let smallest = (0..<classes).map { c in labels.filter { $0 == c }.count }.filter { $0 > 0 }.min()!
        guard smallest >= folds else {
            throw StudyError.failed("\(dataset.root.path): the smallest class has \(smallest) image(s), fewer than --folds \(folds)")
        }
        // Exact duplicates (same bytes) share a group so they never straddle train and test; CSV groups too.
        let groups: [String?] = result.kept.map { i in dataset.items[i].group ?? (try? dataset.contents(of: dataset.items[i])).map(SHA256.hex) }
        let cv = CrossValidation.run(features: result.features, labels: labels, groups: groups, classes: classes, folds: folds,
                                     repeats: repeats, seed: seed) { reporter.progress("cross-validation", $0, $1) }
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for f in cv { for (i, p) in zip(f.test, f.predictions) { confusion[labels[i]][p] += 1 } }
        let recall = Metrics.perClassRecall(confusion)
        return ["dataset: \(dataset.root.path) (\(labels.count) images, \(classes) classes)",
                "method: linear probe on \(features.backbone) \(features.level) features, \(folds)-fold × \(repeats), seed \(seed)",
                "balanced accuracy: \(Summary(cv.map(\.balancedAccuracy), within: 0...1))"]
            + (0..<classes).map { "  recall \(dataset.classNames[$0]): \(recall[$0].map { String(format: "%.3f", $0) } ?? "n/a")" }
    }
}

/// The protocol's split of a dataset for one seed, as `curve` and `study` draw it.
public func fewShotSplit(_ ds: Dataset, seed: UInt64, testFraction: Double = 0.3) -> FewShotSplit {
    let groups: [String?] = ds.items.map { $0.group ?? (try? ds.contents(of: $0)).map(SHA256.hex) }
    return FewShotSplit(labels: ds.items.map(\.label), groups: groups, classes: ds.classNames.count, seed: seed, testFraction: testFraction)
}

/// `petri augment-preview`: originals spread over the classes, each with augmented copies, as one image.
public struct AugmentationPreview {
    public var source: String
    public var policy: TransformPipeline
    public var rows = 6
    public var copies = 7
    public var seed: UInt64 = 0

    public init(source: String, policy: TransformPipeline) {
        self.source = source
        self.policy = policy
    }

    public func run(reporter: StudyReporter) throws -> (sheet: RGBImage, originals: Int) {
        let dataset = try Dataset.load(URL(fileURLWithPath: source))
        // Round-robin over classes so every class shows up.
        let byClass = Dictionary(grouping: dataset.items, by: \.label)
        var chosen: [DatasetItem] = [], k = 0
        while chosen.count < rows && k < dataset.items.count {
            for c in dataset.classNames.indices where chosen.count < rows {
                if let list = byClass[c], k < list.count { chosen.append(list[k]) }
            }
            k += 1
        }
        var originals: [FloatImage] = []
        for item in chosen {
            do { originals.append(FloatImage(try dataset.image(of: item, decoder: ImageDecoder()))) } catch {
                reporter.warning("skipped \(item.path): \(error)")
            }
        }
        guard !originals.isEmpty else { throw StudyError.failed("no readable images in \(dataset.root.path)") }
        return (ContactSheet.make(originals: originals, pipeline: policy, copies: copies, seed: seed), originals.count)
    }
}
