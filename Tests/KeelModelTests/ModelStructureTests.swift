import Foundation
import KeelCheckpoint
import KeelCore
import KeelModel
import XCTest

final class ModelStructureTests: XCTestCase {
    /// GPT-2 small has 124,439,808 parameters (Hugging Face's count for `gpt2`, tied head, vocab 50257).
    func testGPT2SmallParameterCount() throws {
        let shape = ModelConfig.presets["gpt2-124m"]!
        let config = ModelConfig(architecture: .gpt2, vocabSize: 50257, layers: shape.layers, heads: shape.heads,
                                 width: shape.width, maxLength: shape.maxLength)
        XCTAssertEqual(ParameterTable(config: config).count, 124_439_808)
    }

    func testWeightDecayGroups() {
        let table = ParameterTable(config: ModelFixtures.gpt2)
        let decayed = Set(table.decayGroups(decayEmbeddings: false).filter(\.decays).map(\.range.lowerBound))
        for entry in table.entries {
            let expected = entry.name.hasSuffix(".weight") && !entry.name.contains(".ln_") && !entry.name.contains("wte")
                && !entry.name.contains("wpe")
            XCTAssertEqual(decayed.contains(entry.offset), expected, entry.name)
        }
        let withEmbeddings = table.decayGroups(decayEmbeddings: true)
        XCTAssertTrue(withEmbeddings[table.entries.firstIndex { $0.name == "transformer.wte.weight" }!].decays)
    }

    /// The views tile the flat buffer exactly, in order, with no gaps or overlaps.
    func testParameterViewsTileTheBuffer() {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama] {
            let table = ParameterTable(config: config)
            var next = 0
            for entry in table.entries {
                XCTAssertEqual(entry.offset, next, entry.name)
                next += entry.count
            }
            XCTAssertEqual(next, table.count)
        }
    }

    /// Two micro-batches with loss scale ½ accumulate the same gradient as one batch of both.
    func testGradientAccumulationEqualsLargerBatch() throws {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama] {
            let model = try ModelFixtures.randomModel(config, seed: 2)
            let length = 6
            let tokens = ModelFixtures.tokens(batch: 4, length: length, vocab: config.vocabSize, seed: 12)
            _ = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: 4, length: length)
            let whole = model.gradients.toArray()
            model.gradients.zero()
            let half = 2 * length
            for part in 0..<2 {
                let inputs = Array(tokens.inputs[(part * half)..<((part + 1) * half)])
                let targets = Array(tokens.targets[(part * half)..<((part + 1) * half)])
                inputs.withUnsafeBufferPointer { i in
                    targets.withUnsafeBufferPointer { t in
                        _ = model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: 2, length: length, lossScale: 0.5)
                    }
                }
                model.backward()
            }
            let accumulated = model.gradients.toArray()
            var difference = 0.0, norm = 0.0
            for i in 0..<whole.count {
                difference += Double(whole[i] - accumulated[i]) * Double(whole[i] - accumulated[i])
                norm += Double(whole[i]) * Double(whole[i])
            }
            XCTAssertLessThan((difference / norm).squareRoot(), 1e-5, "\(config.architecture)")
        }
    }
}
