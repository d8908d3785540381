import Foundation
import PetriData
import PetriLearn

/// How a command reads its labelled images: the source, which classes and images it keeps, and the
/// preprocessing every method sees. A run's config records all of it (`configEntries`).
public struct DatasetPolicy: Sendable {
    /// A folder `DATA/<class>/<image>`, a CSV `path,label[,group]` or a MedMNIST-style `.npz`.
    public var source: String
    /// Classes with fewer images than this are dropped (with a warning).
    public var minClassSize = 10
    /// At most this many images per class: a seeded draw (`drawSeed`).
    public var maxPerClass: Int?
    public var drawSeed: UInt64 = 0
    public var preprocessing = TransformPipeline()

    public init(source: String) { self.source = source }

    /// The policy with a preprocessing spec (`reinhard`, `grey, clahe`...), checked.
    public init(source: String, preprocessing spec: String) throws {
        self.source = source
        do { preprocessing = try TransformPipeline.parse(spec) } catch { throw StudyError.invalidSetting("preprocessing", "\(error)") }
    }

    /// Loads the images; reports unreadable files (skipped), dropped classes and the draw; refuses fewer than
    /// two classes.
    public func load(reporter: StudyReporter) throws -> Dataset {
        var ds = try Dataset.load(URL(fileURLWithPath: source))
        for w in ds.warnings { reporter.warning(w) }
        let (readable, failures) = FeatureBank.readableItems(ds)
        for (p, r) in failures { reporter.warning("skipped \(p): \(r)") }
        ds = readable
        let before = ds.warnings.count
        ds = ds.droppingClasses(smallerThan: minClassSize)
        for w in ds.warnings.dropFirst(before) { reporter.warning(w) }
        if let m = maxPerClass { ds = ds.limitingClasses(to: m, seed: drawSeed) }
        ds.preprocessing = preprocessing
        guard ds.classNames.count >= 2 else { throw DatasetError.tooFewClasses(ds.root.path, found: ds.classNames) }
        reporter.note("dataset: \(ds.items.count) images, " + zip(ds.classNames, ds.classCounts).map { "\($0) \($1)" }.joined(separator: ", "))
        return ds
    }

    /// What a run config records of the policy (the preprocessing only when there is some, so that runs
    /// recorded without it still match).
    public var configEntries: [String: Any] {
        var o: [String: Any] = ["dataset": source, "min_class_size": minClassSize, "max_per_class": maxPerClass.map { $0 as Any } ?? NSNull(),
                                "draw_seed": drawSeed]
        if !preprocessing.isEmpty { o["preprocess"] = preprocessing.spec }
        return o
    }
}

/// A setting of the study layer that cannot be used: which one and why (the command line exits with 64).
public enum StudyError: Error, CustomStringConvertible {
    case invalidSetting(String, String)
    /// The command failed for a reason about its inputs (exit 1), with a message naming the file and the problem.
    case failed(String)

    public var description: String {
        switch self {
        case let .invalidSetting(name, problem): "\(name): \(problem)"
        case let .failed(message): message
        }
    }
}
