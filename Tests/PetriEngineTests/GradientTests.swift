import Foundation
import Testing
@testable import PetriEngine

/// Every differentiable operation against central finite differences on small random shapes.
/// The scalar checked is L = Σ y ⊙ R for a fixed random R, so every output element matters.
enum GradientCheck {
    static func run(_ inputs: [Parameter], samples: Int = 24, epsilon: Float = 1e-2, tolerance: Double = 1e-2,
                    training: Bool = true, _ f: (Tape, [Var]) throws -> Var) throws -> Double {
        func forward() throws -> (Tape, Var) {
            let tape = Tape(training: training)
            let vars = inputs.map { tape.parameter($0) }
            return (tape, try f(tape, vars))
        }
        var rng = SeededGenerator(seed: 99)
        let (tape, y) = try forward()
        let r = Tensor.uniform(y.shape, using: &rng)
        for p in inputs { p.gradient = nil }
        tape.backward(from: y, seed: r)
        func loss() throws -> Double {
            let (tape, y) = try forward()
            return withExtendedLifetime(tape) { (y.value * r).sum }
        }
        var worst = 0.0
        for p in inputs {
            guard let analytic = p.gradient else { Issue.record("no gradient reached an input"); continue }
            let scale = max(1, analytic.scalars.map { Double(abs($0)) }.max() ?? 0)
            for _ in 0..<min(samples, p.value.count) {
                let i = Int.random(in: 0..<p.value.count, using: &rng)
                let original = p.value[flat: i]
                p.value[flat: i] = original + epsilon
                let plus = try loss()
                p.value[flat: i] = original - epsilon
                let minus = try loss()
                p.value[flat: i] = original
                let numeric = (plus - minus) / (2 * Double(epsilon))
                worst = max(worst, abs(numeric - Double(analytic[flat: i])) / scale)
            }
        }
        #expect(worst <= tolerance, "largest relative gradient error \(worst)")
        return worst
    }

    static func parameter(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Parameter {
        var rng = SeededGenerator(seed: seed)
        return Parameter(Tensor.uniform(shape, low: low, high: high, using: &rng))
    }
}

@Suite(.serialized) struct GradientTests {
    @Test(arguments: [
        // (H, W, Cin, Cout, k, stride, groups)
        (7, 6, 3, 4, 3, 2, 1),    // TF-same asymmetric padding
        (5, 5, 4, 6, 1, 1, 1),    // pointwise
        (8, 8, 6, 6, 5, 2, 6),    // depthwise 5×5 stride 2
        (6, 6, 4, 4, 3, 1, 4),    // depthwise 3×3
    ])
    func convolution(h: Int, w: Int, cin: Int, cout: Int, k: Int, stride: Int, groups: Int) throws {
        let ph = Conv2DGeometry.samePadding(input: h, kernel: k, stride: stride)
        let pw = Conv2DGeometry.samePadding(input: w, kernel: k, stride: stride)
        let g = Conv2DGeometry(batch: 2, height: h, width: w, inChannels: cin, outChannels: cout, kernelHeight: k,
                               kernelWidth: k, strideHeight: stride, strideWidth: stride, padTop: ph.before,
                               padBottom: ph.after, padLeft: pw.before, padRight: pw.after, groups: groups)
        let x = GradientCheck.parameter(g.inputShape, seed: 1)
        let wt = GradientCheck.parameter(g.weightShape, seed: 2)
        _ = try GradientCheck.run([x, wt]) { tape, v in try tape.conv2d(v[0], v[1], geometry: g) }
    }

