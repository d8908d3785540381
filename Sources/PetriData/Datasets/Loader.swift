import Foundation
import PetriEngine
import PetriNN

/// Produces training batches — decode, preprocess, augment, resize and normalise — on background threads
/// while the engine computes, keeping at most `prefetch` batches ready.
///
/// oneDNN already runs its kernels on every core (OpenMP). One loader thread beside it is the default:
/// decoding overlaps computation without oversubscribing a 2-core machine. Use more workers when
/// measuring the loader alone or when the engine is idle (feature extraction of cached trunks).
public final class BatchLoader: @unchecked Sendable {
    public struct Batch {
        public var input: Tensor
        public var labels: [Int]
        /// Indices into the `items` given to the loader.
        public var indices: [Int]
        public var failures: [(path: String, reason: String)]
    }

    private let queue: PrefetchBuffer<(Int, Batch)>
    private let batchCount: Int
    private var next = 0
    private var pending: [Int: Batch] = [:]

    /// - Parameters:
    ///   - order: item indices in the order batches should be formed (shuffle them per epoch yourself).
    ///   - seed: augmentation draws are seeded per (seed, item position), so results do not depend on
    ///     which worker handled an image.
    ///   - batchOffset: the index of the first batch in a longer sequence cut into several loaders (the
    ///     augmentation streams follow the global batch index, so cutting does not change the draws).
    public init(dataset: Dataset, items: [DatasetItem], order: [Int], batchSize: Int, dataConfig: DataConfig,
                preprocessing: TransformPipeline = TransformPipeline(),
                augmentation: TransformPipeline = TransformPipeline(), decoder: ImageDecoder = ImageDecoder(),
                seed: UInt64, workers: Int = 1, prefetch: Int = 2, imageCache: DecodedImageCache? = nil,
                batchOffset: Int = 0) {
        let batches = stride(from: 0, to: order.count, by: batchSize).map { Array(order[$0..<min($0 + batchSize, order.count)]) }
        batchCount = batches.count
        queue = PrefetchBuffer(capacity: max(prefetch, workers))
        let counter = AtomicCounter()
        for _ in 0..<max(1, workers) {
            let thread = Thread { [queue] in
                while true {
                    let b = counter.next()
                    guard b < batches.count else { return }
                    var images: [FloatImage] = [], labels: [Int] = [], kept: [Int] = []
                    var failures: [(String, String)] = []
                    for (k, i) in batches[b].enumerated() {
                        do {
                            var img: FloatImage
                            if let hit = imageCache?[i] { img = hit } else {
                                img = preprocessing(try dataset.preparedImage(of: items[i], decoder: decoder))
                                if !augmentation.isEmpty {
                                    // Augment at about the network's resolution, not the file's: same result
                                    // after the final resize, a fraction of the work on large images.
                                    let side = min(img.width, img.height), target = dataConfig.inputSize
                                    if side > target + target / 4 {
                                        let f = Double(target) / Double(side)
                                        img = img.resized(width: max(1, Int(Double(img.width) * f)),
                                                          height: max(1, Int(Double(img.height) * f)))
                                    }
                                }
                                imageCache?[i] = img
                            }
                            if !augmentation.isEmpty {
                                var rng = SeededGenerator(seed: seed, stream: "augment \(b + batchOffset) \(k) \(i)")
                                img = augmentation.apply(img, rng: &rng)
                            }
                            images.append(img)
                            labels.append(items[i].label)
                            kept.append(i)
                        } catch {
                            failures.append((items[i].path, (error as? ImageDecodingError)?.summary ?? "\(error)"))
                        }
                    }
                    let input = images.isEmpty ? Tensor(zeros: [0, dataConfig.inputSize, dataConfig.inputSize, 3])
                        : dataConfig.batch(images)
                    queue.put((b, Batch(input: input, labels: labels, indices: kept, failures: failures)))
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// The next batch in order, or nil after the last.
    public func nextBatch() -> Batch? {
        guard next < batchCount else { return nil }
        while pending[next] == nil {
            let (b, batch) = queue.take()
            pending[b] = batch
        }
        defer { next += 1 }
        return pending.removeValue(forKey: next)
    }
}

/// Decoded, preprocessed (and, for augmentation, downscaled) images by item index, shared by a loader's
/// workers: training draws each image many times, decoding it once is enough. Deterministic transforms
/// only come before it; augmentation runs on every draw.
public final class DecodedImageCache: @unchecked Sendable {
    private var images: [Int: FloatImage] = [:]
    private let lock = NSLock()
    public init() {}
    public subscript(index: Int) -> FloatImage? {
        get { lock.withLock { images[index] } }
        set { lock.withLock { images[index] = newValue } }
    }
}

final class AtomicCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { defer { value += 1 }; return value } }
}

/// A bounded blocking queue between producer threads and one consumer.
public final class PrefetchBuffer<T>: @unchecked Sendable {
    private var items: [T] = []
    private let capacity: Int
    private let condition = NSCondition()

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    public func put(_ item: T) {
        condition.lock()
        while items.count >= capacity { condition.wait() }
        items.append(item)
        condition.broadcast()
        condition.unlock()
    }

    public func take() -> T {
        condition.lock()
        while items.isEmpty { condition.wait() }
        let item = items.removeFirst()
        condition.broadcast()
        condition.unlock()
        return item
    }
}
