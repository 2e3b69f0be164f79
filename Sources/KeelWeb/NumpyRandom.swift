/// NumPy's legacy `numpy.random.RandomState`: the 32-bit Mersenne Twister (MT19937) with NumPy's integer seeding, and
/// `randint(low, high, dtype=np.uint64)` drawn as NumPy's legacy bounded generator draws it.
///
/// MinHash deduplication is only comparable across tools when every tool applies the same permutations; datatrove
/// and datasketch both take theirs from `RandomState(seed).randint(...)`, so Keel reproduces those draws bit for bit
/// instead of shipping a table of parameters.
public struct NumpyRandomState: Sendable {
    private var state = [UInt32](repeating: 0, count: 624)
    private var position = 624

    /// `RandomState(seed)` for an integer seed in 0..<2³² (NumPy's `init_genrand`, not `init_by_array`).
    public init(seed: UInt32) {
        state[0] = seed
        for i in 1..<624 {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
    }

    /// The next 32-bit output (MT19937's tempered word).
    public mutating func nextUInt32() -> UInt32 {
        if position == 624 { twist() }
        var y = state[position]
        position += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// NumPy's `mt19937_next64`: the first 32-bit draw is the high half.
    public mutating func nextUInt64() -> UInt64 {
        let high = UInt64(nextUInt32())
        return high << 32 | UInt64(nextUInt32())
    }

    /// `randint(low, high, size=count, dtype=np.uint64)` (high exclusive), as the legacy `RandomState` draws it:
    /// a 64-bit draw masked to the smallest all-ones mask covering the range, redrawn while above it. Ranges that fit
    /// 32 bits use other NumPy code paths and are not needed here.
    public mutating func randintUInt64(low: UInt64, high: UInt64, count: Int) -> [UInt64] {
        precondition(high > low && high - low - 1 > UInt64(UInt32.max), "only ranges wider than 32 bits are implemented")
        let range = high - low - 1
        var mask = range
        for shift in [1, 2, 4, 8, 16, 32] as [UInt64] { mask |= mask >> shift }
        return (0..<count).map { _ in
            var value: UInt64
            repeat { value = nextUInt64() & mask } while value > range
            return low + value
        }
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_B0DF)
        }
        position = 0
    }
}
