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
    /// The ids of a text in which special tokens' spellings stand for those tokens (a rendered chat template's
    /// `<|im_start|>`), as Hugging Face tokenizers read them; the text between them is encoded as text. Where two
    /// special tokens start at one place, the longer is taken.
    func encodeRecognizingSpecialTokens(_ text: String) -> [Int32]
}

extension TextTokenizer {
    /// The ids of a string.
    public func encode(_ text: String) -> [Int32] {
        Array(text.utf8).withUnsafeBufferPointer { encode($0) }
    }

    public var specialTokenTexts: [String] { [] }

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

    /// The bytes: the byte tokenizer has no special token spelled in text.
    public func encodeRecognizingSpecialTokens(_ text: String) -> [Int32] { encode(text) }
}

/// A byte-level BPE vocabulary as a `TextTokenizer`.
public struct BPETokenizer: TextTokenizer {
    public let vocabulary: BPEVocabulary
    public let endOfText: Int32
    /// Encoders to reuse: each makes copies of the merge tables (megabytes for a large vocabulary), which a new
    /// encoder per call paid for every document of a corpus and every request.
    private let encoders: EncoderPool

    /// Wraps `vocabulary`, whose `<|endoftext|>` special token separates documents — or, for vocabularies that
    /// name it otherwise (Llama 3's `<|end_of_text|>`), the special token `endOfSequence` (a `tokenizer_config.json`'s
    /// `eos_token`, a GGUF file's EOS).
    public init(vocabulary: BPEVocabulary, origin: String, endOfSequence: String? = nil) throws {
        guard let endOfText = vocabulary.endOfText ?? endOfSequence.flatMap({ vocabulary.specialTokens[$0] }) else {
            throw KeelError("tokenizer: \(origin) has no \(BPEVocabulary.endOfTextText) special token to separate documents\(endOfSequence.map { " (nor \($0))" } ?? "")")
        }
        self.vocabulary = vocabulary
        self.endOfText = endOfText
        encoders = EncoderPool(vocabulary: vocabulary)
    }

    public var vocabSize: Int { vocabulary.size }

    public func encode(_ text: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var output: [Int32] = []
        encoders.borrow { $0.encodeOrdinary(text, into: &output) }
        return output
    }

    public func decode(_ ids: [Int32]) throws -> [UInt8] {
        // Straight from the vocabulary: an encoder would first copy the merge tables, which `serve` and `generate`
        // did for every token they decoded.
        try vocabulary.decode(ids)
    }

    public func specialToken(_ text: String) -> Int32? { vocabulary.specialTokens[text] }
    public var specialTokenTexts: [String] { Array(vocabulary.specialTokens.keys) }

    /// One encoder for the whole text, which finds the spellings itself.
    public func encodeRecognizingSpecialTokens(_ text: String) -> [Int32] {
        // `.allowed` never throws.
        encoders.borrow { (try? $0.encode(text, specialTokens: .allowed)) ?? [] }
    }
}

/// Encoders of one vocabulary for any thread to borrow (`BPEEncoder` is not thread-safe), each keeping its cache of
/// pieces between calls. As many exist as calls run at once, but at most `keptIdle` stay between calls — as many as
/// this machine's processors run at once: a burst of a server's connections would otherwise leave an encoder (a copy
/// of the merge tables and a cache of up to tens of megabytes) per connection behind for ever.
final class EncoderPool: @unchecked Sendable {
    private let vocabulary: BPEVocabulary
    private let lock = NSLock()
    private var idle: [BPEEncoder] = []
    let keptIdle: Int

    init(vocabulary: BPEVocabulary, keptIdle: Int = max(2, ProcessInfo.processInfo.activeProcessorCount)) {
        self.vocabulary = vocabulary
        self.keptIdle = keptIdle
    }

    /// Encoders kept for the next calls.
    var idleCount: Int { lock.withLock { idle.count } }

    /// Runs `body` with an encoder no other call is using.
    func borrow<Result>(_ body: (BPEEncoder) -> Result) -> Result {
        let encoder = lock.withLock { idle.popLast() } ?? BPEEncoder(vocabulary: vocabulary)
        defer { lock.withLock { if idle.count < keptIdle { idle.append(encoder) } } }
        return body(encoder)
    }
}

/// Loads the tokenizer named by a config or command line: `byte`, or a `tokenizer.json` / `.tiktoken` file.
public func loadTokenizer(_ name: String) throws -> any TextTokenizer {
    if name == "byte" { return ByteTokenizer() }
    return try BPETokenizer(vocabulary: TokenizerFiles.load(name), origin: name,
                            endOfSequence: TokenizerSettings(besides: name).endOfSequence)
}
