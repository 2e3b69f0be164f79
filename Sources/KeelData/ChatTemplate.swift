import Foundation

/// A model's chat template — the Jinja program in a Hugging Face `tokenizer_config.json` (`chat_template`), a
/// `chat_template.jinja`, or a GGUF file's `tokenizer.chat_template` — rendered as `transformers`'
/// `apply_chat_template(..., tokenize=False)` renders it: the same variables (`messages`, `add_generation_prompt`,
/// the special tokens, `tools`, any extra ones), the same functions (`raise_exception`, `strftime_now`,
/// `namespace`, `dict`), the same whitespace rules. The spans the template marks with `{% generation %}` come back
/// too (what `return_assistant_tokens_mask` is built from).
public struct ChatTemplate: Sendable {
    public let source: String
    private let template: JinjaTemplate

    /// Parses `source`; a template Keel cannot parse is an error naming the line.
    public init(_ source: String) throws {
        self.source = source
        template = try JinjaTemplate(source)
    }

    /// The rendered conversation.
    public struct Rendering: Sendable {
        public let text: String
        /// UTF-8 byte ranges of `text` written inside `{% generation %}` blocks (empty when the template has none).
        public let generated: [Range<Int>]
    }

    /// Renders `messages` (a list of dictionaries with `role` and `content`, and whatever else the template reads).
    /// - Parameters:
    ///   - addGenerationPrompt: end with the header of an assistant turn, for a model to write it.
    ///   - specialTokens: `bos_token`, `eos_token` and the like, as the tokenizer spells them.
    ///   - tools: tool schemas (JSON Schema dictionaries), or nil.
    ///   - variables: any other variable the template reads (`enable_thinking`, say).
    ///   - now: the time `strftime_now` formats, in `timeZone`.
    public func render(messages: [JinjaValue], addGenerationPrompt: Bool, specialTokens: [String: String] = [:],
                       tools: [JinjaValue]? = nil, variables: JinjaDictionary = JinjaDictionary(), now: Date = Date(),
                       timeZone: TimeZone = .current) throws -> Rendering {
        var context = JinjaDictionary()
        for (name, token) in specialTokens.sorted(by: { $0.key < $1.key }) { context[name] = .string(token) }
        for entry in variables.entries { context[entry.key] = entry.value }
        context["messages"] = .list(messages)
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        context["tools"] = tools.map(JinjaValue.list) ?? JinjaValue.none
        context["documents"] = context["documents"] ?? JinjaValue.none
        let strftime = JinjaFunction("strftime_now") { arguments, _ in
            .string(Self.strftime(arguments.first?.text ?? "", now, timeZone))
        }
        let (text, generated) = try template.render(context, functions: ["strftime_now": .function(strftime)])
        return Rendering(text: text, generated: generated)
    }

    /// C's strftime for the directives chat templates use (`%d %b %Y` and the like), in English.
    static func strftime(_ format: String, _ date: Date, _ timeZone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                      "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        let month = months[(parts.month ?? 1) - 1], day = days[(parts.weekday ?? 1) - 1]
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        var out = ""
        var characters = format.makeIterator()
        while let character = characters.next() {
            guard character == "%", let directive = characters.next() else {
                out.append(character)
                continue
            }
            switch directive {
            case "Y": out += String(parts.year ?? 0)
            case "y": out += two((parts.year ?? 0) % 100)
            case "m": out += two(parts.month)
            case "d": out += two(parts.day)
            case "e": out += String(format: "%2d", parts.day ?? 0)
            case "B": out += month
            case "b", "h": out += String(month.prefix(3))
            case "A": out += day
            case "a": out += String(day.prefix(3))
            case "H": out += two(parts.hour)
            case "I": out += two(((parts.hour ?? 0) + 11) % 12 + 1)
            case "p": out += (parts.hour ?? 0) < 12 ? "AM" : "PM"
            case "M": out += two(parts.minute)
            case "S": out += two(parts.second)
            case "j": out += String(format: "%03d", calendar.ordinality(of: .day, in: .year, for: date) ?? 0)
            case "%": out += "%"
            default: out += "%" + String(directive)
            }
        }
        return out
    }
}
