import Foundation

/// A value produced by the data-only pickle interpreter. Lists and dicts are reference boxes because
/// pickle mutates them after memoising them (APPENDS, SETITEMS).
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// An allowed global, e.g. `collections.OrderedDict` (never a callable we run: see `PickleReader.reduce`).
    case global(module: String, name: String)
    /// A reference to raw storage, from a persistent id.
    case storage(StorageReference)
    case tensor(TensorReference)

    var int: Int? { if case let .int(v) = self { return v }; return nil }
    var string: String? { if case let .string(v) = self { return v }; return nil }
    var tuple: [PickleValue]? {
        switch self {
        case let .tuple(v): return v
        case let .list(l): return l.items
        default: return nil
        }
    }
}

final class PickleList { var items: [PickleValue] = [] }
final class PickleDict {
    var keys: [PickleValue] = []
    var values: [PickleValue] = []
    func set(_ k: PickleValue, _ v: PickleValue) { keys.append(k); values.append(v) }
}

/// Element types of PyTorch storages.
public enum StorageType: String, Sendable {
    case float32 = "FloatStorage", float64 = "DoubleStorage", float16 = "HalfStorage"
    case int64 = "LongStorage", int32 = "IntStorage", int16 = "ShortStorage", int8 = "CharStorage"
    case uint8 = "ByteStorage", bool = "BoolStorage"

    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }
}

struct StorageReference {
    let key: String
    let type: StorageType
    let elementCount: Int?
}

struct TensorReference {
    let storage: StorageReference
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// Errors of the checkpoint reader; all name the file.
public enum CheckpointError: Error, CustomStringConvertible {
    case refusedGlobal(file: String, module: String, name: String)
    case unsupportedOpcode(file: String, opcode: UInt8, offset: Int)
    case malformed(file: String, reason: String)

    public var description: String {
        switch self {
        case let .refusedGlobal(f, m, n):
            return "\(f): refused to load: the pickle references '\(m).\(n)', which is not a tensor or container type (Petri never executes code from checkpoints)"
        case let .unsupportedOpcode(f, op, off):
            return "\(f): unsupported pickle opcode 0x\(String(op, radix: 16)) at byte \(off)"
        case let .malformed(f, r):
            return "\(f): malformed checkpoint: \(r)"
        }
    }
}

/// A pickle interpreter that only builds data: tuples, lists, dicts, numbers, strings, and the handful
/// of PyTorch globals needed to describe tensors. Any other global is refused before anything is built,
/// so a malicious checkpoint cannot run code.
struct PickleReader {
    static let allowedGlobals: Set<String> = [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter",
    ]

    let file: String
    let bytes: [UInt8]
    var position: Int

    init(file: String, bytes: [UInt8], position: Int = 0) {
        self.file = file
        self.bytes = bytes
        self.position = position
    }

