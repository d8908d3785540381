import Foundation

/// Differentiable operations on `Var`s. Layouts: activations `[N, H, W, C]`, features `[N, D]`.
extension Tape {
    /// Convolution without bias. `geometry` must describe x and w.
    public func conv2d(_ x: Var, _ w: Var, geometry g: Conv2DGeometry) throws -> Var {
        let forward = try Conv2DForward.make(g, bias: false, training: true)
        let backward = try Conv2DBackward.make(g)
        let xv = x.value, wv = w.value
        let y = forward(xv, weights: forward.pack(wv))
        return record(y, inputs: [x, w]) { [unowned self] dy in
            if self.needsGradient(w) { self.accumulate(w, backward.weightGradient(dy, input: xv)) }
            if self.needsGradient(x) { self.accumulate(x, backward.inputGradient(dy, weights: wv)) }
        }
    }

    /// Batch normalisation. In training mode with `momentum`, normalises with the batch's statistics and
    /// updates the running ones; otherwise (evaluation, or frozen BN for tiny batches) uses the running
    /// statistics. Gradients flow to x, scale and shift either way.
    public func batchNorm(_ x: Var, scale: Var, shift: Var, runningMean: Parameter, runningVariance: Parameter,
                          epsilon: Float, momentum: Float, useBatchStatistics: Bool) throws -> Var {
        let kernels = try BatchNormKernels.make(shape: x.shape, epsilon: epsilon,
                                                useGivenStatistics: !useBatchStatistics)
        let xv = x.value, sv = scale.value, hv = shift.value
        let r = useBatchStatistics
            ? kernels.forward(xv, scale: sv, shift: shift.value)
            : kernels.forward(xv, scale: sv, shift: shift.value, mean: runningMean.value,
                              variance: runningVariance.value)
        if useBatchStatistics {
            // PyTorch convention: running = (1 − m)·running + m·batch, with the unbiased batch variance.
            let n = Float(x.shape[0] * x.shape[1] * x.shape[2])
            var mean = runningMean.value, variance = runningVariance.value
            mean.withUnsafeMutableBufferPointer { m in
                r.mean.withUnsafeBufferPointer { b in for c in 0..<m.count { m[c] = (1 - momentum) * m[c] + momentum * b[c] } }
            }
            variance.withUnsafeMutableBufferPointer { v in
                r.variance.withUnsafeBufferPointer { b in
                    for c in 0..<v.count { v[c] = (1 - momentum) * v[c] + momentum * b[c] * n / max(n - 1, 1) }
                }
            }
            runningMean.value = mean
            runningVariance.value = variance
        }
        let out = record(r.y, inputs: [x, scale, shift]) { [unowned self] dy in
            let g = kernels.backward(dy, input: xv, scale: sv, shift: hv, mean: r.mean, variance: r.variance)
            self.accumulate(x, g.dx)
            self.accumulate(scale, g.dScale)
            self.accumulate(shift, g.dShift)
        }
        return out
    }

    public func activation(_ x: Var, _ kind: Activation) throws -> Var {
        let k = try EltwiseKernels.make(kind, count: x.value.count)
        let xv = x.value
        return record(k.forward(xv), inputs: [x]) { [unowned self] dy in
            self.accumulate(x, k.backward(dy, input: xv))
        }
    }

    public func add(_ a: Var, _ b: Var) -> Var {
        precondition(a.shape == b.shape, "add: \(a.shape) vs \(b.shape)")
        return record(a.value + b.value, inputs: [a, b]) { [unowned self] dy in
            self.accumulate(a, dy)
            self.accumulate(b, dy)
        }
    }

    /// `[N, H, W, C]` → `[N, C]` mean over H and W.
    public func globalAveragePool(_ x: Var) -> Var {
        let s = x.shape
        precondition(s.count == 4)
        let hw = s[1] * s[2], c = s[3]
        var y = Tensor(zeros: [s[0], c])
        let inv = 1 / Float(hw)
        y.withUnsafeMutableBufferPointer { o in
            x.value.withUnsafeBufferPointer { p in
                for n in 0..<s[0] {
                    for i in 0..<hw { for ch in 0..<c { o[n * c + ch] += p[(n * hw + i) * c + ch] } }
                    for ch in 0..<c { o[n * c + ch] *= inv }
                }
            }
        }
        return record(y, inputs: [x]) { [unowned self] dy in
            var dx = Tensor(uninitialized: s)
            dx.withUnsafeMutableBufferPointer { d in
                dy.withUnsafeBufferPointer { g in
                    for n in 0..<s[0] { for i in 0..<hw { for ch in 0..<c { d[(n * hw + i) * c + ch] = g[n * c + ch] * inv } } }
                }
            }
            self.accumulate(x, dx)
        }
    }

