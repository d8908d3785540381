import Foundation
import PetriEval

/// Small SVG chart builders for the report (inline, no scripts, readable offline).
enum SVG {
    static let palette = ["#1b6ca8", "#e4572e", "#2e933c", "#8e44ad", "#f3a712", "#17becf", "#7f7f7f", "#bcbd22",
                          "#d62728", "#9467bd"]

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    struct Series {
        var name: String
        /// (x position index, mean, low, high)
        var points: [(x: Int, mean: Double, low: Double, high: Double)]
    }

    /// Learning curves: categorical x (training images per class), y = balanced accuracy with 95% bands.
    static func learningCurves(xLabels: [String], series: [Series], yLabel: String) -> String {
        let w = 760.0, h = 380.0, left = 60.0, right = 250.0, top = 20.0, bottom = 50.0
        let pw = w - left - right, ph = h - top - bottom
        let all = series.flatMap { $0.points.flatMap { [$0.low, $0.high] } }.filter { $0.isFinite }
        var lo = max(0, (all.min() ?? 0) - 0.05), hi = min(1, (all.max() ?? 1) + 0.05)
        lo = (lo * 10).rounded(.down) / 10; hi = (hi * 10).rounded(.up) / 10
        if hi <= lo { hi = lo + 0.1 }
        func x(_ i: Int) -> Double { left + (xLabels.count == 1 ? pw / 2 : pw * Double(i) / Double(xLabels.count - 1)) }
        func y(_ v: Double) -> Double { top + ph * (1 - (v - lo) / (hi - lo)) }
        // Intervals drawn within the axis (0…1 at most): with 2–3 seeds a t-interval spans far past both ends.
        func yc(_ v: Double) -> Double { y(Swift.min(hi, Swift.max(lo, v))) }
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 \(Int(w)) \(Int(h))' class='chart'>"
        var tick = lo
        while tick <= hi + 1e-9 {
            s += "<line x1='\(left)' x2='\(left + pw)' y1='\(y(tick))' y2='\(y(tick))' stroke='#e5e5e5'/>"
            s += "<text x='\(left - 8)' y='\(y(tick) + 4)' text-anchor='end' class='tick'>\(String(format: "%.1f", tick))</text>"
            tick += 0.1
        }
        for (i, l) in xLabels.enumerated() {
            s += "<text x='\(x(i))' y='\(top + ph + 20)' text-anchor='middle' class='tick'>\(escape(l))</text>"
        }
        s += "<text x='\(left + pw / 2)' y='\(h - 8)' text-anchor='middle' class='axis'>training images per class</text>"
        s += "<text transform='translate(16 \(top + ph / 2)) rotate(-90)' text-anchor='middle' class='axis'>\(escape(yLabel))</text>"
        for (k, ser) in series.enumerated() {
            let color = palette[k % palette.count]
            let pts = ser.points.sorted { $0.x < $1.x }
            if pts.count > 1 {
                let band = pts.map { "\(x($0.x)),\(yc($0.high))" } + pts.reversed().map { "\(x($0.x)),\(yc($0.low))" }
                s += "<polygon points='\(band.joined(separator: " "))' fill='\(color)' opacity='0.12'/>"
                s += "<polyline points='\(pts.map { "\(x($0.x)),\(y($0.mean))" }.joined(separator: " "))' fill='none' stroke='\(color)' stroke-width='2.5'/>"
            }
            for p in pts {
                s += "<line x1='\(x(p.x))' x2='\(x(p.x))' y1='\(yc(p.low))' y2='\(yc(p.high))' stroke='\(color)' stroke-width='1.5'/>"
                s += "<circle cx='\(x(p.x))' cy='\(y(p.mean))' r='4' fill='\(color)'><title>\(escape(ser.name)) n=\(xLabels[p.x]): \(String(format: "%.3f [%.3f, %.3f]", p.mean, p.low, p.high))</title></circle>"
            }
            let ly = top + 14 + Double(k) * 20
            s += "<rect x='\(left + pw + 16)' y='\(ly - 9)' width='14' height='4' fill='\(color)'/>"
            s += "<text x='\(left + pw + 36)' y='\(ly - 3)' class='legend'>\(escape(ser.name))</text>"
        }
        return s + "</svg>"
    }

