import KeelComm
import KeelCore
import KeelModel

/// ZeRO stage 3 (PyTorch's FSDP) for one model: between passes each rank of the data-parallel group holds only
/// its range of the parameters (`OptimizerShard`), the rest of the model's buffer handed back to the operating
/// system. Just before a part runs its spans are all-gathered in place — the next part's gather already started
/// while this one computes — and just after, everything outside this rank's range is freed again. So a rank
/// holds its shard plus about two parts' parameters at a time, and the parts run unchanged on their offsets.
public final class ShardedParameters: ParameterResidency {
    public let shard: OptimizerShard
    /// Gathers started ahead of the part that reads them.
    private var prefetched: [[Range<Int>]: [CommunicationRequest]] = [:]
    /// Names the step in errors.
    public var label = ""

    /// Shards `shard.model`'s parameters: frees everything outside this rank's range (which must already hold its
    /// values) and, from now on, gathers each part's spans when the model asks (`model.residency`).
    public init(shard: OptimizerShard) {
        precondition(shard.shardsParameters, "ShardedParameters needs ZeRO stage 3 over more than one rank")
        self.shard = shard
        shard.releaseParameters(0..<shard.model.parameters.count)
    }

    public func acquire(_ spans: [Range<Int>], upcoming: [Range<Int>]?) {
        let requests = prefetched.removeValue(forKey: spans) ?? start(spans)
        if let upcoming, prefetched[upcoming] == nil { prefetched[upcoming] = start(upcoming) }
        shard.communicator.stoppingJobOnFailure(of: "data-parallel group") {
            for request in requests { try request.wait() }
        }
    }

    public func release(_ spans: [Range<Int>]) {
        for span in spans { shard.releaseParameters(span) }
    }

    private func start(_ spans: [Range<Int>]) -> [CommunicationRequest] {
        spans.map { shard.startGathering($0, label: "\(label): parameters \($0.lowerBound)..<\($0.upperBound)") }
    }
}
