import ArgumentParser
import Foundation
import PetriData
import PetriEval
import PetriLearn
import PetriNN

/// Dataset options shared by the study commands.
struct DatasetOptions: ParsableArguments {
    @Argument(help: "Dataset: a folder DATA/<class>/<image>, a CSV (path,label[,group]) or a .npz (MedMNIST style).")
    var data: String

    @Option(help: "Drop classes with fewer images than this (with a warning).")
    var minClassSize = 10

    @Option(help: "Use at most this many images per class (a seeded, documented draw; see --draw-seed).")
    var maxPerClass: Int?

    @Option(help: "Seed of the --max-per-class draw.")
    var drawSeed: UInt64 = 0

    @Option(help: "Preprocessing every method sees, e.g. 'reinhard' (stain normalisation), 'grey', 'clahe' or 'macenko, centercrop(fraction=0.9)'; a saved model records it.")
    var preprocess = "none"

    func preprocessing() throws -> TransformPipeline {
        do { return try TransformPipeline.parse(preprocess) } catch { throw ValidationError("--preprocess: \(error)") }
    }

    func validate() throws { _ = try preprocessing() }

    /// `["preprocess": spec]` when there is preprocessing (absent otherwise, so earlier runs still match).
    var preprocessConfig: [String: Any] {
        let spec = (try? preprocessing().spec) ?? preprocess
        return spec == "none" ? [:] : ["preprocess": spec]
    }

    /// Loads, drops unreadable files and small classes, applies the per-class draw; reports all of it.
    func load(quiet: Bool) throws -> Dataset {
        var ds = try Dataset.load(URL(fileURLWithPath: data))
        for w in ds.warnings { printError("warning: \(w)") }
        let (readable, failures) = FeatureBank.readableItems(ds)
        for (p, r) in failures { printError("skipped \(p): \(r)") }
        ds = readable
        let before = ds.classNames
        ds = ds.droppingClasses(smallerThan: minClassSize)
        for w in ds.warnings.dropFirst(ds.warnings.count - (before.count - ds.classNames.count)) { printError("warning: \(w)") }
        if let m = maxPerClass { ds = ds.limitingClasses(to: m, seed: drawSeed) }
        ds.preprocessing = try preprocessing()
        guard ds.classNames.count >= 2 else { throw DatasetError.tooFewClasses(ds.root.path, found: ds.classNames) }
        if !quiet {
            printError("dataset: \(ds.items.count) images, " + zip(ds.classNames, ds.classCounts).map { "\($0) \($1)" }.joined(separator: ", "))
        }
        return ds
    }
}

/// Builds methods from their command-line names.
enum MethodFactory {
    /// Splits a comma-separated method list, keeping commas inside parentheses (`mlp@clahe(clip=3,tiles=4)`).
    static func split(_ list: String) -> [String] {
        var out: [String] = [], depth = 0, current = ""
        for ch in list {
            if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1 }
            if ch == "," && depth == 0 { out.append(current); current = "" } else { current.append(ch) }
        }
        out.append(current)
        return out.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static let names = ["auto", "lp", "lp-tta", "lp-multi", "lp-levels", "lp-levels-multi", "knn", "proto", "mlp", "lp-random",
                        "finetune", "partial", "ens-multi", "scratch", "scratch-small", "scratch-mini", "scratch-lite0", "mlp-multi", "auto-fast", "auto-full"]

