import Foundation
import KeelModel
import KeelParallel
import KeelTrain
import XCTest

/// The `[parallel]` section: defaults, the `micro_batches` alias, stage boundaries, and errors that name the key
/// and say what must divide what.
final class ParallelConfigTests: XCTestCase {
    func testDefaultsAreOneProcessWithOneForwardOneBackward() throws {
        let config = try TrainFixture().config()
        XCTAssertEqual(config.parallel.pipeline, 1)
        XCTAssertNil(config.parallel.data)
        XCTAssertEqual(config.parallel.schedule, .oneForwardOneBackward)
        XCTAssertEqual(config.parallel.virtualStages, 1)
        XCTAssertEqual(config.parallel.stageBalance, .compute)
        XCTAssertEqual(try config.parallel.dataParallelSize(processes: 4), 4)
        XCTAssertEqual(try config.parallel.stageLayers(config.model, sequenceLength: 16), [0..<2])
    }

    func testSettingsAreReadAndMicroBatchesIsGradientAccumulation() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["model.n_layer=8", "parallel.pp=2", "parallel.dp=3",
                                         "parallel.schedule=\"interleaved\"", "parallel.micro_batches=6"])
        XCTAssertEqual(config.parallel.pipeline, 2)
        XCTAssertEqual(config.parallel.data, 3)
        XCTAssertEqual(config.parallel.schedule, .interleaved)
        XCTAssertEqual(config.parallel.virtualStages, 2, "interleaved defaults to two chunks per rank")
        XCTAssertEqual(config.parallel.stages, 4)
        XCTAssertEqual(config.training.gradientAccumulation, 6)
        XCTAssertEqual(try config.parallel.dataParallelSize(processes: 6), 3)
        // Without boundaries the stages are balanced by compute (StagePartitionTests checks the cut).
        let balanced = try config.parallel.stageLayers(config.model, sequenceLength: 16)
        XCTAssertEqual(balanced.count, 4)
        XCTAssertEqual(balanced.first?.lowerBound, 0)
        XCTAssertEqual(balanced.last?.upperBound, 8)
        let resolved = try fixture.config(["model.n_layer=8", "parallel.pp=3", "parallel.stage_boundaries=[1, 5]",
                                           "parallel.schedule=\"gpipe\""])
        XCTAssertEqual(try resolved.parallel.stageLayers(resolved.model, sequenceLength: 16), [0..<1, 1..<5, 5..<8])
    }

    /// What the processes of a job compare: a key set to its default means what leaving it out does (one machine's
    /// config spelling out the defaults was refused as different settings), and anything else differs.
    func testEffectiveSettingsAreTheSameWhetherADefaultIsGivenOrLeftOut() throws {
        let fixture = try TrainFixture()
        let plain = try fixture.config([], arch: "llama")
        let spelledOut = try fixture.config(["training.beta1=0.9", "training.weight_decay=0.1", "distributed.bucket_mb=25",
                                             "checkpoint.async=true", "training.precision=\"fp32\"", "parallel.tp=1",
                                             "parallel.micro_batches=1", "model.n_kv_head=2",
                                             "model.d_ff=\(plain.model.hiddenWidth)", "model.tie_embeddings=\(plain.model.tiedEmbeddings)",
                                             "distributed.timeout_s=60"], arch: "llama")
        XCTAssertNotEqual(plain.resolvedTOML, spelledOut.resolvedTOML)
        XCTAssertEqual(plain.effectiveSettings, spelledOut.effectiveSettings)
        XCTAssertTrue(plain.effectiveSettings.contains("training.beta1 = 0.9\n"), plain.effectiveSettings)
        for change in ["training.beta1=0.91", "training.min_lr=3e-5", "parallel.micro_batches=2", "model.n_kv_head=1",
                       "distributed.bucket_mb=26", "checkpoint.async=false"] {
            XCTAssertNotEqual(try fixture.config([change], arch: "llama").effectiveSettings, plain.effectiveSettings, change)
        }
    }

    /// What a resume names as changed: each key whose value differs, defaults included on both sides, and nothing
    /// for a run read back from its own saved settings or one that spells a default out.
    func testChangedSettingsAreNamed() throws {
        let fixture = try TrainFixture()
        let plain = try fixture.config([], arch: "llama")
        let saved = try TrainConfig(toml: plain.resolvedTOML, origin: "saved", requiresData: false)
        XCTAssertEqual(plain.changes(since: saved), [])
        XCTAssertEqual(try fixture.config(["training.beta1=0.9"], arch: "llama").changes(since: plain), [])
        // min_lr follows lr (a tenth of it) where not given: its change is named too.
        let changed = try fixture.config(["training.lr=0.5", "training.beta1=0.5", "training.batch_size=8"], arch: "llama")
        XCTAssertEqual(changed.changes(since: saved),
                       ["training.batch_size \(plain.training.batchSize) → 8", "training.beta1 0.9 → 0.5",
                        "training.lr \(plain.training.learningRate) → 0.5", "training.min_lr \(plain.training.minLearningRate) → 0.05"])
    }

    func testParallelErrorsNameTheKey() throws {
        let fixture = try TrainFixture()
        assertKeelError("parallel.pp must be positive") { _ = try fixture.config(["parallel.pp=0"]) }
        assertKeelError("parallel.dp must be positive") { _ = try fixture.config(["parallel.dp=0"]) }
        assertKeelError("parallel.schedule", "1f1b") { _ = try fixture.config(["parallel.schedule=\"pipedream\""]) }
        assertKeelError("parallel.stage_balance must be one of \"compute\", \"parameters\", \"layers\" (got \"flops\")") {
            _ = try fixture.config(["parallel.stage_balance=\"flops\""])
        }
        XCTAssertEqual(try fixture.config(["parallel.stage_balance=\"parameters\""]).parallel.stageBalance, .parameters)
        assertKeelError("parallel.virtual_stages must be 1 with the 1f1b schedule") {
            _ = try fixture.config(["parallel.pp=2", "parallel.virtual_stages=2"])
        }
        assertKeelError("parallel.pp must be at least 2 for the interleaved schedule") {
            _ = try fixture.config(["parallel.schedule=\"interleaved\""])
        }
        assertKeelError("parallel.virtual_stages must be at least 2 with the interleaved schedule") {
            _ = try fixture.config(["parallel.pp=2", "parallel.schedule=\"interleaved\"", "parallel.virtual_stages=1"])
        }
        assertKeelError("parallel.micro_batches (3) must be a multiple of parallel.pp (2)") {
            _ = try fixture.config(["model.n_layer=4", "parallel.pp=2", "parallel.schedule=\"interleaved\"",
                                    "parallel.micro_batches=3"])
        }
        assertKeelError("parallel.pp", "4 stages need at least as many blocks", "model.n_layer is 2") {
            _ = try fixture.config(["parallel.pp=4"])
        }
        assertKeelError("parallel.micro_batches", "training.grad_accum") {
            _ = try fixture.config(["parallel.micro_batches=4", "training.grad_accum=2"])
        }
        assertKeelError("parallel.stage_boundaries needs pp × virtual_stages − 1 = 1 values (got 2)") {
            _ = try fixture.config(["parallel.pp=2", "parallel.stage_boundaries=[1, 1]"])
        }
        assertKeelError("parallel.stage_boundaries [2]", "must rise strictly") {
            _ = try fixture.config(["parallel.pp=2", "parallel.stage_boundaries=[2]"])
        }
        assertKeelError("parallel.tp must be positive") { _ = try fixture.config(["parallel.tp=0"]) }
        // The fixture has 2 heads, d_ff 128 and the byte vocabulary (257).
        assertKeelError("parallel.tp (4) must divide model.n_head (2)") { _ = try fixture.config(["parallel.tp=4"]) }
        // The tokenizer's 257 ids at every tensor-parallel size (the ranks' rows then differ by one), not padded: a
        // padded id would add a logit to the loss that one process does not have. A size given explicitly is kept.
        for overrides in [[], ["parallel.tp=2"], ["parallel.tp=4", "model.n_head=4"]] {
            let config = try fixture.config(overrides)
            XCTAssertEqual(config.model.vocabSize, 257, "\(overrides)")
            XCTAssertFalse(config.resolvedTOML.contains("vocab_size"), config.resolvedTOML)
        }
        XCTAssertEqual(try fixture.config(["parallel.tp=2", "model.vocab_size=300"]).model.vocabSize, 300)
        // A string with control characters is written as TOML can read it back (a raw carriage return made the
        // run's config.toml unreadable, and --resume with it).
        let prompt = try fixture.config(["sample.prompt=\"Hi\\r\\n\\u001B[1m\\t\\\"q\\\" \\\\ \\u007F\""])
        XCTAssertEqual(prompt.sample.prompt, "Hi\r\n\u{1B}[1m\t\"q\" \\ \u{7F}")
        let written = fixture.root.appendingPathComponent("prompt.toml")
        try Data(prompt.resolvedTOML.utf8).write(to: written)
        XCTAssertEqual(try TrainConfig.load(path: written.path, overrides: []).sample.prompt, prompt.sample.prompt)
        let tensor = try fixture.config(["parallel.tp=2", "model.vocab_size=258", "parallel.pp=2"])
        XCTAssertEqual(tensor.parallel.tensor, 2)
        XCTAssertEqual(try tensor.parallel.dataParallelSize(processes: 8), 2)
        XCTAssertFalse(tensor.parallel.sequenceParallel, "sequence parallelism is off unless asked for")
        // More tensor ranks than key/value heads share them; a tp that neither divides nor is a multiple is refused.
        XCTAssertEqual(try fixture.config(["model.arch=\"llama\"", "parallel.tp=4", "model.n_head=4", "model.n_kv_head=1", "model.vocab_size=260"])
            .parallel.tensor, 4)
        assertKeelError("parallel.tp (2) must divide model.n_kv_head (3) or be a multiple of it") {
            _ = try fixture.config(["model.arch=\"llama\"", "parallel.tp=2", "model.d_model=48", "model.n_head=6", "model.n_kv_head=3",
                                    "model.vocab_size=258"])
        }
        XCTAssertTrue(try fixture.config(["parallel.tp=2", "model.vocab_size=258", "parallel.sequence_parallel=true"])
            .parallel.sequenceParallel)
        assertKeelError("parallel.sequence_parallel needs tensor parallelism (parallel.tp > 1)") {
            _ = try fixture.config(["parallel.sequence_parallel=true"])
        }
        assertKeelError("parallel.sequence_parallel needs training.seq_len (15) divisible by parallel.tp (2)") {
            _ = try fixture.config(["parallel.tp=2", "model.vocab_size=258", "parallel.sequence_parallel=true",
                                    "training.seq_len=15"])
        }
        assertKeelError("parallel.pp × parallel.tp (2 × 2) must divide the number of processes (6)") {
            _ = try tensor.parallel.dataParallelSize(processes: 6)
        }
        let config = try fixture.config(["parallel.pp=2"])
        assertKeelError("parallel.pp (2) must divide the number of processes (3)") {
            _ = try config.parallel.dataParallelSize(processes: 3)
        }
        assertKeelError("parallel.pp × parallel.dp = 2 × 3 = 6 must equal the number of processes (4)") {
            _ = try fixture.config(["parallel.pp=2", "parallel.dp=3"]).parallel.dataParallelSize(processes: 4)
        }
        // A single process cannot hold a two-stage layout.
        assertKeelError("parallel.pp (2) must divide the number of processes (1)") {
            _ = try fixture.run(config, in: "two-stages")
        }
    }
}
