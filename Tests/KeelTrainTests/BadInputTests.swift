import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelKernels
import KeelTrain
import XCTest

/// Every kind of bad input gives one clear error naming the problem, and leaves nothing half-written.
final class BadInputTests: XCTestCase {
    func testMissingDataFile() throws {
        let fixture = try TrainFixture()
        let missing = fixture.root.appendingPathComponent("nope.txt").path
        assertKeelError("no such file or directory", missing) {
            _ = try fixture.run(try fixture.config(["data.paths=[\"\(missing)\"]"]), in: "run")
        }
    }

    func testEmptyCorpus() throws {
        let fixture = try TrainFixture()
        let empty = fixture.root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try Data().write(to: empty.appendingPathComponent("a.txt"))
        assertKeelError("corpus is empty") {
            _ = try fixture.run(try fixture.config(["data.paths=[\"\(empty.path)\"]"]), in: "run")
        }
    }

    /// An llm.c token shard holding ids `tokens`.
    private func writeShard(_ tokens: [UInt16], to url: URL, claimedCount: Int? = nil) throws {
        var header = [Int32](repeating: 0, count: 256)
        header[0] = 20_240_520
        header[1] = 1
        header[2] = Int32(claimedCount ?? tokens.count)
        var data = header.withUnsafeBytes { Data($0) }
        tokens.withUnsafeBytes { data.append(contentsOf: $0) }
        try data.write(to: url)
    }

    func testTokenOutsideVocabulary() throws {
        let fixture = try TrainFixture()
        let shard = fixture.root.appendingPathComponent("tokens.bin")
        var tokens = (0..<500).map { UInt16($0 % 200) }
        tokens[321] = 300
        try writeShard(tokens, to: shard)
        assertKeelError("token id 300", "position 321", "vocab_size 257") {
            _ = try fixture.run(try fixture.config(["data.paths=[\"\(shard.path)\"]"]), in: "run")
        }
    }

    func testShardWhoseHeaderDisagreesWithItsSize() throws {
        let fixture = try TrainFixture()
        let shard = fixture.root.appendingPathComponent("tokens.bin")
        try writeShard((0..<500).map { UInt16($0 % 200) }, to: shard, claimedCount: 600)
        assertKeelError(shard.path, "header says 600 tokens") {
            _ = try fixture.run(try fixture.config(["data.paths=[\"\(shard.path)\"]"]), in: "run")
        }
    }

    /// bf16 runs on every CPU (on the portable engine where there is no faster one); other names are refused.
    func testBFloat16PrecisionIsAcceptedOnEveryCPU() throws {
        let fixture = try TrainFixture()
        XCTAssertEqual(try fixture.config(["training.precision=\"bf16\""]).training.precision, .bfloat16)
        assertKeelError("training.precision must be \"fp32\" or \"bf16\"", "fp16") {
            _ = try fixture.config(["training.precision=\"fp16\""])
        }
    }

