import Foundation
import KeelCore

/// Feeds training batches from `TrainingWindows` in a shuffled order that depends only on (seed, epoch),
/// preparing the next batches on a background thread so a step never waits for data.
///
/// The loader's state is one number, `position`: the samples (windows) consumed by all data-parallel ranks
/// together. Sample g is window `WindowPermutation(seed, epoch: g / W)(g mod W)`. Each call to `next`
/// consumes `worldSize × batch` samples, of which rank r takes the r-th run of `batch`; ranks therefore
/// read disjoint windows, and a checkpoint that records `position` resumes with the very next batch.
///
/// Call `stop()` when done: the prefetch thread keeps the loader alive until then.
public final class TokenLoader: @unchecked Sendable {
    public let windows: any TrainingWindows
    public let batch: Int
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int
    /// Samples consumed by all ranks through the batches `next` has returned.
    public private(set) var position: Int

    private let depth: Int
    private let condition = NSCondition()
    // `depth` batches of inputs, targets and documents; a raw buffer, because the producer writes one slot while the
    // consumer reads another, which Swift's exclusivity rules forbid on one array.
    private let slots: UnsafeMutablePointer<Int32>
    private var slotPositions: [Int]
    // Guarded by `condition`:
    private var produced = 0
    private var consumed = 0
    private var stopped = false
    private var running = false

    /// A loader starting at `position` that keeps `prefetch` batches ready (0: none, compute on demand).
    public init(windows: any TrainingWindows, batch: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1,
                position: Int = 0, prefetch: Int = 4) throws {
        guard windows.count >= batch * worldSize else {
            throw KeelError("data: \(windows.count) windows of \(windows.length + 1) tokens are fewer than one batch (\(batch * worldSize) sequences)")
        }
        precondition(rank >= 0 && rank < worldSize)
        self.windows = windows
        self.batch = batch
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
        self.position = position
        depth = prefetch
        let slotCount = max(prefetch, 1) * 3 * batch * windows.length
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: 0, count: slotCount)
        slotPositions = [Int](repeating: 0, count: max(prefetch, 1))
        if prefetch > 0 {
            running = true
            DetachedThread.startOrExit("the data loader") { self.produce() }
        }
    }

    deinit {
        slots.deallocate()
    }

    /// Stops the prefetch thread and waits for it to finish.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    /// Fills inputs and targets ([batch, length] each) with this rank's part of the next batch, and `documents` with
    /// each token's document start when the windows pack documents (`windows.packsDocuments`).
    public func next(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     documents: UnsafeMutablePointer<Int32>? = nil) {
        let n = batch * windows.length
        if depth == 0 {
            fill(at: position, into: inputs, targets, documents)
        } else {
            condition.lock()
            while produced == consumed { condition.wait() }
            let slot = consumed % depth
            precondition(slotPositions[slot] == position, "loader out of order")
            inputs.update(from: slots + slot * 3 * n, count: n)
            targets.update(from: slots + slot * 3 * n + n, count: n)
            documents?.update(from: slots + slot * 3 * n + 2 * n, count: n)
            consumed += 1
            condition.broadcast()
            condition.unlock()
        }
        position += worldSize * batch
    }

    /// This rank's rows of the batch that starts at global sample `start`.
    public func fill(at start: Int, into inputs: UnsafeMutablePointer<Int32>, _ targets: UnsafeMutablePointer<Int32>,
                     _ documents: UnsafeMutablePointer<Int32>? = nil) {
        let total = windows.count, length = windows.length
        var epoch = -1
        var permutation = WindowPermutation(count: total, seed: seed, epoch: 0)
        for row in 0..<batch {
            let sample = start + rank * batch + row
            if sample / total != epoch {
                epoch = sample / total
                permutation = WindowPermutation(count: total, seed: seed, epoch: epoch)
            }
            windows.copy(window: permutation(sample % total), inputs: inputs + row * length, targets: targets + row * length,
                         documents: documents.map { $0 + row * length })
        }
    }

    private func produce() {
        var next = position
        var index = 0
        while true {
            condition.lock()
            while produced - consumed == depth && !stopped { condition.wait() }
            if stopped {
                running = false
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.unlock()
            let slot = index % depth, n = batch * windows.length
            fill(at: next, into: slots + slot * 3 * n, slots + slot * 3 * n + n,
                 windows.packsDocuments ? slots + slot * 3 * n + 2 * n : nil)
            condition.lock()
            slotPositions[slot] = next
            produced += 1
            condition.broadcast()
            condition.unlock()
            next += worldSize * batch
            index += 1
        }
    }
}
