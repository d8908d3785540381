import Foundation
import PetriData
import PetriNN

extension MethodSpec {
    /// The method the spec describes, ready to run. Every backbone it reads must be known to the registry (an
    /// ImageNet one, or a trained one in the weights folders); `warn` receives what the method will do
    /// differently from the spec's face value (auto without its default CellNet).
    /// Results are keyed by the spec's text, not by the method's `name` (an internal label).
    public func method(warn: (String) -> Void = { _ in }) throws -> any FewShotMethod {
        do { return try build(warn: warn) } catch let p as SpecProblem {
            throw MethodSpecError(description, p.message)
        }
    }

    private func known(_ backbones: Set<String>) throws {
        for b in backbones.sorted() {
            do { _ = try ModelRegistry.entry(b.hasPrefix("random:") ? String(b.dropFirst(7)) : b) } catch { throw SpecProblem("\(error)") }
        }
    }

    private func build(warn: (String) -> Void) throws -> any FewShotMethod {
        switch self {
        case let .probe(p):
            try known(backbones)
            return p.method()
        case let .fineTune(f):
            try known(backbones)
            return try f.method()
        case let .scratch(s): return try s.method()
        case let .auto(a): return try AutoRecipe.method(a, warn: warn)
        case let .average(members):
            return EnsembleMethod(try members.map { try $0.method(warn: warn) }, label: description)
        case let .preprocessed(inner, steps):
            let pipeline: TransformPipeline
            do { pipeline = try TransformPipeline.parse(steps.joined(separator: ", ")) } catch { throw SpecProblem("\(error)") }
            return PreprocessedMethod(try inner.method(warn: warn), preprocessing: pipeline)
        }
    }
}
