import Foundation

/// How far a quantized model's next-token distributions are from the fp32 model's on the same text: the figures
/// llama.cpp's `llama-perplexity --kl-divergence` reports — both perplexities, the KL divergence KL(fp32 ‖
/// quantized) per token (mean, 99th percentile, largest) and how often the two agree on the most likely token.
public struct QuantizationAccuracy: Sendable {
    public private(set) var tokens = 0
    private var baseLoss = 0.0, quantizedLoss = 0.0, agreements = 0
    private var divergences: [Double] = []

    public init() {}

    /// Adds one window: `inputs` and the `targets` that follow each, through both decoders, the predictions at
    /// `positions` scored (all of them, or those llama-perplexity scores: the second half of the window).
    public mutating func add(inputs: [Int32], targets: [Int32], positions: Range<Int>? = nil, base: Decoder, quantized: Decoder) {
        let baseLogits = base.logits(of: inputs), quantizedLogits = quantized.logits(of: inputs)
        for position in positions ?? targets.indices {
            let target = targets[position]
            let p = Self.logSoftmax(baseLogits[position]), q = Self.logSoftmax(quantizedLogits[position])
            baseLoss -= p[Int(target)]
            quantizedLoss -= q[Int(target)]
            var divergence = 0.0
            for i in p.indices { divergence += exp(p[i]) * (p[i] - q[i]) }
            // Not clamped at 0 (rounding can take a near-zero divergence below it), as llama.cpp does not.
            divergences.append(divergence)
            if Self.argmax(p) == Self.argmax(q) { agreements += 1 }
            tokens += 1
        }
    }

    /// Mean next-token loss of the fp32 model, and of the quantized one.
    public var baseMeanLoss: Double { baseLoss / Double(max(1, tokens)) }
    public var quantizedMeanLoss: Double { quantizedLoss / Double(max(1, tokens)) }
    public var basePerplexity: Double { exp(baseMeanLoss) }
    public var quantizedPerplexity: Double { exp(quantizedMeanLoss) }
    public var meanDivergence: Double { divergences.reduce(0, +) / Double(max(1, tokens)) }
    /// The 99th percentile of the per-token divergences, as llama-perplexity computes it: interpolated between the
    /// two sorted values around the fractional position 0.99 · (n − 1).
    public var divergence99: Double {
        guard !divergences.isEmpty else { return 0 }
        let sorted = divergences.sorted()
        let position = 0.99 * Double(sorted.count - 1), below = Int(position), fraction = position - Double(below)
        return (1 - fraction) * sorted[below] + fraction * sorted[min(below + 1, sorted.count - 1)]
    }
    public var largestDivergence: Double { divergences.max() ?? 0 }
    /// The share of tokens whose most likely next token is the same in both.
    public var topOneAgreement: Double { Double(agreements) / Double(max(1, tokens)) }

    /// log softmax(`logits`), in Double.
    public static func logSoftmax(_ logits: [Float]) -> [Double] {
        let maximum = Double(logits.max()!)
        let sum = logits.reduce(0.0) { $0 + exp(Double($1) - maximum) }
        let logSum = maximum + log(sum)
        return logits.map { Double($0) - logSum }
    }

    static func argmax(_ values: [Double]) -> Int { values.indices.max { values[$0] < values[$1] || (values[$0] == values[$1] && $0 > $1) }! }
}
