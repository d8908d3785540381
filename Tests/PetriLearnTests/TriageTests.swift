import Foundation
import Testing
@testable import PetriEval

/// Calibration, selective classification and conformal sets against cases worked out by hand.
@Suite struct TriageTests {
    // Confidences 0.9 (right), 0.6 (right), 0.7 (right), 0.8 (wrong: label 1, predicted 0).
    let labels = [0, 0, 1, 1]
    let probabilities = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]]

    @Test func reliabilityBinsAndCalibrationError() {
        let bins = Calibration.reliability(labels: labels, probabilities: probabilities)
        #expect(bins.map(\.count) == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
        #expect(bins[8].accuracy == 0 && bins[9].accuracy == 1)
        // (|1 − 0.9| + |1 − 0.6| + |1 − 0.7| + |0 − 0.8|) / 4
        #expect(abs(Calibration.expectedCalibrationError(labels: labels, probabilities: probabilities) - 0.4) < 1e-12)
    }

    @Test func riskCoverageAreaAndThresholds() {
        let curve = SelectiveClassification.riskCoverage(labels: labels, probabilities: probabilities)
        #expect(curve.map(\.threshold) == [0.9, 0.8, 0.7, 0.6])
        #expect(curve.map(\.coverage) == [0.25, 0.5, 0.75, 1])
        let risks = [0, 0.5, 1.0 / 3, 0.25]
        #expect(zip(curve.map(\.risk), risks).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(abs(SelectiveClassification.areaUnderRiskCoverage(labels: labels, probabilities: probabilities)
                    - (0 + 0.5 + 1.0 / 3 + 0.25) / 4) < 1e-12)
        // 75% accuracy holds at full coverage (3 of 4); 90% only for the single most confident image.
        #expect(SelectiveClassification.threshold(forAccuracy: 0.75, labels: labels, probabilities: probabilities) == 0.6)
        #expect(SelectiveClassification.threshold(forAccuracy: 0.9, labels: labels, probabilities: probabilities) == 0.9)
        #expect(SelectiveClassification.threshold(forAccuracy: 0.5, labels: [1], probabilities: [[0.9, 0.1]]) == nil)
        // Tied confidences enter together.
        let tied = SelectiveClassification.riskCoverage(labels: [0, 1, 0], probabilities: [[0.7, 0.3], [0.7, 0.3], [0.6, 0.4]])
        #expect(tied.map(\.coverage) == [2.0 / 3, 1])
        #expect(tied[0].risk == 0.5)
    }

    @Test func conformalThresholdNeedsEnoughCalibrationImages() {
        // Scores 1 − p(label): 0.1, 0.4, 0.3, 0.8 → sorted 0.1, 0.3, 0.4, 0.8.
        // α = 0.25: rank ⌈5 · 0.75⌉ = 4 → q = 0.8.  α = 0.1: rank ⌈4.5⌉ = 5 > 4 → no finite threshold.
        let q = ConformalPrediction.threshold(labels: labels, probabilities: probabilities, alpha: 0.25)
        #expect(q.map { abs($0 - 0.8) < 1e-12 } == true)
        #expect(ConformalPrediction.threshold(labels: labels, probabilities: probabilities, alpha: 0.1) == nil)
        #expect(ConformalPrediction.predictionSet([0.25, 0.75], threshold: 0.8) == [1, 0])
        #expect(ConformalPrediction.predictionSet([0.1, 0.9], threshold: 0.8) == [1])
        #expect(ConformalPrediction.predictionSet([0.5, 0.3, 0.2], threshold: 0.1) == [0])   // never empty
        #expect(ConformalPrediction.predictionSet([0.2, 0.5, 0.3], threshold: nil) == [1, 2, 0])
        // 19 calibration images are the fewest that give a finite threshold at α = 0.05 (protocol.md).
        let p19 = [[Double]](repeating: [0.9, 0.1], count: 19)
        #expect(ConformalPrediction.threshold(labels: [Int](repeating: 0, count: 18), probabilities: Array(p19.prefix(18)), alpha: 0.05) == nil)
        #expect(ConformalPrediction.threshold(labels: [Int](repeating: 0, count: 19), probabilities: p19, alpha: 0.05) != nil)
    }

    @Test func temperatureScalingMatchesTheObservedAccuracy() {
        // Ten images at confidence 0.9. With 9 right the model is calibrated (T = 1); with 8 right the
        // calibrated confidence is 0.8: 9^(1/T) = 4, T = ln 9 / ln 4.
        let p = [[Double]](repeating: [0.9, 0.1], count: 10)
        let nineRight = [Int](repeating: 0, count: 9) + [1]
        let eightRight = [Int](repeating: 0, count: 8) + [1, 1]
        #expect(abs(Calibration.fitTemperature(labels: nineRight, probabilities: p) - 1) < 1e-4)
        let t = Calibration.fitTemperature(labels: eightRight, probabilities: p)
        #expect(abs(t - log(9) / log(4)) < 1e-4)
        #expect(abs(Calibration.tempered(p, temperature: t)[0][0] - 0.8) < 1e-4)
        #expect(Calibration.negativeLogLikelihood(labels: eightRight, probabilities: Calibration.tempered(p, temperature: t))
                < Calibration.negativeLogLikelihood(labels: eightRight, probabilities: p))
    }

    @Test func crossFittedTriageOnAPerfectAndAnOverconfidentModel() {
        // Always right and sure: everything accepted, every set a single, correct class.
        let labels = (0..<40).map { $0 % 4 }
        let sure = labels.map { y in (0..<4).map { $0 == y ? 1.0 : 0.0 } }
        let perfect = TriageEstimate(labels: labels, probabilities: sure, classes: 4)
        #expect(perfect.images == 40 && perfect.acceptedFraction == 1 && perfect.acceptedAccuracy == 1)
        #expect(perfect.setCoverage == 1 && perfect.meanSetSize == 1 && perfect.singletonFraction == 1)
        // Right on half the images, always 0.97 sure: temperature above 1, calibration error falls, and no
        // threshold reaches 95% accuracy, so nothing is accepted; the sets grow to keep ≥ 90% coverage.
        let over = labels.enumerated().map { i, y in
            let predicted = i % 2 == 0 ? y : (y + 1) % 4
            return (0..<4).map { $0 == predicted ? 0.97 : 0.01 }
        }
        let e = TriageEstimate(labels: labels, probabilities: over, classes: 4)
        #expect(e.temperature > 1)
        #expect(e.calibrationErrorTempered < e.calibrationError)
        #expect(e.acceptedFraction == 0 && e.acceptedAccuracy == nil)
        #expect(e.setCoverage >= 0.9 && e.meanSetSize > 1)
    }
}

