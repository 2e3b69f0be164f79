import KeelCore

/// GELU with the tanh approximation (GPT-2's `gelu_new`).
public enum GELU {
    static let k0: Float = 0.797_884_560_802_865_4  // √(2/π)
    static let k1: Float = 0.044_715

    /// out[i] = 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), for `count` elements; `roundingOutput`: rounded to bf16
    /// (`MatrixPrecision.readsRoundedOperands`).
    public static func forward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int,
                               roundingOutput: Bool = false) {
        parallelBlocks(count) { start, end in
            var i = start
            while i + 16 <= end {
                let v = load16(x + i)
                let t = tanh16(k0 * (v + k1 * v * v * v))
                store16(0.5 * v * (1 + t), out + i)
                i += 16
            }
            while i < end {
                let v = x[i]
                let t = tanh16(Float16x(repeating: k0 * (v + k1 * v * v * v)))[0]
                out[i] = 0.5 * v * (1 + t)
                i += 1
            }
            if roundingOutput { roundInPlace(out + start, count: end - start) }
        }
    }

    /// dx[i] = dout[i] · gelu'(x[i]) (overwrites dx).
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int
    ) {
        parallelBlocks(count) { start, end in
            var i = start
            while i + 16 <= end {
                store16(derivative(load16(x + i)) * load16(dOut + i), dx + i)
                i += 16
            }
            while i < end {
                dx[i] = derivative(Float16x(repeating: x[i]))[0] * dOut[i]
                i += 1
            }
        }
    }

    @inline(__always)
    static func derivative(_ v: Float16x) -> Float16x {
        let t = tanh16(k0 * (v + k1 * v * v * v))
        let sech2 = 1 - t * t
        return 0.5 * (1 + t) + 0.5 * v * sech2 * k0 * (1 + 3 * k1 * v * v)
    }
}

/// SwiGLU (Llama's MLP): out = silu(gate) · up, where each input row holds [gate (F) | up (F)].
public enum SwiGLU {
    /// gateUp: [N, 2F]; out: [N, F]; `roundingOutput`: rounded to bf16 (`MatrixPrecision.readsRoundedOperands`).
    public static func forward(
        _ out: UnsafeMutablePointer<Float>, _ gateUp: UnsafePointer<Float>, rows: Int, width f: Int, roundingOutput: Bool = false
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let g = gateUp + r * 2 * f, u = g + f, o = out + r * f
                var i = 0
                while i + 16 <= f {
                    let gv = load16(g + i)
                    store16(gv / (1 + exp16(-gv)) * load16(u + i), o + i)
                    i += 16
                }
                while i < f {
                    o[i] = g[i] / (1 + expScalar(-g[i])) * u[i]
                    i += 1
                }
                if roundingOutput { roundInPlace(o, count: f) }
            }
        }
    }

    /// dGateUp: [N, 2F] (overwritten) from dOut: [N, F].
    public static func backward(
        dGateUp: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, gateUp: UnsafePointer<Float>,
        rows: Int, width f: Int
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let g = gateUp + r * 2 * f, u = g + f, d = dOut + r * f
                let dg = dGateUp + r * 2 * f, du = dg + f
                for i in 0..<f {
                    let sig = 1 / (1 + expScalar(-g[i]))
                    let silu = g[i] * sig
                    du[i] = d[i] * silu
                    dg[i] = d[i] * u[i] * sig * (1 + g[i] * (1 - sig))
                }
            }
        }
    }
}

/// Runs `body(start, end)` on each block of 4,096 elements of `0..<count` (16-aligned, and small enough to stay in
/// the core's cache while a kernel goes over it again), the blocks shared among the pool's threads.
func parallelBlocks(_ count: Int, _ body: (Int, Int) -> Void) {
    let block = 4096
    ThreadPool.shared.parallelFor((count + block - 1) / block) { blocks in
        for index in blocks { body(index * block, min(count, (index + 1) * block)) }
    }
}
