/// One merge learned by BPE training: the ids of the two tokens joined; the new token's id is 256 + its index in the list.
public struct BPEMerge: Sendable, Equatable, Hashable {
    /// The id of the token on the left.
    public let left: Int32
    /// The id of the token on the right.
    public let right: Int32

    /// The merge of `left` followed by `right`.
    public init(left: Int32, right: Int32) {
        self.left = left
        self.right = right
    }
}

/// Learns byte-level BPE merges from pre-tokenized pieces.
///
/// The rules, which `Tests/Reference/bpe_train_reference.py` restates as a plain full recount per merge:
///
/// - **Score.** A pair of adjacent tokens scores, summed over pieces, the piece's count times the number of
///   places where merging the pair left to right would join it. For distinct tokens that is every adjacent
///   occurrence; in a run of one token it is every second place, so (a, a) occurs once in "aaa" (which the merge
///   turns into "aa a", as Hugging Face `tokenizers` applies merges) and twice in "aaaa". The score is thus exactly
///   how many tokens the merge saves. (Hugging Face's own trainer scores overlapping occurrences, so it can differ
///   on runs of one token.)
/// - **Order.** Each step merges the pair with the highest score; ties go to the smallest left id, then the
///   smallest right id. Training is single-threaded and never depends on hash order, so it is deterministic.
///   (Hugging Face's trainer breaks ties by its own ids, which order the byte alphabet by each byte's printable
///   character — printable bytes first, the space's `Ġ` late — so where counts tie its merge list can differ; and it
///   goes on with pairs seen once, where Keel stops at pairs seen at least twice, so on a small corpus it reaches a
///   vocabulary size Keel stops short of: `keel tokenizer train` prints the ids it made.)
/// - **No duplicate tokens.** A pair whose bytes together equal an existing token's bytes is skipped for good
///   (its bytes never change) and the next best pair is taken. Two ids spelling the same bytes would break the
///   correspondence between the vocabulary and its merges: a Hugging Face vocabulary (bytes → id) cannot hold both,
///   and "merge rank" (Hugging Face) and "byte-string rank" (tiktoken) would rank such a token differently. With no
///   duplicates, token 256 + i is created by merge i alone, so both rank it i. For merges learned by these rules
///   the skip in fact never fires (see the next point); it stays as a cheap check so that the guarantee does not
///   rest on that argument.
/// - **Encoders agree.** No duplicates alone would not make the two encoding algorithms agree: tiktoken joins
///   *any* adjacent pair whose bytes form a token, Hugging Face only the pair listed as that token's merge. What
///   makes them agree is how training applies merges: each merge, left to right, to every piece. Then a span of a
///   piece whose ends are token boundaries is segmented exactly as its bytes alone would be (a merge never crosses
///   those ends, so it cannot change what happens inside). Merge i joined a pair that was adjacent in some piece,
///   so the bytes of token 256 + i alone are that pair just before merge i and the single token after it. Hence
///   when merges 0..<i have been applied to any text (as merge-rank encoding proceeds; part-way through merge i
///   likewise), two adjacent tokens whose bytes form a token are exactly that token's merge, of rank i or more:
///   otherwise those bytes alone would already be one token, or would split differently from the token's merge.
///   So both algorithms see the same candidates with the same ranks and make the same choices, on any text, and no
///   adjacent pair can spell an existing token, which is why the skip never fires. This holds for merge lists
///   learned this way, not for any merge list.
/// - **Stop.** Training stops early once no remaining pair (other than skipped ones) scores at least 2.
///
/// Cost: counts are updated incrementally. Each pair keeps a list of the pieces it occurs in, so a merge only
/// visits those pieces, and a max-heap with lazy invalidation finds the best pair. A merge costs time in
/// proportion to the tokens of the pieces it changes, plus a logarithmic heap operation per new pair.
public enum BPETrainer {
    /// How often (in merges) `train` reports progress.
    static let progressInterval = 100

    /// Learns up to `mergeCount` merges from pre-tokenized pieces with their counts.
    ///
    /// Base tokens: id b (0...255) is the single byte b. Merge i creates token 256 + i whose bytes are
    /// bytes(left) + bytes(right). Pieces with a count below 1 are ignored; the same bytes may appear in several
    /// pieces (their counts simply add up).
    /// - Parameter progress: called now and then with the number of merges done (for a progress display), and
    ///   once at the end.
    /// - Returns: the merges in the order learned; fewer than `mergeCount` when no pair occurs twice any more.
    public static func train(pieces: [(bytes: [UInt8], count: Int)], mergeCount: Int,
                             progress: (Int) -> Void = { _ in }) -> [BPEMerge] {
        var state = TrainingState(pieces: pieces)
        var merges: [BPEMerge] = []
        while merges.count < mergeCount, let pair = state.bestPair() {
            state.merge(pair, into: Int32(256 + merges.count))
            merges.append(BPEMerge(left: state.pairLeft[pair], right: state.pairRight[pair]))
            if merges.count % progressInterval == 0 { progress(merges.count) }
        }
        progress(merges.count)
        return merges
    }
}

