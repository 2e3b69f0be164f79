import Foundation

/// A value in a Jinja template (a chat template's messages, tools and variables), with Python's semantics where
/// templates rely on them: truthiness, equality, `str()` and `repr()` as Python prints them, dictionaries in insertion
/// order (templates print a message's or a tool's keys in the order the JSON gave them).
public indirect enum JinjaValue: Sendable, Equatable {
    /// A name the template's context does not define: prints as nothing, is false, iterates as nothing; anything
    /// more (an attribute of it, a call) is an error naming it.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    case dictionary(JinjaDictionary)
    /// `namespace(...)`: attributes a template may set from inside a loop (`{% set ns.x = … %}`).
    case namespace(JinjaNamespace)
    /// A macro or a built-in function, called by name.
    case function(JinjaFunction)

    /// Python's truth value.
    public var isTrue: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let value): value
        case .int(let value): value != 0
        case .double(let value): value != 0
        case .string(let value): !value.isEmpty
        case .list(let values): !values.isEmpty
        case .dictionary(let dictionary): !dictionary.isEmpty
        case .namespace, .function: true
        }
    }

    public var isDefined: Bool { if case .undefined = self { false } else { true } }

    /// `str(value)`: what `{{ value }}` prints (an undefined value prints nothing).
    public var text: String {
        switch self {
        case .undefined: ""
        case .string(let value): value
        default: repr
        }
    }

    /// Python's `repr(value)` (how a list or dictionary prints its elements).
    public var repr: String {
        switch self {
        case .undefined: ""
        case .none: "None"
        case .bool(let value): value ? "True" : "False"
        case .int(let value): String(value)
        case .double(let value): Self.pythonFloat(value)
        case .string(let value): Self.pythonRepr(value)
        case .list(let values): "[" + values.map(\.repr).joined(separator: ", ") + "]"
        case .dictionary(let dictionary):
            "{" + dictionary.entries.map { "\(Self.pythonRepr($0.key)): \($0.value.repr)" }.joined(separator: ", ") + "}"
        case .namespace: "<Namespace>"
        case .function(let function): "<function \(function.name)>"
        }
    }

    /// A float as Python prints it: the shortest form that reads back, with `.0` on whole numbers, exponents past
    /// 1e16 and below 1e-4.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        let magnitude = abs(value)
        if magnitude != 0 && (magnitude >= 1e16 || magnitude < 1e-4) {
            // Swift writes 1e+16 as "1e+16" and 1e-05 as "1e-05", as Python does.
            return "\(value)"
        }
        let text = "\(value)"
        return text.contains(".") || text.contains("e") ? text : text + ".0"
    }

    /// Python's repr of a string: single quotes unless the string holds one and no double quote.
    static func pythonRepr(_ value: String) -> String {
        let quote: Character = value.contains("'") && !value.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(scalar) == quote {
                    out += "\\" + String(quote)
                } else if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\x%02x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out.append(quote)
        return out
    }

    /// The type's name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: "undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .list: "list"
        case .dictionary: "dict"
        case .namespace: "Namespace"
        case .function: "function"
        }
    }

    /// A number as a Double, when it is one (bools count, as in Python).
    var number: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        case .bool(let value): value ? 1 : 0
        default: nil
        }
    }

    public static func == (lhs: JinjaValue, rhs: JinjaValue) -> Bool {
        switch (lhs, rhs) {
        case (.undefined, .undefined), (.none, .none): true
        case (.string(let a), .string(let b)): a == b
        case (.list(let a), .list(let b)): a == b
        case (.dictionary(let a), .dictionary(let b)): a.entries.count == b.entries.count
            && a.entries.allSatisfy { entry in b[entry.key] == entry.value }
        case (.namespace(let a), .namespace(let b)): a === b
        case (.function(let a), .function(let b)): a === b
        default:
            if let a = lhs.number, let b = rhs.number { a == b } else { false }
        }
    }
}

/// A dictionary that keeps its keys in insertion order, as Python's does.
public struct JinjaDictionary: Sendable, Equatable {
    public private(set) var entries: [(key: String, value: JinjaValue)] = []
    private var positions: [String: Int] = [:]

    public init(_ entries: [(String, JinjaValue)] = []) {
        for (key, value) in entries { self[key] = value }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var keys: [String] { entries.map(\.key) }

    public subscript(key: String) -> JinjaValue? {
        get { positions[key].map { entries[$0].value } }
        set {
            if let index = positions[key] {
                if let newValue { entries[index].value = newValue } else { remove(at: index) }
            } else if let newValue {
                positions[key] = entries.count
                entries.append((key, newValue))
            }
        }
    }

    private mutating func remove(at index: Int) {
        positions[entries[index].key] = nil
        entries.remove(at: index)
        for (position, entry) in entries.enumerated() where position >= index { positions[entry.key] = position }
    }

    public static func == (lhs: JinjaDictionary, rhs: JinjaDictionary) -> Bool {
        JinjaValue.dictionary(lhs) == JinjaValue.dictionary(rhs)
    }
}

/// The attributes of a `namespace(...)`: shared, so that a set inside a loop is seen after it.
public final class JinjaNamespace: @unchecked Sendable {
    var attributes: JinjaDictionary

    init(_ attributes: JinjaDictionary) { self.attributes = attributes }
}

/// A callable value: a template's macro or a built-in (`raise_exception`, `range`, …).
public final class JinjaFunction: @unchecked Sendable {
    let name: String
    let call: (_ arguments: [JinjaValue], _ keywords: JinjaDictionary) throws -> JinjaValue

