import Foundation
import KeelCore

/// Reading and writing BPE vocabularies in the formats other tools use:
/// tiktoken's `.tiktoken` rank files and Hugging Face's `tokenizer.json`.
public enum TokenizerFiles {
    /// Loads `path` by its extension: `.tiktoken` or `.json` (Hugging Face).
    ///
    /// A `.tiktoken` file holds only ranks: its split pattern and special tokens come from `pattern`, or
    /// from the file name for the standard vocabularies (cl100k_base, r50k_base/gpt2) — when the file holds as many
    /// ranks as that vocabulary (a trained file named `gpt2-small.tiktoken` is not GPT-2's).
    public static func load(_ path: String, pattern: SplitPattern? = nil) throws -> BPEVocabulary {
        do {
            return try loadUnnamed(path, pattern: pattern)
        } catch let error as KeelError where !error.message.contains(path) {
            // Vocabulary checks do not know the file; say which one it was.
            throw KeelError(error.message.replacingOccurrences(of: "tokenizer: ", with: "tokenizer: \(path): ", options: .anchored))
        }
    }

    private static func loadUnnamed(_ path: String, pattern: SplitPattern?) throws -> BPEVocabulary {
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: path) else { throw KeelError("tokenizer: \(path): no such file") }
        guard let data = try? Data(contentsOf: url) else { throw KeelError("tokenizer: \(path): cannot read") }
        if url.pathExtension == "tiktoken" {
            let name = url.deletingPathExtension().lastPathComponent
            let ranked = try RankedTokens(tiktoken: data, path: path)
            let known = knownTiktoken(name).flatMap { $0.ranks == ranked.count ? $0 : nil }
            guard let split = pattern ?? known?.pattern else {
                throw KeelError("tokenizer: \(path): a .tiktoken file does not say its split pattern; pass --pattern \(SplitPattern.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return try BPEVocabulary(ranked: ranked, specialTokens: known?.specials ?? [:], pattern: split)
        }
        return try parseHuggingFace(data, path: path)
    }

    /// Special tokens, pattern and number of ranks of the standard OpenAI vocabularies, by file name.
    static func knownTiktoken(_ name: String) -> (pattern: SplitPattern, specials: [String: Int32], ranks: Int)? {
        if name.hasPrefix("cl100k_base") {
            return (.cl100k, ["<|endoftext|>": 100_257, "<|fim_prefix|>": 100_258, "<|fim_middle|>": 100_259,
                              "<|fim_suffix|>": 100_260, "<|endofprompt|>": 100_276], 100_256)
        }
        if name.hasPrefix("r50k_base") || name.hasPrefix("gpt2") { return (.gpt2, ["<|endoftext|>": 50_256], 50_256) }
        return nil
    }

    /// Writes the ordinary tokens as a `.tiktoken` rank file (ranks are ids).
    public static func writeTiktoken(_ vocabulary: BPEVocabulary, to url: URL) throws {
        var text = ""
        for id in 0..<vocabulary.ordinaryCount {
            let bytes = vocabulary.bytes(of: Int32(id))
            if !bytes.isEmpty { text += Data(bytes).base64EncodedString() + " \(id)\n" }
        }
        try AtomicFile.write(Data(text.utf8), to: url)
    }

    // MARK: - Hugging Face tokenizer.json

    /// GPT-2's reversible map from bytes to printable characters, used for the vocabulary's keys.
    public static let byteToCharacter: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var characters = printable.map { Character(Unicode.Scalar(UInt32($0))!) }
        var extra = 0
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            characters.append(Character(Unicode.Scalar(UInt32(256 + extra))!))
            extra += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (byte, character) in zip(printable, characters) { table[byte] = character }
        return table
    }()

    static let characterToByte: [Character: UInt8] = Dictionary(
        uniqueKeysWithValues: byteToCharacter.enumerated().map { ($1, UInt8($0)) })

    static func encodeKey(_ bytes: some Sequence<UInt8>) -> String {
        String(bytes.map { byteToCharacter[Int($0)] })
    }

    static func decodeKey(_ key: String, path: String) throws -> [UInt8] {
        try key.map { character in
            guard let byte = characterToByte[character] else {
                throw KeelError("tokenizer: \(path): vocabulary entry '\(key)' is not byte-level")
            }
            return byte
        }
    }

