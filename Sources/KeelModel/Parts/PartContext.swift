import KeelCore
import KeelKernels

/// What every part reads while it runs: the model's shape, its flat parameter and gradient buffers, the
/// batch's shape, the operand format of the matrix products and the profiler. Built per pass; a part holds
/// only offsets into the buffers, so the same part code runs on whichever buffers a model or stage owns.
struct PartContext {
    let config: ModelConfig
    /// This rank's share of the heads, MLP width and vocabulary (all of them without tensor parallelism).
    let shape: LocalShape
    /// The tensor-parallel group, when there is one.
    let tensor: TensorGroup?
    let parameters: UnsafeMutablePointer<Float>
    let gradients: UnsafeMutablePointer<Float>
    let batch: Int
    let length: Int
    /// Each token's document start in its sequence ([B, T]) when the batch packs documents: attention stays within
    /// a document and positions count from its start.
    let documents: UnsafePointer<Int32>?
    let precision: MatrixPrecision
    let profiler: Profiler?

    /// Tokens in the batch (B·T): the rows of every activation matrix inside the tensor-parallel regions.
    var rows: Int { batch * length }

    /// Whether the residual stream and the norms hold only this rank's rows (`TensorGroup.sequenceParallel`).
    var sequenceParallel: Bool { tensor?.sequenceParallel ?? false }

    /// Rows of the residual stream on this rank: all of `rows`, or under sequence parallelism its share.
    var streamRows: Int { sequenceParallel ? rows / tensor!.communicator.size : rows }

    /// Runs `body`, timed into `profiler` when one is set.
    @inline(__always)
    func profiled(_ kind: Profiler.Kind, _ direction: Profiler.Direction, flops: Double = 0, bytes: Double = 0,
                  _ body: () -> Void) {
        if let profiler { profiler.measure(kind, direction, flops: flops, bytes: bytes, body) } else { body() }
    }

    var attention: CausalAttention {
        CausalAttention(batch: batch, length: length, heads: shape.heads, kvHeads: shape.kvHeads,
                        headDim: shape.headDim, precision: precision)
    }

    /// Multiply-adds of causal attention for one layer: Q·Kᵀ and P·V over the lower triangle forward
    /// (2·B·H·T²·d FLOPs); backward recomputes P and runs four products (5·B·H·T²·d).
    func attentionFlops(_ direction: Profiler.Direction) -> Double {
        let base = Double(batch * shape.heads * length * length * shape.headDim)
        return direction == .forward ? 2 * base : 5 * base
    }

    /// Normalises the residual stream x ([streamRows, C]) into `out`, the input of the column-parallel projection
    /// that follows, for all `rows` ([N, C]): under sequence parallelism each rank normalises its rows and the
    /// group all-gathers them. `mean` and `rstd` keep the statistics of the stream's rows. `rounding`: out rounded
    /// to bf16 (where only projections that read it as such read it).
    func normalize(
        _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
        _ x: UnsafePointer<Float>, _ norm: NormParameters, rounding: Bool = false
    ) {
        let p = parameters, c = config.width, n = streamRows
        let own = sequenceParallel ? out + tensor!.streamRows(of: rows).lowerBound * c : out
        profiled(.norm, .forward, bytes: 8 * Double(n * c)) {
            if let bias = norm.bias {
                LayerNorm.forward(own, mean: mean, rstd: rstd, x, weight: p + norm.weight, bias: p + bias, rows: n,
                                  columns: c, epsilon: config.normEpsilon, roundingOutput: rounding)
            } else {
                RMSNorm.forward(own, rstd: rstd, x, weight: p + norm.weight, rows: n, columns: c, epsilon: config.normEpsilon,
                                roundingOutput: rounding)
            }
        }
        if sequenceParallel {
            profiled(.tensorCommunication, .forward) {
                tensor!.allGather(out, rows: rows, columns: c, label: "sequence-parallel norm output")
            }
        }
    }

