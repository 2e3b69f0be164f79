import Foundation
import KeelCore

/// What `BPEEncoder.encode` does with special-token text (such as `<|endoftext|>`) found in its input.
public enum SpecialTokenPolicy: String, Sendable, CaseIterable {
    /// Encode it as ordinary text, like tiktoken's `encode_ordinary` (the safe choice for training data).
    case ordinary
    /// Emit the special token's id, like tiktoken's `allowed_special="all"`.
    case allowed
    /// Throw, like tiktoken's default `disallowed_special="all"`.
    case rejected
}

/// Encodes text with a `BPEVocabulary`. Not thread-safe: give each thread its own encoder (they share the
/// vocabulary). Each encoder caches the tokens of pieces it has seen, which is most of the speed on text.
public final class BPEEncoder {
    public let vocabulary: BPEVocabulary
    private let preTokenizer: PreTokenizer
    // Private copies of the vocabulary's lookup tables: encoders on different threads touching the same
    // array buffers contend on their reference counts, which made two threads slower than one.
    private let pairs: PairTable
    private let wholePieces: ByteStringTable?
    private let byteTokens: [Int32]
    /// Special tokens' spellings, the longest found where two start at one place; made on first use (most encoders
    /// read ordinary text only).
    private lazy var specials = SpellingTrie(vocabulary.specialTokens.map { ($0.key, $0.value) })
    /// The spellings of the added tokens that are not special, which every text matches.
    private lazy var textAdded = SpellingTrie(vocabulary.textAddedTokens.map { ($0, vocabulary.specialTokens[$0]!) })
    private let rules: [Int32: AddedTokenRule]
    private var cacheIndex: ByteStringTable
    private var cacheSpans: [(start: Int32, count: Int32)] = []
    private var cacheTokens: [Int32] = []
    /// What the cache holds, counted as its keys' bytes, its tokens' and each entry's span and hash slot.
    private var cacheBytes = 0
    /// The cache starts again past this many entries, or past `cacheByteLimit`: a server keeps an encoder per processor,
    /// each with its cache, and text of long pieces (a client's prompts of long made-up words) filled each to over
    /// 300 MiB when only entries were counted. Natural text's pieces are short: 2¹⁸ of them take about 10 MiB.
    private static let cacheLimit = 1 << 18
    let cacheByteLimit: Int
    /// Longer pieces are not cached: a run of letters with no space (DNA, base64, an adversarial prompt to a server) is
    /// one piece, rarely seen twice, and caching each would grow the cache by its bytes until the 32-bit offsets
    /// overflow.
    static let longestCachedPiece = 256
    /// Pieces in the cache (for tests).
    var cachedPieces: Int { cacheSpans.count }
    // Scratch for merging one piece.
    private var parts: [Int32] = []
    private var ranks: [Int32] = []
    private var heap = PairHeap()
    private var next: [Int32] = []
    private var previous: [Int32] = []

    /// Pieces longer than this merge through a heap (O(n log n)) instead of rescanning (O(n²)).
    static let heapThreshold = 128

    public convenience init(vocabulary: BPEVocabulary) {
        self.init(vocabulary: vocabulary, cacheByteLimit: 32 << 20)
    }

    init(vocabulary: BPEVocabulary, cacheByteLimit: Int) {
        self.cacheByteLimit = cacheByteLimit
        self.vocabulary = vocabulary
        preTokenizer = PreTokenizer(pattern: vocabulary.pattern)
        pairs = vocabulary.pairs.copied()
        wholePieces = vocabulary.emitsWholePieces ? vocabulary.tokensByBytes.copied() : nil
        byteTokens = vocabulary.byteTokens.map { $0 }
        rules = vocabulary.addedTokenRules
        cacheIndex = ByteStringTable(capacity: 1024)
    }

    /// Appends the tokens of `text` (UTF-8 bytes, not necessarily valid) to `output`, treating any special
    /// token text as ordinary text — all but the added tokens that are not special, matched first as
    /// `tokenizers` matches them (the longest where two start at one place).
    public func encodeOrdinary(_ text: UnsafeBufferPointer<UInt8>, into output: inout [Int32]) {
        guard !vocabulary.textAddedTokens.isEmpty else { return encodeSplitting(text, into: &output) }
        Self.split(text, at: textAdded, rules: rules, between: { encodeSplitting($0, into: &output) }, matched: { id, _ in output.append(id) })
    }