    private mutating func read(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, position + n <= bytes.count else {
            throw CheckpointError.malformed(file: file, reason: "unexpected end of data at byte \(position)")
        }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    private mutating func byte() throws -> UInt8 { try read(1).first! }

    private mutating func littleEndian(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try read(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    private mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else {
            throw CheckpointError.malformed(file: file, reason: "unterminated text at byte \(position)")
        }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    private func check(global module: String, _ name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        if PickleReader.allowedGlobals.contains(full) { return .global(module: module, name: name) }
        if module == "torch", let t = StorageType(rawValue: name) { _ = t; return .global(module: module, name: name) }
        throw CheckpointError.refusedGlobal(file: file, module: module, name: name)
    }

    /// Reads one pickle (up to STOP). `persistentLoad` turns persistent ids into storage references.
    mutating func load(persistentLoad: (PickleValue) throws -> PickleValue) throws -> PickleValue {
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]

        func pop() throws -> PickleValue {
            guard let v = stack.popLast() else {
                throw CheckpointError.malformed(file: file, reason: "pickle stack underflow")
            }
            return v
        }
        func popMark() throws -> [PickleValue] {
            guard let m = marks.popLast(), m <= stack.count else {
                throw CheckpointError.malformed(file: file, reason: "pickle mark missing")
            }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }

        while true {
            let opOffset = position
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                   // PROTO
            case 0x95: _ = try littleEndian(8)                          // FRAME
            case 0x2E: return try pop()                                 // STOP
            case 0x28: marks.append(stack.count)                        // MARK
            case 0x4E: stack.append(.none)                              // NONE
            case 0x88: stack.append(.bool(true))                        // NEWTRUE
            case 0x89: stack.append(.bool(false))                       // NEWFALSE
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try littleEndian(4)))))  // BININT
            case 0x4B: stack.append(.int(Int(try byte())))              // BININT1
            case 0x4D: stack.append(.int(Int(try littleEndian(2))))     // BININT2
            case 0x8A:                                                  // LONG1
                let n = Int(try byte())
                let raw = Array(try read(n))
                if n <= 8 {
                    var v: UInt64 = 0
                    for (i, b) in raw.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
                    if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }
                    stack.append(.int(Int(Int64(bitPattern: v))))
                } else {
                    stack.append(.bytes(raw))                           // e.g. the legacy magic number
                }
            case 0x47:                                                  // BINFLOAT (big-endian)
                var v: UInt64 = 0
                for b in try read(8) { v = v << 8 | UInt64(b) }
                stack.append(.float(Double(bitPattern: v)))
            case 0x58:                                                  // BINUNICODE
                let n = Int(try littleEndian(4))
                stack.append(.string(String(decoding: try read(n), as: UTF8.self)))
            case 0x8C:                                                  // SHORT_BINUNICODE
                let n = Int(try byte())
                stack.append(.string(String(decoding: try read(n), as: UTF8.self)))
            case 0x54:                                                  // BINSTRING
                let n = Int(try littleEndian(4))
                stack.append(.string(String(decoding: try read(n), as: UTF8.self)))
            case 0x55:                                                  // SHORT_BINSTRING
                let n = Int(try byte())
                stack.append(.string(String(decoding: try read(n), as: UTF8.self)))
            case 0x43:                                                  // SHORT_BINBYTES
                let n = Int(try byte())
                stack.append(.bytes(Array(try read(n))))
            case 0x42:                                                  // BINBYTES
                let n = Int(try littleEndian(4))
                stack.append(.bytes(Array(try read(n))))
            case 0x29: stack.append(.tuple([]))                         // EMPTY_TUPLE
            case 0x5D: stack.append(.list(PickleList()))                // EMPTY_LIST
            case 0x7D: stack.append(.dict(PickleDict()))                // EMPTY_DICT
            case 0x74: stack.append(.tuple(try popMark()))              // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))   // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
            case 0x6C:                                                  // LIST
                let l = PickleList(); l.items = try popMark(); stack.append(.list(l))
            case 0x64:                                                  // DICT
                let items = try popMark(), d = PickleDict()
                guard items.count % 2 == 0 else { throw CheckpointError.malformed(file: file, reason: "odd DICT") }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
                stack.append(.dict(d))
            case 0x61:                                                  // APPEND
                let v = try pop()
                guard case let .list(l)? = stack.last else {
                    throw CheckpointError.malformed(file: file, reason: "APPEND to a non-list")
                }
                l.items.append(v)
            case 0x65:                                                  // APPENDS
                let items = try popMark()
                guard case let .list(l)? = stack.last else {
                    throw CheckpointError.malformed(file: file, reason: "APPENDS to a non-list")
                }
                l.items += items
            case 0x73:                                                  // SETITEM
                let v = try pop(), k = try pop()
                guard case let .dict(d)? = stack.last else {
                    throw CheckpointError.malformed(file: file, reason: "SETITEM on a non-dict")
                }
                d.set(k, v)
            case 0x75:                                                  // SETITEMS
                let items = try popMark()
                guard case let .dict(d)? = stack.last, items.count % 2 == 0 else {
                    throw CheckpointError.malformed(file: file, reason: "SETITEMS on a non-dict")
                }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x71: memo[Int(try byte())] = stack.last               // BINPUT
            case 0x72: memo[Int(try littleEndian(4))] = stack.last      // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last                    // MEMOIZE
            case 0x68, 0x6A:                                            // BINGET, LONG_BINGET
                let k = op == 0x68 ? Int(try byte()) : Int(try littleEndian(4))
                guard let v = memo[k] else {
                    throw CheckpointError.malformed(file: file, reason: "memo \(k) missing")
                }
                stack.append(v)
            case 0x63:                                                  // GLOBAL
                let module = try line(), name = try line()
                stack.append(try check(global: module, name))
            case 0x93:                                                  // STACK_GLOBAL
                guard let name = try pop().string, let module = try pop().string else {
                    throw CheckpointError.malformed(file: file, reason: "STACK_GLOBAL without strings")
                }
                stack.append(try check(global: module, name))
            case 0x51: stack.append(try persistentLoad(try pop()))      // BINPERSID
            case 0x52:                                                  // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x62:                                                  // BUILD: state of an OrderedDict
                _ = try pop()                                           // (e.g. `_metadata`) is not needed
            default:
                throw CheckpointError.unsupportedOpcode(file: file, opcode: op, offset: opOffset)
            }
        }
    }

    /// Interprets the only "calls" a tensor checkpoint makes. Nothing is executed: each allowed global
    /// maps to building a value.
    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case let .global(module, name) = callable, let a = args.tuple else {
            throw CheckpointError.malformed(file: file, reason: "REDUCE on a non-global")
        }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            return .dict(PickleDict())
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard a.count >= 4, case let .storage(s) = a[0], let offset = a[1].int,
                  let shape = a[2].tuple?.compactMap(\.int), let strides = a[3].tuple?.compactMap(\.int),
                  shape.count == strides.count else {
                throw CheckpointError.malformed(file: file, reason: "bad tensor description")
            }
            return .tensor(TensorReference(storage: s, offset: offset, shape: shape, strides: strides))
        case "torch._utils._rebuild_parameter":
            guard let first = a.first else { throw CheckpointError.malformed(file: file, reason: "bad parameter") }
            return first
        default:
            throw CheckpointError.refusedGlobal(file: file, module: module, name: name)
        }
    }
}
