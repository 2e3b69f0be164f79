import Foundation
import KeelCore
@testable import KeelTrain
import XCTest

/// What a training run holds in memory: the state it needs refused before anything is allocated where the machine
/// cannot hold it, and validation held to a bounded number of micro-batches at a time.
final class TrainingFootprintTests: XCTestCase {
    /// The state's bytes as ZeRO shards them (hand-counted: 1,000 parameters on 4 replicas, 4 bytes each of weights and
    /// gradients and 8 of moments per copy), and a machine that cannot hold them refused, one that has too little free
    /// warned about.
    func testTrainingStateThatDoesNotFitIsRefused() throws {
        XCTAssertEqual((0...3).map { TrainingMemory.stateBytes(parameters: 1000, replicas: 4, zeroStage: $0) },
                       [64_000, 40_000, 28_000, 16_000])
        let limit = MemoryLimit(total: 30_000, available: 20_000, source: "a test machine's memory")
        XCTAssertNil(TrainingMemory.verdict(bytes: 16_000, parameters: 1000, processesHere: 4, limit: limit))
        let warned = try XCTUnwrap(TrainingMemory.verdict(bytes: 28_000, parameters: 1000, processesHere: 4, limit: limit))
        XCTAssertFalse(warned.isError)
        XCTAssertTrue(warned.message.contains("more than is free now"), warned.message)
        let refused = try XCTUnwrap(TrainingMemory.verdict(bytes: 40_000, parameters: 1000, processesHere: 4, limit: limit))
        XCTAssertTrue(refused.isError)
        XCTAssertTrue(refused.message.contains("more than a test machine's memory can hold"), refused.message)
        // On this machine: a model of 3·10¹¹ parameters is refused before anything is allocated, naming the cause.
        let fixture = try TrainFixture()
        let huge = try fixture.config(["model.d_model=16384", "model.n_head=128", "model.n_layer=96"])
        assertKeelError("the weights, gradients and AdamW moments alone take at least", "activations come on top",
                        rulesOutRestart: true) {
            _ = try Trainer(config: huge, output: fixture.root.appendingPathComponent("huge"), resume: false) { _ in }
        }
    }

    /// Validation over more micro-batches than one pass holds goes pass by pass, so the ids held at once stay small
    /// however many windows `eval_batches` asks for — to the same loss, to the bit, as one pass over them all (5
    /// micro-batches in passes of 1, 2 and 3).
    func testValidationInPassesGivesTheSameLoss() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.batch_size=2", "training.eval_batches=5"])
        let trainer = try Trainer(config: config, output: fixture.root.appendingPathComponent("run"), resume: false) { _ in }
        let whole = try trainer.validationLoss()
        XCTAssertGreaterThan(trainer.evaluationPass, 5)
        for pass in [1, 2, 3] {
            trainer.evaluationPass = pass
            XCTAssertEqual(try trainer.validationLoss(), whole, "in passes of \(pass) micro-batches")
        }
    }
}
