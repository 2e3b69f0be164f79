import KeelCore

/// Gopher's repetition rules (Rae et al., 2021, table A1), as datatrove's `GopherRepetitionFilter` applies them:
/// duplicated paragraphs and lines (by count and by characters), the most frequent 2–4-gram's share of the
/// characters, and the share of characters in repeated 5–10-grams.
public struct GopherRepetitionRule: QualityRule {
    public let name = "gopher_repetition"
    public var duplicateLineFraction: Double? = 0.3
    public var duplicateParagraphFraction: Double? = 0.3
    public var duplicateLineCharacterFraction: Double? = 0.2
    public var duplicateParagraphCharacterFraction: Double? = 0.2
    /// (n, the most frequent n-gram's largest share of the characters).
    public var topNGrams: [(Int, Double)] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    /// (n, the largest share of characters in n-grams seen before).
    public var duplicateNGrams: [(Int, Double)] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]

    public init() {}

    public func check(_ document: FilterDocument) -> String? {
        let text = document.scalars
        guard !text.isEmpty else { return nil }
        let length = Double(text.count)
        // Paragraphs: the stripped text split at runs of two or more newlines (re.split(r"\n{2,}")).
        let paragraphs = Self.split(text, PythonText.stripped(text, 0..<text.count), minimumNewlines: 2)
        let (duplicateParagraphs, paragraphCharacters) = Self.duplicates(text, paragraphs)
        if let maximum = duplicateParagraphFraction, Double(duplicateParagraphs) / Double(paragraphs.count) > maximum {
            return "dup_para_frac"
        }
        if let maximum = duplicateParagraphCharacterFraction, Double(paragraphCharacters) / length > maximum {
            return "dup_para_char_frac"
        }
        let lines = Self.split(text, 0..<text.count, minimumNewlines: 1)
        let (duplicateLines, lineCharacters) = Self.duplicates(text, lines)
        if let maximum = duplicateLineFraction, Double(duplicateLines) / Double(lines.count) > maximum {
            return "dup_line_frac"
        }
        if let maximum = duplicateLineCharacterFraction, Double(lineCharacters) / length > maximum {
            return "dup_line_char_frac"
        }
        let words = document.words
        let joined = WordRunHashes(text, words, separator: " ")
        for (n, maximum) in topNGrams where words.count >= n {
            if Double(Self.topNGramCharacters(words, joined, n)) / length > maximum { return "top_\(n)_gram" }
        }
        let concatenated = WordRunHashes(text, words, separator: nil)
        for (n, maximum) in duplicateNGrams {
            if Double(Self.repeatedNGramCharacters(words, concatenated, n)) / length > maximum { return "duplicated_\(n)_n_grams" }
        }
        return nil
    }

    /// `re.split("\n{k,}", text[range])` for k = `minimumNewlines`.
    static func split(_ text: [Unicode.Scalar], _ range: Range<Int>, minimumNewlines: Int) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var start = range.lowerBound, index = range.lowerBound
        while index < range.upperBound {
            guard text[index] == "\n" else { index += 1; continue }
            var end = index
            while end < range.upperBound, text[end] == "\n" { end += 1 }
            if end - index >= minimumNewlines {
                pieces.append(start..<index)
                start = end
            }
            index = end
        }
        pieces.append(start..<range.upperBound)
        return pieces
    }

    /// datatrove's `find_duplicates`: how many pieces repeat an earlier one, and their characters.
    static func duplicates(_ text: [Unicode.Scalar], _ pieces: [Range<Int>]) -> (count: Int, characters: Int) {
        var seen = Set<ArraySlice<Unicode.Scalar>>()
        var count = 0, characters = 0
        for piece in pieces where !seen.insert(text[piece]).inserted {
            count += 1
            characters += piece.count
        }
        return (count, characters)
    }

    /// The characters of the most frequent n-gram (words joined by spaces) times its count; among equally
    /// frequent n-grams the first seen, as Python's `Counter.most_common(1)` picks.
    static func topNGramCharacters(_ words: [Range<Int>], _ hashes: WordRunHashes, _ n: Int) -> Int {
        var counts: [UInt64: (count: Int, first: Int)] = [:]
        var best = (count: 0, first: Int.max)
        for start in 0...(words.count - n) {
            let key = hashes.hash(start..<(start + n))
            var entry = counts[key] ?? (0, start)
            entry.count += 1
            counts[key] = entry
            if entry.count > best.count || (entry.count == best.count && entry.first < best.first) { best = entry }
        }
        let characters = words[best.first..<(best.first + n)].reduce(n - 1) { $0 + $1.count }
        return characters * best.count
    }

    /// datatrove's `find_all_duplicate`: walking the words, an n-gram (its words concatenated without spaces,
    /// so "ab c" repeats "a bc") seen before adds its characters and jumps n words; otherwise it is remembered
    /// and the walk moves one.
    static func repeatedNGramCharacters(_ words: [Range<Int>], _ hashes: WordRunHashes, _ n: Int) -> Int {
        var seen = Set<UInt64>()
        var repeated = 0, index = 0
        while index < words.count - n + 1 {
            if seen.insert(hashes.hash(index..<(index + n))).inserted {
                index += 1
            } else {
                repeated += words[index..<(index + n)].reduce(0) { $0 + $1.count }
                index += n
            }
        }
        return repeated
    }

    public mutating func set(_ parameter: String, to value: String) throws {
        let rule = name
        func number() throws -> Double? { try Self.number(value, for: parameter, in: rule) }
        switch parameter {
        case "dup_line_frac": duplicateLineFraction = try number()
        case "dup_para_frac": duplicateParagraphFraction = try number()
        case "dup_line_char_frac": duplicateLineCharacterFraction = try number()
        case "dup_para_char_frac": duplicateParagraphCharacterFraction = try number()
        case "top_n_grams": topNGrams = try Self.pairs(value, parameter, name)
        case "dup_n_grams": duplicateNGrams = try Self.pairs(value, parameter, name)
        default:
            throw Self.unknown(parameter, in: name, known: [
                "dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac", "top_n_grams", "dup_n_grams",
            ])
        }
    }

    /// "2:0.2,3:0.18" → [(2, 0.2), (3, 0.18)].
    static func pairs(_ value: String, _ parameter: String, _ rule: String) throws -> [(Int, Double)] {
        try value.split(separator: ",").map { item in
            let parts = item.split(separator: ":")
            guard parts.count == 2, let n = Int(parts[0]), n > 0, let fraction = Double(parts[1]) else {
                throw KeelError("\(rule).\(parameter): \"\(item)\" is not n:fraction (for example 2:0.2)")
            }
            return (n, fraction)
        }
    }
}

