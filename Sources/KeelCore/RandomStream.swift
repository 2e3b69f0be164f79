import Foundation

/// A counter-based random stream: the numbers depend only on the seed and the key, never on what other
/// streams have drawn, so a run resumed mid-way or laid out differently draws the same numbers.
///
/// The generator is SplitMix64 started from a hash of (seed, key…).
public struct RandomStream: Sendable {
    private var state: UInt64

    /// A stream identified by a seed and any number of integer keys (step, micro-batch, layer, …).
    public init(seed: UInt64, key: UInt64...) {
        var s = RandomStream.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        for k in key {
            s = RandomStream.mix(s ^ RandomStream.mix(k &+ 0xD1B5_4A32_D192_ED03))
        }
        state = s
    }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return RandomStream.mix(state)
    }

    /// A uniform integer in `0..<bound`.
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// A uniform float in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// A standard normal sample (Box–Muller, computed in Double for accuracy).
    public mutating func nextNormal() -> Float {
        let u1 = (Double(next() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
