import Testing
@testable import PetriEval

@Suite struct MetricsTests {
    // labels 0,0,0,1,1,2 ; predictions 0,1,0,1,1,0
    let labels = [0, 0, 0, 1, 1, 2]
    let predictions = [0, 1, 0, 1, 1, 0]

    @Test func confusionAndRecall() {
        let m = Metrics.confusionMatrix(labels: labels, predictions: predictions, classes: 3)
        #expect(m == [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
        let r = Metrics.perClassRecall(m)
        #expect(r[0]! == 2.0 / 3 && r[1]! == 1 && r[2]! == 0)
    }

    @Test func balancedAccuracyIsMeanRecall() {
        // (2/3 + 1 + 0) / 3
        #expect(abs(Metrics.balancedAccuracy(labels: labels, predictions: predictions, classes: 3) - 5.0 / 9) < 1e-12)
        // a class absent from the labels does not count
        #expect(Metrics.balancedAccuracy(labels: [0, 1], predictions: [0, 2], classes: 3) == 0.5)
    }

    @Test func accuracyAndMacroF1() {
        #expect(abs(Metrics.accuracy(labels: labels, predictions: predictions) - 4.0 / 6) < 1e-12)
        // F1: class0 tp2 actual3 pred3 → 4/6; class1 tp2 actual2 pred3 → 4/5; class2 tp0 actual1 pred0 → 0
        let expected = (4.0 / 6 + 4.0 / 5 + 0) / 3
        #expect(abs(Metrics.macroF1(labels: labels, predictions: predictions, classes: 3) - expected) < 1e-12)
    }

    @Test func aucWithTies() {
        // positives scores 0.8, 0.4 ; negatives 0.4, 0.1 → pairs: (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=.5, (0.4>0.1)=1
        let auc = Metrics.binaryAUC(positive: [true, true, false, false], scores: [0.8, 0.4, 0.4, 0.1])!
        #expect(abs(auc - 3.5 / 4) < 1e-12)
        #expect(Metrics.binaryAUC(positive: [true, true], scores: [0.1, 0.2]) == nil)
    }

    @Test func summaryInterval() {
        let s = Summary([1, 2, 3, 4, 5])
        #expect(s.mean == 3)
        #expect(abs(s.standardDeviation - 2.5.squareRoot()) < 1e-12)
        // t(0.975, 4) = 2.776
        #expect(abs(s.high - (3 + 2.776 * 2.5.squareRoot() / 5.0.squareRoot())) < 1e-9)
        // Two seeds of a balanced accuracy: t(0.975, 1) = 12.706, cut to 0…1.
        let two = Summary([0.75, 0.85], within: 0...1)
        #expect(two.high == 1 && abs(two.low - 0.1647) < 1e-3)
        #expect(abs(Summary([0.75, 0.85]).high - (0.8 + 12.706 * 0.005.squareRoot() / 2.0.squareRoot())) < 1e-3)
    }
}
