import KeelCore
import KeelModel
import XCTest
import KeelComm
@testable import KeelParallel

/// Data parallelism on one process (the multi-process behaviour is tested under mpirun by
/// Tests/CLI/mpi_tests.sh): bucket planning and the bookkeeping that launches each bucket.
final class DataParallelTests: XCTestCase {
    private func model() throws -> Transformer {
        try Transformer(config: ModelConfig(architecture: .llama, vocabSize: 31, layers: 3, heads: 2, kvHeads: 1,
                                            width: 16, hiddenWidth: 24, maxLength: 8), seed: 3)
    }

    func testBucketsTileTheFlatBuffer() throws {
        let model = try model()
        let shard = OptimizerShard(model: model, communicator: SingleProcessCommunicator(), stage: 1)
        let parallel = DataParallel(shard: shard, bucketElements: 1000)
        XCTAssertEqual(parallel.buckets.count, (model.table.count + 999) / 1000)
        XCTAssertEqual(parallel.buckets.map(\.count).reduce(0, +), model.table.count)
        XCTAssertTrue(parallel.buckets.dropLast().allSatisfy { $0.count == 1000 })
        // One rank: ZeRO has nothing to shard, so the optimizer sees the whole buffer.
        XCTAssertFalse(shard.isSharded)
        XCTAssertEqual(shard.range, 0..<model.table.count)
    }