    /// Horizontal bars with values in 0…1.
    static func bars(labels: [String], values: [Double?]) -> String {
        let rowH = 24.0, left = 150.0, barW = 360.0, h = Double(labels.count) * rowH + 10
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 560 \(Int(h))' class='chart small'>"
        for (i, (l, v)) in zip(labels, values).enumerated() {
            let y = 5 + Double(i) * rowH
            s += "<text x='\(left - 8)' y='\(y + 15)' text-anchor='end' class='tick'>\(escape(l))</text>"
            s += "<rect x='\(left)' y='\(y + 3)' width='\(barW)' height='16' fill='#f0f0f0'/>"
            if let v {
                let color = v >= 0.8 ? "#2e933c" : (v >= 0.6 ? "#f3a712" : "#e4572e")
                s += "<rect x='\(left)' y='\(y + 3)' width='\(barW * max(0, min(1, v)))' height='16' fill='\(color)'/>"
                s += "<text x='\(left + barW + 8)' y='\(y + 15)' class='tick'>\(String(format: "%.2f", v))</text>"
            }
        }
        return s + "</svg>"
    }

    /// Reliability diagram: per confidence bin, the accuracy (bar) against the diagonal a calibrated model
    /// would follow; bar opacity grows with the bin's share of images.
    static func reliability(_ bins: [Calibration.Bin]) -> String {
        let w = 400.0, h = 330.0, left = 50.0, top = 14.0, size = 260.0
        let total = Double(max(1, bins.reduce(0) { $0 + $1.count }))
        func x(_ v: Double) -> Double { left + size * v }
        func y(_ v: Double) -> Double { top + size * (1 - v) }
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 \(Int(w)) \(Int(h))' class='chart' style='max-width:400px'>"
        for t in stride(from: 0.0, through: 1.0001, by: 0.2) {
            s += "<line x1='\(x(0))' x2='\(x(1))' y1='\(y(t))' y2='\(y(t))' stroke='#eee'/>"
            s += "<text x='\(left - 6)' y='\(y(t) + 4)' text-anchor='end' class='tick'>\(String(format: "%.1f", t))</text>"
            s += "<text x='\(x(t))' y='\(top + size + 16)' text-anchor='middle' class='tick'>\(String(format: "%.1f", t))</text>"
        }
        for b in bins where b.count > 0 {
            let share = Double(b.count) / total
            s += "<rect x='\(x(b.lower) + 1)' y='\(y(b.accuracy))' width='\(size * (b.upper - b.lower) - 2)' height='\(size * b.accuracy)' fill='#1b6ca8' opacity='\(0.25 + 0.75 * min(1, share * 4))'><title>confidence \(String(format: "%.1f–%.1f", b.lower, b.upper)): \(b.count) images, accuracy \(String(format: "%.2f", b.accuracy)), mean confidence \(String(format: "%.2f", b.meanConfidence))</title></rect>"
        }
        s += "<line x1='\(x(0))' y1='\(y(0))' x2='\(x(1))' y2='\(y(1))' stroke='#e4572e' stroke-dasharray='5 4' stroke-width='1.5'/>"
        s += "<text x='\(left + size / 2)' y='\(h - 24)' text-anchor='middle' class='axis'>confidence (top probability)</text>"
        s += "<text transform='translate(14 \(top + size / 2)) rotate(-90)' text-anchor='middle' class='axis'>accuracy</text>"
        s += "<text x='\(x(0.03))' y='\(y(0.93))' class='legend' fill='#e4572e'>calibrated</text>"
        return s + "</svg>"
    }

