import CZstd
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
    /// Work that follows the write on the same thread, given its outcome and returning the one to report (e.g.
    /// `BuddyCopy`, which sends the file to another machine).
    public typealias Completion = (Outcome) -> Outcome

    /// What became of one checkpoint's file.
    public enum Outcome {
        case written(CheckpointStore.FileRecord, seconds: Double)
        /// The weights of slice `slice` hold a NaN or an infinity: nothing was written.
        case nonFinite(slice: Int)
        case failed(any Error)
    }

    public let slices: [ShardPlan.Slice]
    /// The zstd level each slice is compressed at; nil: stored as F32.
    public let zstdLevel: Int?
    /// Each slice's first element in a snapshot of one kind; the total.
    private let starts: [Int]
    private let total: Int
    private var snapshot: FloatBuffer?
    private let condition = NSCondition()
    private var copied = true
    private var outcome: Outcome?
    /// Whether a background write has begun and its outcome not been taken (`finish`).
    public private(set) var isPending = false

    public init(slices: [ShardPlan.Slice], zstdLevel: Int? = nil) {
        self.slices = slices
        self.zstdLevel = zstdLevel
        var starts: [Int] = [], total = 0
        for slice in slices {
            starts.append(total)
            total += slice.count
        }
        self.starts = starts
        self.total = total
    }

    /// Writes the file at `url` now, from `source`, then runs `completion`.
    public func write(to url: URL, from source: Source, then completion: Completion? = nil) -> Outcome {
        let started = monotonicSeconds()
        let outcome: Outcome
        if let broken = Self.firstNonFinite(slices, weights: { source(.model, $0) }) {
            outcome = .nonFinite(slice: broken)
        } else {
            do {
                outcome = .written(try Self.write(slices, zstdLevel: zstdLevel, from: source, to: url), seconds: monotonicSeconds() - started)
            } catch {
                outcome = .failed(error)
            }
        }
        return completion?(outcome) ?? outcome
    }

    /// Starts writing the file at `url` from `source` in the background, followed there by `completion`; returns
    /// at once. When no thread can be started (the machine out of memory or threads), writes it now instead, inside
    /// `foreground` (the caller's way of telling peers that wait on it that it works alone).
    public func begin(to url: URL, from source: @escaping Source, then completion: Completion? = nil,
                      foreground: (() -> Void) -> Void = { $0() }) {
        precondition(!isPending, "a checkpoint is already being written")
        allocateSnapshot()
        let snapshot = self.snapshot!
        isPending = true
        condition.lock()
        copied = false
        outcome = nil
        condition.unlock()
        // The thread reads the live buffers through `source` only until `copied`, while the caller keeps them
        // unchanged (`waitUntilCopied`).
        let live = UncheckedSource(read: source), then = UncheckedCompletion(run: completion)
        let slices = self.slices, starts = self.starts, total = self.total
        let work: @Sendable (_ inBackground: Bool) -> Void = { [self] inBackground in
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
            // The copy ran at training's priority (the update may be waiting for it); the write runs below it, so
            // on a machine with as many cores as training threads it takes what training leaves. (Linux applies a
            // process priority set for "0" to the calling thread only: in the foreground, that is training's.)
            if inBackground { setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10) }
            var result = write(to: url, from: copy)
            if case .written(let record, _) = result { result = .written(record, seconds: monotonicSeconds() - started) }
            if let completion = then.run { result = completion(result) }
            condition.lock()
            outcome = result
            condition.broadcast()
            condition.unlock()
        }
        // Without a thread (the machine out of memory or threads), the checkpoint is written now, in the foreground:
        // late, but neither lost nor waited for forever.
        if !DetachedThread.start(stackSize: threadStackSize, { work(true) }) { foreground { work(false) } }
    }

    /// The background thread's stack (tests ask for one no system gives, to see the write done in the foreground).
    var threadStackSize = 1 << 20

    /// Allocates the snapshot buffer, if not yet done, and touches every page of it: done before training starts,
    /// the first background checkpoint's copy does not have to fault its memory in while the next step waits.
    public func allocateSnapshot() {
        guard snapshot == nil else { return }
        let buffer = FloatBuffer(count: CheckpointKind.allCases.count * total)
        buffer.pointer.update(repeating: 0, count: buffer.count)
        snapshot = buffer
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

    /// Writes `slices` of every kind from `source` to `url` (atomically, fsynced) and returns its record; with
    /// `zstdLevel`, each slice as one zstd frame at that level.
    public static func write(_ slices: [ShardPlan.Slice], kinds: [CheckpointKind] = CheckpointKind.allCases,
                             zstdLevel: Int? = nil, from source: Source, to url: URL) throws -> CheckpointStore.FileRecord {
        var tensors: [TensorSlice] = []
        var frames: [UnsafeMutableRawBufferPointer] = []
        defer { for frame in frames { frame.deallocate() } }
        let context = zstdLevel.map { _ in ZSTD_createCCtx() }
        defer { if let context { ZSTD_freeCCtx(context) } }
        for kind in kinds {
            for (index, slice) in slices.enumerated() {
                guard let zstdLevel, let context else {
                    tensors.append(TensorSlice(name: slice.key(kind), shape: [slice.count], floats: source(kind, index)))
                    continue
                }
                let bytes = 4 * slice.count, bound = ZSTD_compressBound(bytes)
                let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: bound, alignment: 8)
                frames.append(frame)
                let size = ZSTD_compressCCtx(context, frame.baseAddress, bound, source(kind, index), bytes, Int32(zstdLevel))
                guard ZSTD_isError(size) == 0 else {
                    throw KeelError("cannot compress \(slice.key(kind)): \(String(cString: ZSTD_getErrorName(size)))")
                }
                tensors.append(TensorSlice(name: slice.key(kind), dtype: .u8, shape: [size],
                                           bytes: UnsafeRawBufferPointer(rebasing: frame[..<size])))
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

/// A `ShardWriter.Completion` handed to the writing thread, the only one that runs it.
private struct UncheckedCompletion: @unchecked Sendable {
    let run: ShardWriter.Completion?
}
