import Foundation
import KeelCore

/// Rewards a program can check, from a completion's text and its task's fields: 1 when the completion is right, 0
/// otherwise.
public enum VerifiableReward: String, Sendable, CaseIterable {
    /// The last number in the completion equals the task's `answer` as a number ("17 + 72 = 89" for 89).
    case lastNumber = "last-number"
    /// The completion, without leading and trailing white space, is the task's `answer`.
    case exactMatch = "exact-match"

    /// The field every task must have.
    public static let answerField = "answer"

    /// The reward of `completion` for a task with `fields` (which hold `answer`: `TaskPrompt.fields`).
    public func reward(_ completion: String, fields: [String: String]) -> Double {
        guard let answer = fields[Self.answerField] else { return 0 }
        switch self {
        case .lastNumber:
            guard let expected = Double(answer.trimmingCharacters(in: .whitespaces)),
                  let last = Self.numbers(in: completion).last else { return 0 }
            return last == expected ? 1 : 0
        case .exactMatch:
            return completion.trimmingCharacters(in: .whitespacesAndNewlines) == answer ? 1 : 0
        }
    }

    /// The numbers written in `text`: optional minus, digits, optional decimals ("3.", a sentence's full stop, is 3).
    static func numbers(in text: String) -> [Double] {
        var numbers: [Double] = [], current = ""
        let characters = Array(text)
        func flush() {
            if let value = Double(current.hasSuffix(".") ? String(current.dropLast()) : current) { numbers.append(value) }
            current = ""
        }
        for (index, character) in characters.enumerated() {
            if character.isASCII && character.isNumber {
                current.append(character)
            } else if character == ".", !current.isEmpty, !current.contains(".") {
                current.append(character)
            } else if character == "-", current.isEmpty, index + 1 < characters.count, characters[index + 1].isASCII,
                      characters[index + 1].isNumber, index == 0 || !(characters[index - 1].isLetter || characters[index - 1].isNumber) {
                current.append(character)
            } else {
                flush()
            }
        }
        flush()
        return numbers
    }
}
