import Foundation

/// Parameters sharing optimiser settings. `learningRateScale` multiplies the optimiser's current learning
/// rate, which gives discriminative learning rates (e.g. 1.0 for a new head, 0.1 for a pretrained body).
public struct ParameterGroup {
    public var parameters: [Parameter]
    public var learningRateScale: Float
    public var weightDecay: Float

    public init(_ parameters: [Parameter], learningRateScale: Float = 1, weightDecay: Float = 0) {
        self.parameters = parameters.filter(\.trainable)
        self.learningRateScale = learningRateScale
        self.weightDecay = weightDecay
    }
}

public protocol Optimizer: AnyObject {
    var groups: [ParameterGroup] { get }
    /// The base learning rate (schedules set it before each step).
    var learningRate: Float { get set }
    /// Applies one update from the parameters' accumulated gradients.
    func step()
}

extension Optimizer {
    public func zeroGradients() {
        for g in groups { for p in g.parameters { p.gradient = nil } }
    }
}

/// SGD with (optionally Nesterov) momentum and L2 weight decay added to the gradient.
public final class SGD: Optimizer {
    public let groups: [ParameterGroup]
    public var learningRate: Float
    public var momentum: Float
    public var nesterov: Bool
    private var velocity: [ObjectIdentifier: Tensor] = [:]

    public init(_ groups: [ParameterGroup], learningRate: Float, momentum: Float = 0.9, nesterov: Bool = false) {
        self.groups = groups
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
    }

    public func step() {
        for group in groups {
            let lr = learningRate * group.learningRateScale
            for p in group.parameters {
                guard var g = p.gradient else { continue }
                if group.weightDecay != 0 { g.add(p.value, scaledBy: group.weightDecay) }
                let key = ObjectIdentifier(p)
                var v = velocity[key] ?? Tensor(zeros: p.value.shape)
                v = v.scaled(by: momentum) + g
                velocity[key] = v
                let update = nesterov ? g + v.scaled(by: momentum) : v
                var w = p.value
                w.add(update, scaledBy: -lr)
                p.value = w
            }
        }
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter): w ← w − lr·(m̂/(√v̂ + ε) + λ·w).
public final class AdamW: Optimizer {
    public let groups: [ParameterGroup]
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    private var moments: [ObjectIdentifier: (m: Tensor, v: Tensor)] = [:]
    private var steps = 0

    public init(_ groups: [ParameterGroup], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8) {
        self.groups = groups
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }

    /// The optimizer's state for a checkpoint: the step count and each parameter's moments (in the order of
    /// `groups`; empty for a parameter not updated yet).
    public var state: (steps: Int, moments: [(m: [Float], v: [Float])]) {
        get {
            (steps, groups.flatMap(\.parameters).map { p in
                moments[ObjectIdentifier(p)].map { ($0.m.scalars, $0.v.scalars) } ?? ([], [])
            })
        }
        set {
            steps = newValue.steps
            moments = [:]
            for (p, mv) in zip(groups.flatMap(\.parameters), newValue.moments) where !mv.m.isEmpty {
                moments[ObjectIdentifier(p)] = (Tensor(shape: p.value.shape, data: mv.m), Tensor(shape: p.value.shape, data: mv.v))
            }
        }
    }

