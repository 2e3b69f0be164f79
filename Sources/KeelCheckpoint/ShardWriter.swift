import Foundation
import KeelComm
import KeelCore

/// Writes one rank's file of a sharded checkpoint — its `ShardPlan` slices of the weights and both moments —
/// either at once from the live buffers, or in the background from a snapshot so that training goes on.
///
/// In the background (`begin`), a thread first copies every slice into a snapshot buffer (allocated at the first
/// checkpoint and reused): the live buffers must not change until that copy is done, which the training loop
/// waits for (`waitUntilCopied`) just before the optimizer next updates them. The thread then checks that the
/// weights are finite, serialises, writes and fsyncs the file — at a lower scheduling priority than training —
/// while the next steps run. One checkpoint is in flight at a time.
public final class ShardWriter: @unchecked Sendable {
    /// Where slice `index`'s elements of `kind` are (in the live buffers).
    public typealias Source = (CheckpointKind, Int) -> UnsafePointer<Float>

    /// What became of one checkpoint's file.
    public enum Outcome {
        case written(CheckpointStore.FileRecord, seconds: Double)
        /// The weights of slice `slice` hold a NaN or an infinity: nothing was written.
        case nonFinite(slice: Int)
        case failed(any Error)
    }

    public let slices: [ShardPlan.Slice]
    /// Each slice's first element in a snapshot of one kind; the total.
    private let starts: [Int]
    private let total: Int
    private var snapshot: FloatBuffer?
    private let condition = NSCondition()
    private var copied = true
    private var outcome: Outcome?
    /// Whether a background write has begun and its outcome not been taken (`finish`).
    public private(set) var isPending = false

    public init(slices: [ShardPlan.Slice]) {
        self.slices = slices
        var starts: [Int] = [], total = 0
        for slice in slices {
            starts.append(total)
            total += slice.count
        }
        self.starts = starts
        self.total = total
    }

    /// Writes the file at `url` now, from `source`.
    public func write(to url: URL, from source: Source) -> Outcome {
        let started = monotonicSeconds()
        if let broken = Self.firstNonFinite(slices, weights: { source(.model, $0) }) { return .nonFinite(slice: broken) }
        do {
            return .written(try Self.write(slices, from: source, to: url), seconds: monotonicSeconds() - started)
        } catch {
            return .failed(error)
        }
    }

    /// Starts writing the file at `url` from `source` in the background; returns at once.
    public func begin(to url: URL, from source: @escaping Source) {
        precondition(!isPending, "a checkpoint is already being written")
        let snapshot = self.snapshot ?? FloatBuffer(count: CheckpointKind.allCases.count * total)
        self.snapshot = snapshot
        isPending = true
        condition.lock()
        copied = false
        outcome = nil
        condition.unlock()
        // The thread reads the live buffers through `source` only until `copied`, while the caller keeps them
        // unchanged (`waitUntilCopied`).
        let live = UncheckedSource(read: source)
        let slices = self.slices, starts = self.starts, total = self.total
        let thread = Thread { [self] in
            // Below training's priority: on a machine with as many cores as training threads, the write takes
            // what training leaves. (Linux applies a process priority set for "0" to the calling thread only.)
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
            let started = monotonicSeconds()
            let copy = { (kind: CheckpointKind, index: Int) -> UnsafePointer<Float> in
                UnsafePointer(snapshot.pointer + CheckpointKind.allCases.firstIndex(of: kind)! * total + starts[index])
            }
            for kind in CheckpointKind.allCases {
                for (index, slice) in slices.enumerated() {
                    UnsafeMutablePointer(mutating: copy(kind, index)).update(from: live.read(kind, index), count: slice.count)
                }
            }
            condition.lock()
            copied = true
            condition.broadcast()
            condition.unlock()
            var result = write(to: url, from: copy)
            if case .written(let record, _) = result { result = .written(record, seconds: monotonicSeconds() - started) }
            condition.lock()
            outcome = result
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Blocks until the background write has copied the live buffers; returns the seconds it waited.
    @discardableResult
    public func waitUntilCopied() -> Double {
        let started = monotonicSeconds()
        condition.lock()
        while !copied { condition.wait() }
        condition.unlock()
        return monotonicSeconds() - started
    }

    /// Whether the background write has finished (`finish` will not block).
    public var isFinished: Bool {
        condition.lock()
        defer { condition.unlock() }
        return outcome != nil
    }

    /// Blocks until the background write has finished and returns its outcome.
    public func finish() -> Outcome {
        condition.lock()
        while outcome == nil { condition.wait() }
        let result = outcome!
        condition.unlock()
        isPending = false
        return result
    }

    /// Writes `slices` of every kind from `source` to `url` (atomically, fsynced) and returns its record.
    public static func write(_ slices: [ShardPlan.Slice], from source: Source, to url: URL) throws -> CheckpointStore.FileRecord {
        var tensors: [TensorSlice] = []
        for kind in CheckpointKind.allCases {
            for (index, slice) in slices.enumerated() {
                tensors.append(TensorSlice(name: slice.key(kind), shape: [slice.count], floats: source(kind, index)))
            }
        }
        try Safetensors.write(tensors, metadata: ["format": CheckpointManifest.currentFormat], to: url)
        return try CheckpointStore.record(of: url)
    }

    /// The first of `slices` whose weights hold a NaN or infinite value, if any.
    public static func firstNonFinite(_ slices: [ShardPlan.Slice], weights: (Int) -> UnsafePointer<Float>) -> Int? {
        slices.indices.first { index in
            UnsafeBufferPointer(start: weights(index), count: slices[index].count).contains { !$0.isFinite }
        }
    }
}

/// A `ShardWriter.Source` handed to the writing thread, which reads through it only while the training loop
/// waits for it not to change.
private struct UncheckedSource: @unchecked Sendable {
    let read: ShardWriter.Source
}
