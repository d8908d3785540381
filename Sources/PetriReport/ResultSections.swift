import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriStudy

/// The sections on how well each method did.
extension StudyReport {
    static func header(_ v: ReportView) -> String {
        let e = SVG.escape, ds = v.dataset
        return "<h1>What works on \(e(ds.root.lastPathComponent))?</h1><div class=\"sub\">\(ds.items.count) images · \(ds.classNames.count) classes: "
            + zip(ds.classNames, ds.classCounts).map { "\(e($0)) (\($1))" }.joined(separator: ", ") + "</div>"
    }

    static func verdict(_ v: ReportView) -> String {
        guard let best = v.best else { return "" }
        let e = SVG.escape, n = best.summary.count
        return """
            <div class="verdict">Best at \(e(best.size)) images per class: <b>\(e(best.method))</b>, balanced accuracy
            <b>\(String(format: "%.3f", best.summary.mean))</b> (95% interval \(String(format: "%.3f–%.3f", best.summary.low, best.summary.high)),
            \(n) \(v.crossValidated ? "fold" : "seed")\(n == 1 ? "" : "s")). Chance level is \(String(format: "%.3f", 1 / Double(max(v.dataset.classNames.count, 1)))).
            \(v.crossValidated
                ? "Cross-validated: each figure is on the fold a model never saw (repeated stratified k-fold on the data left after a held-out set), intervals over folds."
                : "Every figure is on held-out test images the method never saw (30% per class, per seed).")</div>
            """
    }

    static func holdoutTable(_ v: ReportView) -> String {
        guard !v.holdout.isEmpty else { return "" }
        let e = SVG.escape, f = { (x: Double) in String(format: "%.3f", x) }
        var h = "<h2>Held-out set: ensembles of the fold models</h2><p class='sub'>The held-out images were never used for training or choosing. Each method's fold models vote (majority) or average their probabilities.</p>"
        h += "<table><tr><th>method</th><th>balanced accuracy</th><th>accuracy</th><th>macro-F1</th><th>AUC</th><th>images</th></tr>"
        for r in v.holdout {
            h += "<tr><td>\(e(r.method))</td><td>\(f(r.balancedAccuracy))</td><td>\(f(r.accuracy))</td><td>\(f(r.macroF1))</td><td>\(r.auc.map(f) ?? "–")</td><td>\(r.testCount)</td></tr>"
        }
        return h + "</table>"
    }

    static func notes(_ v: ReportView) -> String {
        v.outcome.notes.map { "<p class='note'>\(SVG.escape($0))</p>" }.joined()
    }

    static func learningCurves(_ v: ReportView) -> String {
        let series = v.methods.map { m in
            SVG.Series(name: m, points: v.sizes.enumerated().compactMap { i, s in v.summary(m, s).map { (i, $0.mean, $0.low, $0.high) } })
        }
        let title = v.crossValidated
            ? "<h2>Cross-validated balanced accuracy</h2><p class='sub'>Mean per-class recall on the folds; dots are means over folds and repeats, bars 95% intervals.</p>"
            : "<h2>Learning curves</h2><p class='sub'>Balanced accuracy (mean per-class recall) against training images per class; dots are means over seeds, bars and bands 95% intervals.</p>"
        return title + SVG.learningCurves(xLabels: v.sizes, series: series, yLabel: "balanced accuracy")
    }

    static func resultsTable(_ v: ReportView) -> String {
        let e = SVG.escape
        var h = "<h2>All results</h2><table><tr><th>method</th>" + v.sizes.map { "<th>n = \(e($0))</th>" }.joined() + "</tr>"
        for m in v.methods {
            h += "<tr\(m == v.best?.method ? " class='best'" : "")><td>\(e(m))</td>"
            for s in v.sizes {
                guard let sm = v.summary(m, s) else { h += "<td>–</td>"; continue }
                h += "<td title='95% CI \(String(format: "%.3f–%.3f", sm.low, sm.high))'>\(String(format: "%.3f ± %.3f", sm.mean, sm.standardDeviation))</td>"
            }
            h += "</tr>"
        }
        return h + "</table>"
    }

    /// What `auto` used, and how often.
    static func autoChoices(_ v: ReportView) -> String {
        var counts: [String: Int] = [:]
        for r in v.records { if let c = r.chosen { counts[c, default: 0] += 1 } }
        guard !counts.isEmpty else { return "" }
        return "<p class='sub'><code>auto</code> used (the blend below 10 images per class; above, what inner cross-validation on each training set chose): "
            + counts.sorted { $0.value > $1.value }.map { "\(SVG.escape($0.key)) × \($0.value)" }.joined(separator: ", ") + "</p>"
    }

    /// Per-class recall, the confusion matrix and the most often misclassified images of the best method at the
    /// largest size, over all seeds.
    static func bestMethodDetails(_ v: ReportView) -> String {
        guard let best = v.best?.method, let largest = v.sizes.last else { return "" }
        let e = SVG.escape, ds = v.dataset, k = ds.classNames.count
        let rs = v.records.filter { $0.method == best && $0.sizeLabel == largest }
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        for r in rs { for i in 0..<k { for j in 0..<k { confusion[i][j] += r.confusion[i][j] } } }
        var h = "<h2>Per-class recall — \(e(best)), n = \(e(largest))</h2>" + SVG.bars(labels: ds.classNames, values: Metrics.perClassRecall(confusion))
        h += "<h2>Confusion matrix (all seeds)</h2>" + SVG.confusion(confusion, classes: ds.classNames)
        var wrong: [Int: (count: Int, seen: Int, predicted: [Int: Int])] = [:]
        for r in rs {
            for (t, item) in r.test.enumerated() {
                let p = r.probabilities[t], pred = p.indices.max { p[$0] < p[$1] }!
                var entry = wrong[item] ?? (0, 0, [:])
                entry.seen += 1
                if pred != ds.items[item].label { entry.count += 1; entry.predicted[pred, default: 0] += 1 }
                wrong[item] = entry
            }
        }
        let worst = wrong.filter { $0.value.count > 0 }.sorted { ($0.value.count, $1.key) > ($1.value.count, $0.key) }.prefix(16)
        guard !worst.isEmpty else { return h }
        h += "<h2>Images most often misclassified</h2><p class='sub'>Candidates for label errors or hard cases: check them.</p><div class='grid'>"
        for (i, w) in worst {
            let item = ds.items[i], pred = w.predicted.max { $0.value < $1.value }!.key
            h += card(ds, item, caption: "<b>\(e(ds.classNames[item.label]))</b> → \(e(ds.classNames[pred]))<br>wrong \(w.count)/\(w.seen) seeds")
        }
        return h + "</div>"
    }

    /// A thumbnail card with a caption and the file's name.
    static func card(_ ds: Dataset, _ item: DatasetItem, caption: String) -> String {
        let e = SVG.escape
        return "<div class='card'><img src='\(thumbnail(ds, item) ?? "")' alt=''><br>\(caption)<br><span class='sub' title='\(e(item.relativePath))'>\(e((item.relativePath as NSString).lastPathComponent))</span></div>"
    }
}
