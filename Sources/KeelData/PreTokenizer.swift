/// The split pattern of a byte-level BPE vocabulary.
public enum SplitPattern: String, Sendable, CaseIterable {
    /// GPT-2's, which tiktoken's r50k_base and p50k_base also use:
    /// `'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`
    case gpt2
    /// cl100k_base's:
    /// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
    case cl100k
    /// cl100k's as Llama 3's tokenizer.json and llama.cpp's "llama-bpe" write it, without `\s++$`:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    /// It splits as cl100k does but where whitespace ends the text after a line break: "a\n  " is "a", "\n", "  "
    /// here and "a", "\n  " in tiktoken.
    case llama3
    /// Every number character a piece of its own (`\p{N}`), then GPT-2's pattern on the text between them — Hugging
    /// Face's `Digits(individual_digits)` + `ByteLevel`, llama.cpp's "smollm" (StarCoder's and SmolLM's tokenizers).
    case gpt2Digits = "gpt2-digits"
}

/// Splits text into the pieces that byte-level BPE encodes one at a time, exactly as tiktoken's regex would,
/// but by hand: one pass over the bytes, no regex engine, no allocation.
///
/// The patterns are read the way tiktoken's engine (Rust `fancy-regex`) reads them: alternatives are tried in
/// order and the first that matches wins; `\p{L}` and `\p{N}` are the general categories L and N; `\s` is the
/// Unicode White_Space property; `$` is the end of the text; `(?i)` folds case simply, so `(?i:s)` also matches
/// U+017F LONG S.
///
/// Character classes follow Unicode 16.0, the version of tiktoken 0.14's tables, whatever the standard library's
/// version: letters and numbers added later are symbols here, as there (see `CharacterClass.unicodeVersion`).
/// Non-ASCII classes come from two 64 KiB tables (planes 0 and 1), each filled the first time a character of its
/// plane appears, which takes about 8 ms once per process.
///
/// Text need not be valid UTF-8. Each byte that is not part of a well-formed UTF-8 sequence (a stray
/// continuation byte, a truncated sequence, an overlong form, an encoded surrogate, 0xC0, 0xC1, 0xF5–0xFF) is
/// one character of its own that is neither letter, number nor whitespace, so it joins runs of punctuation
/// like any symbol. This is what the patterns do to text decoded with Python's `surrogateescape`, which maps
/// such bytes to lone surrogates (category Cs).
public struct PreTokenizer: Sendable {
    /// The pattern this pre-tokenizer reproduces.
    public let pattern: SplitPattern

    /// A pre-tokenizer for `pattern`.
    public init(pattern: SplitPattern) {
        self.pattern = pattern
    }

    /// Calls `body` with the byte ranges of the successive pieces of `text` (UTF-8), which together cover it exactly.
    ///
    /// Pieces come in order and are never empty; an empty text has none. Nothing past `text` is read.
    public func split(_ text: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        guard let base = text.baseAddress, !text.isEmpty else { return }
        asciiClasses.withUnsafeBufferPointer { table in
            let scanner = PieceScanner(bytes: base, count: text.count, ascii: table.baseAddress!)
            var start = 0
            switch pattern {
            case .gpt2:
                while start < text.count {
                    let end = scanner.gpt2PieceEnd(from: start)
                    body(start..<end)
                    start = end
                }
            case .cl100k, .llama3:
                while start < text.count {
                    let end = scanner.cl100kPieceEnd(from: start, wholeTrailingWhitespace: pattern == .cl100k)
                    body(start..<end)
                    start = end
                }
            case .gpt2Digits:
                while start < text.count {
                    let (isNumber, end) = scanner.digitSegment(from: start)
                    if isNumber {
                        body(start..<end)
                        start = end
                        continue
                    }
                    // GPT-2's pattern sees only the segment: its end is the text's end for `\s++$` and `(?!\S)`.
                    let segment = PieceScanner(bytes: base, count: end, ascii: table.baseAddress!)
                    while start < end {
                        let pieceEnd = segment.gpt2PieceEnd(from: start)
                        body(start..<pieceEnd)
                        start = pieceEnd
                    }
                }
            }
        }
    }
}

