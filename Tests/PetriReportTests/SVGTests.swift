import Foundation
import Testing
@testable import PetriReport

@Suite struct SVGTests {
    /// With 2 seeds a 95% t-interval can run from below 0 to above 1; the chart draws it within the plot area.
    @Test func learningCurveIntervalsStayInsideThePlot() throws {
        let series = [SVG.Series(name: "auto", points: [(x: 0, mean: 0.8, low: -0.6, high: 2.1), (x: 1, mean: 0.85, low: 0.7, high: 1.0)])]
        let svg = SVG.learningCurves(xLabels: ["5", "all"], series: series, yLabel: "balanced accuracy")
        // Plot area: y from top (20) to h − bottom (380 − 50).
        let regex = try NSRegularExpression(pattern: "(?:y1|y2|cy)='([-0-9.]+)'|points='([^']+)'")
        var ys: [Double] = []
        for m in regex.matches(in: svg, range: NSRange(svg.startIndex..., in: svg)) {
            if let r = Range(m.range(at: 1), in: svg) { ys.append(Double(svg[r])!) }
            if let r = Range(m.range(at: 2), in: svg) {
                ys += svg[r].split(separator: " ").compactMap { $0.split(separator: ",").last.flatMap { Double($0) } }
            }
        }
        #expect(!ys.isEmpty)
        #expect(ys.allSatisfy { $0 >= 20 - 1e-6 && $0 <= 330 + 1e-6 })
    }
}
