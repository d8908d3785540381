import Foundation
import PetriData
import PetriEngine
import PetriEval
import Testing
@testable import PetriLearn

@Suite struct LBFGSTests {
    @Test func minimisesRosenbrock() {
        var solver = LBFGS()
        solver.maxIterations = 2000
        solver.relativeTolerance = 0
        solver.gradientTolerance = 1e-8
        let r = solver.minimize([-1.2, 1]) { x, g in
            let a = 1 - x[0], b = x[1] - x[0] * x[0]
            g[0] = -2 * a - 400 * x[0] * b
            g[1] = 200 * b
            return a * a + 100 * b * b
        }
        #expect(abs(r.x[0] - 1) < 1e-4 && abs(r.x[1] - 1) < 1e-4)
    }
}

@Suite struct LogisticRegressionTests {
    /// Gradient of the fitted objective is ~0 at the solution: check optimality through the
    /// stationarity condition Xᵀ(P − Y)/n + λW = 0 (λ = 1/(C·n)), computed independently here.
    @Test func solutionIsStationary() {
        var rng = SeededGenerator(seed: 3)
        let n = 60, d = 5, k = 3
        var xs = [Float](), labels = [Int]()
        for i in 0..<n {
            let label = i % k
            labels.append(label)
            for j in 0..<d { xs.append(rng.normal() + (j == label ? 2 : 0)) }
        }
        let x = Tensor(shape: [n, d], data: xs)
        let c = 2.0
        let fitted = LogisticRegression(c: c, maxIterations: 2000).fit(x, labels: labels, classes: k)
        let p = fitted.probabilities(x)
        let lambda = 1 / (c * Double(n))
        var worst = 0.0
        for cls in 0..<k {
            for j in 0..<d {
                var g = 0.0
                for i in 0..<n { g += (Double(p[flat: i * k + cls]) - (labels[i] == cls ? 1 : 0)) * Double(xs[i * d + j]) }
                g = g / Double(n) + lambda * Double(fitted.weights[cls * d + j])
                worst = max(worst, abs(g))
            }
            var gb = 0.0
            for i in 0..<n { gb += Double(p[flat: i * k + cls]) - (labels[i] == cls ? 1 : 0) }
            worst = max(worst, abs(gb / Double(n)))
        }
        #expect(worst < 1e-4, "largest gradient component at the solution: \(worst)")
        let acc = zip(argmaxRows(p), labels).filter { $0 == $1 }.count
        #expect(acc > 50)
    }
}

@Suite struct SplitTests {
    let labels = (0..<50).map { $0 < 30 ? 0 : ($0 < 45 ? 1 : 2) }

    @Test func kFoldCoversEveryIndexOnceAndIsStratified() {
        let folds = Splits.stratifiedKFold(labels: labels, folds: 5, seed: 7)
        #expect(folds.flatMap { $0 }.sorted() == Array(0..<50))
        for f in folds {
            #expect(f.filter { labels[$0] == 0 }.count == 6)
            #expect(f.filter { labels[$0] == 1 }.count == 3)
            #expect(f.filter { labels[$0] == 2 }.count == 1)
        }
        #expect(folds == Splits.stratifiedKFold(labels: labels, folds: 5, seed: 7))
        #expect(folds != Splits.stratifiedKFold(labels: labels, folds: 5, seed: 8))
    }

    @Test func groupsNeverStraddle() {
        let groups: [String?] = labels.indices.map { $0 % 4 == 0 ? "dup\($0 / 8)" : nil }
        for seed in 0..<20 as Range<UInt64> {
            let folds = Splits.stratifiedKFold(labels: labels, groups: groups, folds: 5, seed: seed)
            for f in folds {
                let inFold = Set(f)
                for g in Set(groups.compactMap { $0 }) {
                    let members = groups.indices.filter { groups[$0] == g }
                    #expect(members.allSatisfy(inFold.contains) || !members.contains(where: inFold.contains))
                }
            }
            let (train, test) = Splits.stratifiedHoldout(labels: labels, groups: groups, testFraction: 0.3, seed: seed)
            #expect(Set(train).isDisjoint(with: test) && train.count + test.count == 50)
            for g in Set(groups.compactMap { $0 }) {
                let members = groups.indices.filter { groups[$0] == g }
                #expect(members.allSatisfy(Set(test).contains) || !members.contains(where: Set(test).contains))
            }
        }
    }

