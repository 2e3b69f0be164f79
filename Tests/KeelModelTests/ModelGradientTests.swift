import KeelCore
import KeelKernels
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

    /// Packed documents (attention within each, positions from each start) and positions not trained on.
    func testGPT2GradientsWithDocumentsAndIgnoredTargets() throws {
        try checkModel(ModelFixtures.gpt2, packed: true)
    }

    func testLlamaGradientsWithDocumentsAndIgnoredTargets() throws {
        try checkModel(ModelFixtures.llama, packed: true)
    }

    private func checkModel(_ config: ModelConfig, packed: Bool = false) throws {
        let batch = 2, length = 5
        let model = try ModelFixtures.randomModel(config, seed: 4)
        var tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 8)
        // Sequence 0 holds documents at 0 and 2, sequence 1 at 0 and 4; three targets are not trained on.
        let documents: [Int32]? = packed ? [0, 0, 2, 2, 2, 0, 0, 0, 0, 4] : nil
        if packed { for i in [1, 5, 9] { tokens.targets[i] = CrossEntropy.ignored } }
        _ = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: batch, length: length, documents: documents)
        let analytic = model.gradients.toArray()
        func loss() -> Double {
            tokens.inputs.withUnsafeBufferPointer { i in
                tokens.targets.withUnsafeBufferPointer { t in
                    documents.withOptionalPointer { d in
                        Double(model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length,
                                             documents: d))
                    }
                }
            }
        }
        let epsilon: Float = packed ? 2e-3 : 1e-2
        for entry in model.table.entries {
            var maxGradient = 0.0
            for i in entry.range { maxGradient = max(maxGradient, abs(Double(analytic[i]))) }
            XCTAssertGreaterThan(maxGradient, 0, "\(entry.name) has no gradient")
            // Three coordinates per tensor: first, middle, last.
            for i in [entry.offset, entry.offset + entry.count / 2, entry.offset + entry.count - 1] {
                let numeric = centralDifference(model.parameters.pointer + i, epsilon: epsilon) { loss() }
                XCTAssertEqual(numeric, Double(analytic[i]), accuracy: 2e-3 * max(maxGradient, 1e-3) + 2e-4,
                               "\(entry.name)[\(i - entry.offset)]")
            }
        }
    }
}

/// Documents packed into one sequence give the logits each gives alone (attention within each document, positions
/// from its start — GPT-2's learned positions and Llama's rotary ones).
final class DocumentPackingTests: XCTestCase {
    func testPackedDocumentsGiveTheLogitsOfEachAlone() throws {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama] {
            let model = try ModelFixtures.randomModel(config, seed: 6)
            let lengths = [3, 4, 1], total = lengths.reduce(0, +)
            let tokens = ModelFixtures.tokens(batch: 1, length: total, vocab: config.vocabSize, seed: 2).inputs
            var documents: [Int32] = []
            for (index, length) in lengths.enumerated() {
                documents += Array(repeating: Int32(lengths[..<index].reduce(0, +)), count: length)
            }
            tokens.withUnsafeBufferPointer { t in
                documents.withUnsafeBufferPointer { d in
                    _ = model.forward(inputs: t.baseAddress!, targets: nil, batch: 1, length: total, documents: d.baseAddress!)
                }
            }
            let packed = (0..<total).map { Array(model.logits(row: $0)) }
            var offset = 0
            for length in lengths {
                tokens.withUnsafeBufferPointer { t in
                    _ = model.forward(inputs: t.baseAddress! + offset, targets: nil, batch: 1, length: length)
                }
                for row in 0..<length {
                    let alone = model.logits(row: row)
                    for (a, b) in zip(packed[offset + row], alone) {
                        XCTAssertEqual(a, b, accuracy: 1e-5, "\(config.architecture) document at \(offset), row \(row)")
                    }
                }
                offset += length
            }
            // Without documents the later documents see the earlier ones: their logits differ.
            tokens.withUnsafeBufferPointer { t in
                _ = model.forward(inputs: t.baseAddress!, targets: nil, batch: 1, length: total)
            }
            XCTAssertNotEqual(Array(model.logits(row: 3)), packed[3], "\(config.architecture)")
        }
    }
}

/// Tokens masked from the loss, in a document of their own, change nothing: a packed window whose first document
/// is not trained on (every target ignored) gives the same gradients whatever that document's tokens are — the
/// loss skips its positions, and the trained document after it does not attend to it.
final class MaskedTokensTests: XCTestCase {
    func testPerturbingMaskedTokensLeavesTheGradients() throws {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama] {
            let model = try ModelFixtures.randomModel(config, seed: 9)
            let length = 8, documents: [Int32] = [0, 0, 0, 3, 3, 3, 3, 3]
            var tokens = ModelFixtures.tokens(batch: 1, length: length, vocab: config.vocabSize, seed: 3)
            for i in 0..<3 { tokens.targets[i] = CrossEntropy.ignored }
            _ = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: 1, length: length, documents: documents)
            let before = model.gradients.toArray()
            var perturbed = tokens.inputs
            for i in 0..<3 { perturbed[i] = Int32((Int(perturbed[i]) + 5) % config.vocabSize) }
            _ = ModelFixtures.lossAndGradients(model, perturbed, tokens.targets, batch: 1, length: length, documents: documents)
            XCTAssertEqual(model.gradients.toArray(), before, "\(config.architecture)")
            // Without document masking the trained document sees them, and the gradients move.
            _ = ModelFixtures.lossAndGradients(model, tokens.inputs, tokens.targets, batch: 1, length: length)
            let unmasked = model.gradients.toArray()
            _ = ModelFixtures.lossAndGradients(model, perturbed, tokens.targets, batch: 1, length: length)
            XCTAssertNotEqual(model.gradients.toArray(), unmasked, "\(config.architecture)")
        }
    }
}

