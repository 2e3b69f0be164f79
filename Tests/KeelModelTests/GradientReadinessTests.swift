import KeelCore
import XCTest
@testable import KeelModel

/// `gradientsReady` is what lets data parallelism communicate during the backward pass: every span must be
/// reported exactly once, and only once its gradients are final.
final class GradientReadinessTests: XCTestCase {
    func testEverySpanIsReportedOnceWithItsFinalValues() throws {
        for config in [ModelFixtures.gpt2, ModelFixtures.llama, ModelFixtures.tiedLlama] {
            let model = try ModelFixtures.randomModel(config, seed: 4)
            let (inputs, targets, _) = ModelFixtures.tokens(batch: 2, length: 8, vocab: config.vocabSize, seed: 6)
            var reported: [(span: Range<Int>, values: [Float])] = []
            model.gradientsReady = { span in
                reported.append((span, Array(UnsafeBufferPointer(start: model.gradients.pointer + span.lowerBound,
                                                                 count: span.count))))
            }
            _ = ModelFixtures.lossAndGradients(model, inputs, targets, batch: 2, length: 8)
            model.gradientsReady = nil

            let spans = reported.map(\.span).sorted { $0.lowerBound < $1.lowerBound }
            XCTAssertEqual(spans.first?.lowerBound, 0, "\(config.architecture)")
            XCTAssertEqual(spans.last?.upperBound, model.table.count, "\(config.architecture)")
            for (a, b) in zip(spans, spans.dropFirst()) {
                XCTAssertEqual(a.upperBound, b.lowerBound, "\(config.architecture): spans overlap or leave a gap")
            }
            for (span, values) in reported {
                let final = Array(UnsafeBufferPointer(start: model.gradients.pointer + span.lowerBound, count: span.count))
                XCTAssertEqual(values, final, "\(config.architecture): span \(span) changed after it was reported")
                XCTAssertTrue(values.contains { $0 != 0 }, "\(config.architecture): span \(span) has no gradient")
            }
            // The last layer's parameters are reported before the first layer's (reverse order of the pass).
            let firstBlock = model.table.range(of: .block(0))
            let lastBlock = model.table.range(of: .block(1))
            let order = reported.map(\.span)
            XCTAssertLessThan(order.firstIndex(of: lastBlock)!, order.firstIndex(of: firstBlock)!)
        }
    }
}
