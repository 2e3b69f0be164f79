import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelTrain

/// Temporary run directories and a small deterministic corpus for training tests.
final class TrainFixture {
    let root: URL
    let corpus: URL

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("keel-train-\(UUID())")
        corpus = root.appendingPathComponent("corpus")
        try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
        let words = ["the", "king", "shall", "speak", "of", "a", "rose", "and", "night", "my", "lord", "good"]
        var random = RandomStream(seed: 42)
        for document in 0..<3 {
            var text = ""
            for line in 0..<150 {
                text += (0..<(4 + line % 5)).map { _ in words[random.nextInt(below: words.count)] }.joined(separator: " ")
                text += ".\n"
            }
            try Data(text.utf8).write(to: corpus.appendingPathComponent("doc\(document).txt"))
        }
    }

    deinit {
        try? FileManager.default.removeItem(at: root)
    }

    /// A tiny model and short run over the fixture corpus, plus `overrides`.
    func config(_ overrides: [String] = [], arch: String = "gpt2") throws -> TrainConfig {
        try TrainConfig.load(path: nil, overrides: [
            "data.paths=[\"\(corpus.path)\"]", "model.arch=\"\(arch)\"", "model.n_layer=2", "model.n_head=2",
            "model.d_model=32", "model.max_seq_len=16", "training.batch_size=4", "training.seq_len=16",
            "training.steps=20", "training.lr=3e-3", "training.warmup_steps=3", "training.eval_every=5",
            "training.eval_batches=2", "checkpoint.every=5", "checkpoint.keep=0", "logging.every=100",
        ] + overrides)
    }

    func run(_ config: TrainConfig, in name: String, resume: Bool = false, stopAfter: Int? = nil) throws -> TrainingSummary {
        try Trainer(config: config, output: root.appendingPathComponent(name), resume: resume) { _ in }.run(stopAfter: stopAfter)
    }

    /// The `loss` of every step record in a run's metrics.jsonl, keyed by step, as logged text.
    func losses(_ name: String) throws -> [Int: String] {
        let text = try String(contentsOf: root.appendingPathComponent(name).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var result: [Int: String] = [:]
        for line in text.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if let step = object["step"] as? Int, object["loss"] != nil {
                XCTAssertNil(result[step], "step \(step) logged twice")
                result[step] = "\(object["loss"]!)"
            }
        }
        return result
    }

    /// A dataset prepared from the fixture corpus with a BPE tokenizer trained on it (`keel data prepare`).
    func dataset(validationFraction: Double = 0.34) throws -> URL {
        let tokenizer = root.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(try TokenizerTraining.train(inputs: [corpus.path], vocabSize: 320), to: tokenizer)
        let dataset = root.appendingPathComponent("dataset")
        var preparation = DataPreparation(inputs: [corpus.path], tokenizer: tokenizer.path, output: dataset)
        preparation.validationFraction = validationFraction
        try preparation.run()
        return dataset
    }

    /// `config(overrides)` training on the prepared `dataset` instead of the corpus files.
    func config(on dataset: URL, _ overrides: [String] = []) throws -> TrainConfig {
        try config(["data.paths=[]", "data.dataset=\"\(dataset.path)\""] + overrides)
    }

    /// Replaces `file` of checkpoint `directory` with `contents` and records its new size and checksum in the
    /// checkpoint's manifest, so the checkpoint still verifies (as one written by a faulty writer would).
    func replace(_ file: URL, in directory: URL, with contents: Data) throws {
        try contents.write(to: file)
        let manifest = directory.appendingPathComponent("manifest.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as! [String: Any]
        var records = object["files"] as! [String: Any]
        records[file.lastPathComponent] = ["bytes": contents.count, "xxh64": String(XXH64.hash(Array(contents)), radix: 16)]
        object["files"] = records
        try CheckpointStore.writeManifest(JSONSerialization.data(withJSONObject: object), into: directory)
    }

    func checkpoints(_ name: String) -> [String] {
        let directory = root.appendingPathComponent(name).appendingPathComponent("checkpoints")
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }
}

extension XCTestCase {
    /// Runs `body`, which must throw one `KeelError` on one line that contains every `expected` fragment.
    func assertKeelError(_ expected: String..., rulesOutRestart: Bool? = nil, file: StaticString = #filePath, line: UInt = #line,
                         _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected an error containing \(expected)", file: file, line: line)
        } catch let error as KeelError {
            for fragment in expected {
                XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' lacks '\(fragment)'", file: file, line: line)
            }
            XCTAssertFalse(error.message.contains("\n"), "error must be one line", file: file, line: line)
            if let rulesOutRestart { XCTAssertEqual(error.rulesOutRestart, rulesOutRestart, "rules out a restart", file: file, line: line) }
        } catch {
            XCTFail("expected a KeelError, got \(error)", file: file, line: line)
        }
    }
}

import XCTest
