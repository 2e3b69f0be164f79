import KeelCore

/// MinHash parameters. The defaults are FineWeb's (datatrove's `MinhashConfig`): 5-word shingles, 112 hashes as 14
/// bands of 8, permutations from seed 1, 64-bit values.
public struct MinHashParameters: Sendable, Equatable {
    /// Words per shingle.
    public var shingleSize = 5
    /// LSH bands; two documents are candidates when all the values of one band agree.
    public var bands = 14
    /// Hash values per band.
    public var rows = 8
    /// Seed of the `RandomState` the permutations are drawn from.
    public var seed: UInt32 = 1
    /// 64: datatrove's values. 32: each permuted value masked to its low 32 bits, as datasketch's legacy MinHash
    /// does (`np.bitwise_and(..., 2**32 - 1)`), so Keel's candidates can be compared with datasketch's.
    public var hashBits = 64

    public init() {}

    public var hashCount: Int { bands * rows }
}

/// Computes datatrove-compatible MinHash signatures: shingles are `shingleSize` consecutive words of the simplified
/// text (`simplifiedText`, then spaCy's English word split: `EnglishTokenizer.words`) joined by one space, hashed with XXH64 of their UTF-8
/// bytes; hash k of a signature is the minimum over shingles of `(a_k · h + b_k) mod (2⁶¹ − 1)`.
///
/// The product and sum are taken modulo 2⁶⁴ before the reduction, exactly as datatrove's and datasketch's NumPy
/// code computes them in `uint64` (their overflow wraps silently); a full 128-bit product would be the textbook
/// formula but would give different signatures from the tools Keel is compared with.
///
/// One `MinHasher` per thread: it reuses its scratch arrays from document to document.
public struct MinHasher {
    public let parameters: MinHashParameters
    /// The permutations' multipliers and offsets, `RandomState(seed).randint(1, p, size)` then
    /// `randint(0, p, size)`, as datatrove draws them.
    public let a: [UInt64]
    public let b: [UInt64]

    static let mersennePrime: UInt64 = (1 << 61) - 1

    private var simplifier = TextSimplifier()
    private let tokenizer = EnglishTokenizer.shared
    private var words: [Range<Int>] = []
    private var utf8: [UInt8] = []
    /// Byte offset in `utf8` of each scalar of the simplified text, and one past the end.
    private var offsets: [Int] = []
    private var shingle: [UInt8] = []
    private var values: [UInt64] = []

    public init(_ parameters: MinHashParameters = MinHashParameters()) {
        precondition(parameters.shingleSize > 0 && parameters.bands > 0 && parameters.rows > 0)
        precondition(parameters.hashBits == 32 || parameters.hashBits == 64, "hash bits must be 32 or 64")
        self.parameters = parameters
        var random = NumpyRandomState(seed: parameters.seed)
        a = random.randintUInt64(low: 1, high: Self.mersennePrime, count: parameters.hashCount)
        b = random.randintUInt64(low: 0, high: Self.mersennePrime, count: parameters.hashCount)
        values = [UInt64](repeating: 0, count: parameters.hashCount)
    }

    /// The words shingles are made of (datatrove: `word_tokenize(simplify_text(text))`).
    public mutating func words(of text: String) -> [String] {
        prepare(text)
        return words.map { range in String(decoding: utf8[offsets[range.lowerBound]..<offsets[range.upperBound]], as: UTF8.self) }
    }

    /// The shingle hashes in text order, repeats included (datatrove's `MinhashDedupSignature.get_shingles`).
    public mutating func shingleHashes(of text: String) -> [UInt64] {
        prepare(text)
        var hashes: [UInt64] = []
        forEachShingle { hashes.append($0) }
        return hashes
    }