extension BPETrainer {
    /// Everything training tracks between merges.
    private struct TrainingState {
        // Pieces of at least two bytes (shorter ones hold no pair) as token ids, back to back in `symbols`. A merge
        // shortens a piece in place, so `pieceLength` shrinks while `pieceStart` stays put.
        private var symbols: [Int32] = []
        private var pieceStart: [Int] = []
        private var pieceLength: [Int] = []
        private var pieceCount: [Int] = []

        // Pairs by dense id.
        private var pairIDs = PairIDTable()
        private(set) var pairLeft: [Int32] = []
        private(set) var pairRight: [Int32] = []
        private var pairCount: [Int] = []
        /// The pieces the pair occurs in, each once. Pieces where later merges consumed the pair stay listed (they
        /// are skipped when the pair is merged) because removing them would cost more than skipping them.
        private var pairPieces: [[Int32]] = []

        /// Pairs ranked by count as last seen (lazy: a count may have dropped since); each pair with a nonzero
        /// count has exactly one entry.
        private var queue = CandidateHeap()

        private var tokenBytes: [[UInt8]] = (0...255).map { [UInt8($0)] }
        private var knownBytes = Set<[UInt8]>((0...255).map { [UInt8($0)] })

        init(pieces: [(bytes: [UInt8], count: Int)]) {
            for piece in pieces where piece.count > 0 && piece.bytes.count >= 2 {
                pieceStart.append(symbols.count)
                pieceLength.append(piece.bytes.count)
                pieceCount.append(piece.count)
                for byte in piece.bytes { symbols.append(Int32(byte)) }
            }
            for piece in 0..<pieceStart.count {
                tally(piece: piece, weight: pieceCount[piece], indexFrom: 0) { _, _ in true }
            }
            queue = CandidateHeap((0..<pairCount.count).map {
                Candidate(count: pairCount[$0], key: PairIDTable.key(pairLeft[$0], pairRight[$0]), pair: Int32($0))
            })
        }

        /// The pair to merge next, or nil when no pair that may be merged scores at least 2.
        mutating func bestPair() -> Int? {
            while let top = queue.pop() {
                let pair = Int(top.pair)
                let current = pairCount[pair]
                if current != top.count {
                    // Stale: the count dropped since this entry was pushed. Counts never rise after a pair's first
                    // step (see `merge`), so an up-to-date entry at the top is the true best.
                    if current > 0 { queue.push(Candidate(count: current, key: top.key, pair: top.pair)) }
                    continue
                }
                if current < 2 { return nil }
                let bytes = tokenBytes[Int(pairLeft[pair])] + tokenBytes[Int(pairRight[pair])]
                // A duplicate stays one for good, so its entry is simply dropped.
                if knownBytes.contains(bytes) { continue }
                tokenBytes.append(bytes)
                knownBytes.insert(bytes)
                return pair
            }
            return nil
        }

        /// Replaces every occurrence of `pair` (left to right within each piece) by `token` and updates counts.
        ///
        /// Only pairs that involve the pair's tokens or the new token change, and a pair without the new token can
        /// only lose occurrences: its adjacencies after the merge were adjacencies before, and a run of equal tokens
        /// only gets split. So every pair that gains count is new this step, and its heap entry can wait until the
        /// step's end.
        mutating func merge(_ pair: Int, into token: Int32) {
            let left = pairLeft[pair], right = pairRight[pair]
            let firstNewPair = pairCount.count
            let pieces = pairPieces[pair]
            pairPieces[pair] = []
            for piece32 in pieces {
                let piece = Int(piece32)
                guard contains(piece: piece, left, right) else { continue }
                let count = pieceCount[piece]
                tally(piece: piece, weight: -count, indexFrom: Int.max) { x, y in
                    x == left || x == right || y == left || y == right
                }
                apply(piece: piece, left, right, token)
                tally(piece: piece, weight: count, indexFrom: firstNewPair) { x, y in
                    x == token || y == token || x == left || x == right || y == left || y == right
                }
            }
            assert(pairCount[pair] == 0, "a merged pair must have no occurrences left")
            for newPair in firstNewPair..<pairCount.count {
                queue.push(Candidate(count: pairCount[newPair], key: PairIDTable.key(pairLeft[newPair], pairRight[newPair]),
                                     pair: Int32(newPair)))
            }
        }

        private func contains(piece: Int, _ left: Int32, _ right: Int32) -> Bool {
            let start = pieceStart[piece]
            for i in start..<(start + pieceLength[piece] - 1) where symbols[i] == left && symbols[i + 1] == right {
                return true
            }
            return false
        }

        /// Merges `left, right` into `token` in one piece, left to right, so "aaa" becomes "aa a".
        private mutating func apply(piece: Int, _ left: Int32, _ right: Int32, _ token: Int32) {
            let start = pieceStart[piece], end = start + pieceLength[piece]
            var read = start, write = start
            while read < end {
                if read + 1 < end && symbols[read] == left && symbols[read + 1] == right {
                    symbols[write] = token
                    read += 2
                } else {
                    symbols[write] = symbols[read]
                    read += 1
                }
                write += 1
            }
            pieceLength[piece] = write - start
        }

