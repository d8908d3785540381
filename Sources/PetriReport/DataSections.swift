import Foundation
import PetriData
import PetriEngine
import PetriEval
import PetriLearn
import PetriStudy

/// The sections on the data and on how to reproduce the run.
extension StudyReport {
    static func imageMap(_ v: ReportView) -> String {
        let ds = v.dataset
        guard let emb = v.outcome.embedding, emb.shape[0] == ds.items.count, ds.items.count >= 3 else { return "" }
        let pts = pca2(l2NormalizedRows(emb))
        return "<h2>Map of the images (ImageNet features, first two principal components)</h2><p class='sub'>Classes that overlap here are the ones a frozen-feature classifier finds hard.</p>"
            + SVG.scatter(points: pts, labels: ds.items.map(\.label), classes: ds.classNames,
                          titles: ds.items.map { "\($0.relativePath) [\(ds.classNames[$0.label])]" })
    }

    static func reproduce(_ v: ReportView) -> String {
        let e = SVG.escape, o = v.outcome
        var h = "<h2>Reproduce</h2><pre>\(e(o.command))</pre><table>"
        h += "<tr><td>seeds</td><td>\(o.seeds.map(String.init).joined(separator: ", "))</td></tr>"
        h += "<tr><td>data hash (SHA-256 of paths, labels, contents)</td><td><code>\(o.dataHash)</code></td></tr>"
        for (k, value) in o.versions.sorted(by: { $0.key < $1.key }) { h += "<tr><td>\(e(k))</td><td>\(e(value))</td></tr>" }
        return h + "<tr><td>time</td><td>\(String(format: "%.0f s", o.seconds))</td></tr></table>"
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
}
