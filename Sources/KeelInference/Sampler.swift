import Foundation
import KeelCore

/// How the next token is drawn from the logits.
public struct SamplingOptions: Sendable, Equatable {
    /// Softmax temperature; 0 takes the most likely token (greedy).
    public var temperature: Float = 0.8
    /// Draw among the k most likely tokens (0: all).
    public var topK = 40
    /// Draw among the most likely tokens whose probabilities add up to at least p (1: all): nucleus sampling.
    public var topP: Float = 1
    /// Tokens already in the sequence have their logits divided by this when positive and multiplied when
    /// negative (CTRL's repetition penalty; 1: none).
    public var repetitionPenalty: Float = 1
    /// Subtracted once from the logit of every token already generated (OpenAI's `presence_penalty`, -2 to 2).
    public var presencePenalty: Float = 0
    /// Subtracted from the logit of every token already generated, once per time it was (OpenAI's
    /// `frequency_penalty`, -2 to 2).
    public var frequencyPenalty: Float = 0
    /// The seed: one (seed, position) always draws the same token from the same logits, so a prompt gets the same
    /// draws alone or in a batch.
    public var seed: UInt64 = 1
    /// Draw only ids below this (nil: any): a tokenizer with fewer ids than the model's vocabulary, padded to a
    /// multiple, has no text for the rest.
    public var vocabulary: Int?

    public init(temperature: Float = 0.8, topK: Int = 40, topP: Float = 1, repetitionPenalty: Float = 1,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0, seed: UInt64 = 1, vocabulary: Int? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
        self.vocabulary = vocabulary
    }

    /// Checks every setting and names the one at fault.
    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw KeelError("temperature must be 0 or more (got \(temperature))") }
        guard topK >= 0 else { throw KeelError("top-k must be 0 or more (got \(topK))") }
        guard topP > 0, topP <= 1 else { throw KeelError("top-p must be above 0 and at most 1 (got \(topP))") }
        guard repetitionPenalty > 0, repetitionPenalty.isFinite else {
            throw KeelError("repetition-penalty must be a finite number above 0 (got \(repetitionPenalty))")
        }
        for (name, value) in [("presence", presencePenalty), ("frequency", frequencyPenalty)] where !(-2...2).contains(value) {
            throw KeelError("\(name)-penalty must be between -2 and 2 (got \(value))")
        }
    }
}

/// Chooses tokens from logits as `SamplingOptions` say: the repetition, presence and frequency penalties, then
/// (greedy, or) temperature, top-k and top-p, then a draw.
public enum Sampler {
    /// The next token after `logits`, given the distinct tokens the sequence holds (`seen`, for the repetition
    /// penalty), how often it generated each (for the presence and frequency penalties) and the random stream of this
    /// draw. A sequence being generated keeps the two up to date as it grows: gathered afresh for every token, they
    /// would cost the sequence's length each time.
    public static func choose(_ logits: [Float], seen: Set<Int32>, generatedCounts: [Int32: Int], options: SamplingOptions,
                              random: inout RandomStream) -> Int32 {
        var logits = options.vocabulary.map { Array(logits.prefix(max(1, $0))) } ?? logits
        if options.repetitionPenalty != 1 {
            for token in seen where Int(token) < logits.count {
                let value = logits[Int(token)]
                // Kept finite: a tiny penalty would make a logit infinite, and the draw's weights NaN.
                let penalized = value > 0 ? value / options.repetitionPenalty : value * options.repetitionPenalty
                logits[Int(token)] = max(-.greatestFiniteMagnitude, min(.greatestFiniteMagnitude, penalized))
            }
        }
        if options.presencePenalty != 0 || options.frequencyPenalty != 0 {
            for (token, count) in generatedCounts where Int(token) < logits.count {
                logits[Int(token)] -= options.presencePenalty + Float(count) * options.frequencyPenalty
            }
        }
        if options.temperature > 0, options.topK == 0 || options.topK >= logits.count, options.topP >= 1 {
            // Every token can be drawn (a server request's default): no order is needed, only a running sum in id order,
            // rather than a sort of the whole vocabulary for every token of every sequence.
            let top = Double(logits.max()!), temperature = Double(options.temperature)
            let weights = logits.map { exp((Double($0) - top) / temperature) }
            return draw(weights, random: &random) { $0 }
        }
        // Most likely first; equal logits by token id, so the order never depends on the sort. Only the tokens that
        // can be drawn are ordered (one for greedy, k for top-k, the nucleus's for top-p alone): a 49,152-token
        // vocabulary sorted whole for every token took a seventh of SmolLM2's decoding time.
        if options.temperature == 0 { return Int32(mostLikely(logits, count: 1)[0]) }
        var order: [Int], total: Double?
        if options.topK > 0, options.topK < logits.count {
            order = mostLikely(logits, count: options.topK)
        } else if let nucleus = nucleusCandidates(logits, temperature: options.temperature, topP: options.topP) {
            (order, total) = nucleus
        } else {
            // Logits no bucket can order (NaN or +∞, from a model that overflowed): the whole vocabulary, sorted.
            order = mostLikely(logits, count: logits.count)
        }
        let top = Double(logits[order[0]])
        var weights = order.map { exp((Double(logits[$0]) - top) / Double(options.temperature)) }
        if options.topP < 1 {
            // Top-p after top-k shares the probability among the k kept (as transformers' warpers do).
            let total = total ?? weights.reduce(0, +)
            var cumulative = 0.0, kept = 0
            while kept < weights.count {
                cumulative += weights[kept] / total
                kept += 1
                if cumulative >= Double(options.topP) { break }
            }
            order = Array(order.prefix(kept))
            weights = Array(weights.prefix(kept))
        }
        return draw(weights, random: &random) { order[$0] }
    }