    static func make(_ name: String, backbone: String) throws -> any FewShotMethod {
        // `avg(A|B|...)`: the members' class probabilities averaged (soft voting), each trained on the same images.
        if name.hasPrefix("avg("), name.hasSuffix(")") {
            let inner = name.dropFirst(4).dropLast()
            let members = try inner.split(separator: "|").map { try make(String($0).trimmingCharacters(in: .whitespaces), backbone: backbone) }
            guard members.count >= 2 else { throw ValidationError("method '\(name)': avg needs two or more members joined by '|'") }
            return EnsembleMethod(members, label: name)
        }
        // `METHOD@PREPROCESSING`: the method on preprocessed images (steps joined by '+', e.g. mlp@reinhard+clahe).
        if let at = name.firstIndex(of: "@") {
            let spec = String(name[name.index(after: at)...]).replacingOccurrences(of: "+", with: ",")
            let pipeline: TransformPipeline
            do { pipeline = try TransformPipeline.parse(spec) } catch { throw ValidationError("method '\(name)': \(error)") }
            return PreprocessedMethod(try make(String(name[..<at]), backbone: backbone), preprocessing: pipeline)
        }
        if let colon = name.firstIndex(of: ":") { return try custom(String(name[..<colon]), String(name[name.index(after: colon)...])) }
        let single = FeatureSpec(backbones: [backbone])
        switch name {
        case "lp": return LinearProbeMethod(features: single)
        case "lp-tta": return LinearProbeMethod(features: FeatureSpec(backbones: [backbone], views: 8))
        case "lp-multi":
            return LinearProbeMethod(features: FeatureSpec(backbones: ModelRegistry.names, views: 8))
        case "lp-levels":
            return LinearProbeMethod(features: FeatureSpec(backbones: [backbone], levels: [.stage(5), .stage(6), .head], views: 8))
        case "lp-levels-multi":
            return LinearProbeMethod(features: FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8))
        case "knn": return NearestNeighbourMethod(.knn(5), features: single)
        case "mlp": return MLPMethod(features: single)
        case "mlp-multi":
            return MLPMethod(features: FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8))
        case "lp-random": return LinearProbeMethod(features: FeatureSpec(backbones: ["random:" + backbone]))
        case "ens-multi":
            return EnsembleMethod([LinearProbeMethod(features: FeatureSpec(backbones: ModelRegistry.names, views: 8)),
                                   LinearProbeMethod(features: FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8))],
                                  label: "ens-multi")
        case "finetune": return FineTuneMethod(backbone: backbone)
        case "scratch": return ScratchMethod(.cbrTiny)
        case "scratch-small": return ScratchMethod(.cbrSmall)
        case "scratch-mini": return ScratchMethod(.cnnMini)
        case "scratch-lite0": return randomInitLite0(backbone: backbone)
        case "partial": return FineTuneMethod(backbone: backbone, trainAfter: .stage(5))
        case "proto": return NearestNeighbourMethod(.prototype, features: single)
        case "auto": return auto(backbone: backbone)
        case "auto-fast": return auto(backbone: backbone, fast: true)
        case "auto-full":
            let multiLevel = FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: 8)
            return AutoMethod(candidates: [LinearProbeMethod(features: multiLevel), MLPMethod(features: multiLevel)])
        default: throw ValidationError("unknown method '\(name)'; known: \(names.joined(separator: ", "))")
        }
    }

    /// A probe with explicit features: `lp:b=lite0+lite1:l=stage6+head:v=8:c=1+0.6` (backbones, levels,
    /// dihedral views, central-crop fractions); also `proto:` and `knn:`.
    static func custom(_ kind: String, _ settings: String) throws -> any FewShotMethod {
        if kind == "finetune" || kind == "partial" { return try customFineTune(kind, settings) }
        if kind == "scratch" { return try customScratch(settings) }
        if kind.hasPrefix("auto") { return try customAuto(kind, settings) }
        var spec = FeatureSpec()
        var viewRows = false, hidden: Int?, steps: Int?, colour = 0, copyViews: Int?, partnerBackbones: [[String]] = []
        for part in settings.split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("method setting '\(part)' is not key=value") }
            let values = kv[1].split(separator: "+").map(String.init)
            switch kv[0] {
            case "b": spec.backbones = values.map { $0.hasPrefix("lite") ? "efficientnet-" + $0 : $0 }
            case "l":
                spec.levels = try values.map { guard let l = FeatureLevel($0) else { throw ValidationError("unknown level '\($0)'") }; return l }
            case "v": spec.views = Int(kv[1]) ?? 1
            case "c": spec.crops = values.compactMap(Double.init)
            case "rows": viewRows = kv[1] == "1"
            case "h": hidden = Int(kv[1])
            case "steps": steps = Int(kv[1])
            case "colour", "color": colour = Int(kv[1]) ?? 0
            case "cv": copyViews = Int(kv[1])
            case "with": partnerBackbones.append(values.map { $0.hasPrefix("lite") ? "efficientnet-" + $0 : $0 })
            default: throw ValidationError("unknown method setting '\(kv[0])' (b, l, v, c; mlp: rows, h, steps, colour, cv, with)")
            }
        }
        switch kind {
        case "lp": return LinearProbeMethod(features: spec)
        case "mlp":
            // `with=B`: a second head on backbones B (same levels, views and crops), probabilities averaged.
            var m = MLPMethod(features: spec, partners: partnerBackbones.map { b in var p = spec; p.backbones = b; return p })
            m.viewRows = viewRows
            m.colourCopies = colour
            m.copyViews = copyViews
            if let hidden { m.head.hidden = hidden }
            if let steps { m.head.steps = steps }
            return m
        case "lpmlp": return EnsembleMethod([LinearProbeMethod(features: spec), MLPMethod(features: spec)], label: "lp+mlp[\(spec)]")
        case "proto": return NearestNeighbourMethod(.prototype, features: spec)
        case "knn": return NearestNeighbourMethod(.knn(5), features: spec)
        default: throw ValidationError("unknown probe kind '\(kind)' (lp, mlp, lpmlp, proto, knn)")
        }
    }

    /// Fine-tuning with explicit settings: `finetune:b=lite0:e=30:min=100:c=0.5:aug=cells:lr=0.001`
    /// (`partial:` trains above `after=stage5` by default).
    static func customFineTune(_ kind: String, _ settings: String) throws -> any FewShotMethod {
        var m = FineTuneMethod(trainAfter: kind == "partial" ? .stage(5) : nil)
        for part in settings.split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("method setting '\(part)' is not key=value") }
            switch kv[0] {
            case "b": m.backbone = kv[1].hasPrefix("lite") ? "efficientnet-" + kv[1] : kv[1]
            case "e": m.epochs = Int(kv[1]) ?? m.epochs
            case "min": m.minimumSteps = Int(kv[1]) ?? m.minimumSteps
            case "c": m.crop = Double(kv[1]) ?? 1
            case "aug": m.augmentation = kv[1]
            case "lr": m.learningRate = Float(kv[1]) ?? m.learningRate
            case "body": m.bodyLearningRateScale = Float(kv[1]) ?? m.bodyLearningRateScale
            case "after": m.trainAfter = FeatureLevel(kv[1])
            case "bs": m.batchSize = Int(kv[1]) ?? m.batchSize
            case "views": m.cachedViews = Int(kv[1]) ?? m.cachedViews
            case "lpft": m.linearProbeHead = kv[1] != "0"
            case "tta": m.testTimeAugmentation = kv[1] != "0"
            default: throw ValidationError("unknown fine-tuning setting '\(kv[0])' (b, e, min, c, aug, lr, body, after, bs, views, lpft, tta)")
            }
        }
        return m
    }

    /// The backbone's architecture from random initialisation, trained with batch-statistics BN (slow:
    /// the batch-BN training path runs ~8 images/s here).
    static func randomInitLite0(backbone: String) -> FineTuneMethod {
        var m = FineTuneMethod(backbone: backbone)
        m.pretrained = false
        m.batchNorm = .batch
        m.learningRate = 2e-3
        m.bodyLearningRateScale = 1
        m.minimumSteps = 200
        return m
    }

    /// `scratch:net=cbr-small:min=600:e=40:aug=cells:lr=0.002`
    static func customScratch(_ settings: String) throws -> any FewShotMethod {
        var m = ScratchMethod()
        for part in settings.split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("method setting '\(part)' is not key=value") }
            switch kv[0] {
            case "net":
                guard let c = SmallCNNConfig.named(kv[1]) else {
                    throw ValidationError("unknown net '\(kv[1])' (\(SmallCNNConfig.all.map(\.name).joined(separator: ", ")))")
                }
                m.config = c
            case "min": m.recipe.minimumSteps = Int(kv[1]) ?? m.recipe.minimumSteps
            case "e": m.recipe.epochs = Int(kv[1]) ?? m.recipe.epochs
            case "aug": m.recipe.augmentation = kv[1]
            case "lr": m.recipe.learningRate = Float(kv[1]) ?? m.recipe.learningRate
            case "bs": m.recipe.batchSize = Int(kv[1]) ?? 16; m.recipe.microBatch = m.recipe.batchSize
            case "c": m.crop = Double(kv[1]) ?? 1
            default: throw ValidationError("unknown scratch setting '\(kv[0])' (net, min, e, aug, lr, bs, c)")
            }
        }
        return m
    }

    /// `auto`: first the image scale (whole image or a central crop of 0.7, 0.5 or 0.4 of the shorter side, by
    /// a single-view Lite0 probe's inner CV; on PBC's centred cells 0.4 beats the whole image by 0.28 at n=5),
    /// then the recipe at that scale among `autoCandidates` (their blend below 10 images per class).
    /// `auto-fast` leaves out training from scratch (about half of `auto`'s time on bccd-wbc-crops, session 4).
    static func auto(backbone: String, fast: Bool = false, cellnet: String? = defaultCellNet, views: Int = 8,
                     probeWithCellNet: Bool = true, probeScore: AutoMethod.ScaleScore = .trueClassProbability) -> AutoMethod {
        let partner = cellnet.flatMap(availableCellNet)
        let probeBackbones = [backbone] + (probeWithCellNet ? partner.map { [$0] } ?? [] : [])
        var m = AutoMethod(crops: [1, 0.7, 0.5, 0.4],
                           scaleProbe: { c in scaleProbe(backbones: probeBackbones, crop: c) },
                           candidates: { scales in autoCandidates(crops: scales, scratch: !fast, cellnet: partner, views: views) })
        m.scaleScore = probeScore
        if fast { m.label = "auto-fast" }
        if let partner, partner != defaultCellNet { m.label += "[cellnet=\(partner)]" }
        if cellnet == nil { m.label += "[cellnet=none]" }
        if views != 8 { m.label += "[views=\(views)]" }
        if !probeWithCellNet, partner != nil { m.label += "[probe=lite0]" }
        if probeScore == .balancedAccuracy { m.label += "[probe-score=accuracy]" }
        // For studying the selection rule: each candidate's test score in the records (never used to choose).
        m.recordTestScores = ProcessInfo.processInfo.environment["PETRI_AUTO_TEST_SCORES"] == "1"
        return m
    }

    /// The domain backbone `auto` pairs with ImageNet: Petri's CellNet (`weights/cellnet.petri-backbone`,
    /// installed into the weights folder by `make setup`; see weights/README.md for what it was trained on).
    static let defaultCellNet = "cellnet"

    /// `name` when its backbone file is in the weights folders; otherwise nil, with a warning (once).
    static func availableCellNet(_ name: String) -> String? {
        if (try? ModelRegistry.entry(name)) != nil { return name }
        CellNetWarning.once(name)
        return nil
    }

    /// `auto:cellnet=NAME` (another trained backbone, e.g. one pretrained without the set under test) or
    /// `auto:cellnet=none` (ImageNet features only); also `auto-fast:...`.
    static func customAuto(_ kind: String, _ settings: String) throws -> any FewShotMethod {
        guard kind == "auto" || kind == "auto-fast" else { throw ValidationError("unknown method '\(kind)' (auto, auto-fast)") }
        var cellnet: String? = defaultCellNet, views = 8, probeBoth = true, probeScore = AutoMethod.ScaleScore.trueClassProbability
        for part in settings.split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2, kv[0] == "views", let v = Int(kv[1]), [1, 2, 4, 8].contains(v) { views = v; continue }
            if kv.count == 2, kv[0] == "probe", ["both", "lite0"].contains(kv[1]) { probeBoth = kv[1] == "both"; continue }
            if kv.count == 2, kv[0] == "probe-score", ["p", "accuracy"].contains(kv[1]) {
                probeScore = kv[1] == "p" ? .trueClassProbability : .balancedAccuracy; continue
            }
            guard kv.count == 2, kv[0] == "cellnet" else { throw ValidationError("unknown auto setting '\(part)' (cellnet=NAME|none, views=1|2|4|8, probe=both|lite0, probe-score=p|accuracy)") }
            if kv[1] == "none" { cellnet = nil } else {
                guard (try? ModelRegistry.entry(kv[1])) != nil else {
                    throw ValidationError("auto: no backbone '\(kv[1])' in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: ", ")) (trained ones: \(ModelRegistry.trainedNames.joined(separator: ", ")))")
                }
                cellnet = kv[1]
            }
        }
        return auto(backbone: ModelRegistry.names[0], fast: kind == "auto-fast", cellnet: cellnet, views: views, probeWithCellNet: probeBoth, probeScore: probeScore)
    }

    /// The probe that ranks image scales: logistic regression on one view of the backbones' head features at
    /// a fixed C = 10 (the peers' LP setting). Choosing C by its own inner CV made the probes cost 12–20 s
    /// per evaluation (19 fits per probe, 36 probes at n=5) for a ranking that C hardly moves. With a CellNet,
    /// ImageNet Lite0's and the CellNet's features side by side (`probe=both`, the default; `probe=lite0`:
    /// Lite0 alone): over bccd, PBC and busi at n=5 and n=20 the two score the same (sum of the six means 4.735
    /// vs 4.736, each cell moved by one seed's crop), and on pneumonia, never tuned on, both was ahead at both
    /// sizes (0.836 / 0.887 vs 0.824 / 0.876).
    static func scaleProbe(backbones: [String], crop: Double) -> LinearProbeMethod {
        var probe = LinearProbeMethod(features: FeatureSpec(backbones: backbones, crops: [crop]))
        probe.probe.cGrid = [10]
        return probe
    }

    /// What `auto` chooses among, by inner cross-validation on the training set:
    /// - an MLP head on stage-6 + head features of Lite0, 1 and 2, averaged over the 8 dihedral views. It is
    ///   at least as good as logistic regression on the same features everywhere we measured (5 seeds, n=5/20:
    ///   bccd 0.684/0.806 vs 0.664/0.784, PBC at crop 0.4 0.816/0.930 vs 0.783/0.912, busi 0.590/0.732 vs
    ///   0.580/0.717), and choosing between the two on a few images only added noise;
    /// - a small CNN trained from scratch (cnn-mini) on the same crop: on white-cell crops it beats every
    ///   frozen-feature recipe (bccd n=5/20: 0.757/0.867), on ultrasound and on PBC it loses, hence the choice;
    /// - and their blend (`AutoMethod.blend`), which is all `auto` uses below 10 images per class.
    static func autoCandidates(crops: [Double], scratch: Bool = true, cellnet: String? = nil, views: Int = 8) -> [any FewShotMethod] {
        let crop = crops[0]
        let multiLevel = FeatureSpec(backbones: ModelRegistry.names, levels: [.stage(6), .head], views: views, crops: [crop])
        // One head per feature source and scale, averaged: ImageNet then CellNet at the chosen crop, then both
        // at the runner-up scale when a crop won.
        var partners: [FeatureSpec] = []
        for (i, c) in crops.prefix(2).enumerated() {
            for backbones in [ModelRegistry.names] + (cellnet.map { [[$0]] } ?? []) where !(i == 0 && backbones == ModelRegistry.names) {
                var spec = multiLevel
                spec.backbones = backbones
                spec.crops = [c]
                partners.append(spec)
            }
        }
        var list: [any FewShotMethod] = [MLPMethod(features: multiLevel, partners: partners)]
        if scratch {
            list.append(ScratchMethod(.cnnMini, crop: crop))
        }
        return list
    }
}