    /// Risk–coverage curves: accuracy of the accepted images against the share accepted, one line per series.
    static func accuracyCoverage(_ series: [(name: String, points: [SelectiveClassification.Point])], target: Double?) -> String {
        let w = 660.0, h = 330.0, left = 50.0, top = 14.0, pw = 300.0, ph = 260.0
        let lo = max(0, ((series.flatMap { $0.points.map { 1 - $0.risk } }.min() ?? 0) * 10).rounded(.down) / 10)
        func x(_ v: Double) -> Double { left + pw * v }
        func y(_ v: Double) -> Double { top + ph * (1 - (v - lo) / max(1 - lo, 1e-9)) }
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 \(Int(w)) \(Int(h))' class='chart' style='max-width:660px'>"
        for t in stride(from: lo, through: 1.0001, by: 0.1) {
            s += "<line x1='\(x(0))' x2='\(x(1))' y1='\(y(t))' y2='\(y(t))' stroke='#eee'/>"
            s += "<text x='\(left - 6)' y='\(y(t) + 4)' text-anchor='end' class='tick'>\(String(format: "%.1f", t))</text>"
        }
        for t in stride(from: 0.0, through: 1.0001, by: 0.2) {
            s += "<text x='\(x(t))' y='\(top + ph + 16)' text-anchor='middle' class='tick'>\(String(format: "%.0f%%", t * 100))</text>"
        }
        if let target, target >= lo {
            s += "<line x1='\(x(0))' x2='\(x(1))' y1='\(y(target))' y2='\(y(target))' stroke='#e4572e' stroke-dasharray='5 4'/>"
            s += "<text x='\(x(1) + 4)' y='\(y(target) + 4)' class='tick' fill='#e4572e'>\(String(format: "%.0f%%", target * 100))</text>"
        }
        for (k, ser) in series.enumerated() {
            let color = palette[k % palette.count]
            let pts = [(0.0, 1 - (ser.points.first?.risk ?? 0))] + ser.points.map { ($0.coverage, 1 - $0.risk) }
            s += "<polyline points='\(pts.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " "))' fill='none' stroke='\(color)' stroke-width='2'/>"
            let ly = top + 14 + Double(k) * 20
            s += "<rect x='\(left + pw + 40)' y='\(ly - 9)' width='14' height='4' fill='\(color)'/>"
            s += "<text x='\(left + pw + 60)' y='\(ly - 3)' class='legend'>\(escape(ser.name))</text>"
        }
        s += "<text x='\(left + pw / 2)' y='\(h - 24)' text-anchor='middle' class='axis'>images accepted (most confident first)</text>"
        s += "<text transform='translate(14 \(top + ph / 2)) rotate(-90)' text-anchor='middle' class='axis'>accuracy of the accepted</text>"
        return s + "</svg>"
    }

    /// Confusion matrix heat map (rows: true class, columns: predicted), row-normalised colours.
    static func confusion(_ m: [[Int]], classes: [String]) -> String {
        let n = classes.count, cell = min(56.0, 420.0 / Double(max(n, 1))), left = 140.0, top = 110.0
        let w = left + cell * Double(n) + 20, h = top + cell * Double(n) + 40
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 \(Int(w)) \(Int(h))' class='chart small'>"
        for (j, c) in classes.enumerated() {
            s += "<text transform='translate(\(left + cell * (Double(j) + 0.5)) \(top - 8)) rotate(-45)' class='tick'>\(escape(c))</text>"
        }
        for i in 0..<n {
            let total = max(1, m[i].reduce(0, +))
            s += "<text x='\(left - 8)' y='\(top + cell * (Double(i) + 0.6))' text-anchor='end' class='tick'>\(escape(classes[i]))</text>"
            for j in 0..<n {
                let f = Double(m[i][j]) / Double(total)
                let color = i == j ? "rgba(46,147,60,\(0.1 + 0.9 * f))" : "rgba(228,87,46,\(f > 0 ? 0.1 + 0.9 * f : 0.03))"
                s += "<rect x='\(left + cell * Double(j))' y='\(top + cell * Double(i))' width='\(cell - 2)' height='\(cell - 2)' fill='\(color)'><title>\(escape(classes[i])) → \(escape(classes[j])): \(m[i][j])</title></rect>"
                s += "<text x='\(left + cell * (Double(j) + 0.5) - 1)' y='\(top + cell * (Double(i) + 0.58))' text-anchor='middle' class='cell'>\(m[i][j])</text>"
            }
        }
        s += "<text x='\(left + cell * Double(n) / 2)' y='\(h - 10)' text-anchor='middle' class='axis'>predicted</text>"
        return s + "</svg>"
    }

