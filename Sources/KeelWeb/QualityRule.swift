import KeelCore

/// A document as the quality rules see it: its text as Unicode scalars (Python's units for `len` and
/// indexing), and its spaCy-style words, computed once and shared by the rules that count words.
public final class FilterDocument {
    public private(set) var text: String
    /// The language and its probability, once the language rule has looked.
    public internal(set) var language: (code: String, probability: Double)?
    private(set) var scalars: [Unicode.Scalar]
    private var cachedWords: [Range<Int>]?

    public init(text: String) {
        self.text = text
        scalars = Array(text.unicodeScalars)
    }

    /// The words datatrove's `split_into_words` returns, as ranges of `scalars`.
    var words: [Range<Int>] {
        if let cachedWords { return cachedWords }
        let words = EnglishTokenizer.shared.words(scalars)
        cachedWords = words
        return words
    }

    /// The words as strings (for inspecting what the rules count).
    public var wordStrings: [String] { words.map(string) }

    func string(_ range: Range<Int>) -> String { String(String.UnicodeScalarView(scalars[range])) }

    /// Replaces the text (C4 drops lines; the rules after it see what is left).
    func replaceText(_ newText: String) {
        text = newText
        scalars = Array(newText.unicodeScalars)
        cachedWords = nil
    }
}

/// One published rule set (Gopher quality, Gopher repetition, C4, FineWeb). `check` returns nil to keep the
/// document, or why it is removed — datatrove's reason names, so the two can be compared document by document.
public protocol QualityRule: Sendable {
    /// The rule set's name in configurations, reports and `--set` (for example `gopher_quality`).
    var name: String { get }
    func check(_ document: FilterDocument) -> String?
    /// Sets a threshold by its datatrove parameter name; throws `KeelError` for an unknown name or bad value.
    mutating func set(_ parameter: String, to value: String) throws
    /// Loads what the rule needs (a model), once its parameters are set; throws `KeelError` if it cannot.
    mutating func prepare() throws
}

extension QualityRule {
    public mutating func prepare() throws {}

    /// Parses a parameter value: a number, `none`/`0` (the rule off, as a falsy threshold is in datatrove).
    static func number(_ value: String, for parameter: String, in rule: String) throws -> Double? {
        if ["none", "off", "false"].contains(value.lowercased()) { return nil }
        guard let number = Double(value), number.isFinite else {
            throw KeelError("\(rule).\(parameter): \"\(value)\" is not a number (or none)")
        }
        return number == 0 ? nil : number
    }

    /// Parses a count: a whole number of at most 2³¹ − 1 (a length, a number of sentences), or nil as `number` gives.
    static func count(_ value: String, for parameter: String, in rule: String) throws -> Int? {
        guard let number = try number(value, for: parameter, in: rule) else { return nil }
        guard number == number.rounded(), abs(number) <= Double(Int32.max) else {
            throw KeelError("\(rule).\(parameter): \"\(value)\" is not a whole number of at most \(Int32.max) (or none)")
        }
        return Int(number)
    }

    static func flag(_ value: String, for parameter: String, in rule: String) throws -> Bool {
        switch value.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw KeelError("\(rule).\(parameter): \"\(value)\" is not true or false")
        }
    }

    static func unknown(_ parameter: String, in rule: String, known: [String]) -> KeelError {
        KeelError("\(rule) has no parameter \"\(parameter)\"; it has \(known.joined(separator: ", "))")
    }
}

/// Scalar arrays of the literals the rules search for.
enum RuleText {
    static func scalars(_ string: String) -> [Unicode.Scalar] { Array(string.unicodeScalars) }
    static let ellipsis = scalars("..."), ellipsisCharacter = scalars("…"), hash = scalars("#"), newline = scalars("\n")
    static let punctuation = Set(EnglishTokenizerTables.punctuation.map { $0.unicodeScalars.first! })
    static let terminalPunctuation = Set(EnglishTokenizerTables.terminalPunctuation.map { $0.unicodeScalars.first! })
}
