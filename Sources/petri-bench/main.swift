// Throughput benchmark of Petri's engine; scripts/bench.sh runs it beside PyTorch and ONNX Runtime.
// Usage: petri-bench forward|train|features|scratch|mlp|loader [--batch N] [--iterations N] [--images DIR] [--count N]
// Prints one JSON object per run: images/s, achieved GFLOP/s, peak resident memory.
import Foundation
import PetriData
import PetriEngine
import PetriLearn
import PetriNN

func option(_ name: String, _ fallback: String) -> String {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
    return fallback
}

/// `--images DIR`, which the image modes need: a folder of JPEGs in ImageFolder layout.
func imagesOption() -> String {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: "--images"), i + 1 < args.count { return args[i + 1] }
    FileHandle.standardError.write(Data("petri-bench \(args.dropFirst().first ?? ""): --images DIR is required (an ImageFolder of JPEGs)\n".utf8))
    exit(64)
}

func peakMemoryMB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Forward FLOPs per image (convolutions and the classifier), from the model's own geometry.
func forwardFlopsPerImage(_ model: EfficientNetLite, size: Int) -> Double {
    var flops = 0.0
    var shape = [1, size, size, 3]
    func conv(_ c: Conv2D) {
        let g = c.geometry(for: shape)
        flops += g.flops
        shape = g.outputShape
    }
    conv(model.convStem)
    for b in model.blocks {
        if let e = b.expandConv { conv(e) }
        conv(b.depthwiseConv)
        conv(b.projectConv)
    }
    conv(model.convHead)
    return flops + 2 * 1280 * 1000
}

let mode = CommandLine.arguments.dropFirst().first ?? "forward"
let batch = Int(option("--batch", "32"))!
let iterations = Int(option("--iterations", "10"))!
let (model, data) = try ModelRegistry.make(option("--model", "efficientnet-lite0"))
let size = data.inputSize
if let e = ProcessInfo.processInfo.environment["EARLY"] { model.earlyMicroBatch = Int(e)! }
if let l = ProcessInfo.processInfo.environment["LATE"] { model.lateMicroBatch = Int(l)! }
var rng = SeededGenerator(seed: 0)
let input = Tensor.uniform([batch, size, size, 3], using: &rng)
let flopsPerImage = forwardFlopsPerImage(model, size: size)

func report(_ images: Int, _ seconds: Double, flopsPerImage: Double, extra: String = "", label: String? = nil) {
    let rate = Double(images) / seconds
    let label = label ?? (mode == "train" ? "train-bn-\(option("--bn", "batch"))" : mode)
    print(String(format: "{\"framework\": \"petri\", \"mode\": \"%@\", \"batch\": %d, \"images_per_s\": %.2f, \"gflops\": %.1f, \"peak_mb\": %.0f%@}",
                 label, batch, rate, rate * flopsPerImage / 1e9, peakMemoryMB(), extra))
}