    @Test(arguments: [true, false])
    func batchNorm(batchStatistics: Bool) throws {
        let x = GradientCheck.parameter([3, 4, 3, 5], seed: 3, low: -2, high: 3)
        let scale = GradientCheck.parameter([5], seed: 4, low: 0.5, high: 1.5)
        let shift = GradientCheck.parameter([5], seed: 5)
        let mean = Parameter(Tensor(shape: [5], data: [0.1, -0.2, 0.3, 0, 0.5]), trainable: false)
        let variance = Parameter(Tensor(shape: [5], data: [1, 2, 0.5, 1.5, 0.8]), trainable: false)
        _ = try GradientCheck.run([x, scale, shift], epsilon: 5e-3) { tape, v in
            // A fresh copy of the running stats each time, so the forward passes agree.
            let m = Parameter(mean.value, trainable: false), s = Parameter(variance.value, trainable: false)
            return try tape.batchNorm(v[0], scale: v[1], shift: v[2], runningMean: m, runningVariance: s,
                                      epsilon: 1e-3, momentum: 0.1, useBatchStatistics: batchStatistics)
        }
    }

    @Test func batchNormUpdatesRunningStatistics() throws {
        let tape = Tape()
        let x = Tensor(shape: [2, 1, 1, 1], data: [1, 3])
        let mean = Parameter(Tensor(zeros: [1]), trainable: false)
        let variance = Parameter(Tensor(shape: [1], repeating: 1), trainable: false)
        _ = try tape.batchNorm(tape.constant(x), scale: tape.constant(Tensor(shape: [1], repeating: 1)),
                               shift: tape.constant(Tensor(zeros: [1])), runningMean: mean, runningVariance: variance,
                               epsilon: 1e-5, momentum: 0.1, useBatchStatistics: true)
        // batch mean 2, unbiased variance 2
        #expect(abs(mean.value[flat: 0] - 0.2) < 1e-6)
        #expect(abs(variance.value[flat: 0] - (0.9 + 0.2)) < 1e-6)
    }

    @Test(arguments: [Activation.relu, .relu6])
    func activations(kind: Activation) throws {
        // Values kept away from the kinks at 0 and 6.
        let values: [Float] = (0..<40).map { i in [-2.5, -0.7, 0.4, 1.3, 3.9, 5.6, 6.5, 8.1][i % 8] + Float(i) * 0.001 }
        let x = Parameter(Tensor(shape: [2, 4, 5], data: values))
        _ = try GradientCheck.run([x]) { tape, v in try tape.activation(v[0], kind) }
    }

    @Test func addAndGlobalAveragePool() throws {
        let a = GradientCheck.parameter([2, 3, 4, 5], seed: 6)
        let b = GradientCheck.parameter([2, 3, 4, 5], seed: 7)
        _ = try GradientCheck.run([a, b]) { tape, v in tape.globalAveragePool(tape.add(v[0], v[1])) }
    }

    @Test func linear() throws {
        let x = GradientCheck.parameter([4, 6], seed: 8)
        let w = GradientCheck.parameter([3, 6], seed: 9)
        let b = GradientCheck.parameter([3], seed: 10)
        _ = try GradientCheck.run([x, w, b]) { tape, v in tape.linear(v[0], weight: v[1], bias: v[2]) }
    }

    @Test(arguments: [PoolingKernels.Kind.max, .average])
    func pooling(kind: PoolingKernels.Kind) throws {
        let x = GradientCheck.parameter([2, 6, 6, 3], seed: 11)
        _ = try GradientCheck.run([x], epsilon: 1e-3) { tape, v in try tape.pool(v[0], kind, kernel: 3, stride: 2, padding: 1) }
    }

    @Test(arguments: [false, true])
    func nativeMaxPool(relu: Bool) throws {
        // Odd sizes and 11 channels: the SIMD8 part and the scalar tail, windows clipped by padding.
        let x = GradientCheck.parameter([2, 7, 5, 11], seed: 13)
        _ = try GradientCheck.run([x], epsilon: 1e-3) { tape, v in tape.maxPool(v[0], kernel: 3, stride: 2, padding: 1, relu: relu) }
    }