    public func step() {
        steps += 1
        let c1 = 1 - Float(Foundation.pow(Double(beta1), Double(steps)))
        let c2 = 1 - Float(Foundation.pow(Double(beta2), Double(steps)))
        for group in groups {
            let lr = learningRate * group.learningRateScale
            for p in group.parameters {
                guard let g = p.gradient else { continue }
                let key = ObjectIdentifier(p)
                // Taken out of the dictionary and updated in place: a shared copy would make every step
                // copy m, v and w (three 4.5 MB copies per step for an MLP head on 4432-d features).
                var (m, v) = moments.removeValue(forKey: key) ?? (Tensor(zeros: p.value.shape), Tensor(zeros: p.value.shape))
                let (b1, b2, eps, wd) = (beta1, beta2, epsilon, group.weightDecay)
                p.value.withUnsafeMutableBufferPointer { wp in
                    m.withUnsafeMutableBufferPointer { mp in
                        v.withUnsafeMutableBufferPointer { vp in
                            g.withUnsafeBufferPointer { gp in
                                let update = AdamWUpdate(w: wp.baseAddress!, m: mp.baseAddress!, v: vp.baseAddress!,
                                                         g: gp.baseAddress!, beta1: b1, beta2: b2, c1: c1, c2: c2,
                                                         epsilon: eps, learningRate: lr, weightDecay: wd)
                                // Memory-bound on large weights (4 streams read, 3 written): both cores.
                                let n = wp.count, parts = n >= 1 << 18 ? 2 : 1
                                DispatchQueue.concurrentPerform(iterations: parts) { part in
                                    let lo = n * part / parts, hi = n * (part + 1) / parts
                                    update.apply(lo..<hi)
                                }
                            }
                        }
                    }
                }
                moments[key] = (m, v)
            }
        }
    }
}

/// Linear warm-up to the peak learning rate, then cosine decay to `floor`·peak.
public struct WarmupCosineSchedule: Sendable {
    public var peak: Float
    public var totalSteps: Int
    public var warmupSteps: Int
    public var floor: Float

    public init(peak: Float, totalSteps: Int, warmupFraction: Double = 0.1, floor: Float = 0) {
        self.peak = peak
        self.totalSteps = max(totalSteps, 1)
        self.warmupSteps = Int((Double(totalSteps) * warmupFraction).rounded())
        self.floor = floor
    }

    /// Learning rate for step `t` (0-based).
    public func callAsFunction(_ t: Int) -> Float {
        if t < warmupSteps { return peak * Float(t + 1) / Float(warmupSteps) }
        let progress = Double(t - warmupSteps) / Double(max(totalSteps - warmupSteps, 1))
        let cosine = Float(0.5 * (1 + Foundation.cos(Double.pi * min(progress, 1))))
        return peak * (floor + (1 - floor) * cosine)
    }
}

/// One AdamW update over a range of elements, eight lanes at a time.
struct AdamWUpdate: @unchecked Sendable {
    let w: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    let g: UnsafePointer<Float>
    let beta1: Float, beta2: Float, c1: Float, c2: Float, epsilon: Float, learningRate: Float, weightDecay: Float

    func apply(_ range: Range<Int>) {
        var i = range.lowerBound
        let b1 = SIMD8<Float>(repeating: beta1), b2 = SIMD8<Float>(repeating: beta2)
        let one = SIMD8<Float>(repeating: 1)
        let inverseC1 = SIMD8<Float>(repeating: 1 / c1), inverseC2 = SIMD8<Float>(repeating: 1 / c2)
        let eps = SIMD8<Float>(repeating: epsilon), lr = SIMD8<Float>(repeating: learningRate)
        let wd = SIMD8<Float>(repeating: weightDecay)
        func load(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
            UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
        }
        func store(_ x: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
            UnsafeMutableRawPointer(p + i).storeBytes(of: x, as: SIMD8<Float>.self)
        }
        while i + 8 <= range.upperBound {
            let gi = load(g, i)
            let mi = b1 * load(m, i) + (one - b1) * gi
            let vi = b2 * load(v, i) + (one - b2) * gi * gi
            let wi = load(w, i)
            let step = (mi * inverseC1) / ((vi * inverseC2).squareRoot() + eps)
            store(mi, m, i)
            store(vi, v, i)
            store(wi - lr * (step + wd * wi), w, i)
            i += 8
        }
        while i < range.upperBound {
            m[i] = beta1 * m[i] + (1 - beta1) * g[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
            let step = (m[i] / c1) / ((v[i] / c2).squareRoot() + epsilon)
            w[i] -= learningRate * (step + weightDecay * w[i])
            i += 1
        }
    }
}