    /// Each bucket is handed to the communicator while the backward pass is still running: when a bucket
    /// that does not hold the embeddings starts, the embeddings' gradient (the last the backward pass
    /// computes) still holds what the earlier micro-batches left. Armed once for the whole step, only the
    /// last micro-batch communicates, each bucket once.
    func testBucketsStartDuringTheBackwardPassOfTheLastMicroBatchOnly() throws {
        let model = try model()
        let embedding = model.table.entries[0].range
        var earlierMicroBatches: [Float] = []
        let communicator = RecordingCommunicator { Array(model.gradients.toArray()[embedding]) == earlierMicroBatches }
        let parallel = DataParallel(shard: OptimizerShard(model: model, communicator: communicator, stage: 0), bucketElements: 777)
        let inputs: [Int32] = (0..<16).map { Int32($0 * 5 % 31) }, targets: [Int32] = (0..<16).map { Int32($0 * 3 % 31) }
        model.gradients.zero()
        parallel.prepare(microBatches: 3, label: "step 1")
        for micro in 0..<3 {
            inputs.withUnsafeBufferPointer { i in
                targets.withUnsafeBufferPointer { t in
                    _ = model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: 2, length: 8, lossScale: 1)
                }
            }
            model.backward()
            if micro < 2 { XCTAssertEqual(communicator.started.count, 0, "micro-batch \(micro) communicated") }
            if micro == 1 { earlierMicroBatches = Array(model.gradients.toArray()[embedding]) }
        }
        try parallel.synchronizeGradients()
        XCTAssertEqual(communicator.started.map(\.label).sorted(),
                       (1...parallel.buckets.count).map { "step 1: gradient bucket \($0) of \(parallel.buckets.count)" }.sorted())
        let later = communicator.started.filter { started in
            let index = Int(started.label.split(separator: " ")[4])! - 1
            return !parallel.buckets[index].overlaps(embedding)
        }
        XCTAssertGreaterThan(later.count, 2)
        for started in later { XCTAssertTrue(started.observation, "\(started.label) started after the backward pass had ended") }
        XCTAssertEqual(parallel.statistics.buckets, parallel.buckets.count)
        XCTAssertEqual(parallel.statistics.startedDuringBackward, parallel.buckets.count)
        XCTAssertNil(model.gradientsReady, "the hook must be disarmed for the next micro-batches")
    }

    /// A span the model's reports leave out (a pipeline's tied embedding, completed after the passes) holds its
    /// buckets back until `finish` — and only those buckets.
    func testFinishReleasesTheBucketsOfAHeldBackSpan() throws {
        let model = try model()
        let held = model.table.entries[0].range
        let communicator = RecordingCommunicator { true }
        let parallel = DataParallel(shard: OptimizerShard(model: model, communicator: communicator, stage: 0), bucketElements: 100)
        let inputs: [Int32] = (0..<16).map { Int32($0 * 5 % 31) }, targets: [Int32] = (0..<16).map { Int32($0 * 3 % 31) }
        model.gradients.zero()
        parallel.prepare(microBatches: 2, label: "step 1")
        let report = model.gradientsReady!
        model.gradientsReady = { span in
            if span.lowerBound < held.upperBound { report(held.upperBound..<max(held.upperBound, span.upperBound)) } else { report(span) }
        }
        for _ in 0..<2 {
            inputs.withUnsafeBufferPointer { i in
                targets.withUnsafeBufferPointer { t in
                    _ = model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: 2, length: 8, lossScale: 1)
                }
            }
            model.backward()
        }
        let waiting = parallel.buckets.filter { $0.overlaps(held) }.count
        XCTAssertGreaterThan(waiting, 0)
        XCTAssertEqual(communicator.started.count, parallel.buckets.count - waiting)
        parallel.finish(held)
        XCTAssertEqual(communicator.started.count, parallel.buckets.count)
        try parallel.synchronizeGradients()
    }

    /// ZeRO-2/3 cut the model into at least 16 buckets, whatever bucket size is configured; ZeRO-1 keeps it.
    func testShardedGradientsUseAtLeastSixteenBuckets() throws {
        let model = try model(), group = ThreadCommunicator.group(size: 2)[0]
        let sharded = DataParallel(shard: OptimizerShard(model: model, communicator: group, stage: 2), bucketElements: 1 << 30)
        XCTAssertGreaterThanOrEqual(sharded.buckets.count, 16)
        XCTAssertEqual(sharded.buckets.map(\.count).reduce(0, +), model.table.count)
        let plain = DataParallel(shard: OptimizerShard(model: model, communicator: group, stage: 1), bucketElements: 1 << 30)
        XCTAssertEqual(plain.buckets.count, 1)
    }

    /// The gradient norm's share of a shard leaves out exactly the excluded span (a tied copy).
    func testShardSumOfSquaresLeavesOutTheExcludedSpan() throws {
        let model = try model()
        let shard = OptimizerShard(model: model, communicator: SingleProcessCommunicator(), stage: 0)
        for i in 0..<model.table.count { model.gradients.pointer[i] = Float(i % 7) - 3 }
        let values = model.gradients.toArray().map { Double($0) * Double($0) }
        XCTAssertEqual(shard.sumOfSquares(), values.reduce(0, +), accuracy: 1e-9)
        let excluded = 40..<95
        XCTAssertEqual(shard.sumOfSquares(excluding: [excluded]),
                       values.reduce(0, +) - values[excluded].reduce(0, +), accuracy: 1e-9)
        // Several spans, unordered and overlapping.
        XCTAssertEqual(shard.sumOfSquares(excluding: [200..<260, 0..<10, 240..<300]),
                       values.reduce(0, +) - values[0..<10].reduce(0, +) - values[200..<300].reduce(0, +), accuracy: 1e-9)
    }
}

/// A single-process communicator that records every operation started, with what `observe` saw at that moment.
private final class RecordingCommunicator: Communicator, @unchecked Sendable {
    let rank = 0, size = 1, timeout = Double.infinity
    private let inner = SingleProcessCommunicator()
    private let observe: () -> Bool
    private(set) var started: [(label: String, observation: Bool)] = []

    init(observe: @escaping () -> Bool) {
        self.observe = observe
    }

    var startedOperations: Int { started.count }
    var communicatedBytes: Int { inner.communicatedBytes }

    func start(_ operation: CommunicationOperation) -> CommunicationRequest {
        started.append((operation.label, observe()))
        return inner.start(operation)
    }

    func split(color: Int, key: Int) throws -> any Communicator { self }
    func abort(code: Int32) -> Never { inner.abort(code: code) }
}
