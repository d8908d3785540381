import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn

/// Everything a study found, for its report and its run record.
public struct StudyOutcome {
    public var dataset: Dataset
    public var records: [CurveRecord]
    /// Features for the map of the images (`[items, D]`), when they could be computed.
    public var embedding: Tensor?
    public var command: String
    public var seeds: [UInt64]
    public var dataHash: String
    public var versions: [String: String]
    public var seconds: Double
    /// The run's config as recorded (`RunConfig.json`).
    public var config: [String: Any] = [:]
    public var notes: [String] = []
    /// Class activation maps of a sample of test images.
    public var activationMaps: [ClassActivationMaps.Example] = []
    /// Likely label errors and outliers over the whole dataset (`petri purify`'s findings).
    public var labelIssues: [LabelIssues.Issue] = []
    public var outliers: [Int] = []
    /// How the findings were made (nil: no label check ran).
    public var purificationRecipe: String?

    public init(dataset: Dataset, records: [CurveRecord], embedding: Tensor? = nil, command: String, seeds: [UInt64],
                dataHash: String, versions: [String: String], seconds: Double, notes: [String] = []) {
        self.dataset = dataset; self.records = records; self.embedding = embedding; self.command = command
        self.seeds = seeds; self.dataHash = dataHash; self.versions = versions; self.seconds = seconds; self.notes = notes
    }

    /// The run record's file: the report's name with `.json`.
    public func recordURL(besides report: URL) -> URL { report.deletingPathExtension().appendingPathExtension("json") }

    /// The run record: command, config, data hash, classes, versions, time and every result (written atomically).
    public func writeRecord(to url: URL) throws {
        let record: [String: Any] = [
            "command": command, "dataset": dataset.root.path, "data_hash": dataHash, "classes": dataset.classNames,
            "config": config, "seeds": seeds, "methods": config["methods"] ?? [], "versions": versions,
            "seconds": seconds, "results": records.map(\.json),
        ]
        try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]).write(to: url, options: .atomic)
    }

    /// The best method at the largest training size (fold ensembles on a held-out set left out).
    public var headline: Headline? { Headline(records) }
}

/// A one-line verdict of a study: the best method at the largest training size.
public struct Headline: Sendable {
    public var method: String
    public var size: String
    public var summary: Summary

    public init?(_ all: [CurveRecord]) {
        let records = all.filter { $0.evaluation != "holdout" }
        var methods: [String] = [], sizes: [(Int, String)] = []
        for r in records {
            if !methods.contains(r.method) { methods.append(r.method) }
            if !sizes.contains(where: { $0.1 == r.sizeLabel }) { sizes.append((r.size ?? Int.max, r.sizeLabel)) }
        }
        guard let largest = sizes.sorted(by: { $0.0 < $1.0 }).last?.1 else { return nil }
        let candidates = methods.compactMap { m -> (String, Summary)? in
            let v = records.filter { $0.method == m && $0.sizeLabel == largest }.map(\.balancedAccuracy)
            return v.isEmpty ? nil : (m, Summary(v, within: 0...1))
        }
        guard let best = candidates.max(by: { $0.1.mean < $1.1.mean }) else { return nil }
        method = best.0
        size = largest
        summary = best.1
    }
}
