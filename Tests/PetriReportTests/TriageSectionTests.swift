import Foundation
import PetriData
import PetriEval
import PetriLearn
import Testing
@testable import PetriReport

@Suite struct TriageSectionTests {
    /// The report's trust section states what the cross-fitted estimate measured, for the best method only,
    /// and draws a curve for every method that has test probabilities.
    @Test func trustSectionReportsTheCrossFittedEstimate() {
        let items = (0..<40).map { DatasetItem(path: "/nonexistent/\($0).png", relativePath: "\($0).png", label: $0 % 2) }
        let ds = Dataset(root: URL(fileURLWithPath: "/nonexistent"), classNames: ["a", "b"], items: items)
        func record(_ method: String, right: (Int) -> Bool) -> CurveRecord {
            let test = Array(0..<40)
            let probabilities = test.map { i -> [Double] in
                let predicted = right(i) ? items[i].label : 1 - items[i].label
                return predicted == 0 ? [0.9, 0.1] : [0.1, 0.9]
            }
            return CurveRecord(dataset: "x", method: method, size: nil, seed: 0, trainCount: 10, testCount: 40,
                               balancedAccuracy: 0, accuracy: 0, macroF1: 0, auc: nil, perClassRecall: [nil, nil],
                               confusion: [[0, 0], [0, 0]], seconds: 0, classNames: ["a", "b"], test: test, probabilities: probabilities)
        }
        let records = [record("good", right: { _ in true }), record("coin", right: { $0 % 4 < 2 })]
        let html = StudyReport.triageSection(records: records, methods: ["good", "coin"], best: "good", size: "all", dataset: ds)
        #expect(html.contains("Can you trust its confidence? — good, n = all"))
        // Always right at 0.9: underconfident (T < 1), every image accepted, sets of one class that always hold it.
        #expect(html.contains("the model is underconfident"))
        #expect(html.contains("would have accepted 100% of the images, and 100% of those were right"))
        #expect(html.contains("held the true class for 100% of the images, with 1.00 classes on average; 100% were a single class"))
        #expect(html.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(!html.contains("Fewer than 20 calibration images"))
        // No probabilities: no section.
        var bare = records[0]
        bare.probabilities = []
        #expect(StudyReport.triageSection(records: [bare], methods: ["good"], best: "good", size: "all", dataset: ds).isEmpty)

        // The whole report, with purification findings: both sections appear, with the flagged image's labels.
        var input = StudyReportInput(dataset: ds, records: records, embedding: nil, command: "petri study x", seeds: [0],
                                     dataHash: "h", versions: [:], seconds: 1)
        input.labelIssues = [LabelIssues.Issue(index: 3, given: 1, suggested: 0, givenProbability: 0.05, suggestedProbability: 0.9)]
        input.outliers = [7]
        input.purificationRecipe = "recipe."
        let report = StudyReport.html(input)
        #expect(report.contains("Can you trust its confidence?"))
        #expect(report.contains("Labels to check") && report.contains("<b>1</b> likely label error ("))
        #expect(report.contains("labelled <b>b</b> (0.05)<br>looks like <span style='color:#e4572e'>a</span> (0.90)"))
        #expect(report.contains("<b>1</b> outlier "))
        input.purificationRecipe = nil
        #expect(!StudyReport.html(input).contains("Labels to check"))
    }
}