    /// The regular expressions of Hugging Face `Split` pre-tokenizers, by the pattern each splits as (`tokenizers`
    /// runs them with Oniguruma, where `$` is an end of line, `\z` the end of the text).
    static let splitRegexes: [String: SplitPattern] = [
        #"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
        // tiktoken's cl100k: with `\s+\z` for its `\s++$`.
        cl100kRegex: .cl100k,
        // Llama 3's own, and what Keel wrote for cl100k before it wrote `\s+\z`.
        llama3Regex: .llama3,
        #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3,
    ]
    static let cl100kRegex = #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+\z|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// A GPT-2-style pair of `vocab.json` (token → id, spelled as tokenizer.json spells it) and `merges.txt` (one
    /// "left right" merge a line after a `#version` header), read as the ByteLevel tokenizer.json they make.
    public static func loadVocabularyAndMerges(vocabulary: URL, merges: URL) throws -> BPEVocabulary {
        guard let vocabData = try? Data(contentsOf: vocabulary),
              let vocab = try? JSONSerialization.jsonObject(with: vocabData) as? [String: Int]
        else { throw KeelError("tokenizer: \(vocabulary.path): not a JSON object of tokens to ids") }
        guard let text = try? String(contentsOf: merges, encoding: .utf8) else {
            throw KeelError("tokenizer: \(merges.path): cannot read")
        }
        let lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.hasPrefix("#version") }
        let added: [[String: Any]] = vocab[BPEVocabulary.endOfTextText].map { [["id": $0, "content": BPEVocabulary.endOfTextText]] } ?? []
        let root: [String: Any] = [
            "model": ["type": "BPE", "vocab": vocab, "merges": lines], "added_tokens": added,
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
        ]
        return try parseHuggingFace(JSONSerialization.data(withJSONObject: root), path: vocabulary.path)
    }

    static func parseHuggingFace(_ data: Data, path: String) throws -> BPEVocabulary {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let model = root["model"] as? [String: Any]
        else { throw KeelError("tokenizer: \(path): not a Hugging Face tokenizer.json (no model)") }
        guard model["type"] as? String == "BPE", let vocab = model["vocab"] as? [String: Int],
              let mergeList = model["merges"] as? [Any]
        else { throw KeelError("tokenizer: \(path): only byte-level BPE models are supported") }
        let pattern = try huggingFacePattern(root["pre_tokenizer"], path: path)
        // Steps Keel does not run would change the ids: refused, rather than encoding otherwise than `tokenizers`.
        if let normalizer = root["normalizer"], !(normalizer is NSNull) {
            let type = (normalizer as? [String: Any])?["type"] as? String ?? "?"
            throw KeelError("tokenizer: \(path): has a normalizer (\(type)), which Keel does not run; byte-level BPE files (GPT-2, Llama 3, SmolLM) have none")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = model[key] as? String, !affix.isEmpty {
                throw KeelError("tokenizer: \(path): model.\(key) is \"\(affix)\"; Keel reads byte-level BPE without one")
            }
        }

        // Added tokens are matched in the text before BPE runs, as `tokenizers` does, so they are special
        // tokens here. Hugging Face's own GPT-2 file also lists `<|endoftext|>` in model.vocab (id 50256):
        // that id then belongs to the special token, not to an ordinary token spelled `<|endoftext|>`.
        // Ids past 2²⁴ (16.7 million; the largest vocabularies hold a few hundred thousand) are a damaged file, not one
        // to allocate a table of tokens for.
        let mostIds = 1 << 24
        var specials: [String: Int32] = [:], textAdded = Set<String>(), rules: [Int32: AddedTokenRule] = [:]
        for case let added as [String: Any] in root["added_tokens"] as? [Any] ?? [] {
            guard let content = added["content"] as? String, let id = added["id"] as? Int, (0..<mostIds).contains(id) else {
                throw KeelError("tokenizer: \(path): an entry of added_tokens lacks its content or an id from 0 to \(mostIds - 1)")
            }
            if let listed = vocab[content], listed != id {
                throw KeelError("tokenizer: \(path): '\(content)' has id \(listed) in model.vocab but \(id) in added_tokens")
            }
            specials[content] = Int32(id)
            if added["special"] as? Bool == false { textAdded.insert(content) }
            rules[Int32(id)] = AddedTokenRule(json: added)
        }
        let largest = vocab.values.max() ?? -1
        guard largest < mostIds else { throw KeelError("tokenizer: \(path): model.vocab has id \(largest), past \(mostIds - 1)") }
        var tokens = [[UInt8]](repeating: [], count: largest + 1)
        for (key, id) in vocab where specials[key] == nil {
            guard id >= 0 else { throw KeelError("tokenizer: \(path): negative id for '\(key)'") }
            tokens[id] = try decodeKey(key, path: path)
        }
        var merges: [(left: Int32, right: Int32)] = []
        merges.reserveCapacity(mergeList.count)
        for (index, entry) in mergeList.enumerated() {
            let parts: [String]
            if let text = entry as? String {
                parts = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else {
                parts = entry as? [String] ?? []
            }
            guard parts.count == 2, let left = vocab[parts[0]], let right = vocab[parts[1]],
                  specials[parts[0]] == nil, specials[parts[1]] == nil
            else { throw KeelError("tokenizer: \(path): merge \(index) is malformed or names unknown or added tokens") }
            merges.append((Int32(left), Int32(right)))
        }
        return try BPEVocabulary(tokens: tokens, merges: merges, specialTokens: specials, pattern: pattern,
                                 emitsWholePieces: model["ignore_merges"] as? Bool ?? false,
                                 textStart: textStart(root["post_processor"], specials: specials), textAddedTokens: textAdded,
                                 addedTokenRules: rules)
    }

    /// What a post-processor puts first in a text's encoding, as `transformers` 5 reads it: a `TemplateProcessing`'s
    /// `single` template's first piece when it is a special token (by the id the template names for it), a
    /// `BertProcessing`'s or `RobertaProcessing`'s `cls`, the first such token of a `Sequence`'s processors, nothing
    /// for the others (`ByteLevel` adds no token); none said without a post-processor.
    static func textStart(_ processor: Any?, specials: [String: Int32]) -> BPEVocabulary.TextStart {
        guard let processor, !(processor is NSNull) else { return .unspecified }
        return leadingToken(of: processor).flatMap { $0.id ?? specials[$0.spelling] }.map { .token($0) } ?? .none
    }

    private static func leadingToken(of processor: Any) -> (spelling: String, id: Int32?)? {
        guard let processor = processor as? [String: Any] else { return nil }
        switch processor["type"] as? String {
        case "TemplateProcessing":
            let first = (processor["single"] as? [[String: Any]])?.first
            guard let spelling = (first?["SpecialToken"] as? [String: Any])?["id"] as? String else { return nil }
            let ids = ((processor["special_tokens"] as? [String: Any])?[spelling] as? [String: Any])?["ids"] as? [Int]
            return (spelling, ids?.first.flatMap { Int32(exactly: $0) })
        case "BertProcessing", "RobertaProcessing":
            guard let cls = processor["cls"] as? [Any], let spelling = cls.first as? String else { return nil }
            return (spelling, (cls.last as? Int).flatMap { Int32(exactly: $0) })
        case "Sequence":
            return (processor["processors"] as? [Any] ?? []).lazy.compactMap(leadingToken).first
        default:
            return nil
        }
    }

    /// The split pattern of a `ByteLevel` pre-tokenizer (GPT-2's regex), or of a `Split` with one of the
    /// known regexes followed by `ByteLevel` without its own regex.
    static func huggingFacePattern(_ value: Any?, path: String) throws -> SplitPattern {
        guard let object = value as? [String: Any], let type = object["type"] as? String else {
            throw KeelError("tokenizer: \(path): pre_tokenizer must be ByteLevel (or Split + ByteLevel)")
        }
        if type == "ByteLevel" {
            guard object["use_regex"] as? Bool ?? true, !(object["add_prefix_space"] as? Bool ?? false) else {
                throw KeelError("tokenizer: \(path): ByteLevel pre_tokenizer must use its regex and no prefix space")
            }
            return .gpt2
        }
        if type == "Sequence", let steps = object["pretokenizers"] as? [[String: Any]], steps.count == 2,
           steps[0]["type"] as? String == "Digits", steps[0]["individual_digits"] as? Bool == true,
           steps[1]["type"] as? String == "ByteLevel", steps[1]["use_regex"] as? Bool ?? true,
           !(steps[1]["add_prefix_space"] as? Bool ?? false) {
            return .gpt2Digits
        }
        if type == "Sequence", let steps = object["pretokenizers"] as? [[String: Any]], steps.count == 2,
           steps[0]["type"] as? String == "Split", steps[1]["type"] as? String == "ByteLevel",
           steps[1]["use_regex"] as? Bool == false,
           steps[0]["behavior"] as? String ?? "Isolated" == "Isolated", !(steps[0]["invert"] as? Bool ?? false),
           let regex = (steps[0]["pattern"] as? [String: Any])?["Regex"] as? String,
           let pattern = splitRegexes[regex] {
            return pattern
        }
        throw KeelError("tokenizer: \(path): unsupported pre_tokenizer (Keel reads ByteLevel, Digits(individual_digits) + ByteLevel, or Split with the GPT-2, cl100k or Llama 3 regex + ByteLevel)")
    }

    /// Writes a Hugging Face `tokenizer.json` for a vocabulary with a merge list (Keel-trained or loaded from
    /// tokenizer.json or a GGUF file, with `ignore_merges` as it has it); `tokenizers.Tokenizer.from_file` loads it
    /// and encodes text to the same ids, after
    /// `textStart` (a special token's spelling) when given, which its post-processor puts before every text.
    public static func writeHuggingFace(_ vocabulary: BPEVocabulary, textStart: String? = nil, to url: URL) throws {
        try AtomicFile.write(huggingFaceJSON(vocabulary, textStart: textStart), to: url)
    }

    /// The contents of the `tokenizer.json` that `writeHuggingFace` writes.
    public static func huggingFaceJSON(_ vocabulary: BPEVocabulary, textStart: String? = nil) throws -> Data {
        guard !(vocabulary.emitsWholePieces && vocabulary.merges.isEmpty) else {
            throw KeelError("tokenizer: a tiktoken vocabulary has no merge list; save it as .tiktoken")
        }
        var vocab: [String: Int] = [:]
        for id in 0..<vocabulary.ordinaryCount {
            let bytes = vocabulary.bytes(of: Int32(id))
            if !bytes.isEmpty { vocab[encodeKey(bytes)] = id }
        }
        let merges = vocabulary.merges.map {
            encodeKey(vocabulary.bytes(of: $0.left)) + " " + encodeKey(vocabulary.bytes(of: $0.right))
        }
        let added: [[String: Any]] = vocabulary.specialTokens.sorted { $0.value < $1.value }.map {
            ["id": Int($0.value), "content": $0.key, "normalized": false, "special": !vocabulary.textAddedTokens.contains($0.key)]
                .merging((vocabulary.addedTokenRules[$0.value] ?? []).json) { first, _ in first }
        }
        let preTokenizer: [String: Any]
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        switch vocabulary.pattern {
        case .gpt2:
            preTokenizer = byteLevel
        case .gpt2Digits:
            preTokenizer = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel]]
        case .cl100k, .llama3:
            let regex = vocabulary.pattern == .cl100k ? cl100kRegex : llama3Regex
            preTokenizer = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ]]
        }
        var postProcessor: Any = NSNull()
        if let textStart {
            guard let id = vocabulary.specialTokens[textStart] else {
                throw KeelError("tokenizer: the start-of-text token \(textStart) is not one of the vocabulary's special tokens")
            }
            let start: [String: Any] = ["SpecialToken": ["id": textStart, "type_id": 0]]
            let text = { (name: String, type: Int) -> [String: Any] in ["Sequence": ["id": name, "type_id": type]] }
            postProcessor = [
                "type": "TemplateProcessing", "single": [start, text("A", 0)], "pair": [start, text("A", 0), text("B", 1)],
                "special_tokens": [textStart: ["id": textStart, "ids": [Int(id)], "tokens": [textStart]]],
            ] as [String: Any]
        }
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": NSNull(), "pre_tokenizer": preTokenizer, "post_processor": postProcessor,
            "decoder": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": vocabulary.emitsWholePieces, "vocab": vocab, "merges": merges],
        ]
        return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
    }
}
