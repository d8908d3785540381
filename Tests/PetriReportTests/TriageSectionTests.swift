import Foundation
import PetriData
import PetriEval
import PetriLearn
import Testing
@testable import PetriReport
import PetriStudy

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
        var input = StudyOutcome(dataset: ds, records: records, command: "petri study x", seeds: [0],
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

@Suite struct PairedComparisonTests {
    /// Differences seed by seed, worked by hand: +0.1, +0.2, +0.3 → mean 0.2, sd 0.1, t(0.975, 2) = 4.303,
    /// interval 0.2 ± 0.248.
    @Test func pairedDifferenceOnSharedSplitsOnly() throws {
        let d = try #require(PairedDifference(baseline: [0: 0.5, 1: 0.6, 2: 0.7, 9: 0.1], other: [0: 0.6, 1: 0.8, 2: 1.0, 5: 0.9]))
        #expect(d.summary.count == 3)
        #expect(abs(d.summary.mean - 0.2) < 1e-12)
        #expect(abs(d.summary.low - (0.2 - 4.303 * 0.1 / 3.0.squareRoot())) < 1e-3)
        #expect(d.wins == 3 && d.losses == 0)
        // Better on all three splits, but three splits this uneven do not rule out no difference (low −0.048).
        #expect(!d.isClear)
        let steady = try #require(PairedDifference(baseline: [0: 0.5, 1: 0.6, 2: 0.7], other: [0: 0.6, 1: 0.72, 2: 0.81]))
        #expect(steady.isClear)
        let tie = try #require(PairedDifference(baseline: [0: 0.5, 1: 0.6], other: [0: 0.6, 1: 0.5]))
        #expect(!tie.isClear && tie.wins == 1 && tie.losses == 1)
        #expect(PairedDifference(baseline: [0: 0.5], other: [1: 0.5]) == nil)
    }

    /// The report compares every method with the first, per size, labelling `base@steps` by its steps.
    @Test func reportSectionComparesWithTheFirstMethod() {
        func record(_ method: String, _ size: Int, _ seed: UInt64, _ score: Double) -> CurveRecord {
            CurveRecord(dataset: "x", method: method, size: size, seed: seed, trainCount: 10, testCount: 10,
                        balancedAccuracy: score, accuracy: score, macroF1: score, auc: nil, perClassRecall: [nil, nil],
                        confusion: [[0, 0], [0, 0]], seconds: 0, classNames: ["a", "b"])
        }
        var records: [CurveRecord] = []
        for seed: UInt64 in 0..<4 {
            records.append(record("mlp[x]", 5, seed, 0.6 + 0.05 * Double(seed)))
            records.append(record("mlp[x]@grey", 5, seed, 0.7 + 0.05 * Double(seed) + 0.002 * Double(seed)))
            records.append(record("mlp[x]@lbp", 5, seed, 0.4 + 0.05 * Double(seed)))
        }
        let html = StudyReport.pairedSection(records: records, methods: ["mlp[x]", "mlp[x]@grey", "mlp[x]@lbp"], sizes: ["5"])
        #expect(html.contains("Compared with mlp[x] on the same splits"))
        #expect(html.contains(">@grey</text>") && html.contains(">@lbp</text>"))
        #expect(html.contains("+0.103 · 4/4 better"))
        #expect(html.contains("-0.200 · 0/4 better"))
        #expect(html.contains("#2e933c") && html.contains("#e4572e"))
        #expect(StudyReport.pairedSection(records: records, methods: ["mlp[x]"], sizes: ["5"]).isEmpty)
        // Shared beginnings and ends cut off: scratch[net,none,min400] vs scratch[net,hsv,min400] → "hsv".
        let renamed = records.map { r -> CurveRecord in
            var r = r
            r.method = ["mlp[x]": "scratch[net,none,min400]", "mlp[x]@grey": "scratch[net,hsv,min400]", "mlp[x]@lbp": "scratch[net,blur,min400]"][r.method]!
            return r
        }
        let named = StudyReport.pairedSection(records: renamed, methods: ["scratch[net,none,min400]", "scratch[net,hsv,min400]", "scratch[net,blur,min400]"], sizes: ["5"])
        #expect(named.contains(">hsv</text>") && named.contains(">blur</text>"))
    }
}
