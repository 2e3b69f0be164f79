import KeelComm
import KeelCore
import KeelKernels
import XCTest

/// The vocab-parallel loss over 1–4 ranks (threads) equals the whole-row loss: every row's loss on every rank,
/// and each rank's columns of the gradient, for targets in every rank's slice and maxima in other slices, and for a
/// row not trained on; at temperature 1 and at a sampler's.
final class VocabParallelCrossEntropyTests: XCTestCase {
    private let rows = 9, vocab = 50

    /// Logits with a large value in one column per row, so a rank that shifted by its own maximum instead of
    /// the row's would overflow or lose the other ranks' terms.
    private func logits() -> [Float] {
        var random = RandomStream(seed: 7)
        var values = (0..<(rows * vocab)).map { _ in 3 * random.nextNormal() }
        for r in 0..<rows { values[r * vocab + (r * 13 + 5) % vocab] += 60 }
        return values
    }

    /// Row 4 is not trained on (`CrossEntropy.ignored`).
    private var targets: [Int32] { (0..<rows).map { $0 == 4 ? CrossEntropy.ignored : Int32(($0 * 11 + 2) % vocab) } }

    func testLossesAndGradientsEqualTheWholeRows() throws {
        let all = logits(), targets = self.targets, (rows, vocab) = (self.rows, self.vocab)
        for (scale, temperature): (Float?, Float) in [(nil, 1), (0.25, 1), (nil, 0.6), (0.25, 0.6)] {
            var expectedLosses = [Float](repeating: 0, count: rows), expectedGradient = all
            expectedGradient.withUnsafeMutableBufferPointer { g in
                targets.withUnsafeBufferPointer { t in
                    CrossEntropy.forward(losses: &expectedLosses, logits: g.baseAddress!, targets: t.baseAddress!,
                                         rows: rows, vocab: vocab, gradientScale: scale, temperature: temperature)
                }
            }
            for size in 1...4 {
                let slices = evenPartition(count: vocab, parts: size)
                let results = try ThreadCommunicator.run(size: size) { group -> (losses: [Float], gradient: [Float]) in
                    let slice = slices[group.rank]
                    var local = (0..<rows).flatMap { r in all[(r * vocab + slice.lowerBound)..<(r * vocab + slice.upperBound)] }
                    var losses = [Float](repeating: .nan, count: rows)
                    let reductions = VocabParallelCrossEntropy.Reductions(
                        maximum: { try group.allReduce($0, .max, label: "loss: row maxima") },
                        sum: { try group.allReduce($0, .sum, label: "loss: sums") })
                    try local.withUnsafeMutableBufferPointer { l in
                        try targets.withUnsafeBufferPointer { t in
                            try VocabParallelCrossEntropy.forward(losses: &losses, logits: l.baseAddress!, targets: t.baseAddress!,
                                                                  rows: rows, slice: slice, gradientScale: scale,
                                                                  reductions: reductions, temperature: temperature)
                        }
                    }
                    return (losses, local)
                }
                for (rank, result) in results.enumerated() {
                    for r in 0..<rows {
                        XCTAssertEqual(result.losses[r], expectedLosses[r], accuracy: 1e-5 * max(1, abs(expectedLosses[r])),
                                       "T \(temperature): \(size) ranks, rank \(rank), row \(r)")
                    }
                    guard scale != nil else { continue }
                    let slice = slices[rank]
                    for r in 0..<rows {
                        for (j, id) in slice.enumerated() {
                            XCTAssertEqual(result.gradient[r * slice.count + j], expectedGradient[r * vocab + id], accuracy: 1e-6,
                                           "T \(temperature): \(size) ranks, rank \(rank), row \(r), id \(id)")
                        }
                    }
                }
            }
        }
    }
}
