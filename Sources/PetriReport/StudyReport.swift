import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn

/// Everything a study report shows, gathered by the `study` command.
public struct StudyReportInput {
    public var dataset: Dataset
    public var records: [CurveRecord]
    /// Features used for the 2-D map (`[items, D]`), optional.
    public var embedding: Tensor?
    public var command: String
    public var seeds: [UInt64]
    public var dataHash: String
    public var versions: [String: String]
    public var seconds: Double
    public var notes: [String]
    /// Class activation maps of a sample of test images (optional).
    public var activationMaps: [ClassActivationMaps.Example] = []
    /// Likely label errors and outliers over the whole dataset (`petri purify`'s findings), optional.
    public var labelIssues: [LabelIssues.Issue] = []
    public var outliers: [Int] = []
    /// How the findings were made, for the section's subtitle (nil: no purification ran).
    public var purificationRecipe: String?

    public init(dataset: Dataset, records: [CurveRecord], embedding: Tensor?, command: String, seeds: [UInt64],
                dataHash: String, versions: [String: String], seconds: Double, notes: [String] = []) {
        self.dataset = dataset; self.records = records; self.embedding = embedding; self.command = command
        self.seeds = seeds; self.dataHash = dataHash; self.versions = versions; self.seconds = seconds; self.notes = notes
    }
}

/// A one-line verdict of a study: the best method at the largest training size.
public struct StudyHeadline: Sendable {
    public var method: String
    public var size: String
    public var summary: Summary
}

public enum StudyReport {
    /// Sizes in the order they were run, methods in first-seen order.
    static func axes(_ records: [CurveRecord]) -> (methods: [String], sizes: [String]) {
        var methods: [String] = [], sizes: [(Int, String)] = []
        for r in records {
            if !methods.contains(r.method) { methods.append(r.method) }
            if !sizes.contains(where: { $0.1 == r.sizeLabel }) { sizes.append((r.size ?? Int.max, r.sizeLabel)) }
        }
        return (methods, sizes.sorted { $0.0 < $1.0 }.map(\.1))
    }

    /// Each method against the first on the same splits (seed by seed), per training size: whether a
    /// preprocessing, an augmentation or a recipe helps, with the split-to-split noise taken out.
    static func pairedSection(records all: [CurveRecord], methods: [String], sizes: [String]) -> String {
        let records = all.filter { $0.evaluation == "few-shot" }
        guard methods.count > 1, let baseline = methods.first else { return "" }
        let others = Array(methods.dropFirst())
        // `mlp[...]@clahe` against `mlp[...]`, `scratch[cnn-mini,hsv,min400]` against `scratch[cnn-mini,none,min400]`:
        // label each by what differs (the names' shared beginning and end cut off).
        let prefix = methods.dropFirst().reduce(baseline) { String($0.commonPrefix(with: $1)) }
        let rest = methods.map { String($0.dropFirst(prefix.count)) }
        let suffix = String(rest.dropFirst().reduce(String(rest[0].reversed())) { String($0.commonPrefix(with: String($1.reversed()))) }.reversed())
        func label(_ m: String) -> String {
            let middle = String(m.dropFirst(prefix.count).dropLast(suffix.count))
            return middle.isEmpty ? m : middle
        }
        func scores(_ m: String, _ size: String) -> [UInt64: Double] {
            Dictionary(records.filter { $0.method == m && $0.sizeLabel == size }.map { ($0.seed, $0.balancedAccuracy) },
                       uniquingKeysWith: { a, _ in a })
        }
        var plots = ""
        for size in sizes {
            let base = scores(baseline, size)
            let rows = others.compactMap { m in PairedDifference(baseline: base, other: scores(m, size)).map { (label(m), $0) } }
            guard !rows.isEmpty else { continue }
            plots += "<h3>n = \(SVG.escape(size)) per class</h3>" + SVG.differences(rows)
        }
        guard !plots.isEmpty else { return "" }
        return "<h2>Compared with \(SVG.escape(baseline)) on the same splits</h2><p class='sub'>Difference in balanced accuracy "
            + "from the first method, seed by seed (same training and test images), mean and 95% interval. Green: better on "
            + "these splits beyond the noise; red: worse; grey: no clear difference.</p>" + plots
    }