    @Test func nativeMaxPoolMatchesOneDNN() throws {
        var rng = SeededGenerator(seed: 14)
        let x = Tensor.normal([3, 9, 8, 16], std: 1, using: &rng)
        let dy = Tensor.normal([3, 5, 4, 16], std: 1, using: &rng)
        let reference = try PoolingKernels.make(shape: x.shape, kind: .max, kernel: 3, stride: 2, padding: 1)
        let (yRef, ws) = reference.forward(x)
        let native = MaxPoolKernel(inputShape: x.shape, kernel: 3, stride: 2, padding: 1, relu: false)
        let (y, argmax) = native.forward(x)
        #expect(y.shape == yRef.shape && y.maxAbsDifference(yRef) == 0)
        #expect(native.backward(dy, argmax: argmax).maxAbsDifference(reference.backward(dy, workspace: ws)) < 1e-6)
        // Fused ReLU: the same as ReLU first.
        let relu = try EltwiseKernels.make(.relu, count: x.count).forward(x)
        let fused = MaxPoolKernel(inputShape: x.shape, kernel: 3, stride: 2, padding: 1, relu: true).forward(x).y
        #expect(fused.maxAbsDifference(native.forward(relu).y) == 0)
    }

    @Test func dropoutAndDropPath() throws {
        let x = GradientCheck.parameter([4, 10], seed: 12)
        _ = try GradientCheck.run([x]) { tape, v in
            var rng = SeededGenerator(seed: 5)   // the same mask on every forward pass
            return tape.dropPath(tape.dropout(v[0], rate: 0.3, using: &rng), rate: 0.25, using: &rng)
        }
    }

    @Test func softmaxCrossEntropyWithSmoothingAndWeights() throws {
        let logits = GradientCheck.parameter([5, 4], seed: 13, low: -3, high: 3)
        _ = try GradientCheck.run([logits], epsilon: 1e-3) { tape, v in
            tape.softmaxCrossEntropy(v[0], labels: [0, 3, 1, 1, 2], labelSmoothing: 0.1,
                                     sampleWeights: [1, 2, 0.5, 1, 1])
        }
    }

    @Test func informationMaximisationGradient() throws {
        let logits = GradientCheck.parameter([6, 4], seed: 17, low: -3, high: 3)
        _ = try GradientCheck.run([logits], epsilon: 1e-3) { tape, v in tape.informationMaximisation(v[0], diversity: 0.8) }
    }