/// Confident learning on a case worked out by hand.
@Suite struct LabelIssueTests {
    @Test func confidentJointOffDiagonalIsFlaggedMostSuspectFirst() {
        // Class 0 images: p0 = 0.9, 0.8, 0.1 → t0 = 0.6. Class 1 images: p1 = 0.7, 0.9, 0.5 → t1 = 0.7.
        let labels = [0, 0, 0, 1, 1, 1]
        let p: [[Double]] = [[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.1, 0.9], [0.5, 0.5]]
        let t = LabelIssues.thresholds(labels: labels, probabilities: p, classes: 2)
        #expect(abs(t[0] - 0.6) < 1e-12 && abs(t[1] - 0.7) < 1e-12)
        // Image 2 (labelled 0, p1 = 0.9 ≥ 0.7): an issue. Image 5 (labelled 1, p0 = 0.5 < 0.6, p1 = 0.5 < 0.7):
        // no class is confident, so it is not flagged. Image 3 (p1 = 0.7 ≥ t1): its own class, fine.
        let issues = LabelIssues.find(labels: labels, probabilities: p, classes: 2)
        #expect(issues == [LabelIssues.Issue(index: 2, given: 0, suggested: 1, givenProbability: 0.1, suggestedProbability: 0.9)])
        // Two disputed images come most suspect first.
        let more = LabelIssues.find(labels: labels + [1], probabilities: p + [[0.95, 0.05]], classes: 2)
        #expect(more.map(\.index) == [6, 2])
    }
}
