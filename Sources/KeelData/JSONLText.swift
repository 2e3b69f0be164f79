import Glibc

/// A growable byte array, reused from line to line so that the per-document loop does not allocate.
final class ByteBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    /// Bytes in use, from `base`.
    var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 16)
        base = Self.reallocate(nil, self.capacity)
    }

    deinit { free(base) }

    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

    /// Makes room for at least `minimum` bytes in all, keeping the contents.
    func reserve(_ minimum: Int) {
        guard minimum > capacity else { return }
        // Doubling keeps appends amortised O(1); realloc can grow a large block in place without copying.
        capacity = max(minimum, capacity * 2)
        base = Self.reallocate(base, capacity)
    }

    func append(_ source: UnsafePointer<UInt8>, count added: Int) {
        reserve(count + added)
        (base + count).update(from: source, count: added)
        count += added
    }

    /// Appends the UTF-8 encoding of `scalar` (at most U+10FFFF; surrogates already replaced).
    func append(scalar: UInt32) {
        reserve(count + 4)
        let out = base + count
        switch scalar {
        case ..<0x80:
            out[0] = UInt8(scalar)
            count += 1
        case ..<0x800:
            out[0] = UInt8(0xC0 | scalar >> 6)
            out[1] = UInt8(0x80 | scalar & 0x3F)
            count += 2
        case ..<0x10000:
            out[0] = UInt8(0xE0 | scalar >> 12)
            out[1] = UInt8(0x80 | scalar >> 6 & 0x3F)
            out[2] = UInt8(0x80 | scalar & 0x3F)
            count += 3
        default:
            out[0] = UInt8(0xF0 | scalar >> 18)
            out[1] = UInt8(0x80 | scalar >> 12 & 0x3F)
            out[2] = UInt8(0x80 | scalar >> 6 & 0x3F)
            out[3] = UInt8(0x80 | scalar & 0x3F)
            count += 4
        }
    }

    private static func reallocate(_ old: UnsafeMutablePointer<UInt8>?, _ size: Int) -> UnsafeMutablePointer<UInt8> {
        guard let raw = realloc(old, size) else { fatalError("out of memory allocating \(size) bytes") }
        return raw.assumingMemoryBound(to: UInt8.self)
    }
}

/// Why a JSONL line was rejected.
struct JSONLineError: Error {
    let message: String
    /// 1-based byte column where the problem was found.
    let column: Int
}

/// What one JSONL line holds.
enum JSONLine {
    /// Only whitespace.
    case blank
    /// The decoded `text` field, valid until the next line is read, and where its quoted value lies in the line.
    case text(UnsafeBufferPointer<UInt8>, value: Range<Int>)
    /// A JSON object without a `text` field.
    case missingText
    /// A JSON object whose `text` field is not a string; names the JSON type it is.
    case textNotString(String)
}

/// Extracts the top-level `text` string (or another field's) of a one-line JSON object, faster than a general JSON parser
/// because nothing else is materialised: other values are only checked and skipped.
///
/// Accepts what Python's `json.loads` accepts (including `NaN` and `Infinity`, and the last of duplicate
/// keys winning), with three deliberate differences: control characters inside strings are accepted as
/// they are, bytes that are not valid UTF-8 pass through unchanged, and a `\u` escape of a lone UTF-16
/// surrogate decodes to U+FFFD because it has no UTF-8 encoding.
struct JSONLTextExtractor {
    /// Holds the `text` value when it has escapes to resolve; otherwise the value is returned in place.
    private let decoded = ByteBuffer(capacity: 1 << 16)
    /// Holds a field name that has escapes, to compare it with `text`.
    private let name = ByteBuffer(capacity: 64)
    /// The field extracted: `text`, or another string field (`html`).
    private let field: [UInt8]

    init(field: String = "text") {
        self.field = Array(field.utf8)
    }

    /// Parses `line` (without its newline).
    func parse(_ line: UnsafeBufferPointer<UInt8>) throws(JSONLineError) -> JSONLine {
        guard let base = line.baseAddress else { return .blank }
        var cursor = Cursor(base: base, end: line.count)
        return try cursor.object(decoded: decoded, name: name, field: field)
    }
}

private let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

/// A position in one line, with the grammar as methods that advance it.
private struct Cursor {
    let base: UnsafePointer<UInt8>
    let end: Int
    var index = 0

