/// The four kinds of character that the split patterns tell apart: `\p{L}`, `\p{N}`, `\s` and the rest.
enum CharacterClass: UInt8 {
    /// General category L (Lu, Ll, Lt, Lm, Lo): `\p{L}`.
    case letter
    /// General category N (Nd, Nl, No): `\p{N}`.
    case number
    /// The Unicode White_Space property, which is what `\s` means in Rust's regex and so in tiktoken. It is not
    /// Python's `str.isspace()`: U+001C–U+001F are `.other` here.
    case whitespace
    /// Everything else, including each byte that is not part of a well-formed UTF-8 sequence.
    case other

    /// The Unicode version whose character properties the split patterns see: that of tiktoken 0.14's Rust
    /// regex tables (regex-syntax 0.8.11). Characters assigned later count as unassigned (category Cn), as they
    /// do there: Unicode 17.0 added 4,657 letters and numbers (e.g. U+A7CE), which tiktoken splits as symbols.
    /// Pinning the version also keeps splits the same when a newer Swift brings newer tables.
    static let unicodeVersion = (major: 16, minor: 0)

    /// The class of `scalar`, from the standard library's Unicode tables as of `unicodeVersion`.
    init(_ scalar: Unicode.Scalar) {
        let properties = scalar.properties
        if let age = properties.age, (age.major, age.minor) > CharacterClass.unicodeVersion {
            self = .other
            return
        }
        // No White_Space character is a letter or number, so testing it first decides nothing wrongly.
        if properties.isWhitespace {
            self = .whitespace
            return
        }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: self = .letter
        case .decimalNumber, .letterNumber, .otherNumber: self = .number
        default: self = .other
        }
    }

    /// The class of the scalar whose value is `value`, which must be a valid scalar value.
    ///
    /// The standard library takes about 100 ns to answer the two property queries, which would make non-ASCII
    /// text several times slower than ASCII, so planes 0 and 1 (all modern scripts, and the emoji) are looked
    /// up in tables instead. Each is 64 KiB and takes about 7 ms to fill, the first time a character from its
    /// plane is seen. The rarely used higher planes (CJK extensions, tags, private use) ask the library.
    @inline(__always)
    static func of(scalarValue value: UInt32) -> CharacterClass {
        if value < 0x10000 { return basicPlaneClasses[Int(value)] }
        if value < 0x20000 { return supplementaryPlaneClasses[Int(value - 0x10000)] }
        return CharacterClass(Unicode.Scalar(value)!)
    }
}

/// The class of each ASCII byte, so that ASCII text never reaches the Unicode property lookups.
let asciiClasses: [CharacterClass] = (0..<128).map { CharacterClass(Unicode.Scalar(UInt8($0))) }

/// The class of every scalar in plane 0 (the surrogate code points, which are not scalars, as `.other`).
private let basicPlaneClasses: [CharacterClass] = (0..<0x10000).map {
    Unicode.Scalar(UInt32($0)).map(CharacterClass.init) ?? .other
}

/// The class of every scalar in plane 1.
private let supplementaryPlaneClasses: [CharacterClass] = (0x10000..<0x20000).map {
    CharacterClass(Unicode.Scalar(UInt32($0))!)
}

/// The scalar value and length of the well-formed UTF-8 sequence that starts at `bytes[i]`, a byte of 0x80 or
/// more, or nil when there is none: a continuation byte, an overlong form, an encoded surrogate, a value above
/// U+10FFFF, 0xF5–0xFF, or a sequence cut short by a bad continuation byte or by the end of the text.
@inline(__always)
func decodeMultibyte(_ bytes: UnsafePointer<UInt8>, at i: Int, count: Int) -> (value: UInt32, length: Int)? {
    let b0 = bytes[i]
    @inline(__always) func isContinuation(_ b: UInt8) -> Bool { b & 0xC0 == 0x80 }
    switch b0 {
    case 0xC2...0xDF:
        guard i + 1 < count, isContinuation(bytes[i + 1]) else { return nil }
        return (UInt32(b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F), 2)
    case 0xE0...0xEF:
        guard i + 2 < count else { return nil }
        let b1 = bytes[i + 1], b2 = bytes[i + 2]
        // After E0 a second byte below A0 would be overlong; after ED one above 9F would encode a surrogate.
        let low: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80, high: UInt8 = b0 == 0xED ? 0x9F : 0xBF
        guard low...high ~= b1, isContinuation(b2) else { return nil }
        return (UInt32(b0 & 0x0F) << 12 | UInt32(b1 & 0x3F) << 6 | UInt32(b2 & 0x3F), 3)
    case 0xF0...0xF4:
        guard i + 3 < count else { return nil }
        let b1 = bytes[i + 1], b2 = bytes[i + 2], b3 = bytes[i + 3]
        // After F0 a second byte below 90 would be overlong; after F4 one above 8F would pass U+10FFFF.
        let low: UInt8 = b0 == 0xF0 ? 0x90 : 0x80, high: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF
        guard low...high ~= b1, isContinuation(b2), isContinuation(b3) else { return nil }
        return (UInt32(b0 & 0x07) << 18 | UInt32(b1 & 0x3F) << 12 | UInt32(b2 & 0x3F) << 6 | UInt32(b3 & 0x3F), 4)
    default:
        // 0x80–0xBF continue a sequence, 0xC0–0xC1 could only start overlong ones, 0xF5–0xFF start none.
        return nil
    }
}