struct CurveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curve",
        abstract: "Learning curves by the few-shot protocol: methods × training-set sizes × seeds, as JSON lines.",
        discussion: """
            For each seed: a stratified 30% test split (duplicates kept together), then training sets of the \
            first n images per class of the rest (n from --sizes; "all" = the whole pool). One JSON object per \
            (method, size, seed) with method, size, seed, n_train, balanced_accuracy, accuracy, macro_f1, auc, \
            per_class_recall, confusion, seconds. Results already in --json are skipped (resume).

            Methods: \(MethodFactory.names.joined(separator: ", ")). Spelled out: lp:/mlp:/knn:/proto:\
            b=lite0+lite1:l=stage6+head:v=8:c=0.5 (mlp: with=cellnet adds a head on another backbone, \
            averaged), finetune:..., scratch:..., auto:cellnet=NAME|none:views=4, avg(A|B) (soft vote), \
            METHOD@STEPS (on preprocessed images).

            `auto` pairs an MLP head on ImageNet Lite0+1+2 features with one on Petri's CellNet (Lite0 \
            pretrained on PBC and NIH malaria cells): do not judge it on those sets with the shipped CellNet \
            (--method auto:cellnet=NAME with one pretrained without them, or auto:cellnet=none).

            Examples:
              petri curve Samples/bccd-wbc-mini --sizes 5,10,all --seeds 0,1,2 --json curve.jsonl
              petri curve pbc/ --max-per-class 100 --method auto:cellnet=cellnet-bccd,lp --json pbc.jsonl
            """)

    @OptionGroup var dataset: DatasetOptions

    @Option(help: "Training images per class, comma-separated; 'all' for the whole training pool.")
    var sizes = "5,10,20,50,all"

    @Option(help: "Seeds, comma-separated.")
    var seeds = "0,1,2,3,4"

    @Option(help: "Methods, comma-separated.")
    var method = "auto"

    @Option(help: "Backbone for single-backbone methods.")
    var backbone = "efficientnet-lite0"

    @Option(help: "Write JSON lines here (appending; existing results are skipped).")
    var json: String?

    @Flag(help: "No progress output.")
    var quiet = false

    @OptionGroup var store: StoreOptions

    /// The settings that identify a run (and that `--resume` must match).
    func runConfig(_ methods: [any FewShotMethod]) -> [String: Any] {
        ["dataset": dataset.data, "sizes": sizes, "seeds": seeds, "methods": methods.map(\.name), "backbone": backbone,
         "min_class_size": dataset.minClassSize, "max_per_class": dataset.maxPerClass.map { $0 as Any } ?? NSNull(),
         "draw_seed": dataset.drawSeed, "petri": PetriVersion.string].merging(dataset.preprocessConfig) { a, _ in a }
            .merging(trainedBackboneConfig(methods)) { a, _ in a }
    }

    func parsedSizes() throws -> [Int?] {
        try sizes.split(separator: ",").map { s in
            let t = s.trimmingCharacters(in: .whitespaces)
            if t == "all" { return nil }
            guard let n = Int(t), n >= 1 else { throw ValidationError("--sizes: '\(t)' is not a positive number or 'all'") }
            return n
        }
    }

    func parsedSeeds() throws -> [UInt64] {
        try seeds.split(separator: ",").map {
            guard let s = UInt64($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--seeds: '\($0)' is not a seed") }
            return s
        }
    }

    func validate() throws {
        _ = try parsedSizes()
        _ = try parsedSeeds()
        for m in MethodFactory.split(method) { _ = try MethodFactory.make(m, backbone: backbone) }
    }

    func run() throws {
        let start = Date()
        let ds = try dataset.load(quiet: quiet)
        let methods = try MethodFactory.split(method).map { try MethodFactory.make($0, backbone: backbone) }
        warnAboutPretrainingOverlap(ds, backbones: methods.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1)) })
        let bank = FeatureBank(dataset: ds)
        let stages = StageProgress(quiet: quiet)
        bank.progress = { stage, done, total in stages.update(stage, done, total) }
        let recorder = try RunRecorder(options: store, kind: "curve", dataset: ds, dataHash: datasetHash(ds),
                                       config: runConfig(methods), quiet: quiet)
        // Resume: skip (method, size, seed) already in the JSON file.
        var done = Set<String>()
        if let json, let text = try? String(contentsOfFile: json, encoding: .utf8) {
            for l in text.split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any] else { continue }
                guard (o["preprocess"] as? String ?? "none") == ds.preprocessing.spec else { continue }
                done.insert("\(o["method"] ?? "")|\(o["size"] ?? "")|\(o["seed"] ?? "")")
            }
        }
        let out = json.map { JSONLinesWriter(path: $0) }
        var results: [CurveRecord] = recorder.earlier
        do {
        try LearningCurve(sizes: try parsedSizes(), seeds: try parsedSeeds()).run(
            dataset: ds, bank: bank, methods: methods,
            skip: { m, size, seed in
                done.contains("\(m)|\(size.map(String.init) ?? "all")|\(seed)") || recorder.isDone(m, size, seed)
            }
        ) { r in
            results.append(r)
            try out?.append(r.json.merging(dataset.preprocessConfig) { a, _ in a })
            try recorder.record(r, dataset: ds)
            if !quiet {
                printError(String(format: "%@ n=%@ seed %llu: balanced accuracy %.3f%@ (%.1fs)", r.method, r.sizeLabel, r.seed,
                                  r.balancedAccuracy, r.chosen.map { " via \($0)" } ?? "", r.seconds))
            }
        }
        } catch {
            recorder.fail()
            throw error
        }
        recorder.finish(seconds: Date().timeIntervalSince(start), output: json)
        printSummary(results)
        print(String(format: "time: %.1fs", Date().timeIntervalSince(start)))
    }
}