    /// The signature (`bands × rows` values, band after band), or nil when the text has fewer words than a
    /// shingle: datatrove writes no signature for such a document, so it is never a near-duplicate candidate.
    public mutating func signature(of text: String) -> [UInt64]? {
        prepare(text)
        guard words.count >= parameters.shingleSize else { return nil }
        let count = parameters.hashCount
        let mask: UInt64 = parameters.hashBits == 32 ? 0xFFFF_FFFF : .max
        // Taken out of self while shingles are visited (a mutating walk), put back after: no copy.
        var values: [UInt64] = []
        swap(&values, &self.values)
        for k in 0..<count { values[k] = .max }
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                values.withUnsafeMutableBufferPointer { v in
                    forEachShingle { h in
                        // Vectorised by the compiler: multiply-add mod 2⁶⁴, reduce mod 2⁶¹ − 1, mask, minimum.
                        for k in 0..<count {
                            let x = a[k] &* h &+ b[k]
                            var r = (x & Self.mersennePrime) &+ (x >> 61)
                            if r >= Self.mersennePrime { r &-= Self.mersennePrime }
                            r &= mask
                            if r < v[k] { v[k] = r }
                        }
                    }
                }
            }
        }
        swap(&values, &self.values)
        return self.values
    }

    /// Simplifies `text`, splits it into words and lays out its UTF-8 bytes with an offset per scalar.
    private mutating func prepare(_ text: String) {
        simplifier.simplify(text)
        utf8.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        let scalars = simplifier.scalars
        words = tokenizer.words(scalars)
        utf8.reserveCapacity(scalars.count * 4)
        offsets.reserveCapacity(scalars.count + 1)
        scalars.withUnsafeBufferPointer { s in
            if s.allSatisfy({ $0.isASCII }) {
                // ASCII (most web text after simplification): one byte per scalar.
                utf8.append(contentsOf: s.lazy.map { UInt8(truncatingIfNeeded: $0.value) })
                offsets.append(contentsOf: 0...s.count)
            } else {
                for c in s {
                    offsets.append(utf8.count)
                    Self.appendUTF8(c.value, to: &utf8)
                }
                offsets.append(utf8.count)
            }
        }
    }

    /// Calls `body` with the hash of every shingle: `shingleSize` consecutive words joined by single spaces.
    private mutating func forEachShingle(_ body: (UInt64) -> Void) {
        let n = parameters.shingleSize
        guard words.count >= n else { return }
        let text = simplifier.scalars
        for first in 0...(words.count - n) {
            // Words that already stand one space apart in the text are hashed in place; others are joined first.
            var contiguous = true
            for j in first..<first + n - 1 {
                let gapStart = words[j].upperBound, next = words[j + 1].lowerBound
                if next != gapStart + 1 || text[gapStart] != " " { contiguous = false; break }
            }
            let start = offsets[words[first].lowerBound], end = offsets[words[first + n - 1].upperBound]
            if contiguous {
                body(utf8.withUnsafeBytes { XXH64.hash(UnsafeRawBufferPointer(rebasing: $0[start..<end])) })
            } else {
                shingle.removeAll(keepingCapacity: true)
                for j in first..<first + n {
                    if j > first { shingle.append(0x20) }
                    shingle.append(contentsOf: utf8[offsets[words[j].lowerBound]..<offsets[words[j].upperBound]])
                }
                body(shingle.withUnsafeBytes { XXH64.hash($0) })
            }
        }
    }

    static func appendUTF8(_ c: UInt32, to bytes: inout [UInt8]) {
        switch c {
        case ..<0x80:
            bytes.append(UInt8(c))
        case ..<0x800:
            bytes.append(UInt8(0xC0 | c >> 6))
            bytes.append(UInt8(0x80 | c & 0x3F))
        case ..<0x10000:
            bytes.append(UInt8(0xE0 | c >> 12))
            bytes.append(UInt8(0x80 | c >> 6 & 0x3F))
            bytes.append(UInt8(0x80 | c & 0x3F))
        default:
            bytes.append(UInt8(0xF0 | c >> 18))
            bytes.append(UInt8(0x80 | c >> 12 & 0x3F))
            bytes.append(UInt8(0x80 | c >> 6 & 0x3F))
            bytes.append(UInt8(0x80 | c & 0x3F))
        }
    }
}
