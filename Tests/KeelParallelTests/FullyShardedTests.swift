#if canImport(Glibc)
import Glibc
#endif
import KeelComm
import KeelCore
import KeelModel
import XCTest
@testable import KeelParallel

/// ZeRO-2 and ZeRO-3 over ranks as threads: the pieces they are built from (memory handed back page by page, a
/// shard initialised on its own) and a model trained with sharded gradients, and with sharded parameters, is the
/// whole model — its loss, and every rank's averaged gradients of its range — while the full buffers are freed.
final class FullyShardedTests: XCTestCase {
    private let config = ModelConfig(architecture: .gpt2, vocabSize: 40, layers: 3, heads: 2, width: 16, hiddenWidth: 40,
                                     maxLength: 8)

    /// `release` zeroes exactly its range and gives the pages wholly inside it back to the operating system.
    func testReleaseZeroesTheRangeAndReturnsItsPages() throws {
        let buffer = FloatBuffer(count: 1 << 20)
        buffer.pointer.update(repeating: 1, count: buffer.count)
        let released = 1000..<700_000
        buffer.release(released)
        let page = Int(sysconf(Int32(_SC_PAGESIZE))), floatsPerPage = page / 4
        func resident(_ range: Range<Int>) -> [Bool] {  // per page of `range` (page-aligned), from mincore(2)
            var vector = [UInt8](repeating: 0, count: range.count / floatsPerPage)
            XCTAssertEqual(mincore(UnsafeMutableRawPointer(buffer.pointer + range.lowerBound), range.count * 4, &vector), 0)
            return vector.map { $0 & 1 == 1 }
        }
        let inside = (released.lowerBound / floatsPerPage + 1) * floatsPerPage..<(released.upperBound / floatsPerPage * floatsPerPage)
        XCTAssertTrue(resident(inside).allSatisfy { !$0 }, "released pages are still resident")
        XCTAssertTrue(resident(0..<floatsPerPage).allSatisfy { $0 }, "the first page holds kept values")
        // (Checked after mincore: reading a released page maps the shared zero page, which mincore counts.)
        XCTAssertEqual(buffer.pointer[released.lowerBound - 1], 1)
        XCTAssertEqual(buffer.pointer[released.upperBound], 1)
        XCTAssertTrue(UnsafeBufferPointer(start: buffer.pointer + released.lowerBound, count: released.count).allSatisfy { $0 == 0 })
    }

    /// A rank's share initialised alone holds what the whole model's buffer holds there, and nothing else.
    func testShardInitialisationIsTheWholeModelsValues() throws {
        let whole = try Transformer(config: config, seed: 9)
        let piece = try Transformer(config: config, seed: 9, initialized: false)
        XCTAssertTrue(piece.parameters.toArray().allSatisfy { $0 == 0 })
        let range = 123..<(whole.table.count - 777)
        piece.table.initialize(piece.parameters, seed: 9, only: range)
        let values = piece.parameters.toArray(), expected = whole.parameters.toArray()
        XCTAssertEqual(Array(values[range]), Array(expected[range]))
        XCTAssertTrue(values[..<range.lowerBound].allSatisfy { $0 == 0 } && values[range.upperBound...].allSatisfy { $0 == 0 })
    }

    func testShardedGradientsAreTheAveragedGradients() throws {
        try checkAgainstWholeModel(stage: 2)
    }

    func testShardedParametersTrainTheWholeModel() throws {
        try checkAgainstWholeModel(stage: 3)
    }

    /// Each of `size` ranks runs two micro-batches of its own tokens through a model sharded at `stage`; the
    /// reference is one whole model over every rank's micro-batches, its gradients divided by the ranks.
    private func checkAgainstWholeModel(stage: Int) throws {
        let batch = 2, length = 8, microBatches = 2, config = self.config
        for size in [2, 4] {
            var random = RandomStream(seed: 20)
            let data = (0..<size * microBatches).map { _ in
                (inputs: (0..<(batch * length)).map { _ in Int32(random.nextInt(below: config.vocabSize)) },
                 targets: (0..<(batch * length)).map { _ in Int32(random.nextInt(below: config.vocabSize)) })
            }
            let reference = try Transformer(config: config, seed: 5)
            reference.gradients.zero()
            var losses: [Float] = []
            for tokens in data {
                losses.append(Self.pass(reference, tokens, batch: batch, length: length, lossScale: 1 / Float(microBatches)))
            }
            let expected = reference.gradients.toArray().map { $0 / Float(size) }
            let ranks = try ThreadCommunicator.run(size: size) { group -> (losses: [Float], gradients: [Float], range: Range<Int>, model: Transformer) in
                let model = try Transformer(config: config, seed: 5, initialized: stage < 3)
                let shard = OptimizerShard(model: model, communicator: group, stage: stage)
                if stage == 3 {
                    model.table.initialize(model.parameters, seed: 5, only: shard.range)
                    model.residency = ShardedParameters(shard: shard)
                }
                // Small buckets, so that several are in flight at once.
                let parallel = DataParallel(shard: shard, bucketElements: 300)
                model.gradients.release(0..<model.gradients.count)
                parallel.prepare(microBatches: microBatches, label: "step 1")
                let losses = (0..<microBatches).map {
                    Self.pass(model, data[group.rank * microBatches + $0], batch: batch, length: length,
                              lossScale: 1 / Float(microBatches))
                }
                try parallel.synchronizeGradients()
                return (losses, Array(UnsafeBufferPointer(start: shard.gradients, count: shard.range.count)), shard.range, model)
            }
            for (rank, result) in ranks.enumerated() {
                let name = "ZeRO-\(stage), rank \(rank) of \(size)"
                XCTAssertEqual(result.losses, Array(losses[(rank * microBatches)..<((rank + 1) * microBatches)]), name)
                let reference = expected[result.range], scale = expected.map(abs).max()!
                let worst = zip(result.gradients, reference).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(name): averaged gradients of its range")
                XCTAssertTrue(result.model.gradients.toArray().allSatisfy { $0 == 0 }, "\(name): the gradient buffer was not freed")
                if stage == 3 {
                    let parameters = result.model.parameters.toArray(), whole = reference.indices
                    XCTAssertTrue(parameters.indices.allSatisfy { whole.contains($0) || parameters[$0] == 0 },
                                  "\(name): parameters outside its range were kept")
                }
            }
        }
    }

    /// One training micro-batch: forward with `lossScale`, backward; returns the loss.
    private static func pass(_ model: Transformer, _ tokens: (inputs: [Int32], targets: [Int32]), batch: Int,
                             length: Int, lossScale: Float) -> Float {
        let loss = tokens.inputs.withUnsafeBufferPointer { i in
            tokens.targets.withUnsafeBufferPointer { t in
                model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length, lossScale: lossScale)
            }
        }
        model.backward()
        return loss
    }
}