    func testConfigErrorsNameTheKey() throws {
        let fixture = try TrainFixture()
        assertKeelError("unknown key 'training.stepz'", "did you mean 'training.steps'") {
            _ = try fixture.config(["training.stepz=3"])
        }
        assertKeelError("training.steps must be an integer") { _ = try fixture.config(["training.steps=\"ten\""]) }
        assertKeelError("model.n_head", "must divide d_model") { _ = try fixture.config(["model.n_head=5"]) }
        assertKeelError("model.n_kv_head") { _ = try fixture.config(["model.n_kv_head=3"], arch: "llama") }
        assertKeelError("training.lr must be a positive number") { _ = try fixture.config(["training.lr=-1"]) }
        // Counts whose products overflow, or that no machine could hold, are refused by name before any allocation.
        assertKeelError("training.batch_size (4611686018427387904) × training.seq_len") {
            _ = try fixture.config(["training.batch_size=4611686018427387904"])
        }
        assertKeelError("training.grad_accum (4611686018427387904) × training.batch_size × training.seq_len") {
            _ = try fixture.config(["training.grad_accum=4611686018427387904"])
        }
        assertKeelError("sample.tokens must be from 0 to 1048576") { _ = try fixture.config(["sample.tokens=9999999999999"]) }
        assertKeelError("sample.temperature must be a number that is not negative (got inf)") {
            _ = try fixture.config(["sample.temperature=inf"])
        }
        // Past Float's range the rate would be infinite in the step, every weight NaN after it.
        assertKeelError("training.lr must be a positive number below") { _ = try fixture.config(["training.lr=1e39"]) }
        assertKeelError("training.grad_clip must be a number that is not negative, 0 for none (got nan)") {
            _ = try fixture.config(["training.grad_clip=nan"])
        }
        assertKeelError("training.seq_len") { _ = try fixture.config(["training.seq_len=100"]) }
        assertKeelError("model.arch") { _ = try fixture.config(["model.arch=\"bert\""]) }
        // 2²² × 16 × 32 = 2³¹ elements of activations, one more than an MPI message holds.
        assertKeelError("training.batch_size (4194304) × training.seq_len (16) × model.d_model (32)", "at most 2147483647 elements") {
            _ = try fixture.config(["parallel.pp=2", "training.batch_size=4194304"])
        }
        XCTAssertNoThrow(try fixture.config(["parallel.pp=2", "training.batch_size=4194303"]))
        assertKeelError("--set training.steps", "section.key=value") { _ = try fixture.config(["training.steps"]) }
        assertKeelError("distributed.zero_stage must be 0", "or 3 (and parameters)") { _ = try fixture.config(["distributed.zero_stage=4"]) }
        XCTAssertEqual(try fixture.config(["distributed.zero_stage=3"]).distributed.zeroStage, 3)
        assertKeelError("distributed.zero_stage (2) must be 0 or 1 with pipeline parallelism (parallel.pp = 2)") {
            _ = try fixture.config(["distributed.zero_stage=2", "parallel.pp=2"])
        }
        // Without a pipeline too: gpipe's forward passes all come first, and an untied head adds to its gradient in each.
        assertKeelError("distributed.zero_stage (3) must be 0 or 1 with the gpipe schedule", "use the 1f1b schedule") {
            _ = try fixture.config(["distributed.zero_stage=3", "parallel.schedule=\"gpipe\""])
        }
        XCTAssertNoThrow(try fixture.config(["distributed.zero_stage=1", "parallel.schedule=\"gpipe\""]))
        assertKeelError("distributed.bucket_mb must be a positive number") { _ = try fixture.config(["distributed.bucket_mb=0"]) }
        assertKeelError("distributed.bucket_mb must be a positive number of at most 1073741824") {
            _ = try fixture.config(["distributed.bucket_mb=1e14"])
        }
        assertKeelError("training.precision must be \"fp32\" or \"bf16\"", "fp16") {
            _ = try fixture.config(["training.precision=\"fp16\""])
        }
        assertKeelError("distributed.timeout_s must be positive") { _ = try fixture.config(["distributed.timeout_s=-5"]) }
        assertKeelError("checkpoint.zstd_level must be 0 (no compression) or a zstd level from 1 to 19 (got 20)") {
            _ = try fixture.config(["checkpoint.zstd_level=20"])
        }
        assertKeelError("checkpoint.snapshot_every must not be negative") { _ = try fixture.config(["checkpoint.snapshot_every=-1"]) }
        // Values that passed as "positive" or "not negative" and then trained nothing (eps = inf: every update 0) or
        // diverged at once (an infinite decay, or lr × weight_decay ≥ 1 zeroing every weight), and one that overflowed.
        assertKeelError("training.eps must be a positive number (got inf)") { _ = try fixture.config(["training.eps=inf"]) }
        assertKeelError("training.weight_decay must be a number that is not negative (got inf)") {
            _ = try fixture.config(["training.weight_decay=inf"])
        }
        assertKeelError("training.weight_decay × training.lr must be below 1 (got 0.1 × 10.0)") {
            _ = try fixture.config(["training.lr=10.0", "training.weight_decay=0.1"])
        }
        assertKeelError("training.eval_batches must be from 1 to 1048576 (got 4611686018427387904)") {
            _ = try fixture.config(["training.eval_batches=4611686018427387904"])
        }
        let file = fixture.root.appendingPathComponent("bad.toml")
        try Data("[training]\nsteps = = 3\n".utf8).write(to: file)
        assertKeelError(file.path, "line 2") { _ = try TrainConfig.load(path: file.path, overrides: []) }
        assertKeelError("no such file") { _ = try TrainConfig.load(path: "/nonexistent.toml", overrides: []) }
    }

