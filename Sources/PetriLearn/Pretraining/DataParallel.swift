import Foundation
import PetriEngine

/// The processes of a data-parallel training run (MPI ranks): each computes the gradient of its slice of every
/// global batch, `sum` adds the slices' gradients across processes, and every process then takes the same
/// optimizer step, so all hold the same weights.
public protocol GradientReducer: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` by their element-wise sum over all processes.
    func sum(_ values: inout [Float])
}

extension GradientReducer {
    /// The rows `[lower, upper)` of a global batch of `total` rows this process computes (contiguous, as even as
    /// can be).
    public func slice(of total: Int) -> Range<Int> { (total * rank / size)..<(total * (rank + 1) / size) }

    /// Sums the optimizer's gradients over the processes, in one buffer (a parameter without a gradient — not on
    /// the path of this step's loss — has none in every process and is left out).
    public func reduce(_ optimizer: Optimizer) {
        let params = optimizer.groups.flatMap(\.parameters).filter { $0.gradient != nil }
        var flat = [Float]()
        flat.reserveCapacity(params.reduce(0) { $0 + $1.value.count })
        for p in params { flat += p.gradient!.scalars }
        sum(&flat)
        var offset = 0
        for p in params {
            let n = p.value.count
            p.gradient = Tensor(shape: p.value.shape, data: Array(flat[offset..<(offset + n)]))
            offset += n
        }
    }
}

/// A training run's state written every `every` steps (by rank 0), so that a killed job resumes where it was:
/// the trainable weights, the optimizer's moments, the step and the random generator. `key` names the run's
/// settings; a file of other settings is not resumed from.
public struct TrainingCheckpoint {
    public var url: URL
    public var every: Int
    public var key: String
    /// Whether this process writes the file (rank 0 of a data-parallel run).
    public var writes = true

    public init(url: URL, every: Int = 50, key: String) {
        self.url = url
        self.every = every
        self.key = key
    }

    struct Header: Codable {
        var format = "petri-training-checkpoint"
        var key: String
        var step: Int
        var rng: UInt64
        var optimizerSteps: Int
        var counts: [Int]
    }

    static let magic = Array("PETRI-RESUME\n".utf8)

    /// Writes the state after `step` steps (atomically).
    func save(step: Int, rng: SeededGenerator, parameters: [Parameter], optimizer: AdamW) throws {
        guard writes else { return }
        let state = optimizer.state
        var floats: [Float] = []
        var counts: [Int] = []
        for (p, mv) in zip(parameters, state.moments) {
            floats += p.value.scalars + mv.m + mv.v
            counts.append(p.value.count)
            counts.append(mv.m.count)
        }
        let header = try JSONEncoder().encode(Header(key: key, step: step, rng: rng.snapshot, optimizerSteps: state.steps, counts: counts))
        var data = Data(Self.magic)
        var n = UInt32(header.count).littleEndian
        data.append(Data(bytes: &n, count: 4))
        data.append(header)
        floats.withUnsafeBufferPointer { data.append(Data(buffer: $0)) }
        try data.write(to: url, options: .atomic)
    }

    /// The saved state, restored into `parameters` and `optimizer`: the step to continue from and the generator;
    /// nil when there is no file of these settings. A damaged file is an error naming it.
    func restore(parameters: [Parameter], optimizer: AdamW) throws -> (step: Int, rng: SeededGenerator)? {
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let bytes = [UInt8](data)
        func bad(_ why: String) -> Error { StateError(description: "\(url.path): cannot resume: \(why)") }
        guard bytes.starts(with: Self.magic), bytes.count >= Self.magic.count + 4 else { throw bad("not a training checkpoint") }
        let o = Self.magic.count
        let length = Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24
        guard length <= bytes.count - o - 4, let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[(o + 4)..<(o + 4 + length)])) else {
            throw bad("damaged header")
        }
        guard header.key == key else { return nil }
        guard header.counts.count == 2 * parameters.count else { throw bad("it holds \(header.counts.count / 2) tensors, the network \(parameters.count)") }
        var offset = o + 4 + length
        var moments: [(m: [Float], v: [Float])] = []
        func floats(_ n: Int) throws -> [Float] {
            guard n >= 0, n * 4 <= bytes.count - offset else { throw bad("truncated") }
            defer { offset += n * 4 }
            return bytes[offset..<(offset + n * 4)].withUnsafeBytes { raw in (0..<n).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        }
        var values: [[Float]] = []
        for (i, p) in parameters.enumerated() {
            let n = header.counts[2 * i], m = header.counts[2 * i + 1]
            guard n == p.value.count, m == 0 || m == n else { throw bad("tensor \(i) has \(n) values, the network's \(p.value.count)") }
            values.append(try floats(n))
            moments.append((try floats(m), try floats(m)))
        }
        guard offset == bytes.count else { throw bad("\(bytes.count - offset) bytes too many") }
        for (p, v) in zip(parameters, values) { p.value = Tensor(shape: p.value.shape, data: v) }
        optimizer.state = (header.optimizerSteps, moments)
        return (header.step, SeededGenerator(snapshot: header.rng))
    }

    struct StateError: Error, CustomStringConvertible { let description: String }
}
