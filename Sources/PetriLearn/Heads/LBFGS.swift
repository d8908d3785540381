import Foundation

/// Limited-memory BFGS for smooth unconstrained minimisation (Nocedal & Wright, alg. 7.4/7.5) with a
/// backtracking line search satisfying the Armijo condition.
public struct LBFGS {
    public var memory = 10
    public var maxIterations = 500
    /// Stop when the gradient's infinity norm falls below this.
    public var gradientTolerance = 1e-5
    /// Stop when the relative decrease of the objective over an iteration falls below this.
    public var relativeTolerance = 1e-9

    public init() {}

    public struct Result {
        public var x: [Double]
        public var value: Double
        public var iterations: Int
        public var converged: Bool
    }

    /// Minimises `f`, which returns the value and writes the gradient.
    public func minimize(_ x0: [Double], _ f: ([Double], inout [Double]) -> Double) -> Result {
        let n = x0.count
        var x = x0
        var g = [Double](repeating: 0, count: n)
        var fx = f(x, &g)
        var s: [[Double]] = [], y: [[Double]] = [], rho: [Double] = []
        func dot(_ a: [Double], _ b: [Double]) -> Double {
            var t = 0.0
            for i in 0..<a.count { t += a[i] * b[i] }
            return t
        }
        for iter in 0..<maxIterations {
            if g.map(abs).max() ?? 0 < gradientTolerance { return Result(x: x, value: fx, iterations: iter, converged: true) }
            // Two-loop recursion: direction d = −H·g.
            var q = g
            var alpha = [Double](repeating: 0, count: s.count)
            for i in stride(from: s.count - 1, through: 0, by: -1) {
                alpha[i] = rho[i] * dot(s[i], q)
                for j in 0..<n { q[j] -= alpha[i] * y[i][j] }
            }
            if let ls = s.last, let ly = y.last {
                let gamma = dot(ls, ly) / dot(ly, ly)
                for j in 0..<n { q[j] *= gamma }
            } else {
                let norm = max(dot(g, g).squareRoot(), 1e-12)
                for j in 0..<n { q[j] /= norm }
            }
            for i in 0..<s.count {
                let beta = rho[i] * dot(y[i], q)
                for j in 0..<n { q[j] += s[i][j] * (alpha[i] - beta) }
            }
            var d = q.map { -$0 }
            var slope = dot(g, d)
            if slope >= 0 {   // not a descent direction: restart with steepest descent
                s.removeAll(); y.removeAll(); rho.removeAll()
                d = g.map { -$0 }
                slope = dot(g, d)
            }
            var step = 1.0
            var xNew = x, gNew = g, fNew = fx
            var accepted = false
            for _ in 0..<40 {
                for j in 0..<n { xNew[j] = x[j] + step * d[j] }
                fNew = f(xNew, &gNew)
                if fNew <= fx + 1e-4 * step * slope { accepted = true; break }
                step *= 0.5
            }
            if !accepted { return Result(x: x, value: fx, iterations: iter, converged: false) }
            var sk = [Double](repeating: 0, count: n), yk = sk
            for j in 0..<n { sk[j] = xNew[j] - x[j]; yk[j] = gNew[j] - g[j] }
            let sy = dot(sk, yk)
            if sy > 1e-12 {
                s.append(sk); y.append(yk); rho.append(1 / sy)
                if s.count > memory { s.removeFirst(); y.removeFirst(); rho.removeFirst() }
            }
            let decrease = fx - fNew
            x = xNew; g = gNew
            let previous = fx
            fx = fNew
            if decrease <= relativeTolerance * max(abs(previous), abs(fNew), 1) {
                return Result(x: x, value: fx, iterations: iter + 1, converged: true)
            }
        }
        return Result(x: x, value: fx, iterations: maxIterations, converged: false)
    }
}