    init(_ name: String, _ call: @escaping (_ arguments: [JinjaValue], _ keywords: JinjaDictionary) throws -> JinjaValue) {
        self.name = name
        self.call = call
    }
}

extension JinjaValue {
    /// A JSON document as a value: objects keep their keys' order (a message's or tool's keys print in it).
    public init(json text: String) throws {
        var parser = JSONValueParser(bytes: Array(text.utf8))
        parser.skipSpace()
        self = try parser.value()
        parser.skipSpace()
        guard parser.index == parser.bytes.count else { throw parser.error("text after the JSON value") }
    }

    /// The value as JSON, as Python's `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators,
    /// sort_keys=sortKeys)` writes it (the `tojson` filter of Hugging Face's chat templates): by default ", " and ": "
    /// between items without an indent ("," with one), keys in order.
    func json(indent: Int?, separators: (item: String, key: String) = (", ", ": "), sortKeys: Bool = false,
              level: Int = 0) throws -> String {
        switch self {
        case .none, .undefined: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .int(let value): return String(value)
        case .double(let value):
            if value.isNaN { return "NaN" }
            if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
            return Self.pythonFloat(value)
        case .string(let value): return String(decoding: JSONString.quoted(value), as: UTF8.self)
        case .list(let values):
            if values.isEmpty { return "[]" }
            let items = try values.map { try $0.json(indent: indent, separators: separators, sortKeys: sortKeys, level: level + 1) }
            return Self.jsonContainer("[", "]", items, indent: indent, separator: separators.item, level: level)
        case .dictionary(let dictionary):
            if dictionary.isEmpty { return "{}" }
            let entries = sortKeys ? dictionary.entries.sorted { Array($0.key.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.key.unicodeScalars.map(\.value)) }
                : dictionary.entries
            let items = try entries.map { entry in
                String(decoding: JSONString.quoted(entry.key), as: UTF8.self) + separators.key
                    + (try entry.value.json(indent: indent, separators: separators, sortKeys: sortKeys, level: level + 1))
            }
            return Self.jsonContainer("{", "}", items, indent: indent, separator: separators.item, level: level)
        case .namespace, .function:
            throw JinjaError("Object of type \(typeName) is not JSON serializable")
        }
    }

    private static func jsonContainer(_ open: String, _ close: String, _ items: [String], indent: Int?, separator: String,
                                      level: Int) -> String {
        guard let indent else { return open + items.joined(separator: separator) + close }
        let inner = "\n" + String(repeating: " ", count: indent * (level + 1))
        let outer = "\n" + String(repeating: " ", count: indent * level)
        return open + inner + items.joined(separator: separator + inner) + outer + close
    }
}

/// An error rendering a template (its message is the one Jinja gives where Keel follows it).
public struct JinjaError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A small JSON reader whose objects keep their keys' order (Foundation's does not).
private struct JSONValueParser {
    let bytes: [UInt8]
    var index = 0

    func error(_ message: String) -> JinjaError { JinjaError("JSON: \(message) at byte \(index)") }

    mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    mutating func value() throws -> JinjaValue {
        guard index < bytes.count else { throw error("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var dictionary = JinjaDictionary()
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .dictionary(dictionary) }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a key") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                dictionary[key] = try value()
                skipSpace()
                if try separator("}") { return .dictionary(dictionary) }
            }
        case UInt8(ascii: "["):
            index += 1
            var values: [JinjaValue] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .list(values) }
            while true {
                skipSpace()
                values.append(try value())
                skipSpace()
                if try separator("]") { return .list(values) }
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try word("true"); return .bool(true)
        case UInt8(ascii: "f"): try word("false"); return .bool(false)
        case UInt8(ascii: "n"): try word("null"); return .none
        default: return try number()
        }
    }

    /// After an item: true at the container's end, false at a comma.
    mutating func separator(_ close: Character) throws -> Bool {
        guard index < bytes.count else { throw error("unexpected end") }
        if bytes[index] == UInt8(ascii: ",") { index += 1; return false }
        if bytes[index] == close.asciiValue! { index += 1; return true }
        throw error("expected , or \(close)")
    }

    mutating func expect(_ character: Character) throws {
        guard index < bytes.count, bytes[index] == character.asciiValue! else { throw error("expected \(character)") }
        index += 1
    }

    mutating func word(_ word: String) throws {
        let utf8 = Array(word.utf8)
        guard index + utf8.count <= bytes.count, Array(bytes[index..<(index + utf8.count)]) == utf8 else {
            throw error("unexpected character")
        }
        index += utf8.count
    }

    mutating func number() throws -> JinjaValue {
        let start = index
        while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if let value = Int(text) { return .int(value) }
        if let value = Double(text) { return .double(value) }
        index = start
        throw error("unexpected character")
    }

    mutating func string() throws -> String {
        index += 1
        var out: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw error("unexpected end") }
                let escape = bytes[index]
                index += 1
                guard escape == UInt8(ascii: "u") else {
                    // \n \t \r \b \f, or the character itself (\" \\ \/).
                    out.append(controlEscape(escape) ?? escape)
                    continue
                }
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"),
                   bytes[index + 1] == UInt8(ascii: "u") {
                    let next = index
                    index += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        // A lone high surrogate (U+FFFD below) and an escape of its own, read next.
                        index = next
                    }
                }
                out.append(contentsOf: String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
            default: out.append(byte)
            }
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16) else {
            throw error("bad \\u escape")
        }
        index += 4
        return code
    }
}
