/// XXH64, the 64-bit xxHash: fast enough to checksum every checkpoint and shard byte as it is written and
/// read, and a standard any tool (`xxhsum -H64`, Python's `xxhash`) can recompute.
public struct XXH64: Sendable {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    /// The hash of `bytes` with `seed`.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let n = bytes.count
        guard let base = bytes.baseAddress else { return finish(seed &+ p5, length: 0, tail: bytes[...]) }
        var h: UInt64
        var offset = 0
        if n >= 32 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            while offset + 32 <= n {
                v1 = round(v1, base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                v2 = round(v2, base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
                v3 = round(v3, base.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self))
                v4 = round(v4, base.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self))
                offset += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            for v in [v1, v2, v3, v4] {
                h = (h ^ round(0, v)) &* p1 &+ p4
            }
        } else {
            h = seed &+ p5
        }
        return finish(h, length: n, tail: bytes[offset...])
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
