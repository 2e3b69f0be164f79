/// Byte-level tokens: ids 0–255 are the bytes of the UTF-8 text, 256 is end-of-text.
///
/// Any byte sequence (valid UTF-8 or not) round-trips exactly.
public struct ByteTokenizer: Sendable {
    /// 256 bytes plus end-of-text.
    public static let vocabSize = 257
    public var vocabSize: Int { ByteTokenizer.vocabSize }
    /// The id that separates documents.
    public let endOfText: Int32 = 256

    public init() {}

    /// The bytes of `ids`; end-of-text becomes a blank line so documents stay visibly separate.
    public func decode(_ ids: [Int32]) -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            if id == endOfText { bytes += [10, 10] } else if (0..<256).contains(id) { bytes.append(UInt8(id)) }
        }
        return bytes
    }

}