/// Appends one JSON object per line, flushing each, so an interrupted run keeps what finished.
final class JSONLinesWriter {
    let path: String
    init(path: String) { self.path = path }

    func append(_ object: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        data.append(0x0A)
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw PetriCLIError("\(path): cannot open for writing")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: data)
    }
}

/// Mean ± sd and 95% interval of balanced accuracy per method and size.
func printSummary(_ results: [CurveRecord]) {
    let methods = results.map(\.method).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    let sizes = results.map(\.sizeLabel).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    guard !results.isEmpty else { return }
    print("balanced accuracy, mean ± sd [95% CI] (seeds)")
    for m in methods {
        for s in sizes {
            let rs = results.filter { $0.method == m && $0.sizeLabel == s }
            guard let first = rs.first else { continue }
            let sum = Summary(rs.map(\.balancedAccuracy), within: 0...1)
            let label = first.evaluation == "cv" ? "k-fold" : first.evaluation == "holdout" ? "held-out" : "n=" + s
            print(String(format: "  %@  %@: %.3f ± %.3f [%.3f, %.3f] (%d)", m, label, sum.mean, sum.standardDeviation,
                         sum.low, sum.high, sum.count))
        }
    }
}

/// Says once per process that the CellNet is missing and `auto` uses ImageNet features only.
enum CellNetWarning {
    nonisolated(unsafe) static var warned: Set<String> = []
    static let lock = NSLock()
    static func once(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        guard warned.insert(name).inserted else { return }
        printError("warning: backbone '\(name)' is not in \(ModelRegistry.weightSearchPath.map(\.path).joined(separator: ", ")): `auto` uses ImageNet features only. Run `make setup` to install it.")
    }
}