    init(base: UnsafePointer<UInt8>, end: Int) {
        self.base = base
        self.end = end
    }

    /// The byte at the cursor, or 0 at the end of the line (0 is never valid JSON syntax, so it fails
    /// every expectation just as the end does).
    var current: UInt8 { index < end ? base[index] : 0 }

    func failure(_ message: String, at position: Int? = nil) -> JSONLineError {
        JSONLineError(message: message, column: (position ?? index) + 1)
    }

    /// An error for an unexpected byte, or for the line ending where more was needed.
    func expected(_ what: String) -> JSONLineError {
        index < end ? failure("expected \(what)") : failure("the line ends where \(what) was expected")
    }

    mutating func skipWhitespace() {
        while index < end {
            switch base[index] {
            case 0x20, 0x09, 0x0D, 0x0A: index += 1
            default: return
            }
        }
    }

    /// Position of the first `byte` in `from..<to`.
    func find(_ byte: UInt8, from: Int, to: Int) -> Int? {
        guard from < to, let hit = memchr(base + from, Int32(byte), to - from) else { return nil }
        return UnsafeRawPointer(hit) - UnsafeRawPointer(base)
    }

    /// The whole line: one JSON object, returning its `text` field.
    mutating func object(decoded: ByteBuffer, name: ByteBuffer, field: [UInt8]) throws(JSONLineError) -> JSONLine {
        skipWhitespace()
        guard index < end else { return .blank }
        guard current == UInt8(ascii: "{") else { throw failure("the line is not a JSON object") }
        index += 1
        var result = JSONLine.missingText
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                guard current == quote else { throw expected("a quoted field name") }
                let key = try string(into: name)
                let isText = key.elementsEqual(field)
                try separator()
                if !isText {
                    try skipValue()
                } else if current == quote {
                    let start = index
                    let text = try string(into: decoded)
                    result = .text(text, value: start..<index)
                } else {
                    let kind = Self.kind(of: current)
                    try skipValue()
                    result = .textNotString(kind)
                }
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    index += 1
                } else if current == UInt8(ascii: "}") {
                    index += 1
                    break
                } else {
                    throw expected("',' or '}' after a field of the object")
                }
            }
        }
        skipWhitespace()
        guard index == end else { throw failure("unexpected characters after the JSON object") }
        return result
    }

    /// The ':' between a field name and its value, with the whitespace around it.
    mutating func separator() throws(JSONLineError) {
        skipWhitespace()
        guard current == UInt8(ascii: ":") else { throw expected("':' after a field name") }
        index += 1
        skipWhitespace()
    }

    /// The JSON type a value starting with `byte` has, for messages.
    static func kind(of byte: UInt8) -> String {
        switch byte {
        case UInt8(ascii: "{"): "an object"
        case UInt8(ascii: "["): "an array"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): "a boolean"
        case UInt8(ascii: "n"): "null"
        default: "a number"
        }
    }

    /// Reads the string whose opening quote is at the cursor and leaves the cursor after its closing
    /// quote. Returns the bytes in place when there is no escape; otherwise resolves the escapes into
    /// `output` and returns its bytes. With no `output` the string is only checked and skipped.
    mutating func string(into output: ByteBuffer?) throws(JSONLineError) -> UnsafeBufferPointer<UInt8> {
        let opening = index
        index += 1
        // memchr finds the quotes and backslashes: most strings are long runs with neither.
        guard var closing = find(quote, from: index, to: end) else {
            throw failure("unterminated string", at: opening)
        }
        var segment = index
        var escaped = false
        while true {
            guard let escape = find(backslash, from: index, to: closing) else {
                index = closing + 1
                guard escaped else { return UnsafeBufferPointer(start: base + segment, count: closing - segment) }
                output?.append(base + segment, count: closing - segment)
                return output?.bytes ?? UnsafeBufferPointer(start: nil, count: 0)
            }
            if !escaped {
                escaped = true
                output?.count = 0
            }
            output?.append(base + segment, count: escape - segment)
            index = escape + 1
            guard index < end else { throw failure("unterminated string", at: opening) }
            let letter = base[index]
            index += 1
            switch letter {
            case quote, backslash, UInt8(ascii: "/"): output?.append(scalar: UInt32(letter))
            case UInt8(ascii: "b"): output?.append(scalar: 0x08)
            case UInt8(ascii: "f"): output?.append(scalar: 0x0C)
            case UInt8(ascii: "n"): output?.append(scalar: 0x0A)
            case UInt8(ascii: "r"): output?.append(scalar: 0x0D)
            case UInt8(ascii: "t"): output?.append(scalar: 0x09)
            case UInt8(ascii: "u"): output?.append(scalar: try unicodeEscape(at: escape))
            default: throw failure("invalid escape in a string", at: escape)
            }
            segment = index
            // Only an escaped quote can step past the closing quote found so far.
            if index > closing {
                guard let next = find(quote, from: index, to: end) else {
                    throw failure("unterminated string", at: opening)
                }
                closing = next
            }
        }
    }

    /// The scalar of the `\uXXXX` escape whose backslash is at `escape` (the cursor is after the `u`),
    /// joining a surrogate pair written as two escapes; a lone surrogate becomes U+FFFD.
    mutating func unicodeEscape(at escape: Int) throws(JSONLineError) -> UInt32 {
        guard let unit = hex4(at: index) else { throw failure("invalid \\u escape in a string", at: escape) }
        index += 4
        switch unit {
        case 0xD800..<0xDC00:
            if index + 6 <= end, base[index] == backslash, base[index + 1] == UInt8(ascii: "u"),
               let low = hex4(at: index + 2), (0xDC00..<0xE000).contains(low)
            {
                index += 6
                return 0x10000 + (unit - 0xD800) << 10 + (low - 0xDC00)
            }
            return 0xFFFD
        case 0xDC00..<0xE000:
            return 0xFFFD
        default:
            return unit
        }
    }

    /// The value of four hex digits at `position`, or nil when they are not all there.
    func hex4(at position: Int) -> UInt32? {
        guard position + 4 <= end else { return nil }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = base[position + offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Checks and steps over one JSON value of any type. Nesting is tracked on an explicit stack, not by
    /// recursion, so that a deeply nested line cannot overflow the thread's stack.
    mutating func skipValue() throws(JSONLineError) {
        var open: [UInt8] = []
        while true {
            // A value starts here.
            switch current {
            case quote:
                _ = try string(into: nil)
            case UInt8(ascii: "{"):
                index += 1
                skipWhitespace()
                if current == UInt8(ascii: "}") {
                    index += 1
                } else {
                    open.append(UInt8(ascii: "}"))
                    try fieldName()
                    continue
                }
            case UInt8(ascii: "["):
                index += 1
                skipWhitespace()
                if current == UInt8(ascii: "]") {
                    index += 1
                } else {
                    open.append(UInt8(ascii: "]"))
                    continue
                }
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "N"): try literal("NaN")
            case UInt8(ascii: "I"): try literal("Infinity")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw expected("a JSON value")
            }
            // A value ended: close finished containers until one continues with a comma.
            while let closer = open.last {
                skipWhitespace()
                if current == closer {
                    index += 1
                    open.removeLast()
                } else if current == UInt8(ascii: ",") {
                    index += 1
                    skipWhitespace()
                    if closer == UInt8(ascii: "}") { try fieldName() }
                    break
                } else {
                    throw expected("',' or '\(Character(Unicode.Scalar(closer)))'")
                }
            }
            if open.isEmpty { return }
        }
    }

    /// A field name of a nested object and its ':', leaving the cursor at the value.
    mutating func fieldName() throws(JSONLineError) {
        guard current == quote else { throw expected("a quoted field name") }
        _ = try string(into: nil)
        try separator()
    }

    mutating func literal(_ word: StaticString) throws(JSONLineError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= end, memcmp(base + index, word.utf8Start, count) == 0 else {
            throw expected("a JSON value")
        }
        index += count
    }

    /// A number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, or `-Infinity`.
    mutating func number() throws(JSONLineError) {
        let start = index
        if current == UInt8(ascii: "-") {
            index += 1
            if current == UInt8(ascii: "I") { return try literal("Infinity") }
        }
        if current == UInt8(ascii: "0") {
            index += 1
        } else if !digits() {
            throw failure("invalid number", at: start)
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits() else { throw failure("invalid number", at: start) }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits() else { throw failure("invalid number", at: start) }
        }
    }

    /// Steps over a run of decimal digits; false when there is none.
    mutating func digits() -> Bool {
        let start = index
        while index < end, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(base[index]) { index += 1 }
        return index > start
    }
}