/// One pass over a text: each `…PieceEnd(from:)` returns where the piece starting at a byte offset ends.
private struct PieceScanner {
    let bytes: UnsafePointer<UInt8>
    let count: Int
    let ascii: UnsafePointer<CharacterClass>

    private static let space = UInt8(ascii: " "), apostrophe = UInt8(ascii: "'")
    private static let carriageReturn = UInt8(ascii: "\r"), lineFeed = UInt8(ascii: "\n")

    /// The class and byte length of the character at `i`.
    @inline(__always)
    private func character(at i: Int) -> (CharacterClass, Int) {
        let byte = bytes[i]
        if byte < 0x80 { return (ascii[Int(byte)], 1) }
        return nonASCIICharacter(at: i)
    }

    /// `character(at:)` past ASCII, kept out of line so that the Unicode lookups' setup stays out of the loops.
    @inline(never)
    private func nonASCIICharacter(at i: Int) -> (CharacterClass, Int) {
        guard let (value, length) = decodeMultibyte(bytes, at: i, count: count) else { return (.other, 1) }
        return (CharacterClass.of(scalarValue: value), length)
    }

    /// Where the run of characters of class `kind` that starts at `i` ends.
    @inline(__always)
    private func runEnd(of kind: CharacterClass, from i: Int) -> Int {
        var j = i
        while j < count {
            let (c, length) = character(at: j)
            guard c == kind else { break }
            j += length
        }
        return j
    }

    /// `'(?:[sdmt]|ll|ve|re)` (and, if `ignoringCase`, its `(?i:…)` form) after the apostrophe that ends at `i`.
    @inline(__always)
    private func contractionEnd(after i: Int, ignoringCase: Bool) -> Int? {
        guard i < count else { return nil }
        // U+017F LATIN SMALL LETTER LONG S (C5 BF) case-folds to "s", so `(?i:s)` matches it.
        if ignoringCase && bytes[i] == 0xC5 && i + 1 < count && bytes[i + 1] == 0xBF { return i + 2 }
        // Setting bit 5 lower-cases an ASCII letter and maps no other byte onto a lower-case letter.
        let fold: UInt8 = ignoringCase ? 0x20 : 0
        let first = bytes[i] | fold
        switch first {
        case UInt8(ascii: "s"), UInt8(ascii: "d"), UInt8(ascii: "m"), UInt8(ascii: "t"):
            return i + 1
        case UInt8(ascii: "l"), UInt8(ascii: "v"), UInt8(ascii: "r"):
            guard i + 1 < count else { return nil }
            let second: UInt8 = first == UInt8(ascii: "l") ? UInt8(ascii: "l") : UInt8(ascii: "e")
            return bytes[i + 1] | fold == second ? i + 2 : nil
        default:
            return nil
        }
    }

    /// Where a run of whitespace starting at `i` ends as a piece: `\s++$|\s+(?!\S)|\s` for GPT-2, with
    /// `\s*[\r\n]` before `\s+(?!\S)` when `stopAtLastNewline` (cl100k), and without `\s++$` unless
    /// `wholeTrailingWhitespace` (Llama 3's cl100k).
    private func whitespaceEnd(from i: Int, stopAtLastNewline: Bool, wholeTrailingWhitespace: Bool) -> Int {
        var j = i, lastStart = i, newlineEnd = i
        while j < count {
            let (c, length) = character(at: j)
            guard c == .whitespace else { break }
            if bytes[j] == Self.lineFeed || bytes[j] == Self.carriageReturn { newlineEnd = j + 1 }
            lastStart = j
            j += length
        }
        // `\s++$`: the run reaches the end of the text.
        if j == count && wholeTrailingWhitespace { return count }
        // `\s*[\r\n]`: `\s*` first takes the whole run, then backs off to the last line break in it.
        if stopAtLastNewline && newlineEnd > i { return newlineEnd }
        // `\s+(?!\S)` where nothing follows the run: all of it.
        if j == count { return count }
        // `\s+(?!\S)`: the run is followed by a non-space, so `\s+` backs off one character, leaving the last
        // whitespace to start the next piece (" word" keeps its space). A run of one character fails this.
        if lastStart > i { return lastStart }
        // `\s`
        return j
    }

