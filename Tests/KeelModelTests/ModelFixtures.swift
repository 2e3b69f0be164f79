import Foundation
import KeelCore
import KeelModel

/// Small models of both families used by the model tests.
enum ModelFixtures {
    static let gpt2 = ModelConfig(architecture: .gpt2, vocabSize: 23, layers: 2, heads: 4, width: 16,
                                  hiddenWidth: 40, maxLength: 8)
    /// Grouped-query attention: 4 query heads share 2 key/value heads.
    static let llama = ModelConfig(architecture: .llama, vocabSize: 23, layers: 2, heads: 4, kvHeads: 2, width: 16,
                                   hiddenWidth: 24, maxLength: 8, ropeTheta: 10_000)
    /// Llama with its output head tied to the token embedding (SmolLM2, Llama 3.2 1B).
    static let tiedLlama = ModelConfig(architecture: .llama, vocabSize: 23, layers: 2, heads: 4, kvHeads: 2, width: 16,
                                       hiddenWidth: 24, maxLength: 8, ropeTheta: 10_000, tiedEmbeddings: true)

    /// A model whose parameters are all O(1) random values (not the training initialisation), so that every
    /// gradient is far from zero and every code path is exercised.
    static func randomModel(_ config: ModelConfig, seed: UInt64) throws -> Transformer {
        let model = try Transformer(config: config, seed: seed)
        var random = RandomStream(seed: seed, key: 99)
        for entry in model.table.entries {
            let p = model.parameters.pointer + entry.offset
            let base: Float = entry.role == .norm ? 1 : 0
            for i in 0..<entry.count { p[i] = base + random.nextNormal() * 0.3 }
        }
        return model
    }

    /// [batch, length + 1] random tokens: inputs are the first `length` of each row, targets the last.
    static func tokens(batch: Int, length: Int, vocab: Int, seed: UInt64) -> (inputs: [Int32], targets: [Int32], all: [Int32]) {
        var random = RandomStream(seed: seed, key: 5)
        let all = (0..<(batch * (length + 1))).map { _ in Int32(random.nextInt(below: vocab)) }
        var inputs: [Int32] = [], targets: [Int32] = []
        for b in 0..<batch {
            let row = all[(b * (length + 1))..<((b + 1) * (length + 1))]
            inputs += row.dropLast()
            targets += row.dropFirst()
        }
        return (inputs, targets, all)
    }

    /// Runs forward and backward once and returns the mean loss (gradients are left in `model.gradients`).
    static func lossAndGradients(_ model: Transformer, _ inputs: [Int32], _ targets: [Int32], batch: Int, length: Int,
                                 documents: [Int32]? = nil) -> Float {
        model.gradients.zero()
        let loss = inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                documents.withOptionalPointer { d in
                    model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length, lossScale: 1,
                                  documents: d)
                }
            }
        }
        model.backward()
        return loss
    }

    /// The repository root, found from this file's path.
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

extension Optional where Wrapped == [Int32] {
    /// `body` with a pointer to the array's elements, or nil.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Int32>?) -> R) -> R {
        guard let self else { return body(nil) }
        return self.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
