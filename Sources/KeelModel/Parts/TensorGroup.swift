import KeelComm
import KeelCore
import KeelKernels

/// The sizes one rank's parts compute with: the whole model's, or under tensor parallelism its share of the
/// heads, the MLP width and the vocabulary (the residual stream keeps its full width on every rank).
struct LocalShape {
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    /// The MLP's hidden width on this rank.
    let hiddenWidth: Int
    /// The vocabulary ids whose embedding rows and logits this rank holds.
    let vocabulary: Range<Int>

    init(_ config: ModelConfig, tensor: TensorRank) {
        let t = tensor.size
        heads = config.heads / t
        // With more ranks than kv heads, each rank holds the one its query heads read.
        kvHeads = max(config.kvHeads / t, 1)
        headDim = config.headDim
        hiddenWidth = config.hiddenWidth / t
        vocabulary = TensorSplit.run(of: config.vocabSize, piece: tensor)
    }

    /// Columns of the fused q | k | v projection's output.
    var qkvWidth: Int { (heads + 2 * kvHeads) * headDim }
}

/// The tensor-parallel group a model's parts sum their partial results over (Megatron's f and g operators:
/// after a row-parallel projection in the forward pass, after a column-parallel one in the backward pass).
///
/// The parts' passes cannot throw, so a collective that fails ends the job here
/// (`Communicator.stoppingJobOnFailure`).
struct TensorGroup {
    let communicator: any Communicator
    /// Sequence parallelism (Korthikanti et al., 2022): outside the tensor-parallel regions — the norms and the
    /// residual stream — each rank holds only its share of the B·T token rows (`streamRows`), so the sums after
    /// row-parallel projections become reduce-scatters and the inputs of column-parallel ones all-gathers.
    let sequenceParallel: Bool

    var rank: TensorRank { TensorRank(rank: communicator.rank, size: communicator.size) }

    /// Replaces `count` values at `buffer` by their sum over the group.
    func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) {
        run { try communicator.allReduce(UnsafeMutableBufferPointer(start: buffer, count: count), .sum, label: label) }
    }

    /// The rows of a [rows, columns] matrix that each rank holds under sequence parallelism: the r-th of `size`
    /// contiguous, equal runs.
    func streamRows(of rows: Int) -> Range<Int> {
        let share = rows / communicator.size
        return (communicator.rank * share)..<((communicator.rank + 1) * share)
    }

    /// `full` is [rows, columns] with this rank's `streamRows` filled in; afterwards every rank's are, on all ranks.
    func allGather(_ full: UnsafeMutablePointer<Float>, rows: Int, columns: Int, label: String) {
        let counts = Array(repeating: rows / communicator.size * columns, count: communicator.size)
        run { try communicator.allGather(full, counts: counts, label: label) }
    }

    /// This rank's `streamRows` of the sum over the group of `full` ([rows, columns]), into `local`.
    func reduceScatter(_ full: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
                       label: String) {
        let counts = Array(repeating: rows / communicator.size * columns, count: communicator.size)
        run { try communicator.reduceScatter(full, into: local, counts: counts, .sum, label: label) }
    }

    /// The cross-rank reductions of the vocab-parallel loss.
    var lossReductions: VocabParallelCrossEntropy.Reductions {
        let communicator = self.communicator
        return VocabParallelCrossEntropy.Reductions(
            maximum: { try communicator.allReduce($0, .max, label: "loss: row maxima over the vocabulary") },
            sum: { try communicator.allReduce($0, .sum, label: "loss: sums over the vocabulary") })
    }

    /// Runs `body`; on failure reports it and stops the job.
    func run(_ body: () throws -> Void) {
        communicator.stoppingJobOnFailure(of: "tensor group", body)
    }
}
