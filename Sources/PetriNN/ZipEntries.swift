import Foundation
import PetriEngine
import ZIPFoundation

/// Reading one entry of an untrusted zip file (checkpoints, `.npz` datasets).
public enum ZipEntries {
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// The entry's bytes: at most `limit` of them (its header's size is checked first, then what it actually
    /// inflates to, so a zip bomb stops at the limit), with the CRC-32 its header records. `what` names the
    /// entry in the problem.
    public static func contents(_ archive: Archive, _ entry: Entry, limit: Int, what: String) throws -> [UInt8] {
        guard let declared = Checked.int(entry.uncompressedSize, limit: limit) else {
            throw Problem(description: "\(what) would inflate to \(entry.uncompressedSize) bytes, more than \(limit)")
        }
        var out = [UInt8]()
        out.reserveCapacity(min(declared, 64 << 20))
        struct TooLarge: Error {}
        do {
            _ = try archive.extract(entry, skipCRC32: true) { chunk in
                guard out.count + chunk.count <= declared else { throw TooLarge() }
                out += chunk
            }
        } catch is TooLarge {
            throw Problem(description: "\(what) inflates past the \(declared) bytes its header gives")
        } catch {
            throw Problem(description: "cannot extract \(what): \(error)")
        }
        guard out.count == declared else { throw Problem(description: "\(what) holds \(out.count) bytes, its header says \(declared)") }
        guard CRC32.checksum(out) == entry.checksum else { throw Problem(description: "\(what) is damaged (its CRC-32 does not match)") }
        return out
    }
}