    /// With a class mix π the diversity term is λ KL(p̄ ‖ π) − λ log K: the gradient checks, and an even π is
    /// the plain loss.
    @Test func informationMaximisationWithAPriorGradient() throws {
        let logits = GradientCheck.parameter([6, 4], seed: 19, low: -3, high: 3)
        _ = try GradientCheck.run([logits], epsilon: 1e-3) { tape, v in
            tape.informationMaximisation(v[0], diversity: 0.8, prior: [0.55, 0.25, 0.15, 0.05])
        }
        let tape = Tape()
        let z = tape.constant(Tensor(shape: [2, 2], data: [0, 1, 2, 0]))
        #expect(abs(tape.informationMaximisation(z, diversity: 0.7, prior: [0.5, 0.5]).value[flat: 0]
                    - tape.informationMaximisation(z, diversity: 0.7).value[flat: 0]) < 1e-6)
        // Rows p = (1/4, 3/4) and (3/4, 1/4), mean (½, ½), π = (0.8, 0.2): L = h + λ KL(p̄‖π) − λ ln 2.
        let l3 = Float(Foundation.log(3.0))
        let l = tape.informationMaximisation(tape.constant(Tensor(shape: [2, 2], data: [0, l3, l3, 0])), diversity: 0.5, prior: [0.8, 0.2])
        let h = -(0.25 * Foundation.log(0.25) + 0.75 * Foundation.log(0.75))
        let kl = 0.5 * Foundation.log(0.5 / 0.8) + 0.5 * Foundation.log(0.5 / 0.2)
        #expect(abs(Double(l.value[flat: 0]) - (h + 0.5 * kl - 0.5 * Foundation.log(2.0))) < 1e-6)
    }

    @Test func informationMaximisationValueByHand() {
        // Rows p = (1/4, 3/4) and (3/4, 1/4): each row's entropy h = −(¼ ln ¼ + ¾ ln ¾), their mean (½, ½) has
        // entropy ln 2, so L = h − λ ln 2.
        let tape = Tape()
        let l3 = Float(Foundation.log(3.0))
        let l = tape.informationMaximisation(tape.constant(Tensor(shape: [2, 2], data: [0, l3, l3, 0])), diversity: 0.5)
        let h = -(0.25 * Foundation.log(0.25) + 0.75 * Foundation.log(0.75))
        #expect(abs(Double(l.value[flat: 0]) - (h - 0.5 * Foundation.log(2.0))) < 1e-6)
    }

    @Test func crossEntropyValueByHand() {
        let tape = Tape()
        // logits (0, ln 3): p = (1/4, 3/4); label 1, smoothing 0.2 → target (0.1, 0.9)
        let l = tape.softmaxCrossEntropy(tape.constant(Tensor(shape: [1, 2], data: [0, Float(Foundation.log(3.0))])),
                                         labels: [1], labelSmoothing: 0.2)
        let expected = -(0.1 * Foundation.log(0.25) + 0.9 * Foundation.log(0.75))
        #expect(abs(Double(l.value[flat: 0]) - expected) < 1e-6)
    }

    @Test func chainedNetworkBlock() throws {
        // conv → BN → ReLU6 → depthwise → BN → residual add → pool → linear → CE: the pieces together.
        let g1 = Conv2DGeometry(batch: 2, height: 6, width: 6, inChannels: 3, outChannels: 4, kernelHeight: 1, kernelWidth: 1)
        let g2 = Conv2DGeometry(batch: 2, height: 6, width: 6, inChannels: 4, outChannels: 4, kernelHeight: 3,
                                kernelWidth: 3, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1, groups: 4)
        let x = GradientCheck.parameter(g1.inputShape, seed: 20)
        let w1 = GradientCheck.parameter(g1.weightShape, seed: 21)
        let w2 = GradientCheck.parameter(g2.weightShape, seed: 22)
        let fc = GradientCheck.parameter([3, 4], seed: 23)
        let ones = Parameter(Tensor(shape: [4], repeating: 1)), zeros = Parameter(Tensor(zeros: [4]))
        _ = try GradientCheck.run([x, w1, w2, fc], epsilon: 5e-3, tolerance: 2e-2) { tape, v in
            let rm = Parameter(Tensor(zeros: [4]), trainable: false), rv = Parameter(Tensor(shape: [4], repeating: 1), trainable: false)
            var h = try tape.conv2d(v[0], v[1], geometry: g1)
            h = try tape.batchNorm(h, scale: tape.parameter(ones), shift: tape.parameter(zeros), runningMean: rm,
                                   runningVariance: rv, epsilon: 1e-3, momentum: 0.1, useBatchStatistics: true)
            let r = h
            h = try tape.conv2d(h, v[2], geometry: g2)
            h = tape.add(h, r)
            let logits = tape.linear(tape.globalAveragePool(h), weight: v[3], bias: nil)
            return tape.softmaxCrossEntropy(logits, labels: [0, 2])
        }
    }

    @Test func noReferenceKernelsInTraining() throws {
        try convolution(h: 8, w: 8, cin: 6, cout: 6, k: 5, stride: 2, groups: 6)
        try batchNorm(batchStatistics: true)
        let refs = createdKernelImplementations().filter { $0.contains(": ref") }
        #expect(refs.isEmpty, "reference kernels: \(refs)")
    }
}

@Suite struct OptimizerTests {
    @Test func adamWFirstStepByHand() {
        let p = Parameter(Tensor(shape: [2], data: [1, -2]))
        p.gradient = Tensor(shape: [2], data: [0.5, -0.1])
        let opt = AdamW([ParameterGroup([p], learningRateScale: 0.5, weightDecay: 0.1)], learningRate: 0.2)
        opt.step()
        // First step: m̂ = g, v̂ = g² → update = sign(g) (up to ε); lr = 0.1; w −= 0.1·(sign(g) + 0.1·w)
        #expect(abs(p.value[flat: 0] - (1 - 0.1 * (1 + 0.1))) < 1e-5)
        #expect(abs(p.value[flat: 1] - (-2 - 0.1 * (-1 + 0.1 * -2))) < 1e-5)
    }