switch mode {
case "flops":
    print(Int(flopsPerImage))
case "forward":
    for _ in 0..<2 { _ = try model.logits(input) }
    let start = Date()
    for _ in 0..<iterations { _ = try model.logits(input) }
    report(batch * iterations, Date().timeIntervalSince(start), flopsPerImage: flopsPerImage)
case "train":
    model.fc = model.resetClassifier(classes: 8, rng: &rng)
    let optimizer = AdamW([ParameterGroup(model.fc.trainableParameters),
                           ParameterGroup(model.parameters(after: nil), learningRateScale: 0.1, weightDecay: 0.05)],
                          learningRate: 1e-3)
    let labels = (0..<batch).map { $0 % 8 }
    // --bn batch: batch statistics over the whole batch (as PyTorch's train mode);
    // --bn frozen: running statistics, which lets the step run in micro-batches of --micro images
    // with accumulated gradients (identical gradients, cache-sized activations).
    let frozen = option("--bn", "batch") == "frozen"
    let micro = frozen ? Int(option("--micro", "4"))! : batch
    let options = ForwardOptions(batchNorm: frozen ? .frozen : .batch)
    func step() throws {
        optimizer.zeroGradients()
        for start in stride(from: 0, to: batch, by: micro) {
            let part = start..<min(start + micro, batch)
            let tape = Tape(training: true)
            let loss = tape.softmaxCrossEntropy(
                try model.logits(tape.constant(input.slice(rows: part)), on: tape, options: options, rng: &rng),
                labels: Array(labels[part]), labelSmoothing: 0.1)
            tape.backward(from: loss, seed: Tensor(shape: [], data: [Float(part.count) / Float(batch)]))
        }
        optimizer.step()
    }
    for _ in 0..<2 { try step() }
    let start = Date()
    for _ in 0..<iterations { try step() }
    // forward + backward ≈ 3× the forward FLOPs
    report(batch * iterations, Date().timeIntervalSince(start), flopsPerImage: 3 * flopsPerImage)
case "features":
    let dir = imagesOption()
    let count = Int(option("--count", "512"))!
    let ds = try Dataset.imageFolder(URL(fileURLWithPath: dir))
    let paths = Array(ds.items.map(\.path).prefix(count))
    let extractor = try FeatureExtractor(backbone: "efficientnet-lite0")
    extractor.cacheDirectory = nil
    extractor.batchSize = batch
    _ = try model.logits(input)   // warm the kernels as the others do
    let start = Date()
    let r = try extractor.extract(paths)
    report(r.kept.count, Date().timeIntervalSince(start), flopsPerImage: flopsPerImage - 2 * 1280 * 1000)
case "scratch":
    // A small CNN trained from scratch, compute only (random batch, no loader): one optimiser step per
    // iteration on --batch images at the net's own input size. --lanes N: N such trainings side by side on
    // compute lanes (single-threaded kernels each, as auto's inner-fold fits); images/s is their total.
    let lanes = Int(option("--lanes", "0"))!
    let config = SmallCNNConfig.named(option("--net", "cnn-mini"))!
    let train = { (seed: UInt64) throws -> Void in
        var rng = SeededGenerator(seed: seed)
        let net = SmallCNN(config, classes: 4, rng: &rng)
        let side = net.config.inputSize
        let x = Tensor.uniform([batch, side, side, 3], low: -1, high: 1, using: &rng)
        let labels = (0..<batch).map { $0 % 4 }
        let optimizer = AdamW([ParameterGroup(net.trainableParameters)], learningRate: 1e-3)
        for _ in 0..<iterations {
            optimizer.zeroGradients()
            let tape = Tape(training: true)
            let loss = tape.softmaxCrossEntropy(try net.logits(tape.constant(x), on: tape, rng: &rng), labels: labels, labelSmoothing: 0.1)
            tape.backward(from: loss)
            optimizer.step()
        }
    }
    let start = Date()
    if lanes > 0 { _ = try ComputeLanes.run(lanes) { try train(UInt64($0)) } } else { try train(0) }
    report(batch * iterations * max(1, lanes), Date().timeIntervalSince(start), flopsPerImage: 0,
           extra: ", \"net\": \"\(config.name)\", \"lanes\": \(lanes)", label: lanes > 0 ? "scratch-\(lanes)lanes" : nil)
case "mlp":
    // auto's MLP head fitted on random features of auto's width (Lite0+1+2, stage 6 + head: 4432) —
    // --rows training rows (162: an inner fold of bccd's whole pool); one fit per iteration.
    let rows = Int(option("--rows", "162"))!, dim = Int(option("--dim", "4432"))!
    let x = Tensor.uniform([rows, dim], using: &rng)
    let labels = (0..<rows).map { $0 % 4 }
    let start = Date()
    for i in 0..<iterations { _ = MLPHead().fit(x, labels: labels, classes: 4, seed: UInt64(i)) }
    let seconds = Date().timeIntervalSince(start)
    // "images_per_s": training rows × 300 steps per second, so the summary table can compare it.
    print(String(format: "{\"framework\": \"petri\", \"mode\": \"mlp\", \"batch\": %d, \"images_per_s\": %.1f, \"gflops\": 0.0, \"rows\": %d, \"dim\": %d, \"seconds_per_fit\": %.3f, \"peak_mb\": %.0f}",
                 rows, Double(rows * 300 * iterations) / seconds, rows, dim, seconds / Double(iterations), peakMemoryMB()))
case "loader":
    // The loader alone: decode + (augment) + resize to 224² + normalise, no network.
    let dir = imagesOption()
    let count = Int(option("--count", "512"))!
    let workers = Int(option("--workers", "2"))!
    let ds = try Dataset.imageFolder(URL(fileURLWithPath: dir))
    let items = Array(ds.items.prefix(count))
    let augmentation = try TransformPipeline.augmentation(option("--policy", "none"))
    // --side S: the network input side (64 for cnn-mini); --epochs E with the decoded-image cache, as training does.
    let side = Int(option("--side", "\(data.inputSize)"))!
    let epochs = Int(option("--epochs", "1"))!
    let config = DataConfig(inputSize: side, mean: data.mean, std: data.std)
    let order = (0..<epochs).flatMap { _ in Array(items.indices) }
    let start = Date()
    let loader = BatchLoader(dataset: ds, items: items, order: order, batchSize: batch,
                             dataConfig: config, augmentation: augmentation, seed: 0, workers: workers,
                             imageCache: epochs > 1 ? DecodedImageCache() : nil)
    var n = 0
    while let b = loader.nextBatch() { n += b.labels.count }
    report(n, Date().timeIntervalSince(start), flopsPerImage: 0,
           extra: ", \"workers\": \(workers), \"policy\": \"\(option("--policy", "none"))\"")
default:
    FileHandle.standardError.write("unknown mode \(mode)\n".data(using: .utf8)!)
    exit(64)
}
