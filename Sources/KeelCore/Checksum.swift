/// XXH64, the 64-bit xxHash: fast enough to checksum every checkpoint and shard byte as it is written and
/// read, and a standard any tool (`xxhsum -H64`, Python's `xxhash`) can recompute.
public struct XXH64: Sendable {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1: UInt64, v2: UInt64, v3: UInt64, v4: UInt64
    private let seed: UInt64
    private var length = 0
    /// Bytes given to `update` that do not yet fill a 32-byte stripe.
    private var pending: [UInt8] = []

    /// A hash to feed piece by piece (`update`), e.g. a file read in chunks, equal to `hash` of the whole.
    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    /// Adds `bytes` to the hashed input.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length += bytes.count
        var offset = 0
        if !pending.isEmpty {
            offset = min(32 - pending.count, bytes.count)
            pending.append(contentsOf: bytes[0..<offset])
            guard pending.count == 32 else { return }
            pending.withUnsafeBytes { consume(stripe: $0.baseAddress!) }
            pending.removeAll(keepingCapacity: true)
        }
        guard let base = bytes.baseAddress else { return }
        while offset + 32 <= bytes.count {
            consume(stripe: base + offset)
            offset += 32
        }
        pending.append(contentsOf: bytes[offset...])
    }

    /// The hash of everything given to `update`.
    public func digest() -> UInt64 {
        pending.withUnsafeBytes { digest(tail: $0[...]) }
    }

    /// The hash, given the bytes after the last whole stripe.
    private func digest(tail: Slice<UnsafeRawBufferPointer>) -> UInt64 {
        var h: UInt64
        if length >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = (h ^ Self.round(0, v1)) &* Self.p1 &+ Self.p4
            h = (h ^ Self.round(0, v2)) &* Self.p1 &+ Self.p4
            h = (h ^ Self.round(0, v3)) &* Self.p1 &+ Self.p4
            h = (h ^ Self.round(0, v4)) &* Self.p1 &+ Self.p4
        } else {
            h = seed &+ Self.p5
        }
        return Self.finish(h, length: length, tail: tail)
    }

    @inline(__always) private mutating func consume(stripe: UnsafeRawPointer) {
        v1 = Self.round(v1, stripe.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        v2 = Self.round(v2, stripe.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        v3 = Self.round(v3, stripe.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        v4 = Self.round(v4, stripe.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    /// The hash of `bytes` with `seed`, in one pass and without allocating (dedup hashes shingles by the million).
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var state = XXH64(seed: seed)
        var offset = 0
        if let base = bytes.baseAddress {
            while offset + 32 <= bytes.count {
                state.consume(stripe: base + offset)
                offset += 32
            }
        }
        state.length = bytes.count
        return state.digest(tail: bytes[offset...])
    }

    /// The hash of a byte array.
    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    private static func finish(_ start: UInt64, length: Int, tail: Slice<UnsafeRawBufferPointer>) -> UInt64 {
        var h = start &+ UInt64(length)
        var i = tail.startIndex
        let end = tail.endIndex
        let base = tail.base
        while i + 8 <= end {
            h ^= round(0, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            h = rotl(h, 27) &* p1 &+ p4
            i += 8
        }
        if i + 4 <= end {
            h ^= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) &* p1
            h = rotl(h, 23) &* p2 &+ p3
            i += 4
        }
        while i < end {
            h ^= UInt64(base[i]) &* p5
            h = rotl(h, 11) &* p1
            i += 1
        }
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }

    @inline(__always) private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 {
        (x << r) | (x >> (64 - r))
    }
}
