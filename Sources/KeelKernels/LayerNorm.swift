import KeelCore

/// LayerNorm over the last dimension (GPT-2): out = (x − mean) · rstd · weight + bias.
public enum LayerNorm {
    /// x, out: [N, C]; mean, rstd: [N] are saved for the backward pass. `roundingOutput`: out rounded to bf16
    /// (`MatrixPrecision.readsRoundedOperands`).
    public static func forward(
        _ out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, columns c: Int, epsilon: Float, roundingOutput: Bool = false
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = x + r * c, o = out + r * c
                var sum = Float16x(), i = 0
                while i + 16 <= c { sum += load16(row + i); i += 16 }
                var total = horizontalSum(sum)
                while i < c { total += row[i]; i += 1 }
                let m = total / Float(c)
                var sq = Float16x(); i = 0
                let mv = Float16x(repeating: m)
                while i + 16 <= c { let d = load16(row + i) - mv; sq = sq.addingProduct(d, d); i += 16 }
                var variance = horizontalSum(sq)
                while i < c { let d = row[i] - m; variance += d * d; i += 1 }
                let s = 1 / (variance / Float(c) + epsilon).squareRoot()
                let sv = Float16x(repeating: s)
                i = 0
                while i + 16 <= c {
                    store16((load16(row + i) - mv) * sv * load16(weight + i) + load16(bias + i), o + i)
                    i += 16
                }
                while i < c { o[i] = (row[i] - m) * s * weight[i] + bias[i]; i += 1 }
                if roundingOutput { roundInPlace(o, count: c) }
                mean[r] = m
                rstd[r] = s
            }
        }
    }

    /// dx += ∂L/∂x; dWeight += Σ dout·x̂; dBias += Σ dout.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
        dOut: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, columns c: Int
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = x + r * c, g = dOut + r * c, d = dx + r * c
                let m = mean[r], s = rstd[r]
                // mean(dnorm) and mean(dnorm · x̂), with dnorm = dout · weight
                var a = Float(0), b = Float(0)
                for i in 0..<c {
                    let xhat = (row[i] - m) * s
                    let dn = g[i] * weight[i]
                    a += dn
                    b += dn * xhat
                }
                a /= Float(c)
                b /= Float(c)
                for i in 0..<c {
                    let xhat = (row[i] - m) * s
                    d[i] += s * (g[i] * weight[i] - a - xhat * b)
                }
            }
        }
        sumRows(dOut, rows: rows, columns: c, into: dBias)
        // dWeight over columns so the row order of the sum is fixed.
        ThreadPool.shared.parallelFor(c) { columns in
            for r in 0..<rows {
                let row = x + r * c, g = dOut + r * c
                let m = mean[r], s = rstd[r]
                for i in columns { dWeight[i] += g[i] * (row[i] - m) * s }
            }
        }
    }
}
