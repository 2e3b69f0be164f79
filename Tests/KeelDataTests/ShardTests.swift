import Foundation
import KeelCore
import KeelData
import XCTest

final class ShardTests: XCTestCase {
    /// Documents of varied text: ASCII, Unicode, a document containing special-token text.
    private let documents = [
        "First document.\nIt has two lines.", "Ünïcödé — 中文 — emoji 🚀 and combining e\u{301}.",
        "A third one, with <|endoftext|> written in it literally.", String(repeating: "long line ", count: 500),
        "5", "tabs\tand   spaces   ", "the end",
    ]

    private func writeCorpus(in directory: URL) throws -> URL {
        let corpus = directory.appendingPathComponent("corpus")
        try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
        for (i, text) in documents.enumerated() {
            try Data(text.utf8).write(to: corpus.appendingPathComponent(String(format: "doc%02d.txt", i)))
        }
        try Data().write(to: corpus.appendingPathComponent("empty.txt"))  // skipped
        return corpus
    }

    /// Splits a shard stream back into documents at end-of-text (each document is preceded by it).
    private func documents(in tokens: [Int32], endOfText: Int32, decode: ([Int32]) throws -> [UInt8]) throws -> [String] {
        XCTAssertEqual(tokens.first, endOfText)
        var result: [String] = []
        var current: [Int32] = []
        for token in tokens.dropFirst() {
            if token == endOfText {
                result.append(String(decoding: try decode(current), as: UTF8.self))
                current = []
            } else {
                current.append(token)
            }
        }
        result.append(String(decoding: try decode(current), as: UTF8.self))
        return result
    }

    private func roundTrip(tokenizer: String, decode: ([Int32]) throws -> [UInt8], directory: URL) throws {
        let corpus = try writeCorpus(in: directory)
        let output = directory.appendingPathComponent("dataset-\(UUID())")
        var preparation = DataPreparation(inputs: [corpus.path], tokenizer: tokenizer, output: output)
        preparation.validationFraction = 0.3
        preparation.shardTokens = 700  // several shards per split
        let manifest = try preparation.run()
        XCTAssertEqual(manifest.train.documents + manifest.val.documents, documents.count)
        XCTAssertEqual(manifest.val.documents, 2)  // ⌊7 × 0.3⌋, spread: documents 3 and 6
        XCTAssertGreaterThan(manifest.train.shards.count + manifest.val.shards.count, 2)  // several shards
        let reread = try ShardManifest.read(from: output)
        XCTAssertEqual(reread, manifest)
        let train = try manifest.openShards(manifest.train, in: output).flatMap { $0.tokens() }
        let val = try manifest.openShards(manifest.val, in: output).flatMap { $0.tokens() }
        XCTAssertEqual(train.count, manifest.train.tokens)
        let expectedVal = [documents[3], documents[6]]
        let expectedTrain = documents.enumerated().filter { ![3, 6].contains($0.offset) }.map(\.element)
        XCTAssertEqual(try self.documents(in: train, endOfText: manifest.endOfText, decode: decode), expectedTrain)
        XCTAssertEqual(try self.documents(in: val, endOfText: manifest.endOfText, decode: decode), expectedVal)
        XCTAssertEqual(manifest.dtype, .uint16)
    }

