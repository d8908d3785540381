import Foundation
import PetriData
import PetriNN

/// A method as a typed value: what `--method` names, what a result is keyed by (`RunKey`), what a model file
/// records. Its text form parses back to the same value (`MethodSpec(s.description) == s`), so a method shown
/// in a report or a record can be pasted into a command. The grammar is in docs/methods.md:
///
/// - a preset (`lp`, `mlp-multi`, `auto`, `finetune`, `scratch-mini`, …), optionally with settings
///   `KEYWORD:key=value:key=value` (`lp:b=lite0+lite1:l=stage6+head:v=8`, `auto:cellnet=none`);
/// - `avg(A|B|…)`: the members' probabilities averaged (soft vote); `lpmlp:…` is `avg(lp:…|mlp:…)`;
/// - `METHOD@STEPS`: the method on preprocessed images, steps joined by `+` (`mlp@reinhard+clahe`).
public indirect enum MethodSpec: Hashable, Sendable {
    case probe(ProbeSpec)
    case fineTune(FineTuneSpec)
    case scratch(ScratchSpec)
    case auto(AutoSpec)
    case average([MethodSpec])
    /// Canonical preprocessing steps (`ImageStepsText`), applied after the dataset's own.
    case preprocessed(MethodSpec, steps: [String])

    /// Reads one method; `backbone` is the backbone of single-backbone presets (`lp`, `mlp`, `finetune`, …).
    public init(parsing text: String, backbone: String = defaultBackbone) throws {
        let spec = text.trimmingCharacters(in: .whitespaces)
        do { self = try Self.read(spec, backbone: backbone) } catch let p as SpecProblem {
            throw MethodSpecError(spec, p.message)
        }
    }

    /// Reads a comma-separated list of methods (commas inside parentheses belong to the method).
    public static func list(_ text: String, backbone: String = defaultBackbone) throws -> [MethodSpec] {
        let parts = SpecText.split(text, on: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.contains(where: \.isEmpty) else { throw MethodSpecError(text, "an empty method in the list") }
        return try parts.map { try MethodSpec(parsing: $0, backbone: backbone) }
    }

    /// The presets, by name, for single-backbone presets on `backbone`.
    public static func presets(backbone: String = defaultBackbone) -> [(name: String, spec: MethodSpec)] {
        let all = ModelRegistry.names
        func probe(_ kind: ProbeSpec.Kind, _ backbones: [String], _ levels: [FeatureLevel] = [.head], views: Int = 1) -> MethodSpec {
            .probe(ProbeSpec(kind, features: FeatureSpec(backbones: backbones, levels: levels, views: views)))
        }
        let lpMulti = probe(.lp, all, views: 8), lpLevelsMulti = probe(.lp, all, [.stage(6), .head], views: 8)
        return [
            ("auto", .auto(AutoSpec())),
            ("auto-fast", .auto(AutoSpec.bases(backbone: backbone)[1].value)),
            ("lp", probe(.lp, [backbone])),
            ("lp-tta", probe(.lp, [backbone], views: 8)),
            ("lp-multi", lpMulti),
            ("lp-levels", probe(.lp, [backbone], [.stage(5), .stage(6), .head], views: 8)),
            ("lp-levels-multi", lpLevelsMulti),
            ("lp-random", probe(.lp, ["random:" + backbone])),
            ("knn", probe(.knn, [backbone])),
            ("proto", probe(.proto, [backbone])),
            ("mlp", probe(.mlp, [backbone])),
            ("mlp-multi", probe(.mlp, all, [.stage(6), .head], views: 8)),
            ("ens-multi", .average([lpMulti, lpLevelsMulti])),
            ("finetune", .fineTune(FineTuneSpec(backbone: backbone))),
            ("partial", .fineTune(FineTuneSpec(backbone: backbone, trainAfter: .stage(5)))),
            ("scratch-lite0", .fineTune(FineTuneSpec.randomInit(backbone: backbone))),
            ("scratch", .scratch(ScratchSpec(net: SmallCNNConfig.cbrTiny.name))),
            ("scratch-small", .scratch(ScratchSpec(net: SmallCNNConfig.cbrSmall.name))),
            ("scratch-mini", .scratch(ScratchSpec(net: SmallCNNConfig.cnnMini.name))),
        ]
    }

    /// Names a method may start with: the presets, `lpmlp:` and `avg(`.
    public static var keywords: [String] { presets().map(\.name) + ["lpmlp", "avg(…)"] }

    static func read(_ spec: String, backbone: String) throws -> MethodSpec {
        guard !spec.isEmpty else { throw SpecProblem("empty") }
        if let at = SpecText.firstTopLevel("@", in: spec) {
            let inner = String(spec[..<at]), steps = String(spec[spec.index(after: at)...])
            if inner.hasSuffix("=") {
                throw SpecProblem("'@' starts the preprocessing of a method: a policy file (@FILE) cannot be part of a method spec; write its steps joined by '+'")
            }
            let method = try read(inner.trimmingCharacters(in: .whitespaces), backbone: backbone)
            if case .preprocessed = method { throw SpecProblem("one '@' per method: join preprocessing steps with '+'") }
            return .preprocessed(method, steps: try ImageStepsText.steps(steps))
        }
        if spec.hasPrefix("avg(") {
            guard spec.hasSuffix(")") else { throw SpecProblem("avg(…) is missing its ')'") }
            let members = SpecText.split(String(spec.dropFirst(4).dropLast()), on: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard members.count >= 2, !members.contains(where: \.isEmpty) else {
                throw SpecProblem("avg needs two or more methods joined by '|', e.g. avg(mlp|scratch-mini)")
            }
            return .average(try members.map { try read($0, backbone: backbone) })
        }
        let parts = SpecText.split(spec, on: ":")
        let keyword = parts[0], settings = Array(parts.dropFirst())
        if keyword == "lpmlp" {
            let lp = try ProbeSpec.applying(settings, to: ProbeSpec(.lp, features: FeatureSpec(backbones: [backbone])))
            var mlp = ProbeSpec(.mlp, features: lp.features)
            mlp.features = lp.features
            return .average([.probe(lp), .probe(mlp)])
        }
        guard let preset = presets(backbone: backbone).first(where: { $0.name == keyword })?.spec else {
            throw SpecProblem("unknown method '\(keyword)'; known: \(keywords.joined(separator: ", "))")
        }
        switch preset {
        case let .probe(p): return .probe(try ProbeSpec.applying(settings, to: p))
        case let .fineTune(f): return .fineTune(try FineTuneSpec.applying(settings, to: f))
        case let .scratch(s): return .scratch(try ScratchSpec.applying(settings, to: s))
        case let .auto(a): return .auto(try AutoSpec.applying(settings, to: a))
        default:
            guard settings.isEmpty else { throw SpecProblem("'\(keyword)' takes no settings") }
            return preset
        }
    }

    /// Every backbone the method reads (frozen features, fine-tuning, auto's CellNet), by registry name.
    public var backbones: Set<String> {
        switch self {
        case let .probe(p): return Set(p.features.backbones + p.partners.flatMap { $0 })
        case let .fineTune(f): return [f.backbone]
        case .scratch: return []
        case let .auto(a): return Set(ModelRegistry.names + (a.cellnet.map { [$0] } ?? []))
        case let .average(members): return members.reduce(into: Set<String>()) { $0.formUnion($1.backbones) }
        case let .preprocessed(inner, _): return inner.backbones
        }
    }
}

extension MethodSpec: LosslessStringConvertible, CustomStringConvertible {
    public init?(_ description: String) {
        guard let s = try? MethodSpec(parsing: description) else { return nil }
        self = s
    }

    /// The canonical text: a preset's name when it is one, else the family keyword and the settings that differ.
    public var description: String {
        if let preset = Self.presets().first(where: { $0.spec == self }) { return preset.name }
        switch self {
        case let .probe(p): return p.keyedDescription
        case let .fineTune(f): return f.keyedDescription
        case let .scratch(s): return s.keyedDescription
        case let .auto(a): return a.keyedDescription
        case let .average(members): return "avg(" + members.map(\.description).joined(separator: "|") + ")"
        case let .preprocessed(inner, steps): return inner.description + "@" + steps.joined(separator: "+")
        }
    }
}

extension MethodSpec: Codable {
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try MethodSpec(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
