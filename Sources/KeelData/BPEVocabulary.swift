import Foundation
import KeelCore

/// A byte-level BPE vocabulary: every token's bytes, which adjacent token pairs merge (and into what, at
/// which priority), the special tokens, and the split pattern applied before BPE.
///
/// Two merge semantics exist in the wild and both reduce to a pair table:
/// - tiktoken (`.tiktoken` rank files): two adjacent parts merge if their concatenated bytes are a token,
///   with that token's rank as priority; a piece that is itself a token is emitted whole. The pair table
///   lists every split of every token into two tokens.
/// - Hugging Face BPE (`tokenizer.json`, and Keel's trained vocabularies): only listed merges apply, in
///   list order. The pair table is the merge list.
/// Encoding then always merges the adjacent pair with the lowest priority, leftmost first.
public final class BPEVocabulary: Sendable {
    public let pattern: SplitPattern
    /// Number of ids (one past the largest id, specials included).
    public let size: Int
    /// Special tokens by text, e.g. `<|endoftext|>`.
    public let specialTokens: [String: Int32]
    /// The end-of-text special token, if the vocabulary has one.
    public let endOfText: Int32?
    /// Whether a piece that is itself a token is emitted whole before any merging (tiktoken semantics).
    public let emitsWholePieces: Bool

    let tokenStarts: [Int]
    let tokenArena: [UInt8]
    let byteTokens: [Int32]
    let pairs: PairTable
    let tokensByBytes: ByteStringTable
    /// Merge list in priority order (Hugging Face semantics only; empty for tiktoken vocabularies).
    public let merges: [(left: Int32, right: Int32)]

    /// The conventional name of the end-of-text token.
    public static let endOfTextText = "<|endoftext|>"

    /// A tiktoken vocabulary: `ranks` gives each ordinary token's bytes and rank (its id).
    public convenience init(ranks: [([UInt8], Int32)], specialTokens: [String: Int32], pattern: SplitPattern) throws {
        var table = ByteStringTable(capacity: ranks.count)
        var largest: Int32 = -1
        for (bytes, rank) in ranks {
            guard rank >= 0 else { throw KeelError("tokenizer: negative rank \(rank)") }
            bytes.withUnsafeBytes { table.insert($0, value: rank) }
            largest = max(largest, rank)
        }
        var tokens = [[UInt8]](repeating: [], count: Int(largest) + 1)
        for (bytes, rank) in ranks { tokens[Int(rank)] = bytes }
        var pairs = PairTable(capacity: ranks.reduce(0) { $0 + max(0, $1.0.count - 1) })
        for (bytes, rank) in ranks where bytes.count >= 2 {
            bytes.withUnsafeBytes { raw in
                for split in 1..<bytes.count {
                    if let left = table.value(for: UnsafeRawBufferPointer(rebasing: raw[..<split])),
                       let right = table.value(for: UnsafeRawBufferPointer(rebasing: raw[split...])) {
                        pairs.insert(left, right, PairTable.Merge(rank: rank, token: rank))
                    }
                }
            }
        }
        try self.init(tokens: tokens, table: table, pairs: pairs, merges: [], specialTokens: specialTokens,
                      pattern: pattern, emitsWholePieces: true)
    }

    /// A Hugging Face–style vocabulary: `tokens[id]` is each ordinary token's bytes; `merges` in priority
    /// order, each joining two ids into the token whose bytes are their concatenation.
    public convenience init(
        tokens: [[UInt8]], merges: [(left: Int32, right: Int32)], specialTokens: [String: Int32],
        pattern: SplitPattern, emitsWholePieces: Bool = false
    ) throws {
        var table = ByteStringTable(capacity: tokens.count)
        for (id, bytes) in tokens.enumerated() where !bytes.isEmpty {
            bytes.withUnsafeBytes { table.insert($0, value: Int32(id)) }
        }
        var pairs = PairTable(capacity: merges.count)
        for (rank, merge) in merges.enumerated() {
            guard tokens.indices.contains(Int(merge.left)), tokens.indices.contains(Int(merge.right)) else {
                throw KeelError("tokenizer: merge \(rank) names an id outside the vocabulary")
            }
            let joined = tokens[Int(merge.left)] + tokens[Int(merge.right)]
            guard let token = joined.withUnsafeBytes({ table.value(for: $0) }) else {
                throw KeelError("tokenizer: merge \(rank) produces bytes that are not a token in the vocabulary")
            }
            pairs.insert(merge.left, merge.right, PairTable.Merge(rank: Int32(rank), token: token))
        }
        try self.init(tokens: tokens, table: table, pairs: pairs, merges: merges, specialTokens: specialTokens,
                      pattern: pattern, emitsWholePieces: emitsWholePieces)
    }

    private init(
        tokens: [[UInt8]], table: ByteStringTable, pairs: PairTable, merges: [(left: Int32, right: Int32)],
        specialTokens: [String: Int32], pattern: SplitPattern, emitsWholePieces: Bool
    ) throws {
        var byteTokens = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            guard let id = [UInt8(byte)].withUnsafeBytes({ table.value(for: $0) }) else {
                throw KeelError("tokenizer: the vocabulary has no token for byte \(byte), so it is not byte-level")
            }
            byteTokens[byte] = id
        }
        var starts = [0]
        var arena: [UInt8] = []
        for bytes in tokens {
            arena += bytes
            starts.append(arena.count)
        }
        let largestSpecial = specialTokens.values.max() ?? -1
        for (text, id) in specialTokens where Int(id) < tokens.count && !tokens[Int(id)].isEmpty {
            throw KeelError("tokenizer: special token \(text) reuses ordinary id \(id)")
        }
        self.pattern = pattern
        self.size = max(tokens.count, Int(largestSpecial) + 1)
        self.specialTokens = specialTokens
        self.endOfText = specialTokens[BPEVocabulary.endOfTextText]
        self.emitsWholePieces = emitsWholePieces
        self.tokenStarts = starts
        self.tokenArena = arena
        self.byteTokens = byteTokens
        self.pairs = pairs
        self.tokensByBytes = table
        self.merges = merges
    }

    /// Number of ordinary (non-special) ids, including any unused ones below the largest.
    public var ordinaryCount: Int { tokenStarts.count - 1 }

    /// The bytes of ordinary token `id` (empty for special or unused ids).
    public func bytes(of id: Int32) -> ArraySlice<UInt8> {
        guard id >= 0, Int(id) < ordinaryCount else { return [] }
        return tokenArena[tokenStarts[Int(id)]..<tokenStarts[Int(id) + 1]]
    }
}