    func testPrepareReadDecodeRoundTripByteLevel() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        try roundTrip(tokenizer: "byte", decode: { ByteTokenizer().decode($0) }, directory: directory)
    }

    func testPrepareReadDecodeRoundTripBPE() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let vocabulary = try TokenizerTraining.train(inputs: [try writeCorpus(in: directory).path], vocabSize: 300)
        let json = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: json)
        let encoder = BPEEncoder(vocabulary: vocabulary)
        try roundTrip(tokenizer: json.path, decode: { try encoder.decode($0) }, directory: directory)
    }

    func testLargeVocabularyUsesUint32AndUint16IsRefused() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        var tokens = (0..<256).map { [UInt8($0)] } + [[UInt8]](repeating: [], count: 70_000 - 256)
        tokens.append(Array("ab".utf8))
        let vocabulary = try BPEVocabulary(tokens: tokens, merges: [(97, 98)], specialTokens: ["<|endoftext|>": 70_001], pattern: .gpt2)
        let json = directory.appendingPathComponent("big.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: json)
        let corpus = try writeCorpus(in: directory)
        let output = directory.appendingPathComponent("big")
        let manifest = try DataPreparation(inputs: [corpus.path], tokenizer: json.path, output: output).run()
        XCTAssertEqual(manifest.dtype, .uint32)
        let shard = try manifest.openShards(manifest.train, in: output)[0]
        XCTAssertEqual(shard.format.magic, 20_240_801)
        XCTAssertEqual(shard.format.version, 7)
        XCTAssertEqual(shard.tokens().first, 70_001)
        XCTAssertTrue(shard.tokens().contains(70_000))  // "ab" merged
        var forced = DataPreparation(inputs: [corpus.path], tokenizer: json.path, output: directory.appendingPathComponent("small"))
        forced.format = .uint16
        XCTAssertThrowsError(try forced.run()) { XCTAssertTrue("\($0)".contains("does not fit uint16")) }
    }

    func testDamagedShardsAreRejected() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let output = directory.appendingPathComponent("dataset")
        let manifest = try DataPreparation(inputs: [try writeCorpus(in: directory).path], tokenizer: "byte", output: output).run()
        let shard = output.appendingPathComponent(manifest.train.shards[0].file)
        var bytes = try Data(contentsOf: shard)
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: shard)
        XCTAssertThrowsError(try manifest.openShards(manifest.train, in: output)) {
            XCTAssertTrue("\($0)".contains("checksum"), "\($0)")
            XCTAssertTrue("\($0)".contains(shard.path))
        }
        bytes.removeLast(2)
        try bytes.write(to: shard)
        XCTAssertThrowsError(try TokenShard(url: shard)) { XCTAssertTrue("\($0)".contains("header says")) }
        XCTAssertThrowsError(try DataPreparation(inputs: [directory.path], tokenizer: "byte", output: output).run()) {
            XCTAssertTrue("\($0)".contains("already holds a prepared dataset"))
        }
    }

    /// A shard's checksum and largest token are read in one pass of 1 MiB pieces: the checksum equals the whole file's,
    /// and a token outside the vocabulary in a later piece is found; the ranks of a job verify a share of the shards each.
    func testShardsAreVerifiedInOnePassAndByShares() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        var tokens = (0..<700_001).map { Int32($0 % 1000) }  // 1.4 MB: two pieces and a part
        let shard = directory.appendingPathComponent("big.bin")
        let checksum = try TokenShardFormat.uint16.write(tokens[...], to: shard)
        XCTAssertEqual(try TokenShard(url: shard, checksum: checksum, tokensBelow: 1000).count, tokens.count)
        tokens[600_000] = 1000
        let changed = try TokenShardFormat.uint16.write(tokens[...], to: shard)
        XCTAssertThrowsError(try TokenShard(url: shard, checksum: changed, tokensBelow: 1000)) {
            XCTAssertTrue("\($0)".contains("token id 1000 at position 600000"), "\($0)")
        }
        XCTAssertThrowsError(try TokenShard(url: shard, checksum: checksum)) { XCTAssertTrue("\($0)".contains("checksum mismatch")) }

        let output = directory.appendingPathComponent("dataset")
        var preparation = DataPreparation(inputs: [try writeCorpus(in: directory).path], tokenizer: "byte", output: output)
        preparation.shardTokens = 700
        let manifest = try preparation.run()
        XCTAssertGreaterThan(manifest.train.shards.count, 2)
        let damaged = output.appendingPathComponent(manifest.train.shards[1].file)
        var bytes = try Data(contentsOf: damaged)
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: damaged)
        // Shard 1 is the share of rank 1 of 2 (and of rank 1 of 3), not of rank 0.
        XCTAssertNoThrow(try manifest.openShards(manifest.train, in: output, share: (0, 2)))
        XCTAssertThrowsError(try manifest.openShards(manifest.train, in: output, share: (1, 2)))
        XCTAssertThrowsError(try manifest.openShards(manifest.train, in: output, share: (1, 3)))
    }

    /// A token shard among the inputs of `prepare` or tokenizer training is refused: its bytes would be read as one
    /// document of text (and merges trained on them).
    func testTokenShardsAreNotReadAsText() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let corpus = try writeCorpus(in: directory)
        let manifest = try DataPreparation(inputs: [corpus.path], tokenizer: "byte", output: directory.appendingPathComponent("dataset")).run()
        let shard = directory.appendingPathComponent("dataset").appendingPathComponent(manifest.train.shards[0].file)
        try FileManager.default.copyItem(at: shard, to: corpus.appendingPathComponent("tokens.bin"))
        XCTAssertThrowsError(try DataPreparation(inputs: [corpus.path], tokenizer: "byte", output: directory.appendingPathComponent("again")).run()) {
            XCTAssertTrue("\($0)".contains("data: \(corpus.path)/tokens.bin is a token shard (.bin), not text: keel data prepare reads text"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.appendingPathComponent("again").path), "a refused prepare writes nothing")
        XCTAssertThrowsError(try TokenizerTraining.train(inputs: [corpus.path], vocabSize: 300)) {
            XCTAssertTrue("\($0)".contains("tokens.bin is a token shard (.bin), not text: tokenizer training reads text"), "\($0)")
        }
    }

    /// A tokenizer whose documents end with the `eos_token` its `tokenizer_config.json` names (Llama 3's
    /// `<|end_of_text|>`): the dataset keeps that file beside its copy of the tokenizer, so training on the dataset
    /// loads the tokenizer as preparing it did.
    func testDatasetKeepsTheSettingsBesideItsTokenizer() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let vocabulary = try BPEVocabulary(tokens: (0..<256).map { [UInt8($0)] }, merges: [],
                                           specialTokens: ["<|end_of_text|>": 256], pattern: .cl100k)
        let source = directory.appendingPathComponent("tokenizer")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        let json = source.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: json)
        try Data(#"{"eos_token": "<|end_of_text|>"}"#.utf8).write(to: source.appendingPathComponent("tokenizer_config.json"))
        let output = directory.appendingPathComponent("dataset")
        let manifest = try DataPreparation(inputs: [try writeCorpus(in: directory).path], tokenizer: json.path, output: output).run()
        XCTAssertEqual(try manifest.openShards(manifest.train, in: output)[0].tokens().first, 256)
        XCTAssertEqual(try loadTokenizer(output.appendingPathComponent(manifest.tokenizer).path).endOfText, 256)
    }

    /// Files reached through symbolic links in an input directory are read (a Hugging Face cache's snapshot holds
    /// only links), and a link that points nowhere is an error naming it.
    func testLinkedFilesInADirectoryAreRead() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let corpus = try writeCorpus(in: directory)
        let linked = directory.appendingPathComponent("linked")
        try FileManager.default.createDirectory(at: linked, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: corpus.path) {
            try FileManager.default.createSymbolicLink(at: linked.appendingPathComponent(file),
                                                       withDestinationURL: corpus.appendingPathComponent(file))
        }
        let direct = try DataPreparation(inputs: [corpus.path], tokenizer: "byte", output: directory.appendingPathComponent("a")).run()
        let throughLinks = try DataPreparation(inputs: [linked.path], tokenizer: "byte",
                                               output: directory.appendingPathComponent("b")).run()
        XCTAssertEqual(throughLinks.train.documents + throughLinks.val.documents, direct.train.documents + direct.val.documents)
        XCTAssertEqual(throughLinks.train.tokens + throughLinks.val.tokens, direct.train.tokens + direct.val.tokens)
        try FileManager.default.createSymbolicLink(at: linked.appendingPathComponent("gone.txt"),
                                                   withDestinationURL: directory.appendingPathComponent("missing.txt"))
        XCTAssertThrowsError(try DataPreparation(inputs: [linked.path], tokenizer: "byte",
                                                 output: directory.appendingPathComponent("c")).run()) {
            XCTAssertEqual("\($0)", "data: \(linked.path)/gone.txt is a link to \(directory.path)/missing.txt, which does not exist")
        }
    }

    /// A dataset prepared with a `.tiktoken` tokenizer keeps it under its own name, which says its split pattern and
    /// special tokens: under "tokenizer.tiktoken" training could not read it again ("does not say its split pattern").
    func testATiktokenDatasetReadsItsTokenizerAgain() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let cl100k = try DataFixtures.python([DataFixtures.reference, "tiktoken-path"])
        let output = directory.appendingPathComponent("dataset")
        let manifest = try DataPreparation(inputs: [try writeCorpus(in: directory).path], tokenizer: cl100k, output: output).run()
        XCTAssertEqual(manifest.tokenizer, "cl100k_base.tiktoken")
        let reread = try loadTokenizer(output.appendingPathComponent(manifest.tokenizer).path)
        let source = try loadTokenizer(cl100k)
        XCTAssertEqual(reread.endOfText, 100_257)
        XCTAssertEqual(reread.encode(documents[1]), source.encode(documents[1]))
    }

    /// A file named twice — in a directory given and by its own name, or through a link beside it — is read once:
    /// twice, its documents would weigh double and some fall in both splits.
    func testAFileNamedTwiceIsReadOnce() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let corpus = try writeCorpus(in: directory)
        try FileManager.default.createSymbolicLink(at: corpus.appendingPathComponent("again.txt"),
                                                   withDestinationURL: corpus.appendingPathComponent("doc00.txt"))
        let manifest = try DataPreparation(inputs: [corpus.path, corpus.appendingPathComponent("doc01.txt").path, corpus.path + "/"],
                                           tokenizer: "byte", output: directory.appendingPathComponent("dataset")).run()
        XCTAssertEqual(manifest.train.documents + manifest.val.documents, documents.count)
    }

    /// A manifest whose token width is not its shards' is refused, naming the shard (it comes from another dataset).
    func testAShardOfAnotherWidthThanTheManifestsIsRefused() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let output = directory.appendingPathComponent("dataset")
        var manifest = try DataPreparation(inputs: [try writeCorpus(in: directory).path], tokenizer: "byte", output: output).run()
        XCTAssertEqual(manifest.dtype, .uint16)
        manifest.dtype = .uint32
        XCTAssertThrowsError(try manifest.openShards(manifest.train, in: output)) {
            XCTAssertEqual("\($0)", "data: \(manifest.train.shards[0].file) holds uint16 tokens, the manifest says uint32")
        }
    }

    /// A manifest of another layout version is refused, naming it, rather than misread.
    func testAManifestOfAnotherVersionIsRefused() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let output = directory.appendingPathComponent("dataset")
        var manifest = try DataPreparation(inputs: [try writeCorpus(in: directory).path], tokenizer: "byte", output: output).run()
        manifest.version = 2
        try manifest.write(to: output)
        XCTAssertThrowsError(try ShardManifest.read(from: output)) {
            XCTAssertTrue("\($0)".contains("is a version 2 dataset; this Keel reads version 1"), "\($0)")
        }
    }

    /// A preparation that fails after writing shards (a bad line in its last file) leaves a directory that existed with
    /// its own files only, and one that it made not at all; shards left by a killed run's staging go with the next run.
    func testAFailedPreparationLeavesNoShards() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let corpus = try writeCorpus(in: directory)
        // Documents are tokenised in batches of 4,096: the first batch's shards are written before the bad line is read.
        let lines = String(repeating: "{\"text\": \"fine\"}\n", count: 4_100) + "{\"text\": 5}\n"
        try Data(lines.utf8).write(to: corpus.appendingPathComponent("zz.jsonl"))
        let existing = directory.appendingPathComponent("existing")
        try FileManager.default.createDirectory(at: existing, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: existing.appendingPathComponent("notes.txt"))
        for output in [existing, directory.appendingPathComponent("new")] {
            var preparation = DataPreparation(inputs: [corpus.path], tokenizer: "byte", output: output)
            preparation.shardTokens = 100
            XCTAssertThrowsError(try preparation.run()) { XCTAssertTrue("\($0)".contains("zz.jsonl: line 4101"), "\($0)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: existing.path), ["notes.txt"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.appendingPathComponent("new").path))

        try FileManager.default.removeItem(at: corpus.appendingPathComponent("zz.jsonl"))
        let leftover = existing.appendingPathComponent(DataPreparation.stagingName)
        try FileManager.default.createDirectory(at: leftover, withIntermediateDirectories: true)
        try Data("partial".utf8).write(to: leftover.appendingPathComponent("train_000007.bin"))
        var preparation = DataPreparation(inputs: [corpus.path], tokenizer: "byte", output: existing)
        preparation.shardTokens = 100
        let manifest = try preparation.run()
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: existing.path))
        XCTAssertEqual(names, Set(["notes.txt", ShardManifest.fileName] + (manifest.train.shards + manifest.val.shards).map(\.file)))
        XCTAssertEqual(try ShardManifest.read(from: existing), manifest)
    }

    func testEmptyInputIsAnError() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        try Data().write(to: directory.appendingPathComponent("empty.txt"))
        XCTAssertThrowsError(try DataPreparation(inputs: [directory.path], tokenizer: "byte",
                                                 output: directory.appendingPathComponent("out")).run()) {
            XCTAssertTrue("\($0)".contains("no documents"))
        }
    }
}
