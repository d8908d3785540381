import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where oneDNN work runs. Lane 0 is the ordinary case: one caller thread whose kernels use every core
/// through oneDNN's OpenMP team. Lanes 1… are worker threads whose kernels use one core each, so that
/// several independent jobs (the inner-fold fits of a small network) run side by side.
///
/// Why: a small network's kernels (cnn-mini: 16–64 channels at 16–64 px) are too short to keep an OpenMP
/// team busy — the second core spends much of a step at barriers. Two single-threaded fits side by side did
/// 1370 images/s against 860–1000 for one fit on both cores (`petri-bench scratch`, 2-core EPYC).
///
/// oneDNN bakes the thread count into a kernel when it is created and (in its default scratchpad mode)
/// wants a kernel run from the thread that created it; so every kernel cache is keyed by lane, kernels get
/// their own scratchpad, and a lane is used by one thread at a time (nested `run`s take other lanes).
public enum ComputeLanes {
    private final class LaneBox { let lane: Int; init(_ lane: Int) { self.lane = lane } }
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// The calling thread's lane (0 unless it is one of `run`'s workers).
    public static var current: Int {
        guard let p = pthread_getspecific(key) else { return 0 }
        return Unmanaged<LaneBox>.fromOpaque(p).takeUnretainedValue().lane
    }

    /// OpenMP's `omp_set_num_threads`, looked up at run time (libgomp comes with libdnnl; linking it by name
    /// would need its development symlink).
    private static let setOpenMPThreads: (@convention(c) (Int32) -> Void)? = {
        guard let f = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return nil }
        return unsafeBitCast(f, to: (@convention(c) (Int32) -> Void).self)
    }()

    /// How many jobs `run` runs at once for `count` jobs: all of them up to twice the cores. Single-threaded
    /// jobs do not wait on each other, so the system can share cores among them: running 3 inner-fold fits at
    /// once on 2 cores finishes sooner than 2 then 1, which leaves a core idle in the second round.
    public static func width(for count: Int) -> Int {
        setOpenMPThreads == nil ? 1 : max(1, min(count, 2 * ProcessInfo.processInfo.activeProcessorCount))
    }

    /// Runs `job(i)` for every i in `0..<count`, `width(for: count)` at a time, each on a worker thread of its
    /// own lane with single-threaded kernels; results in order. The first error thrown is rethrown.
    /// With one job or one core they still run on a worker lane, single-threaded: a job's numbers do not
    /// depend on the machine's core count.
    public static func run<T>(_ count: Int, _ job: @escaping (Int) throws -> T) throws -> [T] {
        let width = width(for: count)
        let results = Slots<Result<T, Error>>(count: count)
        let next = Counter(), done = DispatchGroup()
        for _ in 1...max(1, width) {
            done.enter()
            let thread = Thread {
                let lane = lanes.acquire()
                defer { lanes.release(lane) }
                let box = LaneBox(lane)
                pthread_setspecific(key, Unmanaged.passRetained(box).toOpaque())
                setOpenMPThreads?(1)
                while case let i = next.take(), i < count {
                    results[i] = Result { try job(i) }
                }
                pthread_setspecific(key, nil)
                Unmanaged.passUnretained(box).release()
                done.leave()
            }
            thread.stackSize = 8 << 20   // image decoders and deep call chains
            thread.start()
        }
        done.wait()
        return try results.values.map { try $0.get() }
    }

    /// Lane numbers in use: each worker takes the lowest free one (so kernels are reused from job to job)
    /// and runs nested `run`s get lanes of their own.
    private static let lanes = LanePool()

    private final class LanePool: @unchecked Sendable {
        private var busy = Set<Int>()
        private let lock = NSLock()
        func acquire() -> Int {
            lock.withLock {
                var lane = 1
                while busy.contains(lane) { lane += 1 }
                busy.insert(lane)
                return lane
            }
        }
        func release(_ lane: Int) { _ = lock.withLock { busy.remove(lane) } }
    }

    private final class Counter: @unchecked Sendable {
        private var value = 0
        private let lock = NSLock()
        func take() -> Int { lock.withLock { defer { value += 1 }; return value } }
    }

    private final class Slots<R>: @unchecked Sendable {
        private var slots: [R?]
        private let lock = NSLock()
        init(count: Int) { slots = Array(repeating: nil, count: count) }
        subscript(i: Int) -> R? {
            get { lock.withLock { slots[i] } }
            set { lock.withLock { slots[i] = newValue } }
        }
        var values: [R] { lock.withLock { slots.map { $0! } } }
    }
}
