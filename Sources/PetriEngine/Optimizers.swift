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

    public func step() {
        steps += 1
        let c1 = 1 - Float(Foundation.pow(Double(beta1), Double(steps)))
        let c2 = 1 - Float(Foundation.pow(Double(beta2), Double(steps)))
        for group in groups {
            let lr = learningRate * group.learningRateScale
            for p in group.parameters {
                guard let g = p.gradient else { continue }
                let key = ObjectIdentifier(p)
                var (m, v) = moments[key] ?? (Tensor(zeros: p.value.shape), Tensor(zeros: p.value.shape))
                var w = p.value
                let (b1, b2, eps, wd) = (beta1, beta2, epsilon, group.weightDecay)
                w.withUnsafeMutableBufferPointer { wp in
                    m.withUnsafeMutableBufferPointer { mp in
                        v.withUnsafeMutableBufferPointer { vp in
                            g.withUnsafeBufferPointer { gp in
                                for i in 0..<wp.count {
                                    mp[i] = b1 * mp[i] + (1 - b1) * gp[i]
                                    vp[i] = b2 * vp[i] + (1 - b2) * gp[i] * gp[i]
                                    let update = (mp[i] / c1) / ((vp[i] / c2).squareRoot() + eps)
                                    wp[i] -= lr * (update + wd * wp[i])
                                }
                            }
                        }
                    }
                }
                moments[key] = (m, v)
                p.value = w
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
