import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriStudy

/// The self-contained HTML report of a study: a page of sections, each a small function of `ReportView`.
public enum StudyReport {
    public static func html(_ outcome: StudyOutcome) -> String {
        let view = ReportView(outcome)
        let sections: [String] = [
            header(view), verdict(view), holdoutTable(view), notes(view), learningCurves(view), resultsTable(view),
            pairedSection(records: view.records, methods: view.methods, sizes: view.sizes), autoChoices(view),
            bestMethodDetails(view), trust(view), labelsToCheck(view), activationMaps(view), imageMap(view), reproduce(view),
        ]
        return page(title: "Petri study — " + view.dataset.root.lastPathComponent, body: sections.joined())
    }

    static func page(title: String, body: String) -> String {
        """
        <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>\(SVG.escape(title))</title>
        \(style)</style></head><body>\(body)<p class='sub'>Made by Petri. Balanced accuracy = mean per-class recall; intervals are 95% t-intervals over seeds.</p></body></html>
        """
    }

    static let style = """
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
        """
}

/// What the sections share, computed once: held-out fold-ensemble results apart from the rest, the methods in
/// first-seen order, the sizes in increasing order, and the best method at the largest size.
struct ReportView {
    let outcome: StudyOutcome
    let records: [CurveRecord]
    let holdout: [CurveRecord]
    let crossValidated: Bool
    let methods: [String]
    let sizes: [String]
    let best: Headline?

    init(_ outcome: StudyOutcome) {
        self.outcome = outcome
        records = outcome.records.filter { $0.evaluation != "holdout" }
        holdout = outcome.records.filter { $0.evaluation == "holdout" }
        crossValidated = records.contains { $0.evaluation == "cv" }
        (methods, sizes) = StudyReport.axes(records)
        best = Headline(records)
    }

    var dataset: Dataset { outcome.dataset }

    func summary(_ method: String, _ size: String) -> Summary? {
        let v = records.filter { $0.method == method && $0.sizeLabel == size }.map(\.balancedAccuracy)
        return v.isEmpty ? nil : Summary(v, within: 0...1)
    }
}

extension StudyReport {
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
}
