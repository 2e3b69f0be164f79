import KeelCore

/// A tokenizer as llama.cpp's GGUF files list a byte-level BPE ("gpt2") tokenizer: each id's token spelled with
/// GPT-2's byte-to-character map (special tokens as their text), its type, the merges as "left right" in the same
/// spelling, and the pre-tokenizer's name in llama.cpp.
public struct GGUFVocabulary: Sendable {
    /// llama.cpp's token types.
    public enum TokenType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public let tokens: [String]
    public let types: [TokenType]
    public let merges: [String]
    /// `tokenizer.ggml.pre`: llama.cpp's name of the split pattern (`preTokenizers`).
    public let preTokenizer: String
    public let endOfText: Int
    /// Where llama.cpp will not split text exactly as the tokenizer written does (nil: it will).
    public private(set) var difference: String?

    /// What llama.cpp does for a pre-tokenizer name (its `llama-vocab.cpp`): the split pattern, and whether a piece
    /// that is itself a token is emitted whole before any merging (`ignore_merges`, Hugging Face's flag of the
    /// same name). Whether texts start with BOS by default is KeelCheckpoint's `GGUFImport.preTokenizersAddingBOS`.
    public struct PreTokenizer: Sendable, Equatable {
        public let pattern: SplitPattern
        public let ignoresMerges: Bool
    }

    /// llama.cpp's names of the pre-tokenizers Keel reproduces: GPT-2's; Llama 3's split (cl100k's without
    /// `\s++$`), which Llama 3 uses with ignore_merges and BOS (under three names) and DBRX and Smaug without;
    /// SmolLM's.
    public static let preTokenizers: [String: PreTokenizer] = {
        let llama3 = PreTokenizer(pattern: .llama3, ignoresMerges: true)
        let cl100k = PreTokenizer(pattern: .llama3, ignoresMerges: false)
        return ["gpt-2": PreTokenizer(pattern: .gpt2, ignoresMerges: false),
                "llama-bpe": llama3, "llama3": llama3, "llama-v3": llama3, "dbrx": cl100k, "smaug-bpe": cl100k,
                "smollm": PreTokenizer(pattern: .gpt2Digits, ignoresMerges: false)]
    }()

    /// The name Keel writes for each pre-tokenizer (one per pattern and flag, so a file's bytes never depend on
    /// a dictionary's order).
    static let writtenNames = ["gpt-2", "llama-bpe", "dbrx", "smollm"]

    /// The vocabulary of `tokenizer`, padded to `size` ids (a model's vocabulary may be larger than its tokenizer's:
    /// those ids are "[PADn]", unused).
    public init(_ tokenizer: any TextTokenizer, size: Int) throws {
        var tokens: [String] = [], types: [TokenType] = [], merges: [String] = []
        let spell = { (bytes: ArraySlice<UInt8>) in String(bytes.map { TokenizerFiles.byteToCharacter[Int($0)] }) }
        switch tokenizer {
        case is ByteTokenizer:
            tokens = (0..<256).map { spell([UInt8($0)][...]) } + ["<|endoftext|>"]
            types = Array(repeating: .normal, count: 256) + [.control]
            preTokenizer = "default"
        case let bpe as BPETokenizer:
            let vocabulary = bpe.vocabulary
            guard !(vocabulary.emitsWholePieces && vocabulary.merges.isEmpty) else {
                throw KeelError("a tiktoken vocabulary has no merge list, which llama.cpp's GGUF tokenizer needs")
            }
            // llama.cpp has no split with tiktoken's `\s++$`: a cl100k vocabulary goes under Llama 3's split.
            let pattern = vocabulary.pattern == .cl100k ? .llama3 : vocabulary.pattern
            guard let name = Self.writtenNames.first(where: {
                Self.preTokenizers[$0]!.pattern == pattern && Self.preTokenizers[$0]!.ignoresMerges == vocabulary.emitsWholePieces
            }) else {
                throw KeelError("llama.cpp has no pre-tokenizer that splits as \(vocabulary.pattern) and ignores merges")
            }
            if pattern != vocabulary.pattern {
                difference = "llama.cpp's \"\(name)\" splits as tiktoken's cl100k does but where a text ends in a line break "
                    + "and more whitespace (\"a\\n  \": \"\\n\", \"  \" there, \"\\n  \" here)"
            }
            let special = Dictionary(uniqueKeysWithValues: vocabulary.specialTokens.map { ($1, $0) })
            for id in 0..<vocabulary.size {
                if let text = special[Int32(id)] {
                    tokens.append(text)
                    types.append(vocabulary.textAddedTokens.contains(text) ? .userDefined : .control)
                } else if id < vocabulary.ordinaryCount, !vocabulary.bytes(of: Int32(id)).isEmpty {
                    tokens.append(spell(vocabulary.bytes(of: Int32(id))))
                    types.append(.normal)
                } else {
                    tokens.append("[PAD\(id)]")
                    types.append(.unused)
                }
            }
            merges = vocabulary.merges.map { spell(vocabulary.bytes(of: $0.left)) + " " + spell(vocabulary.bytes(of: $0.right)) }
            preTokenizer = name
        default:
            throw KeelError("this tokenizer cannot be written to a GGUF file")
        }
        guard tokens.count <= size else {
            throw KeelError("the tokenizer has \(tokens.count) tokens, more than the model's vocabulary of \(size)")
        }
        for id in tokens.count..<size {
            tokens.append("[PAD\(id)]")
            types.append(.unused)
        }
        self.tokens = tokens
        self.types = types
        self.merges = merges
        endOfText = Int(tokenizer.endOfText)
    }

