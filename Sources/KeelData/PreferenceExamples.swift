import Foundation
import KeelCore

/// One preference pair: the same prompt completed two ways, the chosen (preferred) and the rejected completion,
/// each as a supervised example whose trained tokens are its completion's.
public struct PreferencePair: Sendable, Equatable {
    public var chosen: SupervisedExample
    public var rejected: SupervisedExample
    /// How much better the chosen response is (a line's `margin`, as TRL's `RewardTrainer` reads it; 0 without).
    public var margin: Double

    public init(chosen: SupervisedExample, rejected: SupervisedExample, margin: Double = 0) {
        self.chosen = chosen
        self.rejected = rejected
        self.margin = margin
    }
}

extension SupervisedFormatter {
    /// The pair of one JSONL line in TRL's preference format (the caller names the file and line in errors):
    /// `prompt`, `chosen` and `rejected` — three strings, or three lists of messages (the completions usually one
    /// assistant message each) — or only `chosen` and `rejected`, whose shared beginning is the prompt (TRL's
    /// `extract_prompt`: the longest common prefix of the two strings or message lists, a space before the first
    /// difference left to the completions). A string completion ends with the end-of-sequence token, as TRL's
    /// `DPOTrainer` ends it. A number `margin` is kept (reward models can use it).
    public func pair(json line: String) throws -> PreferencePair {
        var pair = try responses(json: line)
        if let value = try? JinjaValue(json: line), case .dictionary(let fields) = value, let margin = fields["margin"] {
            switch margin {
            case .int(let number): pair.margin = Double(number)
            case .double(let number): pair.margin = number
            default: throw KeelError("\"margin\" must be a number")
            }
        }
        return pair
    }

    private func responses(json line: String) throws -> PreferencePair {
        guard case .dictionary(var fields) = try JinjaValue(json: line) else {
            throw KeelError("a preference pair must be a JSON object with \"chosen\" and \"rejected\" (and \"prompt\")")
        }
        guard let chosen = fields["chosen"], let rejected = fields["rejected"] else {
            throw KeelError("a preference pair needs \"chosen\" and \"rejected\" (it has \(fields.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
        if fields["prompt"] == nil {
            let split = try Self.sharedPrompt(chosen, rejected)
            fields["prompt"] = split.prompt
            fields["chosen"] = split.chosen
            fields["rejected"] = split.rejected
        }
        let formatter = try with(tools: fields["tools"], templateArguments: fields["chat_template_kwargs"])
        switch (fields["prompt"]!, fields["chosen"]!, fields["rejected"]!) {
        case (.string(let prompt), .string(let chosen), .string(let rejected)):
            return PreferencePair(chosen: formatter.example(prompt: prompt, completion: chosen),
                                  rejected: formatter.example(prompt: prompt, completion: rejected))
        case (.list(let prompt), .list(let chosen), .list(let rejected)):
            let messages = try Self.conversation(.list(prompt), field: "prompt")
            return PreferencePair(
                chosen: try formatter.example(prompt: messages, completion: try Self.conversation(.list(chosen), field: "chosen")),
                rejected: try formatter.example(prompt: messages, completion: try Self.conversation(.list(rejected), field: "rejected")))
        default:
            throw KeelError("\"prompt\", \"chosen\" and \"rejected\" must all be strings or all be lists of messages")
        }
    }

    /// TRL's `extract_prompt`: the prompt is what `chosen` and `rejected` share up to their first difference (minus
    /// a space just before it); without a difference, all but the shorter one's last element.
    static func sharedPrompt(_ chosen: JinjaValue, _ rejected: JinjaValue) throws
        -> (prompt: JinjaValue, chosen: JinjaValue, rejected: JinjaValue) {
        switch (chosen, rejected) {
        case (.string(let c), .string(let r)):
            // Python indexes strings by code point.
            let a = Array(c.unicodeScalars), b = Array(r.unicodeScalars)
            let cut = try Self.promptLength(a.count, b.count, differsAt: { a[$0] != b[$0] }, isSpace: { a[$0] == " " })
            let text = { (scalars: ArraySlice<Unicode.Scalar>) in JinjaValue.string(String(String.UnicodeScalarView(scalars))) }
            return (text(a[..<cut]), text(a[cut...]), text(b[cut...]))
        case (.list(let a), .list(let b)):
            let cut = try Self.promptLength(a.count, b.count, differsAt: { a[$0] != b[$0] }, isSpace: { _ in false })
            return (.list(Array(a[..<cut])), .list(Array(a[cut...])), .list(Array(b[cut...])))
        default:
            throw KeelError("\"chosen\" and \"rejected\" must both be strings or both be lists of messages")
        }
    }

    private static func promptLength(_ a: Int, _ b: Int, differsAt: (Int) -> Bool, isSpace: (Int) -> Bool) throws -> Int {
        let shared = min(a, b)
        guard shared > 0 else { throw KeelError("\"chosen\" or \"rejected\" is empty: there is no prompt to find; give \"prompt\"") }
        for index in 0..<shared where differsAt(index) {
            return index > 0 && isSpace(index - 1) ? index - 1 : index
        }
        return shared - 1
    }
}
