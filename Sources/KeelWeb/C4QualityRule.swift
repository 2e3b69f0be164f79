import KeelCore

/// C4's line and page rules (Raffel et al., 2020), as datatrove's `C4QualityFilter` applies them: lines
/// without terminal punctuation, with fewer than three words, mentioning JavaScript or a cookie/terms policy,
/// or with a word over 1,000 characters are dropped; a page with "lorem ipsum" or a curly bracket is removed,
/// and so is one left with fewer than five sentences. The kept lines become the document's text.
public struct C4QualityRule: QualityRule {
    public let name = "c4_quality"
    public var removeCitations = true
    public var filterNoTerminalPunctuation = true
    /// Fewer sentences than this (after the line rules) removes the page; nil turns it off.
    public var minSentences: Int? = 5
    public var minWordsPerLine: Int? = 3
    public var maxWordLength: Int? = 1000
    public var filterLoremIpsum = true
    public var filterJavaScript = true
    public var filterCurlyBracket = true
    public var filterPolicy = true

    static let policyPhrases = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]
        .map(RuleText.scalars)
    static let loremIpsum = RuleText.scalars("lorem ipsum"), javaScript = RuleText.scalars("javascript")
    static let endPunctuation: Set<Unicode.Scalar> = [".", "?", "!", "\"", "'"]

    public init() {}

    public func check(_ document: FilterDocument) -> String? {
        let text = document.scalars
        var sentences = 0
        var kept: [String] = []
        for lineRange in PythonText.lines(text) {
            let stripped = PythonText.stripped(text, lineRange)
            let words = PythonText.words(text, in: stripped)
            if let maximum = maxWordLength, words.contains(where: { $0.count > maximum }) { continue }
            var line = Array(text[stripped])
            if removeCitations { line = Self.removingCitations(line) }
            if filterNoTerminalPunctuation,
               !(line.last.map(Self.endPunctuation.contains) ?? false) || PythonText.hasSuffix(line, 0..<line.count, RuleText.ellipsis) {
                continue
            }
            // datatrove counts the words of the line before citations are removed.
            if let minimum = minWordsPerLine, words.count < minimum { continue }
            let string = String(String.UnicodeScalarView(line))
            let lowered = Array(string.lowercased().unicodeScalars)
            func mentions(_ phrase: [Unicode.Scalar]) -> Bool { PythonText.find(phrase, in: lowered) != nil }
            if filterLoremIpsum, mentions(Self.loremIpsum) { return "lorem_ipsum" }
            if filterJavaScript, mentions(Self.javaScript) { continue }
            if filterCurlyBracket, line.contains("{") { return "curly_bracket" }
            if filterPolicy, Self.policyPhrases.contains(where: mentions) { continue }
            if minSentences != nil { sentences += EnglishTokenizer.shared.sentenceCount(line) }
            kept.append(string)
        }
        if let minimum = minSentences, sentences < minimum { return "too_few_sentences" }
        let joined = kept.joined(separator: "\n")
        let result = String(String.UnicodeScalarView(Self.strip(Array(joined.unicodeScalars))))
        if result != document.text { document.replaceText(result) }
        return nil
    }

    private static func strip(_ text: [Unicode.Scalar]) -> ArraySlice<Unicode.Scalar> {
        text[PythonText.stripped(text, 0..<text.count)]
    }

    /// Removes `[12]`, `[]`, `[edit]` and `[citation needed]` (datatrove's CITATION_REGEX), left to right.
    static func removingCitations(_ line: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard line.contains("[") else { return line }
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(line.count)
        var index = 0
        while index < line.count {
            if line[index] == "[" {
                var end = index + 1
                while end < line.count, line[end].properties.numericType == .decimal { end += 1 }
                if end < line.count, line[end] == "]" { index = end + 1; continue }
                let rest = line[(index + 1)...]
                if rest.starts(with: "edit]".unicodeScalars) { index += 6; continue }
                if rest.starts(with: "citation needed]".unicodeScalars) { index += 17; continue }
            }
            result.append(line[index])
            index += 1
        }
        return result
    }

    public mutating func set(_ parameter: String, to value: String) throws {
        let rule = name
        func flag() throws -> Bool { try Self.flag(value, for: parameter, in: rule) }
        func count() throws -> Int? { try Self.count(value, for: parameter, in: rule) }
        switch parameter {
        case "remove_citations": removeCitations = try flag()
        case "filter_no_terminal_punct": filterNoTerminalPunctuation = try flag()
        case "min_num_sentences": minSentences = value == "-1" ? nil : try count()
        case "min_words_per_line": minWordsPerLine = value == "-1" ? nil : try count()
        case "max_word_length": maxWordLength = value == "-1" ? nil : try count()
        case "filter_lorem_ipsum": filterLoremIpsum = try flag()
        case "filter_javascript": filterJavaScript = try flag()
        case "filter_curly_bracket": filterCurlyBracket = try flag()
        case "filter_policy": filterPolicy = try flag()
        default:
            throw Self.unknown(parameter, in: name, known: [
                "remove_citations", "filter_no_terminal_punct", "min_num_sentences", "min_words_per_line", "max_word_length",
                "filter_lorem_ipsum", "filter_javascript", "filter_curly_bracket", "filter_policy",
            ])
        }
    }
}
