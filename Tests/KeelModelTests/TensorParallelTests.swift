import KeelComm
import KeelCore
import KeelModel
import XCTest

/// A model split over a tensor-parallel group (ranks as threads) is the whole model: every rank computes the
/// whole model's loss, and the gradients of every rank's pieces, put back together, are the whole model's —
/// for GPT-2 (tied, vocab-parallel embedding and head) and Llama (grouped-query attention; at tp = 4 its two
/// key/value heads are each shared by two ranks, whose partial gradients of them are summed), with the backward
/// pass whole or split into its input and weight halves, and with sequence parallelism (the stream's rows split
/// over the ranks; the norms' partial gradients summed over the group, as training does after a step).
final class TensorParallelTests: XCTestCase {
    /// Width 32 over 4 heads, d_ff divisible by 4; GPT-2's vocabulary of 37 is not (its ranks hold 18 and 19 rows, or
    /// 9, 9, 9 and 10), Llama's 36 is.
    private let configs = [
        ModelConfig(architecture: .gpt2, vocabSize: 37, layers: 2, heads: 4, width: 32, hiddenWidth: 48, maxLength: 8),
        ModelConfig(architecture: .llama, vocabSize: 36, layers: 2, heads: 4, kvHeads: 2, width: 32, hiddenWidth: 40,
                    maxLength: 8),
    ]

    func testTensorParallelModelIsTheWholeModel() throws {
        let batch = 2, length = 8
        for config in configs {
            let tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 4)
            let whole = try Transformer(config: config, seed: 11)
            let loss = Self.run(whole, tokens, batch: batch, length: length, split: false)
            let expected = whole.gradients.toArray()
            for size in [2, 4] {
                for (split, sequenceParallel) in [(false, false), (true, false), (false, true), (true, true)] {
                    let ranks = try ThreadCommunicator.run(size: size) { group -> (loss: Float, model: Transformer) in
                        let model = try Transformer(config: config, seed: 11, tensor: group, sequenceParallel: sequenceParallel)
                        let loss = TensorParallelTests.run(model, tokens, batch: batch, length: length, split: split)
                        for (spans, partialGroup) in model.partialGradients {
                            for span in spans {
                                try partialGroup.allReduce(UnsafeMutableBufferPointer(start: model.gradients.pointer + span.lowerBound,
                                                                                      count: span.count))
                            }
                        }
                        return (loss, model)
                    }
                    let name = "\(config.architecture) tp=\(size)\(split ? " split backward" : "")\(sequenceParallel ? " sequence-parallel" : "")"
                    for rank in ranks { XCTAssertEqual(rank.loss, loss, accuracy: 1e-5 * loss, name) }
                    for entry in whole.table.entries {
                        var rebuilt = [Float](repeating: .nan, count: entry.count)
                        for rank in ranks {
                            let piece = rank.model.table[entry.name]!
                            let gradient = rank.model.gradients.pointer + piece.offset
                            rebuilt.withUnsafeMutableBufferPointer { whole in
                                piece.split.copy(whole.baseAddress!, shape: entry.shape, gradient, rank: piece.tensorRank,
                                                 gathering: true)
                            }
                            if case .replicated = piece.split {
                                // Every rank holds the same gradient of a replicated tensor.
                                XCTAssertEqual(Array(UnsafeBufferPointer(start: gradient, count: piece.count)),
                                               Array(UnsafeBufferPointer(start: ranks[0].model.gradients.pointer + ranks[0].model.table[entry.name]!.offset,
                                                                         count: piece.count)), "\(name): \(entry.name)")
                            }
                        }
                        let reference = expected[entry.range]
                        let scale = reference.map(abs).max()!
                        let worst = zip(rebuilt, reference).map { abs($0 - $1) }.max()!
                        XCTAssertLessThanOrEqual(worst, 1e-5 * scale + 1e-7, "\(name): gradient of \(entry.name)")
                    }
                }
            }
        }
    }

    private static func run(_ model: Transformer, _ tokens: (inputs: [Int32], targets: [Int32], all: [Int32]), batch: Int,
                     length: Int, split: Bool) -> Float {
        model.gradients.zero()
        let loss = tokens.inputs.withUnsafeBufferPointer { i in
            tokens.targets.withUnsafeBufferPointer { t in
                model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length, lossScale: 1)
            }
        }
        if split {
            model.backwardInput()
            model.backwardWeight()
        } else {
            model.backward()
        }
        return loss
    }
}