/// Hashes of runs of consecutive words, as strings: the words' characters run together (with `separator`
/// between words, or nothing), hashed as a polynomial modulo the Mersenne prime 2^61 − 1 so that any run's
/// hash comes from two prefix hashes in constant time. Two different strings of a document collide with
/// probability about length / 2^61 — far below anything a ratio threshold can notice.
struct WordRunHashes {
    private static let prime: UInt64 = (1 << 61) - 1
    private static let base: UInt64 = 0x1F3D_5B79_A4C2_E681 % prime
    /// prefix[k]: hash of the first k characters of the run-together text.
    private var prefix: [UInt64] = [0]
    private var powers: [UInt64] = [1]
    /// Where each word starts and ends in the run-together text.
    private var starts: [Int] = [], ends: [Int] = []

    init(_ text: [Unicode.Scalar], _ words: [Range<Int>], separator: Unicode.Scalar?) {
        for word in words {
            if let separator, !starts.isEmpty { append(separator) }
            starts.append(prefix.count - 1)
            for scalar in text[word] { append(scalar) }
            ends.append(prefix.count - 1)
        }
    }

    private mutating func append(_ scalar: Unicode.Scalar) {
        prefix.append(Self.add(Self.multiply(prefix[prefix.count - 1], Self.base), UInt64(scalar.value) + 1))
        powers.append(Self.multiply(powers[powers.count - 1], Self.base))
    }

    /// The hash of words `range` as one string.
    func hash(_ range: Range<Int>) -> UInt64 {
        let start = starts[range.lowerBound], end = ends[range.upperBound - 1]
        let shifted = Self.multiply(prefix[start], powers[end - start])
        return Self.add(prefix[end], Self.prime - shifted)
    }

    private static func add(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let sum = a + b
        return sum >= prime ? sum - prime : sum
    }

    private static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (high, low) = a.multipliedFullWidth(by: b)
        // 2^64 ≡ 2^3 (mod 2^61 − 1): fold the 122-bit product into 61 bits.
        let folded = (low & prime) + (low >> 61) + (high << 3)
        let reduced = (folded & prime) + (folded >> 61)
        return reduced >= prime ? reduced - prime : reduced
    }
}
