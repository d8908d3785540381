import ArgumentParser
import Foundation
import PetriData

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Report class balance, image formats, unreadable files and (near-)duplicates of a dataset.",
        discussion: """
            Exact duplicates are images with identical bytes (or pixels, for .npz). Duplicates filed under \
            different classes are label conflicts. Near-duplicates are different files whose 32×32 grey \
            thumbnails correlate at ≥ --near-threshold (re-encodings, small shifts, adjacent video frames). \
            Petri keeps exact duplicates on one side of every split; near-duplicates are reported for you to judge.

            Examples:
              petri inspect Samples/bccd-wbc-mini
              petri inspect data.csv --json report.json
            """)

    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Thumbnail correlation at or above which two images count as near-duplicates.")
    var nearThreshold: Float = 0.95

    @Option(help: "How many examples of each finding to list.")
    var show = 10

    @Option(help: "Also write the findings as JSON to this file.")
    var json: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard (0...1).contains(nearThreshold) else { throw ValidationError("--near-threshold must be in 0…1") }
    }

    func run() throws {
        let dataset = try Dataset.load(URL(fileURLWithPath: data))
        let progress = ProgressLine("reading images", quiet: quiet)
        let r = dataset.inspect(nearThreshold: nearThreshold, progress: progress.update)
        let items = dataset.items
        func name(_ i: Int) -> String { "\(items[i].relativePath) [\(dataset.classNames[items[i].label])]" }

        print("dataset: \(dataset.root.path)")
        print("images: \(items.count) in \(dataset.classNames.count) classes")
        let width = dataset.classNames.map(\.count).max() ?? 0
        let maxCount = r.classCounts.max() ?? 1
        for (c, n) in zip(dataset.classNames, r.classCounts) {
            let bar = String(repeating: "█", count: max(n > 0 ? 1 : 0, n * 30 / max(maxCount, 1)))
            print("  \(c.padding(toLength: width, withPad: " ", startingAt: 0))  \(String(format: "%5d", n))  \(bar)")
        }
        if let mn = r.classCounts.min(), mn > 0, let mx = r.classCounts.max(), mx > 2 * mn {
            print("  imbalance: largest/smallest class = \(String(format: "%.1f", Double(mx) / Double(mn)))")
        }
        if !r.sizes.isEmpty {
            let areas = r.sizes.sorted { $0.width * $0.height < $1.width * $1.height }
            let med = areas[areas.count / 2]
            print("sizes: min \(areas.first!.width)×\(areas.first!.height), median \(med.width)×\(med.height), max \(areas.last!.width)×\(areas.last!.height)")
            print("channels in file: " + r.channels.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
                  + "; bit depth: " + r.bitDepths.sorted { $0.key < $1.key }.map { "\($0.key)-bit: \($0.value)" }.joined(separator: ", "))
        }
        print("unreadable: \(r.unreadable.count)")
        for u in r.unreadable.prefix(show) { print("  \(u.path): \(u.reason)") }
        let dupImages = r.exactDuplicates.reduce(0) { $0 + $1.count }
        print("exact duplicates: \(r.exactDuplicates.count) group(s), \(dupImages) images")
        for g in r.exactDuplicates.prefix(show) { print("  " + g.map(name).joined(separator: " == ")) }
        print("conflicting labels among duplicates: \(r.conflictingDuplicates.count) group(s)")
        for g in r.conflictingDuplicates.prefix(show) { print("  " + g.map(name).joined(separator: " == ")) }
        let cross = r.nearDuplicates.filter { items[$0.a].label != items[$0.b].label }
        print("near-duplicates (thumbnail correlation ≥ \(nearThreshold)): \(r.nearDuplicates.count) pair(s), \(cross.count) across classes")
        for p in (cross + r.nearDuplicates.filter { items[$0.a].label == items[$0.b].label }).prefix(show) {
            print("  \(name(p.a)) ~ \(name(p.b))  (\(String(format: "%.3f", p.correlation)))")
        }
        for w in dataset.warnings { print("warning: \(w)") }
        if dataset.classNames.count < 2 { print("warning: a classifier needs at least two classes") }
        for (c, n) in zip(dataset.classNames, r.classCounts) where n == 1 {
            print("warning: class '\(c)' has a single image: it cannot appear in both training and test sets")
        }

        if let json {
            let report: [String: Any] = [
                "dataset": dataset.root.path,
                "classes": Dictionary(uniqueKeysWithValues: zip(dataset.classNames, r.classCounts).map { ($0, $1) }),
                "unreadable": r.unreadable.map { ["path": $0.path, "reason": $0.reason] },
                "exact_duplicates": r.exactDuplicates.map { $0.map { items[$0].relativePath } },
                "conflicting_duplicates": r.conflictingDuplicates.map { $0.map { items[$0].relativePath } },
                "near_duplicates": r.nearDuplicates.map {
                    ["a": items[$0.a].relativePath, "b": items[$0.b].relativePath, "correlation": Double($0.correlation)] as [String: Any]
                },
                "warnings": dataset.warnings,
            ]
            let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: json), options: .atomic)
        }
    }
}

struct AugmentPreviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment-preview",
        abstract: "Write a contact sheet of original images and augmented copies, to see what a policy does.",
        discussion: """
            Policies: none, light, cells (dihedral + HSV/stain jitter + crop), ultrasound (intensity + speckle + \
            small rotation, no vertical flip), or your own spec such as \
            "dihedral, crop(scale=0.6-1), hed(sigma=0.05,p=0.5), blur(sigma=0.1-1,p=0.2)", or @FILE with one step per line.

            Example:
              petri augment-preview Samples/bccd-wbc-mini --policy cells --out preview.png
            """)

    @Argument(help: "Dataset (folder, CSV or .npz).")
    var data: String

    @Option(help: "Augmentation policy: a name, a spec, or @FILE.")
    var policy = "cells"

    @Option(help: "Output PNG.")
    var out = "augment-preview.png"

    @Option(help: "Rows (one image each, spread over the classes).")
    var rows = 6

    @Option(help: "Augmented copies per row.")
    var copies = 7

    @Option(help: "Seed for the random draws.")
    var seed: UInt64 = 0

    func run() throws {
        let pipeline: TransformPipeline
        do { pipeline = try TransformPipeline.augmentation(policy) } catch { throw ValidationError("--policy: \(error)") }
        let dataset = try Dataset.load(URL(fileURLWithPath: data))
        // Round-robin over classes so every class shows up.
        let byClass = Dictionary(grouping: dataset.items, by: \.label)
        var chosen: [DatasetItem] = []
        var k = 0
        while chosen.count < rows && k < dataset.items.count {
            for c in dataset.classNames.indices where chosen.count < rows {
                if let list = byClass[c], k < list.count { chosen.append(list[k]) }
            }
            k += 1
        }
        var originals: [FloatImage] = []
        for item in chosen {
            do { originals.append(FloatImage(try dataset.image(of: item, decoder: ImageDecoder()))) } catch {
                printError("skipped \(item.path): \(error)")
            }
        }
        guard !originals.isEmpty else { throw PetriCLIError("no readable images in \(dataset.root.path)") }
        let sheet = ContactSheet.make(originals: originals, pipeline: pipeline, copies: copies, seed: seed)
        try sheet.writePNG(to: URL(fileURLWithPath: out))
        print("wrote \(out): \(originals.count) originals (left column) with \(copies) augmented copies each; policy: \(pipeline.spec)")
    }
}