    public static func headline(_ all: [CurveRecord]) -> StudyHeadline? {
        let records = all.filter { $0.evaluation != "holdout" }
        let (methods, sizes) = axes(records)
        guard let largest = sizes.last else { return nil }
        let candidates = methods.compactMap { m -> (String, Summary)? in
            let v = records.filter { $0.method == m && $0.sizeLabel == largest }.map(\.balancedAccuracy)
            return v.isEmpty ? nil : (m, Summary(v, within: 0...1))
        }
        guard let best = candidates.max(by: { $0.1.mean < $1.1.mean }) else { return nil }
        return StudyHeadline(method: best.0, size: largest, summary: best.1)
    }

    /// Top two principal components of the rows of `x` (power iteration with deflation).
    static func pca2(_ x: Tensor) -> [(Double, Double)] {
        let n = x.shape[0], d = x.shape[1]
        var centred = x
        var mean = [Float](repeating: 0, count: d)
        x.withUnsafeBufferPointer { p in for i in 0..<n { for j in 0..<d { mean[j] += p[i * d + j] / Float(n) } } }
        centred.withUnsafeMutableBufferPointer { p in for i in 0..<n { for j in 0..<d { p[i * d + j] -= mean[j] } } }
        var rng = SeededGenerator(seed: 1)
        var components: [[Float]] = []
        var projections: [[Float]] = []
        for _ in 0..<2 {
            var v = (0..<d).map { _ in rng.normal() }
            var xv = [Float](repeating: 0, count: n)
            for _ in 0..<40 {
                // xv = X v ; v = Xᵀ xv ; remove earlier components ; normalise
                centred.withUnsafeBufferPointer { p in
                    v.withUnsafeBufferPointer { vp in
                        xv.withUnsafeMutableBufferPointer { o in
                            sgemm(transposeA: false, transposeB: false, m: n, n: 1, k: d, a: p.baseAddress!, lda: d,
                                  b: vp.baseAddress!, ldb: 1, c: o.baseAddress!, ldc: 1)
                        }
                    }
                    xv.withUnsafeBufferPointer { xp in
                        v.withUnsafeMutableBufferPointer { o in
                            sgemm(transposeA: true, transposeB: false, m: d, n: 1, k: n, a: p.baseAddress!, lda: d,
                                  b: xp.baseAddress!, ldb: 1, c: o.baseAddress!, ldc: 1)
                        }
                    }
                }
                for c in components {
                    let dot = zip(v, c).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                    for j in 0..<d { v[j] -= dot * c[j] }
                }
                let norm = max(v.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                v = v.map { $0 / norm }
            }
            centred.withUnsafeBufferPointer { p in
                xv = (0..<n).map { i in (0..<d).reduce(Float(0)) { $0 + p[i * d + $1] * v[$1] } }
            }
            components.append(v)
            projections.append(xv)
        }
        return (0..<n).map { (Double(projections[0][$0]), Double(projections[1][$0])) }
    }

    static func thumbnail(_ dataset: Dataset, _ item: DatasetItem, side: Int = 112) -> String? {
        guard let img = try? dataset.image(of: item, decoder: ImageDecoder()) else { return nil }
        let f = FloatImage(img), scale = Double(side) / Double(max(img.width, img.height))
        let small = f.resized(width: max(1, Int(Double(img.width) * scale)), height: max(1, Int(Double(img.height) * scale)))
        guard let png = try? small.rgb.pngData() else { return nil }
        return "data:image/png;base64," + Data(png).base64EncodedString()
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

    public static func html(_ input: StudyReportInput) -> String {
        let ds = input.dataset
        // Held-out results of fold ensembles (k-fold mode) get their own table; the rest are curves.
        let records = input.records.filter { $0.evaluation != "holdout" }
        let holdout = input.records.filter { $0.evaluation == "holdout" }
        let crossValidated = records.contains { $0.evaluation == "cv" }
        let (methods, sizes) = axes(records)
        let e = SVG.escape
        func summary(_ m: String, _ s: String) -> Summary? {
            let v = records.filter { $0.method == m && $0.sizeLabel == s }.map(\.balancedAccuracy)
            return v.isEmpty ? nil : Summary(v, within: 0...1)
        }
        var h = """
            <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Petri study — \(e(ds.root.lastPathComponent))</title>
            <style>
            body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
            h1{font-size:1.6em;margin-bottom:.1em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
            .sub{color:#666} .verdict{background:#f4f8fb;border-left:4px solid #1b6ca8;padding:.8em 1em;margin:1.2em 0;font-size:1.05em}
            table{border-collapse:collapse;font-size:.92em} td,th{padding:.35em .7em;border-bottom:1px solid #eee;text-align:right}
            th:first-child,td:first-child{text-align:left} tr.best td{font-weight:600;background:#f2f9f2}
            .chart{width:100%;height:auto;max-width:760px} .chart.small{max-width:560px}
            .tick{font-size:11px;fill:#555} .axis{font-size:12px;fill:#333} .legend{font-size:12px;fill:#222} .cell{font-size:11px;fill:#111}
            .grid{display:flex;flex-wrap:wrap;gap:14px} .card{width:130px;font-size:.78em;text-align:center;overflow-wrap:anywhere}
            .card img{width:112px;height:112px;object-fit:contain;background:#f5f5f5;border-radius:4px}
            code,pre{background:#f6f6f6;padding:.1em .3em;border-radius:3px;font-size:.88em} pre{padding:.7em;overflow-x:auto}
            .note{color:#8a5a00}
            </style></head><body>
            <h1>What works on \(e(ds.root.lastPathComponent))?</h1>
            <div class="sub">\(ds.items.count) images · \(ds.classNames.count) classes: \(zip(ds.classNames, ds.classCounts).map { "\(e($0)) (\($1))" }.joined(separator: ", "))</div>
            """
        if let best = headline(records) {
            h += """
                <div class="verdict">Best at \(e(best.size)) images per class: <b>\(e(best.method))</b>, balanced accuracy
                <b>\(String(format: "%.3f", best.summary.mean))</b> (95% interval \(String(format: "%.3f–%.3f", best.summary.low, best.summary.high)),
                \(best.summary.count) \(crossValidated ? "fold" : "seed")\(best.summary.count == 1 ? "" : "s")). Chance level is \(String(format: "%.3f", 1 / Double(max(ds.classNames.count, 1)))).
                \(crossValidated
                    ? "Cross-validated: each figure is on the fold a model never saw (repeated stratified k-fold on the data left after a held-out set), intervals over folds."
                    : "Every figure is on held-out test images the method never saw (30% per class, per seed).")</div>
                """
        }
        if !holdout.isEmpty {
            h += "<h2>Held-out set: ensembles of the fold models</h2><p class='sub'>The held-out images were never used for training or choosing. Each method's fold models vote (majority) or average their probabilities.</p>"
            h += "<table><tr><th>method</th><th>balanced accuracy</th><th>accuracy</th><th>macro-F1</th><th>AUC</th><th>images</th></tr>"
            for r in holdout {
                h += "<tr><td>\(e(r.method))</td><td>\(String(format: "%.3f", r.balancedAccuracy))</td><td>\(String(format: "%.3f", r.accuracy))</td><td>\(String(format: "%.3f", r.macroF1))</td><td>\(r.auc.map { String(format: "%.3f", $0) } ?? "–")</td><td>\(r.testCount)</td></tr>"
            }
            h += "</table>"
        }
        for n in input.notes { h += "<p class='note'>\(e(n))</p>" }

        // Learning curves
        let series = methods.map { m in
            SVG.Series(name: m, points: sizes.enumerated().compactMap { i, s in
                summary(m, s).map { (i, $0.mean, $0.low, $0.high) }
            })
        }
        h += crossValidated
            ? "<h2>Cross-validated balanced accuracy</h2><p class='sub'>Mean per-class recall on the folds; dots are means over folds and repeats, bars 95% intervals.</p>"
            : "<h2>Learning curves</h2><p class='sub'>Balanced accuracy (mean per-class recall) against training images per class; dots are means over seeds, bars and bands 95% intervals.</p>"
        h += SVG.learningCurves(xLabels: sizes, series: series, yLabel: "balanced accuracy")

        // Table
        h += "<h2>All results</h2><table><tr><th>method</th>" + sizes.map { "<th>n = \(e($0))</th>" }.joined() + "</tr>"
        let bestAtLargest = headline(records)?.method
        for m in methods {
            h += "<tr\(m == bestAtLargest ? " class='best'" : "")><td>\(e(m))</td>"
            for s in sizes {
                if let sm = summary(m, s) {
                    h += "<td title='95% CI \(String(format: "%.3f–%.3f", sm.low, sm.high))'>\(String(format: "%.3f ± %.3f", sm.mean, sm.standardDeviation))</td>"
                } else { h += "<td>–</td>" }
            }
            h += "</tr>"
        }
        h += "</table>"
        h += pairedSection(records: records, methods: methods, sizes: sizes)
        let autoChoices = records.filter { $0.chosen != nil }
        if !autoChoices.isEmpty {
            var counts: [String: Int] = [:]
            for r in autoChoices { counts[r.chosen!, default: 0] += 1 }
            h += "<p class='sub'><code>auto</code> used (the blend below 10 images per class; above, what inner cross-validation on each training set chose): "
                + counts.sorted { $0.value > $1.value }.map { "\(e($0.key)) × \($0.value)" }.joined(separator: ", ") + "</p>"
        }

        // Per-class recall and confusion of the best method at the largest size.
        if let best = bestAtLargest, let largest = sizes.last {
            let rs = records.filter { $0.method == best && $0.sizeLabel == largest }
            let k = ds.classNames.count
            var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
            for r in rs { for i in 0..<k { for j in 0..<k { confusion[i][j] += r.confusion[i][j] } } }
            h += "<h2>Per-class recall — \(e(best)), n = \(e(largest))</h2>"
            h += SVG.bars(labels: ds.classNames, values: Metrics.perClassRecall(confusion))
            h += "<h2>Confusion matrix (all seeds)</h2>" + SVG.confusion(confusion, classes: ds.classNames)

            // Most often misclassified test images.
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
            if !worst.isEmpty {
                h += "<h2>Images most often misclassified</h2><p class='sub'>Candidates for label errors or hard cases: check them.</p><div class='grid'>"
                for (i, v) in worst {
                    let item = ds.items[i]
                    let pred = v.predicted.max { $0.value < $1.value }!.key
                    let src = thumbnail(ds, item) ?? ""
                    h += "<div class='card'><img src='\(src)' alt=''><br><b>\(e(ds.classNames[item.label]))</b> → \(e(ds.classNames[pred]))<br>wrong \(v.count)/\(v.seen) seeds<br><span class='sub' title='\(e(item.relativePath))'>\(e((item.relativePath as NSString).lastPathComponent))</span></div>"
                }
                h += "</div>"
            }
        }

        if let best = bestAtLargest, let largest = sizes.last {
            h += triageSection(records: records, methods: methods, best: best, size: largest, dataset: ds)
        }

        if let recipe = input.purificationRecipe {
            h += "<h2>Labels to check</h2><p class='sub'>\(e(recipe)) Most suspect first; nothing was changed. <code>petri purify</code> lists them all as CSV.</p>"
            if input.labelIssues.isEmpty && input.outliers.isEmpty {
                h += "<p>No likely label errors or outliers found.</p>"
            }
            if !input.labelIssues.isEmpty {
                h += "<p><b>\(input.labelIssues.count)</b> likely label error\(input.labelIssues.count == 1 ? "" : "s") (\(String(format: "%.1f", 100 * Double(input.labelIssues.count) / Double(max(1, ds.items.count))))% of the images):</p><div class='grid'>"
                for issue in input.labelIssues.prefix(16) {
                    let item = ds.items[issue.index]
                    h += "<div class='card'><img src='\(thumbnail(ds, item) ?? "")' alt=''><br>labelled <b>\(e(ds.classNames[issue.given]))</b> (\(String(format: "%.2f", issue.givenProbability)))<br>looks like <span style='color:#e4572e'>\(e(ds.classNames[issue.suggested]))</span> (\(String(format: "%.2f", issue.suggestedProbability)))<br><span class='sub' title='\(e(item.relativePath))'>\(e((item.relativePath as NSString).lastPathComponent))</span></div>"
                }
                h += "</div>"
            }
            if !input.outliers.isEmpty {
                h += "<p><b>\(input.outliers.count)</b> outlier\(input.outliers.count == 1 ? "" : "s") (unlike any other image: a wrong modality, an artefact, an empty field?):</p><div class='grid'>"
                for i in input.outliers.prefix(8) {
                    let item = ds.items[i]
                    h += "<div class='card'><img src='\(thumbnail(ds, item) ?? "")' alt=''><br><b>\(e(ds.classNames[item.label]))</b><br><span class='sub' title='\(e(item.relativePath))'>\(e((item.relativePath as NSString).lastPathComponent))</span></div>"
                }
                h += "</div>"
            }
        }

        if !input.activationMaps.isEmpty {
            h += "<h2>Where the model looks</h2><p class='sub'>Class activation maps of a Lite0 linear probe (seed 0, largest training set) on test images: yellow-red marks the regions that raised the predicted class's score. A model that looks at the background or the slide edge has learned a shortcut.</p><div class='grid'>"
            for ex in input.activationMaps {
                let item = ds.items[ex.item]
                let ok = ex.predicted == item.label
                h += "<div class='card' style='width:170px'><img style='width:160px;height:160px' src='\(ex.overlay)' alt=''><br>true <b>\(e(ds.classNames[item.label]))</b><br>predicted <span style='color:\(ok ? "#2e933c" : "#e4572e")'>\(e(ds.classNames[ex.predicted]))</span> (\(String(format: "%.2f", ex.confidence)))</div>"
            }
            h += "</div>"
        }

        if let emb = input.embedding, emb.shape[0] == ds.items.count, ds.items.count >= 3 {
            let pts = pca2(l2NormalizedRows(emb))
            h += "<h2>Map of the images (ImageNet features, first two principal components)</h2><p class='sub'>Classes that overlap here are the ones a frozen-feature classifier finds hard.</p>"
            h += SVG.scatter(points: pts, labels: ds.items.map(\.label), classes: ds.classNames,
                             titles: ds.items.map { "\($0.relativePath) [\(ds.classNames[$0.label])]" })
        }

        h += "<h2>Reproduce</h2><pre>\(e(input.command))</pre><table>"
        h += "<tr><td>seeds</td><td>\(input.seeds.map(String.init).joined(separator: ", "))</td></tr>"
        h += "<tr><td>data hash (SHA-256 of paths, labels, contents)</td><td><code>\(input.dataHash)</code></td></tr>"
        for (k, v) in input.versions.sorted(by: { $0.key < $1.key }) { h += "<tr><td>\(e(k))</td><td>\(e(v))</td></tr>" }
        h += "<tr><td>time</td><td>\(String(format: "%.0f s", input.seconds))</td></tr></table>"
        h += "<p class='sub'>Made by Petri. Balanced accuracy = mean per-class recall; intervals are 95% t-intervals over seeds.</p></body></html>"
        return h
    }
}
