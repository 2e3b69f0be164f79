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

    /// The ids of `bytes`.
    public func encode<Bytes: Sequence>(_ bytes: Bytes) -> [Int32] where Bytes.Element == UInt8 {
        bytes.map { Int32($0) }
    }

    /// The bytes of `ids`; end-of-text becomes a blank line so documents stay visibly separate.
    public func decode<IDs: Sequence>(_ ids: IDs) -> [UInt8] where IDs.Element == Int32 {
        var bytes: [UInt8] = []
        for id in ids {
            if id == endOfText { bytes += [10, 10] } else if (0..<256).contains(id) { bytes.append(UInt8(id)) }
        }
        return bytes
    }

    /// `ids` as text, with invalid UTF-8 shown as U+FFFD.
    public func decodeText<IDs: Sequence>(_ ids: IDs) -> String where IDs.Element == Int32 {
        String(decoding: decode(ids), as: UTF8.self)
    }
}
