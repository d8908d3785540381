import Foundation
import PetriData
import PetriLearn

/// Which new images are unlike every training image (`SavedModel.Familiarity`): those are never marked `accept`,
/// whatever their confidence. When most of a folder is unfamiliar, one warning says what differs and what to try.
enum FamiliarityCheck {
    /// One flag per image (nil: the model file has no reference). Judged on the images with the adaptation's
    /// scale but their own colour: a colour match to the training images hides the very difference (another
    /// stain, another scanner) the check is there to see, and another lab's images would pass it.
    /// `tries`: what the warning suggests besides labelling a sample (the adaptations not already asked for).
    static func flags(_ model: SavedModel, _ dataset: Dataset, adaptation asked: TransformPipeline, file: String,
                      reporter: StudyReporter, tries: [String]) throws -> [Bool]? {
        let adaptation = TransformPipeline(asked.steps.filter { !($0 is ReinhardNormalization) })
        guard let reference = model.familiarity,
              let checked = try model.familiar(dataset, adaptation: adaptation, file: file, progress: reporter.progressCallback)
        else { return nil }
        let familiar = checked.map(\.familiar)
        let unfamiliar = familiar.filter { !$0 }.count
        if unfamiliar * 2 > familiar.count {
            var sample = dataset
            sample.items = Array(dataset.items.prefix(64))
            let differences = reference.images?.differences(model.imageStatistics(sample, adaptation: adaptation)) ?? []
            let what = differences.isEmpty ? "" : " (\(differences.joined(separator: ", ")) than the training images)"
            let measure = "label a sample and measure it with `petri evaluate`"
            let advice = tries.isEmpty ? measure.prefix(1).uppercased() + measure.dropFirst() : "Try " + (tries + [measure]).joined(separator: ", or ")
            reporter.warning("\(unfamiliar) of \(familiar.count) images are unlike every training image\(what): they are marked 'review' and the model's confidence means little on them. \(advice).")
        }
        return familiar
    }
}
