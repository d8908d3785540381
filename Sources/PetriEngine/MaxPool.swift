import Foundation

/// Max pooling over NHWC activations in Swift, optionally fused with a ReLU in front: relu(maxpool(x)) =
/// maxpool(relu(x)), so the ReLU costs nothing on the (4× larger) input.
///
/// Why not oneDNN's: on the from-scratch nets' small-channel activations (16–64 channels, 16–64 px) its
/// NHWC max pooling took about a third of a cnn-mini training step; this loop, vectorised over channels,
/// takes a small fraction of that. The argmax of every output
/// (flat input position `h · W + w` within its sample, −1 where the ReLU zeroed it) is kept for the
/// backward pass, which scatters the gradient to those positions.
public struct MaxPoolKernel: Sendable {
    public let inputShape: [Int]
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    public let relu: Bool
    public let outputShape: [Int]

    public init(inputShape: [Int], kernel: Int, stride: Int, padding: Int, relu: Bool) {
        precondition(inputShape.count == 4, "max pooling expects [N, H, W, C]")
        precondition(padding < kernel, "padding must leave every window at least one input")
        self.inputShape = inputShape
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.relu = relu
        let oh = (inputShape[1] + 2 * padding - kernel) / stride + 1
        let ow = (inputShape[2] + 2 * padding - kernel) / stride + 1
        outputShape = [inputShape[0], oh, ow, inputShape[3]]
    }

    /// Output `[N, OH, OW, C]` and the argmax positions for `backward`.
    public func forward(_ x: Tensor) -> (y: Tensor, argmax: [Int32]) {
        precondition(x.shape == inputShape, "max pooling input \(x.shape), kernel built for \(inputShape)")
        let (n, h, w, c) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let (oh, ow) = (outputShape[1], outputShape[2])
        var y = Tensor(uninitialized: outputShape)
        var argmax = [Int32](repeating: -1, count: y.count)
        let (k, s, p, relu) = (kernel, stride, padding, self.relu)
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
                argmax.withUnsafeMutableBufferPointer { ab in
                    let xp = xb.baseAddress!, yp = yb.baseAddress!, ap = ab.baseAddress!
                    // One thread: splitting samples over both cores was slower (OpenMP's workers still spin
                    // on the second core after each oneDNN call) and grew the heap across malloc arenas.
                    do {
                        for sample in 0..<n {
                            let xs = xp + sample * h * w * c
                            for oy in 0..<oh {
                                let y0 = max(oy * s - p, 0), y1 = min(oy * s - p + k, h)
                                for ox in 0..<ow {
                                    let x0 = max(ox * s - p, 0), x1 = min(ox * s - p + k, w)
                                    let o = ((sample * oh + oy) * ow + ox) * c
                                    Self.windowMax(xs, width: w, channels: c, rows: y0..<y1, columns: x0..<x1,
                                                   relu: relu, out: yp + o, argmax: ap + o)
                                }
                            }
                        }
                    }
                }
            }
        }
        return (y, argmax)
    }

    /// Max over one window for every channel; first maximum wins on ties (as oneDNN and PyTorch).
    @inline(__always)
    private static func windowMax(_ xs: UnsafePointer<Float>, width w: Int, channels c: Int, rows: Range<Int>,
                                  columns: Range<Int>, relu: Bool, out: UnsafeMutablePointer<Float>,
                                  argmax: UnsafeMutablePointer<Int32>) {
        var ch = 0
        while ch + 8 <= c {
            var best = SIMD8<Float>(repeating: -.infinity), at = SIMD8<Int32>(repeating: -1)
            for iy in rows {
                for ix in columns {
                    let pos = iy * w + ix
                    let v = UnsafeRawPointer(xs + pos * c + ch).loadUnaligned(as: SIMD8<Float>.self)
                    let better = v .> best
                    best.replace(with: v, where: better)
                    at.replace(with: SIMD8(repeating: Int32(pos)), where: better)
                }
            }
            if relu { at.replace(with: -1, where: best .<= 0); best.replace(with: 0, where: best .< 0) }
            UnsafeMutableRawPointer(out + ch).storeBytes(of: best, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(argmax + ch).storeBytes(of: at, as: SIMD8<Int32>.self)
            ch += 8
        }
        while ch < c {
            var best = -Float.infinity, at: Int32 = -1
            for iy in rows {
                for ix in columns {
                    let pos = iy * w + ix, v = xs[pos * c + ch]
                    if v > best { best = v; at = Int32(pos) }
                }
            }
            if relu && best <= 0 { best = 0; at = -1 }
            out[ch] = best
            argmax[ch] = at
            ch += 1
        }
    }

    /// ∂L/∂x `[N, H, W, C]`: each output's gradient added at its argmax (nothing where the ReLU was off).
    public func backward(_ dy: Tensor, argmax: [Int32]) -> Tensor {
        precondition(dy.shape == outputShape)
        let (n, h, w, c) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let perOut = outputShape[1] * outputShape[2] * c
        var dx = Tensor(zeros: inputShape)
        dy.withUnsafeBufferPointer { gb in
            dx.withUnsafeMutableBufferPointer { db in
                argmax.withUnsafeBufferPointer { ab in
                    let gp = gb.baseAddress!, dp = db.baseAddress!, ap = ab.baseAddress!
                    // One thread: splitting samples over both cores was slower (OpenMP's workers still spin
                    // on the second core after each oneDNN call) and grew the heap across malloc arenas.
                    do {
                        for sample in 0..<n {
                            let ds = dp + sample * h * w * c
                            let base = sample * perOut
                            for o in Swift.stride(from: 0, to: perOut, by: c) {
                                for ch in 0..<c {
                                    let pos = Int(ap[base + o + ch])
                                    if pos >= 0 { ds[pos * c + ch] += gp[base + o + ch] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return dx
    }
}

extension Tape {
    /// Max pooling (native NHWC kernel), with `relu` applied first when asked: `[N, H, W, C]` →
    /// `[N, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1, C]`.
    public func maxPool(_ x: Var, kernel: Int, stride: Int, padding: Int = 0, relu: Bool = false) -> Var {
        let k = MaxPoolKernel(inputShape: x.shape, kernel: kernel, stride: stride, padding: padding, relu: relu)
        let (y, argmax) = k.forward(x.value)
        return record(y, inputs: [x]) { [unowned self] dy in self.accumulate(x, k.backward(dy, argmax: argmax)) }
    }
}
