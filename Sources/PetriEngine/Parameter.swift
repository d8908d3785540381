import Foundation

/// A learnable (or tracked) tensor owned by a layer. A class, so optimizers and loaders update it in place;
/// `version` increases on every write so layers can drop caches derived from it (packed or folded weights).
public final class Parameter: @unchecked Sendable {
    public var value: Tensor { didSet { version &+= 1 } }
    /// Accumulated by `Tape.backward`; cleared by optimizers' `zeroGradients`.
    public var gradient: Tensor?
    /// False for buffers such as BatchNorm running statistics.
    public let trainable: Bool
    public private(set) var version = 0

    public init(_ value: Tensor, trainable: Bool = true) {
        self.value = value
        self.trainable = trainable
    }
}

