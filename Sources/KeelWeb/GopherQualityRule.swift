import KeelCore

/// Gopher's quality rules (Rae et al., 2021, appendix A), as datatrove's `GopherQualityFilter` applies them:
/// word count, mean word length, `#` and ellipsis per word, bullet and ellipsis lines, alphabetic words, stop
/// words. Words are spaCy's tokens; "symbol" tokens (only punctuation) are left out of the count and the mean.
public struct GopherQualityRule: QualityRule {
    public let name = "gopher_quality"
    public var minDocWords: Double? = 50
    public var maxDocWords: Double? = 100_000
    public var minAverageWordLength: Double? = 3
    public var maxAverageWordLength: Double? = 10
    public var maxSymbolWordRatio: Double? = 0.1
    public var maxBulletLinesRatio: Double? = 0.9
    public var maxEllipsisLinesRatio: Double? = 0.3
    /// The least share of words with a letter (datatrove's `max_non_alpha_words_ratio`, named for the opposite).
    public var maxNonAlphaWordsRatio: Double? = 0.8
    public var minStopWords: Double? = 2
    public var stopWords: Set<String> = ["the", "be", "to", "of", "and", "that", "have", "with"]

    public init() {}

    public func check(_ document: FilterDocument) -> String? {
        let text = document.scalars
        let words = document.words
        let nonSymbolWords = words.filter { word in text[word].contains { !RuleText.punctuation.contains($0) } }
        if let minimum = minDocWords, Double(nonSymbolWords.count) < minimum { return "gopher_short_doc" }
        if let maximum = maxDocWords, Double(nonSymbolWords.count) > maximum { return "gopher_long_doc" }
        // numpy's mean of nothing is NaN, which passes both comparisons.
        if !nonSymbolWords.isEmpty {
            let average = Double(nonSymbolWords.reduce(0) { $0 + $1.count }) / Double(nonSymbolWords.count)
            if let minimum = minAverageWordLength, average < minimum { return "gopher_below_avg_threshold" }
            if let maximum = maxAverageWordLength, average > maximum { return "gopher_above_avg_threshold" }
        }
        // datatrove divides by zero here (an exception) only when the word-count rule is off; keep such text.
        guard !words.isEmpty else { return nil }
        let wordCount = Double(words.count)
        if let maximum = maxSymbolWordRatio {
            if Double(PythonText.count(RuleText.hash, in: text)) / wordCount > maximum { return "gopher_too_many_hashes" }
            let ellipses = PythonText.count(RuleText.ellipsis, in: text) + PythonText.count(RuleText.ellipsisCharacter, in: text)
            if Double(ellipses) / wordCount > maximum { return "gopher_too_many_ellipsis" }
        }
        let lines = PythonText.lines(text)
        if !lines.isEmpty {
            if let maximum = maxBulletLinesRatio {
                let bullets = lines.filter { line in
                    guard let first = text[line].first(where: { !PythonText.isSpace($0) }) else { return false }
                    return first == "•" || first == "-"
                }.count
                if Double(bullets) / Double(lines.count) > maximum { return "gopher_too_many_bullets" }
            }
            if let maximum = maxEllipsisLinesRatio {
                let ellipsisLines = lines.filter { line in
                    let trimmed = PythonText.stripped(text, line)
                    return PythonText.hasSuffix(text, trimmed, RuleText.ellipsis)
                        || PythonText.hasSuffix(text, trimmed, RuleText.ellipsisCharacter)
                }.count
                if Double(ellipsisLines) / Double(lines.count) > maximum { return "gopher_too_many_end_ellipsis" }
            }
        }
        if let minimum = maxNonAlphaWordsRatio {
            let alphabetic = words.filter { text[$0].contains(where: PythonText.isAlpha) }.count
            if Double(alphabetic) / wordCount < minimum { return "gopher_below_alpha_threshold" }
        }
        if let minimum = minStopWords {
            var found = Set<String>()
            let longest = stopWords.map(\.unicodeScalars.count).max() ?? 0
            for word in words where word.count <= longest {
                let string = document.string(word)
                if stopWords.contains(string) { found.insert(string) }
            }
            if Double(found.count) < minimum { return "gopher_enough_stop_words" }
        }
        return nil
    }

    public mutating func set(_ parameter: String, to value: String) throws {
        let rule = name
        func number() throws -> Double? { try Self.number(value, for: parameter, in: rule) }
        switch parameter {
        case "min_doc_words": minDocWords = try number()
        case "max_doc_words": maxDocWords = try number()
        case "min_avg_word_length": minAverageWordLength = try number()
        case "max_avg_word_length": maxAverageWordLength = try number()
        case "max_symbol_word_ratio": maxSymbolWordRatio = try number()
        case "max_bullet_lines_ratio": maxBulletLinesRatio = try number()
        case "max_ellipsis_lines_ratio": maxEllipsisLinesRatio = try number()
        case "max_non_alpha_words_ratio": maxNonAlphaWordsRatio = try number()
        case "min_stop_words": minStopWords = try number()
        case "stop_words": stopWords = Set(value.split(separator: ",").map { String($0) })
        default:
            throw Self.unknown(parameter, in: name, known: [
                "min_doc_words", "max_doc_words", "min_avg_word_length", "max_avg_word_length", "max_symbol_word_ratio",
                "max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "max_non_alpha_words_ratio", "min_stop_words",
                "stop_words",
            ])
        }
    }
}
