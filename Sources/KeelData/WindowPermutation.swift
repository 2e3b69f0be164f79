import KeelCore

/// A pseudo-random permutation of `0..<count` that needs no memory: a four-round Feistel network over the
/// smallest even-bit-width domain that covers `count`, with cycle walking back into range. Keyed by
/// (seed, epoch), so every epoch visits every window once in its own order.
public struct WindowPermutation: Sendable {
    public let count: Int
    private let halfBits: Int
    private let keys: (UInt64, UInt64, UInt64, UInt64)

    public init(count: Int, seed: UInt64, epoch: Int) {
        precondition(count > 0)
        self.count = count
        var bits = 1
        while (1 << (2 * bits)) < count { bits += 1 }
        halfBits = bits
        var random = RandomStream(seed: seed, key: 0x5E9, UInt64(epoch))
        keys = (random.next(), random.next(), random.next(), random.next())
    }

    /// The element at `index` of the permutation.
    public func callAsFunction(_ index: Int) -> Int {
        precondition(index >= 0 && index < count)
        var x = UInt64(index)
        repeat { x = encrypt(x) } while x >= UInt64(count)
        return Int(x)
    }

    private func encrypt(_ value: UInt64) -> UInt64 {
        let mask = (UInt64(1) << UInt64(halfBits)) - 1
        var left = value >> UInt64(halfBits), right = value & mask
        for key in [keys.0, keys.1, keys.2, keys.3] {
            let mixed = WindowPermutation.round(right ^ key) & mask
            (left, right) = (right, left ^ mixed)
        }
        return (left << UInt64(halfBits)) | right
    }

    private static func round(_ value: UInt64) -> UInt64 {
        var z = value &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return z ^ (z >> 32)
    }
}
