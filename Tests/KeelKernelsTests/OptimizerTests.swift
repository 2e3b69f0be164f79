import KeelCore
import KeelKernels
import XCTest

/// AdamW against a direct transcription of PyTorch's update rule, computed in Double.
final class OptimizerTests: XCTestCase {
    func testAdamWMatchesReferenceOverSeveralSteps() {
        let count = 50
        var random = RandomStream(seed: 3)
        let params = FloatBuffer(count: count), grads = FloatBuffer(count: count)
        let m = FloatBuffer(count: count), v = FloatBuffer(count: count)
        var refParams = [Double](repeating: 0, count: count)
        var refM = refParams, refV = refParams
        for i in 0..<count { params.pointer[i] = random.nextNormal(); refParams[i] = Double(params.pointer[i]) }
        let settings = AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let lr: Float = 0.01
        for step in 1...5 {
            for i in 0..<count { grads.pointer[i] = random.nextNormal() }
            // Every other step clips: AdamW reads the gradients scaled, and leaves the buffer as it was.
            let gradientScale: Float = step.isMultiple(of: 2) ? 0.25 : 1
            let unscaled = grads.toArray()
            AdamW.update(params: params.pointer, grads: grads.pointer, m: m.pointer, v: v.pointer,
                         groups: [(0..<30, true), (30..<50, false)], learningRate: lr, step: step, settings: settings,
                         gradientScale: gradientScale)
            XCTAssertEqual(grads.toArray(), unscaled)
            for i in 0..<count {
                let g = Double(grads.pointer[i]) * Double(gradientScale)
                let decay = i < 30 ? 0.1 : 0
                refParams[i] *= 1 - Double(lr) * decay
                refM[i] = 0.9 * refM[i] + 0.1 * g
                refV[i] = 0.95 * refV[i] + 0.05 * g * g
                let mHat = refM[i] / (1 - pow(0.9, Double(step)))
                let vHat = refV[i] / (1 - pow(0.95, Double(step)))
                refParams[i] -= Double(lr) * mHat / (vHat.squareRoot() + 1e-8)
            }
        }
        for i in 0..<count {
            XCTAssertEqual(Double(params.pointer[i]), refParams[i], accuracy: 1e-5, "parameter \(i)")
        }
    }

    func testSumOfSquares() {
        let x = FloatBuffer(count: 200_001)
        for i in 0..<x.count { x.pointer[i] = Float(i % 7) - 3 }
        let expected = (0..<x.count).reduce(0.0) { $0 + pow(Double($1 % 7) - 3, 2) }
        XCTAssertEqual(sumOfSquares(x.pointer, count: x.count), expected, accuracy: 1e-6 * expected)
    }

    func testThreadPoolCoversEveryIndexOnce() {
        let pool = ThreadPool(threadCount: 3)
        for count in [1, 2, 3, 7, 1000] {
            var hits = [Int](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { h in
                pool.parallelFor(count) { range in for i in range { h[i] += 1 } }
            }
            XCTAssertEqual(hits, [Int](repeating: 1, count: count))
        }
    }

    func testChecksumKnownValues() {
        // Published XXH64 test vectors (seed 0).
        XCTAssertEqual(XXH64.hash([UInt8]()), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(XXH64.hash(Array("abc".utf8)), 0x44BC_2CF5_AD77_0999)
        // Longer than a 32-byte stripe (`printf '…' | xxhsum -H64`).
        XCTAssertEqual(XXH64.hash(Array("Nobody inspects the spammish repetition".utf8)), 0xFBCE_A83C_8A37_8BF1)
    }

    /// Fed in pieces of any sizes — across stripes, empty, one byte — the hash is that of the whole.
    func testChecksumInPiecesEqualsTheWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ $0 >> 3) }
        let whole = XXH64.hash(bytes)
        for cuts in [[0, 1000], [0, 1, 2, 33, 64, 65, 1000], [0, 31, 31, 63, 500, 999, 1000], [0, 5, 10, 1000]] {
            var hasher = XXH64()
            bytes.withUnsafeBytes { all in
                for (start, end) in zip(cuts, cuts.dropFirst()) { hasher.update(UnsafeRawBufferPointer(rebasing: all[start..<end])) }
            }
            XCTAssertEqual(hasher.digest(), whole, "\(cuts)")
        }
    }
}
