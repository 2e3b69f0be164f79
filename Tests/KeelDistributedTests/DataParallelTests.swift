import KeelCore
import KeelModel
import XCTest
@testable import KeelDistributed

/// Data parallelism on one process (the multi-process behaviour is tested under mpirun by
/// Tests/CLI/mpi_tests.sh): bucket planning and the bookkeeping that launches each bucket.
final class DataParallelTests: XCTestCase {
    private func model() throws -> Transformer {
        try Transformer(config: ModelConfig(architecture: .llama, vocabSize: 31, layers: 3, heads: 2, kvHeads: 1,
                                            width: 16, hiddenWidth: 24, maxLength: 8), seed: 3)
    }

    func testBucketsTileTheFlatBuffer() throws {
        let model = try model()
        let parallel = DataParallel(model: model, communicator: SingleProcessCommunicator(), bucketElements: 1000,
                                    shardOptimizerState: true)
        XCTAssertEqual(parallel.buckets.count, (model.table.count + 999) / 1000)
        XCTAssertEqual(parallel.buckets.map(\.count).reduce(0, +), model.table.count)
        XCTAssertTrue(parallel.buckets.dropLast().allSatisfy { $0.count == 1000 })
        // One rank: ZeRO has nothing to shard, so the optimizer sees the whole buffer.
        XCTAssertFalse(parallel.shardsOptimizerState)
        XCTAssertEqual(parallel.shard, 0..<model.table.count)
    }

    func testEveryBucketIsCommunicatedAfterTheLastMicroBatch() throws {
        let model = try model()
        let parallel = DataParallel(model: model, communicator: SingleProcessCommunicator(), bucketElements: 777,
                                    shardOptimizerState: false)
        let inputs: [Int32] = (0..<16).map { Int32($0 * 5 % 31) }, targets: [Int32] = (0..<16).map { Int32($0 * 3 % 31) }
        parallel.prepareLastMicroBatch(label: "step 1")
        inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                _ = model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: 2, length: 8, lossScale: 1)
            }
        }
        model.backward()
        try parallel.synchronizeGradients()
        XCTAssertEqual(parallel.statistics.buckets, parallel.buckets.count)
        XCTAssertEqual(parallel.statistics.startedDuringBackward, parallel.buckets.count)
        XCTAssertNil(model.gradientsReady, "the hook must be disarmed for the next micro-batches")
    }
}
