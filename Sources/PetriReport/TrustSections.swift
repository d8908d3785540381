import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriStudy

/// The sections on whether the results can be trusted: confidence, labels, where the model looks.
extension StudyReport {
    static func trust(_ v: ReportView) -> String {
        guard let best = v.best?.method, let largest = v.sizes.last else { return "" }
        return triageSection(records: v.records, methods: v.methods, best: best, size: largest, dataset: v.dataset)
    }

    /// "Can you trust its confidence?": reliability of the best method's probabilities, accuracy against the
    /// share of images accepted for every method, and what a confidence threshold and conformal sets would
    /// have delivered — calibrated on one half of each seed's test split and checked on the other, then
    /// swapped (`TriageEstimate`), so no number is measured on the images it was tuned on.
    static func triageSection(records: [CurveRecord], methods: [String], best: String, size: String, dataset ds: Dataset) -> String {
        let e = SVG.escape
        let k = ds.classNames.count
        func pooled(_ m: String) -> (labels: [Int], probabilities: [[Double]], records: [CurveRecord]) {
            let rs = records.filter { $0.method == m && $0.sizeLabel == size && !$0.probabilities.isEmpty && $0.probabilities.count == $0.test.count }
            return (rs.flatMap { $0.test.map { ds.items[$0].label } }, rs.flatMap(\.probabilities), rs)
        }
        let mine = pooled(best)
        guard !mine.labels.isEmpty else { return "" }
        let target = 0.95, alpha = 0.1
        let estimates = mine.records.map { r in
            TriageEstimate(labels: r.test.map { ds.items[$0].label }, probabilities: r.probabilities, classes: k,
                           targetAccuracy: target, alpha: alpha, seed: r.seed)
        }
        func mean(_ v: [Double]) -> Double { v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count) }
        let ece = mean(estimates.map(\.calibrationError)), eceT = mean(estimates.map(\.calibrationErrorTempered))
        let t = mean(estimates.map(\.temperature))
        let accepted = mean(estimates.map(\.acceptedFraction))
        let acceptedRight = estimates.compactMap(\.acceptedAccuracy)
        let coverage = mean(estimates.map(\.setCoverage)), setSize = mean(estimates.map(\.meanSetSize))
        let singles = mean(estimates.map(\.singletonFraction))
        let halves = estimates.map { $0.images / 2 }.min() ?? 0
        var h = "<h2>Can you trust its confidence? — \(e(best)), n = \(e(size))</h2>"
        h += "<p class='sub'>Left: accuracy per confidence bin of the test predictions (all seeds); bars on the dashed line mean the probabilities can be taken at face value, bars below it mean overconfidence. Right: accuracy of the images a method is surest of, as it accepts more of them — a person checks the rest.</p>"
        let curves = methods.compactMap { m -> (name: String, points: [SelectiveClassification.Point])? in
            let p = pooled(m)
            return p.labels.isEmpty ? nil : (m, SelectiveClassification.riskCoverage(labels: p.labels, probabilities: p.probabilities))
        }
        h += "<div class='grid'>" + SVG.reliability(Calibration.reliability(labels: mine.labels, probabilities: mine.probabilities))
            + SVG.accuracyCoverage(Array(curves.prefix(6)), target: target) + "</div>"
        let pct = { (v: Double) in String(format: "%.0f%%", v * 100) }
        h += "<p>Calibrated on one half of each test split and checked on the other half (then the halves swapped; \(estimates.count) seed\(estimates.count == 1 ? "" : "s"), \(halves)+ images per half):</p><ul>"
        h += "<li><b>Calibration</b>: expected calibration error \(String(format: "%.3f", ece)) as predicted, \(String(format: "%.3f", eceT)) after temperature scaling (T = \(String(format: "%.2f", t)): \(t > 1.05 ? "the model is overconfident" : t < 0.95 ? "the model is underconfident" : "about right")).</li>"
        h += acceptedRight.isEmpty
            ? "<li><b>Abstention</b>: no confidence threshold reached \(pct(target)) accuracy on the calibration halves: every prediction needs a person's check at this training size.</li>"
            : "<li><b>Abstention</b>: a confidence threshold set for \(pct(target)) accuracy would have accepted \(pct(accepted)) of the images, and \(pct(mean(acceptedRight))) of those were right.</li>"
        h += "<li><b>Prediction sets</b> (split conformal, aiming at \(pct(1 - alpha))): the set held the true class for \(pct(coverage)) of the images, with \(String(format: "%.2f", setSize)) classes on average; \(pct(singles)) were a single class.</li></ul>"
        if halves < 20 {
            h += "<p class='note'>Fewer than 20 calibration images per half: these figures are rough (a conformal threshold at 95% needs at least 19 calibration images).</p>"
        }
        return h
    }

    static func labelsToCheck(_ v: ReportView) -> String {
        guard let recipe = v.outcome.purificationRecipe else { return "" }
        let e = SVG.escape, ds = v.dataset, issues = v.outcome.labelIssues, outliers = v.outcome.outliers
        var h = "<h2>Labels to check</h2><p class='sub'>\(e(recipe)) Most suspect first; nothing was changed. <code>petri purify</code> lists them all as CSV.</p>"
        if issues.isEmpty && outliers.isEmpty { h += "<p>No likely label errors or outliers found.</p>" }
        if !issues.isEmpty {
            h += "<p><b>\(issues.count)</b> likely label error\(issues.count == 1 ? "" : "s") (\(String(format: "%.1f", 100 * Double(issues.count) / Double(max(1, ds.items.count))))% of the images):</p><div class='grid'>"
            for issue in issues.prefix(16) {
                h += card(ds, ds.items[issue.index], caption: "labelled <b>\(e(ds.classNames[issue.given]))</b> (\(String(format: "%.2f", issue.givenProbability)))<br>looks like <span style='color:#e4572e'>\(e(ds.classNames[issue.suggested]))</span> (\(String(format: "%.2f", issue.suggestedProbability)))")
            }
            h += "</div>"
        }
        if !outliers.isEmpty {
            h += "<p><b>\(outliers.count)</b> outlier\(outliers.count == 1 ? "" : "s") (unlike any other image: a wrong modality, an artefact, an empty field?):</p><div class='grid'>"
            for i in outliers.prefix(8) { h += card(ds, ds.items[i], caption: "<b>\(e(ds.classNames[ds.items[i].label]))</b>") }
            h += "</div>"
        }
        return h
    }

    static func activationMaps(_ v: ReportView) -> String {
        guard !v.outcome.activationMaps.isEmpty else { return "" }
        let e = SVG.escape, ds = v.dataset
        var h = "<h2>Where the model looks</h2><p class='sub'>Class activation maps of a Lite0 linear probe (seed \(v.outcome.seeds.first ?? 0), largest training set) on test images: yellow-red marks the regions that raised the predicted class's score. A model that looks at the background or the slide edge has learned a shortcut.</p><div class='grid'>"
        for ex in v.outcome.activationMaps {
            let item = ds.items[ex.item], ok = ex.predicted == item.label
            let src = "data:image/png;base64," + Data(ex.overlayPNG).base64EncodedString()
            h += "<div class='card' style='width:170px'><img style='width:160px;height:160px' src='\(src)' alt=''><br>true <b>\(e(ds.classNames[item.label]))</b><br>predicted <span style='color:\(ok ? "#2e933c" : "#e4572e")'>\(e(ds.classNames[ex.predicted]))</span> (\(String(format: "%.2f", ex.confidence)))</div>"
        }
        return h + "</div>"
    }
}
