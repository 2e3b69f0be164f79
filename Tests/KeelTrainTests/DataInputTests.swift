import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelModel
@testable import KeelTrain
import XCTest

/// Training data and checkpoints that are wrong in every way a user's files can be: each gives one error
/// naming the file and what is wrong, or (damaged checkpoints) a fallback that says what it skipped.
final class DataInputTests: XCTestCase {
    /// A checkpoint of weights alone (an import's, a dpo run's) is not resumed as training, which would need its
    /// optimizer state: the refusal says what to do instead.
    func testAWeightsOnlyCheckpointIsNotResumed() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=2"])
        let run = fixture.root.appendingPathComponent("imported")
        let checkpoint = try WeightsCheckpoint.write(try Transformer(config: config.model, seed: 3), tokenizer: nil,
                                                     config: config.resolvedTOML, to: run)
        assertKeelError("--resume: \(checkpoint.path) holds weights only, no optimizer state",
                        "--init-from \(checkpoint.path)", rulesOutRestart: true) {
            _ = try Trainer(config: config, output: run, resume: true) { _ in }
        }
    }

    /// `data.paths` reads JSONL and compressed files as `keel data prepare` does: one document per JSONL line,
    /// each followed by end-of-text (byte-level ids are the bytes themselves, end-of-text is 256).
    func testDataPathsReadJSONLAndCompressedFilesAsDocuments() throws {
        let fixture = try TrainFixture()
        let directory = fixture.root
        let jsonl = directory.appendingPathComponent("docs.jsonl")
        try Data("{\"text\": \"ab\"}\n{\"id\": 2, \"text\": \"c\\u00e9\"}\n".utf8).write(to: jsonl)
        let zstd = directory.appendingPathComponent("docs.jsonl.zst")
        let gzip = directory.appendingPathComponent("plain.txt.gz")
        try runTool("/usr/bin/zstd", ["-q", "-o", zstd.path, jsonl.path])
        try Data("xyz".utf8).write(to: directory.appendingPathComponent("plain.txt"))
        try runTool("/usr/bin/gzip", ["-k", directory.appendingPathComponent("plain.txt").path])
        for (file, expected) in [(jsonl, [97, 98, 256, 99, 0xC3, 0xA9, 256]), (zstd, [97, 98, 256, 99, 0xC3, 0xA9, 256]),
                                 (gzip, [120, 121, 122, 256])] {
            let corpus = try TokenCorpus(paths: [file.path], tokenizer: ByteTokenizer(), vocabSize: 257, validationFraction: 0)
            XCTAssertEqual(corpus.train, expected.map(Int32.init), file.lastPathComponent)
        }
        // A JSONL line without text is an error naming the file and line, not text to train on.
        let bad = directory.appendingPathComponent("bad.jsonl")
        try Data("{\"text\": \"fine\"}\n{\"title\": \"x\"}\n".utf8).write(to: bad)
        assertKeelError(bad.path, "line 2", "no \"text\" field") {
            _ = try TokenCorpus(paths: [bad.path], tokenizer: ByteTokenizer(), vocabSize: 257, validationFraction: 0)
        }
    }

    /// Text read at start-up (`data.paths`) starts each document with the token its tokenizer puts before every text,
    /// as a prepared dataset does: here the vocabulary's one special token, which then also ends each document.
    func testDataPathsStartEachDocumentWithTheTokenizersTextStart() throws {
        let fixture = try TrainFixture()
        let vocabulary = try TokenizerTraining.train(inputs: [fixture.corpus.path], vocabSize: 320)
        let endOfText = try XCTUnwrap(vocabulary.endOfText)
        let files = ["plain", "started"].map { fixture.root.appendingPathComponent($0).appendingPathComponent("tokenizer.json") }
        for file in files { try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true) }
        try TokenizerFiles.writeHuggingFace(vocabulary, to: files[0])
        try TokenizerFiles.writeHuggingFace(vocabulary, textStart: BPEVocabulary.endOfTextText, to: files[1])
        let data = try files.map { try TrainingData(config: fixture.config(["data.tokenizer=\"\($0.path)\""])) }
        XCTAssertEqual(data.map(\.textStart), [nil, endOfText])
        // Three documents, each one token longer.
        XCTAssertEqual(data[1].trainTargets + data[1].validationTargets, data[0].trainTargets + data[0].validationTargets + 3)
        let first = data.map { data in
            var inputs = [Int32](repeating: 0, count: 16), targets = inputs
            data.train.copy(window: 0, inputs: &inputs, targets: &targets, documents: nil)
            return inputs
        }
        XCTAssertEqual(first[1], [endOfText] + first[0].prefix(15))

        // A dataset prepared with that tokenizer says so in its manifest; one prepared before Keel wrote it is named.
        let dataset = fixture.root.appendingPathComponent("dataset")
        var preparation = DataPreparation(inputs: [fixture.corpus.path], tokenizer: files[1].path, output: dataset)
        preparation.validationFraction = 0.34
        try preparation.run()
        XCTAssertFalse(try TrainingData(config: fixture.config(on: dataset)).summary.contains("note"))
        // data.val_fraction set for a prepared dataset, whose split is its own: said, not silently ignored.
        XCTAssertTrue(try TrainingData(config: fixture.config(on: dataset, ["data.val_fraction=0.3"])).summary
            .contains("note: data.val_fraction (0.3) does not apply to a prepared dataset, whose split `keel data prepare --val-fraction` made"))
        let manifest = dataset.appendingPathComponent(ShardManifest.fileName)
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as? [String: Any])
        object["text_start"] = nil
        try JSONSerialization.data(withJSONObject: object).write(to: manifest)
        XCTAssertTrue(try TrainingData(config: fixture.config(on: dataset)).summary
            .contains("note: its documents do not start with token \(endOfText), which its tokenizer puts before every text"))
    }

    func testMissingOrMalformedDatasetManifest() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        let manifest = dataset.appendingPathComponent("manifest.json")
        let original = try Data(contentsOf: manifest)
        try FileManager.default.removeItem(at: manifest)
        assertKeelError(dataset.path, "not a prepared dataset", "keel data prepare") { _ = try fixture.run(fixture.config(on: dataset), in: "a") }
        try original.prefix(original.count / 2).write(to: manifest)
        assertKeelError(manifest.path, "malformed", "not valid JSON") { _ = try fixture.run(fixture.config(on: dataset), in: "b") }
        var object = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        object["vocab_size"] = nil
        try JSONSerialization.data(withJSONObject: object).write(to: manifest)
        assertKeelError(manifest.path, "malformed", "no \"vocab_size\" field") { _ = try fixture.run(fixture.config(on: dataset), in: "c") }
    }

    func testShardWithTheWrongMagic() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        let shard = dataset.appendingPathComponent("train_000000.bin")
        var bytes = try Data(contentsOf: shard)
        bytes[0] ^= 0xFF
        try bytes.write(to: shard)
        assertKeelError(shard.path, "not an llm.c token shard") { _ = try fixture.run(fixture.config(on: dataset), in: "run") }
    }

    func testManifestWhoseTokenCountDisagreesWithTheShard() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        var manifest = try ShardManifest.read(from: dataset)
        let stored = manifest.train.shards[0].tokens
        manifest.train.shards[0].tokens += 7
        try manifest.write(to: dataset)
        assertKeelError("train_000000.bin holds \(stored) tokens, the manifest says \(stored + 7)") {
            _ = try fixture.run(fixture.config(on: dataset), in: "run")
        }
    }

    /// A shard whose ids do not fit the model (made with another tokenizer), with a checksum that matches.
    func testDatasetTokenOutsideTheModelVocabulary() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        var manifest = try ShardManifest.read(from: dataset)
        let shard = dataset.appendingPathComponent(manifest.train.shards[0].file)
        var tokens = try TokenShard(url: shard).tokens()
        tokens[123] = Int32(manifest.vocabSize + 40)
        manifest.train.shards[0].xxh64 = String(try manifest.dtype.write(tokens[...], to: shard), radix: 16)
        try manifest.write(to: dataset)
        assertKeelError(shard.path, "token id \(manifest.vocabSize + 40) at position 123", "model.vocab_size \(manifest.vocabSize)") {
            _ = try fixture.run(fixture.config(on: dataset), in: "run")
        }
        // A larger model vocabulary takes it.
        XCTAssertNoThrow(try fixture.run(fixture.config(on: dataset, ["model.vocab_size=\(manifest.vocabSize + 41)", "training.steps=1"]),
                                         in: "wider"))
    }

    func testVocabularySmallerThanTheTokenizers() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset()
        let vocabulary = try ShardManifest.read(from: dataset).vocabSize
        assertKeelError("model.vocab_size (100) is smaller than the dataset's vocabulary (\(vocabulary))") {
            _ = try fixture.run(fixture.config(on: dataset, ["model.vocab_size=100"]), in: "a")
        }
        let tokenizer = dataset.appendingPathComponent("tokenizer.json").path
        assertKeelError("model.vocab_size (100) is smaller than the tokenizer's vocabulary (\(vocabulary))") {
            _ = try fixture.run(fixture.config(["data.tokenizer=\"\(tokenizer)\"", "model.vocab_size=100"]), in: "b")
        }
    }

    /// Windows never cross a shard: a dataset of many short shards loses their ends, which the log says with the
    /// share; shards shorter than a window are an error saying so (not "too few tokens").
    func testShortShards() throws {
        let fixture = try TrainFixture()
        let whole = try fixture.dataset()
        func prepare(_ name: String, shardTokens: Int) throws -> URL {
            var preparation = DataPreparation(inputs: [fixture.corpus.path], tokenizer: fixture.root.appendingPathComponent("tokenizer.json").path,
                                              output: fixture.root.appendingPathComponent(name))
            preparation.shardTokens = shardTokens
            preparation.validationFraction = 0.34
            try preparation.run()
            return fixture.root.appendingPathComponent(name)
        }
        var log: [String] = []
        _ = try Trainer(config: try fixture.config(on: try prepare("short", shardTokens: 40), ["training.steps=1", "training.eval_every=0"]),
                        output: fixture.root.appendingPathComponent("a"), resume: false) { log.append($0) }.run()
        XCTAssertTrue(log.contains { $0.contains("% of the training tokens lie past the last whole window of their shard") }, "\(log)")
        assertKeelError("shards (the longest 16 tokens) are too short for 4 windows of 17 tokens", "--shard-tokens") {
            _ = try fixture.run(fixture.config(on: try prepare("shorter", shardTokens: 16)), in: "b")
        }
        log = []
        _ = try Trainer(config: try fixture.config(on: whole, ["training.steps=1", "training.eval_every=0"]),
                        output: fixture.root.appendingPathComponent("c"), resume: false) { log.append($0) }.run()
        XCTAssertFalse(log.contains { $0.contains("past the last whole window") }, "\(log)")
    }

    func testEmptyValidationSplit() throws {
        let fixture = try TrainFixture()
        let dataset = try fixture.dataset(validationFraction: 0)
        assertKeelError("validation split has 0 tokens", "--val-fraction") { _ = try fixture.run(fixture.config(on: dataset), in: "a") }
        assertKeelError("validation split has 0 tokens", "data.val_fraction") {
            _ = try fixture.run(fixture.config(["data.val_fraction=0"]), in: "b")
        }
    }

    /// A manifest whose training state is not one (written by something else): resuming names the file and field.
    func testMalformedTrainingState() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=5"]), in: "run")
        let manifest = fixture.root.appendingPathComponent("run/checkpoints/step_00000005/manifest.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as! [String: Any]
        var state = object["state"] as! [String: Any]
        state["step"] = "five"
        object["state"] = state
        try CheckpointStore.writeManifest(JSONSerialization.data(withJSONObject: object), into: manifest.deletingLastPathComponent())
        assertKeelError(manifest.deletingLastPathComponent().path, "manifest.json is malformed", "\"state.step\" is not") {
            _ = try CheckpointReader(manifest.deletingLastPathComponent())
        }
        var warnings: [String] = []
        XCTAssertThrowsError(try Trainer(config: try fixture.config(["training.steps=8"]),
                                         output: fixture.root.appendingPathComponent("run"), resume: true) { warnings.append($0) })
        XCTAssertTrue(warnings.contains { $0.contains("manifest.json is malformed") }, "\(warnings)")
    }

    /// One flipped bit in a checkpoint's weights: loading that checkpoint fails, naming the file; resuming
    /// the run skips it with a warning and continues from the one before.
    func testBitFlipInACheckpoint() throws {
        let fixture = try TrainFixture()
        _ = try fixture.run(try fixture.config(["training.steps=10"]), in: "run")
        let newest = fixture.root.appendingPathComponent("run/checkpoints/step_00000010")
        let weights = newest.appendingPathComponent("rank_00000.safetensors")
        var bytes = try Data(contentsOf: weights)
        bytes[bytes.count - 1001] ^= 0x04
        try bytes.write(to: weights)
        assertKeelError(newest.path, "rank_00000.safetensors fails its checksum") { _ = try CheckpointReader(newest).loadModel() }
        var warnings: [String] = []
        let trainer = try Trainer(config: try fixture.config(["training.steps=12"]), output: fixture.root.appendingPathComponent("run"),
                                  resume: true) { warnings.append($0) }
        XCTAssertTrue(warnings.contains { $0.contains("step_00000010") && $0.contains("fails its checksum") }, "\(warnings)")
        XCTAssertEqual(try trainer.run().steps, 12)
        XCTAssertTrue(warnings.contains { $0.contains("resumed from") && $0.contains("step_00000005") }, "\(warnings)")
        XCTAssertEqual(try fixture.losses("run").keys.sorted(), Array(1...12))
    }

    /// A directory where a data file should be cannot be read as one; the error names it.
    func testUnreadableDataFile() throws {
        let fixture = try TrainFixture()
        let shard = fixture.root.appendingPathComponent("tokens.bin")
        try FileManager.default.createDirectory(at: shard.appendingPathComponent("inside"), withIntermediateDirectories: true)
        assertKeelError("cannot read shard \(shard.path)") {
            _ = try TokenShard(url: shard)
        }
    }

    private func runTool(_ path: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(path) \(arguments)")
    }
}
