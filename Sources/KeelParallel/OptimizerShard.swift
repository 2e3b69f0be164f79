import KeelComm
import KeelCore
import KeelKernels
import KeelModel

/// The part of a model's flat buffers that this rank's optimizer updates: with ZeRO (stage 1 and up) the r-th of
/// N equal ranges over a data-parallel group of N ranks, otherwise all of it. It holds the averaged gradients of
/// that range (which `DataParallel` reduce-scatters into it), and after the update shares the updated parameters
/// with the other ranks — except at stage 3, where each rank keeps only its range and the parts gather the rest
/// when they run (`ShardedParameters`).
public final class OptimizerShard {
    public let model: any GradientSource
    public let communicator: any Communicator
    /// Whether the optimizer state is sharded (ZeRO stage 1 or more, on more than one rank).
    public let isSharded: Bool
    /// Whether the gradients are too (stage 2 or 3): `DataParallel` reduce-scatters every micro-batch's buckets
    /// and frees them, so the model's gradient buffer is never whole.
    public let shardsGradients: Bool
    /// Whether the parameters are too (stage 3): this rank holds only its range of them between passes.
    public let shardsParameters: Bool
    /// Each rank's range of the flat buffer (one range covering everything without ZeRO).
    public let ranges: [Range<Int>]
    /// The reduce-scattered gradients of this rank's range, with ZeRO-1.
    private let gradientBuffer: FloatBuffer?

    /// `stage` is the ZeRO stage over `communicator` (the data-parallel group): 0 (nothing sharded) to 3.
    public init(model: any GradientSource, communicator: any Communicator, stage: Int) {
        precondition((0...3).contains(stage), "ZeRO stage \(stage)")
        self.model = model
        self.communicator = communicator
        let count = model.parameters.count
        isSharded = stage >= 1 && communicator.size > 1
        shardsGradients = isSharded && stage >= 2
        shardsParameters = isSharded && stage == 3
        ranges = isSharded ? evenPartition(count: count, parts: communicator.size) : [0..<count]
        gradientBuffer = isSharded ? FloatBuffer(count: ranges[communicator.rank].count) : nil
    }

    /// This rank's range of the flat buffer.
    public var range: Range<Int> { ranges[isSharded ? communicator.rank : 0] }

    /// The averaged gradients of `range` (once `DataParallel.synchronizeGradients` returned), indexed from
    /// the range's start.
    public var gradients: UnsafeMutablePointer<Float> {
        gradientBuffer?.pointer ?? model.gradients.pointer
    }

    /// Zeroes the shard's own gradients (where the stage-2 and -3 micro-batches accumulate).
    public func clearGradients() {
        gradientBuffer?.zero()
    }

    /// Gives back the memory of the parameters outside this rank's range in `span` (ZeRO-3, after a part ran).
    public func releaseParameters(_ span: Range<Int>) {
        let own = range
        model.parameters.release(span.lowerBound..<max(span.lowerBound, min(span.upperBound, own.lowerBound)))
        model.parameters.release(min(span.upperBound, max(span.lowerBound, own.upperBound))..<span.upperBound)
    }

    /// Starts gathering `span` of the parameters in place from the ranks whose ranges it meets (ZeRO-3).
    public func startGathering(_ span: Range<Int>, label: String) -> CommunicationRequest {
        communicator.startAllGather(model.parameters.pointer + span.lowerBound, counts: ranges.map { span.clamped(to: $0).count },
                                    label: label)
    }

    /// Σ g² over `gradients`, leaving out the spans `excluded` (tensors another rank counts: a tied copy on
    /// the last pipeline stage, replicated tensors on all tensor ranks but the first).
    public func sumOfSquares(excluding excluded: [Range<Int>] = []) -> Double {
        let own = range
        var total = 0.0, start = own.lowerBound
        func add(_ span: Range<Int>) {
            total += KeelKernels.sumOfSquares(gradients + (span.lowerBound - own.lowerBound), count: span.count)
        }
        for cut in excluded.map({ $0.clamped(to: own) }).filter({ !$0.isEmpty }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if cut.lowerBound > start { add(start..<cut.lowerBound) }
            start = max(start, cut.upperBound)
        }
        if own.upperBound > start { add(start..<own.upperBound) }
        return total
    }

    /// Replaces the averaged gradients of `spans` (clamped to `range`) by their sum over `group`, in one
    /// all-reduce: gradients each rank of `group` computed from only part of the data (sequence parallelism's
    /// norms). Every rank of `group` must hold the same ranges.
    public func sum(_ spans: [Range<Int>], over group: any Communicator, label: String) throws {
        let own = range
        let parts = spans.map { $0.clamped(to: own) }.filter { !$0.isEmpty }
        var packed = [Float]()
        packed.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for part in parts {
            packed.append(contentsOf: UnsafeBufferPointer(start: gradients + (part.lowerBound - own.lowerBound), count: part.count))
        }
        guard !packed.isEmpty else { return }
        try packed.withUnsafeMutableBufferPointer { packed in
            try group.allReduce(packed, .sum, label: label)
            var next = packed.baseAddress!
            for part in parts {
                (gradients + (part.lowerBound - own.lowerBound)).update(from: next, count: part.count)
                next += part.count
            }
        }
    }

    /// Copies every rank's updated range of the parameters to all ranks (ZeRO-1 and -2; nothing otherwise).
    public func gatherParameters(label: String) throws {
        guard isSharded && !shardsParameters else { return }
        try communicator.allGather(model.parameters.pointer, counts: ranges.map(\.count), label: "\(label): parameters")
    }
}
