import KeelCore
import KeelKernels

/// Token ids → the residual stream: a row of the token table per id, plus GPT-2's learned position row.
///
/// Under tensor parallelism the token table is vocab-parallel: each rank looks up the ids it holds (zeros for
/// the others), the first rank adds the positions, and the sum over the group is the whole embedding (under
/// sequence parallelism each rank keeps its rows of the sum).
struct InputEmbedding {
    /// The token table (GPT-2's output head reads it too).
    let tokenTable: Int
    private let positionTable: Int?
    let span: Range<Int>

    init(_ table: ParameterTable) {
        guard let tokens = table.offset(.tokenTable, in: .embedding) else { preconditionFailure("no token table") }
        tokenTable = tokens
        positionTable = table.offset(.positionTable, in: .embedding)
        span = table.range(of: .embedding)
    }

    /// out (the residual stream, [streamRows, C]) ← embeddings of `tokens` [B, T].
    func forward(_ out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, _ a: ActivationArena,
                 _ context: PartContext) {
        let p = context.parameters, n = context.rows, c = context.config.width, tensor = context.tensor
        let positions = tensor == nil || tensor!.rank.rank == 0 ? positionTable.map { p + $0 } : nil
        context.profiled(.embedding, .forward, bytes: 8 * Double(n * c)) {
            Embedding.forward(context.partialOutput(out, a), tokens: tokens, table: p + tokenTable, positions: positions,
                              rows: n, length: context.length, columns: c,
                              vocabulary: tensor.map { _ in context.shape.vocabulary }, documents: context.documents)
        }
        context.sumPartialOutput(out, a, label: "embedding")
    }

    /// Adds ∂loss/∂table (scattered from dOut, the stream's gradient) into the gradient buffer.
    func backward(_ dStream: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, _ a: ActivationArena,
                  _ context: PartContext) {
        let g = context.gradients, n = context.rows, c = context.config.width
        let dOut = context.gatheredGradient(dStream, a, label: "embedding output gradient")
        context.profiled(.embedding, .backward, bytes: 12 * Double(n * c)) {
            Embedding.backward(dTable: g + tokenTable, dPositions: positionTable.map { g + $0 }, dOut: dOut, tokens: tokens,
                               rows: n, length: context.length, columns: c,
                               vocabulary: context.tensor.map { _ in context.shape.vocabulary }, documents: context.documents)
        }
    }
}
