import Foundation

/// datatrove's `simplify_text` with its default `TextNormConfig`: lowercase; every run of decimal digits (with at most
/// one decimal separator inside, `\p{Nd}+([.,،٫⎖⎗⎘]\p{Nd}+)?`) becomes "0"; datatrove's PUNCTUATION characters become
/// spaces; whitespace runs become one space, trimmed; canonical decomposition (NFD) with the combining marks
/// (category Mn) dropped; trimmed again.
///
/// Near-duplicate detection compares shingles of this text, so Keel's version must agree with datatrove's character
/// for character: the tests check it against strings datatrove produced. Known difference: when one scalar's
/// decomposition leaves marks that are not Mn but have a combining class (a few musical symbols), NFD would reorder
/// them and this does not.
public func simplifiedText(_ text: String) -> String {
    var simplifier = TextSimplifier()
    simplifier.simplify(text)
    var result = String.UnicodeScalarView()
    result.append(contentsOf: simplifier.scalars)
    return String(result)
}

/// The reusable state behind `simplifiedText`: scratch arrays and per-scalar property caches, so the per-document
/// loop neither allocates nor asks Unicode tables twice about the same character.
struct TextSimplifier {
    /// The simplified text.
    private(set) var scalars: [Unicode.Scalar] = []
    private var source: [UInt32] = []
    private var lowered: [UInt32] = []
    private var cache: [UInt32: ScalarInfo] = [:]

    private struct ScalarInfo {
        var lowercase: [UInt32]
        var isDigit: Bool
        /// Punctuation (a space to datatrove) or whitespace.
        var isSpace: Bool
        /// The canonical decomposition without nonspacing marks.
        var decomposed: [Unicode.Scalar]
    }

    mutating func simplify(_ text: String) {
        source.removeAll(keepingCapacity: true)
        for scalar in text.unicodeScalars { source.append(scalar.value) }
        lower()
        scalars.removeAll(keepingCapacity: true)
        var pendingSpace = false
        var i = 0
        let count = lowered.count
        while i < count {
            var c = lowered[i]
            if isDigit(c) {
                // NUMBERS_PATTERN: greedy digits, then optionally one separator followed by at least one digit.
                i += 1
                while i < count, isDigit(lowered[i]) { i += 1 }
                if i + 1 < count, Self.isDecimalSeparator(lowered[i]), isDigit(lowered[i + 1]) {
                    i += 2
                    while i < count, isDigit(lowered[i]) { i += 1 }
                }
                c = 0x30
            } else {
                i += 1
            }
            if isSpaceOrPunctuation(c) {
                pendingSpace = true
                continue
            }
            // Whitespace is collapsed before the decomposition (as datatrove orders it), so a mark standing alone
            // between spaces leaves two spaces behind.
            if pendingSpace && !scalars.isEmpty { scalars.append(" ") }
            pendingSpace = false
            if c < 0x80 {
                scalars.append(Unicode.Scalar(UInt8(truncatingIfNeeded: c)))
            } else {
                scalars.append(contentsOf: info(c).decomposed)
            }
        }
        // The final strip(): a decomposition can leave whitespace or nothing at either end.
        var end = scalars.count
        while end > 0, PythonText.isSpace(scalars[end - 1]) { end -= 1 }
        var start = 0
        while start < end, PythonText.isSpace(scalars[start]) { start += 1 }
        if start > 0 || end < scalars.count {
            scalars = Array(scalars[start..<end])
        }
    }

    /// Python's `str.lower()`: full case mapping, with Σ as ς at the end of a word (the Final_Sigma condition).
    private mutating func lower() {
        lowered.removeAll(keepingCapacity: true)
        for (index, c) in source.enumerated() {
            if c < 0x80 {
                lowered.append(c >= 0x41 && c <= 0x5A ? c + 32 : c)
            } else if c == 0x3A3 {
                lowered.append(isFinalSigma(at: index) ? 0x3C2 : 0x3C3)
            } else {
                lowered.append(contentsOf: info(c).lowercase)
            }
        }
    }

    private func isFinalSigma(at index: Int) -> Bool {
        func property(_ c: UInt32) -> Unicode.Scalar.Properties { Unicode.Scalar(c)!.properties }
        var j = index - 1
        while j >= 0, property(source[j]).isCaseIgnorable { j -= 1 }
        guard j >= 0, property(source[j]).isCased else { return false }
        j = index + 1
        while j < source.count, property(source[j]).isCaseIgnorable { j += 1 }
        return j == source.count || !property(source[j]).isCased
    }

    private mutating func info(_ c: UInt32) -> ScalarInfo {
        if let known = cache[c] { return known }
        let scalar = Unicode.Scalar(c)!
        let properties = scalar.properties
        // Decomposed behind an "a": Foundation drops a U+FEFF (byte order mark) at the start of a string, and
        // "a" neither decomposes nor combines, so it only has to be taken off again.
        let decomposed = Array(("a" + String(Character(scalar))).decomposedStringWithCanonicalMapping.unicodeScalars
            .dropFirst().filter { $0.properties.generalCategory != .nonspacingMark })
        let made = ScalarInfo(
            lowercase: properties.lowercaseMapping.unicodeScalars.map(\.value),
            isDigit: properties.generalCategory == .decimalNumber,
            isSpace: PythonText.isSpace(scalar) || Self.punctuation.contains(c),
            decomposed: decomposed)
        cache[c] = made
        return made
    }

    private mutating func isDigit(_ c: UInt32) -> Bool {
        c < 0x80 ? (c >= 0x30 && c <= 0x39) : info(c).isDigit
    }

    private mutating func isSpaceOrPunctuation(_ c: UInt32) -> Bool {
        if c < 0x80 { return Self.asciiSpaceOrPunctuation[Int(c)] }
        return info(c).isSpace
    }

    private static func isDecimalSeparator(_ c: UInt32) -> Bool {
        c == 0x2E || c == 0x2C || c == 0x60C || c == 0x66B || (c >= 0x2396 && c <= 0x2398)
    }

    /// datatrove's PUNCTUATION above ASCII (below it: every ASCII punctuation mark and control character).
    static let punctuation: Set<UInt32> = Set(Array(0x80...0x9F) + [
        0xAB, 0xB4, 0xBB, 0x2013, 0x2014, 0x2019, 0x201C, 0x201D, 0x201E, 0x2026, 0x2236, 0x2501, 0x25BA, 0x3001,
        0x3002, 0x3008, 0x3009, 0x300A, 0x300B, 0x300C, 0x300D, 0x3010, 0x3011, 0xFF01, 0xFF05, 0xFF08, 0xFF09,
        0xFF0C, 0xFF0E, 0xFF11, 0xFF1A, 0xFF1B, 0xFF1F, 0xFF5E,
    ])

    /// ASCII: controls (tab and newline are whitespace), space, and the 32 punctuation marks.
    private static let asciiSpaceOrPunctuation: [Bool] = (0..<128).map { c in
        c < 0x21 || c == 0x7F || (c < 0x30) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || c >= 0x7B
    }
}
