import KeelCore
import KeelKernels
import KeelModel
import XCTest

/// The whole model with bf16 matrix operands against the same model in fp32: the loss and every
/// parameter's gradient agree to bf16's rounding, and bf16 runs are deterministic.
final class MixedPrecisionTests: XCTestCase {
    func testGPT2CloseToFloat32() throws {
        try compare(.gpt2)
    }

    func testLlamaCloseToFloat32() throws {
        try compare(.llama)
    }

    private func compare(_ architecture: Architecture) throws {
        try XCTSkipIf(BFloat16Engine.available.isEmpty, "this CPU has neither AMX nor AVX512-BF16")
        // 3 × 100 rows: more than one chunk of the output head, so its once-packed weight serves several chunks.
        let config = ModelConfig(architecture: architecture, vocabSize: 300, layers: 2, heads: 4,
                                 kvHeads: architecture == .llama ? 2 : 4, width: 64, hiddenWidth: 96, maxLength: 100)
        let batch = 3, length = 100
        let tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 3)
        var runs: [(loss: Float, gradients: [Float])] = []
        for precision in [MatrixPrecision.float32, .bfloat16, .bfloat16] {
            let model = try Transformer(config: config, seed: 7)
            model.matrixPrecision = precision
            let loss = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: batch, length: length)
            runs.append((loss, model.gradients.toArray()))
        }
        let (fp32, bf16, again) = (runs[0], runs[1], runs[2])
        XCTAssertEqual(bf16.loss, again.loss, "bf16 is deterministic")
        XCTAssertEqual(bf16.gradients, again.gradients, "bf16 is deterministic")
        XCTAssertNotEqual(bf16.gradients, fp32.gradients, "bf16 changes the arithmetic")
        XCTAssertEqual(Double(bf16.loss), Double(fp32.loss), accuracy: 1e-3 * Double(fp32.loss))
        let model = try Transformer(config: config, seed: 7)
        for entry in model.table.entries {
            var difference = 0.0, norm = 0.0
            for i in entry.range {
                difference += Double(bf16.gradients[i] - fp32.gradients[i]) * Double(bf16.gradients[i] - fp32.gradients[i])
                norm += Double(fp32.gradients[i]) * Double(fp32.gradients[i])
            }
            XCTAssertLessThan((difference / norm).squareRoot(), 3e-2, "\(architecture) \(entry.name)")
        }
    }
}
