import Foundation
import KeelCore

/// Token shards in llm.c's format: a header of 256 little-endian int32 (magic, version, token count in
/// the third slot, the rest zero) followed by the tokens.
public enum TokenShardFormat: String, Sendable, Codable, CaseIterable {
    /// magic 20240520, version 1: uint16 tokens (vocabularies up to 65,536 ids).
    case uint16
    /// magic 20240801, version 7: uint32 tokens (llm.c's Llama 3 convention).
    case uint32

    public var magic: Int32 { self == .uint16 ? 20_240_520 : 20_240_801 }
    public var version: Int32 { self == .uint16 ? 1 : 7 }
    public var tokenSize: Int { self == .uint16 ? 2 : 4 }
    static let headerBytes = 1024

    /// The narrowest format that holds ids below `vocabSize`.
    public static func narrowest(vocabSize: Int) -> TokenShardFormat {
        vocabSize <= 65_536 ? .uint16 : .uint32
    }

    /// Throws unless every id below `vocabSize` fits.
    public func check(vocabSize: Int) throws {
        if self == .uint16 && vocabSize > 65_536 {
            throw KeelError("a vocabulary of \(vocabSize) ids does not fit uint16 shards (at most 65,536); use uint32")
        }
    }

    /// The most tokens one shard holds: its header stores the count as a signed 32-bit integer, as llm.c's does.
    public static let maximumTokens = Int(Int32.max)

    /// What is wrong with `shardTokens` tokens per shard, after the setting's name (nil: nothing).
    public static func problem(shardTokens: Int) -> String? {
        (1...maximumTokens).contains(shardTokens) ? nil
            : "must be 1 to \(maximumTokens) (a shard's header holds its count in 32 bits; got \(shardTokens))"
    }

    /// Writes `tokens` as a shard, atomically; returns the file's XXH64. The tokens go in pieces of a million, each
    /// hashed as it is written: a shard of a billion uint32 tokens is not copied whole into a file image first (with
    /// the tokens themselves, that was three copies of it in memory at once).
    public func write(_ tokens: ArraySlice<Int32>, to url: URL) throws -> UInt64 {
        var hash = XXH64()
        try AtomicFile.write(to: url) { handle in
            var header = [UInt8](repeating: 0, count: TokenShardFormat.headerBytes)
            header.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: Int32.self)
                raw.storeBytes(of: version.littleEndian, toByteOffset: 4, as: Int32.self)
                raw.storeBytes(of: Int32(tokens.count).littleEndian, toByteOffset: 8, as: Int32.self)
            }
            header.withUnsafeBytes { hash.update($0) }
            try handle.write(contentsOf: header)
            var piece = [UInt8](repeating: 0, count: min(tokens.count, 1 << 20) * tokenSize)
            var start = tokens.startIndex
            while start < tokens.endIndex {
                let end = min(start + (1 << 20), tokens.endIndex)
                let length = (end - start) * tokenSize
                tokens[start..<end].withUnsafeBufferPointer { source in
                    piece.withUnsafeMutableBytes { raw in
                        if self == .uint16 {
                            let out = raw.bindMemory(to: UInt16.self)
                            for index in source.indices { out[index] = UInt16(truncatingIfNeeded: source[index]).littleEndian }
                        } else {
                            let out = raw.bindMemory(to: UInt32.self)
                            for index in source.indices { out[index] = UInt32(bitPattern: source[index]).littleEndian }
                        }
                    }
                }
                try piece.withUnsafeBytes { raw in
                    let written = UnsafeRawBufferPointer(rebasing: raw[..<length])
                    hash.update(written)
                    try handle.write(contentsOf: written)
                }
                start = end
            }
        }
        return hash.digest()
    }
}

/// A memory-mapped token shard whose header has been checked against its size (and, when given, its
/// checksum).
public final class TokenShard: @unchecked Sendable {
    public let url: URL
    public let format: TokenShardFormat
    public let count: Int
    private let data: Data
    /// Names the mapping to the SIGBUS handler for as long as it is mapped.
    private let name: MappedFileName

