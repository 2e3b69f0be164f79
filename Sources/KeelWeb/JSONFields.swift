import KeelData

/// Fields added to a JSONL record as it was read (every other byte of the line kept): `keel data filter`'s verdicts
/// and language, `keel data dedup`'s `duplicate_of`.
enum JSONFields {
    enum Value {
        case string(String), number(Double), integer(Int)
    }

    /// Inserts `fields` before the record's closing brace, after its others (a record read as a JSON object with a
    /// "text" field, so it has one, and fields before it).
    static func add(_ fields: [(String, Value)], to line: inout [UInt8]) {
        guard let close = line.lastIndex(of: UInt8(ascii: "}")) else { return }
        var added: [UInt8] = []
        for (key, value) in fields {
            added.append(UInt8(ascii: ","))
            JSONString.append(key, to: &added)
            added.append(UInt8(ascii: ":"))
            switch value {
            case .string(let string): JSONString.append(string, to: &added)
            case .number(let number): added += Array(String(format: "%.4f", number).utf8)
            case .integer(let integer): added += Array(String(integer).utf8)
            }
        }
        line.insert(contentsOf: added, at: close)
    }
}
