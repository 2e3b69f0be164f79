import Foundation
import KeelCore
import KeelData

/// How a chat becomes a prompt, and where a reply ends: ChatML (`<|im_start|>role\ncontent<|im_end|>\n` per message,
/// then `<|im_start|>assistant\n`), the layout SmolLM2, Qwen and Keel's own chat data use.
///
/// A model's own chat template (a Jinja program in `tokenizer.chat_template` of a GGUF file, or in the
/// `tokenizer_config.json` / `chat_template.jinja` an import keeps) is not run — Keel has no Jinja engine — but read
/// for what ChatML templates vary in: the system message they put first when the chat has none. A template that is
/// not ChatML is reported, and ChatML used. When the tokenizer has `<|im_start|>` and `<|im_end|>` as special tokens
/// (an imported model's), the markers are those ids and only the messages' text is encoded, so a message cannot
/// forge a marker; otherwise (a Keel-trained byte or BPE model) they are encoded as text.
struct ChatFormat: Sendable {
    /// The system message put first when a chat has none (from the model's template).
    let defaultSystem: String?
    /// Text that ends a reply: `<|im_end|>`, and the model's end-of-sequence token's text when it has another.
    let stops: [String]
    /// What the format is, for the server's start-up line.
    let summary: String

    static let start = "<|im_start|>", end = "<|im_end|>"

    /// The format for a model whose template is `template` (nil: none) and whose end-of-sequence token is spelled
    /// `endOfSequence`.
    init(template: String?, endOfSequence: String?) {
        var stops = [Self.end]
        if let endOfSequence, endOfSequence != Self.end, !endOfSequence.isEmpty { stops.append(endOfSequence) }
        self.stops = stops
        guard let template else {
            defaultSystem = nil
            summary = "ChatML"
            return
        }
        guard template.contains(Self.start), template.contains(Self.end) else {
            defaultSystem = nil
            summary = "ChatML (the model's chat template is not ChatML, and Keel does not run Jinja templates)"
            return
        }
        // SmolLM2's and Qwen's templates: {{ '<|im_start|>system\nYou are …<|im_end|>\n' }} when the first message is
        // not a system one.
        let marker = Self.start + "system\\n"
        if let open = template.range(of: marker), let close = template.range(of: Self.end, range: open.upperBound..<template.endIndex) {
            let text = String(template[open.upperBound..<close.lowerBound])
            defaultSystem = text.contains("{") || text.contains("'") ? nil : text.replacingOccurrences(of: "\\n", with: "\n")
        } else if let open = template.range(of: Self.start + "system\n"),
                  let close = template.range(of: Self.end, range: open.upperBound..<template.endIndex) {
            let text = String(template[open.upperBound..<close.lowerBound])
            defaultSystem = text.contains("{") || text.contains("'") ? nil : text
        } else {
            defaultSystem = nil
        }
        summary = "ChatML (the model's template" + (defaultSystem.map { ", with its default system message \"\($0)\"" } ?? "") + ")"
    }

    /// The prompt of `messages` (role, content), ending where the assistant's reply starts.
    func prompt(_ messages: [(role: String, content: String)], tokenizer: any TextTokenizer) -> [Int32] {
        var all = messages
        if let defaultSystem, all.first?.role != "system" { all.insert((role: "system", content: defaultSystem), at: 0) }
        let start = tokenizer.specialToken(Self.start), end = tokenizer.specialToken(Self.end)
        guard let start, let end else {
            let text = all.map { Self.start + $0.role + "\n" + $0.content + Self.end + "\n" }.joined() + Self.start + "assistant\n"
            return tokenizer.encode(text)
        }
        var tokens: [Int32] = []
        for message in all {
            tokens += [start] + tokenizer.encode(message.role + "\n" + message.content) + [end] + tokenizer.encode("\n")
        }
        return tokens + [start] + tokenizer.encode("assistant\n")
    }
}