    /// The token of the index drawn in proportion to `weights` (`token` maps an index to its id).
    private static func draw(_ weights: [Double], random: inout RandomStream, token: (Int) -> Int) -> Int32 {
        var threshold = Double(random.nextUniform()) * weights.reduce(0, +)
        for (index, weight) in weights.enumerated() {
            threshold -= weight
            if threshold < 0 { return Int32(token(index)) }
        }
        return Int32(token(weights.count - 1))
    }

    /// Whether token `a` comes before `b` in the order of likelihood: higher logit first, the lower id first among
    /// equal logits.
    private static func before(_ a: Int, _ b: Int, in logits: [Float]) -> Bool {
        logits[a] > logits[b] || (logits[a] == logits[b] && a < b)
    }

    /// The most likely tokens, in order, up to at least the last one the nucleus of `topP` can hold, and the sum of
    /// every token's weight exp((logit − top) / temperature) — found in two passes over the vocabulary instead of a
    /// sort of it. Each token falls in a bucket by its weight (an eighth of a temperature below the top per bucket,
    /// so a bucket never holds a token less likely than one in a later bucket); the buckets' sums say in which the
    /// nucleus ends, and only the tokens up to that bucket are sorted — tens or hundreds, not the vocabulary. Nil when
    /// the logits hold NaN or +∞, whose weights no bucket orders.
    static func nucleusCandidates(_ logits: [Float], temperature: Float, topP: Float) -> (order: [Int], total: Double)? {
        let buckets = 256, perTemperature = 8.0
        guard logits.allSatisfy({ !$0.isNaN && $0 != .infinity }) else { return nil }
        let top = Double(logits.max()!), temperature = Double(temperature)
        var sums = [Double](repeating: 0, count: buckets)
        var bucketOf = [UInt8](repeating: 0, count: logits.count)
        var total = 0.0
        for token in logits.indices {
            let below = (top - Double(logits[token])) / temperature
            let weight = exp(-below)
            // The last bucket takes the rest: weights under e^-32 of the top, and −∞ (which Int() would trap on).
            let bucket = below < Double(buckets - 1) / perTemperature ? Int(below * perTemperature) : buckets - 1
            bucketOf[token] = UInt8(bucket)
            sums[bucket] += weight
            total += weight
        }
        var last = 0, running = sums[0]
        while running < Double(topP) * total, last < buckets - 1 {
            last += 1
            running += sums[last]
        }
        let candidates = logits.indices.filter { Int(bucketOf[$0]) <= last }
        return (candidates.sorted { before($0, $1, in: logits) }, total)
    }

    /// The `count` most likely tokens in order: higher logit first, the lower id first among equal logits.
    static func mostLikely(_ logits: [Float], count: Int) -> [Int] {
        func before(_ a: Int, _ b: Int) -> Bool { Self.before(a, b, in: logits) }
        // Insertion costs vocabulary × count at worst: for a large k (a request may ask for thousands), sort.
        guard count <= 64, count < logits.count / 8 else { return logits.indices.sorted(by: before).prefix(count).map { $0 } }
        // Insertion into a short sorted list: a token enters only when it beats the last kept one.
        var kept: [Int] = []
        kept.reserveCapacity(count + 1)
        for token in logits.indices {
            if kept.count == count, !before(token, kept[count - 1]) { continue }
            var position = kept.count
            while position > 0, before(token, kept[position - 1]) { position -= 1 }
            kept.insert(token, at: position)
            if kept.count > count { kept.removeLast() }
        }
        return kept
    }
}
