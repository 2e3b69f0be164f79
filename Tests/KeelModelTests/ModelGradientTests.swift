import KeelCore
import KeelModel
import XCTest

/// The whole model's backward pass against finite differences of its loss, for both families.
final class ModelGradientTests: XCTestCase {
    func testGPT2Gradients() throws {
        try checkModel(ModelFixtures.gpt2)
    }

    func testLlamaGradients() throws {
        try checkModel(ModelFixtures.llama)
    }

    private func checkModel(_ config: ModelConfig) throws {
        let batch = 2, length = 5
        let model = try ModelFixtures.randomModel(config, seed: 4)
        let tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 8)
        _ = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: batch, length: length)
        let analytic = model.gradients.toArray()
        func loss() -> Double {
            tokens.inputs.withUnsafeBufferPointer { i in
                tokens.targets.withUnsafeBufferPointer { t in
                    Double(model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length))
                }
            }
        }
        let epsilon: Float = 1e-2
        for entry in model.table.entries {
            var maxGradient = 0.0
            for i in entry.range { maxGradient = max(maxGradient, abs(Double(analytic[i]))) }
            XCTAssertGreaterThan(maxGradient, 0, "\(entry.name) has no gradient")
            // Three coordinates per tensor: first, middle, last.
            for i in [entry.offset, entry.offset + entry.count / 2, entry.offset + entry.count - 1] {
                let saved = model.parameters.pointer[i]
                model.parameters.pointer[i] = saved + epsilon
                let plus = loss()
                model.parameters.pointer[i] = saved - epsilon
                let minus = loss()
                model.parameters.pointer[i] = saved
                let numeric = (plus - minus) / (2 * Double(epsilon))
                XCTAssertEqual(numeric, Double(analytic[i]), accuracy: 2e-3 * max(maxGradient, 1e-3) + 2e-4,
                               "\(entry.name)[\(i - entry.offset)]")
            }
        }
    }
}
