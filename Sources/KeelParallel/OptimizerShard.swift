import KeelComm
import KeelCore
import KeelKernels
import KeelModel

/// The part of a model's flat buffers that this rank's optimizer updates: with ZeRO stage 1 the r-th of N equal
/// ranges over a data-parallel group of N ranks, otherwise all of it. It holds the averaged gradients of that
/// range (which `DataParallel` reduce-scatters into it), and after the update shares the updated parameters
/// with the other ranks.
public final class OptimizerShard {
    public let model: any GradientSource
    public let communicator: any Communicator
    /// Whether the state is sharded (ZeRO stage 1 on more than one rank).
    public let isSharded: Bool
    /// Each rank's range of the flat buffer (one range covering everything without ZeRO).
    public let ranges: [Range<Int>]
    /// The reduce-scattered gradients of this rank's range, with ZeRO-1.
    private let gradientBuffer: FloatBuffer?

    /// `zero` selects ZeRO stage 1 over `communicator` (the data-parallel group).
    public init(model: any GradientSource, communicator: any Communicator, zero: Bool) {
        self.model = model
        self.communicator = communicator
        let count = model.parameters.count
        isSharded = zero && communicator.size > 1
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
        packed = try group.allReduce(packed, .sum, label: label)
        var next = 0
        for part in parts {
            (gradients + (part.lowerBound - own.lowerBound)).update(from: Array(packed[next..<(next + part.count)]), count: part.count)
            next += part.count
        }
    }

    /// Copies every rank's updated range of the parameters to all ranks (ZeRO-1; nothing otherwise).
    public func gatherParameters(label: String) throws {
        guard isSharded else { return }
        try communicator.allGather(model.parameters.pointer, counts: ranges.map(\.count), label: "\(label): parameters")
    }

    /// The whole of a buffer laid out like `range` (optimizer moments) on rank 0, for a checkpoint; nil on the
    /// other ranks. Without ZeRO, `local` already is the whole.
    public func gatherToFirstRank(_ local: FloatBuffer) throws -> FloatBuffer? {
        guard isSharded else { return communicator.rank == 0 ? local : nil }
        let whole = communicator.rank == 0 ? FloatBuffer(count: model.parameters.count) : nil
        try communicator.gather(UnsafePointer(local.pointer), into: whole?.pointer, counts: ranges.map(\.count), root: 0,
                                label: "checkpoint: optimizer state")
        return whole
    }
}
