import Foundation
import PetriEngine

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

/// A list or dict under construction. Pickle fills containers after creating them; once one is placed
/// inside another it is sealed, so that no container can gain depth (or contain itself) after it was nested:
/// the depth recorded for every value is then exact, and the reader can bound it.
class PickleBox {
    var depth = 1
    var sealed = false
}

final class PickleList: PickleBox { var items: [PickleValue] = [] }
final class PickleDict: PickleBox {
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
/// so a malicious checkpoint cannot run code. Values nest at most `maxDepth` levels (a state dict needs
/// four), so no deep structure can exhaust the stack when it is used or freed.
struct PickleReader {
    static let maxDepth = 32

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
        var stack: [(value: PickleValue, depth: Int)] = []
        var marks: [Int] = []
        var memo: [Int: (value: PickleValue, depth: Int)] = [:]
        let file = self.file

        func box(_ v: PickleValue) -> PickleBox? {
            switch v {
            case let .list(l): return l
            case let .dict(d): return d
            default: return nil
            }
        }
        /// A value's depth now (a box's own, which grows while it is being filled).
        func depth(_ e: (value: PickleValue, depth: Int)) -> Int { box(e.value)?.depth ?? e.depth }
        /// Marks values as placed inside another container; returns their largest depth.
        func nest(_ items: [(value: PickleValue, depth: Int)]) -> Int {
            var d = 0
            for e in items {
                box(e.value)?.sealed = true
                d = max(d, depth(e))
            }
            return d
        }
        func push(_ v: PickleValue, depth: Int = 0) throws {
            guard depth <= Self.maxDepth else {
                throw CheckpointError.malformed(file: file, reason: "pickle nested deeper than \(Self.maxDepth) levels")
            }
            stack.append((v, depth))
        }
        func pushContainer(_ v: PickleValue, of items: [(value: PickleValue, depth: Int)]) throws {
            let d = nest(items) + 1
            box(v)?.depth = d
            try push(v, depth: d)
        }
        /// Adds items to the box on top of the stack (unsealed, and not itself among them).
        func fill(_ items: [(value: PickleValue, depth: Int)], _ add: (PickleBox) throws -> Void) throws {
            guard let top = stack.last, let b = box(top.value) else {
                throw CheckpointError.malformed(file: file, reason: "items added to something that is not a list or dict")
            }
            guard !b.sealed, !items.contains(where: { box($0.value) === b }) else {
                throw CheckpointError.malformed(file: file, reason: "a container changed after it was nested, or placed in itself")
            }
            let d = nest(items) + 1
            guard d <= Self.maxDepth else {
                throw CheckpointError.malformed(file: file, reason: "pickle nested deeper than \(Self.maxDepth) levels")
            }
            b.depth = max(b.depth, d)
            try add(b)
        }
        func popEntry() throws -> (value: PickleValue, depth: Int) {
            guard let v = stack.popLast() else {
                throw CheckpointError.malformed(file: file, reason: "pickle stack underflow")
            }
            return v
        }
        func pop() throws -> PickleValue { try popEntry().value }
        func popMark() throws -> [(value: PickleValue, depth: Int)] {
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
            case 0x4E: try push(.none)                                  // NONE
            case 0x88: try push(.bool(true))                            // NEWTRUE
            case 0x89: try push(.bool(false))                           // NEWFALSE
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try littleEndian(4)))))  // BININT
            case 0x4B: try push(.int(Int(try byte())))                  // BININT1
            case 0x4D: try push(.int(Int(try littleEndian(2))))         // BININT2
            case 0x8A:                                                  // LONG1
                let n = Int(try byte())
                let raw = Array(try read(n))
                if n <= 8 {
                    var v: UInt64 = 0
                    for (i, b) in raw.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
                    if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }
                    try push(.int(Int(Int64(bitPattern: v))))
                } else {
                    try push(.bytes(raw))                               // e.g. the legacy magic number
                }
            case 0x47:                                                  // BINFLOAT (big-endian)
                var v: UInt64 = 0
                for b in try read(8) { v = v << 8 | UInt64(b) }
                try push(.float(Double(bitPattern: v)))
            case 0x58, 0x54:                                            // BINUNICODE, BINSTRING
                try push(.string(String(decoding: try read(try length(4)), as: UTF8.self)))
            case 0x8C, 0x55:                                            // SHORT_BINUNICODE, SHORT_BINSTRING
                try push(.string(String(decoding: try read(Int(try byte())), as: UTF8.self)))
            case 0x43: try push(.bytes(Array(try read(Int(try byte())))))   // SHORT_BINBYTES
            case 0x42: try push(.bytes(Array(try read(try length(4)))))     // BINBYTES
            case 0x29: try push(.tuple([]), depth: 1)                   // EMPTY_TUPLE
            case 0x5D: try push(.list(PickleList()), depth: 1)          // EMPTY_LIST
            case 0x7D: try push(.dict(PickleDict()), depth: 1)          // EMPTY_DICT
            case 0x74:                                                  // TUPLE
                let items = try popMark()
                try pushContainer(.tuple(items.map(\.value)), of: items)
            case 0x85, 0x86, 0x87:                                      // TUPLE1, TUPLE2, TUPLE3
                var items: [(value: PickleValue, depth: Int)] = []
                for _ in 0..<Int(op - 0x84) { items.insert(try popEntry(), at: 0) }
                try pushContainer(.tuple(items.map(\.value)), of: items)
            case 0x6C:                                                  // LIST
                let items = try popMark(), l = PickleList()
                l.items = items.map(\.value)
                try pushContainer(.list(l), of: items)
            case 0x64:                                                  // DICT
                let items = try popMark(), d = PickleDict()
                guard items.count % 2 == 0 else { throw CheckpointError.malformed(file: file, reason: "odd DICT") }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i].value, items[i + 1].value) }
                try pushContainer(.dict(d), of: items)
            case 0x61, 0x65:                                            // APPEND, APPENDS
                let items = op == 0x61 ? [try popEntry()] : try popMark()
                try fill(items) { b in
                    guard let l = b as? PickleList else { throw CheckpointError.malformed(file: file, reason: "APPEND to a non-list") }
                    l.items += items.map(\.value)
                }
            case 0x73, 0x75:                                            // SETITEM, SETITEMS
                let items: [(value: PickleValue, depth: Int)]
                if op == 0x73 { let v = try popEntry(), k = try popEntry(); items = [k, v] } else { items = try popMark() }
                try fill(items) { b in
                    guard let d = b as? PickleDict, items.count % 2 == 0 else {
                        throw CheckpointError.malformed(file: file, reason: "SETITEMS on a non-dict")
                    }
                    for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i].value, items[i + 1].value) }
                }
            case 0x71: memo[Int(try byte())] = stack.last               // BINPUT
            case 0x72: memo[Int(try littleEndian(4))] = stack.last      // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last                    // MEMOIZE
            case 0x68, 0x6A:                                            // BINGET, LONG_BINGET
                let k = op == 0x68 ? Int(try byte()) : Int(try littleEndian(4))
                guard let v = memo[k] else {
                    throw CheckpointError.malformed(file: file, reason: "memo \(k) missing")
                }
                try push(v.value, depth: depth(v))
            case 0x63:                                                  // GLOBAL
                let module = try line(), name = try line()
                try push(try check(global: module, name))
            case 0x93:                                                  // STACK_GLOBAL
                guard let name = try pop().string, let module = try pop().string else {
                    throw CheckpointError.malformed(file: file, reason: "STACK_GLOBAL without strings")
                }
                try push(try check(global: module, name))
            case 0x51:                                                  // BINPERSID
                let pid = try popEntry()
                _ = nest([pid])
                try push(try persistentLoad(pid.value))
            case 0x52:                                                  // REDUCE
                let args = try popEntry(), callable = try pop()
                _ = nest([args])
                let result = try reduce(callable, args.value)
                try push(result, depth: box(result) == nil ? 0 : 1)
            case 0x62:                                                  // BUILD: state of an OrderedDict
                _ = nest([try popEntry()])                              // (e.g. `_metadata`) is not needed
            default:
                throw CheckpointError.unsupportedOpcode(file: file, opcode: op, offset: opOffset)
            }
        }
    }

    /// A 4-byte little-endian length, which must fit in the bytes left.
    private mutating func length(_ n: Int) throws -> Int {
        let v = try littleEndian(n)
        guard let l = Checked.int(v, limit: bytes.count - position) else {
            throw CheckpointError.malformed(file: file, reason: "a length of \(v) bytes at byte \(position - n) passes the end of the data")
        }
        return l
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
                  let shapeItems = a[2].tuple, let strideItems = a[3].tuple else {
                throw CheckpointError.malformed(file: file, reason: "bad tensor description")
            }
            let shape = shapeItems.compactMap(\.int), strides = strideItems.compactMap(\.int)
            guard shape.count == shapeItems.count, strides.count == strideItems.count, shape.count == strides.count,
                  shape.count <= 8, offset >= 0, shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError.malformed(file: file, reason: "bad tensor description (offset \(offset), shape \(shapeItems.count) entries, strides \(strideItems.count))")
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
