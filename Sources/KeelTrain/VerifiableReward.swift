import Foundation
import KeelCore

/// Rewards a program can check, from a completion's text and its task's fields: 1 when the completion is right, 0
/// otherwise.
public enum VerifiableReward: String, Sendable, CaseIterable {
    /// The last number in the completion equals the number the task's `answer` states ("17 + 72 = 89" for 89;
    /// "1,234" is 1234 in both): its only number, or the one after GSM8K's "####" (its worked solution holds others).
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
            guard let expected = Self.statedNumber(answer), let last = Self.numbers(in: completion).last else { return 0 }
            return last == expected ? 1 : 0
        case .exactMatch:
            return completion.trimmingCharacters(in: .whitespacesAndNewlines) == answer ? 1 : 0
        }
    }

    /// Checks that a task's `fields` hold what the reward compares with: an `answer`, and for `lastNumber` one that
    /// states a number — a task it could never reward would train on nothing but flat groups, without a word.
    public func check(_ fields: [String: String]) throws {
        guard let answer = fields[Self.answerField] else { throw KeelError("a task needs \"\(Self.answerField)\", which the reward checks") }
        if self == .lastNumber, Self.statedNumber(answer) == nil {
            throw KeelError("the \"\(Self.answerField)\" \(String(reflecting: String(answer.prefix(60)))) states no single number, which the last-number reward compares with (GSM8K's worked answers are read after their \"####\")")
        }
    }

    /// The number `answer` states: what follows its last "####" when it has one (GSM8K's "… = 72\n#### 72"), else its
    /// only number; nil when that is none or several.
    static func statedNumber(_ answer: String) -> Double? {
        let stated = answer.range(of: "####", options: .backwards).map { String(answer[$0.upperBound...]) } ?? answer
        let found = numbers(in: stated)
        return found.count == 1 ? found[0] : nil
    }

    /// The numbers written in `text`: optional minus, digits with optional thousands commas ("1,234"), optional
    /// decimals (".5" is 0.5; "3.", a sentence's full stop, is 3).
    static func numbers(in text: String) -> [Double] {
        var numbers: [Double] = [], current = ""
        let characters = Array(text)
        func flush() {
            if let value = Double(current.hasSuffix(".") ? String(current.dropLast()) : current) { numbers.append(value) }
            current = ""
        }
        func digit(_ offset: Int) -> Bool { characters.indices.contains(offset) && characters[offset].isASCII && characters[offset].isNumber }
        /// Whether a sign or a point at `index` may start a number: not after a letter or a digit ("x-3" is 3).
        func starts(_ index: Int) -> Bool { index == 0 || !(characters[index - 1].isLetter || characters[index - 1].isNumber) }
        for (index, character) in characters.enumerated() {
            if digit(index) {
                current.append(character)
            } else if character == ",", current.contains(where: \.isNumber), !current.contains("."),
                      (1...3).allSatisfy({ digit(index + $0) }), !digit(index + 4) {
                // A thousands separator: three digits follow, and no fourth.
            } else if character == ".", !current.contains("."), digit(index + 1) || current.contains(where: \.isNumber),
                      !current.isEmpty || starts(index) {
                current += current.contains(where: \.isNumber) ? "." : "0."
            } else if character == "-", current.isEmpty, digit(index + 1) || (characters.indices.contains(index + 1)
                      && characters[index + 1] == "." && digit(index + 2)), starts(index) {
                current.append(character)
            } else {
                flush()
            }
        }
        flush()
        return numbers
    }
}
