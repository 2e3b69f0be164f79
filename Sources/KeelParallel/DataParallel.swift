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
/// micro-batch: each micro-batch's bucket is reduce-scattered as soon as that micro-batch has finished it, straight
/// into the shard, where the micro-batches' averages add up; once done, the bucket's memory is handed back to
/// the operating system (the next micro-batch starts it from zero). At most `inFlightBuckets` buckets are on
/// their way at once, and before the next micro-batch's passes write again, every bucket of this one has landed. This sends the gradients once per micro-batch, as DeepSpeed's
/// ZeRO-2 and FSDP without `no_sync` do.
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
    /// ZeRO-2/3: the buckets of the current micro-batch on their way, in order.
    private var flights: [(request: CommunicationRequest, bucket: Range<Int>)] = []
    /// ZeRO-2/3: buckets of the current micro-batch started so far.
    private var startedThisMicroBatch = 0
    /// ZeRO-2/3: buckets whose memory may wait for their communication; the oldest lands before more start.
    public static let inFlightBuckets = 2
    /// ZeRO-2/3: the fewest buckets a model is cut into (so those in flight hold under a fifth of its gradients).
    public static let shardedBucketsPerModel = 16
    private var label = ""
    /// Statistics of the last `synchronizeGradients` call.
    public private(set) var statistics = OverlapStatistics()
    /// Plans buckets of at most `bucketElements` floats of `shard`'s model, averaged over `shard`'s communicator
    /// (the data-parallel group). With ZeRO-2/3 a bucket is also at most 1/`shardedBucketsPerModel` of the
    /// model: the buckets that wait for their communication then hold a small share of the gradients, whatever
    /// the bucket size configured for plain data parallelism.
    public init(shard: OptimizerShard, bucketElements: Int) {
        precondition(bucketElements > 0)
        self.shard = shard
        model = shard.model
        communicator = shard.communicator
        let count = model.parameters.count
        let size = shard.shardsGradients ? min(bucketElements, max(1, count / Self.shardedBucketsPerModel)) : bucketElements
        buckets = stride(from: 0, to: count, by: size).map { $0..<min(count, $0 + size) }
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
            try landFlights(backwardEnded: backwardEnded)
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

    /// ZeRO-2/3: waits for the oldest `count` buckets on their way (all by default) and frees their memory in the
    /// model's buffer.
    private func landFlights(_ count: Int? = nil, backwardEnded: Double = .infinity) throws {
        for flight in flights.prefix(count ?? flights.count) {
            try flight.request.wait()
            self.count(flight.request, backwardEnded: backwardEnded)
            model.gradients.release(flight.bucket)
        }
        flights.removeFirst(count ?? flights.count)
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

    /// ZeRO-2/3: averages one micro-batch's bucket into the shard, which already holds the earlier micro-batches'
    /// average of this rank's part of it. A reduce-scatter overwrites its destination, so this rank first adds N ×
    /// that into its own part of the bucket: the group's average then comes out as the running sum. When the
    /// micro-batch's last bucket has started, all of them are waited for (the next passes write these spans);
    /// before that, only those beyond `inFlightBuckets`.
    private func startMicroBatch(bucket index: Int) {
        let bucket = buckets[index], own = shard.range, part = bucket.clamped(to: own)
        let gradients = model.gradients.pointer
        let offset = part.isEmpty ? 0 : part.lowerBound - own.lowerBound
        if !part.isEmpty {
            axpy(Float(communicator.size), UnsafePointer(shard.gradients + offset), gradients + part.lowerBound, part.count)
        }
        let request = communicator.startReduceScatter(
            UnsafePointer(gradients + bucket.lowerBound), into: shard.gradients + offset,
            counts: shard.ranges.map { bucket.clamped(to: $0).count }, .average,
            label: "\(label): gradient bucket \(index + 1) of \(buckets.count)")
        flights.append((request, bucket))
        startedThisMicroBatch += 1
        let finished = startedThisMicroBatch == buckets.count
        if finished { startedThisMicroBatch = 0 }
        shard.communicator.stoppingJobOnFailure(of: "data-parallel group") {
            try landFlights(finished ? nil : max(0, flights.count - Self.inFlightBuckets))
        }
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
