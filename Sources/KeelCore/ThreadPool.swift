import Foundation
import Synchronization

/// A persistent pool of worker threads for data-parallel loops inside kernels.
///
/// Workers spin for a millisecond on an atomic generation counter (a dispatch costs well under a microsecond
/// while they are awake) and then park on a condition variable, so an idle pool does not burn the cores that
/// the next process needs. The calling thread always takes part in the work. Loops must not nest.
///
/// Work is split into contiguous chunks by index only, so the result of a loop whose iterations write
/// disjoint outputs does not depend on which thread ran what: kernels stay deterministic.
public final class ThreadPool: @unchecked Sendable {
    /// The pool kernels use; its size comes from `KEEL_THREADS` or the number of active cores.
    public static let shared = ThreadPool(threadCount: defaultThreadCount())

    /// Number of threads that take part in a loop, the caller included.
    public let threadCount: Int

    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let condition = NSCondition()
    /// Held by the caller whose loop the workers run: loops that several threads start at once (ranks that are
    /// threads of one process, in tests) run one after another, each over the whole pool.
    private let dispatch = NSLock()
    // Written by the caller before the generation is bumped (release), read by workers after (acquire).
    private var job: UnsafeRawPointer?
    private var jobCount = 0

    /// Creates a pool in which `threadCount` threads (the caller and `threadCount - 1` workers) run loops.
    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        for worker in 1..<self.threadCount {
            let thread = Thread { [unowned self] in self.workerLoop(worker) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// The thread count from `KEEL_THREADS`; otherwise the processors this process may run on and use
    /// (`ProcessorAffinity`: its binding, cpuset and CPU quota), divided among the job's processes on this machine
    /// when the launcher left them all free to run anywhere (so that N ranks on one machine do not run N × cores
    /// threads).
    public static func defaultThreadCount() -> Int {
        let info = ProcessInfo.processInfo, environment = info.environment
        if let requestedThreads { return requestedThreads }
        let processors = ProcessorAffinity.allowedProcessors()
        let allowed = ProcessorAffinity.usableProcessorCount(allowing: processors)
        // A malformed launcher variable is reported by the command that starts the run, not here.
        let localProcesses = (try? ProcessPlacement.discover(environment))?.localSize ?? 1
        if localProcesses > 1, processors.count >= info.processorCount {
            return max(1, allowed / localProcesses)
        }
        return allowed
    }

    /// `KEEL_THREADS`, read once: a value that is not a count from 1 to 4,096 is warned about (once) and ignored.
    private static let requestedThreads: Int? = {
        guard let text = ProcessInfo.processInfo.environment["KEEL_THREADS"] else { return nil }
        guard let value = Int(text), (1...4096).contains(value) else {
            warn("KEEL_THREADS=\(text) is not a count from 1 to 4096; using the processors this process may run on")
            return nil
        }
        return value
    }()

    /// Calls `body` with disjoint contiguous sub-ranges that together cover `0..<count`, in parallel.
    ///
    /// The split depends only on `count` and `threadCount`.
    public func parallelFor(_ count: Int, _ body: (Range<Int>) -> Void) {
        parallelChunks(count) { _, range in body(range) }
    }

    /// Like `parallelFor`, also passing the chunk's index in `0..<threadCount`; no two chunks with the same
    /// index run at once, so it can select per-thread scratch memory.
    public func parallelChunks(_ count: Int, _ body: (Int, Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = min(threadCount, count)
        if chunks == 1 {
            body(0, 0..<count)
            return
        }
        dispatch.lock()
        defer { dispatch.unlock() }
        withoutActuallyEscaping(body) { escaping in
            var task: (Int, Range<Int>) -> Void = escaping
            withUnsafePointer(to: &task) { pointer in
                job = UnsafeRawPointer(pointer)
                jobCount = count
                // Every worker checks in, even one with no chunk, so none can lag a generation behind.
                pending.store(threadCount - 1, ordering: .relaxed)
                condition.lock()
                generation.add(1, ordering: .releasing)
                condition.broadcast()
                condition.unlock()
                body(0, ThreadPool.chunk(0, of: chunks, count: count))
                while pending.load(ordering: .acquiring) > 0 {}
                job = nil
            }
        }
    }

    /// Calls the caller's closure through its address. Every reference the call takes must be dropped
    /// before the worker checks in: the closure lives on the caller's stack only until `pending` reaches 0,
    /// and a copy released afterwards (as a local `let task = …pointee` could be) corrupts that memory.
    @inline(never)
    private static func run(_ job: UnsafeRawPointer, _ chunk: Int, _ range: Range<Int>) {
        job.assumingMemoryBound(to: ((Int, Range<Int>) -> Void).self).pointee(chunk, range)
    }

    /// The `index`-th of `chunks` near-equal contiguous pieces of `0..<count`.
    private static func chunk(_ index: Int, of chunks: Int, count: Int) -> Range<Int> {
        let base = count / chunks, extra = count % chunks
        let start = index * base + min(index, extra)
        return start..<(start + base + (index < extra ? 1 : 0))
    }

    /// How long an idle worker spins before it parks. A generation step runs a hundred short loops a token with
    /// serial work between them (norms, attention's bookkeeping, sampling); a worker that parked after 20,000
    /// spins (tens of microseconds) was often asleep when the next loop came, and waking it cost a quarter of
    /// decode speed (`keel generate` on a 75M Q4_0 model: 500–790 tokens/s against 780–870 spinning for a
    /// millisecond). A millisecond is still short next to anything that leaves the pool idle for long.
    private static let spinNanoseconds: UInt64 = 1_000_000

    private func workerLoop(_ worker: Int) {
        var seen = 0
        while true {
            var spins = 0
            let idleSince = DispatchTime.now().uptimeNanoseconds
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                spins += 1
                // The clock read every 4,096 spins (it costs tens of nanoseconds).
                if spins & 4095 == 0, DispatchTime.now().uptimeNanoseconds - idleSince > ThreadPool.spinNanoseconds {
                    condition.lock()
                    while generation.load(ordering: .acquiring) == seen { condition.wait() }
                    condition.unlock()
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            let count = jobCount
            let chunks = min(threadCount, count)
            if worker < chunks, let job {
                ThreadPool.run(job, worker, ThreadPool.chunk(worker, of: chunks, count: count))
            }
            pending.subtract(1, ordering: .releasing)
        }
    }
}