    /// y = x·Wᵀ + b; x `[N, in]`, W `[out, in]`, b `[out]`.
    public func linear(_ x: Var, weight: Var, bias: Var?) -> Var {
        let n = x.shape[0], inF = x.shape[1], outF = weight.shape[0]
        precondition(weight.shape == [outF, inF], "linear: weight \(weight.shape) for input \(x.shape)")
        let xv = x.value, wv = weight.value
        var y = Tensor(zeros: [n, outF])
        if let b = bias?.value {
            y.withUnsafeMutableBufferPointer { p in
                b.withUnsafeBufferPointer { bb in for i in 0..<n { for j in 0..<outF { p[i * outF + j] = bb[j] } } }
            }
        }
        y.withUnsafeMutableBufferPointer { yp in
            sgemm(transposeA: false, transposeB: true, m: n, n: outF, k: inF, a: xv.storage.pointer, lda: inF,
                  b: wv.storage.pointer, ldb: inF, beta: 1, c: yp.baseAddress!, ldc: outF)
        }
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        return record(y, inputs: inputs) { [unowned self] dy in
            if self.needsGradient(weight) {
                // β = 0: the product overwrites dw, no need to clear 1M floats first (an MLP head's w1).
                var dw = n > 0 ? Tensor(uninitialized: [outF, inF]) : Tensor(zeros: [outF, inF])
                dw.withUnsafeMutableBufferPointer { p in
                    sgemm(transposeA: true, transposeB: false, m: outF, n: inF, k: n, a: dy.storage.pointer, lda: outF,
                          b: xv.storage.pointer, ldb: inF, c: p.baseAddress!, ldc: inF)
                }
                self.accumulate(weight, dw)
            }
            if let bias, self.needsGradient(bias) {
                var db = Tensor(zeros: [outF])
                db.withUnsafeMutableBufferPointer { p in
                    dy.withUnsafeBufferPointer { g in for i in 0..<n { for j in 0..<outF { p[j] += g[i * outF + j] } } }
                }
                self.accumulate(bias, db)
            }
            if self.needsGradient(x) {
                var dx = Tensor(uninitialized: [n, inF])
                dx.withUnsafeMutableBufferPointer { p in
                    sgemm(transposeA: false, transposeB: false, m: n, n: inF, k: outF, a: dy.storage.pointer, lda: outF,
                          b: wv.storage.pointer, ldb: inF, c: p.baseAddress!, ldc: inF)
                }
                self.accumulate(x, dx)
            }
        }
    }

    /// Inverted dropout: zeroes elements with probability `rate` and scales the rest by 1/(1−rate).
    /// The identity outside training mode.
    public func dropout(_ x: Var, rate: Float, using rng: inout SeededGenerator) -> Var {
        guard training, rate > 0 else { return x }
        precondition(rate < 1)
        var mask = Tensor(uninitialized: x.shape)
        let keep = 1 / (1 - rate)
        let n = x.shape[0], per = x.value.count / max(n, 1)
        let (before, after) = rowsAround(n)
        for _ in 0..<(before * per) { _ = Float.random(in: 0..<1, using: &rng) }
        mask.withUnsafeMutableBufferPointer { m in
            for i in 0..<m.count { m[i] = Float.random(in: 0..<1, using: &rng) < rate ? 0 : keep }
        }
        for _ in 0..<(after * per) { _ = Float.random(in: 0..<1, using: &rng) }
        return record(x.value * mask, inputs: [x]) { [unowned self] dy in self.accumulate(x, dy * mask) }
    }

    /// Stochastic depth on a residual branch `[N, ...]`: drops whole samples with probability `rate`.
    public func dropPath(_ x: Var, rate: Float, using rng: inout SeededGenerator) -> Var {
        guard training, rate > 0 else { return x }
        let n = x.shape[0], per = x.value.count / n
        var mask = Tensor(uninitialized: x.shape)
        let (before, after) = rowsAround(n)
        for _ in 0..<before { _ = Float.random(in: 0..<1, using: &rng) }
        mask.withUnsafeMutableBufferPointer { m in
            for i in 0..<n {
                let v: Float = Float.random(in: 0..<1, using: &rng) < rate ? 0 : 1 / (1 - rate)
                for j in 0..<per { m[i * per + j] = v }
            }
        }
        for _ in 0..<after { _ = Float.random(in: 0..<1, using: &rng) }
        return record(x.value * mask, inputs: [x]) { [unowned self] dy in self.accumulate(x, dy * mask) }
    }