    /// Where a result that the tensor group sums (a row-parallel projection's, the vocab-parallel embedding's)
    /// is written for all `rows`: `out` itself, or under sequence parallelism the arena's full-size scratch.
    func partialOutput(_ out: UnsafeMutablePointer<Float>, _ a: ActivationArena) -> UnsafeMutablePointer<Float> {
        sequenceParallel ? a.sequenceScratch!.pointer : out
    }

    /// Sums the partial results written at `partialOutput(out, a)` over the tensor group into `out`: in place
    /// (all-reduce), or under sequence parallelism this rank's rows of the sum (reduce-scatter).
    func sumPartialOutput(_ out: UnsafeMutablePointer<Float>, _ a: ActivationArena, label: String) {
        guard let tensor else { return }
        let c = config.width
        profiled(.tensorCommunication, .forward) {
            if tensor.sequenceParallel {
                tensor.reduceScatter(a.sequenceScratch!.pointer, into: out, rows: rows, columns: c, label: label)
            } else {
                tensor.sum(out, count: rows * c, label: label)
            }
        }
    }

    /// The gradient of the residual stream for all `rows`, as the tensor-parallel region's backward reads it:
    /// `dStream` itself, or under sequence parallelism every rank's rows of it all-gathered into the scratch.
    func gatheredGradient(_ dStream: UnsafeMutablePointer<Float>, _ a: ActivationArena, label: String)
        -> UnsafeMutablePointer<Float> {
        guard sequenceParallel else { return dStream }
        let full = a.sequenceScratch!.pointer, c = config.width
        full.advanced(by: tensor!.streamRows(of: rows).lowerBound * c).update(from: dStream, count: streamRows * c)
        profiled(.tensorCommunication, .backward) { tensor!.allGather(full, rows: rows, columns: c, label: label) }
        return full
    }

    /// Sums a column-parallel projection's partial input gradients (`dFull`, [N, C]) over the tensor group and
    /// returns the gradient of the stream's rows: `dFull` after an all-reduce in place, or under sequence
    /// parallelism this rank's rows of the sum, reduce-scattered into the arena's `dStreamScratch`.
    func summedInputGradient(_ dFull: UnsafeMutablePointer<Float>, _ a: ActivationArena, label: String)
        -> UnsafeMutablePointer<Float> {
        guard let tensor else { return dFull }
        guard tensor.sequenceParallel else {
            profiled(.tensorCommunication, .backward) { tensor.sum(dFull, count: rows * config.width, label: label) }
            return dFull
        }
        profiled(.tensorCommunication, .backward) {
            tensor.reduceScatter(dFull, into: a.dStreamScratch!.pointer, rows: rows, columns: config.width, label: label)
        }
        return a.dStreamScratch!.pointer
    }

    /// Adds the normalisation's input gradient into dx and its parameter gradients into `gradients`; dx, dOut
    /// and x are the stream's rows.
    func normalizeBackward(
        _ dx: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
        _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ norm: NormParameters
    ) {
        let p = parameters, g = gradients, c = config.width, n = streamRows
        profiled(.norm, .backward, bytes: 16 * Double(n * c)) {
            if let bias = norm.bias {
                LayerNorm.backward(dx: dx, dWeight: g + norm.weight, dBias: g + bias, dOut: dOut, x: x,
                                   weight: p + norm.weight, mean: mean, rstd: rstd, rows: n, columns: c)
            } else {
                RMSNorm.backward(dx: dx, dWeight: g + norm.weight, dOut: dOut, x: x, weight: p + norm.weight, rstd: rstd,
                                 rows: n, columns: c)
            }
        }
    }

    func project(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ layer: ProjectionParameters) {
        let p = parameters, n = rows
        profiled(.matmul, .forward, flops: 2 * Double(n * layer.shape.inFeatures * layer.shape.outFeatures)) {
            layer.shape.forward(out, input, inputIsRounded: inputIsRounded(layer), weight: p + layer.weight,
                                bias: layer.forwardBias.map { p + $0 }, rows: n, precision: precision)
        }
    }

