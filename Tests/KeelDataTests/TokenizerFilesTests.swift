import Foundation
import KeelCore
import KeelData
import XCTest

final class TokenizerFilesTests: XCTestCase {
    private func trained(_ directory: URL) throws -> BPEVocabulary {
        let corpus = directory.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the cat sat on the mat; the rat ate the hat. ", count: 40).utf8).write(to: corpus)
        return try TokenizerTraining.train(inputs: [corpus.path], vocabSize: 280)
    }

    /// The end-of-turn tokens a reply stops at are the tokenizer's special tokens among llama.cpp's list, whatever its
    /// end of sequence: Phi's `<|end|>` and Llama 3's `<|eot_id|>` as well as ChatML's; a text that is not a special
    /// token (spelled in ordinary tokens) is not one.
    func testEndOfTurnTokensAreTheTokenizersSpecialOnes() throws {
        let characters = (0..<256).map { String(TokenizerFiles.byteToCharacter[$0]) }
        let tokenizer = try GGUFVocabulary(tokens: ["<|endoftext|>", "<|end|>", "<|eot_id|>", "<|user|>"] + characters,
                                           types: [3, 3, 3, 3] + Array(repeating: 1, count: 256), merges: [], preTokenizer: "gpt-2",
                                           endOfText: 0).tokenizer()
        XCTAssertEqual(EndOfTurn.tokens(in: tokenizer).map(\.text), ["<|eot_id|>", "<|end|>", "<|endoftext|>"])
        XCTAssertEqual(EndOfTurn.tokens(in: tokenizer).map(\.token), [2, 1, 0])
    }

