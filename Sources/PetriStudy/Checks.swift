import Foundation
import PetriData
import PetriLearn
import PetriNN

/// Checks on what a run is about to measure, reported as warnings.
public enum StudyChecks {
    /// A backbone pretrained on this very set (by folder name) has seen its test images: its scores here would
    /// flatter it. `backbones`: the ones to check (nil: every trained backbone in the weights folders).
    public static func pretrainingOverlap(_ ds: Dataset, backbones: Set<String>? = nil, reporter: StudyReporter) {
        let setName = ds.root.lastPathComponent
        for name in ModelRegistry.trainedNames where backbones?.contains(name) ?? true {
            guard let url = try? ModelRegistry.weightsURL(for: ModelRegistry.entry(name)),
                  let header = try? BackboneFile.read(url).header else { continue }
            if header.trainedOn.contains(where: { $0.hasPrefix(setName + ":") }) {
                reporter.warning("\(name) was pretrained on a set named \(setName), like this one: it has seen these test images, so scores here flatter it (use a backbone pretrained without this set, e.g. --method auto:cellnet=NAME, or auto:cellnet=none)")
            }
        }
    }

    /// Every backbone the methods read.
    public static func backbones(_ methods: [MethodEntry]) -> Set<String> {
        methods.reduce(into: Set<String>()) { $0.formUnion(backbonesUsed($1.method)) }
    }
}
