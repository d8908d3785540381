import Foundation
import PetriData
import PetriEngine
import PetriLearn
import PetriNN
import PetriStudy
import ZIPFoundation

/// The formats Petri reads from untrusted files, each with its seed files and its check.
public enum FuzzKind: String, CaseIterable, Sendable {
    /// PyTorch checkpoints: the legacy format (a small torch-made file and the real Lite0 weights) and the zip
    /// format (its `data.pkl` mutated and re-zipped with correct CRCs, or the zip itself).
    case checkpoint
    /// A trained model file (`.petri`), mutated in its JSON structure or its bytes, then used to predict.
    case model
    /// Petri's CellNet backbone file, mutated mostly in its header.
    case backbone
    /// A MedMNIST-style `.npz` dataset, its `.npy` members mutated and re-zipped, then every image read.
    case npz
    /// JPEG, PNG, TIFF and BMP files, decoded.
    case image
}

/// What one mutant did.
public enum FuzzOutcome: Equatable, Sendable {
    /// Read and used; the output was well formed.
    case accepted
    /// Refused with an error that names the file.
    case refused(String)
    /// A failure: accepted with a bad output (NaN probabilities, wrong shape), or refused without naming the file.
    case failed(String)
}

/// Seed files and the means to check mutants of them.
public final class FuzzSeeds {
    public let root: URL
    let scratch: URL
    public private(set) var files: [FuzzKind: [URL]] = [:]
    /// Images a mutant model predicts.
    let probe: Dataset

    /// Seeds from the repository at `root` (fixtures, the sample, the shipped CellNet) and the weights folder;
    /// a model is trained and an `.npz` written into `scratch`.
    public init(root: URL, scratch: URL) throws {
        self.root = root
        self.scratch = scratch
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let nn = root.appendingPathComponent("Tests/PetriNNTests/Fixtures"), data = root.appendingPathComponent("Tests/PetriDataTests/Fixtures")
        let sample = root.appendingPathComponent("Samples/bccd-wbc-mini")
        let lite0 = try ModelRegistry.weightsURL(for: ModelRegistry.entry("efficientnet-lite0"))
        files[.checkpoint] = [nn.appendingPathComponent("tiny-legacy.pth"), nn.appendingPathComponent("tiny-zip.pth"), lite0]
        files[.backbone] = [try ModelRegistry.weightsURL(for: ModelRegistry.entry("cellnet"))]
        files[.image] = ["rgb.png", "rgba.png", "grey16.png", "palette.png", "rgb-q100.jpg", "cmyk.jpg", "pbc-monocyte.jpg", "rgb.tif",
                         "grey16.tif", "two-pages.tif", "rgb.bmp", "palette.bmp"].map { data.appendingPathComponent($0) }
        var ds = try Dataset.imageFolder(sample)
        ds.items = stride(from: 0, to: ds.items.count, by: 21).map { ds.items[$0] }
        probe = ds
        files[.model] = [try Self.trainModel(sample: sample, into: scratch)]
        files[.npz] = [try Self.writeNPZ(sample: sample, into: scratch)]
    }

    /// A small blend (an MLP on Lite0 features and a from-scratch CNN) with calibration, as `petri train` saves it.
    static func trainModel(sample: URL, into dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("seed.petri")
        if FileManager.default.fileExists(atPath: url.path) { return url }
        var training = ModelTraining(dataset: DatasetPolicy(source: sample.path))
        training.method = try MethodSpec(parsing: "avg(mlp|scratch-mini:min=40:e=1)")
        var (model, _) = try training.run(reporter: CollectingReporter())
        let p = try model.probabilities(try Dataset.imageFolder(sample))
        let k = model.classNames.count, ds = try Dataset.imageFolder(sample)
        model.triage = SavedModel.Triage(labels: ds.items.map(\.label), probabilities: (0..<ds.items.count).map { i in (0..<k).map { Double(p[flat: i * k + $0]) } },
                                         classes: k)
        try model.write(to: url)
        return url
    }