    @Test func sgdMomentumByHand() {
        let p = Parameter(Tensor(shape: [1], data: [1]))
        let opt = SGD([ParameterGroup([p])], learningRate: 0.1, momentum: 0.9)
        p.gradient = Tensor(shape: [1], data: [1]); opt.step()   // v = 1, w = 0.9
        p.gradient = Tensor(shape: [1], data: [1]); opt.step()   // v = 1.9, w = 0.71
        #expect(abs(p.value[flat: 0] - 0.71) < 1e-6)
    }

    @Test func warmupCosine() {
        let s = WarmupCosineSchedule(peak: 1, totalSteps: 100, warmupFraction: 0.1)
        #expect(abs(s(0) - 0.1) < 1e-6)
        #expect(abs(s(9) - 1) < 1e-6)
        #expect(abs(s(10) - 1) < 1e-6)
        #expect(abs(s(55) - 0.5) < 1e-6)
        #expect(s(99) < 0.01)
    }

    @Test func trainingReducesLoss() throws {
        // A linear classifier on two separable blobs, trained with AdamW through the tape.
        var rng = SeededGenerator(seed: 4)
        let x = Tensor(shape: [40, 2], data: (0..<40).flatMap { i -> [Float] in
            let c: Float = i % 2 == 0 ? 1.5 : -1.5
            return [c + 0.5 * rng.normal(), -c + 0.5 * rng.normal()]
        })
        let labels = (0..<40).map { $0 % 2 }
        let w = Parameter(Tensor(zeros: [2, 2])), b = Parameter(Tensor(zeros: [2]))
        let opt = AdamW([ParameterGroup([w, b])], learningRate: 0.1)
        var losses: [Float] = []
        for _ in 0..<50 {
            let tape = Tape()
            let loss = tape.softmaxCrossEntropy(tape.linear(tape.constant(x), weight: tape.parameter(w),
                                                            bias: tape.parameter(b)), labels: labels)
            losses.append(loss.value[flat: 0])
            opt.zeroGradients()
            tape.backward(from: loss)
            opt.step()
        }
        #expect(losses.last! < 0.1 && losses.first! > 0.6)
    }
}

@Suite struct FusedFrozenBatchNormTests {
    @Test(arguments: [FusedActivation.relu6, .none])
    func gradients(activation: FusedActivation) throws {
        let g = Conv2DGeometry(batch: 2, height: 6, width: 5, inChannels: 4, outChannels: 6, kernelHeight: 3,
                               kernelWidth: 3, strideHeight: 2, strideWidth: 2, padTop: 0, padBottom: 1, padLeft: 1,
                               padRight: 1)
        let x = GradientCheck.parameter(g.inputShape, seed: 30)
        let w = GradientCheck.parameter(g.weightShape, seed: 31)
        let gamma = GradientCheck.parameter([6], seed: 32, low: 0.5, high: 2)
        let beta = GradientCheck.parameter([6], seed: 33, low: 1, high: 3)   // keeps most outputs inside (0, 6)
        let mean = Tensor(shape: [6], data: [0.1, -0.3, 0.2, 0, 0.4, -0.1])
        let variance = Tensor(shape: [6], data: [1, 0.5, 2, 1.5, 0.8, 1.2])
        _ = try GradientCheck.run([x, w, gamma, beta], epsilon: 2e-3) { tape, v in
            try tape.convBatchNormFrozen(v[0], v[1], geometry: g, scale: v[2], shift: v[3], mean: mean,
                                         variance: variance, epsilon: 1e-3, activation: activation)
        }
    }