    /// A diverging run stops at the step where the loss stops being finite, names it, and keeps the last
    /// good checkpoint intact.
    func testNonFiniteLossStopsAndKeepsLastCheckpoint() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config([
            "training.lr=1e30", "training.weight_decay=0", "training.min_lr=1e30", "training.warmup_steps=0", "training.grad_clip=0",
            "checkpoint.every=1", "training.eval_every=0",
        ])
        var message = ""
        do {
            _ = try fixture.run(config, in: "run")
            XCTFail("a run with lr 1e30 must diverge")
        } catch let error as KeelError {
            message = error.message
        }
        XCTAssertTrue(message.hasPrefix("training diverged"), message)
        let step = Int(message.split(separator: " at step ")[1].prefix { $0.isNumber })!
        let kept = fixture.checkpoints("run")
        XCTAssertEqual(kept.last, CheckpointStore.name(step: step - 1), "checkpoints: \(kept)")
        XCTAssertTrue(message.contains(CheckpointStore.name(step: step - 1)))
        XCTAssertNoThrow(try CheckpointStore.verify(fixture.root.appendingPathComponent("run/checkpoints/\(kept.last!)")))
    }

    /// A weight no pass reads (a position row beyond seq_len) made infinite: every loss and gradient stays
    /// finite, but the state is refused as a checkpoint, naming the tensor.
    func testNonFiniteWeightIsNeverCheckpointed() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.seq_len=8", "checkpoint.every=1", "training.steps=3", "training.eval_every=0"])
        let trainer = try Trainer(config: config, output: fixture.root.appendingPathComponent("run"), resume: false) { _ in }
        let model = try XCTUnwrap(trainer.model), positions = try XCTUnwrap(model.table["transformer.wpe.weight"])
        model.parameters.pointer[positions.offset + 12 * config.model.width] = .infinity
        assertKeelError("training diverged", "transformer.wpe.weight", "after step 1", "no checkpoint was written") {
            _ = try trainer.run()
        }
        XCTAssertEqual(fixture.checkpoints("run"), [], "a checkpoint with an infinite weight was kept")
    }

    /// Retention keeps the newest `keep` checkpoints and, with `keep_every`, the milestones it divides.
    func testRetentionKeepsTheNewestAndTheMilestones() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=12", "checkpoint.every=1", "checkpoint.keep=2",
                                                "checkpoint.keep_every=5", "training.eval_every=0"]), in: "run")
        XCTAssertEqual(fixture.checkpoints("run"), [5, 10, 11, 12].map { CheckpointStore.name(step: $0) })
    }

    /// A run resumed from before a damaged checkpoint keeps what it writes: the damaged, newer one neither counts
    /// toward `keep` nor makes the pruning delete the checkpoint just written.
    func testPruningAfterResumingBeforeADamagedCheckpointKeepsTheNewOne() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=4", "checkpoint.every=2", "checkpoint.keep=2",
                                                "training.eval_every=0"]), in: "run")
        let damaged = fixture.root.appendingPathComponent("run/checkpoints/step_00000004/rank_00000.safetensors")
        let handle = try FileHandle(forWritingTo: damaged)
        try handle.truncate(atOffset: 100)
        try handle.close()
        let trainer = try Trainer(config: try fixture.config(["training.steps=3", "checkpoint.every=1", "checkpoint.keep=1",
                                                              "training.eval_every=0"]),
                                  output: fixture.root.appendingPathComponent("run"), resume: true) { _ in }
        _ = try trainer.run()
        XCTAssertEqual(fixture.checkpoints("run"), [3, 4].map { CheckpointStore.name(step: $0) })
        XCTAssertEqual(CheckpointStore.latestValid(in: fixture.root.appendingPathComponent("run/checkpoints")).checkpoint?
            .lastPathComponent, CheckpointStore.name(step: 3))
    }

    /// The dataset's tokenizer is read once, when the run starts: removed during the run, every checkpoint still
    /// carries it (it used to fail the first checkpoint after, ending the run).
    func testCheckpointsCarryTheTokenizerAsTheRunStartedWithIt() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        let tokenizer = dataset.appendingPathComponent("tokenizer.json")
        let original = try Data(contentsOf: tokenizer)
        let trainer = try Trainer(config: try fixture.config(on: dataset, ["training.steps=2", "checkpoint.every=1",
                                                                           "training.eval_every=0"]),
                                  output: fixture.root.appendingPathComponent("run"), resume: false) { _ in }
        try FileManager.default.removeItem(at: tokenizer)
        _ = try trainer.run()
        for step in [1, 2] {
            let checkpoint = fixture.root.appendingPathComponent("run/checkpoints/\(CheckpointStore.name(step: step))")
            try CheckpointStore.verify(checkpoint)
            XCTAssertEqual(try Data(contentsOf: checkpoint.appendingPathComponent("tokenizer.json")), original)
        }
    }

    /// A checkpoint whose tokenizer has ids the model has no row for (its tokenizer.json replaced, the manifest
    /// rewritten to match) is refused by whatever loads it to run it: `keel serve` indexed past the embedding on a
    /// prompt holding one of the extra tokens' spellings.
    func testACheckpointWhoseTokenizerOutgrowsTheModelIsRefused() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        _ = try fixture.run(try fixture.config(on: dataset, ["training.steps=1", "checkpoint.every=1", "training.eval_every=0"]),
                            in: "run")
        let checkpoint = fixture.root.appendingPathComponent("run/checkpoints/\(CheckpointStore.name(step: 1))")
        let reader = try CheckpointReader(checkpoint)
        XCTAssertEqual(try loadCheckpointTokenizer(reader).vocabSize, reader.model.vocabSize)
        // A text of every pair of lowercase letters, to learn merges from beyond the model's vocabulary.
        let letters = "abcdefghijklmnopqrstuvwxyz".map(String.init), text = fixture.root.appendingPathComponent("pairs.txt")
        try Data(letters.flatMap { a in letters.map { b in "\(a)\(b)\(a) \(a)\(b)\(b)\(a) " } }.joined().utf8).write(to: text)
        let larger = fixture.root.appendingPathComponent("larger.json")
        try TokenizerFiles.writeHuggingFace(try TokenizerTraining.train(inputs: [text.path], vocabSize: 600), to: larger)
        XCTAssertGreaterThan(try loadTokenizer(larger.path).vocabSize, reader.model.vocabSize)
        try fixture.replace(checkpoint.appendingPathComponent("tokenizer.json"), in: checkpoint, with: Data(contentsOf: larger))
        assertKeelError(checkpoint.path, "its tokenizer (tokenizer.json) has", "ids, more than the model's vocab_size \(reader.model.vocabSize)") {
            _ = try loadCheckpoint(checkpoint.path)
        }
    }

    /// The manifest holds the training state, which no file checksum covers: a manifest changed on disk fails its own
    /// checksum, and one whose step disagrees with its state's (written so by a faulty writer) is damaged too; resume
    /// falls back to the checkpoint before.
    func testADamagedManifestIsCaught() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=3", "checkpoint.every=1", "training.eval_every=0"]), in: "run")
        let checkpoints = fixture.root.appendingPathComponent("run/checkpoints")
        let newest = checkpoints.appendingPathComponent(CheckpointStore.name(step: 3))
        let manifest = newest.appendingPathComponent("manifest.json")
        let original = try Data(contentsOf: manifest)
        let text = String(decoding: original, as: UTF8.self)
        XCTAssertTrue(text.contains("\"samples_consumed\" : 12"), text)
        try Data(text.replacingOccurrences(of: "\"samples_consumed\" : 12", with: "\"samples_consumed\" : 92").utf8).write(to: manifest)
        assertKeelError(newest.path, "is damaged: manifest.json does not match its checksum in manifest.json.xxh64") {
            try CheckpointStore.verify(newest)
        }
        XCTAssertEqual(CheckpointStore.latestValid(in: checkpoints).checkpoint?.lastPathComponent, CheckpointStore.name(step: 2))
        // Its checksum file lost, or damaged so that it is no longer text: not read as "nothing to check against".
        let checksum = newest.appendingPathComponent(CheckpointStore.manifestChecksumName)
        try Data([0xff, 0x31]).write(to: checksum)
        assertKeelError(newest.path, "is damaged: manifest.json.xxh64 is not text") { try CheckpointStore.verify(newest) }
        try FileManager.default.removeItem(at: checksum)
        assertKeelError(newest.path, "is damaged: manifest.json.xxh64, the checksum of its manifest, is missing") {
            try CheckpointStore.verify(newest)
        }
        XCTAssertEqual(CheckpointStore.latestValid(in: checkpoints).checkpoint?.lastPathComponent, CheckpointStore.name(step: 2))
        // A manifest of the format before, which may predate its checksum file, is read without one.
        let older = String(decoding: original, as: UTF8.self).replacingOccurrences(of: "\"keel-sharded-2\"", with: "\"keel-sharded-1\"")
        XCTAssertNotEqual(older, String(decoding: original, as: UTF8.self))
        try Data(older.utf8).write(to: manifest)
        XCTAssertNoThrow(try CheckpointStore.verify(newest))

        var object = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        var state = object["state"] as! [String: Any]
        state["step"] = 4
        object["state"] = state
        try CheckpointStore.writeManifest(JSONSerialization.data(withJSONObject: object), into: newest)
        assertKeelError(newest.path, "is damaged: its manifest says step 3, its training state step 4") { try CheckpointStore.verify(newest) }
        XCTAssertEqual(CheckpointStore.latestValid(in: checkpoints).checkpoint?.lastPathComponent, CheckpointStore.name(step: 2))
        // Slices that the checksum covers but that do not tile their tensor (a writer's bug, or a manifest of the format
        // before with no checksum): refused before any byte is copied by their numbers.
        let restored = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        let name = ((restored["tensors"] as! [String: Any])["model"] as! [String: Any]).keys.sorted().first!
        func damaged(_ change: (inout [String: Any]) -> Void) throws {
            var object = restored, tensors = object["tensors"] as! [String: Any], model = tensors["model"] as! [String: Any]
            var tensor = model[name] as! [String: Any], slices = tensor["slices"] as! [[String: Any]]
            change(&slices[0])
            tensor["slices"] = slices
            model[name] = tensor
            tensors["model"] = model
            object["tensors"] = tensors
            try CheckpointStore.writeManifest(JSONSerialization.data(withJSONObject: object), into: newest)
        }
        for (change, message) in [({ (s: inout [String: Any]) in s["offset"] = -4096 }, "offset -4096"),
                                  ({ $0["count"] = ($0["count"] as! Int) - 1 }, "misses elements "),
                                  ({ $0["count"] = Int.max }, "count \(Int.max)"),
                                  ({ $0["piece"] = 1 }, "piece 1"),
                                  ({ $0["file"] = "../manifest.json" }, "has a slice in ../manifest.json, which is not one of the files")] {
            try damaged(change)
            assertKeelError(newest.path, "is damaged: its manifest's model tensor '\(name)' ", message) { try CheckpointStore.verify(newest) }
            assertKeelError(newest.path, message) { _ = try CheckpointReader(newest) }
        }
        // A tokenizer that is not one of the files (so outside the checksums) is not read as the checkpoint's.
        var unlisted = restored, unlistedState = restored["state"] as! [String: Any]
        unlistedState["tokenizer"] = "../tokenizer.json"
        unlisted["state"] = unlistedState
        try CheckpointStore.writeManifest(JSONSerialization.data(withJSONObject: unlisted), into: newest)
        assertKeelError(newest.path, "is damaged: its manifest's tokenizer ../tokenizer.json is not one of the files it lists") {
            try CheckpointStore.verify(newest)
        }
        try CheckpointStore.writeManifest(original, into: newest)
        XCTAssertNoThrow(try CheckpointStore.verify(newest))
        // A checkpoint moved under another step's name.
        let moved = checkpoints.appendingPathComponent(CheckpointStore.name(step: 9))
        try FileManager.default.moveItem(at: checkpoints.appendingPathComponent(CheckpointStore.name(step: 2)), to: moved)
        assertKeelError(moved.path, "its manifest says step 2, its training state step 2, its name step 9") { try CheckpointStore.verify(moved) }
    }

    /// A machine's snapshots that a removal interrupted left set aside (the job killed as it ended) are deleted when the
    /// run starts again: they hold a whole share of its state in memory.
    func testSnapshotsLeftSetAsideAreRemovedAtStart() throws {
        let fixture = try TrainFixture()
        let base = fixture.root.appendingPathComponent("shm")
        let config = try fixture.config(["training.steps=2", "checkpoint.snapshot_every=1", "checkpoint.snapshot_dir=\"\(base.path)\""])
        let machine = try XCTUnwrap(Trainer.snapshotRoot(config: config, output: fixture.root.appendingPathComponent("run")))
        let aside = machine.deletingLastPathComponent().appendingPathComponent("." + machine.lastPathComponent + ".removed.partial")
        try FileManager.default.createDirectory(at: aside.appendingPathComponent("step_00000007"), withIntermediateDirectories: true)
        try Data(count: 1024).write(to: aside.appendingPathComponent("step_00000007/rank_00000.safetensors"))
        // At the start, not only by the next removal, which a job killed again as it ends would not reach.
        let trainer = try Trainer(config: config, output: fixture.root.appendingPathComponent("run"), resume: false) { _ in }
        XCTAssertFalse(FileManager.default.fileExists(atPath: aside.path))
        _ = try trainer.run()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: base.path), [])
    }

    /// Checkpoints are ordered by step, also past the eight digits their names are padded to.
    func testCheckpointsAreOrderedByStepPastEightDigits() throws {
        let fixture = try TrainFixture()
        let root = fixture.root.appendingPathComponent("checkpoints")
        for step in [99_999_999, 100_000_000, 7] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(CheckpointStore.name(step: step)),
                                                    withIntermediateDirectories: true)
        }
        XCTAssertEqual(CheckpointStore.list(root).map(\.lastPathComponent), ["step_100000000", "step_99999999", "step_00000007"])
        CheckpointStore.prune(root, keep: 1, written: 99_999_999)
        XCTAssertEqual(CheckpointStore.list(root).map(\.lastPathComponent), ["step_100000000", "step_99999999"])
        XCTAssertEqual(CheckpointStore.list(root, after: 7).map(\.lastPathComponent), ["step_100000000", "step_99999999"])
    }

    func testTruncatedCheckpointIsDetectedAndResumeFallsBack() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=10"])
        _ = try fixture.run(config, in: "run")
        let newest = fixture.root.appendingPathComponent("run/checkpoints/step_00000010")
        let weights = newest.appendingPathComponent("rank_00000.safetensors")
        let size = try FileManager.default.attributesOfItem(atPath: weights.path)[.size] as! Int
        let handle = try FileHandle(forWritingTo: weights)
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()

        assertKeelError(newest.path, "rank_00000.safetensors", "truncated") {
            _ = try CheckpointReader(newest).loadModel()
        }
        assertKeelError(weights.path, "truncated") { _ = try SafetensorsFile(url: weights) }

        var warnings: [String] = []
        let trainer = try Trainer(config: try fixture.config(["training.steps=12"]),
                                  output: fixture.root.appendingPathComponent("run"), resume: true) { warnings.append($0) }
        XCTAssertTrue(warnings.contains { $0.contains("step_00000010") && $0.contains("damaged") }, "\(warnings)")
        let summary = try trainer.run()
        XCTAssertEqual(summary.steps, 12)
        XCTAssertEqual(try fixture.losses("run").keys.sorted(), Array(1...12))
    }

    func testSafetensorsShapeBeyondAnyFileIsAnError() throws {
        // 2³² × 2³² floats: the size overflows Int, which must be a malformed file, not a trap.
        let fixture = try TrainFixture()
        let header = Data(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#.utf8)
        var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Data($0) }
        bytes.append(header)
        let url = fixture.root.appendingPathComponent("huge.safetensors")
        try bytes.write(to: url)
        assertKeelError(url.path, "tensor 'w' has shape [4294967296, 4294967296], too large for any file") {
            _ = try SafetensorsFile(url: url)
        }
    }

    func testFreshRunRefusesToOverwriteAnExistingRun() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=5"]), in: "run")
        let before = fixture.checkpoints("run")
        assertKeelError("already holds a run", "--resume") {
            _ = try fixture.run(try fixture.config(["training.steps=5"]), in: "run")
        }
        XCTAssertEqual(fixture.checkpoints("run"), before)
    }

    func testResumeWithoutCheckpoint() throws {
        let fixture = try TrainFixture()
        assertKeelError("no valid checkpoint", rulesOutRestart: false) {
            _ = try fixture.run(try fixture.config(), in: "fresh", resume: true)
        }
    }

    /// `resumeIfAny` (what `keel launch` restarts a job with when it sees no checkpoint) starts from the beginning,
    /// saying so, where there is nothing to resume, and resumes where there is, bit for bit.
    func testResumeIfAnyStartsOverOnlyWithoutACheckpoint() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=10"]), run = fixture.root.appendingPathComponent("run")
        var messages: [String] = []
        _ = try Trainer(config: config, output: run, start: .resumeIfAny) { messages.append($0) }.run(stopAfter: 5)
        XCTAssertTrue(messages.contains("no valid checkpoint or in-memory snapshot yet: starting from the beginning"), "\(messages)")
        messages = []
        _ = try Trainer(config: config, output: run, start: .resumeIfAny) { messages.append($0) }.run()
        XCTAssertTrue(messages.contains { $0.hasPrefix("resumed from ") && $0.hasSuffix(" at step 5") }, "\(messages)")
        _ = try fixture.run(config, in: "straight")
        XCTAssertEqual(try fixture.losses("run"), try fixture.losses("straight"))
        XCTAssertEqual(try fixture.losses("run").count, 10)

        // Checkpoints of which none verifies are a run to repair, not one to start over (over its checkpoints).
        _ = try fixture.run(try fixture.config(["training.steps=5"]), in: "damaged")
        let weights = fixture.root.appendingPathComponent("damaged/checkpoints/step_00000005/rank_00000.safetensors")
        let handle = try FileHandle(forWritingTo: weights)
        try handle.truncate(atOffset: 100)
        try handle.close()
        assertKeelError("no valid checkpoint") {
            _ = try Trainer(config: config, output: fixture.root.appendingPathComponent("damaged"), start: .resumeIfAny) { _ in }
        }
        XCTAssertEqual(fixture.checkpoints("damaged"), ["step_00000005"])
    }

    /// A run that diverges removes its in-memory snapshots: they hold the steps that led up to it, and `--resume` goes
    /// back to the checkpoint the error names instead of to the brink.
    func testADivergedRunLeavesNoSnapshotToResumeFrom() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config([
            "training.lr=1e30", "training.weight_decay=0", "training.min_lr=1e30", "training.warmup_steps=0", "training.grad_clip=0", "training.eval_every=0",
            "checkpoint.every=100", "checkpoint.snapshot_every=1", "checkpoint.snapshot_dir=\"\(fixture.root.path)/shm\"",
        ])
        XCTAssertThrowsError(try fixture.run(config, in: "run")) { XCTAssertTrue("\($0)".contains("training diverged"), "\($0)") }
        let metrics = try String(contentsOf: fixture.root.appendingPathComponent("run/metrics.jsonl"), encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"in_memory\""), "a snapshot was taken before the divergence")
        let snapshots = try XCTUnwrap(Trainer.snapshotRoot(config: config, output: fixture.root.appendingPathComponent("run")))
        XCTAssertEqual(CheckpointStore.list(snapshots), [])
    }

    /// In-memory snapshots outlive a job on a machine's tmpfs, in a directory named after the run directory's path. A run
    /// directory deleted and started again with --resume-if-any (every allocation of a Slurm script) meets the snapshots
    /// an earlier run left there: another run's, which it must not resume (their weights and data position would become
    /// its own), whether they record another identity or none (older Keel's). A snapshot of this run's identity is
    /// resumed: the control that the planted snapshot is one a resume would take.
    func testSnapshotsOfAnotherRunOfTheDirectoryAreNotResumed() throws {
        let fixture = try TrainFixture()
        // A snapshot's files are a checkpoint's: one of step 4 stands for the snapshot a crashed run left.
        _ = try fixture.run(try fixture.config(["training.steps=4", "checkpoint.every=4"]), in: "earlier")
        let left = fixture.root.appendingPathComponent("earlier/checkpoints/step_00000004")
        let config = try fixture.config(["training.steps=6", "checkpoint.every=6", "checkpoint.snapshot_every=1",
                                         "checkpoint.snapshot_dir=\"\(fixture.root.path)/shm\""])
        for recorded in ["another", "none", "this run's"] {
            let run = fixture.root.appendingPathComponent("run-\(recorded.prefix(4))")
            let snapshots = try XCTUnwrap(Trainer.snapshotRoot(config: config, output: run))
            try FileManager.default.createDirectory(at: snapshots, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: left, to: snapshots.appendingPathComponent(left.lastPathComponent))
            switch recorded {
            case "another": try RunIdentity.write(0x5eed, to: snapshots)
            case "this run's":
                try RunIdentity.write(0xc0ffee, to: run)
                try RunIdentity.write(0xc0ffee, to: snapshots)
            default: break
            }
            var messages: [String] = []
            let trainer = try Trainer(config: config, output: run, start: .resumeIfAny) { messages.append($0) }
            if recorded == "this run's" {
                _ = try trainer.run()
                XCTAssertTrue(messages.contains { $0.hasPrefix("resumed from the in-memory snapshot ") && $0.hasSuffix(" at step 4") },
                              "\(messages)")
                XCTAssertEqual(try fixture.losses(run.lastPathComponent).keys.sorted(), [5, 6])
                continue
            }
            XCTAssertTrue(messages.contains("no valid checkpoint or in-memory snapshot yet: starting from the beginning"),
                          "\(recorded): \(messages)")
            XCTAssertTrue(messages.contains { $0.hasPrefix("removing the in-memory snapshots in ") }, "\(recorded): \(messages)")
            XCTAssertEqual(CheckpointStore.list(snapshots), [], "\(recorded): the other run's snapshot is removed")
            XCTAssertNotEqual(RunIdentity.read(run), nil)
            XCTAssertEqual(RunIdentity.read(snapshots), RunIdentity.read(run), "the machine's snapshots are now this run's")
            _ = try trainer.run()
            XCTAssertEqual(try fixture.losses(run.lastPathComponent).keys.sorted(), Array(1...6), recorded)
        }
        // An identity that is there but cannot be read (here a directory in its place) is an error, not a new identity
        // that would disown every machine's snapshots of the run.
        let unreadable = fixture.root.appendingPathComponent("unreadable")
        try FileManager.default.createDirectory(at: unreadable.appendingPathComponent(RunIdentity.fileName), withIntermediateDirectories: true)
        assertKeelError("cannot read the run's identity from") { _ = try RunIdentity.establish(in: unreadable, fresh: false) }
        XCTAssertNotNil(try RunIdentity.establish(in: fixture.root.appendingPathComponent("fresh"), fresh: true))
    }

    /// A resume on other data would continue the saved position in another order of windows: refused, naming what
    /// differs, unless accepted; then later checkpoints record the new data.
    func testResumeOnChangedDataIsRefusedUnlessAccepted() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=15"])
        _ = try fixture.run(config, in: "run", stopAfter: 5)
        let resume = { (config: TrainConfig, accepting: Bool) in
            try Trainer(config: config, output: fixture.root.appendingPathComponent("run"), start: .resume,
                        acceptingChangedData: accepting) { _ in }
        }
        // Settings that cut the data into other windows.
        assertKeelError("the data is not what step_00000005 was trained on (document masking off there, on here)", "--accept-changed-data") {
            _ = try resume(try fixture.config(["training.steps=15", "data.document_masking=true"]), false)
        }
        assertKeelError("window length (training.seq_len) 16 there, 8 here") {
            _ = try resume(try fixture.config(["training.steps=15", "training.seq_len=8"]), false)
        }
        // The same number of windows, holding other tokens: the first window's first byte changed.
        let first = fixture.corpus.appendingPathComponent("doc0.txt")
        let original = try Data(contentsOf: first)
        var changed = original
        changed[0] = changed[0] == UInt8(ascii: "X") ? UInt8(ascii: "Y") : UInt8(ascii: "X")
        try changed.write(to: first)
        assertKeelError("(the same counts of windows, holding other tokens)") { _ = try resume(config, false) }
        try original.write(to: first)
        // A file added: more windows, and the validation split moved.
        try Data(String(repeating: "the king shall speak.\n", count: 40).utf8).write(to: fixture.corpus.appendingPathComponent("doc9.txt"))
        assertKeelError("training windows", "validation windows", "would go on in another order of windows") { _ = try resume(config, false) }
        do {
            _ = try resume(config, false).run()
            XCTFail("a resume on changed data ran")
        } catch let error as KeelError {
            XCTAssertTrue(error.rulesOutRestart, "a restart could not change the data")
        }
        XCTAssertEqual(fixture.checkpoints("run"), ["step_00000005"], "a refused resume writes nothing")
        var messages: [String] = []
        _ = try Trainer(config: config, output: fixture.root.appendingPathComponent("run"), start: .resume,
                        acceptingChangedData: true) { messages.append($0) }.run(stopAfter: 10)
        XCTAssertTrue(messages.contains { $0.hasPrefix("note: the data is not what step_00000005 was trained on (training windows ")
            && $0.hasSuffix("going on with this data from position 20 (--accept-changed-data)") }, "\(messages)")
        // The next checkpoint is of the new data: resuming from it needs nothing accepted.
        _ = try resume(config, false).run()
        XCTAssertEqual(fixture.checkpoints("run").last, "step_00000015")
    }

    func testResumeWithDifferentModelShape() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=5"]), in: "run")
        assertKeelError("different model shape", rulesOutRestart: true) {
            _ = try fixture.run(try fixture.config(["model.d_model=64"]), in: "run", resume: true)
        }
        // Another seed: refused, and a supervisor is told not to retry (every restart would be refused alike).
        assertKeelError("was trained with seed", rulesOutRestart: true) {
            _ = try fixture.run(try fixture.config(["training.steps=5", "training.seed=99"]), in: "run", resume: true)
        }
    }
}
