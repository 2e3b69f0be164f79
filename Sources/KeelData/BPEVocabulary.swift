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
    /// Special tokens by text, e.g. `<|endoftext|>` — every added token, whether special or not.
    public let specialTokens: [String: Int32]
    /// The added tokens that are not special (a `tokenizer.json`'s `"special": false`, a GGUF file's user-defined
    /// tokens: Phi-2's runs of spaces): matched in every text, as `tokenizers` and llama.cpp match them — also where
    /// special tokens' spellings are read as text.
    public let textAddedTokens: Set<String>
    /// The added tokens matched otherwise than by their spelling alone (`lstrip`, `rstrip`, `single_word`), by id.
    public let addedTokenRules: [Int32: AddedTokenRule]
    /// The text of each special token, by id (decoding, token by token, looks them up).
    private let specialTexts: [Int32: String]
    /// The end-of-text special token, if the vocabulary has one.
    public let endOfText: Int32?
    /// Whether a piece that is itself a token is emitted whole before any merging (tiktoken semantics).
    public let emitsWholePieces: Bool
    /// What the tokenizer file's post-processor puts before a text (`TokenizerSettings.beginningOfTextToken(in:)`).
    public let textStart: TextStart

    /// The token Hugging Face's `tokenizer(text)` puts before a text's tokens, as a `tokenizer.json` post-processor says.
    public enum TextStart: Sendable, Equatable {
        /// The file says nothing: it has no post-processor, or it is not a Hugging Face file.
        case unspecified
        /// The post-processor puts no token first.
        case none
        /// The post-processor puts this token first.
        case token(Int32)
    }

    let tokenStarts: [Int]
    let tokenArena: [UInt8]
    /// The token of each byte; -1 for a byte a Hugging Face–style vocabulary has no token for (some omit bytes
    /// that valid UTF-8 never holds): such bytes are dropped when encoding, as `tokenizers` and llama.cpp drop them.
    let byteTokens: [Int32]
    let pairs: PairTable
    let tokensByBytes: ByteStringTable
    /// Merge list in priority order (Hugging Face semantics only; empty for tiktoken vocabularies).
    public let merges: [(left: Int32, right: Int32)]

    /// The conventional name of the end-of-text token.
    public static let endOfTextText = "<|endoftext|>"

    /// A tiktoken vocabulary: each ordinary token's bytes and rank (its id).
    convenience init(ranked: RankedTokens, specialTokens: [String: Int32], pattern: SplitPattern) throws {
        var table = ByteStringTable(capacity: ranked.count)
        var largest: Int32 = -1
        ranked.bytes.withUnsafeBytes { arena in
            for token in 0..<ranked.count {
                table.insert(UnsafeRawBufferPointer(rebasing: arena[ranked.range(of: token)]), value: ranked.ranks[token])
                largest = max(largest, ranked.ranks[token])
            }
        }
        var tokens = [[UInt8]](repeating: [], count: Int(largest) + 1)
        for token in 0..<ranked.count { tokens[Int(ranked.ranks[token])] = Array(ranked.bytes[ranked.range(of: token)]) }
        let pairs = Self.splitPairs(ranked, table)
        try self.init(tokens: tokens, table: table, pairs: pairs, merges: [], specialTokens: specialTokens,
                      pattern: pattern, emitsWholePieces: true)
    }

    /// tiktoken's merges: two adjacent parts merge when their bytes joined are a token, with that token's rank.
    /// So every split of a token into two tokens is a pair. Walking the tokens in byte order with a stack of
    /// the current token's prefixes finds each split's left part without hashing (a token's prefixes come
    /// before it, and every token between a prefix and it starts with that prefix); the right parts are
    /// looked up in parallel.
    private static func splitPairs(_ ranked: RankedTokens, _ table: ByteStringTable) -> PairTable {
        var candidates: [(left: Int32, token: Int32, split: Int32)] = []
        ranked.bytes.withUnsafeBytes { arena in
            func slice(_ token: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: arena[ranked.range(of: token)]) }
            // Sorted on the first 8 bytes as one big-endian integer, the rest compared only on ties.
            let keyed = (0..<ranked.count).map { token -> (key: UInt64, token: Int) in
                var key: UInt64 = 0
                for byte in slice(token).prefix(8) { key = key << 8 | UInt64(byte) }
                return (key << (8 * UInt64(max(0, 8 - slice(token).count))), token)
            }.sorted { a, b in
                if a.key != b.key { return a.key < b.key }
                let x = slice(a.token), y = slice(b.token)
                let common = memcmp(x.baseAddress!, y.baseAddress!, min(x.count, y.count))
                return common != 0 ? common < 0 : x.count < y.count
            }
            let order = keyed.map(\.token)
            var prefixes: [Int] = []
            for token in order {
                let bytes = slice(token)
                while let top = prefixes.last {
                    let prefix = slice(top)
                    if prefix.count < bytes.count && memcmp(prefix.baseAddress!, bytes.baseAddress!, prefix.count) == 0 { break }
                    prefixes.removeLast()
                }
                for prefix in prefixes {
                    candidates.append((ranked.ranks[prefix], Int32(token), Int32(ranked.range(of: prefix).count)))
                }
                prefixes.append(token)
            }
        }
        var rights = [Int32](repeating: -1, count: candidates.count)
        ranked.bytes.withUnsafeBytes { arena in
            rights.withUnsafeMutableBufferPointer { rights in
                ThreadPool.shared.parallelFor(candidates.count) { range in
                    for i in range {
                        let whole = ranked.range(of: Int(candidates[i].token))
                        let suffix = (whole.lowerBound + Int(candidates[i].split))..<whole.upperBound
                        rights[i] = table.value(for: UnsafeRawBufferPointer(rebasing: arena[suffix])) ?? -1
                    }
                }
            }
        }
        var pairs = PairTable(capacity: rights.lazy.filter { $0 >= 0 }.count)
        for (candidate, right) in zip(candidates, rights) where right >= 0 {
            let rank = ranked.ranks[Int(candidate.token)]
            pairs.insert(candidate.left, right, PairTable.Merge(rank: rank, token: rank))
        }
        return pairs
    }

    /// A Hugging Face–style vocabulary: `tokens[id]` is each ordinary token's bytes; `merges` in priority
    /// order, each joining two ids into the token whose bytes are their concatenation.
    public convenience init(
        tokens: [[UInt8]], merges: [(left: Int32, right: Int32)], specialTokens: [String: Int32],
        pattern: SplitPattern, emitsWholePieces: Bool = false, textStart: TextStart = .unspecified,
        textAddedTokens: Set<String> = [], addedTokenRules: [Int32: AddedTokenRule] = [:]
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
                      pattern: pattern, emitsWholePieces: emitsWholePieces, allowsMissingBytes: !emitsWholePieces,
                      textStart: textStart, textAddedTokens: textAddedTokens, addedTokenRules: addedTokenRules)
    }

    private init(
        tokens: [[UInt8]], table: ByteStringTable, pairs: PairTable, merges: [(left: Int32, right: Int32)],
        specialTokens: [String: Int32], pattern: SplitPattern, emitsWholePieces: Bool, allowsMissingBytes: Bool = false,
        textStart: TextStart = .unspecified, textAddedTokens: Set<String> = [], addedTokenRules: [Int32: AddedTokenRule] = [:]
    ) throws {
        var byteTokens = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            guard let id = [UInt8(byte)].withUnsafeBytes({ table.value(for: $0) }) else {
                if allowsMissingBytes { continue }
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
        var specialTexts: [Int32: String] = [:]
        for (text, id) in specialTokens.sorted(by: { $0.key < $1.key }) {
            if let other = specialTexts.updateValue(text, forKey: id) {
                throw KeelError("tokenizer: the added tokens \(other) and \(text) both have id \(id)")
            }
        }
        if let unknown = textAddedTokens.first(where: { specialTokens[$0] == nil }) {
            throw KeelError("tokenizer: \(unknown) is not one of the added tokens")
        }
        if let unknown = addedTokenRules.keys.first(where: { specialTexts[$0] == nil }) {
            throw KeelError("tokenizer: id \(unknown) has matching rules but is not an added token")
        }
        self.pattern = pattern
        self.size = max(tokens.count, Int(largestSpecial) + 1)
        self.specialTokens = specialTokens
        self.specialTexts = specialTexts
        self.textAddedTokens = textAddedTokens
        self.addedTokenRules = addedTokenRules.filter { !$0.value.isEmpty }
        self.endOfText = specialTokens[BPEVocabulary.endOfTextText]
        self.emitsWholePieces = emitsWholePieces
        self.textStart = textStart
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

    /// The bytes of `ids`; special tokens become their text.
    public func decode<IDs: Sequence>(_ ids: IDs) throws -> [UInt8] where IDs.Element == Int32 {
        var bytes: [UInt8] = []
        for id in ids {
            if let special = specialTexts[id] {
                bytes += special.utf8
            } else {
                let token = self.bytes(of: id)
                guard !token.isEmpty else { throw KeelError("token id \(id) is not in the vocabulary (size \(size))") }
                bytes += token
            }
        }
        return bytes
    }
}
