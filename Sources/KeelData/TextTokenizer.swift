import Foundation
import KeelCore

/// What training, data preparation and sampling need from a tokenizer.
public protocol TextTokenizer: Sendable {
    /// Number of ids (the model's minimum vocabulary size).
    var vocabSize: Int { get }
    /// The id that separates documents.
    var endOfText: Int32 { get }
    /// The ids of `text` (UTF-8 bytes, not necessarily valid); special-token text is encoded as text.
    func encode(_ text: UnsafeBufferPointer<UInt8>) -> [Int32]
    /// The bytes of `ids` (end-of-text and other special tokens as their text).
    func decode(_ ids: [Int32]) throws -> [UInt8]
    /// The id of the special token spelled `text` (`<|im_start|>`), or nil when the tokenizer has none.
    func specialToken(_ text: String) -> Int32?
    /// How the tokenizer's special tokens are spelled (none for a byte tokenizer).
    var specialTokenTexts: [String] { get }
    /// The ids of a text in which special tokens' spellings stand for those tokens (see the extension's).
    func encodeRecognizingSpecialTokens(_ text: String) -> [Int32]
}

extension TextTokenizer {
    /// The ids of a string.
    public func encode(_ text: String) -> [Int32] {
        Array(text.utf8).withUnsafeBufferPointer { encode($0) }
    }

    public var specialTokenTexts: [String] { [] }

    /// The ids of a text in which special tokens' spellings stand for those tokens (a rendered chat template's
    /// `<|im_start|>`), as Hugging Face tokenizers read them; the text between them is encoded as text. Where two
    /// special tokens start at one place, the longer is taken.
    public func encodeRecognizingSpecialTokens(_ text: String) -> [Int32] {
        encode(text, recognizing: SpellingTrie(self))
    }

    /// `encodeRecognizingSpecialTokens` with the spellings' trie made already (a tokenizer keeps its own).
    func encode(_ text: String, recognizing spellings: SpellingTrie) -> [Int32] {
        guard !spellings.isEmpty else { return encode(text) }
        let bytes = Array(text.utf8)
        var ids: [Int32] = []
        bytes.withUnsafeBufferPointer { all in
            var textStart = 0, position = 0
            while position < all.count {
                guard let (length, id) = spellings.longestMatch(in: all, at: position) else {
                    position += 1
                    continue
                }
                ids += encode(UnsafeBufferPointer(rebasing: all[textStart..<position]))
                ids.append(id)
                position += length
                textStart = position
            }
            ids += encode(UnsafeBufferPointer(rebasing: all[textStart...]))
        }
        return ids
    }

    /// `ids` as text, with invalid UTF-8 shown as U+FFFD.
    public func decodeText(_ ids: [Int32]) throws -> String {
        String(decoding: try decode(ids), as: UTF8.self)
    }
}

extension ByteTokenizer: TextTokenizer {
    public func encode(_ text: UnsafeBufferPointer<UInt8>) -> [Int32] {
        text.map { Int32($0) }
    }

    /// None: the byte tokenizer's end of text has no spelling.
    public func specialToken(_ text: String) -> Int32? { nil }
}

/// A byte-level BPE vocabulary as a `TextTokenizer`.
public struct BPETokenizer: TextTokenizer {
    public let vocabulary: BPEVocabulary
    public let endOfText: Int32
    /// The special tokens' spellings, made once: chat data reads every example through them.
    private let spellings: SpellingTrie

    /// Wraps `vocabulary`, whose `<|endoftext|>` special token separates documents — or, for vocabularies that
    /// name it otherwise (Llama 3's `<|end_of_text|>`), the special token `endOfSequence` (a `tokenizer_config.json`'s
    /// `eos_token`, a GGUF file's EOS).
    public init(vocabulary: BPEVocabulary, origin: String, endOfSequence: String? = nil) throws {
        guard let endOfText = vocabulary.endOfText ?? endOfSequence.flatMap({ vocabulary.specialTokens[$0] }) else {
            throw KeelError("tokenizer: \(origin) has no \(BPEVocabulary.endOfTextText) special token to separate documents\(endOfSequence.map { " (nor \($0))" } ?? "")")
        }
        self.vocabulary = vocabulary
        self.endOfText = endOfText
        spellings = SpellingTrie(vocabulary.specialTokens.map { ($0.key, $0.value) })
    }

    public var vocabSize: Int { vocabulary.size }

    public func encode(_ text: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var output: [Int32] = []
        BPEEncoder(vocabulary: vocabulary).encodeOrdinary(text, into: &output)
        return output
    }

    public func decode(_ ids: [Int32]) throws -> [UInt8] {
        // Straight from the vocabulary: an encoder would first copy the merge tables, which `serve` and `generate`
        // did for every token they decoded.
        try vocabulary.decode(ids)
    }

    public func specialToken(_ text: String) -> Int32? { vocabulary.specialTokens[text] }
    public var specialTokenTexts: [String] { Array(vocabulary.specialTokens.keys) }

    public func encodeRecognizingSpecialTokens(_ text: String) -> [Int32] { encode(text, recognizing: spellings) }
}

/// Loads the tokenizer named by a config or command line: `byte`, or a `tokenizer.json` / `.tiktoken` file.
public func loadTokenizer(_ name: String) throws -> any TextTokenizer {
    if name == "byte" { return ByteTokenizer() }
    return try BPETokenizer(vocabulary: TokenizerFiles.load(name), origin: name,
                            endOfSequence: TokenizerSettings(besides: name).endOfSequence)
}

/// Special tokens' spellings as a trie of their UTF-8 bytes: the longest spelling that starts at a place in a text is
/// found in as many steps as it has bytes, however many tokens there are (Llama 3 has 256, all starting "<|"), so a
/// text full of spellings costs no more to read than any other.
struct SpellingTrie {
    /// Each node's children by byte, and the token spelled by the path to it.
    private var children: [[UInt8: Int]] = [[:]]
    private var tokens: [Int32?] = [nil]

    /// The spellings of `tokenizer`'s special tokens.
    init(_ tokenizer: some TextTokenizer) {
        self.init(tokenizer.specialTokenTexts.compactMap { special in tokenizer.specialToken(special).map { (special, $0) } })
    }

    init(_ spellings: [(String, Int32)]) {
        for (spelling, id) in spellings where !spelling.isEmpty {
            var node = 0
            for byte in spelling.utf8 {
                if let next = children[node][byte] {
                    node = next
                } else {
                    children.append([:])
                    tokens.append(nil)
                    children[node][byte] = children.count - 1
                    node = children.count - 1
                }
            }
            tokens[node] = id
        }
    }

    var isEmpty: Bool { children[0].isEmpty }

    /// The byte length and token of the longest spelling at `bytes[position...]`, if one starts there.
    func longestMatch(in bytes: UnsafeBufferPointer<UInt8>, at position: Int) -> (length: Int, id: Int32)? {
        var node = 0, match: (length: Int, id: Int32)?
        var index = position
        while index < bytes.count, let next = children[node][bytes[index]] {
            node = next
            index += 1
            if let id = tokens[node] { match = (index - position, id) }
        }
        return match
    }
}