    /// Scatter of 2-D points coloured by class.
    static func scatter(points: [(Double, Double)], labels: [Int], classes: [String], titles: [String]) -> String {
        let w = 560.0, h = 420.0, pad = 30.0, legend = 140.0
        let xs = points.map(\.0), ys = points.map(\.1)
        let (x0, x1) = (xs.min() ?? 0, xs.max() ?? 1), (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        func px(_ v: Double) -> Double { pad + (w - legend - 2 * pad) * (v - x0) / max(x1 - x0, 1e-9) }
        func py(_ v: Double) -> Double { pad + (h - 2 * pad) * (1 - (v - y0) / max(y1 - y0, 1e-9)) }
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 \(Int(w)) \(Int(h))' class='chart'>"
        s += "<rect x='\(pad - 10)' y='\(pad - 10)' width='\(w - legend - 2 * pad + 20)' height='\(h - 2 * pad + 20)' fill='none' stroke='#ddd'/>"
        for (i, p) in points.enumerated() {
            s += "<circle cx='\(px(p.0))' cy='\(py(p.1))' r='3.5' fill='\(palette[labels[i] % palette.count])' opacity='0.75'><title>\(escape(titles[i]))</title></circle>"
        }
        for (k, c) in classes.enumerated() {
            let ly = pad + Double(k) * 20
            s += "<circle cx='\(w - legend + 10)' cy='\(ly)' r='5' fill='\(palette[k % palette.count])'/>"
            s += "<text x='\(w - legend + 22)' y='\(ly + 4)' class='legend'>\(escape(c))</text>"
        }
        return s + "</svg>"
    }
}

extension SVG {
    /// A forest plot of paired differences: one row per method, a dot at the mean difference from the
    /// baseline and a bar for its 95% interval, against a line at 0; green when the interval is above 0,
    /// red when below, grey when it straddles 0.
    static func differences(_ rows: [(label: String, difference: PairedDifference)]) -> String {
        let rowH = 26.0, left = 280.0, plotW = 300.0, top = 24.0
        let h = top + Double(rows.count) * rowH + 34
        let extent = rows.flatMap { [abs($0.difference.summary.low), abs($0.difference.summary.high)] }.filter(\.isFinite).max() ?? 0.1
        let half = min(1, max(0.1, (extent * 10).rounded(.up) / 10))
        func x(_ v: Double) -> Double { left + plotW * (max(-half, min(half, v)) + half) / (2 * half) }
        var s = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 720 \(Int(h))' class='chart'>"
        for t in [-half, -half / 2, 0, half / 2, half] {
            s += "<line x1='\(x(t))' y1='\(top - 6)' x2='\(x(t))' y2='\(h - 30)' stroke='\(t == 0 ? "#444" : "#e5e5e5")'\(t == 0 ? " stroke-dasharray='4 3'" : "")/>"
            s += "<text x='\(x(t))' y='\(h - 14)' text-anchor='middle' class='tick'>\(String(format: "%+.2f", t))</text>"
        }
        s += "<text x='\(x(0))' y='\(top - 10)' text-anchor='middle' class='tick'>← worse · better →</text>"
        for (i, r) in rows.enumerated() {
            let y = top + Double(i) * rowH + rowH / 2, d = r.difference, sm = d.summary
            let colour = !d.isClear ? "#7f7f7f" : (sm.low > 0 ? "#2e933c" : "#e4572e")
            s += "<text x='\(left - 10)' y='\(y + 4)' text-anchor='end' class='tick'>\(escape(r.label))</text>"
            if sm.count > 1 { s += "<line x1='\(x(sm.low))' y1='\(y)' x2='\(x(sm.high))' y2='\(y)' stroke='\(colour)' stroke-width='3'/>" }
            s += "<circle cx='\(x(sm.mean))' cy='\(y)' r='5' fill='\(colour)'><title>\(escape(r.label)): \(String(format: "%+.3f", sm.mean)) (95% interval \(String(format: "%+.3f to %+.3f", sm.low, sm.high))), better on \(d.wins) of \(sm.count) splits</title></circle>"
            s += "<text x='\(left + plotW + 12)' y='\(y + 4)' class='tick'>\(String(format: "%+.3f", sm.mean)) · \(d.wins)/\(sm.count) better</text>"
        }
        return s + "</svg>"
    }
}
