import Foundation

/// What Hugging Face's `tokenizer_config.json` (and `chat_template.jinja`) beside a tokenizer say about generation,
/// and what its `tokenizer.json` says about the start of a text: the end-of-sequence token, the chat template, and
/// the token every text's tokens start with. Absent files say nothing.
public struct TokenizerSettings: Sendable {
    public var endOfSequence: String?
    public var chatTemplate: String?
    /// `bos_token`: what a chat template sees as `bos_token`.
    public var beginningOfText: String?
    /// `add_bos_token`: what decides the start of a text when the tokenizer file has no post-processor.
    private var addsBeginningOfText: Bool
    /// The tokenizer file, read only for the start of a text (`beginningOfTextToken(in:)`): a Llama 3 file is 9 MB.
    private let tokenizerFile: URL?

    /// The files these settings are read from, which travel with a tokenizer file wherever it is copied (a dataset,
    /// a checkpoint).
    public static let fileNames = ["tokenizer_config.json", "chat_template.jinja"]

    /// The settings files `directory` holds, with their contents.
    public static func files(in directory: URL) throws -> [(name: String, contents: Data)] {
        try fileNames.filter { FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).path) }
            .map { ($0, try Data(contentsOf: directory.appendingPathComponent($0))) }
    }

    /// The settings in `directory`, for the tokenizer file named `tokenizerFile` there (nil, or a file that is not
    /// Hugging Face JSON: no post-processor).
    public init(directory: URL, tokenizerFile: String?) {
        let config = (try? Data(contentsOf: directory.appendingPathComponent("tokenizer_config.json")))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        // A token is a string, or an object with its "content".
        func token(_ value: Any?) -> String? { value as? String ?? (value as? [String: Any])?["content"] as? String }
        endOfSequence = token(config["eos_token"])
        beginningOfText = token(config["bos_token"])
        addsBeginningOfText = config["add_bos_token"] as? Bool ?? false
        self.tokenizerFile = tokenizerFile.map { directory.appendingPathComponent($0) }
        if let template = config["chat_template"] as? String {
            chatTemplate = template
        } else if let named = config["chat_template"] as? [[String: Any]] {
            chatTemplate = (named.first { $0["name"] as? String == "default" } ?? named.first)?["template"] as? String
        } else {
            chatTemplate = try? String(contentsOf: directory.appendingPathComponent("chat_template.jinja"), encoding: .utf8)
        }
    }

    /// The settings beside the tokenizer file at `path`.
    public init(besides path: String) {
        let url = URL(fileURLWithPath: path)
        self.init(directory: url.deletingLastPathComponent(), tokenizerFile: url.lastPathComponent)
    }

    /// The id in `tokenizer` of the special token Hugging Face's `tokenizer(text)` puts before a text's tokens; nil
    /// when it puts none. The tokenizer file's post-processor decides, as it does in `transformers` 5: a
    /// `TemplateProcessing` whose template for one text starts with a special token (alone, or in a `Sequence` of
    /// processors: Llama 3's), or a `BertProcessing`/`RobertaProcessing`'s `cls`. A file without one (a GGUF import's,
    /// before imports wrote one) falls back to `add_bos_token` and `bos_token`. A token a post-processor puts after
    /// the text is not added: Keel ends a training text with the end-of-sequence token itself, where TRL does.
    public func beginningOfTextToken(in tokenizer: any TextTokenizer) -> Int32? {
        let file = tokenizerFile.flatMap { try? Data(contentsOf: $0) }
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        guard let processor = file?["post_processor"], !(processor is NSNull) else {
            return addsBeginningOfText ? beginningOfText.flatMap(tokenizer.specialToken) : nil
        }
        guard let start = Self.leadingToken(of: processor) else { return nil }
        return start.id ?? tokenizer.specialToken(start.spelling)
    }

    /// The special token a `tokenizers` post-processor puts first in a text's encoding, spelled, with the id the
    /// processor names for it: a `TemplateProcessing`'s `single` template's first piece when it is a special token,
    /// a `BertProcessing`'s or `RobertaProcessing`'s `cls`, the first such token of a `Sequence`'s processors; none
    /// for the others (`ByteLevel` adds no token).
    static func leadingToken(of processor: Any) -> (spelling: String, id: Int32?)? {
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
}
