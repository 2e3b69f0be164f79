/// Python's string semantics on Unicode scalars. The published filter rules are defined by datatrove's Python
/// code — `len`, `strip`, `split`, `splitlines`, `isspace`, `isalpha` — and a rule agrees with it document for
/// document only if these count exactly as Python does (code points, not grapheme clusters).
enum PythonText {
    /// `str.isspace()` for one character: the White_Space property, plus the separators U+001C–U+001F that
    /// Python also counts (their bidirectional class is B or S).
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 128 { return value == 32 || (9...13).contains(value) || (0x1C...0x1F).contains(value) }
        return scalar.properties.isWhitespace
    }

    /// `str.isalpha()` for one character: a letter (general category L*).
    static func isAlpha(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 128 { return (65...90).contains(value) || (97...122).contains(value) }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// The ranges of `str.splitlines()` (no line ends kept): lines end at \n, \r, \r\n, \v, \f, U+001C–U+001E,
    /// U+0085, U+2028 and U+2029; a final line end does not start an empty line.
    static func lines(_ text: [Unicode.Scalar]) -> [Range<Int>] {
        var lines: [Range<Int>] = []
        var start = 0, index = 0
        while index < text.count {
            let value = text[index].value
            let isBreak = value == 10 || value == 13 || value == 11 || value == 12 || (0x1C...0x1E).contains(value)
                || value == 0x85 || value == 0x2028 || value == 0x2029
            if isBreak {
                lines.append(start..<index)
                if value == 13, index + 1 < text.count, text[index + 1].value == 10 { index += 1 }
                start = index + 1
            }
            index += 1
        }
        if start < text.count { lines.append(start..<text.count) }
        return lines
    }

    /// The ranges of `text.split(separator)` for a one-character separator (empty pieces kept, as Python does).
    static func split(_ text: [Unicode.Scalar], on separator: Unicode.Scalar, in range: Range<Int>? = nil) -> [Range<Int>] {
        let range = range ?? 0..<text.count
        var pieces: [Range<Int>] = []
        var start = range.lowerBound
        for index in range where text[index] == separator {
            pieces.append(start..<index)
            start = index + 1
        }
        pieces.append(start..<range.upperBound)
        return pieces
    }

    /// The ranges of `str.split()`: runs of non-white-space characters.
    static func words(_ text: [Unicode.Scalar], in range: Range<Int>) -> [Range<Int>] {
        var words: [Range<Int>] = []
        var start: Int?
        for index in range {
            if isSpace(text[index]) {
                if let begun = start { words.append(begun..<index); start = nil }
            } else if start == nil {
                start = index
            }
        }
        if let begun = start { words.append(begun..<range.upperBound) }
        return words
    }

    /// `range` without leading and trailing white space (`str.strip()`).
    static func stripped(_ text: [Unicode.Scalar], _ range: Range<Int>) -> Range<Int> {
        var low = range.lowerBound, high = range.upperBound
        while low < high, isSpace(text[low]) { low += 1 }
        while high > low, isSpace(text[high - 1]) { high -= 1 }
        return low..<high
    }

    /// Whether `text[range]` ends with `suffix`.
    static func hasSuffix(_ text: [Unicode.Scalar], _ range: Range<Int>, _ suffix: [Unicode.Scalar]) -> Bool {
        guard range.count >= suffix.count else { return false }
        return text[(range.upperBound - suffix.count)..<range.upperBound].elementsEqual(suffix)
    }

    /// Whether `text[range]` starts with `prefix`.
    static func hasPrefix(_ text: [Unicode.Scalar], _ range: Range<Int>, _ prefix: [Unicode.Scalar]) -> Bool {
        guard range.count >= prefix.count else { return false }
        return text[range.lowerBound..<(range.lowerBound + prefix.count)].elementsEqual(prefix)
    }

    /// `text.find(needle)`: where `needle` first occurs in `text`, or nil.
    static func find(_ needle: [Unicode.Scalar], in text: [Unicode.Scalar]) -> Int? {
        guard let first = needle.first else { return 0 }
        guard text.count >= needle.count else { return nil }
        for index in 0...(text.count - needle.count) where text[index] == first {
            if text[index..<(index + needle.count)].elementsEqual(needle) { return index }
        }
        return nil
    }

    /// `str.count(needle)`: non-overlapping occurrences, left to right.
    static func count(_ needle: [Unicode.Scalar], in text: [Unicode.Scalar], _ range: Range<Int>? = nil) -> Int {
        let range = range ?? 0..<text.count
        guard !needle.isEmpty else { return range.count + 1 }
        var found = 0, index = range.lowerBound
        while index + needle.count <= range.upperBound {
            if text[index] == needle[0], text[index..<(index + needle.count)].elementsEqual(needle) {
                found += 1
                index += needle.count
            } else {
                index += 1
            }
        }
        return found
    }
}
