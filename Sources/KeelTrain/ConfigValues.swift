import Foundation
import KeelCore
import TOMLKit

/// A value in a Keel config file.
public indirect enum ConfigValue: Equatable, Sendable {
    case int(Int), double(Double), string(String), bool(Bool), array([ConfigValue])

    /// The value written as TOML.
    var toml: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : "\(v)"
        case .string(let v):
            // TOML's basic strings hold no control character but tab raw: a prompt of "Hi\r\n" written so would make
            // the run's config.toml unreadable, and --resume with it.
            var escaped = ""
            for scalar in v.unicodeScalars {
                switch scalar {
                case "\\": escaped += "\\\\"
                case "\"": escaped += "\\\""
                case "\n": escaped += "\\n"
                case "\r": escaped += "\\r"
                case "\t": escaped += "\\t"
                case _ where scalar.value < 0x20 || scalar.value == 0x7F: escaped += String(format: "\\u%04X", scalar.value)
                default: escaped.unicodeScalars.append(scalar)
                }
            }
            return "\"\(escaped)\""
        case .bool(let v): return v ? "true" : "false"
        case .array(let v): return "[" + v.map(\.toml).joined(separator: ", ") + "]"
        }
    }

    var typeName: String {
        switch self {
        case .int: return "an integer"
        case .double: return "a number"
        case .string: return "a string"
        case .bool: return "a boolean"
        case .array: return "an array"
        }
    }
}

/// The flat `section.key → value` view of a TOML config plus command-line overrides, read through typed
/// accessors that remember which keys exist so that anything left over is reported as unknown.
public struct ConfigValues {
    private(set) var values: [String: ConfigValue] = [:]
    private var known: [String] = []
    /// The value each key read stands for, the fallback of one the text leaves out included (`effectiveValues`).
    private var effective: [String: ConfigValue] = [:]

    /// The section.key names the text sets.
    public var keys: [String] { values.keys.sorted() }