        /// Adds `weight` to the count of each pair occurrence in `piece` that `selected` accepts, creating pairs as
        /// needed; pairs with id `indexFrom` or above also get the piece listed (once).
        private mutating func tally(piece: Int, weight: Int, indexFrom: Int, _ selected: (Int32, Int32) -> Bool) {
            let start = pieceStart[piece], end = start + pieceLength[piece]
            var previousTookRepeat = false
            for i in start..<(end - 1) {
                let x = symbols[i], y = symbols[i + 1]
                if x == y {
                    // In a run x x x …, merging (x, x) left to right joins positions 0-1, 2-3, …; the pairs in
                    // between never get merged, so they don't count.
                    if previousTookRepeat {
                        previousTookRepeat = false
                        continue
                    }
                    previousTookRepeat = true
                } else {
                    previousTookRepeat = false
                }
                guard selected(x, y) else { continue }
                let pair = pairID(x, y)
                pairCount[pair] += weight
                if pair >= indexFrom && pairPieces[pair].last != Int32(piece) { pairPieces[pair].append(Int32(piece)) }
            }
        }

        /// The id of pair (x, y), created with count 0 if new.
        private mutating func pairID(_ x: Int32, _ y: Int32) -> Int {
            let (id, inserted) = pairIDs.findOrInsert(PairIDTable.key(x, y), newID: Int32(pairCount.count))
            if inserted {
                pairLeft.append(x)
                pairRight.append(y)
                pairCount.append(0)
                pairPieces.append([])
            }
            return Int(id)
        }
    }

    /// A pair as ranked in the heap.
    private struct Candidate {
        var count: Int
        /// `PairIDTable.key(left, right)`: ordering keys orders by left id, then right id.
        var key: UInt64
        var pair: Int32

        /// Higher count first; ties go to the smaller left id, then the smaller right id.
        static func ranksBefore(_ a: Candidate, _ b: Candidate) -> Bool {
            a.count != b.count ? a.count > b.count : a.key < b.key
        }
    }

    /// A binary max-heap of candidates by `Candidate.ranksBefore`.
    private struct CandidateHeap {
        private var entries: [Candidate]

        init(_ entries: [Candidate] = []) {
            self.entries = entries
            for i in stride(from: entries.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        }

        mutating func push(_ candidate: Candidate) {
            entries.append(candidate)
            var child = entries.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard Candidate.ranksBefore(entries[child], entries[parent]) else { break }
                entries.swapAt(child, parent)
                child = parent
            }
        }

        mutating func pop() -> Candidate? {
            guard let top = entries.first else { return nil }
            let last = entries.removeLast()
            if !entries.isEmpty {
                entries[0] = last
                siftDown(0)
            }
            return top
        }

        private mutating func siftDown(_ start: Int) {
            var parent = start
            while true {
                var best = parent
                let left = 2 * parent + 1, right = left + 1
                if left < entries.count && Candidate.ranksBefore(entries[left], entries[best]) { best = left }
                if right < entries.count && Candidate.ranksBefore(entries[right], entries[best]) { best = right }
                if best == parent { return }
                entries.swapAt(parent, best)
                parent = best
            }
        }
    }

    /// An open-addressing hash map from a pair's key to its dense id. Training looks pairs up tens of millions of
    /// times, where `Dictionary`'s seeded SipHash would dominate the run time.
    private struct PairIDTable {
        private static let empty = UInt64.max
        private var keys = [UInt64](repeating: PairIDTable.empty, count: 1 << 16)
        private var ids = [Int32](repeating: 0, count: 1 << 16)
        private var shift = 64 - 16
        private var count = 0

        /// Left id in the high half, right id in the low half; ids are nonnegative, so this never equals `empty`.
        static func key(_ left: Int32, _ right: Int32) -> UInt64 {
            UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        }

        /// The id stored for `key`, or `newID` after storing it.
        mutating func findOrInsert(_ key: UInt64, newID: Int32) -> (id: Int32, inserted: Bool) {
            var slot = self.slot(key)
            while keys[slot] != PairIDTable.empty {
                if keys[slot] == key { return (ids[slot], false) }
                slot = (slot + 1) & (keys.count - 1)
            }
            keys[slot] = key
            ids[slot] = newID
            count += 1
            if count * 2 > keys.count { grow() }
            return (newID, true)
        }

        /// Fibonacci hashing: the high bits of key × 2⁶⁴/φ spread consecutive ids over the table.
        private func slot(_ key: UInt64) -> Int {
            Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> UInt64(shift))
        }

        private mutating func grow() {
            let oldKeys = keys, oldIDs = ids
            keys = [UInt64](repeating: PairIDTable.empty, count: oldKeys.count * 2)
            ids = [Int32](repeating: 0, count: oldKeys.count * 2)
            shift -= 1
            for (key, id) in zip(oldKeys, oldIDs) where key != PairIDTable.empty {
                var slot = self.slot(key)
                while keys[slot] != PairIDTable.empty { slot = (slot + 1) & (keys.count - 1) }
                keys[slot] = key
                ids[slot] = id
            }
        }
    }
}