    public func pool(_ x: Var, _ kind: PoolingKernels.Kind, kernel: Int, stride: Int, padding: Int = 0) throws -> Var {
        let k = try PoolingKernels.make(shape: x.shape, kind: kind, kernel: kernel, stride: stride, padding: padding)
        let (y, ws) = k.forward(x.value)
        return record(y, inputs: [x]) { [unowned self] dy in self.accumulate(x, k.backward(dy, workspace: ws)) }
    }

    /// Mean softmax cross-entropy of logits `[N, K]` against integer labels, with label smoothing ε:
    /// the target puts 1 − ε on the label and ε/K on every class. Optional per-sample weights
    /// (normalised by their sum).
    public func softmaxCrossEntropy(_ logits: Var, labels: [Int], labelSmoothing: Float = 0,
                                    sampleWeights: [Float]? = nil) -> Var {
        let n = logits.shape[0], k = logits.shape[1]
        precondition(labels.count == n && labels.allSatisfy { (0..<k).contains($0) })
        let weights = sampleWeights ?? [Float](repeating: 1, count: n)
        let total = weights.reduce(0, +)
        var probs = logits.value
        var loss: Double = 0
        probs.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let row = p.baseAddress! + i * k
                var m = row[0]
                for j in 1..<k { m = max(m, row[j]) }
                var s: Double = 0
                for j in 0..<k { s += Foundation.exp(Double(row[j] - m)) }
                let logZ = Double(m) + Foundation.log(s)
                var li: Double = 0
                for j in 0..<k {
                    let target = Double(labelSmoothing) / Double(k) + (j == labels[i] ? Double(1 - labelSmoothing) : 0)
                    li -= target * (Double(row[j]) - logZ)
                    row[j] = Float(Foundation.exp(Double(row[j]) - logZ))
                }
                loss += Double(weights[i]) * li
            }
        }
        let value = Tensor(shape: [], data: [Float(loss / Double(total))])
        return record(value, inputs: [logits]) { [unowned self] dy in
            let scale = dy[flat: 0] / total
            var dx = probs
            dx.withUnsafeMutableBufferPointer { p in
                for i in 0..<n {
                    for j in 0..<k {
                        let target = labelSmoothing / Float(k) + (j == labels[i] ? 1 - labelSmoothing : 0)
                        p[i * k + j] = (p[i * k + j] - target) * weights[i] * scale
                    }
                }
            }
            self.accumulate(logits, dx)
        }
    }
}

extension Tape {
    /// Information maximisation on unlabelled logits `[N, K]` (Liang et al. 2020, SHOT): the mean entropy of
    /// the rows' softmax minus `diversity` × the entropy of their mean, L = (1/N) Σᵢ H(pᵢ) − λ H(p̄). Minimising
    /// it makes each prediction confident while keeping the classes in use (without the second term every
    /// image would drift to one class). Natural logarithms.
    ///
    /// Gradient: ∂L/∂zᵢⱼ = (1/N) pᵢⱼ [−(log pᵢⱼ + Hᵢ) + λ (aⱼ − Σₖ pᵢₖ aₖ)], aⱼ = log p̄ⱼ.
    ///
    /// With a `prior` π (the new images' class mix, when it is not even) the second term becomes
    /// λ KL(p̄ ‖ π) − λ log K, which keeps the mean prediction near that mix instead of near uniform: aⱼ = log p̄ⱼ
    /// − log(K πⱼ), the same loss and gradient as above when π is uniform.
    public func informationMaximisation(_ logits: Var, diversity: Float = 1, prior: [Double]? = nil) -> Var {
        let n = logits.shape[0], k = logits.shape[1]
        let z = logits.value.scalars
        var p = [Double](repeating: 0, count: n * k)
        for i in 0..<n {
            let row = z[(i * k)..<((i + 1) * k)]
            let m = Double(row.max()!)
            var sum = 0.0
            for j in 0..<k { p[i * k + j] = Foundation.exp(Double(z[i * k + j]) - m); sum += p[i * k + j] }
            for j in 0..<k { p[i * k + j] /= sum }
        }
        let tiny = 1e-12
        var entropy = [Double](repeating: 0, count: n), mean = [Double](repeating: 0, count: k)
        for i in 0..<n {
            for j in 0..<k {
                let v = p[i * k + j]
                entropy[i] -= v * Foundation.log(max(v, tiny))
                mean[j] += v / Double(n)
            }
        }
        let logPrior = prior.map { pr in pr.map { Foundation.log(max($0 * Double(k), tiny)) } } ?? [Double](repeating: 0, count: k)
        let logMean = (0..<k).map { Foundation.log(max(mean[$0], tiny)) - logPrior[$0] }
        let meanEntropy = -(0..<k).map { mean[$0] * logMean[$0] }.reduce(0, +)
        let loss = entropy.reduce(0, +) / Double(n) - Double(diversity) * meanEntropy
        let value = Tensor(shape: [], data: [Float(loss)])
        return record(value, inputs: [logits]) { [unowned self] dy in
            let scale = Double(dy[flat: 0]) / Double(n)
            var dx = [Float](repeating: 0, count: n * k)
            for i in 0..<n {
                var crossLogMean = 0.0
                for j in 0..<k { crossLogMean += p[i * k + j] * logMean[j] }
                for j in 0..<k {
                    let v = p[i * k + j]
                    let g = v * (-(Foundation.log(max(v, tiny)) + entropy[i]) + Double(diversity) * (logMean[j] - crossLogMean))
                    dx[i * k + j] = Float(g * scale)
                }
            }
            self.accumulate(logits, Tensor(shape: [n, k], data: dx))
        }
    }

