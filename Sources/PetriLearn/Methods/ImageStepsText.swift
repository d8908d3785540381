import Foundation
import PetriData

/// The image steps inside a method spec — preprocessing after `@`, an augmentation policy after `aug=` — as
/// canonical texts joined by `+`: a step with its default settings by its bare name (`clahe`), otherwise the
/// full spec of the step (`clahe(clip=3.0,tiles=8)`), so that two spellings of the same step are one method.
enum ImageStepsText {
    /// Canonical steps of `text` (steps joined by `+`), each checked by the transform parser.
    static func steps(_ text: String) throws -> [String] {
        let parts = text.split(separator: "+", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.contains(where: \.isEmpty) else { throw SpecProblem("an empty step in '\(text)'") }
        return try parts.map(step)
    }

    static func step(_ text: String) throws -> String {
        if Double(text) != nil || text.contains("@") {
            throw SpecProblem("'\(text)': '@' starts the preprocessing of a method; an augmentation step's probability is written p=… inside its parentheses, e.g. hed(sigma=0.05,p=0.5)")
        }
        let parsed: TransformPipeline
        do { parsed = try TransformPipeline.parse(text) } catch { throw SpecProblem("\(error)") }
        guard parsed.steps.count == 1 else { throw SpecProblem("'\(text)' is not one step (join steps with '+')") }
        let spec = parsed.steps[0].spec
        let name = String(text.prefix { $0 != "(" }).trimmingCharacters(in: .whitespaces).lowercased()
        if let bare = try? TransformPipeline.parse(name), bare.steps.count == 1, bare.steps[0].spec == spec { return name }
        return spec
    }

    /// An augmentation policy: a policy name (`cells`, `light`, `ultrasound`, `none`), or steps joined by `+`.
    static func augmentation(_ text: String) throws -> String {
        if TransformPipeline.policies[text] != nil { return text }
        if text.hasPrefix("@") { throw SpecProblem("a policy file (@FILE) cannot be part of a method spec; write its steps joined by '+'") }
        return try steps(text).joined(separator: "+")
    }

    /// A canonical text as `TransformPipeline.augmentation` and `parse` read it: steps joined by ", ".
    static func pipelineText(_ text: String) -> String {
        TransformPipeline.policies[text] != nil ? text : text.replacingOccurrences(of: "+", with: ", ")
    }
}
