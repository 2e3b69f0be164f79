import Foundation
import KeelCore

/// One supervised fine-tuning example: its tokens, and which of them the loss counts (what the assistant writes, or
/// a completion) — the rest (system and user turns, the template's markers before a reply) is context only.
public struct SupervisedExample: Sendable, Equatable {
    public var tokens: [Int32]
    /// trained[i]: whether the model learns to produce token i.
    public var trained: [Bool]

    public init(tokens: [Int32], trained: [Bool]) {
        precondition(tokens.count == trained.count)
        self.tokens = tokens
        self.trained = trained
    }
}

/// Chat data as supervised examples, as TRL's `SFTTrainer` takes it: JSONL lines with `messages` (a conversation of
/// `role`/`content` messages, as Hugging Face chat datasets hold them), or `prompt` and `completion` (two strings,
/// or two lists of messages). A conversation is rendered by the chat template, and what the assistant writes is
/// trained on: the template's `{% generation %}` spans when it marks them (Keel's ChatML does), else each assistant
/// turn found as the difference between the conversation rendered up to that turn and up to the turn before with
/// the generation prompt — which needs a template that renders a conversation's turns as prefixes of the whole, as
/// most do; one that does not is refused, naming the turn. A string completion is trained on after its prompt, and
/// ends with the end-of-sequence token; a string prompt starts with the token the tokenizer puts before every text,
/// if any (`TokenizerSettings.beginningOfTextToken(in:)`), as TRL's trainers encode strings with `tokenizer(text)` and as generation
/// reads a prompt. A rendered conversation gets no such token: the template writes `bos_token` where the model wants
/// it, and `apply_chat_template` adds none.
public struct SupervisedFormatter: Sendable {
    public let template: ChatTemplate
    private let tokenizer: any TextTokenizer
    private let specialTokens: [String: String]
    private let endOfSequence: Int32?
    private let textStart: Int32?
    /// The time `strftime_now` formats (in UTC): fixed for a dataset, so that its tokens do not change from day to day
    /// (a resumed run reads the same examples).
    private let now: Date
    /// The tools of the conversation being rendered (a line's top-level "tools"), which the template describes to the
    /// model: `with(tools:)`.
    private var tools: [JinjaValue]?
    /// Other variables the template reads for the conversation (a line's "chat_template_kwargs": Qwen 3's
    /// `enable_thinking`), as TRL passes them to `apply_chat_template`.
    private var variables = JinjaDictionary()

    /// Keel's ChatML (`<|im_start|>role\ncontent<|im_end|>\n`), the assistant's content and `<|im_end|>` marked as
    /// generated: the template of a model that brings none.
    public static let chatML = """
        {%- for message in messages -%}
        {{ '<|im_start|>' + message['role'] + '\\n' }}
        {%- if message['role'] == 'assistant' -%}
        {% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}
        {%- else -%}
        {{ message['content'] + '<|im_end|>\\n' }}
        {%- endif -%}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
        {{ '<|im_start|>assistant\\n' }}
        {%- endif -%}
        """

    /// - Parameters:
    ///   - template: the model's chat template, or nil for Keel's ChatML.
    ///   - specialTokens: what the template sees as `bos_token`, `eos_token`.
    ///   - endOfSequence: the token a string completion ends with.
    ///   - textStart: the token a string prompt starts with (`TokenizerSettings.beginningOfTextToken(in:)`).
    ///   - now: the time a template's `strftime_now` formats (Llama 3's write the date into the system prompt).
    public init(template: String?, tokenizer: any TextTokenizer, specialTokens: [String: String] = [:],
                endOfSequence: Int32?, textStart: Int32? = nil, now: Date = Date(timeIntervalSince1970: 0)) throws {
        self.template = try ChatTemplate(template ?? Self.chatML)
        self.tokenizer = tokenizer
        self.specialTokens = specialTokens
        self.endOfSequence = endOfSequence
        self.textStart = textStart
        self.now = now
    }

