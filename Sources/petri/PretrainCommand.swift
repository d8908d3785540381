import ArgumentParser
import Foundation
import PetriData
import PetriEngine
import PetriLearn
import PetriNN

/// `petri pretrain`: a domain backbone ("CellNet") from pooled labelled image sets.
struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "Train a domain backbone (a \"CellNet\") on pooled labelled image sets; use it like any backbone.",
        discussion: """
            Pools the classes of every DATA (named SET/CLASS, at most --per-class images each, a seeded draw), \
            starts from an ImageNet EfficientNet-Lite and trains it to tell them all apart: the layers above \
            --after (default: stages 4–7 and the head, on trunk activations of --views augmented views computed \
            once; on PBC this beat training only stages 6–7, see the README), with the fine-tuning recipe of `petri curve --method partial`. The network without its \
            classifier is written to the weights folder as NAME.petri-backbone, and NAME then works wherever a \
            backbone does. Compare it with ImageNet on the same splits, on a set it was not trained on:

            Example:
              petri pretrain ../shared/datasets/pbc-8class-500 ../shared/datasets/malaria-nih-50gray --name cellnet-pbc
              petri study ../shared/datasets/bccd-wbc-crops --methods mlp:b=lite0:l=stage6+head:v=8,mlp:b=cellnet-pbc:l=stage6+head:v=8
            """)

    @Argument(help: "Labelled image sets to pool (folders DATA/<class>/<image>, CSVs or .npz).")
    var data: [String]

    @Option(help: "Name of the new backbone (written as NAME.petri-backbone in the weights folder).")
    var name = "cellnet-lite0"

    @Option(help: "ImageNet backbone to start from.")
    var base = "efficientnet-lite0"

    @Option(help: "At most this many images per class of each set (a seeded draw).")
    var perClass = 300

    @Option(help: "Train the layers above this level (stage1…stage7), or 'none' to train every layer (slow).")
    var after = "stage3"

    @Option(help: "Passes over the pooled images.")
    var epochs = 8

    @Option(help: "Augmented views per image whose trunk activations are kept (with --after).")
    var views = 4

    @Option(help: "Seed of the draw and of training.")
    var seed: UInt64 = 0

    @Option(help: "Write the backbone here instead of the weights folder.")
    var out: String?

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard !data.isEmpty else { throw ValidationError("give at least one labelled image set") }
        guard !name.isEmpty, !name.contains("/"), !ModelRegistry.names.contains(name) else {
            throw ValidationError("--name must be a new backbone name (not \(ModelRegistry.names.joined(separator: ", ")), no '/')")
        }
        guard after == "none" || FeatureLevel(after) != nil else { throw ValidationError("--after: unknown level '\(after)'") }
        guard perClass >= 1, epochs >= 1, views >= 1 else { throw ValidationError("--per-class, --epochs and --views must be positive") }
    }

    func run() throws {
        let start = Date()
        // Pool: SET/CLASS classes, at most --per-class images each.
        var sets: [Dataset] = []
        for path in data {
            let ds = try Dataset.load(URL(fileURLWithPath: path))
            for w in ds.warnings { printError("warning: \(w)") }
            let (readable, failures) = FeatureBank.readableItems(ds)
            for (p, r) in failures { printError("skipped \(p): \(r)") }
            sets.append(readable)
        }
        let (pooled, setNames) = try Dataset.pooled(sets, perClass: perClass, seed: seed)
        let counts = pooled.classCounts
        let sources = setNames.map { set in
            set + ": " + pooled.classNames.indices.filter { pooled.classNames[$0].hasPrefix(set + "/") }
                .map { "\(pooled.classNames[$0].dropFirst(set.count + 1)) \(counts[$0])" }.joined(separator: ", ")
        }
        if !quiet { for s in sources { printError("pooled \(s)") } }
        guard pooled.classNames.count >= 2 else { throw PetriCLIError("pretraining needs at least two classes across the sets") }
        let items = pooled.items, classNames = pooled.classNames

        // The cached trunk activations must fit in memory: refuse before spending minutes, saying what to change.
        if after != "none", let level = FeatureLevel(after) {
            let (probe, config) = try ModelRegistry.make(base)
            let side = config.inputSize
            let perView = try probe.activations(Tensor(zeros: [1, side, side, 3]), upTo: level).count
            let bytes = Double(perView) * 4 * Double(views) * Double(pooled.items.count)
            let physical = Double(ProcessInfo.processInfo.physicalMemory)
            let gib = { (b: Double) in String(format: "%.1f GiB", b / 1_073_741_824) }
            if bytes > 0.7 * physical {
                throw PetriCLIError("the trunk activations above \(after) of \(pooled.items.count) images × \(views) views need about \(gib(bytes)), more than this machine can spare (\(gib(physical)) in all): use a later --after (e.g. stage\(min(7, (Int(after.dropFirst(5)) ?? 3) + 1))), fewer --views or a smaller --per-class")
            }
            if !quiet { printError("keeping about \(gib(bytes)) of trunk activations in memory") }
        }
        var method = FineTuneMethod(backbone: base, trainAfter: after == "none" ? nil : FeatureLevel(after))
        method.epochs = epochs
        method.cachedViews = views
        let bank = FeatureBank(dataset: pooled)
        let stages = StageProgress(quiet: quiet)
        var context = MethodContext(dataset: pooled, bank: bank, seed: seed)
        context.progress = { stage, d, t in stages.update(stage, d, t) }
        if !quiet { printError("training \(method.name) on \(items.count) images, \(classNames.count) classes") }
        let (model, _, _) = try method.trainedModel(train: Array(pooled.items.indices), context: context)

        let url: URL
        if let out {
            url = URL(fileURLWithPath: out)
        } else {
            guard let dir = ModelRegistry.weightSearchPath.last else { throw PetriCLIError("no weights folder") }
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            url = dir.appendingPathComponent(name + "." + BackboneFile.fileExtension)
        }
        try BackboneFile.write(model, base: base, trainedOn: sources,
                               recipe: "\(method.name), seed \(seed), \(items.count) images, \(classNames.count) classes, Petri \(PetriVersion.string)",
                               to: url)
        print("backbone: \(url.path)")
        print("use it as --backbone \(name) or in a method, e.g. mlp:b=\(name):l=stage6+head:v=8"
              + (out == nil ? "" : " (after moving it to a weights folder: \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: " or ")))"))
        print(String(format: "time: %.0fs", Date().timeIntervalSince(start)))
    }
}
