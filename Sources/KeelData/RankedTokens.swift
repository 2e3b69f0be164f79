import Foundation
import KeelCore

/// A tiktoken vocabulary as read from its `.tiktoken` file: every token's bytes, laid end to end in one
/// array, and its rank (which is its id).
///
/// One arena instead of an array per token: reading cl100k_base's 100,256 lines this way takes a few
/// milliseconds, where `Data(base64Encoded:)` and an array per line took 0.12 s.
struct RankedTokens {
    /// Token i's bytes are `bytes[ends[i - 1] ..< ends[i]]` (from 0 for the first).
    private(set) var bytes: [UInt8] = []
    private(set) var ends: [Int] = []
    private(set) var ranks: [Int32] = []

    var count: Int { ranks.count }

    func range(of token: Int) -> Range<Int> { (token == 0 ? 0 : ends[token - 1])..<ends[token] }

    /// Parses lines of `base64(token bytes) rank` (blank lines skipped); throws naming `path` and the line.
    init(tiktoken data: Data, path: String) throws {
        bytes.reserveCapacity(data.count / 2)
        ends.reserveCapacity(data.count / 12)
        ranks.reserveCapacity(data.count / 12)
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let text = raw.bindMemory(to: UInt8.self)
            var lineNumber = 0
            var start = 0
            while start < text.count {
                var end = start
                while end < text.count && text[end] != UInt8(ascii: "\n") { end += 1 }
                lineNumber += 1
                if end > start {
                    guard appendLine(text, start..<end) else {
                        throw KeelError("tokenizer: \(path): line \(lineNumber) is not 'base64 rank'")
                    }
                }
                start = end + 1
            }
        }
        guard !ranks.isEmpty else { throw KeelError("tokenizer: \(path): no tokens") }
    }

    /// Decodes one `base64 rank` line; false when it is malformed.
    private mutating func appendLine(_ text: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Bool {
        guard let space = line.first(where: { text[$0] == UInt8(ascii: " ") }) else { return false }
        // Rank: decimal digits to the end of the line.
        var rank: Int64 = 0
        let digits = (space + 1)..<line.upperBound
        guard !digits.isEmpty, digits.count <= 10 else { return false }
        for i in digits {
            let digit = Int64(text[i]) - 48
            guard digit >= 0 && digit <= 9 else { return false }
            rank = rank * 10 + digit
        }
        guard rank <= Int64(Int32.max) else { return false }
        // Base64: groups of four characters, '=' padding only at the end.
        let encoded = line.lowerBound..<space
        guard !encoded.isEmpty, encoded.count % 4 == 0 else { return false }
        let mark = bytes.count
        var i = encoded.lowerBound
        while i < encoded.upperBound {
            let last = i + 4 == encoded.upperBound
            let a = Self.sextets[Int(text[i])], b = Self.sextets[Int(text[i + 1])]
            let cPadding = last && text[i + 2] == UInt8(ascii: "="), dPadding = last && text[i + 3] == UInt8(ascii: "=")
            let c = cPadding ? 0 : Self.sextets[Int(text[i + 2])], d = dPadding ? 0 : Self.sextets[Int(text[i + 3])]
            guard a | b | c | d < 64, !cPadding || dPadding else {
                bytes.removeSubrange(mark...)
                return false
            }
            let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
            bytes.append(UInt8(truncatingIfNeeded: group >> 16))
            if !cPadding { bytes.append(UInt8(truncatingIfNeeded: group >> 8)) }
            if !dPadding { bytes.append(UInt8(truncatingIfNeeded: group)) }
            i += 4
        }
        ends.append(bytes.count)
        ranks.append(Int32(rank))
        return true
    }

    /// Each base64 character's 6-bit value; 0xFF for any other byte.
    private static let sextets: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, character) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(character)] = UInt8(value)
        }
        return table
    }()
}