    /// The lists as a GGUF file holds them (`tokenizer.ggml.tokens`, `token_type`, `merges`, `pre`).
    public init(tokens: [String], types: [Int32], merges: [String], preTokenizer: String, endOfText: Int) throws {
        guard tokens.count == types.count else {
            throw KeelError("tokenizer: \(tokens.count) tokens but \(types.count) token types")
        }
        self.types = try types.enumerated().map { id, raw in
            guard let type = TokenType(rawValue: raw) else { throw KeelError("tokenizer: token \(id) has unknown type \(raw)") }
            return type
        }
        self.tokens = tokens
        self.merges = merges
        self.preTokenizer = preTokenizer
        self.endOfText = endOfText
    }

    /// The Keel tokenizer these lists describe: Keel's byte tokenizer when they are its lists, else byte-level BPE
    /// with the control and user-defined tokens as special tokens, which must include `<|endoftext|>`.
    public func tokenizer() throws -> any TextTokenizer {
        if preTokenizer == "default", merges.isEmpty, tokens.count >= 257,
           tokens[..<257].elementsEqual((0..<256).map { String(TokenizerFiles.byteToCharacter[$0]) } + ["<|endoftext|>"]),
           types[256] == .control, types[257...].allSatisfy({ $0 == .unused }) {
            return ByteTokenizer()
        }
        // The file's EOS separates documents when the vocabulary has no <|endoftext|> (Llama 3's <|end_of_text|>).
        let endOfSequence = tokens.indices.contains(endOfText) && types[endOfText] != .normal ? tokens[endOfText] : nil
        return try BPETokenizer(vocabulary: vocabulary(), origin: "the GGUF file's tokenizer", endOfSequence: endOfSequence)
    }

    /// The byte-level BPE vocabulary these lists describe.
    public func vocabulary() throws -> BPEVocabulary {
        guard let split = Self.preTokenizers[preTokenizer] else {
            throw KeelError("tokenizer: llama.cpp pre-tokenizer \"\(preTokenizer)\" is not one Keel reproduces (\(Self.preTokenizers.keys.sorted().joined(separator: ", ")))")
        }
        var bytes = [[UInt8]](repeating: [], count: tokens.count)
        var specials: [String: Int32] = [:], ids: [String: Int32] = [:], textAdded = Set<String>()
        for (id, (token, type)) in zip(tokens, types).enumerated() {
            switch type {
            case .normal, .byte:
                bytes[id] = try TokenizerFiles.decodeKey(token, path: "the GGUF file's tokenizer")
                ids[token] = Int32(id)
            case .userDefined:
                // llama.cpp matches user-defined tokens in every text (its `llama-vocab.cpp`, since #8228).
                specials[token] = Int32(id)
                textAdded.insert(token)
            case .control, .unknown:
                specials[token] = Int32(id)
            case .unused:
                break
            }
        }
        let pairs = try merges.enumerated().map { index, merge -> (left: Int32, right: Int32) in
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let left = ids[String(parts[0])], let right = ids[String(parts[1])] else {
                throw KeelError("tokenizer: merge \(index) (\"\(merge)\") does not name two ordinary tokens")
            }
            return (left, right)
        }
        return try BPEVocabulary(tokens: bytes, merges: pairs, specialTokens: specials, pattern: split.pattern,
                                 emitsWholePieces: split.ignoresMerges, textAddedTokens: textAdded)
    }
}