    /// Same values as the unfused conv → frozen BN → ReLU6.
    @Test func matchesTheUnfusedChain() throws {
        let g = Conv2DGeometry(batch: 2, height: 5, width: 5, inChannels: 3, outChannels: 4, kernelHeight: 1, kernelWidth: 1)
        var rng = SeededGenerator(seed: 40)
        let x = Tensor.uniform(g.inputShape, using: &rng), w = Tensor.uniform(g.weightShape, using: &rng)
        let gamma = Tensor.uniform([4], low: 0.5, high: 2, using: &rng), beta = Tensor.uniform([4], using: &rng)
        let mean = Parameter(Tensor.uniform([4], using: &rng), trainable: false)
        let variance = Parameter(Tensor.uniform([4], low: 0.5, high: 2, using: &rng), trainable: false)
        let tape = Tape()
        let fused = try tape.convBatchNormFrozen(tape.constant(x), tape.constant(w), geometry: g,
                                                 scale: tape.constant(gamma), shift: tape.constant(beta),
                                                 mean: mean.value, variance: variance.value, epsilon: 1e-3,
                                                 activation: .relu6)
        let chain = try tape.activation(
            tape.batchNorm(tape.conv2d(tape.constant(x), tape.constant(w), geometry: g), scale: tape.constant(gamma),
                           shift: tape.constant(beta), runningMean: mean, runningVariance: variance, epsilon: 1e-3,
                           momentum: 0.1, useBatchStatistics: false), .relu6)
        #expect(fused.value.maxAbsDifference(chain.value) < 1e-5)
    }
}

/// Compute lanes: independent jobs side by side with single-threaded kernels of their own.
@Suite struct ComputeLaneTests {
    @Test func lanesGiveTheSameNumbersAsTheMainThread() throws {
        let g = Conv2DGeometry(batch: 4, height: 12, width: 12, inChannels: 8, outChannels: 16, kernelHeight: 3,
                               kernelWidth: 3, strideHeight: 1, strideWidth: 1, padTop: 1, padBottom: 1, padLeft: 1,
                               padRight: 1)
        var rng = SeededGenerator(seed: 21)
        let x = Tensor.normal(g.inputShape, std: 1, using: &rng), w = Tensor.normal(g.weightShape, std: 0.3, using: &rng)
        let gamma = Tensor.uniform([16], low: 0.5, high: 2, using: &rng), beta = Tensor.uniform([16], using: &rng)
        // conv → batch-statistics BN → fused ReLU + max pool, and the gradient of the input: every kernel kind.
        let job = { () throws -> (Tensor, Tensor) in
            let tape = Tape(training: true)
            let xv = tape.parameter(Parameter(x))
            let h = try tape.batchNorm(tape.conv2d(xv, tape.constant(w), geometry: g), scale: tape.constant(gamma),
                                       shift: tape.constant(beta), runningMean: Parameter(Tensor(zeros: [16]), trainable: false),
                                       runningVariance: Parameter(Tensor(shape: [16], repeating: 1), trainable: false),
                                       epsilon: 1e-5, momentum: 0.1, useBatchStatistics: true)
            let y = tape.maxPool(h, kernel: 3, stride: 2, padding: 1, relu: true)
            let dx = Parameter(x)
            let tape2 = Tape(training: true)
            let out2 = tape2.globalAveragePool(tape2.maxPool(try tape2.batchNorm(
                tape2.conv2d(tape2.parameter(dx), tape2.constant(w), geometry: g), scale: tape2.constant(gamma),
                shift: tape2.constant(beta), runningMean: Parameter(Tensor(zeros: [16]), trainable: false),
                runningVariance: Parameter(Tensor(shape: [16], repeating: 1), trainable: false), epsilon: 1e-5,
                momentum: 0.1, useBatchStatistics: true), kernel: 3, stride: 2, padding: 1, relu: true))
            tape2.backward(from: out2, seed: Tensor(shape: out2.shape, repeating: 1))
            return (y.value, dx.gradient!)
        }
        let reference = try job()
        let results = try ComputeLanes.run(3) { _ in (ComputeLanes.current, try job()) }
        #expect(ComputeLanes.current == 0)
        for (lane, (y, dx)) in results {
            #expect(lane >= 1)
            #expect(y.maxAbsDifference(reference.0) < 1e-4)
            #expect(dx.maxAbsDifference(reference.1) < 1e-4)
        }
        // Errors come back to the caller.
        struct Boom: Error {}
        #expect(throws: Boom.self) { _ = try ComputeLanes.run(2) { i in if i == 1 { throw Boom() }; return i } }
    }
}
