import Foundation

/// Arithmetic on sizes read from untrusted files: nil instead of a trap when a value is negative, overflows or
/// passes a limit, so every reader can refuse the file with a message before allocating anything.
public enum Checked {
    /// `a × b` when both are ≥ 0 and the product fits in `limit`.
    public static func product(_ a: Int, _ b: Int, limit: Int = Int.max) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow || p > limit ? nil : p
    }

    /// The product of `dims` (1 for none) when every one is ≥ 0 and the product fits in `limit`.
    public static func count(_ dims: [Int], limit: Int = Int.max) -> Int? {
        var n = 1
        for d in dims {
            guard let p = product(n, d, limit: limit) else { return nil }
            n = p
        }
        return n
    }

    /// `a + b` when both are ≥ 0 and the sum fits in `limit`.
    public static func sum(_ a: Int, _ b: Int, limit: Int = Int.max) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (s, overflow) = a.addingReportingOverflow(b)
        return overflow || s > limit ? nil : s
    }

    /// An unsigned size as `Int` when it fits in `limit`.
    public static func int(_ v: UInt64, limit: Int = Int.max) -> Int? {
        v <= UInt64(limit) ? Int(v) : nil
    }
}

/// CRC-32 (IEEE 802.3, as zip files store it).
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum<C: Collection>(_ bytes: C, continuing crc: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        var c = ~crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }
}
