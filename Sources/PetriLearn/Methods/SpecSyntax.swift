import Foundation

/// A method setting that cannot be read: which spec, and what is wrong with it (the key and the values allowed).
public struct MethodSpecError: Error, CustomStringConvertible, Equatable {
    public var spec: String
    public var problem: String

    public init(_ spec: String, _ problem: String) {
        self.spec = spec
        self.problem = problem
    }

    public var description: String { "method '\(spec)': \(problem)" }
}

/// The problem with one value, before it is known which spec it belongs to.
struct SpecProblem: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// One `key=value` setting of a method family: how it reads its value into the family's settings, and how it
/// writes the setting back (one text per value; a repeatable key may hold several).
struct SpecKey<Value> {
    var name: String
    /// The values allowed, for error messages and `docs/methods.md`.
    var allowed: String
    var repeatable = false
    var text: (Value) -> [String]
    var set: (inout Value, String) throws -> Void
}

/// A family of methods written `KEYWORD:key=value:...`: the keywords it may start from (each a complete
/// setting), and its keys. Its text form is the starting keyword that needs the fewest keys, then the keys that
/// differ from it, in the order of `keys`; parsing starts from the keyword and applies the keys.
protocol KeyedSpec: Hashable {
    /// The keywords of the family with their settings for `backbone`, the most general first.
    static func bases(backbone: String) -> [(keyword: String, value: Self)]
    /// The keys a setting of this value may use.
    var keys: [SpecKey<Self>] { get }
}

extension KeyedSpec {
    /// `base` with `settings` (`key=value` texts) applied; a key is given at most once unless repeatable.
    static func applying(_ settings: [String], to base: Self) throws -> Self {
        var value = base
        var seen = Set<String>()
        let keys = base.keys
        for setting in settings {
            let parts = setting.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw SpecProblem("'\(setting)' is not key=value (keys: \(keys.map(\.name).joined(separator: ", ")))")
            }
            guard let key = keys.first(where: { $0.name == parts[0] }) else {
                throw SpecProblem("unknown key '\(parts[0])'; keys: \(keys.map(\.name).joined(separator: ", "))")
            }
            guard key.repeatable || seen.insert(key.name).inserted else { throw SpecProblem("key '\(key.name)' given twice") }
            do { try key.set(&value, parts[1]) } catch let p as SpecProblem {
                throw SpecProblem("\(key.name)=\(parts[1]): \(p.message) (allowed: \(key.allowed))")
            }
        }
        return value
    }

    /// The shortest text: of the base keywords whose keys give back exactly this value, the one that needs the
    /// fewest keys (the earlier on a tie), then those keys.
    var keyedDescription: String {
        let candidates = Self.bases(backbone: defaultBackbone).map { base -> (keyword: String, settings: [String], exact: Bool) in
            let settings = keys.flatMap { key -> [String] in
                let mine = key.text(self)
                guard mine != key.text(base.value) else { return [] }
                return mine.map { "\(key.name)=\($0)" }
            }
            return (base.keyword, settings, (try? Self.applying(settings, to: base.value)) == self)
        }
        let usable = candidates.contains(where: \.exact) ? candidates.filter(\.exact) : candidates
        let best = usable.min { $0.settings.count < $1.settings.count }!
        return ([best.keyword] + best.settings).joined(separator: ":")
    }
}

/// The backbone of single-backbone presets (`lp`, `mlp`, `finetune`...) unless the command says otherwise.
public let defaultBackbone = "efficientnet-lite0"

/// Text forms of settings: short backbone names, numbers without a trailing `.0`, strict readers.
enum SpecText {
    /// `efficientnet-lite0` ↔ `lite0`; the random-weight control `random:efficientnet-lite0` ↔ `random-lite0`.
    static func backbone(_ name: String) -> String {
        if name.hasPrefix("random:") { return "random-" + backbone(String(name.dropFirst(7))) }
        return name.hasPrefix("efficientnet-") ? String(name.dropFirst("efficientnet-".count)) : name
    }

    static func readBackbone(_ text: String) throws -> String {
        if text.hasPrefix("random-") { return "random:" + (try readBackbone(String(text.dropFirst(7)))) }
        guard !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw SpecProblem("'\(text)' is not a backbone name")
        }
        return text.range(of: #"^lite[0-9]+$"#, options: .regularExpression) != nil ? "efficientnet-" + text : text
    }

    static func number(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)"
    }

    static func number(_ x: Float) -> String {
        x == x.rounded() && abs(x) < 1e7 ? String(Int(x)) : "\(x)"
    }

    static func integer(_ text: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let v = Int(text) else { throw SpecProblem("not a whole number") }
        guard range.contains(v) else { throw SpecProblem("out of range") }
        return v
    }

    static func real(_ text: String, above low: Double, through high: Double) throws -> Double {
        guard let v = Double(text), v.isFinite else { throw SpecProblem("not a number") }
        guard v > low, v <= high else { throw SpecProblem("out of range") }
        return v
    }

    static func flag(_ text: String) throws -> Bool {
        switch text {
        case "1": return true
        case "0": return false
        default: throw SpecProblem("not 0 or 1")
        }
    }

    static func oneOf(_ text: String, _ allowed: [String]) throws -> String {
        guard allowed.contains(text) else { throw SpecProblem("not one of \(allowed.joined(separator: ", "))") }
        return text
    }

    /// Splits at `separator` outside parentheses.
    static func split(_ text: String, on separator: Character) -> [String] {
        var out: [String] = [], depth = 0, current = ""
        for ch in text {
            if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1 }
            if ch == separator && depth == 0 { out.append(current); current = "" } else { current.append(ch) }
        }
        out.append(current)
        return out
    }

    /// The index of the first `character` outside parentheses.
    static func firstTopLevel(_ character: Character, in text: String) -> String.Index? {
        var depth = 0
        for i in text.indices {
            let ch = text[i]
            if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1 } else if ch == character && depth == 0 { return i }
        }
        return nil
    }
}
