import KeelCore
import KeelKernels
import KeelModel
import XCTest

/// The whole model with bf16 matrix operands against the same model in fp32. At initialisation every model's
/// loss is close to ln V whatever its weights, so the comparison is made on weights trained until the loss is
/// far below that: the loss and every parameter's gradient agree to bf16's rounding, training in bf16 follows
/// the fp32 trajectory, and bf16 runs are deterministic.
final class MixedPrecisionTests: XCTestCase {
    func testGPT2CloseToFloat32() throws {
        try compare(.gpt2)
    }

    func testLlamaCloseToFloat32() throws {
        try compare(.llama)
    }

    /// 3 × 100 rows: more than one chunk of the output head, so its once-packed weight serves several chunks.
    private static let batch = 3, length = 100

    /// Sequences where each token mostly follows from the one before, so the model can learn them.
    private static func learnable(vocab: Int) -> (inputs: [Int32], targets: [Int32]) {
        var random = RandomStream(seed: 11)
        var inputs: [Int32] = [], targets: [Int32] = []
        for _ in 0..<batch {
            var token = Int32(random.nextInt(below: vocab))
            for _ in 0..<length {
                let next = random.nextInt(below: 8) == 0 ? Int32(random.nextInt(below: vocab)) : (token * 7 + 3) % Int32(vocab)
                inputs.append(token)
                targets.append(next)
                token = next
            }
        }
        return (inputs, targets)
    }

    /// Trains `model` for `steps` AdamW steps on one batch; returns the last loss.
    private func train(_ model: Transformer, _ tokens: (inputs: [Int32], targets: [Int32]), steps: Int) -> Float {
        let m = FloatBuffer(count: model.table.count), v = FloatBuffer(count: model.table.count)
        let groups = model.table.entries.map { (range: $0.range, decays: false) }
        var loss: Float = .nan
        for step in 1...steps {
            loss = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: Self.batch, length: Self.length)
            AdamW.update(params: model.parameters.pointer, grads: model.gradients.pointer, m: m.pointer, v: v.pointer,
                         groups: groups, learningRate: 3e-3, step: step, settings: AdamWSettings(weightDecay: 0))
        }
        return loss
    }

    private func compare(_ architecture: Architecture) throws {
        let config = ModelConfig(architecture: architecture, vocabSize: 300, layers: 2, heads: 4,
                                 kvHeads: architecture == .llama ? 2 : 4, width: 64, hiddenWidth: 96, maxLength: 100)
        let tokens = Self.learnable(vocab: config.vocabSize)
        let uniform = Float(log(Double(config.vocabSize)))

        // Training itself: bf16 follows fp32 from the same start.
        let reference = try Transformer(config: config, seed: 7), bf16Trained = try Transformer(config: config, seed: 7)
        bf16Trained.matrixPrecision = .bfloat16
        let trained = (fp32: train(reference, tokens, steps: 30), bf16: train(bf16Trained, tokens, steps: 30))
        XCTAssertLessThan(trained.fp32, 0.5 * uniform, "fp32 training must leave the initial regime")
        XCTAssertEqual(Double(trained.bf16), Double(trained.fp32), accuracy: 0.03 * Double(trained.fp32), "\(architecture) after 30 steps")

        // Loss and gradients of the trained fp32 weights, evaluated in both precisions, and in fp32 with the
        // weights rounded to bf16: the change that storing the weights in bf16 alone would make is the scale
        // against which bf16 products' error is judged (a product with a wrong operand or bf16 accumulation
        // is off by far more).
        var runs: [(loss: Float, gradients: [Float])] = []
        for (precision, roundWeights) in [(MatrixPrecision.float32, false), (.bfloat16, false), (.bfloat16, false), (.float32, true)] {
            let model = try Transformer(config: config, seed: 7)
            let parameters = model.parameters.pointer
            parameters.update(from: reference.parameters.pointer, count: model.table.count)
            if roundWeights {
                for i in 0..<model.table.count { parameters[i] = Self.roundedToBFloat16(parameters[i]) }
            }
            model.matrixPrecision = precision
            let loss = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: Self.batch, length: Self.length)
            runs.append((loss, model.gradients.toArray()))
        }
        let (fp32, bf16, again, roundedWeights) = (runs[0], runs[1], runs[2], runs[3])
        XCTAssertLessThan(fp32.loss, 0.5 * uniform)
        XCTAssertEqual(bf16.loss, again.loss, "bf16 is deterministic")
        XCTAssertEqual(bf16.gradients, again.gradients, "bf16 is deterministic")
        XCTAssertNotEqual(bf16.gradients, fp32.gradients, "bf16 changes the arithmetic")
        XCTAssertEqual(Double(bf16.loss), Double(fp32.loss), accuracy: 1e-3 * Double(fp32.loss))
        func relativeDistance(_ a: [Float], _ b: [Float], _ range: Range<Int>) -> Double {
            var difference = 0.0, norm = 0.0
            for i in range {
                difference += Double(a[i] - b[i]) * Double(a[i] - b[i])
                norm += Double(b[i]) * Double(b[i])
            }
            return (difference / norm).squareRoot()
        }
        for entry in reference.table.entries {
            let error = relativeDistance(bf16.gradients, fp32.gradients, entry.range)
            let scale = relativeDistance(roundedWeights.gradients, fp32.gradients, entry.range)
            XCTAssertLessThan(error, 2 * scale, "\(architecture) \(entry.name): bf16 products are off by \(error), rounding the weights by \(scale)")
        }
    }

    /// `value` rounded to the nearest bf16 (ties to even), as a Float.
    private static func roundedToBFloat16(_ value: Float) -> Float {
        let bits = value.bitPattern
        return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
    }
}
