/// How an added token of a `tokenizer.json` is matched in text beyond its spelling (its `lstrip`, `rstrip` and
/// `single_word` flags), as `tokenizers` matches it: RoBERTa's `<mask>` takes the spaces before it, Phi's turn markers
/// the newline after them. The whitespace a token takes is not encoded.
public struct AddedTokenRule: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `lstrip`: the whitespace just before the token (back to the previous added token) is part of its match.
    public static let takesWhitespaceBefore = AddedTokenRule(rawValue: 1)
    /// `rstrip`: the whitespace just after the token is part of its match.
    public static let takesWhitespaceAfter = AddedTokenRule(rawValue: 2)
    /// `single_word`: the token is not matched next to a word character (`\w`: a letter, mark, digit or connector).
    public static let standsAlone = AddedTokenRule(rawValue: 4)

    /// The rule of an added token as `tokenizer.json` spells it (its flags, absent ones false).
    init(json: [String: Any]) {
        self = []
        if json["lstrip"] as? Bool == true { insert(.takesWhitespaceBefore) }
        if json["rstrip"] as? Bool == true { insert(.takesWhitespaceAfter) }
        if json["single_word"] as? Bool == true { insert(.standsAlone) }
    }

    /// The flags as `tokenizer.json` spells them.
    var json: [String: Bool] {
        ["lstrip": contains(.takesWhitespaceBefore), "rstrip": contains(.takesWhitespaceAfter), "single_word": contains(.standsAlone)]
    }

    /// Where the match `range` of a token with this rule in `text` really lies — widened over the whitespace it takes,
    /// never back past `earliest` (the end of the match before it) — or nil when the token is not matched there.
    /// Whitespace and word characters are Unicode's (`\s`, `\w`), read from UTF-8; bytes that are not UTF-8 are
    /// neither.
    func match(_ range: Range<Int>, in text: UnsafeBufferPointer<UInt8>, after earliest: Int) -> Range<Int>? {
        if contains(.standsAlone) {
            if let before = Self.scalar(in: text, endingAt: range.lowerBound), Self.isWordCharacter(before.scalar) { return nil }
            if let after = Self.scalar(in: text, startingAt: range.upperBound), Self.isWordCharacter(after.scalar) { return nil }
        }
        var start = range.lowerBound, end = range.upperBound
        if contains(.takesWhitespaceBefore) {
            while start > earliest, let before = Self.scalar(in: text, endingAt: start), before.scalar.properties.isWhitespace,
                  start - before.length >= earliest {
                start -= before.length
            }
        }
        if contains(.takesWhitespaceAfter) {
            while let after = Self.scalar(in: text, startingAt: end), after.scalar.properties.isWhitespace { end += after.length }
        }
        return start..<end
    }

    /// `\w` as regular expressions read it in Unicode (UTS #18): alphabetic, a mark, a decimal digit, a connector
    /// (`_`), or a join control.
    private static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return properties.isAlphabetic || properties.isJoinControl
        }
    }

    /// The scalar whose UTF-8 starts at `position`, and its length, when valid UTF-8 starts there.
    private static func scalar(in text: UnsafeBufferPointer<UInt8>, startingAt position: Int) -> (scalar: Unicode.Scalar, length: Int)? {
        guard position < text.count else { return nil }
        let lead = text[position]
        let length = lead < 0x80 ? 1 : lead >> 5 == 0b110 ? 2 : lead >> 4 == 0b1110 ? 3 : lead >> 3 == 0b11110 ? 4 : 0
        guard length > 0, position + length <= text.count else { return nil }
        var decoder = UTF8()
        var bytes = text[position..<(position + length)].makeIterator()
        guard case .scalarValue(let scalar) = decoder.decode(&bytes), bytes.next() == nil else { return nil }
        return (scalar, length)
    }

    /// The scalar whose UTF-8 ends just before `position`, and its length, when valid UTF-8 ends there.
    private static func scalar(in text: UnsafeBufferPointer<UInt8>, endingAt position: Int) -> (scalar: Unicode.Scalar, length: Int)? {
        var start = position - 1
        while start >= 0, position - start < 4, text[start] & 0xC0 == 0x80 { start -= 1 }
        guard start >= 0, let found = scalar(in: text, startingAt: start), found.length == position - start else { return nil }
        return found
    }
}
