import KeelCore

/// Picks training windows: each (step, micro-batch, row) reads a window of length + 1 tokens at an offset
/// drawn from its own counter-based random stream. The sampler keeps no state, so the data position of a
/// run is its step, and a resumed run reads exactly the batches an uninterrupted one would.
public struct BatchSampler: Sendable {
    public let batch: Int
    public let length: Int
    public let seed: UInt64

    public init(batch: Int, length: Int, seed: UInt64) {
        self.batch = batch
        self.length = length
        self.seed = seed
    }

    /// Fills inputs and targets ([batch, length] each) for one micro-batch of one optimizer step.
    public func fill(
        inputs: inout [Int32], targets: inout [Int32], from tokens: [Int32], step: Int, microBatch: Int
    ) {
        let span = tokens.count - length
        precondition(span > 0, "corpus shorter than one window")
        for row in 0..<batch {
            var random = RandomStream(seed: seed, key: 0xDA7A, UInt64(step), UInt64(microBatch), UInt64(row))
            let start = random.nextInt(below: span)
            for t in 0..<length {
                inputs[row * length + t] = tokens[start + t]
                targets[row * length + t] = tokens[start + t + 1]
            }
        }
    }

    /// Consecutive evaluation windows of `tokens`: window i covers tokens[i·length ..< i·length + length + 1].
    public static func evaluationWindows(tokenCount: Int, length: Int, limit: Int) -> Int {
        min(limit, max(0, (tokenCount - 1) / length))
    }
}