    @Test func holdoutTakesRoundedThirtyPercentPerClass() {
        let (_, test) = Splits.stratifiedHoldout(labels: labels, testFraction: 0.3, seed: 1)
        #expect(test.filter { labels[$0] == 0 }.count == 9)
        #expect(test.filter { labels[$0] == 1 }.count == 5)   // round(4.5) = 5 (schoolbook rounding)
        #expect(test.filter { labels[$0] == 2 }.count == 2)   // round(1.5) = 2
    }
}

@Suite struct DatasetTests {
    @Test func bundledSampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Samples/bccd-wbc-mini")
        let ds = try Dataset.imageFolder(root)
        #expect(ds.classNames == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"])
        #expect(ds.classCounts == [24, 20, 16, 24])
    }

    @Test func missingFolderIsAClearError() {
        #expect { try Dataset.imageFolder(URL(fileURLWithPath: "/nonexistent/petri-data")) } throws: {
            "\($0)".contains("/nonexistent/petri-data") && "\($0)".contains("no such")
        }
    }

    @Test func emptyClassIsDroppedWithAWarning() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("petri-ds-\(UUID())")
        defer { try? FileManager.default.removeItem(at: tmp) }
        for c in ["a", "b", "empty"] {
            try FileManager.default.createDirectory(at: tmp.appendingPathComponent(c), withIntermediateDirectories: true)
        }
        try Data([1]).write(to: tmp.appendingPathComponent("a/x.png"))
        try Data([1]).write(to: tmp.appendingPathComponent("b/y.jpg"))
        try Data([1]).write(to: tmp.appendingPathComponent("b/notes.txt"))
        let ds = try Dataset.imageFolder(tmp)
        #expect(ds.classNames == ["a", "b"])
        #expect(ds.items.count == 2)
        #expect(ds.warnings.contains { $0.contains("empty") })
    }
}

@Suite struct MLPHeadTests {
    /// Two classes on the diagonals of a square (XOR): no linear boundary separates them, one hidden layer does.
    @Test func learnsANonLinearBoundaryALinearProbeCannot() {
        var rng = SeededGenerator(seed: 3)
        var rows: [Float] = [], labels: [Int] = []
        for _ in 0..<200 {
            let a = Float.random(in: -1...1, using: &rng), b = Float.random(in: -1...1, using: &rng)
            guard abs(a) > 0.15 && abs(b) > 0.15 else { continue }
            rows += [a, b, 1]  // a constant third coordinate keeps the L2 normalisation from folding the plane
            labels.append(a * b > 0 ? 1 : 0)
        }
        let x = Tensor(shape: [labels.count, 3], data: rows)
        var head = MLPHead()
        head.dropout = 0
        head.steps = 400
        let p = head.fit(x, labels: labels, classes: 2, seed: 0).probabilities(x)
        let mlpAccuracy = Metrics.accuracy(labels: labels, predictions: argmaxRows(p))
        let lr = LogisticRegression(c: 100).fit(l2NormalizedRows(x), labels: labels, classes: 2)
        let lrAccuracy = Metrics.accuracy(labels: labels, predictions: argmaxRows(lr.probabilities(l2NormalizedRows(x))))
        #expect(mlpAccuracy > 0.95)
        #expect(lrAccuracy < 0.75)
        // Probabilities are rows summing to one.
        for i in 0..<labels.count { #expect(abs(p[flat: 2 * i] + p[flat: 2 * i + 1] - 1) < 1e-5) }
    }
}
