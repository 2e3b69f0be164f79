import KeelCore

/// FineWeb's own quality rules (Penedo et al., 2024), as datatrove's `FineWebQualityFilter` applies them: too
/// few lines ending in terminal punctuation, too many short lines, too many characters in duplicated lines,
/// and too many newlines per word (list-like pages).
public struct FineWebQualityRule: QualityRule {
    public let name = "fineweb_quality"
    public var linePunctuationThreshold: Double = 0.12
    /// Keep pages with no punctuated line at all (for languages without such punctuation).
    public var linePunctuationExcludeZero = false
    public var shortLineThreshold: Double = 0.67
    public var shortLineLength = 30
    public var characterDuplicatesRatio: Double = 0.01
    public var newLineRatio: Double = 0.3

    public init() {}

    public func check(_ document: FilterDocument) -> String? {
        let text = document.scalars
        let lines = PythonText.split(text, on: "\n").filter { !PythonText.stripped(text, $0).isEmpty }
        guard !lines.isEmpty else { return "empty" }
        let count = Double(lines.count)
        let punctuated = Double(lines.filter { RuleText.terminalPunctuation.contains(text[$0.upperBound - 1]) }.count) / count
        if punctuated < linePunctuationThreshold, !(punctuated == 0 && linePunctuationExcludeZero) { return "line_punct_ratio" }
        if Double(lines.filter { $0.count <= shortLineLength }.count) / count > shortLineThreshold { return "short_line_ratio" }
        let newlines = PythonText.count(RuleText.newline, in: text)
        let duplicated = GopherRepetitionRule.duplicates(text, lines).characters
        if Double(duplicated) / Double(text.count - newlines) > characterDuplicatesRatio { return "char_dup_ratio" }
        if Double(newlines) / Double(document.words.count) > newLineRatio { return "list_ratio" }
        return nil
    }

    public mutating func set(_ parameter: String, to value: String) throws {
        func number() throws -> Double {
            guard let number = Double(value), number.isFinite else {
                throw KeelError("\(name).\(parameter): \"\(value)\" is not a number")
            }
            return number
        }
        switch parameter {
        case "line_punct_thr": linePunctuationThreshold = try number()
        case "line_punct_exclude_zero": linePunctuationExcludeZero = try Self.flag(value, for: parameter, in: name)
        case "short_line_thr": shortLineThreshold = try number()
        case "short_line_length": shortLineLength = try Self.count(value, for: parameter, in: name) ?? 0
        case "char_duplicates_ratio": characterDuplicatesRatio = try number()
        case "new_line_ratio": newLineRatio = try number()
        default:
            throw Self.unknown(parameter, in: name, known: [
                "line_punct_thr", "line_punct_exclude_zero", "short_line_thr", "short_line_length",
                "char_duplicates_ratio", "new_line_ratio",
            ])
        }
    }
}
