import Foundation

/// What a result is stored, skipped and resumed under: the method (a spec's text), the training size per class
/// (nil: the whole pool) and the seed. Written `method|size|seed` (`lp|5|0`, `auto|all|3`).
public struct RunKey: Hashable, Sendable, CustomStringConvertible {
    public var method: String
    public var size: Int?
    public var seed: UInt64

    public init(method: String, size: Int?, seed: UInt64) {
        self.method = method
        self.size = size
        self.seed = seed
    }

    /// The size as records write it: a number, or `all`.
    public var sizeLabel: String { size.map(String.init) ?? "all" }

    public var description: String { "\(method)|\(sizeLabel)|\(seed)" }

    /// The key of a stored size label (`"5"`, `"all"`); nil when it is neither.
    public init?(method: String, sizeLabel: String, seed: UInt64) {
        if sizeLabel == "all" {
            self.init(method: method, size: nil, seed: seed)
        } else if let n = Int(sizeLabel), n >= 1 {
            self.init(method: method, size: n, seed: seed)
        } else {
            return nil
        }
    }

    /// The key of a JSON-lines record (`method`, `size` a number or "all", `seed`); nil when a field is missing.
    public init?(json o: [String: Any]) {
        guard let method = o["method"] as? String, let seed = (o["seed"] as? NSNumber)?.uint64Value else { return nil }
        if let n = o["size"] as? NSNumber {
            self.init(method: method, size: n.intValue, seed: seed)
        } else if let s = o["size"] as? String {
            self.init(method: method, sizeLabel: s, seed: seed)
        } else {
            return nil
        }
    }
}