    /// Overwrites dInput with the layer's input gradient; adds its parameter gradients into `gradients`, or,
    /// with `deferred`, copies dOut there for `projectWeightGradient` to add them later.
    func projectBackward(
        _ dInput: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ input: UnsafePointer<Float>,
        _ layer: ProjectionParameters, deferred: UnsafeMutablePointer<Float>? = nil
    ) {
        let p = parameters, g = gradients, n = rows, products = Double(n * layer.shape.inFeatures * layer.shape.outFeatures)
        guard let deferred else {
            profiled(.matmul, .backward, flops: 4 * products) {
                layer.shape.backward(dInput: dInput, accumulateInput: false, dWeight: g + layer.weight,
                                     dBias: layer.bias.map { g + $0 }, dOut: dOut, input: input,
                                     inputIsRounded: inputIsRounded(layer), weight: p + layer.weight, rows: n, precision: precision)
            }
            return
        }
        profiled(.matmul, .backward, flops: 2 * products) {
            layer.shape.inputGradient(dInput, accumulate: false, dOut: dOut, weight: p + layer.weight, rows: n,
                                      precision: precision)
            deferred.update(from: dOut, count: n * layer.shape.outFeatures)
        }
    }

    /// Adds the layer's parameter gradients into `gradients` from its saved `dOut` and forward `input`.
    func projectWeightGradient(_ dOut: UnsafePointer<Float>, _ input: UnsafePointer<Float>, _ layer: ProjectionParameters) {
        let g = gradients, n = rows
        profiled(.matmul, .backward, flops: 2 * Double(n * layer.shape.inFeatures * layer.shape.outFeatures)) {
            layer.shape.weightGradient(g + layer.weight, dBias: layer.bias.map { g + $0 }, dOut: dOut, input: input,
                                       inputIsRounded: inputIsRounded(layer), rows: n, precision: precision)
        }
    }

    /// Whether `layer`'s input holds bf16 values: written by a norm or activation function that rounds it.
    private func inputIsRounded(_ layer: ProjectionParameters) -> Bool {
        layer.readsRoundedOperand && precision.readsRoundedOperands
    }
}

/// A normalisation layer's parameters (bias only for LayerNorm), as offsets into the flat buffers.
struct NormParameters {
    let weight: Int
    let bias: Int?

    init(_ table: ParameterTable, _ part: ModelPart, weight: TensorSlot, bias: TensorSlot) {
        guard let offset = table.offset(weight, in: part) else { preconditionFailure("\(part) has no \(weight)") }
        self.weight = offset
        self.bias = table.offset(bias, in: part)
    }
}

/// A linear layer's parameters and shape.
struct ProjectionParameters {
    let weight: Int
    let bias: Int?
    /// The bias the forward pass adds: none on all tensor ranks but the first when the layer's partial outputs
    /// are summed over the tensor group afterwards (a row-parallel projection), so it is added once.
    let forwardBias: Int?
    let shape: LinearShape
    /// Whether the input is written by a norm or an activation function, which writes it rounded to bf16 where
    /// `MatrixPrecision.readsRoundedOperands` (attention's output is not: its backward reads it in fp32).
    let readsRoundedOperand: Bool

    init(_ table: ParameterTable, _ part: ModelPart, weight: TensorSlot, bias: TensorSlot, shape: LinearShape,
         summedAfterwards: Bool = false, readsRoundedOperand: Bool) {
        guard let offset = table.offset(weight, in: part) else { preconditionFailure("\(part) has no \(weight)") }
        self.weight = offset
        self.bias = table.offset(bias, in: part)
        let firstRank = table.entries.first { $0.part == part && $0.slot == weight }!.tensorRank.rank == 0
        forwardBias = summedAfterwards && !firstRank ? nil : self.bias
        self.shape = shape
        self.readsRoundedOperand = readsRoundedOperand
    }
}
