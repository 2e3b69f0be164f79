import KeelCore

/// RMSNorm over the last dimension (Llama): out = x · rstd · weight, rstd = 1/√(mean(x²) + ε).
public enum RMSNorm {
    /// x, out: [N, C]; rstd: [N] is saved for the backward pass. `roundingOutput`: out rounded to bf16
    /// (`MatrixPrecision.readsRoundedOperands`).
    public static func forward(
        _ out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows: Int, columns c: Int, epsilon: Float, roundingOutput: Bool = false
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = x + r * c, o = out + r * c
                let s = 1 / (dot(row, row, c) / Float(c) + epsilon).squareRoot()
                for i in 0..<c { o[i] = row[i] * s * weight[i] }
                if roundingOutput { roundInPlace(o, count: c) }
                rstd[r] = s
            }
        }
    }

    /// dx += ∂L/∂x; dWeight += Σ dout·x·rstd.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, columns c: Int
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = x + r * c, g = dOut + r * c, d = dx + r * c
                let s = rstd[r]
                // dx = s·(dn − x̂·mean(dn·x̂)), dn = dout·weight, x̂ = x·s
                var b = Float(0)
                for i in 0..<c { b += g[i] * weight[i] * row[i] * s }
                b /= Float(c)
                for i in 0..<c { d[i] += s * (g[i] * weight[i] - row[i] * s * b) }
            }
        }
        ThreadPool.shared.parallelFor(c) { columns in
            for r in 0..<rows {
                let row = x + r * c, g = dOut + r * c, s = rstd[r]
                for i in columns { dWeight[i] += g[i] * row[i] * s }
            }
        }
    }
}
