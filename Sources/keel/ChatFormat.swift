import Foundation
import KeelCore
import KeelData

/// How a chat becomes a prompt, and where a reply ends. A model with a chat template (a GGUF file's
/// `tokenizer.chat_template`, or the `tokenizer_config.json` / `chat_template.jinja` an import keeps) has its
/// template run, as `transformers`' `apply_chat_template(..., add_generation_prompt=True)` runs it (KeelData's
/// `ChatTemplate`), and the text it renders is tokenized with the special tokens' spellings read as those tokens, as
/// Hugging Face tokenizers read them. A model without one (a Keel-trained run) gets ChatML —
/// `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n` — whose markers are the
/// tokenizer's special tokens when it has them (and only the messages' text is encoded, so a message cannot forge
/// one), or text otherwise.
struct ChatFormat: Sendable {
    /// The model's template; nil: ChatML.
    let template: ChatTemplate?
    /// The special tokens the template sees (`bos_token`, `eos_token`), by the names templates use.
    let specialTokens: [String: String]
    /// Text that ends a reply: `<|im_end|>`, and the model's end-of-sequence token's text when it has another.
    let stops: [String]
    /// What the format is, for the server's start-up line.
    let summary: String
    /// Why the model's template cannot be used (it does not parse), when so: `keel serve` refuses to start on it
    /// rather than give the model another model's prompt format.
    let problem: String?

    static let start = "<|im_start|>", end = "<|im_end|>"

    /// The format of a model whose template is `template` (nil: none) and whose beginning- and end-of-sequence
    /// tokens are spelled `beginningOfSequence` and `endOfSequence`.
    init(template source: String?, beginningOfSequence: String?, endOfSequence: String?) {
        var stops = [Self.end]
        if let endOfSequence, endOfSequence != Self.end, !endOfSequence.isEmpty { stops.append(endOfSequence) }
        self.stops = stops
        var specialTokens: [String: String] = [:]
        specialTokens["bos_token"] = beginningOfSequence
        specialTokens["eos_token"] = endOfSequence
        self.specialTokens = specialTokens
        guard let source else {
            template = nil
            summary = "ChatML"
            problem = nil
            return
        }
        do {
            template = try ChatTemplate(source)
            problem = nil
        } catch {
            template = nil
            problem = "the model's chat template cannot be read: \(error)"
        }
        summary = "the model's chat template"
    }

    /// The prompt of `messages` (role, content), ending where the assistant's reply starts. A template's own error
    /// (`raise_exception`: roles out of order, say) is thrown with its message.
    func prompt(_ messages: [(role: String, content: String)], tokenizer: any TextTokenizer) throws -> [Int32] {
        if let template {
            let rendering = try template.render(
                messages: messages.map { .dictionary(JinjaDictionary([("role", .string($0.role)), ("content", .string($0.content))])) },
                addGenerationPrompt: true, specialTokens: specialTokens)
            return tokenizer.encodeRecognizingSpecialTokens(rendering.text)
        }
        let start = tokenizer.specialToken(Self.start), end = tokenizer.specialToken(Self.end)
        guard let start, let end else {
            let text = messages.map { Self.start + $0.role + "\n" + $0.content + Self.end + "\n" }.joined() + Self.start + "assistant\n"
            return tokenizer.encode(text)
        }
        var tokens: [Int32] = []
        for message in messages {
            tokens += [start] + tokenizer.encode(message.role + "\n" + message.content) + [end] + tokenizer.encode("\n")
        }
        return tokens + [start] + tokenizer.encode("assistant\n")
    }
}