    /// Walks `text` for `spellings`, leftmost first and the longest where two start at one place: `between` gets the
    /// text before each match and after the last, `matched` each match's id and spelling. A token with a rule
    /// (`AddedTokenRule`) takes the whitespace around it out of the text between, or is not matched where it does not
    /// stand alone — its spelling is then text, and the walk goes on after it, as `tokenizers` goes on.
    private static func split(_ text: UnsafeBufferPointer<UInt8>, at spellings: SpellingTrie, rules: [Int32: AddedTokenRule],
                              between: (UnsafeBufferPointer<UInt8>) throws -> Void,
                              matched: (Int32, Range<Int>) throws -> Void) rethrows {
        var start = 0, i = 0
        while i < text.count {
            guard let (length, id) = spellings.longestMatch(in: text, at: i) else {
                i += 1
                continue
            }
            let spelling = i..<(i + length)
            guard let taken = rules[id].map({ $0.match(spelling, in: text, after: start) }) ?? spelling else {
                i = spelling.upperBound
                continue
            }
            try between(UnsafeBufferPointer(rebasing: text[start..<taken.lowerBound]))
            try matched(id, spelling)
            i = taken.upperBound
            start = i
        }
        try between(UnsafeBufferPointer(rebasing: text[start..<text.count]))
    }

    /// The tokens of text without added tokens: split by the pattern, each piece merged.
    private func encodeSplitting(_ text: UnsafeBufferPointer<UInt8>, into output: inout [Int32]) {
        guard text.count > 0 else { return }
        preTokenizer.split(text) { range in
            encodePiece(UnsafeBufferPointer(rebasing: text[range]), into: &output)
        }
    }

    /// Appends the tokens of `text` to `output`, handling special-token text by `policy`.
    public func encode(_ text: UnsafeBufferPointer<UInt8>, specialTokens policy: SpecialTokenPolicy,
                       into output: inout [Int32]) throws {
        if policy == .ordinary || vocabulary.specialTokens.isEmpty {
            encodeOrdinary(text, into: &output)
            return
        }
        try Self.split(text, at: specials, rules: rules, between: { encodeOrdinary($0, into: &output) }) { id, bytes in
            guard policy == .allowed else {
                throw KeelError("text contains the special token \(String(decoding: text[bytes], as: UTF8.self)) at byte \(bytes.lowerBound); allow it or encode it as ordinary text")
            }
            output.append(id)
        }
    }

    /// Convenience: the tokens of `text`.
    public func encode(_ text: String, specialTokens policy: SpecialTokenPolicy = .ordinary) throws -> [Int32] {
        var output: [Int32] = []
        var text = text
        try text.withUTF8 { try encode($0, specialTokens: policy, into: &output) }
        return output
    }

    /// The bytes of `ids`; special tokens become their text.
    public func decode<IDs: Sequence>(_ ids: IDs) throws -> [UInt8] where IDs.Element == Int32 {
        try vocabulary.decode(ids)
    }

    // MARK: - One piece