    /// Maps `url`; with `checksum`, verifies the file's XXH64 first, and with `tokensBelow` as well that every token is
    /// below it (as `checkTokens(below:)`), in the same pass: a dataset larger than memory is read from disk once.
    public init(url: URL, checksum: UInt64? = nil, tokensBelow vocabSize: Int? = nil) throws {
        self.url = url
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw KeelError("data: cannot read shard \(url.path): \(error.localizedDescription)")
        }
        name = MappedFileName(data, url: url)
        guard data.count >= TokenShardFormat.headerBytes else {
            throw KeelError("data: \(url.path): too short for a token shard header (\(data.count) bytes)")
        }
        let header = data.withUnsafeBytes { raw in
            (0..<3).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        }
        guard let format = TokenShardFormat.allCases.first(where: { $0.magic == header[0] && $0.version == header[1] }) else {
            throw KeelError("data: \(url.path): not an llm.c token shard (magic \(header[0]), version \(header[1]))")
        }
        let stored = (data.count - TokenShardFormat.headerBytes) / format.tokenSize
        guard header[2] >= 0, TokenShardFormat.headerBytes + Int(header[2]) * format.tokenSize == data.count else {
            throw KeelError("data: \(url.path): header says \(header[2]) tokens but the file holds \(stored)")
        }
        self.format = format
        self.count = Int(header[2])
        if let checksum {
            var hasher = XXH64(), largest = 0
            data.withUnsafeBytes { raw in
                hasher.update(UnsafeRawBufferPointer(rebasing: raw[..<TokenShardFormat.headerBytes]))
                // 1 MiB at a time: each piece's largest token is read while the piece is in the cache.
                let piece = 1 << 20
                for start in stride(from: TokenShardFormat.headerBytes, to: raw.count, by: piece) {
                    let bytes = UnsafeRawBufferPointer(rebasing: raw[start..<min(start + piece, raw.count)])
                    hasher.update(bytes)
                    if vocabSize != nil { largest = max(largest, Self.largestToken(bytes, format)) }
                }
            }
            guard hasher.digest() == checksum else { throw KeelError("data: \(url.path): checksum mismatch (the shard is damaged)") }
            if let vocabSize, largest >= vocabSize { try checkTokens(below: vocabSize) }
        } else if let vocabSize {
            try checkTokens(below: vocabSize)
        }
    }

    /// The largest of the tokens in `bytes` (whole tokens of `format`, aligned; read as the x86 host stores them, little-endian).
    private static func largestToken(_ bytes: UnsafeRawBufferPointer, _ format: TokenShardFormat) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        switch format {
        case .uint16: return Int(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt16.self), count: bytes.count / 2).max() ?? 0)
        case .uint32: return Int(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt32.self), count: bytes.count / 4).max() ?? 0)
        }
    }

    /// Copies tokens `range` into `destination` as Int32.
    public func copy(_ range: Range<Int>, to destination: UnsafeMutablePointer<Int32>) {
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + TokenShardFormat.headerBytes
            switch format {
            case .uint16:
                let tokens = base.assumingMemoryBound(to: UInt16.self)
                for (i, t) in range.enumerated() { destination[i] = Int32(UInt16(littleEndian: tokens[t])) }
            case .uint32:
                let tokens = base.assumingMemoryBound(to: UInt32.self)
                for (i, t) in range.enumerated() { destination[i] = Int32(bitPattern: UInt32(littleEndian: tokens[t])) }
            }
        }
    }

    /// Throws, naming the file and the first offending position, unless every token is below `vocabSize`
    /// (a shard made with another tokenizer would otherwise index past the embedding table).
    public func checkTokens(below vocabSize: Int) throws {
        let largest = data.withUnsafeBytes { Self.largestToken(UnsafeRawBufferPointer(rebasing: $0[TokenShardFormat.headerBytes...]), format) }
        guard largest >= vocabSize else { return }
        let tokens = self.tokens()
        let position = tokens.firstIndex { Int(UInt32(bitPattern: $0)) >= vocabSize }!
        throw KeelError("data: \(url.path): token id \(UInt32(bitPattern: tokens[position])) at position \(position) is outside the model's vocabulary (model.vocab_size \(vocabSize)); was the shard made with another tokenizer?")
    }

    /// All tokens as Int32 (for tests and tools).
    public func tokens() -> [Int32] {
        var result = [Int32](repeating: 0, count: count)
        result.withUnsafeMutableBufferPointer { copy(0..<count, to: $0.baseAddress!) }
        return result
    }
}
