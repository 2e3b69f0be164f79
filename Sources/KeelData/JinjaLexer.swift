/// A template cut into text and tags, whitespace handled as Hugging Face's chat templates are compiled
/// (`trim_blocks` and `lstrip_blocks` on): the newline right after a `%}` or `#}` goes, spaces and tabs between the
/// start of a line and a `{%` or `{#` go; `{%-`/`-%}` (and `{{-`, `-}}`, `{#-`, `-#}`) take every whitespace
/// character on that side; `{%+` keeps the line's indentation. Comments are dropped; `{% raw %}` passes its text as
/// is; line ends are "\n" ("\r\n" and "\r" read as one), and one at the template's very end is dropped (Jinja's
/// `keep_trailing_newline` is off).
struct JinjaLexer {
    enum Piece {
        case text(String)
        /// `{{ … }}`: the expression's tokens.
        case output([JinjaToken], line: Int)
        /// `{% … %}`: the statement's tokens.
        case statement([JinjaToken], line: Int)
    }

    private let bytes: [UInt8]
    private var index = 0

    private init(_ source: String) {
        // Jinja reads "\r\n" and "\r" as "\n", strings included.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(source.utf8.count)
        var previousWasReturn = false
        for byte in source.utf8 {
            if byte == 0x0A && previousWasReturn { previousWasReturn = false; continue }
            previousWasReturn = byte == 0x0D
            bytes.append(byte == 0x0D ? 0x0A : byte)
        }
        if bytes.last == 0x0A { bytes.removeLast() }
        self.bytes = bytes
    }

    /// The pieces of `source`, or an error naming the line of an unclosed tag or string.
    static func pieces(of source: String) throws -> [Piece] {
        var lexer = JinjaLexer(source)
        return try lexer.run()
    }

    private func line(at position: Int) -> Int { bytes[..<min(position, bytes.count)].reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) } }

    private func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C || byte == 0x0B }

    /// The next tag opening at or after `from`: its position and kind ("{", "%" or "#").
    private func nextTag(from: Int) -> (position: Int, kind: UInt8)? {
        var i = from
        while i + 1 < bytes.count {
            if bytes[i] == UInt8(ascii: "{"), [UInt8(ascii: "{"), UInt8(ascii: "%"), UInt8(ascii: "#")].contains(bytes[i + 1]) {
                return (i, bytes[i + 1])
            }
            i += 1
        }
        return nil
    }

    private mutating func run() throws -> [Piece] {
        var pieces: [Piece] = []
        var stripLeading = false // the previous tag ended with "-"
        while index <= bytes.count {
            let tag = nextTag(from: index)
            var text = Array(bytes[index..<(tag?.position ?? bytes.count)])
            if stripLeading {
                text = Array(text.drop(while: isSpace))
                stripLeading = false
            }
            guard let (position, kind) = tag else {
                if !text.isEmpty { pieces.append(.text(String(decoding: text, as: UTF8.self))) }
                break
            }
            let modifier = position + 2 < bytes.count ? bytes[position + 2] : 0
            if modifier == UInt8(ascii: "-") {
                while let last = text.last, isSpace(last) { text.removeLast() }
            } else if kind != UInt8(ascii: "{"), modifier != UInt8(ascii: "+") {
                // lstrip_blocks: the tag is alone on its line so far (in the source).
                var start = position
                while start > 0, bytes[start - 1] == 0x20 || bytes[start - 1] == 0x09 { start -= 1 }
                if start == 0 || bytes[start - 1] == 0x0A {
                    text.removeLast(min(text.count, position - start))
                }
            }
            if !text.isEmpty { pieces.append(.text(String(decoding: text, as: UTF8.self))) }
            index = position + 2 + (modifier == UInt8(ascii: "-") || modifier == UInt8(ascii: "+") ? 1 : 0)
            let line = line(at: position)
            if kind == UInt8(ascii: "#") {
                guard let end = find("#}", from: index) else { throw JinjaError("line \(line): a comment is not closed") }
                stripLeading = end > index && bytes[end - 1] == UInt8(ascii: "-")
                index = end + 2
                trimNewline(after: stripLeading)
                continue
            }
            var tokenizer = JinjaTokenizer(bytes: bytes, index: index, line: line)
            let close: UInt8 = kind == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "%")
            let (tokens, dash) = try tokenizer.tokens(until: close)
            index = tokenizer.index
            stripLeading = dash
            if kind == UInt8(ascii: "{") {
                pieces.append(.output(tokens, line: line))
                continue
            }
            trimNewline(after: dash)
            if tokens.count == 1, tokens[0] == .name("raw") {
                pieces.append(.text(try rawText(line: line, stripLeading: &stripLeading)))
                continue
            }
            pieces.append(.statement(tokens, line: line))
        }
        return pieces
    }

    /// trim_blocks: one newline after a block or comment tag goes (a "-" took every whitespace already).
    private mutating func trimNewline(after dash: Bool) {
        guard !dash, index < bytes.count, bytes[index] == 0x0A else { return }
        index += 1
    }

    private func find(_ needle: String, from: Int) -> Int? {
        let needle = Array(needle.utf8)
        var i = from
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0], Array(bytes[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }

    /// The text of a `{% raw %}` block, up to its `{% endraw %}`.
    private mutating func rawText(line: Int, stripLeading: inout Bool) throws -> String {
        var search = index
        while let (position, kind) = nextTag(from: search) {
            search = position + 2
            guard kind == UInt8(ascii: "%") else { continue }
            // A template may end right after the tag's opening.
            let dashed = position + 2 < bytes.count && bytes[position + 2] == UInt8(ascii: "-")
            var tokenizer = JinjaTokenizer(bytes: bytes, index: position + 2 + (dashed ? 1 : 0), line: line)
            guard let (tokens, dash) = try? tokenizer.tokens(until: UInt8(ascii: "%")), tokens == [.name("endraw")] else { continue }
            var text = Array(bytes[index..<position])
            if dashed { while let last = text.last, isSpace(last) { text.removeLast() } }
            if stripLeading { text = Array(text.drop(while: isSpace)) }
            index = tokenizer.index
            stripLeading = dash
            trimNewline(after: dash)
            return String(decoding: text, as: UTF8.self)
        }
        throw JinjaError("line \(line): {% raw %} is not closed")
    }
}