    /// Parses TOML text; `origin` names the file in errors.
    public init(toml text: String, origin: String) throws {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw KeelError("config: \(origin): \(error.description) at line \(error.source.begin.line)")
        }
        for section in table.keys.sorted() {
            guard let sectionTable = table[section]?.table else {
                throw KeelError("config: \(origin): key '\(section)' must be inside a section such as [training]")
            }
            for key in sectionTable.keys.sorted() {
                let name = "\(section).\(key)"
                if sectionTable[key]?.table != nil {
                    throw KeelError("config: \(origin): [\(name)] is a table inside [\(section)]; settings are keys of one section, like training.steps")
                }
                guard let value = ConfigValues.convert(sectionTable[key]!) else {
                    throw KeelError("config: \(name) has a value type Keel does not use")
                }
                values[name] = value
            }
        }
    }

    /// Applies `section.key=value` overrides; the value is read as TOML, or as a bare string if it is not TOML.
    public mutating func override(_ assignments: [String]) throws {
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "=") else {
                throw KeelError("--set \(assignment): expected section.key=value")
            }
            let key = String(assignment[..<equals]).trimmingCharacters(in: .whitespaces)
            let text = String(assignment[assignment.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            guard key.split(separator: ".").count == 2 else {
                throw KeelError("--set \(assignment): key must be section.key, like training.steps")
            }
            if let table = try? TOMLTable(string: "v = \(text)"), let value = table["v"].flatMap(ConfigValues.convert) {
                values[key] = value
            } else if text.wholeMatch(of: /[+-]?[1-9](_?[0-9])*/) != nil || Double(text).map({ $0.isInfinite && !text.lowercased().contains("inf") }) == true {
                // A number TOML cannot hold would otherwise be taken for a string, and refused as "not a number".
                throw KeelError("--set \(assignment): \(text) is out of range (integers are 64-bit, and floats must be finite)")
            } else {
                values[key] = .string(text)
            }
        }
    }

    private static func convert(_ value: TOMLValueConvertible) -> ConfigValue? {
        switch value.type {
        case .int: return value.int.map { .int($0) }
        case .double: return value.double.map { .double($0) }
        case .string: return value.string.map { .string($0) }
        case .bool: return value.bool.map { .bool($0) }
        case .array:
            guard let array = value.array else { return nil }
            var items: [ConfigValue] = []
            for item in array {
                guard let converted = convert(item) else { return nil }
                items.append(converted)
            }
            return .array(items)
        default: return nil
        }
    }

    // MARK: - Typed access

    mutating func value(_ key: String) -> ConfigValue? {
        known.append(key)
        return values[key]
    }

    /// Records a value the config derived for `key`, so the saved config (and a resumed run) has it.
    mutating func resolve(_ key: String, _ value: ConfigValue) {
        known.append(key)
        values[key] = value
        effective[key] = value
    }

    /// Records what `key` stands for where the config derives it from other keys when it is left out (the saved
    /// config keeps leaving it out, so that the derivation may change with the keys it follows).
    mutating func settle(_ key: String, _ value: ConfigValue) {
        effective[key] = value
    }

    /// Returns `value`, recorded as what `key` stands for.
    private mutating func used<T>(_ key: String, _ value: T, as convert: (T) -> ConfigValue) -> T {
        effective[key] = convert(value)
        return value
    }

    func wrongType(_ key: String, _ expected: String, _ got: ConfigValue) -> KeelError {
        KeelError("config: \(key) must be \(expected) (got \(got.typeName) \(got.toml))")
    }

    public mutating func int(_ key: String, _ fallback: Int) throws -> Int {
        used(key, try optionalInt(key) ?? fallback, as: ConfigValue.int)
    }

    public mutating func optionalInt(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard case .int(let i) = v else { throw wrongType(key, "an integer", v) }
        return used(key, i, as: ConfigValue.int)
    }

    public mutating func double(_ key: String, _ fallback: Double) throws -> Double {
        used(key, try optionalDouble(key) ?? fallback, as: ConfigValue.double)
    }

    public mutating func optionalDouble(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        switch v {
        case .double(let d): return used(key, d, as: ConfigValue.double)
        case .int(let i): return used(key, Double(i), as: ConfigValue.double)
        default: throw wrongType(key, "a number", v)
        }
    }

    public mutating func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let v = value(key) else { return used(key, fallback, as: ConfigValue.bool) }
        guard case .bool(let b) = v else { throw wrongType(key, "true or false", v) }
        return used(key, b, as: ConfigValue.bool)
    }

    public mutating func optionalBool(_ key: String) throws -> Bool? {
        guard value(key) != nil else { return nil }
        return try bool(key, false)
    }

    public mutating func string(_ key: String, _ fallback: String?) throws -> String? {
        guard let v = value(key) else { return fallback.map { used(key, $0, as: ConfigValue.string) } }
        guard case .string(let s) = v else { throw wrongType(key, "a string", v) }
        return used(key, s, as: ConfigValue.string)
    }

    /// A string naming one of `T`'s cases (`fallback` when absent); any other is an error listing them.
    public mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ fallback: T) throws -> T where T.RawValue == String {
        let name = try string(key, fallback.rawValue)!
        guard let chosen = T(rawValue: name) else {
            throw KeelError("config: \(key) must be one of \(T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")) (got \"\(name)\")")
        }
        return chosen
    }

    public mutating func strings(_ key: String) throws -> [String] {
        guard let v = value(key) else { return used(key, [], as: { .array($0.map(ConfigValue.string)) }) }
        switch v {
        case .string(let s): return used(key, [s], as: { .array($0.map(ConfigValue.string)) })
        case .array(let items):
            return used(key, try items.map {
                guard case .string(let s) = $0 else { throw wrongType(key, "an array of strings", v) }
                return s
            }, as: { .array($0.map(ConfigValue.string)) })
        default: throw wrongType(key, "an array of strings", v)
        }
    }

    /// An array of integers, or nil when the key is absent.
    mutating func optionalInts(_ key: String) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        guard case .array(let items) = v else { throw wrongType(key, "an array of integers", v) }
        return used(key, try items.map {
            guard case .int(let i) = $0 else { throw wrongType(key, "an array of integers", v) }
            return i
        }, as: { .array($0.map(ConfigValue.int)) })
    }

    /// Throws for the first key that no accessor asked for, suggesting the nearest known key.
    public func rejectUnknownKeys() throws {
        let knownSet = Set(known)
        for key in values.keys.sorted() where !knownSet.contains(key) {
            let nearest = known.min { editDistance($0, key) < editDistance($1, key) }
            let hint = nearest.map { editDistance($0, key) <= 3 ? " (did you mean '\($0)'?)" : "" } ?? ""
            throw KeelError("config: unknown key '\(key)'\(hint)")
        }
    }

    /// Every key read and the value it stands for — given, derived, or the fallback of one left out — as
    /// `section.key = value` lines in key order: two sources that give it equal mean the same run, whether a key
    /// was set to its default or left out, an integer given for a number or its decimal.
    var effectiveValues: [String: String] {
        effective.mapValues(\.toml)
    }

    /// The values as TOML text, by section, for saving beside a run.
    var tomlText: String {
        var sections: [String: [(String, ConfigValue)]] = [:]
        for (key, value) in values {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            sections[parts[0], default: []].append((parts[1], value))
        }
        return sections.keys.sorted().map { section in
            "[\(section)]\n" + sections[section]!.sorted { $0.0 < $1.0 }.map { "\($0.0) = \($0.1.toml)\n" }.joined()
        }.joined(separator: "\n")
    }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var previous = row[0]
        row[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}
