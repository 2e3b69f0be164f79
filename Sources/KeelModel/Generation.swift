import Foundation
import KeelCore

/// Autoregressive sampling with temperature and top-k.
public struct SamplingSettings: Sendable {
    /// 0 picks the most likely token (greedy).
    public var temperature: Float
    /// Keep the k most likely tokens (0 keeps all).
    public var topK: Int
    public var seed: UInt64

    public init(temperature: Float, topK: Int, seed: UInt64) {
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }
}

extension Transformer {
    /// Appends `count` sampled tokens to `prompt`, calling `emit` with each as it is chosen.
    ///
    /// The context is the last `maxLength` tokens. Each position draws from its own random stream, so a
    /// given seed and prompt always produce the same text.
    public func generate(
        prompt: [Int32], count: Int, settings: SamplingSettings, emit: (Int32) -> Void = { _ in }
    ) -> [Int32] {
        var tokens = prompt.isEmpty ? [Int32(0)] : prompt
        for position in 0..<count {
            let context = Array(tokens.suffix(config.maxLength))
            _ = context.withUnsafeBufferPointer { forward(inputs: $0.baseAddress!, targets: nil, batch: 1, length: context.count) }
            let logits = self.logits(row: context.count - 1)
            var random = RandomStream(seed: settings.seed, key: 0x5A3, UInt64(position))
            let next = Transformer.choose(from: logits, settings: settings, random: &random)
            tokens.append(next)
            emit(next)
        }
        return tokens
    }

    static func choose(from logits: UnsafeBufferPointer<Float>, settings: SamplingSettings, random: inout RandomStream) -> Int32 {
        var order = Array(0..<logits.count)
        order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if settings.temperature == 0 { return Int32(order[0]) }
        let kept = settings.topK > 0 ? Array(order.prefix(settings.topK)) : order
        let top = Double(logits[kept[0]])
        let weights = kept.map { exp((Double(logits[$0]) - top) / Double(settings.temperature)) }
        var threshold = Double(random.nextUniform()) * weights.reduce(0, +)
        for (i, w) in weights.enumerated() {
            threshold -= w
            if threshold < 0 { return Int32(kept[i]) }
        }
        return Int32(kept[kept.count - 1])
    }
}
