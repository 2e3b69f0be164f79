import KeelComm
import KeelCore
import KeelKernels
import KeelModel

/// What one optimizer step's gradient communication did, for metrics and the overlap benchmark.
public struct OverlapStatistics: Sendable, Equatable {
    /// Buckets communicated this step.
    public var buckets = 0
    /// Buckets whose communication began before the backward pass ended: the proof of overlap.
    public var startedDuringBackward = 0
    /// Sum over buckets of the time from start to end of their communication.
    public var communicationSeconds = 0.0
    /// Time the step waited for communication after the backward pass ended (what was not hidden).
    public var exposedSeconds = 0.0

    public init() {}
}

/// Data parallelism for one model (any `GradientSource`) over a communicator: the gradients of the ranks are
/// averaged in buckets while the backward pass is still running, into the optimizer's shard (`OptimizerShard`:
/// all of the buffer, or with ZeRO stage 1 this rank's range of it).
///
/// Buckets are fixed spans of the flat gradient buffer (a large tensor spans several). A training pass
/// reports each span of the gradients once per micro-batch (`GradientSource.gradientsReady`); a bucket's
/// communication starts as soon as every micro-batch of the step has reported all of it, which is during
/// the last backward pass that touches it, so the earlier micro-batches communicate nothing — in whatever
/// order a pipeline schedule runs them. Without ZeRO each bucket is all-reduced in place; with ZeRO-1 it is
/// reduce-scattered so that each rank receives the average of its own range only, which its optimizer
/// updates before sharing the parameters.
///
/// With ZeRO-2 and -3 the whole gradient buffer must never be resident, so nothing waits for the last
/// micro-batch: each micro-batch's bucket is copied out, freed in the buffer (the next micro-batch starts it
/// from zero) and reduce-scattered at once, and each rank adds the average of its range into the shard. At most
/// `inFlightBuckets` copies are on their way at a time; the oldest is finished before another starts. This sends
/// the gradients once per micro-batch, as DeepSpeed's ZeRO-2 and FSDP without `no_sync` do.
public final class DataParallel {
    public let model: any GradientSource
    public let communicator: any Communicator
    /// Where the averaged gradients go: the optimizer's part of the buffer.
    public let shard: OptimizerShard
    /// The spans of the flat buffer communicated together.
    public let buckets: [Range<Int>]
    /// Reports each bucket still waits for: its elements × the micro-batches that have not reported them.
    private var pending: [Int]
    private var microBatches = 1
    private var requests: [CommunicationRequest?]
    /// ZeRO-2/3: the micro-batch buckets on their way, oldest first, with their copies and where the result goes.
    private var flights: [Flight] = []
    private var spareBuffers: [FloatBuffer] = []
    private var label = ""
    /// Statistics of the last `synchronizeGradients` call.
    public private(set) var statistics = OverlapStatistics()
    /// ZeRO-2/3: micro-batch buckets reduce-scattered at once, at most.
    public static let inFlightBuckets = 4

    private struct Flight {
        let request: CommunicationRequest
        /// The bucket's gradients, and this rank's averaged part of them once the request is done.
        let sent: FloatBuffer
        let received: FloatBuffer
        /// The part of the bucket in this rank's range, relative to the range's start.
        let destination: Range<Int>
    }

    /// Plans buckets of at most `bucketElements` floats of `shard`'s model, averaged over `shard`'s communicator
    /// (the data-parallel group).
    public init(shard: OptimizerShard, bucketElements: Int) {
        precondition(bucketElements > 0)
        self.shard = shard
        model = shard.model
        communicator = shard.communicator
        let count = model.parameters.count
        buckets = stride(from: 0, to: count, by: bucketElements).map { $0..<min(count, $0 + bucketElements) }
        pending = buckets.map(\.count)
        requests = Array(repeating: nil, count: buckets.count)
    }

    /// Arms communication for a step of `microBatches` training passes (call before the first `forward`).
    /// `label` names the step in traces and errors.
    public func prepare(microBatches: Int, label: String) {
        self.label = label
        self.microBatches = microBatches
        pending = buckets.map { $0.count * (shard.shardsGradients ? 1 : microBatches) }
        requests = Array(repeating: nil, count: buckets.count)
        statistics = OverlapStatistics()
        shard.clearGradients()
        model.gradientsReady = { [unowned self] span in self.gradientsReady(span) }
    }

    /// Marks `span` final for every micro-batch at once — for gradients the step completes itself (the tied
    /// embedding, summed across pipeline stages after the passes), which the model's reports skipped.
    public func finish(_ span: Range<Int>) {
        precondition(!shard.shardsGradients, "ZeRO-2/3 reduce each micro-batch's gradients as the passes report them")
        report(span, times: microBatches)
    }

