import Foundation
import PetriLearn
import PetriStudy
import Testing

// README example start
/// Fits `method` on a labelled folder as `petri train` does, saves the model, and predicts new images.
func classify(labelled: String, newImages: String, modelFile: String, method: String = "auto") throws -> String {
    let reporter = CollectingReporter()                  // collects warnings and notes
    var training = ModelTraining(dataset: DatasetPolicy(source: labelled))
    training.method = try MethodSpec(parsing: method)    // any method spec (docs/methods.md)
    let (model, summary) = try training.run(reporter: reporter)
    try model.write(to: URL(fileURLWithPath: modelFile))
    print(summary.joined(separator: "\n"))
    let (csv, _) = try Prediction(model: modelFile, inputs: [newImages]).run(reporter: reporter)
    return csv                                           // path,label,confidence[,triage,set][,familiar],p_<class>…
}
// README example end

/// The README's Swift example is this file's `classify`, word for word, and it runs.
@Suite(.serialized) struct ReadmeExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theReadmeShowsThisCode() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let start = try #require(source.range(of: "// README example start\n")), end = try #require(source.range(of: "// README example end"))
        let example = String(source[start.upperBound..<end.lowerBound])
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("```swift\nimport Foundation\nimport PetriLearn\nimport PetriStudy\n\n" + example + "```"))
    }

    @Test func itTrainsAndPredicts() throws {
        let sample = Self.root.appendingPathComponent("Samples/bccd-wbc-mini").path
        let model = FileManager.default.temporaryDirectory.appendingPathComponent("petri-readme-\(UUID().uuidString).petri").path
        let csv = try classify(labelled: sample, newImages: sample + "/lymphocyte", modelFile: model, method: "lp")
        #expect(csv.split(separator: "\n").count == 21)
    }

    /// The example as written, with `auto` (slow: networks and four backbones' features).
    @Test(.enabled(if: slowTests, "set PETRI_SLOW_TESTS=1")) func itTrainsAndPredictsWithAuto() throws {
        let sample = Self.root.appendingPathComponent("Samples/bccd-wbc-mini").path
        let model = FileManager.default.temporaryDirectory.appendingPathComponent("petri-readme-\(UUID().uuidString).petri").path
        let csv = try classify(labelled: sample, newImages: sample + "/monocyte", modelFile: model)
        let lines = csv.split(separator: "\n")
        #expect(lines.count == 17 && lines[0].hasPrefix("path,label,confidence,triage,set,"))
    }
}
