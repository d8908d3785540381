import Foundation

/// Reverse-mode automatic differentiation by recording: every operation on `Var`s appends a node holding
/// its value and a closure that, given the node's gradient, adds gradients into its inputs. `backward`
/// runs those closures in reverse order. A tape is used for one step and then discarded.
///
/// Nodes that no parameter depends on (e.g. a frozen trunk's cached activations) are marked as not needing
/// gradients, and operations skip computing gradients for them.
public final class Tape {
    final class Node {
        let value: Tensor
        var gradient: Tensor?
        let needsGradient: Bool
        let backward: ((Tensor) -> Void)?

        init(value: Tensor, needsGradient: Bool, backward: ((Tensor) -> Void)?) {
            self.value = value
            self.needsGradient = needsGradient
            self.backward = backward
        }
    }

    var nodes: [Node] = []
    /// Whether operations run in training mode (batch-norm statistics, dropout).
    public var training: Bool

    public init(training: Bool = true) { self.training = training }

    /// When this tape computes rows `offset..<offset+n` of a batch of `total` rows (data-parallel training: each
    /// process a slice of the same global batch), random masks are drawn as for the whole batch and this slice
    /// kept, so that the slices' gradients add up to the whole batch's exactly as one process computes it.
    public var rowWindow: (offset: Int, total: Int)?

    /// Rows of the global batch before and after this tape's `n` rows.
    func rowsAround(_ n: Int) -> (Int, Int) {
        guard let w = rowWindow else { return (0, 0) }
        return (w.offset, max(0, w.total - w.offset - n))
    }

    /// A value no gradient flows into (data, cached activations).
    public func constant(_ t: Tensor) -> Var { record(t, needsGradient: false, backward: nil) }

    /// A leaf bound to a parameter: its gradient is added to `parameter.gradient`.
    public func parameter(_ p: Parameter) -> Var {
        guard p.trainable else { return constant(p.value) }
        return record(p.value, needsGradient: true) { g in
            if p.gradient == nil { p.gradient = g } else { p.gradient!.add(g) }
        }
    }

    /// Records an operation's result. `backward` is kept only if some input needs a gradient.
    public func record(_ value: Tensor, inputs: [Var], backward: @escaping (Tensor) -> Void) -> Var {
        let needs = inputs.contains { nodes[$0.id].needsGradient }
        return record(value, needsGradient: needs, backward: needs ? backward : nil)
    }

    private func record(_ value: Tensor, needsGradient: Bool, backward: ((Tensor) -> Void)?) -> Var {
        nodes.append(Node(value: value, needsGradient: needsGradient, backward: backward))
        return Var(id: nodes.count - 1, tape: self)
    }

    public func needsGradient(_ v: Var) -> Bool { nodes[v.id].needsGradient }

    /// Adds `g` into the gradient of `v` (called by operations' backward closures).
    public func accumulate(_ v: Var, _ g: Tensor) {
        let node = nodes[v.id]
        guard node.needsGradient else { return }
        precondition(g.count == node.value.count, "gradient \(g.shape) for value \(node.value.shape)")
        if node.gradient == nil { node.gradient = g } else { node.gradient!.add(g) }
    }

    /// Back-propagates from a scalar `loss` (seed 1), or from any node with an explicit seed gradient.
    public func backward(from loss: Var, seed: Tensor? = nil) {
        let root = nodes[loss.id]
        precondition(seed != nil || root.value.count == 1, "backward from a non-scalar needs a seed gradient")
        root.gradient = seed ?? Tensor(shape: root.value.shape, repeating: 1)
        for i in stride(from: loss.id, through: 0, by: -1) {
            let node = nodes[i]
            guard let g = node.gradient, let back = node.backward else { continue }
            back(g)
            node.gradient = nil   // free memory as we go
        }
    }
}

/// A value recorded on a tape.
public struct Var {
    public let id: Int
    public unowned let tape: Tape

    public var value: Tensor { tape.nodes[id].value }
    public var shape: [Int] { tape.nodes[id].value.shape }
}
