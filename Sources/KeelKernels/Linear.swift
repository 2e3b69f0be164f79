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

    /// out[N, O] = input[N, I] · W (+ bias). A `packed` weight (see `pack`) is used instead of `weight`, in bf16.
    /// `inputIsRounded` where the input holds bf16 values already (`RoundedOperands`).
    public func forward(
        _ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, inputIsRounded: Bool = false,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, rows: Int, precision: MatrixPrecision = .float32,
        packed: PackedLinearWeight? = nil
    ) {
        let o = outFeatures, i = inFeatures
        if let bias {
            ThreadPool.shared.parallelFor(rows) { range in
                for r in range { (out + r * o).update(from: bias, count: o) }
            }
        }
        if let packed {
            gemm(.none, m: rows, input, lda: i, leftIsRounded: inputIsRounded, packed: packed.forward,
                 beta: bias == nil ? 0 : 1, out, ldc: o)
        } else {
            let operand = forwardOperand
            gemm(.none, operand.transpose, m: rows, n: o, k: i, input, lda: i, weight, ldb: operand.ldb,
                 beta: bias == nil ? 0 : 1, out, ldc: o, precision: precision, rounded: inputIsRounded ? .left : [])
        }
    }

    /// dInput (= or +=), dWeight += and dBias += from dOut[N, O]; a `packed` weight serves dInput, in bf16.
    /// `inputIsRounded` where the forward input holds bf16 values already (`RoundedOperands`).
    public func backward(
        dInput: UnsafeMutablePointer<Float>, accumulateInput: Bool, dWeight: UnsafeMutablePointer<Float>,
        dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, inputIsRounded: Bool = false,
        weight: UnsafePointer<Float>, rows: Int, precision: MatrixPrecision = .float32, packed: PackedLinearWeight? = nil
    ) {
        guard precision.readsRoundedOperands else {
            inputGradient(dInput, accumulate: accumulateInput, dOut: dOut, weight: weight, rows: rows, precision: precision,
                          packed: packed)
            weightGradient(dWeight, dBias: dBias, dOut: dOut, input: input, inputIsRounded: inputIsRounded, rows: rows,
                           precision: precision)
            return
        }
        // dOut is an operand of both products: rounded once for both rather than once by each. The bias gradient
        // sums the fp32 dOut.
        withRoundedCopy(dOut, rows: rows, columns: outFeatures) { rounded in
            inputGradient(dInput, accumulate: accumulateInput, dOut: rounded, dOutIsRounded: true, weight: weight, rows: rows,
                          precision: precision, packed: packed)
            weightGradient(dWeight, dBias: nil, dOut: rounded, dOutIsRounded: true, input: input, inputIsRounded: inputIsRounded,
                           rows: rows, precision: precision)
        }
        if let dBias {
            sumRows(dOut, rows: rows, columns: outFeatures, into: dBias)
        }
    }

    /// dWeight += and dBias += from dOut[N, O] and the forward input[N, I] (the half of `backward` that no other
    /// layer waits for, which zero-bubble pipeline schedules run later). `dOutIsRounded` and `inputIsRounded` where
    /// dOut or the input holds bf16 values already (`RoundedOperands`); dBias is then nil, since the bias gradient sums
    /// the fp32 dOut.
    public func weightGradient(
        _ dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
        dOutIsRounded: Bool = false, input: UnsafePointer<Float>, inputIsRounded: Bool = false, rows: Int,
        precision: MatrixPrecision = .float32
    ) {
        precondition(dBias == nil || !dOutIsRounded, "a bias gradient summed from a rounded dOut")
        let o = outFeatures, i = inFeatures
        switch layout {
        case .inputMajor:  // dW[I, O] += input[N, I]ᵀ · dOut[N, O]
            gemm(.transposed, .none, m: i, n: o, k: rows, input, lda: i, dOut, ldb: o, beta: 1, dWeight, ldc: o,
                 precision: precision, rounded: RoundedOperands(left: inputIsRounded, right: dOutIsRounded))
        case .outputMajor:  // dW[O, I] += dOut[N, O]ᵀ · input[N, I]
            gemm(.transposed, .none, m: o, n: i, k: rows, dOut, lda: o, input, ldb: i, beta: 1, dWeight, ldc: i,
                 precision: precision, rounded: RoundedOperands(left: dOutIsRounded, right: inputIsRounded))
        }
        if let dBias {
            sumRows(dOut, rows: rows, columns: o, into: dBias)
        }
    }

    /// dInput[N, I] (= or +=) dOut[N, O] · Wᵀ; a `packed` weight is used instead of `weight`, in bf16.
    /// `dOutIsRounded` where dOut holds bf16 values already (`RoundedOperands`).
    public func inputGradient(
        _ dInput: UnsafeMutablePointer<Float>, accumulate: Bool, dOut: UnsafePointer<Float>, dOutIsRounded: Bool = false,
        weight: UnsafePointer<Float>, rows: Int, precision: MatrixPrecision = .float32, packed: PackedLinearWeight? = nil
    ) {
        let o = outFeatures, i = inFeatures
        if let packed {
            gemm(.none, m: rows, dOut, lda: o, leftIsRounded: dOutIsRounded, packed: packed.inputGradient,
                 beta: accumulate ? 1 : 0, dInput, ldc: i)
        } else {
            let operand = inputGradientOperand
            gemm(.none, operand.transpose, m: rows, n: i, k: o, dOut, lda: o, weight, ldb: operand.ldb,
                 beta: accumulate ? 1 : 0, dInput, ldc: i, precision: precision, rounded: dOutIsRounded ? .left : [])
        }
    }

    /// Packs `weight` in bf16 for the forward product and the input-gradient product (on the `blas` engine, which
    /// keeps the weight as it is stored, rounds it once for both).
    public func pack(_ weight: UnsafePointer<Float>, into packed: PackedLinearWeight) {
        let forward = forwardOperand, inputGradient = inputGradientOperand
        packed.forward.pack(forward.transpose, k: inFeatures, n: outFeatures, weight, ldb: forward.ldb)
        if !packed.inputGradient.shareRounded(from: packed.forward, inputGradient.transpose, k: outFeatures, n: inFeatures) {
            packed.inputGradient.pack(inputGradient.transpose, k: outFeatures, n: inFeatures, weight, ldb: inputGradient.ldb)
        }
    }

    /// How the forward product reads W as its right operand [I, O].
    private var forwardOperand: (transpose: Transpose, ldb: Int) {
        layout == .inputMajor ? (.none, outFeatures) : (.transposed, inFeatures)
    }

    /// How dInput = dOut · Wᵀ reads W as its right operand [O, I].
    private var inputGradientOperand: (transpose: Transpose, ldb: Int) {
        layout == .inputMajor ? (.transposed, outFeatures) : (.none, inFeatures)
    }
}

/// A linear layer's weight in bf16, packed for the two products that read it, so that a weight used
/// many times between optimizer steps is rounded and packed once.
public final class PackedLinearWeight: @unchecked Sendable {
    /// W as op(B)[I, O] of the forward product.
    public let forward = PackedOperand()
    /// W as op(B)[O, I] of the input-gradient product.
    public let inputGradient = PackedOperand()

    public init() {}
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