    /// Convolution followed by batch norm with fixed statistics (frozen BN) and an optional ReLU/ReLU6,
    /// computed as one convolution with folded weights w' = w·s and bias b' = β − μ·s, s = γ/√(σ² + ε),
    /// and the activation fused. Against conv → BN → ReLU6 as three kernels this saves two full passes
    /// over the activations forward and the BN and activation passes backward. Gradients reach x, w, γ, β.
    public func convBatchNormFrozen(_ x: Var, _ w: Var, geometry g: Conv2DGeometry, scale: Var, shift: Var,
                                    mean: Tensor, variance: Tensor, epsilon: Float,
                                    activation: FusedActivation) throws -> Var {
        let outC = g.outChannels, perOut = g.weightShape.dropFirst().reduce(1, *)
        let gamma = scale.value.scalars, beta = shift.value.scalars
        let mu = mean.scalars, v = variance.scalars
        let inv = v.map { 1 / ($0 + epsilon).squareRoot() }
        let s = (0..<outC).map { gamma[$0] * inv[$0] }
        var folded = w.value
        folded.withUnsafeMutableBufferPointer { p in
            for o in 0..<outC { for i in 0..<perOut { p[o * perOut + i] *= s[o] } }
        }
        let bias = Tensor(shape: [outC], data: (0..<outC).map { beta[$0] - mu[$0] * s[$0] })
        let forward = try Conv2DForward.make(g, bias: true, activation: activation)
        let y = forward(x.value, weights: forward.pack(folded), bias: bias)
        let xv = x.value, wv = w.value
        return record(y, inputs: [x, w, scale, shift]) { [unowned self] dy in
            let backward = try! Conv2DBackward.make(g, bias: true)
            // Through the activation, from its output (y ∈ (0, 6) ⇔ the pre-activation is), by oneDNN.
            let gPre: Tensor
            switch activation {
            case .none: gPre = dy
            case .relu: gPre = try! EltwiseKernels.make(.reluFromOutput, count: y.count).backward(dy, input: y)
            case .relu6: gPre = try! EltwiseKernels.make(.relu6FromOutput, count: y.count).backward(dy, input: y)
            }
            if self.needsGradient(x) { self.accumulate(x, backward.inputGradient(gPre, weights: folded)) }
            // ∂L/∂b' (= ∂L/∂β) comes out of the weight-gradient kernel as its bias gradient.
            let (dFolded, dBias) = backward.weightAndBiasGradient(gPre, input: xv)
            let dShift = dBias!.scalars
            let needW = self.needsGradient(w), needScale = self.needsGradient(scale)
            if needW || needScale {
                var dW = dFolded
                var dS = [Float](repeating: 0, count: outC)
                dW.withUnsafeMutableBufferPointer { p in
                    wv.withUnsafeBufferPointer { wp in
                        for o in 0..<outC {
                            var acc: Float = 0
                            for i in 0..<perOut {
                                acc += p[o * perOut + i] * wp[o * perOut + i]
                                p[o * perOut + i] *= s[o]
                            }
                            dS[o] = acc - dShift[o] * mu[o]
                        }
                    }
                }
                if needW { self.accumulate(w, dW) }
                self.accumulate(scale, Tensor(shape: [outC], data: (0..<outC).map { dS[$0] * inv[$0] }))
            }
            self.accumulate(shift, Tensor(shape: [outC], data: dShift))
        }
    }
}