    /// The number character at `i` (a segment of its own), or the run of other characters from `i` to the next one.
    func digitSegment(from i: Int) -> (isNumber: Bool, end: Int) {
        let (c0, length0) = character(at: i)
        if c0 == .number { return (true, i + length0) }
        var j = i + length0
        while j < count {
            let (c, length) = character(at: j)
            if c == .number { break }
            j += length
        }
        return (false, j)
    }

    /// The end of the GPT-2 piece that starts at `i`.
    func gpt2PieceEnd(from i: Int) -> Int {
        let (c0, length0) = character(at: i)
        let next = i + length0
        switch c0 {
        case .letter, .number:
            // `\p{L}++`, `\p{N}++`
            return runEnd(of: c0, from: next)
        case .other:
            // `'(?:[sdmt]|ll|ve|re)`, else `[^\s\p{L}\p{N}]++`
            if bytes[i] == Self.apostrophe, let end = contractionEnd(after: next, ignoringCase: false) { return end }
            return runEnd(of: .other, from: next)
        case .whitespace:
            // ` ?\p{L}++`, ` ?\p{N}++`, ` ?[^\s\p{L}\p{N}]++`: a single space joins whatever non-space follows.
            if bytes[i] == Self.space && next < count {
                let (c1, length1) = character(at: next)
                if c1 != .whitespace { return runEnd(of: c1, from: next + length1) }
            }
            return whitespaceEnd(from: i, stopAtLastNewline: false, wholeTrailingWhitespace: true)
        }
    }

    /// The end of the cl100k piece that starts at `i` (without `\s++$` unless `wholeTrailingWhitespace`: Llama 3's).
    func cl100kPieceEnd(from i: Int, wholeTrailingWhitespace: Bool) -> Int {
        let (c0, length0) = character(at: i)
        let next = i + length0
        switch c0 {
        case .letter:
            // `\p{L}++`
            return runEnd(of: .letter, from: next)
        case .number:
            // `\p{N}{1,3}+`
            var end = next
            for _ in 0..<2 where end < count {
                let (c, length) = character(at: end)
                guard c == .number else { break }
                end += length
            }
            return end
        case .other:
            if bytes[i] == Self.apostrophe, let end = contractionEnd(after: next, ignoringCase: true) { return end }
            // `[^\r\n\p{L}\p{N}]?+\p{L}++`: one symbol may lead a word.
            if next < count {
                let (c1, length1) = character(at: next)
                if c1 == .letter { return runEnd(of: .letter, from: next + length1) }
            }
            // `[^\s\p{L}\p{N}]++[\r\n]*+`
            return lineBreaksEnd(from: runEnd(of: .other, from: next))
        case .whitespace:
            if next < count {
                let (c1, length1) = character(at: next)
                let isLineBreak = bytes[i] == Self.lineFeed || bytes[i] == Self.carriageReturn
                // `[^\r\n\p{L}\p{N}]?+\p{L}++`: whitespace other than a line break may lead a word.
                if c1 == .letter && !isLineBreak { return runEnd(of: .letter, from: next + length1) }
                // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`: a single space may lead a run of symbols.
                if c1 == .other && bytes[i] == Self.space {
                    return lineBreaksEnd(from: runEnd(of: .other, from: next + length1))
                }
            }
            return whitespaceEnd(from: i, stopAtLastNewline: true, wholeTrailingWhitespace: wholeTrailingWhitespace)
        }
    }

    /// `[\r\n]*+` from `i`.
    @inline(__always)
    private func lineBreaksEnd(from i: Int) -> Int {
        var j = i
        while j < count && (bytes[j] == Self.lineFeed || bytes[j] == Self.carriageReturn) { j += 1 }
        return j
    }
}