    /// A chat template in chat_template.jinja wins over one in tokenizer_config.json, as in transformers; either
    /// alone is read.
    func testTheChatTemplateFileWinsOverTheConfigs() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        try Data(#"{"chat_template": "config's", "eos_token": "</s>"}"#.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        XCTAssertEqual(TokenizerSettings(directory: directory).chatTemplate, "config's")
        try Data("file's".utf8).write(to: directory.appendingPathComponent("chat_template.jinja"))
        XCTAssertEqual(TokenizerSettings(directory: directory).chatTemplate, "file's")
        XCTAssertEqual(TokenizerSettings(directory: directory).endOfSequence, "</s>")
        // A repository that names its special tokens only in special_tokens_map.json (GPT-2's, older ones): read there.
        try Data(#"{"chat_template": "config's"}"#.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        try Data(#"{"bos_token": {"content": "<s>", "special": true}, "eos_token": "<|endoftext|>"}"#.utf8)
            .write(to: directory.appendingPathComponent("special_tokens_map.json"))
        XCTAssertEqual(TokenizerSettings(directory: directory).endOfSequence, "<|endoftext|>")
        XCTAssertEqual(TokenizerSettings(directory: directory).beginningOfText, "<s>")
        XCTAssertEqual(try TokenizerSettings.files(in: directory).map(\.name).sorted(),
                       ["chat_template.jinja", "special_tokens_map.json", "tokenizer_config.json"], "they travel with the tokenizer")
    }

    /// The tokenizer files of a Hugging Face export: a checkpoint's tokenizer.json byte for byte with its settings, its
    /// tokenizer_config.json naming PreTrainedTokenizerFast where it named no class (and kept where it did); one written
    /// where there is none, with the end of sequence and beginning of text; the byte tokenizer as a tokenizer.json that
    /// Keel reads to the same ids; none for a tiktoken file.
    func testHuggingFaceExportTokenizerFiles() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let json = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(try trained(directory), to: json)
        let tokenizer = try loadTokenizer(json.path)
        func files(_ tokenizer: any TextTokenizer, _ path: String, start: Int32? = nil) throws -> [String: Data] {
            let files = try XCTUnwrap(try HuggingFaceTokenizer.files(for: tokenizer, at: path, endOfSequence: tokenizer.endOfText,
                                                                     beginningOfText: start, contextLength: 64))
            return Dictionary(uniqueKeysWithValues: files.map { ($0.name, $0.contents) })
        }
        func config(_ data: Data?) throws -> NSDictionary {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: XCTUnwrap(data)) as? NSDictionary)
        }
        var written = try files(tokenizer, json.path, start: tokenizer.endOfText - 1)
        XCTAssertEqual(written["tokenizer.json"], try Data(contentsOf: json))
        XCTAssertEqual(try config(written["tokenizer_config.json"]), [
            "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
            "bos_token": try tokenizer.decodeText([tokenizer.endOfText - 1]), "model_max_length": 64, "clean_up_tokenization_spaces": false,
        ] as NSDictionary)
        try Data(#"{"eos_token": "<|endoftext|>"}"#.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        try Data("{{ messages }}".utf8).write(to: directory.appendingPathComponent("chat_template.jinja"))
        written = try files(tokenizer, json.path)
        XCTAssertEqual(Set(written.keys), ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"])
        XCTAssertEqual(try config(written["tokenizer_config.json"]), ["tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"] as NSDictionary)
        XCTAssertEqual(written["chat_template.jinja"], Data("{{ messages }}".utf8))
        let named = Data(#"{"tokenizer_class": "GPT2Tokenizer"}"#.utf8)
        try named.write(to: directory.appendingPathComponent("tokenizer_config.json"))
        XCTAssertEqual(try files(tokenizer, json.path)["tokenizer_config.json"], named)

        let bytes = try files(ByteTokenizer(), "byte")
        let bytesFile = directory.appendingPathComponent("bytes").appendingPathComponent("tokenizer.json")
        try AtomicFile.createDirectory(bytesFile.deletingLastPathComponent())
        try AtomicFile.write(try XCTUnwrap(bytes["tokenizer.json"]), to: bytesFile)
        let reread = try loadTokenizer(bytesFile.path)
        XCTAssertEqual(reread.vocabSize, 257)
        XCTAssertEqual(reread.endOfText, 256)
        XCTAssertEqual(reread.encode("Hé, \u{1}\u{FF}"), "Hé, \u{1}\u{FF}".utf8.map(Int32.init))
        XCTAssertEqual(try config(bytes["tokenizer_config.json"])["eos_token"] as? String, "<|endoftext|>")

        let tiktoken = directory.appendingPathComponent("mine.tiktoken")
        try TokenizerFiles.writeTiktoken(try trained(directory), to: tiktoken)
        XCTAssertNil(try HuggingFaceTokenizer.files(for: tokenizer, at: tiktoken.path, endOfSequence: 0, beginningOfText: nil, contextLength: 64))
    }

    /// An added token that is not special (Phi-2's runs of spaces: `"special": false`; a GGUF file's user-defined
    /// tokens) is matched in every text, as `tokenizers` and llama.cpp match it — where a special token's spelling is
    /// still read as text; written back, it stays not special.
    func testAddedTokensThatAreNotSpecialAreMatchedInText() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let url = directory.appendingPathComponent("tokenizer.json")
        try Self.byteLevelFile(added: [[256, "<|endoftext|>", true], [257, "  ", false], [258, "   ", false]]).write(to: url)
        let vocabulary = try TokenizerFiles.load(url.path)
        XCTAssertEqual(vocabulary.textAddedTokens, ["  ", "   "])
        let tokenizer = try BPETokenizer(vocabulary: vocabulary, origin: url.path)
        // "a  b" is [a, "  ", b]; four spaces are the longest match, then a space; the special token's text is text.
        XCTAssertEqual(tokenizer.encode("a  b"), [97, 257, 98])
        XCTAssertEqual(tokenizer.encode("    x"), [258, 32, 120])
        XCTAssertEqual(tokenizer.encode("<|endoftext|>").count, 13)
        XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens("a<|endoftext|>  "), [97, 256, 257])
        let written = directory.appendingPathComponent("written.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: written)
        XCTAssertEqual(try TokenizerFiles.load(written.path).textAddedTokens, ["  ", "   "])
        // llama.cpp's user-defined tokens (type 4) are the same kind.
        let characters = (0..<256).map { String(TokenizerFiles.byteToCharacter[$0]) }
        let gguf = try GGUFVocabulary(tokens: characters + ["<|endoftext|>", "  "], types: Array(repeating: 1, count: 256) + [3, 4],
                                      merges: [], preTokenizer: "gpt-2", endOfText: 256).tokenizer()
        XCTAssertEqual(gguf.encode("a  b"), [97, 257, 98])
    }

    /// Added tokens' `lstrip`, `rstrip` and `single_word` flags are applied as `tokenizers` applies them: the expected
    /// ids are what `tokenizers` 0.23.3 gives for the same file (`Tokenizer.from_str(...).encode(text,
    /// add_special_tokens=False).ids`); Keel gave [97, 32, 32, 256, 32, 98] for the first (the flags unread).
    func testAddedTokensTakeTheWhitespaceTheirFlagsSay() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let url = directory.appendingPathComponent("tokenizer.json")
        try Self.byteLevelFile(added: [[256, "<mask>", true, ["lstrip": true]], [257, "<|end|>", true, ["rstrip": true]],
                                       [258, "<w>", false, ["single_word": true]],
                                       [259, "<both>", true, ["lstrip": true, "rstrip": true]], [260, "<|endoftext|>", true]]).write(to: url)
        let tokenizer = try BPETokenizer(vocabulary: TokenizerFiles.load(url.path), origin: url.path)
        let expected: [(String, [Int32])] = [
            ("a  <mask> b", [97, 256, 32, 98]), ("<|end|>\n\n x", [257, 120]), ("x<w>y", [120, 60, 119, 62, 121]),
            ("x <w> y", [120, 32, 258, 32, 121]), ("<w>", [258]), ("\u{e9}<w>", [195, 169, 60, 119, 62]),
            ("_<w>", [95, 60, 119, 62]), ("<|end|> <mask>", [257, 256]), ("a\u{3000}\u{a0}<mask>", [97, 256]),
            ("a\t<both>\r\n b", [97, 259, 98]), ("<w>1", [60, 119, 62, 49]), ("\u{2003}<mask>\u{2003}", [256, 226, 128, 131]),
        ]
        for (text, ids) in expected { XCTAssertEqual(tokenizer.encodeRecognizingSpecialTokens(text), ids, text) }
        // The token that is not special stands alone in ordinary text too; written back, the flags stay.
        XCTAssertEqual(tokenizer.encode("x <w> y"), [120, 32, 258, 32, 121])
        let written = directory.appendingPathComponent("written.json")
        try TokenizerFiles.writeHuggingFace(TokenizerFiles.load(url.path), to: written)
        XCTAssertEqual(try TokenizerFiles.load(written.path).addedTokenRules,
                       [256: .takesWhitespaceBefore, 257: .takesWhitespaceAfter, 258: .standsAlone, 259: [.takesWhitespaceBefore, .takesWhitespaceAfter]])
    }

    /// Files that trapped (two added tokens on one id) or asked for gigabytes (an id of two billion) are one error.
    func testAddedTokensOnOneIdAndHugeIdsAreRefused() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        func error(_ file: Data) throws -> String {
            let url = directory.appendingPathComponent("bad.json")
            try file.write(to: url)
            do { _ = try TokenizerFiles.load(url.path) } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertTrue(try error(Self.byteLevelFile(added: [[256, "<a>", true], [256, "<b>", true]])).hasSuffix("the added tokens <a> and <b> both have id 256"))
        XCTAssertTrue(try error(Self.byteLevelFile(added: [[2_000_000_000, "<a>", true]]))
                        .contains("an entry of added_tokens lacks its content or an id from 0 to 16777215"))
        XCTAssertTrue(try error(Self.byteLevelFile(added: [], extra: ["a": 2_000_000_000])).hasSuffix("model.vocab has id 2000000000, past 16777215"))
    }

    /// A byte-level tokenizer.json of the 256 bytes (GPT-2's spelling), `extra` vocabulary entries, and `added` tokens
    /// ([id, content, special], and a dictionary of flags — `lstrip` and the like — as a fourth element).
    private static func byteLevelFile(added: [[Any]], extra: [String: Int] = [:]) throws -> Data {
        var vocab = Dictionary(uniqueKeysWithValues: (0..<256).map { (String(TokenizerFiles.byteToCharacter[$0]), $0) })
        vocab.merge(extra) { $1 }
        let root: [String: Any] = [
            "model": ["type": "BPE", "vocab": vocab, "merges": [String]()], "pre_tokenizer": ["type": "ByteLevel"],
            "added_tokens": added.map { ["id": $0[0], "content": $0[1], "special": $0[2]].merging($0.count > 3 ? $0[3] as! [String: Bool] : [:]) { $1 } },
        ]
        return try JSONSerialization.data(withJSONObject: root)
    }

    func testTiktokenFileRoundTrip() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let vocabulary = try trained(directory)
        let url = directory.appendingPathComponent("mine.tiktoken")
        try TokenizerFiles.writeTiktoken(vocabulary, to: url)
        XCTAssertThrowsError(try TokenizerFiles.load(url.path)) { XCTAssertTrue("\($0)".contains("--pattern")) }
        // A trained file named like GPT-2's is not taken for it (its special tokens, its 50,257 ids): its ranks say so.
        let named = directory.appendingPathComponent("gpt2-small.tiktoken")
        try TokenizerFiles.writeTiktoken(vocabulary, to: named)
        XCTAssertThrowsError(try TokenizerFiles.load(named.path)) { XCTAssertTrue("\($0)".contains("--pattern"), "\($0)") }
        XCTAssertEqual(try TokenizerFiles.load(named.path, pattern: .gpt2).specialTokens, [:])
        let reloaded = try TokenizerFiles.load(url.path, pattern: .gpt2)
        XCTAssertEqual(reloaded.ordinaryCount, vocabulary.ordinaryCount)
        for id in 0..<vocabulary.ordinaryCount {
            XCTAssertEqual(reloaded.bytes(of: Int32(id)), vocabulary.bytes(of: Int32(id)))
        }
        // Byte-string ranks (tiktoken) and merge ranks give the same ids for a trained vocabulary.
        let text = "the cat ate the rat that sat on a mat"
        XCTAssertEqual(try BPEEncoder(vocabulary: reloaded).encode(text), try BPEEncoder(vocabulary: vocabulary).encode(text))
    }

    func testMalformedTokenizerFilesNameTheProblem() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        func check(_ name: String, _ contents: String, _ fragment: String, line: UInt = #line) throws {
            let url = directory.appendingPathComponent(name)
            try Data(contents.utf8).write(to: url)
            XCTAssertThrowsError(try TokenizerFiles.load(url.path, pattern: .gpt2), line: line) {
                XCTAssertTrue("\($0)".contains(fragment), "\($0)", line: line)
                XCTAssertTrue("\($0)".contains(url.path), "\($0)", line: line)
            }
        }
        try check("bad.tiktoken", "QQ== 0\nnot base64 at all\n", "line 2")
        try check("padding.tiktoken", "QQ== 0\n\nQ=Q= 1\n", "line 3")
        try check("rank.tiktoken", "QQ== 0\nQg== 1x\n", "line 2")
        try check("norank.tiktoken", "QQ==\n", "line 1")
        try check("length.tiktoken", "QQ= 0\n", "line 1")
        try check("huge.tiktoken", "QQ== 99999999999\n", "line 1")
        try check("bytes.tiktoken", "QQ== 0\n", "no token for byte")
        try check("tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"}}", "byte-level BPE")
        try check("nomodel.json", "[1, 2]", "not a Hugging Face tokenizer.json")
        // Steps that change the ids and that Keel does not run (GPT-NeoX's files normalize to NFC).
        let bpe = #""model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}"#
        try check("nfc.json", #"{"normalizer": {"type": "NFC"}, "# + bpe + "}", "has a normalizer (NFC), which Keel does not run")
        try check("suffix.json", #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "end_of_word_suffix": "</w>"}, "pre_tokenizer": {"type": "ByteLevel"}}"#,
                  #"model.end_of_word_suffix is "</w>""#)
        try check("invert.json", #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}, "behavior": "Removed", "invert": false}, {"type": "ByteLevel", "use_regex": false}]}}"#,
                  "unsupported pre_tokenizer")
        let isolated = directory.appendingPathComponent("isolated.json")
        try String(contentsOf: directory.appendingPathComponent("invert.json"), encoding: .utf8)
            .replacingOccurrences(of: "Removed", with: "Isolated").write(to: isolated, atomically: true, encoding: .utf8)
        XCTAssertEqual(try TokenizerFiles.load(isolated.path, pattern: .gpt2).pattern, .gpt2, "the same Split, isolating, loads")
        XCTAssertThrowsError(try TokenizerFiles.load(directory.appendingPathComponent("absent.json").path)) {
            XCTAssertTrue("\($0)".contains("no such file"))
        }
    }

    func testTokenizerJSONDeclaresItsPreTokenizer() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let url = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(try trained(directory), to: url)
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let model = root["model"] as! [String: Any]
        XCTAssertEqual(model["type"] as? String, "BPE")
        XCTAssertEqual(model["ignore_merges"] as? Bool, false)
        XCTAssertEqual((root["pre_tokenizer"] as! [String: Any])["type"] as? String, "ByteLevel")
        let added = root["added_tokens"] as! [[String: Any]]
        XCTAssertEqual(added.first?["content"] as? String, "<|endoftext|>")
        XCTAssertEqual(added.first?["id"] as? Int, (model["vocab"] as! [String: Int]).count)
    }

    /// A tokenizer as llama.cpp's GGUF lists it: the same token spellings and merges as the tokenizer.json that
    /// Hugging Face's library reads, special tokens as control tokens, padding ids as unused ones.
    func testGGUFVocabularySpellsTokensAsTokenizerJSONDoes() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let vocabulary = try trained(directory)
        let url = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: url)
        let model = (try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any])["model"] as! [String: Any]
        let tokenizer = try BPETokenizer(vocabulary: vocabulary, origin: "test")
        let gguf = try GGUFVocabulary(tokenizer, size: vocabulary.size + 3)
        XCTAssertEqual(gguf.merges, model["merges"] as! [String])
        for (text, id) in model["vocab"] as! [String: Int] {
            XCTAssertEqual(gguf.tokens[id], text)
            XCTAssertEqual(gguf.types[id], .normal)
        }
        XCTAssertEqual(gguf.tokens[Int(tokenizer.endOfText)], "<|endoftext|>")
        XCTAssertEqual(gguf.types[Int(tokenizer.endOfText)], .control)
        XCTAssertEqual(Array(gguf.tokens.suffix(3)), (vocabulary.size..<(vocabulary.size + 3)).map { "[PAD\($0)]" })
        XCTAssertEqual(gguf.types.last, .unused)
        XCTAssertEqual(gguf.preTokenizer, "gpt-2")
        let bytes = try GGUFVocabulary(ByteTokenizer(), size: 257)
        XCTAssertEqual(bytes.tokens[32], "Ġ")
        XCTAssertEqual(bytes.tokens[65], "A")
        XCTAssertThrowsError(try GGUFVocabulary(tokenizer, size: 10)) {
            XCTAssertEqual("\($0)", "the tokenizer has \(vocabulary.size) tokens, more than the model's vocabulary of 10")
        }
    }

    /// llama.cpp's Llama 3 pre-tokenizer ("llama-bpe") emits a piece that is itself a token whole, as Hugging Face's
    /// `ignore_merges` does; DBRX's ("dbrx", the same split) merges. "abc" is a token that merging "abc" does not
    /// reach (b+c merges first, and nothing joins a with bc). Written back, each keeps its name, and tokenizer.json
    /// its flag.
    func testLlama3GGUFVocabularyIgnoresMergesAsLlamaCppDoes() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let spell = { (byte: Int) in String(TokenizerFiles.byteToCharacter[byte]) }
        let tokens = (0..<256).map(spell) + ["bc", "ab", "abc", "<|endoftext|>"]
        for (pre, expected) in [("llama-bpe", [Int32(258)]), ("llama3", [258]), ("dbrx", [97, 256]), ("gpt-2", [97, 256])] {
            let lists = try GGUFVocabulary(tokens: tokens, types: Array(repeating: 1, count: 259) + [3],
                                           merges: ["b c", "a b", "ab c"], preTokenizer: pre, endOfText: 259)
            let tokenizer = try XCTUnwrap(lists.tokenizer() as? BPETokenizer)
            XCTAssertEqual(tokenizer.encode("abc"), expected, pre)
            XCTAssertEqual(try GGUFVocabulary(tokenizer, size: 260).preTokenizer, pre == "llama3" ? "llama-bpe" : pre)
            let url = directory.appendingPathComponent("\(pre).json")
            try TokenizerFiles.writeHuggingFace(tokenizer.vocabulary, to: url)
            let model = (try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any])["model"] as! [String: Any]
            XCTAssertEqual(model["ignore_merges"] as? Bool, expected.count == 1, pre)
            XCTAssertEqual(try XCTUnwrap(loadTokenizer(url.path) as? BPETokenizer).encode("abc"), expected, pre)
        }
    }

    /// A vocabulary whose documents end with another special token (Llama 3's `<|end_of_text|>`) loads when the
    /// `tokenizer_config.json` beside it names that token its `eos_token` (and a GGUF file its EOS), and is refused,
    /// naming what is missing, when nothing does.
    func testEndOfSequenceNamedBesideTheTokenizer() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-eos-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bytes = (0..<256).map { [UInt8($0)] }
        let vocabulary = try BPEVocabulary(tokens: bytes, merges: [], specialTokens: ["<|end_of_text|>": 256, "<|begin_of_text|>": 257],
                                           pattern: .cl100k)
        let json = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: json)
        XCTAssertThrowsError(try loadTokenizer(json.path)) {
            XCTAssertEqual("\($0)", "tokenizer: \(json.path) has no <|endoftext|> special token to separate documents")
        }
        try Data(#"{"eos_token": {"content": "<|end_of_text|>"}}"#.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        XCTAssertEqual(try loadTokenizer(json.path).endOfText, 256)
        try Data(#"{"eos_token": "<|missing|>"}"#.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        XCTAssertThrowsError(try loadTokenizer(json.path)) {
            XCTAssertEqual("\($0)", "tokenizer: \(json.path) has no <|endoftext|> special token to separate documents (nor <|missing|>)")
        }
        // A GGUF file's lists: its EOS (a control token) separates documents.
        let spell = { (byte: Int) in String(TokenizerFiles.byteToCharacter[byte]) }
        let lists = try GGUFVocabulary(tokens: (0..<256).map(spell) + ["<|end_of_text|>"], types: Array(repeating: 1, count: 256) + [3],
                                       merges: [], preTokenizer: "llama-bpe", endOfText: 256)
        XCTAssertEqual(try lists.tokenizer().endOfText, 256)
    }
}