/// A backbone pretrained on this very set (by folder name) has seen its test images: its scores here would
/// flatter it. `backbones`: the ones to check (nil: every trained backbone in the weights folders).
func warnAboutPretrainingOverlap(_ ds: Dataset, backbones: Set<String>? = nil) {
    let setName = ds.root.lastPathComponent
    for name in ModelRegistry.trainedNames where backbones?.contains(name) ?? true {
        guard let url = try? ModelRegistry.weightsURL(for: ModelRegistry.entry(name)),
              let header = try? BackboneFile.read(url).header else { continue }
        if header.trainedOn.contains(where: { $0.hasPrefix(setName + ":") }) {
            printError("warning: \(name) was pretrained on a set named \(setName), like this one: it has seen these test images, so scores here flatter it (use a backbone pretrained without this set, e.g. --method auto:cellnet=NAME, or auto:cellnet=none)")
        }
    }
}

/// `["trained_backbones": name → identity]` for the trained backbones (CellNet) the methods read, so that a run
/// records which one it used and does not resume on another (absent when there are none).
func trainedBackboneConfig(_ methods: [any FewShotMethod]) -> [String: Any] {
    let used = methods.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1)) }
    guard let ids = SavedModel.trainedBackboneIdentities(Array(used)) else { return [:] }
    return ["trained_backbones": ids]
}