    /// Waits for every bucket (call when the step's last backward pass is done).
    public func synchronizeGradients() throws {
        model.gradientsReady = nil
        let backwardEnded = monotonicSeconds()
        if shard.shardsGradients {
            precondition(pending == buckets.map(\.count), "a micro-batch's gradients were reported only in part")
            while !flights.isEmpty { try land(backwardEnded: backwardEnded) }
        } else {
            for (index, request) in requests.enumerated() {
                guard let request else { preconditionFailure("bucket \(index) was never reported ready") }
                try request.wait()
                count(request, backwardEnded: backwardEnded)
            }
        }
        statistics.exposedSeconds = monotonicSeconds() - backwardEnded
    }

    private func count(_ request: CommunicationRequest, backwardEnded: Double) {
        let interval = request.interval!
        statistics.buckets += 1
        statistics.communicationSeconds += interval.ended - interval.began
        if interval.began < backwardEnded { statistics.startedDuringBackward += 1 }
    }

    /// ZeRO-2/3: waits for the oldest micro-batch bucket and adds this rank's average of it into the shard.
    private func land(backwardEnded: Double = .infinity) throws {
        let flight = flights.removeFirst()
        try flight.request.wait()
        count(flight.request, backwardEnded: backwardEnded)
        addInPlace(flight.received.pointer, into: shard.gradients + flight.destination.lowerBound, count: flight.destination.count)
        spareBuffers += [flight.sent, flight.received]
    }

    /// Counts one micro-batch's report of `span` and starts every bucket that became complete, in bucket
    /// order (the same on all ranks).
    private func gradientsReady(_ span: Range<Int>) {
        report(span, times: 1)
    }

    private func report(_ span: Range<Int>, times: Int) {
        guard !span.isEmpty else { return }
        let size = buckets.first!.count
        for index in (span.lowerBound / size)..<((span.upperBound + size - 1) / size) {
            let bucket = buckets[index]
            pending[index] -= bucket.clamped(to: span).count * times
            precondition(pending[index] >= 0, "gradient span \(span) reported more often than there are micro-batches")
            guard pending[index] == 0 else { continue }
            if shard.shardsGradients {
                startMicroBatch(bucket: index)
                pending[index] = bucket.count
            } else {
                requests[index] = start(bucket: index)
            }
        }
    }

    /// ZeRO-2/3: sends one micro-batch's gradients of a bucket on their way and frees them in the model's buffer.
    private func startMicroBatch(bucket index: Int) {
        let bucket = buckets[index], own = shard.range
        if flights.count >= Self.inFlightBuckets {
            shard.communicator.stoppingJobOnFailure(of: "data-parallel group") { try land() }
        }
        let sent = spareBuffers.popLast() ?? FloatBuffer(count: buckets[0].count)
        let received = spareBuffers.popLast() ?? FloatBuffer(count: buckets[0].count)
        sent.pointer.update(from: model.gradients.pointer + bucket.lowerBound, count: bucket.count)
        model.gradients.release(bucket)
        let part = bucket.clamped(to: own)
        let request = communicator.startReduceScatter(
            UnsafePointer(sent.pointer), into: received.pointer, counts: shard.ranges.map { bucket.clamped(to: $0).count },
            .average, label: "\(label): gradient bucket \(index + 1) of \(buckets.count)")
        flights.append(Flight(request: request, sent: sent, received: received,
                              destination: part.isEmpty ? 0..<0 : (part.lowerBound - own.lowerBound)..<(part.upperBound - own.lowerBound)))
    }

    private func start(bucket index: Int) -> CommunicationRequest {
        let bucket = buckets[index]
        let text = "\(label): gradient bucket \(index + 1) of \(buckets.count)"
        let gradients = model.gradients.pointer
        guard shard.isSharded else {
            return communicator.startAllReduce(UnsafeMutableBufferPointer(start: gradients + bucket.lowerBound,
                                                                          count: bucket.count), .average, label: text)
        }
        // This rank's part of the bucket lands at its place in the shard (nothing lands when they do not meet).
        let own = shard.range
        let offset = bucket.overlaps(own) ? max(bucket.lowerBound, own.lowerBound) - own.lowerBound : 0
        return communicator.startReduceScatter(UnsafePointer(gradients + bucket.lowerBound), into: shard.gradients + offset,
                                               counts: shard.ranges.map { bucket.clamped(to: $0).count }, .average, label: text)
    }
}