/// A token of an expression or statement.
enum JinjaToken: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    /// An operator or punctuation: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
    case symbol(String)
}

/// Reads the tokens of one tag.
struct JinjaTokenizer {
    let bytes: [UInt8]
    var index: Int
    let line: Int

    private static let symbols = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")",
                                  "[", "]", "{", "}", ",", ".", ":", "|"].map { Array($0.utf8) }

    /// Tokens up to the tag's end (`}}` for `close` "}", `%}` for "%"), and whether it was written with "-".
    mutating func tokens(until close: UInt8) throws -> ([JinjaToken], dash: Bool) {
        var tokens: [JinjaToken] = []
        while true {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
            guard index < bytes.count else { throw JinjaError("line \(line): a tag is not closed") }
            if bytes[index] == UInt8(ascii: "-"), index + 2 < bytes.count, bytes[index + 1] == close, bytes[index + 2] == UInt8(ascii: "}") {
                index += 3
                return (tokens, true)
            }
            if bytes[index] == close, index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "}") {
                // `}}` inside an expression may close a dictionary literal: only a balanced one ends the tag.
                if close != UInt8(ascii: "}") || Self.depth(tokens) == 0 {
                    index += 2
                    return (tokens, false)
                }
            }
            tokens.append(try token())
        }
    }

    /// Open brackets minus closed ones.
    private static func depth(_ tokens: [JinjaToken]) -> Int {
        tokens.reduce(0) { depth, token in
            switch token {
            case .symbol("("), .symbol("["), .symbol("{"): depth + 1
            case .symbol(")"), .symbol("]"), .symbol("}"): depth - 1
            default: depth
            }
        }
    }

    private mutating func token() throws -> JinjaToken {
        let byte = bytes[index]
        if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") { return .string(try string(quote: byte)) }
        if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { return number() }
        if byte == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) {
            let start = index
            while index < bytes.count, bytes[index] == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[index] | 0x20)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                index += 1
            }
            return .name(String(decoding: bytes[start..<index], as: UTF8.self))
        }
        for symbol in Self.symbols where index + symbol.count <= bytes.count && Array(bytes[index..<(index + symbol.count)]) == symbol {
            index += symbol.count
            return .symbol(String(decoding: symbol, as: UTF8.self))
        }
        throw JinjaError("line \(line): unexpected character '\(String(decoding: [byte], as: UTF8.self))'")
    }

    private mutating func number() -> JinjaToken {
        let start = index
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) || bytes[index] == UInt8(ascii: "_") { index += 1 }
        var isFloat = false
        if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "."), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index + 1]) {
            isFloat = true
            index += 1
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self).replacingOccurrences(of: "_", with: "")
        return isFloat ? .double(Double(text) ?? 0) : .int(Int(text) ?? 0)
    }

    /// A quoted string with Python's escapes.
    private mutating func string(quote: UInt8) throws -> String {
        index += 1
        var out: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == quote { return String(decoding: out, as: UTF8.self) }
            guard byte == UInt8(ascii: "\\"), index < bytes.count else {
                out.append(byte)
                continue
            }
            let escape = bytes[index]
            index += 1
            if let control = controlEscape(escape) {
                out.append(control)
                continue
            }
            switch escape {
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(escape)
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let digits = escape == UInt8(ascii: "x") ? 2 : escape == UInt8(ascii: "u") ? 4 : 8
                guard index + digits <= bytes.count,
                      let code = UInt32(String(decoding: bytes[index..<(index + digits)], as: UTF8.self), radix: 16),
                      let scalar = Unicode.Scalar(code) else {
                    throw JinjaError("line \(line): a bad \\\(Character(Unicode.Scalar(escape))) escape in a string")
                }
                index += digits
                out.append(contentsOf: String(Character(scalar)).utf8)
            default:
                // Python keeps an unknown escape as written.
                out.append(UInt8(ascii: "\\"))
                out.append(escape)
            }
        }
        throw JinjaError("line \(line): a string is not closed")
    }
}

/// The control character a backslash escape stands for in both Python's and JSON's strings (`\n`, `\t`, `\r`, `\b`,
/// `\f`), or nil for another letter.
func controlEscape(_ letter: UInt8) -> UInt8? {
    switch letter {
    case UInt8(ascii: "n"): 0x0A
    case UInt8(ascii: "t"): 0x09
    case UInt8(ascii: "r"): 0x0D
    case UInt8(ascii: "b"): 0x08
    case UInt8(ascii: "f"): 0x0C
    default: nil
    }
}