    private func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, into output: inout [Int32]) {
        if piece.count == 1 {
            let token = byteTokens[Int(piece[0])]
            if token >= 0 { output.append(token) }
            return
        }
        let raw = UnsafeRawBufferPointer(piece)
        if let whole = wholePieces?.value(for: raw) {
            output.append(whole)
            return
        }
        if let cached = cacheIndex.value(for: raw) {
            let span = cacheSpans[Int(cached)]
            output.append(contentsOf: cacheTokens[Int(span.start)..<Int(span.start + span.count)])
            return
        }
        let first = output.count
        if piece.count > BPEEncoder.heapThreshold {
            mergeWithHeap(piece, into: &output)
        } else {
            mergeByScanning(piece, into: &output)
        }
        guard piece.count <= BPEEncoder.longestCachedPiece else { return }
        if cacheSpans.count >= BPEEncoder.cacheLimit || cacheBytes >= cacheByteLimit {
            // Its memory goes back too: the cache of a burst of unusual text would otherwise stay at its peak.
            cacheIndex = ByteStringTable(capacity: 1024)
            cacheSpans = []
            cacheTokens = []
            cacheBytes = 0
        }
        cacheIndex.insert(raw, value: Int32(cacheSpans.count))
        cacheSpans.append((Int32(cacheTokens.count), Int32(output.count - first)))
        cacheTokens.append(contentsOf: output[first...])
        cacheBytes += piece.count + 4 * (output.count - first) + 24
    }

    /// The cache's size as `cacheByteLimit` counts it (for tests).
    var cachedBytes: Int { cacheBytes }

    /// Puts the token of each byte of `piece` in `parts`, leaving out bytes the vocabulary has no token for.
    @inline(__always)
    private func appendByteTokens(_ piece: UnsafeBufferPointer<UInt8>) {
        for byte in piece {
            let token = byteTokens[Int(byte)]
            if token >= 0 { parts.append(token) }
        }
    }

    /// Repeatedly merges the adjacent pair with the lowest rank (leftmost on ties), rescanning each time.
    private func mergeByScanning(_ piece: UnsafeBufferPointer<UInt8>, into output: inout [Int32]) {
        parts.removeAll(keepingCapacity: true)
        ranks.removeAll(keepingCapacity: true)
        appendByteTokens(piece)
        guard parts.count > 1 else {
            output.append(contentsOf: parts)
            return
        }
        for i in 0..<(parts.count - 1) { ranks.append(pairs.merge(parts[i], parts[i + 1])?.rank ?? .max) }
        while true {
            var best = Int32.max, at = -1
            for i in 0..<ranks.count where ranks[i] < best {
                best = ranks[i]
                at = i
            }
            guard at >= 0 else { break }
            parts[at] = pairs.merge(parts[at], parts[at + 1])!.token
            parts.remove(at: at + 1)
            ranks.remove(at: at)
            if at < ranks.count { ranks[at] = pairs.merge(parts[at], parts[at + 1])?.rank ?? .max }
            if at > 0 { ranks[at - 1] = pairs.merge(parts[at - 1], parts[at])?.rank ?? .max }
        }
        output.append(contentsOf: parts)
    }

    /// The same merges as `mergeByScanning` in O(n log n): a linked list of parts and a heap of candidate
    /// pairs ordered by (rank, position), entries checked for staleness when popped.
    private func mergeWithHeap(_ piece: UnsafeBufferPointer<UInt8>, into output: inout [Int32]) {
        parts.removeAll(keepingCapacity: true)
        appendByteTokens(piece)
        let n = parts.count
        guard n > 1 else {
            output.append(contentsOf: parts)
            return
        }
        next = (0..<n).map { Int32($0 + 1) }
        previous = (0..<n).map { Int32($0 - 1) }
        heap.removeAll()
        func consider(_ left: Int32) {
            guard left >= 0 else { return }
            let right = next[Int(left)]
            guard right < n, let merge = pairs.merge(parts[Int(left)], parts[Int(right)]) else { return }
            heap.push(PairHeap.Entry(rank: merge.rank, position: left, right: right,
                                     leftToken: parts[Int(left)], rightToken: parts[Int(right)]))
        }
        for i in 0..<(n - 1) { consider(Int32(i)) }
        while let entry = heap.pop() {
            let left = Int(entry.position), right = Int(entry.right)
            // Stale if either part was merged away or changed since the entry was pushed.
            guard next[left] == entry.right, parts[left] == entry.leftToken, parts[right] == entry.rightToken,
                  previous[right] == entry.position
            else { continue }
            parts[left] = pairs.merge(entry.leftToken, entry.rightToken)!.token
            let after = next[right]
            next[left] = after
            if after < n { previous[Int(after)] = Int32(left) }
            parts[right] = -1
            next[right] = -1
            previous[right] = -1
            consider(previous[left])
            consider(Int32(left))
        }
        var i: Int32 = 0
        while i < n {
            output.append(parts[Int(i)])
            i = next[Int(i)]
        }
    }
}

/// A binary min-heap of candidate merges ordered by (rank, position).
struct PairHeap {
    struct Entry {
        let rank: Int32
        let position: Int32
        let right: Int32
        let leftToken: Int32
        let rightToken: Int32

        @inline(__always)
        func precedes(_ other: Entry) -> Bool {
            rank < other.rank || (rank == other.rank && position < other.position)
        }
    }

    private var items: [Entry] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ entry: Entry) {
        items.append(entry)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].precedes(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count, items[left].precedes(items[smallest]) { smallest = left }
                if right < items.count, items[right].precedes(items[smallest]) { smallest = right }
                guard smallest != parent else { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
