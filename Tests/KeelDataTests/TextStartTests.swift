import Foundation
import KeelData
import XCTest

/// The token a text starts with (`TokenizerSettings.beginningOfTextToken(in:)`), as Hugging Face's `tokenizer(text)` puts it there:
/// for each tokenizer.json post-processor and tokenizer_config.json flag in Tests/Reference/text_start.json,
/// transformers' ids of a text, and of a string prompt with its completion (what TRL's trainers encode), are Keel's.
final class TextStartTests: XCTestCase {
    private let source = DataFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/dpo_trl/model")

    /// A directory with the fixture tokenizer, its post-processor replaced by `processor` (nil: none) and `keys` added
    /// to its tokenizer_config.json; returns its tokenizer.json's path.
    private func tokenizerFile(processor: Any?, keys: [String: Any]) throws -> String {
        let directory = try DataFixtures.temporaryDirectory(self)
        func object(_ name: String) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent(name))) as? [String: Any])
        }
        var tokenizer = try object("tokenizer.json")
        tokenizer["post_processor"] = processor ?? NSNull()
        var config = try object("tokenizer_config.json")
        config.merge(keys) { $1 }
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: directory.appendingPathComponent("tokenizer.json"))
        try JSONSerialization.data(withJSONObject: config).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        return directory.appendingPathComponent("tokenizer.json").path
    }

    func testTheTextStartsAsTransformersStartsIt() throws {
        let fixture = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: DataFixtures.repositoryRoot
            .appendingPathComponent("Tests/Reference/text_start.json"))) as? [String: Any])
        let text = try XCTUnwrap(fixture["text"] as? String)
        let prompt = try XCTUnwrap(fixture["prompt"] as? String), completion = try XCTUnwrap(fixture["completion"] as? String)
        let cases = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 7)
        var started = 0
        for entry in cases {
            let name = try XCTUnwrap(entry["name"] as? String)
            let path = try tokenizerFile(processor: entry["post_processor"], keys: try XCTUnwrap(entry["config"] as? [String: Any]))
            let tokenizer = try loadTokenizer(path), settings = TokenizerSettings(besides: path)
            let start = settings.beginningOfTextToken(in: tokenizer)
            let expected = try XCTUnwrap(entry["text"] as? [Int]).map(Int32.init)
            XCTAssertEqual((start.map { [$0] } ?? []) + tokenizer.encode(text), expected, name)
            // A string prompt and completion as SFT, DPO and reward training read them: transformers' ids of the
            // whole, then the end-of-sequence token (id 0 here), the completion's tokens trained on.
            let formatter = try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 0, textStart: start)
            let example = formatter.example(prompt: prompt, completion: completion)
            XCTAssertEqual(example.tokens, try XCTUnwrap(entry["prompt_completion"] as? [Int]).map(Int32.init) + [0], name)
            XCTAssertFalse(example.trained.first!, "\(name): the start is not trained on")
            let task = try formatter.taskPrompt(json: #"{"prompt": "\#(prompt)"}"#)
            XCTAssertEqual(task.tokens, (start.map { [$0] } ?? []) + tokenizer.encode(prompt), name)
            if start != nil { started += 1 }
        }
        XCTAssertEqual(started, 4, "four of the cases start their texts with a token")
    }

    /// Pretraining text starts each document as transformers' `tokenizer(text)` starts it: prepared shards hold
    /// end-of-text (llm.c's separator) then those ids, and a corpus read at start-up (`data.paths`, `keel eval`'s files)
    /// holds those ids then end-of-text, for a tokenizer with a start and one without.
    func testDocumentsStartAsTransformersStartsThem() throws {
        let fixture = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: DataFixtures.repositoryRoot
            .appendingPathComponent("Tests/Reference/text_start.json"))) as? [String: Any])
        let text = try XCTUnwrap(fixture["text"] as? String)
        let cases = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        for name in ["template with a start", "no start"] {
            let entry = try XCTUnwrap(cases.first { $0["name"] as? String == name })
            let path = try tokenizerFile(processor: entry["post_processor"], keys: try XCTUnwrap(entry["config"] as? [String: Any]))
            let expected = try XCTUnwrap(entry["text"] as? [Int]).map(Int32.init)
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            let corpus = directory.appendingPathComponent("corpus.jsonl")
            let line = String(decoding: try JSONSerialization.data(withJSONObject: ["text": text]), as: UTF8.self)
            try Data((line + "\n" + line + "\n").utf8).write(to: corpus)
            let endOfText = try loadTokenizer(path).endOfText

            var preparation = DataPreparation(inputs: [corpus.path], tokenizer: path, output: directory.appendingPathComponent("dataset"))
            preparation.validationFraction = 0
            let manifest = try preparation.run()
            let shard = try manifest.openShards(manifest.train, in: preparation.output)[0]
            XCTAssertEqual(shard.tokens(), [endOfText] + expected + [endOfText] + expected, name)
            XCTAssertEqual(manifest.train.tokens, 2 * (expected.count + 1), name)
            XCTAssertEqual(manifest.separatorsPerDocument, name == "no start" ? 1 : 2, name)
            XCTAssertEqual(try ShardManifest.read(from: preparation.output), manifest, name)

            let tokenizer = try loadTokenizer(path)
            let read = try TokenCorpus(paths: [corpus.path], tokenizer: tokenizer,
                                       textStart: TokenizerSettings(besides: path).beginningOfTextToken(in: tokenizer),
                                       vocabSize: tokenizer.vocabSize, validationFraction: 0)
            XCTAssertEqual(read.train, expected + [endOfText] + expected + [endOfText], name)
        }
    }

    /// A tokenizer.json without a post-processor (a GGUF import's, before imports wrote one) starts texts as
    /// `add_bos_token` says, as llama.cpp reads the GGUF's flag; a conversation gets no start beyond its template's.
    func testWithoutAPostProcessorTheConfigSays() throws {
        let path = try tokenizerFile(processor: nil, keys: ["bos_token": "<|im_start|>", "add_bos_token": true])
        let tokenizer = try loadTokenizer(path)
        XCTAssertEqual(TokenizerSettings(besides: path).beginningOfTextToken(in: tokenizer), 1)
        let none = try tokenizerFile(processor: nil, keys: ["bos_token": "<|im_start|>"])
        XCTAssertNil(TokenizerSettings(besides: none).beginningOfTextToken(in: tokenizer))
        // Token 0 as the start: ChatML's text starts with <|im_start|> (1), so a start put before it would show.
        let formatter = try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 0, textStart: 0)
        let chat = try formatter.example(json: #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}"#)
        XCTAssertEqual(chat.tokens, try SupervisedFormatter(template: nil, tokenizer: tokenizer, endOfSequence: 0)
            .example(json: #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}"#).tokens)
    }

    /// A BERT- or RoBERTa-style post-processor starts a text with its `cls` token (its id as the processor names it);
    /// the `sep` it puts after the text is not added (Keel ends training texts itself).
    func testBertAndRobertaProcessorsStartWithTheirClassToken() throws {
        for type in ["BertProcessing", "RobertaProcessing"] {
            // "<s>" is not in the vocabulary: the id the processor names is what counts, as in transformers.
            let path = try tokenizerFile(processor: ["type": type, "cls": ["<s>", 1], "sep": ["</s>", 2],
                                                     "trim_offsets": true, "add_prefix_space": false], keys: [:])
            XCTAssertEqual(TokenizerSettings(besides: path).beginningOfTextToken(in: try loadTokenizer(path)), 1, type)
        }
    }

    /// The tokenizer.json Keel writes for a model whose texts start with a token says so to Hugging Face's tokenizers
    /// (a GGUF import's: llama.cpp puts its BOS first), and Keel reads it back.
    func testAWrittenTokenizerKeepsItsTextStart() throws {
        let tokenizer = try XCTUnwrap(try loadTokenizer(source.appendingPathComponent("tokenizer.json").path) as? BPETokenizer)
        let directory = try DataFixtures.temporaryDirectory(self)
        let written = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(tokenizer.vocabulary, textStart: "<|im_start|>", to: written)
        XCTAssertEqual(TokenizerSettings(besides: written.path).beginningOfTextToken(in: try loadTokenizer(written.path)), 1)
        XCTAssertThrowsError(try TokenizerFiles.writeHuggingFace(tokenizer.vocabulary, textStart: "<s>", to: written)) {
            XCTAssertTrue("\($0)".contains("<s> is not one of the vocabulary's special tokens"), "\($0)")
        }
    }
}