/// Each position's cross-entropy weighed (what preference optimisation and policy gradients need): `rowLosses` are
/// −log softmax(logits)[target], and the gradient with `lossWeights` is that of Σ weight · loss, against finite
/// differences, for both families; and so with a loss temperature T (GRPO's), of the softmax of logits / T, while the
/// logits read without targets stay the model's.
final class WeightedLossTests: XCTestCase {
    func testRowLossesAndWeightedGradients() throws {
        for (config, temperature) in [(ModelFixtures.gpt2, Float(1)), (ModelFixtures.llama, 1), (ModelFixtures.llama, 0.7)] {
            let batch = 2, length = 5, n = batch * length
            let model = try ModelFixtures.randomModel(config, seed: 12)
            model.lossTemperature = temperature
            var tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 13)
            tokens.targets[3] = CrossEntropy.ignored
            // Positive and negative weights, as a policy gradient's advantages are.
            let weights: [Float] = (0..<n).map { Float($0 % 5) / 2 - 1 }
            // −log softmax of the logits of a forward pass without targets.
            tokens.inputs.withUnsafeBufferPointer { i in
                _ = model.forward(inputs: i.baseAddress!, targets: nil, batch: batch, length: length)
            }
            let expected: [Double] = (0..<n).map { r in
                guard tokens.targets[r] != CrossEntropy.ignored else { return 0 }
                let row = model.logits(row: r).map { Double($0) / Double(temperature) }, top = row.max()!
                return top + log(row.reduce(0) { $0 + exp($1 - top) }) - row[Int(tokens.targets[r])]
            }
            func weighted(_ scale: Float?) -> Double {
                tokens.inputs.withUnsafeBufferPointer { i in
                    tokens.targets.withUnsafeBufferPointer { t in
                        weights.withUnsafeBufferPointer { w in
                            _ = model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length,
                                              lossScale: scale, lossWeights: w.baseAddress!)
                        }
                    }
                }
                return zip(model.rowLosses(), weights).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            model.gradients.zero()
            _ = weighted(1)
            for (ours, theirs) in zip(model.rowLosses(), expected) {
                XCTAssertEqual(Double(ours), theirs, accuracy: 1e-5 * max(1, abs(theirs)), "\(config.architecture) T \(temperature)")
            }
            model.backward()
            let analytic = model.gradients.toArray()
            let epsilon: Float = 2e-3
            for entry in model.table.entries {
                for i in [entry.offset, entry.offset + entry.count / 2] {
                    let numeric = centralDifference(model.parameters.pointer + i, epsilon: epsilon) { weighted(nil) }
                    // The fp32 losses' rounding, divided by 2ε, depends on the BLAS library's kernels: up to 5.3e-4
                    // with BLIS's generic ones, within 2e-3 · |g| + 2e-4 with OpenBLAS's.
                    XCTAssertEqual(numeric, Double(analytic[i]), accuracy: 3e-3 * max(abs(numeric), 1e-1) + 4e-4,
                                   "\(config.architecture) T \(temperature) \(entry.name)[\(i - entry.offset)]")
                }
            }
        }
    }
}

/// The final norm's features (what a reward model's scalar head reads) and the backward pass from a gradient of
/// them: against finite differences of Σ c · features for fixed random c, for both families; the output projection
/// is not used, so an untied one gets no gradient.
final class FeatureGradientTests: XCTestCase {
    func testFeatureGradientsMatchFiniteDifferences() throws {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama] {
            let batch = 2, length = 4, n = batch * length * config.width
            let model = try ModelFixtures.randomModel(config, seed: 21)
            let tokens = ModelFixtures.tokens(batch: batch, length: length, vocab: config.vocabSize, seed: 22)
            var random = RandomStream(seed: 23, key: 0)
            let coefficients = (0..<n).map { _ in random.nextNormal() }
            func objective() -> Double {
                let features = tokens.inputs.withUnsafeBufferPointer { model.features(inputs: $0.baseAddress!, batch: batch, length: length) }
                return (0..<n).reduce(0.0) { $0 + Double(features[$1]) * Double(coefficients[$1]) }
            }
            model.gradients.zero()
            _ = objective()
            coefficients.withUnsafeBufferPointer { model.backward(featureGradient: $0.baseAddress!) }
            let analytic = model.gradients.toArray()
            let epsilon: Float = 2e-3
            for entry in model.table.entries {
                let largest = entry.range.map { abs(Double(analytic[$0])) }.max()!
                if entry.part == .head && entry.slot == .output {
                    XCTAssertEqual(largest, 0, "\(config.architecture): the output projection is not used")
                    continue
                }
                XCTAssertGreaterThan(largest, 0, "\(config.architecture) \(entry.name) has no gradient")
                for i in [entry.offset, entry.offset + entry.count / 2] {
                    let numeric = centralDifference(model.parameters.pointer + i, epsilon: epsilon) { objective() }
                    XCTAssertEqual(numeric, Double(analytic[i]), accuracy: 2e-3 * max(abs(numeric), largest, 1e-1) + 2e-4,
                                   "\(config.architecture) \(entry.name)[\(i - entry.offset)]")
                }
            }
        }
    }
}

/// (f(x + ε) − f(x − ε)) / 2ε for the float at `value`, which is left as it was.
func centralDifference(_ value: UnsafeMutablePointer<Float>, epsilon: Float, _ f: () -> Double) -> Double {
    let saved = value.pointee
    value.pointee = saved + epsilon
    let plus = f()
    value.pointee = saved - epsilon
    let minus = f()
    value.pointee = saved
    return (plus - minus) / (2 * Double(epsilon))
}
