/// JSON string literals, written as Python's `json.dumps(..., ensure_ascii=False)` writes them: quotes,
/// backslashes and control characters escaped, everything else as UTF-8.
public enum JSONString {
    /// Appends `string` as a quoted JSON string to `output`.
    public static func append(_ string: some StringProtocol, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        let utf8 = string.utf8
        // Runs that need no escape are copied whole.
        if utf8.withContiguousStorageIfAvailable({ bytes -> Void in
            var start = 0
            for (index, byte) in bytes.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                output.append(contentsOf: bytes[start..<index])
                appendEscaped(byte, to: &output)
                start = index + 1
            }
            output.append(contentsOf: bytes[start...])
        }) == nil {
            for byte in utf8 { appendEscaped(byte, to: &output) }
        }
        output.append(UInt8(ascii: "\""))
    }

    /// One byte of a string, escaped if JSON needs it.
    private static func appendEscaped(_ byte: UInt8, to output: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0x08: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
        case 0x0C: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
        case ..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                       hex[Int(byte >> 4)], hex[Int(byte & 15)]])
        default: output.append(byte)
        }
    }

    /// `string` as a quoted JSON string.
    public static func quoted(_ string: some StringProtocol) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(string.utf8.count + 2)
        append(string, to: &output)
        return output
    }
}