    /// The example of one JSONL line (the caller names the file and line in errors).
    public func example(json line: String) throws -> SupervisedExample {
        guard case .dictionary(let fields) = try JinjaValue(json: line) else {
            throw KeelError("an example must be a JSON object with \"messages\", or \"prompt\" and \"completion\"")
        }
        let formatter = try with(tools: fields["tools"], templateArguments: fields["chat_template_kwargs"])
        if let messages = fields["messages"] {
            return try formatter.example(messages: try Self.conversation(messages, field: "messages"))
        }
        guard let prompt = fields["prompt"], let completion = fields["completion"] else {
            throw KeelError("an example needs \"messages\", or \"prompt\" and \"completion\" (it has \(fields.keys.map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
        switch (prompt, completion) {
        case (.string(let prompt), .string(let completion)):
            return formatter.example(prompt: prompt, completion: completion)
        case (.list, .list):
            return try formatter.example(prompt: try Self.conversation(prompt, field: "prompt"),
                                         completion: try Self.conversation(completion, field: "completion"))
        default:
            throw KeelError("\"prompt\" and \"completion\" must both be strings or both be lists of messages")
        }
    }

    /// A conversation: every assistant turn trained on.
    public func example(messages: [JinjaValue]) throws -> SupervisedExample {
        let whole = try render(messages, prompt: false)
        if !whole.generated.isEmpty { return encode(whole.text, trained: whole.generated) }
        // A conversation whose turns are named otherwise (ShareGPT's "human" and "gpt") would train on nothing, and a
        // file of them end in an error that blamed the sequence length.
        guard messages.contains(where: { Self.role($0) == "assistant" }) else {
            let roles = messages.compactMap(Self.role)
            throw KeelError("the conversation has no \"assistant\" message to train on (its roles: \(roles.isEmpty ? "none" : roles.map { "\"\($0)\"" }.joined(separator: ", "))); name the model's turns \"assistant\" and the person's \"user\"")
        }
        var spans: [Range<Int>] = []
        for (index, message) in messages.enumerated() where Self.role(message) == "assistant" {
            spans.append(try turn(messages, index, within: whole.text))
        }
        return encode(whole.text, trained: spans)
    }

    /// A conversational prompt and its completion: the completion's turns trained on.
    public func example(prompt: [JinjaValue], completion: [JinjaValue]) throws -> SupervisedExample {
        let before = try renderPrompt(prompt)
        let whole = try render(prompt + completion, prompt: false).text
        guard whole.hasPrefix(before) else {
            throw KeelError("the chat template does not render the prompt as the start of the prompt and completion; mark what the assistant writes with {% generation %}")
        }
        return encode(whole, trained: [before.utf8.count..<whole.utf8.count])
    }

    /// A plain-text prompt and completion: the completion trained on, then the end-of-sequence token — unless the
    /// completion already ends with it (its text spells the token), as TRL adds it only then.
    public func example(prompt: String, completion: String) -> SupervisedExample {
        var example = text(prompt + completion, trained: [prompt.utf8.count..<(prompt + completion).utf8.count])
        if let endOfSequence, example.tokens.last != endOfSequence {
            example.tokens.append(endOfSequence)
            example.trained.append(true)
        }
        return example
    }

    /// This formatter rendering conversations with `tools` (a line's "tools", as TRL passes it to the template; nil
    /// for none), a list of tool descriptions, and the template's other variables `templateArguments` (a line's
    /// "chat_template_kwargs"), an object; or an error.
    public func with(tools value: JinjaValue?, templateArguments arguments: JinjaValue? = nil) throws -> SupervisedFormatter {
        var formatter = self
        if let value, value != .none {
            guard case .list(let list) = value else { throw KeelError("\"tools\" must be a list of tool descriptions") }
            formatter.tools = list
        }
        if let arguments, arguments != .none {
            guard case .dictionary(let variables) = arguments else {
                throw KeelError("\"chat_template_kwargs\" must be an object of the chat template's variables")
            }
            formatter.variables = variables
        }
        return formatter
    }

    func render(_ messages: [JinjaValue], prompt: Bool) throws -> ChatTemplate.Rendering {
        do {
            return try template.render(messages: messages, addGenerationPrompt: prompt, specialTokens: specialTokens, tools: tools,
                                       variables: variables, now: now, timeZone: TimeZone(identifier: "UTC")!)
        } catch let error as JinjaError {
            throw KeelError("the chat template refused the conversation: \(error)")
        }
    }

    /// A conversation that a completion follows, rendered as TRL's `maybe_apply_chat_template` renders a prompt: after
    /// the user's turn, with the generation prompt; after the assistant's (a reply begun, "<think>"), with that turn
    /// left open — the text up to the end of its content, as transformers' `continue_final_message` cuts it; after
    /// any other role but a tool's result (like the user's), refused (TRL raises too).
    func renderPrompt(_ messages: [JinjaValue]) throws -> String {
        guard let last = messages.last else { throw KeelError("the prompt holds no message") }
        switch Self.role(last) {
        case "user", "tool":
            return try render(messages, prompt: true).text
        case "assistant":
            let rendered = try render(messages, prompt: false).text
            guard let content = Self.text(of: last) else {
                throw KeelError("the prompt ends with an assistant message to continue, but it holds no text")
            }
            let stripped = content.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let found = rendered.range(of: stripped, options: .backwards) else {
                throw KeelError("the prompt ends with an assistant message to continue, but the chat template does not write its text")
            }
            // Where the template kept the message's trailing white space (and it has none leading), the cut keeps it too.
            if content.first?.isWhitespace == false, rendered[found.lowerBound...].hasPrefix(content) {
                return String(rendered[..<found.lowerBound]) + content
            }
            return String(rendered[..<found.upperBound])
        case let role:
            throw KeelError("the prompt's last message is from \"\(role ?? "")\": a prompt ends with the user's turn (or a tool's result), or with the assistant's to be continued")
        }
    }

    /// A message's text: its string content, or the last text part of a list of parts.
    static func text(of message: JinjaValue) -> String? {
        guard case .dictionary(let fields) = message else { return nil }
        switch fields["content"] {
        case .string(let text)?: return text
        case .list(let parts)?:
            for case .dictionary(let part) in parts.reversed() {
                if case .string(let text)? = part["text"] { return text }
            }
            return nil
        default: return nil
        }
    }

    /// Assistant turn `index`'s bytes in the whole conversation's text: from the end of the conversation before it
    /// with the generation prompt, to the end of the conversation through it.
    private func turn(_ messages: [JinjaValue], _ index: Int, within whole: String) throws -> Range<Int> {
        let before = try render(Array(messages[..<index]), prompt: true).text
        let through = try render(Array(messages[...index]), prompt: false).text
        guard through.hasPrefix(before), whole.hasPrefix(through) else {
            throw KeelError("the chat template does not render the conversation up to message \(index + 1) (an assistant turn) as the start of the whole; mark what the assistant writes with {% generation %}")
        }
        return before.utf8.count..<through.utf8.count
    }

    /// A string's tokens (`encode`) after the start-of-text token, when the tokenizer puts one before every text.
    func text(_ text: String, trained: [Range<Int>]) -> SupervisedExample {
        let example = encode(text, trained: trained)
        guard let textStart else { return example }
        return SupervisedExample(tokens: [textStart] + example.tokens, trained: [false] + example.trained)
    }

    /// The tokens of `text`, with special tokens' spellings read as those tokens, and those inside `trained` (byte
    /// ranges, in order) marked. The text is encoded piece by piece at the ranges' edges, so that no token straddles
    /// an edge.
    func encode(_ text: String, trained: [Range<Int>]) -> SupervisedExample {
        let bytes = Array(text.utf8)
        var example = SupervisedExample(tokens: [], trained: [])
        var position = 0
        func add(_ range: Range<Int>, trained: Bool) {
            guard !range.isEmpty else { return }
            let tokens = tokenizer.encodeRecognizingSpecialTokens(String(decoding: bytes[range], as: UTF8.self))
            example.tokens += tokens
            example.trained += Array(repeating: trained, count: tokens.count)
        }
        for span in trained where span.lowerBound >= position {
            add(position..<span.lowerBound, trained: false)
            add(span, trained: true)
            position = span.upperBound
        }
        add(position..<bytes.count, trained: false)
        return example
    }

    static func role(_ message: JinjaValue) -> String? {
        guard case .dictionary(let fields) = message, case .string(let role)? = fields["role"] else { return nil }
        return role
    }

    /// A list of messages, each an object with a string "role".
    static func conversation(_ value: JinjaValue, field: String) throws -> [JinjaValue] {
        guard case .list(let messages) = value, !messages.isEmpty else {
            throw KeelError("\"\(field)\" must be a non-empty list of messages")
        }
        for (index, message) in messages.enumerated() where role(message) == nil {
            throw KeelError("\"\(field)\" message \(index + 1) is not an object with a string \"role\"")
        }
        return messages
    }
}
