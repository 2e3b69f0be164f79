import KeelCore

/// A tokenizer as llama.cpp's GGUF files list a byte-level BPE ("gpt2") tokenizer: each id's token spelled with
/// GPT-2's byte-to-character map (special tokens as their text), its type, the merges as "left right" in the same
/// spelling, and the pre-tokenizer's name in llama.cpp.
public struct GGUFVocabulary: Sendable {
    /// llama.cpp's token types.
    public enum TokenType: Int32, Sendable {
        case normal = 1, control = 3, unused = 5
    }

    public let tokens: [String]
    public let types: [TokenType]
    public let merges: [String]
    /// `tokenizer.ggml.pre`: "gpt-2" for GPT-2's split pattern, "llama-bpe" for cl100k's (Llama 3 uses it).
    public let preTokenizer: String
    public let endOfText: Int

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
            guard !vocabulary.emitsWholePieces else {
                throw KeelError("a tiktoken vocabulary has no merge list, which llama.cpp's GGUF tokenizer needs")
            }
            let special = Dictionary(uniqueKeysWithValues: vocabulary.specialTokens.map { ($1, $0) })
            for id in 0..<vocabulary.size {
                if let text = special[Int32(id)] {
                    tokens.append(text)
                    types.append(.control)
                } else if id < vocabulary.ordinaryCount, !vocabulary.bytes(of: Int32(id)).isEmpty {
                    tokens.append(spell(vocabulary.bytes(of: Int32(id))))
                    types.append(.normal)
                } else {
                    tokens.append("[PAD\(id)]")
                    types.append(.unused)
                }
            }
            merges = vocabulary.merges.map { spell(vocabulary.bytes(of: $0.left)) + " " + spell(vocabulary.bytes(of: $0.right)) }
            preTokenizer = vocabulary.pattern == .gpt2 ? "gpt-2" : "llama-bpe"
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
}
