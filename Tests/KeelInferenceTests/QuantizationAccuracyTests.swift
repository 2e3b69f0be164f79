import Foundation
import KeelInference
import KeelKernels
import KeelModel
import XCTest

/// The figures of `keel eval --quantize` against a direct computation from the two decoders' logits.
final class QuantizationAccuracyTests: XCTestCase {
    func testFiguresAreThoseOfTheTwoDistributions() throws {
        let config = ModelConfig(architecture: .llama, vocabSize: 50, layers: 2, heads: 4, kvHeads: 2, width: 64,
                                 hiddenWidth: 64, maxLength: 16)
        let model = try DecoderTests.randomModel(config, seed: 8, std: 1 / 8)
        let base = try Decoder(model: model), quantized = try Decoder(model: model, quantization: .q4_0)
        let inputs: [Int32] = [3, 9, 41, 0, 17, 17, 2, 30], targets: [Int32] = [9, 41, 0, 17, 17, 2, 30, 5]
        var accuracy = QuantizationAccuracy()
        accuracy.add(inputs: inputs, targets: targets, base: base, quantized: quantized)
        // Directly: softmax in Double, KL(p ‖ q) = Σ p (log p − log q).
        let p = base.logits(of: inputs), q = quantized.logits(of: inputs)
        func probabilities(_ logits: [Float]) -> [Double] {
            let exps = logits.map { Foundation.exp(Double($0)) }
            let total = exps.reduce(0, +)
            return exps.map { $0 / total }
        }
        var divergences: [Double] = [], baseLoss = 0.0, quantizedLoss = 0.0, same = 0
        for position in inputs.indices {
            let a = probabilities(p[position]), b = probabilities(q[position])
            divergences.append(zip(a, b).reduce(0) { $0 + $1.0 * Foundation.log($1.0 / $1.1) })
            baseLoss -= Foundation.log(a[Int(targets[position])])
            quantizedLoss -= Foundation.log(b[Int(targets[position])])
            if a.indices.max(by: { a[$0] < a[$1] }) == b.indices.max(by: { b[$0] < b[$1] }) { same += 1 }
        }
        XCTAssertEqual(accuracy.tokens, 8)
        XCTAssertEqual(accuracy.meanDivergence, divergences.reduce(0, +) / 8, accuracy: 1e-9)
        XCTAssertEqual(accuracy.largestDivergence, divergences.max()!, accuracy: 1e-9)
        // llama-perplexity's percentile: 0.99 · 7 = 6.93 of the way through the sorted eight.
        let sorted = divergences.sorted()
        XCTAssertEqual(accuracy.divergence99, 0.07 * sorted[6] + 0.93 * sorted[7], accuracy: 1e-9)
        XCTAssertEqual(accuracy.basePerplexity, Foundation.exp(baseLoss / 8), accuracy: 1e-9 * accuracy.basePerplexity)
        XCTAssertEqual(accuracy.quantizedPerplexity, Foundation.exp(quantizedLoss / 8), accuracy: 1e-9 * accuracy.quantizedPerplexity)
        XCTAssertEqual(accuracy.topOneAgreement, Double(same) / 8)
        XCTAssertGreaterThan(accuracy.meanDivergence, 0)
        // llama-perplexity's positions only (the window's second half, less its last): their figures alone.
        var half = QuantizationAccuracy()
        half.add(inputs: inputs, targets: targets, positions: 4..<7, base: base, quantized: quantized)
        XCTAssertEqual(half.tokens, 3)
        XCTAssertEqual(half.meanDivergence, divergences[4..<7].reduce(0, +) / 3, accuracy: 1e-9)
        XCTAssertEqual(half.largestDivergence, divergences[4..<7].max()!, accuracy: 1e-9)
        // A model against itself: no divergence, full agreement.
        var itself = QuantizationAccuracy()
        itself.add(inputs: inputs, targets: targets, base: base, quantized: base)
        XCTAssertEqual(itself.meanDivergence, 0)
        XCTAssertEqual(itself.topOneAgreement, 1)
        XCTAssertEqual(itself.basePerplexity, itself.quantizedPerplexity)
    }
}
