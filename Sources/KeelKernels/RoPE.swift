import Foundation
import KeelCore

/// Rotary position embedding in Hugging Face's "rotate half" convention: within a head of size d,
/// element i is paired with element i + d/2 and rotated by the angle p · θ^(−2i/d) at position p.
public struct RotaryEmbedding: Sendable {
    public let headDim: Int
    public let maxLength: Int
    private let cosines: [Float]
    private let sines: [Float]

    /// Precomputes the angles for positions `0..<maxLength` (in Double, then rounded, like HF's float32 path
    /// up to rounding).
    public init(headDim: Int, maxLength: Int, theta: Double) {
        precondition(headDim % 2 == 0, "rotary head dimension must be even")
        self.headDim = headDim
        self.maxLength = maxLength
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxLength * half), s = c
        for p in 0..<maxLength {
            for i in 0..<half {
                let angle = Double(p) * pow(theta, -2 * Double(i) / Double(headDim))
                c[p * half + i] = Float(cos(angle))
                s[p * half + i] = Float(sin(angle))
            }
        }
        cosines = c
        sines = s
    }

    /// Rotates `heads` consecutive heads at the start of each row of x: [B, T, stride], in place.
    /// `inverse` rotates backwards, which is the backward pass (the rotation is orthogonal). With `documents` (each
    /// token's document start in its sequence), positions count from each document's start, as Hugging Face's
    /// `position_ids` of packed sequences do.
    public func apply(
        _ x: UnsafeMutablePointer<Float>, batch: Int, length: Int, stride: Int, heads: Int, inverse: Bool = false,
        documents: UnsafePointer<Int32>? = nil
    ) {
        ThreadPool.shared.parallelFor(batch * length) { rows in
            for row in rows {
                rotate(x + row * stride, position: Embedding.position(row, length, documents), heads: heads, inverse: inverse)
            }
        }
    }

    /// Rotates `heads` consecutive heads at `x` as the token at `position` (0-based), in place.
    public func rotate(_ x: UnsafeMutablePointer<Float>, position: Int, heads: Int, inverse: Bool = false) {
        precondition(position < maxLength, "position \(position) beyond the rotary table (\(maxLength))")
        let half = headDim / 2, d = headDim
        let sign: Float = inverse ? -1 : 1
        cosines.withUnsafeBufferPointer { cosPointer in
            sines.withUnsafeBufferPointer { sinPointer in
                let c = cosPointer.baseAddress! + position * half, s = sinPointer.baseAddress! + position * half
                for h in 0..<heads {
                    let v = x + h * d
                    for i in 0..<half {
                        let a = v[i], b = v[i + half], sn = sign * s[i]
                        v[i] = a * c[i] - b * sn
                        v[i + half] = b * c[i] + a * sn
                    }
                }
            }
        }
    }
}
