import Foundation
import KeelCore

/// A prompt of a task for online training (GRPO): the tokens the model continues, and the line's other fields — what
/// a reward function checks a completion against (`answer`).
public struct TaskPrompt: Sendable, Equatable {
    public var tokens: [Int32]
    /// The line's fields other than `prompt` whose values are strings or numbers (numbers as JSON writes them).
    public var fields: [String: String]
    /// The line's `prompt` as given: a string, or a list of messages.
    public var prompt: JinjaValue
    /// The line's `tools`, which the chat template describes to the model (nil: none).
    public var tools: JinjaValue?
    /// The line's `chat_template_kwargs`: the template's other variables (nil: none).
    public var templateArguments: JinjaValue?
    /// The start of the reply the prompt holds — the text of a last assistant message, which the model continues —
    /// or empty. A completion is judged with it in front, as TRL's `GRPOTrainer` judges one ("bootstrap").
    public var reply: String

    public init(tokens: [Int32], fields: [String: String], prompt: JinjaValue, tools: JinjaValue? = nil,
                templateArguments: JinjaValue? = nil, reply: String = "") {
        self.tokens = tokens
        self.fields = fields
        self.prompt = prompt
        self.tools = tools
        self.templateArguments = templateArguments
        self.reply = reply
    }
}

extension SupervisedFormatter {
    /// The task prompt of one JSONL line (the caller names the file and line in errors), as TRL's `GRPOTrainer` reads
    /// its datasets: `prompt`, a string taken as it is or a list of messages rendered by the chat template with the
    /// generation prompt, beside the fields the reward reads.
    public func taskPrompt(json line: String) throws -> TaskPrompt {
        guard case .dictionary(let object) = try JinjaValue(json: line) else {
            throw KeelError("a task must be a JSON object with \"prompt\"")
        }
        var fields: [String: String] = [:]
        for entry in object.entries where entry.key != "prompt" {
            switch entry.value {
            case .string(let text): fields[entry.key] = text
            case .int(let number): fields[entry.key] = String(number)
            case .double(let number): fields[entry.key] = String(number)
            default: continue
            }
        }
        switch object["prompt"] {
        case .string(let text)?:
            return TaskPrompt(tokens: self.text(text, trained: []).tokens, fields: fields, prompt: .string(text))
        case .list?:
            let messages = try Self.conversation(object["prompt"]!, field: "prompt")
            let reply = Self.role(messages.last!) == "assistant" ? Self.text(of: messages.last!) ?? "" : ""
            let formatter = try with(tools: object["tools"], templateArguments: object["chat_template_kwargs"])
            return TaskPrompt(tokens: encode(try formatter.renderPrompt(messages), trained: []).tokens, fields: fields,
                              prompt: .list(messages), tools: object["tools"], templateArguments: object["chat_template_kwargs"],
                              reply: reply)
        default:
            throw KeelError("a task needs \"prompt\": a string or a list of messages")
        }
    }

    /// `completion` after `task`'s prompt, rendered as a preference pair's completion is (`pair(json:)`), for a reward
    /// model trained on such pairs to score where it learnt to: after a string prompt, the completion's text and the
    /// end-of-sequence token; after a conversation, the assistant's reply as the chat template writes it, end of turn
    /// included. The text is encoded again, as TRL's `GRPOTrainer` decodes completions and encodes them again for a
    /// reward model (which, for a string prompt, scores the text without special tokens, `add_special_tokens=False`:
    /// Keel's reward training starts every string prompt with the tokenizer's start-of-text token and ends every string
    /// completion with the end-of-sequence token, as TRL's `RewardTrainer` encodes pairs, and reads the reward there).
    public func rewardExample(_ task: TaskPrompt, completion: String) throws -> SupervisedExample {
        switch task.prompt {
        case .string(let prompt):
            return example(prompt: prompt, completion: completion)
        case .list(let messages):
            // A prompt that ends with the reply begun is scored as TRL scores it: that message taken off, and one reply of
            // its text and the completion.
            let formatter = try with(tools: task.tools, templateArguments: task.templateArguments)
            let asked = Self.role(messages.last!) == "assistant" ? Array(messages.dropLast()) : messages
            let reply = JinjaValue.dictionary(JinjaDictionary([("role", .string("assistant")), ("content", .string(task.reply + completion))]))
            return asked.isEmpty ? try formatter.example(messages: [reply]) : try formatter.example(prompt: asked, completion: [reply])
        default:
            preconditionFailure("a task's prompt is a string or a list of messages")
        }
    }
}
