import Foundation

/// What Hugging Face's `tokenizer_config.json` (and `chat_template.jinja`, `special_tokens_map.json`) beside a
/// tokenizer say about generation: the end-of-sequence token, the chat template, and the token every text starts
/// with. Absent files say nothing.
public struct TokenizerSettings: Sendable {
    public var endOfSequence: String?
    public var chatTemplate: String?
    /// `bos_token`: what a chat template sees as `bos_token`.
    public var beginningOfText: String?
    /// `add_bos_token`: what decides the start of a text when the tokenizer file has no post-processor.
    private var addsBeginningOfText: Bool

    /// The files these settings are read from, which travel with a tokenizer file wherever it is copied (a dataset,
    /// a checkpoint).
    public static let fileNames = ["tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"]

    /// The settings files `directory` holds, with their contents.
    public static func files(in directory: URL) throws -> [(name: String, contents: Data)] {
        try fileNames.filter { FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).path) }
            .map { ($0, try Data(contentsOf: directory.appendingPathComponent($0))) }
    }

    /// The settings in `directory`.
    public init(directory: URL) {
        func object(_ name: String) -> [String: Any] {
            (try? Data(contentsOf: directory.appendingPathComponent(name)))
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        }
        let config = object("tokenizer_config.json")
        // A token is a string, or an object with its "content".
        func token(_ value: Any?) -> String? { value as? String ?? (value as? [String: Any])?["content"] as? String }
        // Older repositories name their special tokens only in special_tokens_map.json, which transformers reads too.
        let map = object("special_tokens_map.json")
        endOfSequence = token(config["eos_token"]) ?? token(map["eos_token"])
        beginningOfText = token(config["bos_token"]) ?? token(map["bos_token"])
        addsBeginningOfText = config["add_bos_token"] as? Bool ?? false
        // The file's template wins over the config's, as in transformers (a repository that fixes its template in
        // chat_template.jinja may leave the old one in tokenizer_config.json).
        if let template = try? String(contentsOf: directory.appendingPathComponent("chat_template.jinja"), encoding: .utf8) {
            chatTemplate = template
        } else if let template = config["chat_template"] as? String {
            chatTemplate = template
        } else if let named = config["chat_template"] as? [[String: Any]] {
            chatTemplate = (named.first { $0["name"] as? String == "default" } ?? named.first)?["template"] as? String
        }
    }

    /// The settings beside the tokenizer file at `path`.
    public init(besides path: String) {
        self.init(directory: URL(fileURLWithPath: path).deletingLastPathComponent())
    }

    /// The id in `tokenizer` of the special token Hugging Face's `tokenizer(text)` puts before a text's tokens; nil
    /// when it puts none. The tokenizer file's post-processor decides, as it does in `transformers` 5
    /// (`BPEVocabulary.textStart`, read with the file). A file without one (a GGUF import's, before imports wrote one)
    /// falls back to `add_bos_token` and `bos_token`. A token a post-processor puts after the text is not added: Keel
    /// ends a training text with the end-of-sequence token itself, where TRL does.
    public func beginningOfTextToken(in tokenizer: any TextTokenizer) -> Int32? {
        switch (tokenizer as? BPETokenizer)?.vocabulary.textStart ?? .unspecified {
        case .token(let id): id
        case .none: nil
        case .unspecified: addsBeginningOfText ? beginningOfText.flatMap(tokenizer.specialToken) : nil
        }
    }
}
