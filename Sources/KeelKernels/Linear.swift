import KeelCore

/// How a linear layer's weight matrix is stored, which follows the Hugging Face class it exports to.
public enum WeightLayout: Sendable {
    /// `[in, out]`: GPT-2's `Conv1D`, y = x · W + b.
    case inputMajor
    /// `[out, in]`: `nn.Linear` (Llama), y = x · Wᵀ + b.
    case outputMajor
}

/// A linear map's sizes and weight layout; forward and backward of every projection go through it.
public struct LinearShape: Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let layout: WeightLayout

    public init(inFeatures: Int, outFeatures: Int, layout: WeightLayout) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.layout = layout
    }

    /// out[N, O] = input[N, I] · W (+ bias).
    public func forward(
        _ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, rows: Int
    ) {
        let o = outFeatures, i = inFeatures
        if let bias {
            ThreadPool.shared.parallelFor(rows) { range in
                for r in range { (out + r * o).update(from: bias, count: o) }
            }
        }
        gemm(.none, layout == .inputMajor ? .none : .transposed, m: rows, n: o, k: i,
             input, lda: i, weight, ldb: layout == .inputMajor ? o : i,
             beta: bias == nil ? 0 : 1, out, ldc: o)
    }

    /// dInput (= or +=), dWeight += and dBias += from dOut[N, O].
    public func backward(
        dInput: UnsafeMutablePointer<Float>, accumulateInput: Bool, dWeight: UnsafeMutablePointer<Float>,
        dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows: Int
    ) {
        let o = outFeatures, i = inFeatures
        switch layout {
        case .inputMajor:
            // dInput[N, I] = dOut[N, O] · W[I, O]ᵀ;  dW[I, O] += input[N, I]ᵀ · dOut[N, O]
            gemm(.none, .transposed, m: rows, n: i, k: o, dOut, lda: o, weight, ldb: o,
                 beta: accumulateInput ? 1 : 0, dInput, ldc: i)
            gemm(.transposed, .none, m: i, n: o, k: rows, input, lda: i, dOut, ldb: o, beta: 1, dWeight, ldc: o)
        case .outputMajor:
            // dInput[N, I] = dOut[N, O] · W[O, I];  dW[O, I] += dOut[N, O]ᵀ · input[N, I]
            gemm(.none, .none, m: rows, n: i, k: o, dOut, lda: o, weight, ldb: i,
                 beta: accumulateInput ? 1 : 0, dInput, ldc: i)
            gemm(.transposed, .none, m: o, n: i, k: rows, dOut, lda: o, input, ldb: i, beta: 1, dWeight, ldc: i)
        }
        if let dBias {
            sumRows(dOut, rows: rows, columns: o, into: dBias)
        }
    }
}

/// into[c] += Σ_r x[r, c], parallel over columns so the sum order (and result) is independent of threads.
public func sumRows(_ x: UnsafePointer<Float>, rows: Int, columns: Int, into: UnsafeMutablePointer<Float>) {
    ThreadPool.shared.parallelFor((columns + 15) / 16) { blocks in
        let start = blocks.lowerBound * 16, end = min(columns, blocks.upperBound * 16)
        for r in 0..<rows {
            add(x + r * columns + start, into: into + start, end - start)
        }
    }
}