    /// The sample as a MedMNIST-style `.npz`: 28×28 RGB uint8 images, int64 labels `[N, 1]`, class names.
    static func writeNPZ(sample: URL, into dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("seed.npz")
        if FileManager.default.fileExists(atPath: url.path) { return url }
        let ds = try Dataset.imageFolder(sample)
        var pixels: [UInt8] = [], labels: [UInt8] = []
        for item in ds.items.prefix(40) {
            let img = FloatImage(try ds.image(of: item, decoder: ImageDecoder())).resized(width: 28, height: 28).rgb
            pixels += img.pixels
            var l = Int64(item.label).littleEndian
            withUnsafeBytes(of: &l) { labels += $0 }
        }
        let n = min(40, ds.items.count)
        let width = ds.classNames.map(\.count).max() ?? 1
        var names: [UInt8] = []
        for c in ds.classNames {
            for k in 0..<width {
                var v = UInt32(k < c.unicodeScalars.count ? Array(c.unicodeScalars)[k].value : 0).littleEndian
                withUnsafeBytes(of: &v) { names += $0 }
            }
        }
        let members: [(String, [UInt8])] = [
            ("images.npy", npy(dtype: "|u1", shape: [n, 28, 28, 3], data: pixels)),
            ("labels.npy", npy(dtype: "<i8", shape: [n, 1], data: labels)),
            ("class_names.npy", npy(dtype: "<U\(width)", shape: [ds.classNames.count], data: names)),
        ]
        let tmp = dir.appendingPathComponent("seed-\(UUID().uuidString).npz")
        let archive = try Archive(url: tmp, accessMode: .create)
        for (name, bytes) in members {
            let payload = Data(bytes)
            try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(payload.count)) { position, size in
                payload.subdata(in: Int(position)..<(Int(position) + size))
            }
        }
        try FileManager.default.moveItem(at: tmp, to: url)
        return url
    }

    static func npy(dtype: String, shape: [Int], data: [UInt8]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dtype)', 'fortran_order': False, 'shape': \(shapeText), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        let n = UInt16(header.utf8.count)
        return [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(header.utf8) + data
    }

    /// Mutant `index` of `kind`: its bytes and the extension its file needs.
    public func mutant(_ kind: FuzzKind, index: Int, seed: UInt64) throws -> (bytes: [UInt8], ext: String) {
        let seeds = files[kind]!
        var m = Mutator(seed: seed &+ UInt64(FuzzKind.allCases.firstIndex(of: kind)!) << 40, index: index)
        // The big real checkpoint once in eight, mostly in its pickle header.
        let file = kind == .checkpoint ? (index % 8 == 7 ? seeds[2] : seeds[index % 2]) : seeds[index % seeds.count]
        let bytes = [UInt8](try Data(contentsOf: file, options: .mappedIfSafe))
        let ext = file.pathExtension
        let work = scratch.appendingPathComponent("zip-\(getpid())")
        switch kind {
        case .checkpoint:
            if file.lastPathComponent == "tiny-zip.pth", m.chance(0.7),
               let z = m.mutateZipMember(bytes, choose: { $0.filter { $0.hasSuffix("data.pkl") } }, scratch: work, mutate: { m, _, b in m.mutate(b) }) {
                return (z, ext)
            }
            return (m.mutate(bytes, focus: 0..<min(bytes.count, 64 << 10)), ext)
        case .model:
            return (m.chance(0.7) ? m.mutateJSON(bytes) : m.mutate(bytes, focus: 0..<min(bytes.count, 4096)), ext)
        case .backbone:
            return (m.chance(0.4) ? mutateBackboneHeader(bytes, &m) : m.mutate(bytes, focus: 0..<min(bytes.count, 48 << 10)), ext)
        case .npz:
            if m.chance(0.8), let z = m.mutateZipMember(bytes, choose: { $0 }, scratch: work, mutate: { m, _, b in m.mutate(b, focus: 0..<min(b.count, 128)) }) {
                return (z, ext)
            }
            return (m.mutate(bytes), ext)
        case .image:
            return (m.mutate(bytes, focus: 0..<min(bytes.count, 512)), ext)
        }
    }

    /// The backbone file with its JSON header mutated in structure and its length field rewritten to match.
    func mutateBackboneHeader(_ bytes: [UInt8], _ m: inout Mutator) -> [UInt8] {
        let magic = 15
        guard bytes.count > magic + 4 else { return m.mutate(bytes) }
        let length = Int(bytes[magic]) | Int(bytes[magic + 1]) << 8 | Int(bytes[magic + 2]) << 16 | Int(bytes[magic + 3]) << 24
        guard magic + 4 + length <= bytes.count else { return m.mutate(bytes) }
        let header = m.mutateJSON(Array(bytes[(magic + 4)..<(magic + 4 + length)]))
        let n = UInt32(header.count)
        return Array(bytes[0..<magic]) + [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)] + header
            + Array(bytes[(magic + 4 + length)...])
    }

    /// Reads and uses one mutant file as Petri would.
    public func check(_ kind: FuzzKind, file: URL) -> FuzzOutcome {
        let path = file.path
        func refusal(_ error: Error) -> FuzzOutcome {
            let text = "\(error)"
            return text.contains(path) || text.contains(file.lastPathComponent) ? .refused(text) : .failed("refused without naming the file: \(text)")
        }
        do {
            switch kind {
            case .checkpoint:
                let ckpt = try Checkpoint(contentsOf: file)
                if ckpt.tensors.count > 100 { try EfficientNetLite(.lite0).load(ckpt) }
            case .backbone:
                let (_, ckpt) = try BackboneFile.read(file)
                try EfficientNetLite(.lite0).load(ckpt, ignoring: ["_fc.weight", "_fc.bias"])
            case .model:
                let model = try SavedModel.read(file)
                let p = try model.probabilities(probe, file: path)
                let k = model.classNames.count
                guard p.shape == [probe.items.count, k] else { return .failed("probabilities of shape \(p.shape)") }
                for i in 0..<probe.items.count {
                    let row = (0..<k).map { Double(p[flat: i * k + $0]) }
                    guard row.allSatisfy({ $0.isFinite && $0 >= 0 }), abs(row.reduce(0, +) - 1) < 1e-3 else {
                        return .failed("probabilities \(row) for image \(i)")
                    }
                    if let t = model.triage {
                        let applied = t.apply(row)
                        guard applied.probabilities.allSatisfy(\.isFinite), !applied.set.isEmpty else { return .failed("triage gave \(applied)") }
                    }
                }
            case .npz:
                let ds = try Dataset.load(file)
                for item in ds.items { _ = try ds.image(of: item, decoder: ImageDecoder()) }
            case .image:
                let img = try ImageDecoder().decode(contentsOf: file)
                guard img.pixels.count == img.width * img.height * 3 else { return .failed("\(img.width)×\(img.height) with \(img.pixels.count) bytes") }
            }
            return .accepted
        } catch {
            return refusal(error)
        }
    }
}
