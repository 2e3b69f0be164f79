import KeelCore
@testable import KeelInference
import KeelKernels
import KeelModel
import XCTest

/// The KV-cache decoder against the training forward pass over the whole text, and sampling.
final class DecoderTests: XCTestCase {
    static let gpt2 = ModelConfig(architecture: .gpt2, vocabSize: 29, layers: 2, heads: 4, width: 32, hiddenWidth: 64, maxLength: 16)
    /// Grouped-query attention: 4 query heads share 2 key/value heads.
    static let llama = ModelConfig(architecture: .llama, vocabSize: 29, layers: 2, heads: 4, kvHeads: 2, width: 32,
                                   hiddenWidth: 48, maxLength: 16, ropeTheta: 10_000)

    /// A model whose parameters are random values of standard deviation `std` (norms around 1), so that logits
    /// differ clearly from token to token.
    static func randomModel(_ config: ModelConfig, seed: UInt64, std: Float = 0.3) throws -> Transformer {
        let model = try Transformer(config: config, seed: seed)
        var random = RandomStream(seed: seed, key: 99)
        for entry in model.table.entries {
            let p = model.parameters.pointer + entry.offset
            let base: Float = entry.role == .norm ? 1 : 0
            for i in 0..<entry.count { p[i] = base + random.nextNormal() * (entry.role == .matrix ? std : 0.3) }
        }
        return model
    }

    /// The training forward pass's logits at every position of `tokens`.
    static func wholeForwardLogits(_ model: Transformer, _ tokens: [Int32]) -> [[Float]] {
        tokens.withUnsafeBufferPointer { _ = model.forward(inputs: $0.baseAddress!, targets: nil, batch: 1, length: tokens.count) }
        return tokens.indices.map { Array(model.logits(row: $0)) }
    }

    static func largestRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max()!
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    /// A prompt appended whole, then tokens one at a time, then two sequences stepped together: every position's
    /// logits equal the whole forward pass's.
    func testCachedLogitsEqualTheWholeForwardPass() throws {
        for config in [Self.gpt2, Self.llama] {
            let model = try Self.randomModel(config, seed: 3)
            let decoder = try Decoder(model: model)
            let text: [Int32] = [3, 17, 5, 5, 28, 0, 11, 9, 22, 14, 1, 7, 19, 26, 2, 8]
            let reference = Self.wholeForwardLogits(model, text)
            let sequence = decoder.makeSequence()
            var logits = [decoder.append(Array(text.prefix(5)), to: sequence)]
            for token in text.dropFirst(5) { logits.append(decoder.append([token], to: sequence)) }
            XCTAssertEqual(sequence.count, text.count)
            for (offset, position) in (4..<text.count).enumerated() {
                XCTAssertLessThan(Self.largestRelativeDifference(logits[offset], reference[position]), 1e-5,
                                  "\(config.architecture) at position \(position)")
            }
            // Two sequences of different lengths in one step.
            let other: [Int32] = [12, 4, 4]
            let otherReference = Self.wholeForwardLogits(model, other + [6])
            let first = decoder.makeSequence(), second = decoder.makeSequence()
            _ = decoder.append(Array(text.prefix(9)), to: first)
            _ = decoder.append(other, to: second)
            let stepped = decoder.step([text[9], 6], sequences: [first, second])
            XCTAssertLessThan(Self.largestRelativeDifference(stepped[0], reference[9]), 1e-5, "\(config.architecture), batched")
            XCTAssertLessThan(Self.largestRelativeDifference(stepped[1], otherReference[3]), 1e-5, "\(config.architecture), batched")
        }
    }

    static func relativeRMS(_ a: [Float], _ b: [Float]) -> Float {
        (zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / b.map { $0 * $0 }.reduce(0, +)).squareRoot()
    }

    /// In a llama.cpp format the decoder runs the quantized weights: its logits equal those of fp32 products with
    /// the weights rounded the same way (the head in Q8_0 beside a 4-bit format), up to the rounding of the
    /// activations to 8 bits; and they stay as close to the unrounded model's as the format's rounding allows.
    func testQuantizedProjectionsRunTheRoundedWeights() throws {
        let config = ModelConfig(architecture: .llama, vocabSize: 64, layers: 2, heads: 4, kvHeads: 2, width: 256,
                                 hiddenWidth: 256, maxLength: 16)
        // Weights of 1/√width keep activations of order one: a model with larger random weights is chaotic, and a
        // rounding of 0.5% in its weights moves its logits by a fifth.
        let model = try Self.randomModel(config, seed: 4, std: 1 / 16)
        let text: [Int32] = [1, 9, 33, 2, 60, 17]
        let exact = try Decoder(model: model)
        let reference = exact.append(text, to: exact.makeSequence())
        for (format, bound) in [(QuantizationFormat.q8_0, Float(0.05)), (.q5_0, 0.2), (.q4_K, 0.35)] {
            let decoder = try Decoder(model: model, quantization: format)
            let logits = decoder.append(text, to: decoder.makeSequence())
            let rounded = try Self.randomModel(config, seed: 4, std: 1 / 16)
            // The head in its own format (Q8_0 beside a 4-bit format), the other matrices in `format`, and the token
            // table too, as the lookups read it (as a quantized file holds it).
            for entry in rounded.table.entries where entry.role == .matrix || entry.slot == .tokenTable {
                let p = rounded.parameters.pointer + entry.offset
                let values = Array(UnsafeBufferPointer(start: p, count: entry.count))
                let rowFormat = entry.slot == .output ? format.headFormat(columns: entry.shape[1]) : format
                let back = try QuantizedMatrix(quantizing: values, rows: entry.shape[0], columns: entry.shape[1], format: rowFormat)
                p.update(from: back.dequantized(), count: entry.count)
            }
            let plain = try Decoder(model: rounded)
            let roundedLogits = plain.append(text, to: plain.makeSequence())
            XCTAssertLessThan(Self.relativeRMS(logits, roundedLogits), 0.05, "\(format.rawValue): against the rounded weights in fp32")
            XCTAssertLessThan(Self.relativeRMS(logits, reference), bound, "\(format.rawValue): against the model")
            XCTAssertGreaterThan(Self.relativeRMS(logits, reference), 0, "\(format.rawValue) cannot be exact")
        }
        // Q4_K takes Q5_0 where rows are not whole blocks of 256; rows of 48 values are not whole blocks of 32 either.
        XCTAssertThrowsError(try Decoder(model: try Self.randomModel(Self.llama, seed: 1), quantization: .q4_K)) {
            XCTAssertTrue("\($0)".hasPrefix("cannot run this model in q4_k: a q5_0 matrix needs rows of a multiple of 32 values; this one has 48"), "\($0)")
        }
    }

    /// A quantized decoder that hands the fp32 projections and token table back gives the same logits, and the
    /// model's buffer reads zero there (the memory is the operating system's again); the norms stay.
    func testReleasingTheFloatWeightsKeepsTheQuantizedLogits() throws {
        let config = ModelConfig(architecture: .llama, vocabSize: 64, layers: 2, heads: 4, kvHeads: 2, width: 64,
                                 hiddenWidth: 64, maxLength: 16)
        let text: [Int32] = [5, 6, 7, 8, 60]
        let kept = try Decoder(model: try Self.randomModel(config, seed: 9, std: 1 / 8), quantization: .q8_0)
        let model = try Self.randomModel(config, seed: 9, std: 1 / 8)
        let released = try Decoder(model: model, quantization: .q8_0, releasingFloatWeights: true)
        XCTAssertEqual(released.logits(of: text).flatMap { $0 }.map(\.bitPattern), kept.logits(of: text).flatMap { $0 }.map(\.bitPattern))
        for entry in model.table.entries {
            let values = UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count)
            if entry.role == .matrix || entry.slot == .tokenTable {
                XCTAssertTrue(values.allSatisfy { $0 == 0 }, "\(entry.name) released")
            } else {
                XCTAssertTrue(values.contains { $0 != 0 }, "\(entry.name) kept")
            }
        }
    }

    func testGreedyGenerationFollowsTheArgMaxAndSamplingIsSeeded() throws {
        let model = try Self.randomModel(Self.llama, seed: 6)
        let decoder = try Decoder(model: model)
        let prompt: [Int32] = [1, 2, 3]
        let greedy = decoder.generate(prompts: [prompt], maxTokens: 6, options: SamplingOptions(temperature: 0))[0]
        var context = prompt
        for next in greedy {
            let logits = Self.wholeForwardLogits(model, context).last!
            XCTAssertEqual(Int(next), logits.indices.max { logits[$0] < logits[$1] })
            context.append(next)
        }
        let topOne = decoder.generate(prompts: [prompt], maxTokens: 6, options: SamplingOptions(temperature: 1, topK: 1, seed: 9))[0]
        XCTAssertEqual(greedy, topOne)
        let options = SamplingOptions(temperature: 1, topK: 0, seed: 5)
        let a = decoder.generate(prompts: [prompt], maxTokens: 12, options: options)[0]
        XCTAssertEqual(a, decoder.generate(prompts: [prompt], maxTokens: 12, options: options)[0])
        XCTAssertNotEqual(a, decoder.generate(prompts: [prompt], maxTokens: 12, options: SamplingOptions(temperature: 1, topK: 0, seed: 6))[0])
        // Past max_seq_len (16) the sequence is refilled from its last half and goes on.
        XCTAssertEqual(decoder.generate(prompts: [prompt], maxTokens: 40, options: options)[0].count, 40)
        // Batched prompts: each gets what it would get alone.
        let batch = decoder.generate(prompts: [prompt, [7, 7]], maxTokens: 12, options: options)
        XCTAssertEqual(batch[0], a)
        var alone = decoder.generate(prompts: [[7, 7]], maxTokens: 12, options: options)
        XCTAssertEqual(batch[1], alone[0])
        // A stop condition ends its sequence only.
        alone = decoder.generate(prompts: [prompt, [7, 7]], maxTokens: 12, options: options, shouldStop: { index, tokens in index == 0 && tokens.count == 3 })
        XCTAssertEqual(alone[0], Array(a.prefix(3)))
        XCTAssertEqual(alone[1], batch[1])
    }

    /// A text cut to the context (a long prompt, a sequence refilled from its last half) keeps its first token when
    /// that is the model's text start (BOS), as llama.cpp keeps it; other texts are cut to their last tokens.
    func testCutsToTheContextKeepTheTextStart() throws {
        let model = try Self.randomModel(Self.llama, seed: 6)
        let decoder = try Decoder(model: model)
        let context = model.config.maxLength, bos: Int32 = 9
        let prompt = [bos] + (0..<20).map { Int32($0 % 7 + 1) }
        for start in [bos, nil] as [Int32?] {
            let greedy = decoder.generate(prompts: [prompt], maxTokens: 2 * context, options: SamplingOptions(temperature: 0), textStart: start)[0]
            // What the model sees: the window of the prompt, one token more per step; full, the window of the text's last half.
            var text = prompt, visible = start == nil ? Array(prompt.suffix(context)) : [bos] + prompt.suffix(context - 1)
            for (step, next) in greedy.enumerated() {
                let logits = Self.wholeForwardLogits(model, visible).last!
                XCTAssertEqual(Int(next), logits.indices.max { logits[$0] < logits[$1] }, "start \(start.map(String.init) ?? "none"), step \(step)")
                text.append(next)
                if visible.count == context {
                    visible = start == nil ? Array(text.suffix(context / 2 + 1)) : [bos] + text.suffix(context / 2)
                } else {
                    visible.append(next)
                }
            }
        }
        XCTAssertEqual(contextWindow(of: [bos, 1, 2, 3], count: 3, keeping: bos), [bos, 2, 3])
        XCTAssertEqual(contextWindow(of: [4, 1, 2, 3], count: 3, keeping: bos), [1, 2, 3])
        XCTAssertEqual(contextWindow(of: [bos, 1], count: 3, keeping: bos), [bos, 1])
    }

    func testSamplerFiltersAndPenalises() throws {
        let logits: [Float] = [2, 1, 0.5, 3, -1]
        var random = RandomStream(seed: 1, key: 2)
        // top-p 0.5 keeps only the most likely token here (softmax puts 0.63 on it).
        for _ in 0..<20 {
            XCTAssertEqual(Sampler.choose(logits, history: [], options: SamplingOptions(temperature: 1, topK: 0, topP: 0.5), random: &random), 3)
        }
        // top-k 2 never draws outside {3, 0}.
        for _ in 0..<50 {
            XCTAssertTrue([0, 3].contains(Sampler.choose(logits, history: [], options: SamplingOptions(temperature: 1, topK: 2), random: &random)))
        }
        // The penalty moves greedy off a repeated token: 3 / 2 = 1.5 < 2.
        XCTAssertEqual(Sampler.choose(logits, history: [3], options: SamplingOptions(temperature: 0, repetitionPenalty: 2), random: &random), 0)
        // A penalty so small that the logit it divides overflows still draws the repeated token, the most likely by
        // far: the logit is kept finite (it was infinite, the weights NaN, and the least likely token came out).
        for seed in 0..<20 as Range<UInt64> {
            var draws = RandomStream(seed: seed, key: 2)
            XCTAssertEqual(Sampler.choose(logits, history: [3], options: SamplingOptions(temperature: 1, topK: 0, repetitionPenalty: .leastNonzeroMagnitude),
                                          random: &draws), 3)
        }
        // OpenAI's presence and frequency penalties count the generated tokens only: 3 − 1.5 = 1.5 < 2 moves greedy to
        // 0; once generated twice, 3 − 2 × 0.4 = 2.2 stays ahead, 3 − 3 × 0.4 = 1.8 does not.
        XCTAssertEqual(Sampler.choose(logits, history: [3], generated: [3], options: SamplingOptions(temperature: 0, presencePenalty: 1.5), random: &random), 0)
        XCTAssertEqual(Sampler.choose(logits, history: [3], generated: [], options: SamplingOptions(temperature: 0, presencePenalty: 1.5), random: &random), 3)
        XCTAssertEqual(Sampler.choose(logits, history: [3, 3], generated: [3, 3], options: SamplingOptions(temperature: 0, frequencyPenalty: 0.4), random: &random), 3)
        XCTAssertEqual(Sampler.choose(logits, history: [3, 3, 3], generated: [3, 3, 3], options: SamplingOptions(temperature: 0, frequencyPenalty: 0.4), random: &random), 0)
        XCTAssertThrowsError(try SamplingOptions(presencePenalty: 2.5).validate()) { XCTAssertEqual("\($0)", "presence-penalty must be between -2 and 2 (got 2.5)") }
        XCTAssertThrowsError(try SamplingOptions(frequencyPenalty: -3).validate())
        XCTAssertThrowsError(try SamplingOptions(topP: 0).validate()) { XCTAssertEqual("\($0)", "top-p must be above 0 and at most 1 (got 0.0)") }
        XCTAssertThrowsError(try SamplingOptions(repetitionPenalty: 0).validate())
        XCTAssertThrowsError(try SamplingOptions(temperature: -1).validate())
    }

    /// Over a vocabulary large enough for the partial selection (with ties among the logits), the k most likely
    /// tokens are the first k of the whole vocabulary sorted by (logit descending, id ascending), and greedy is its
    /// first.
    func testMostLikelyTokensAreTheHeadOfTheFullOrder() {
        var random = RandomStream(seed: 4, key: 1)
        let logits = (0..<5000).map { _ in Float(random.nextInt(below: 300)) / 10 }
        let full = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        for k in [1, 2, 40, 600] {
            XCTAssertEqual(Sampler.mostLikely(logits, count: k), Array(full.prefix(k)), "k = \(k)")
        }
        XCTAssertEqual(Sampler.choose(logits, history: [], options: SamplingOptions(temperature: 0), random: &random), Int32(full[0]))
    }

    /// Top-p without top-k orders only the candidates for the nucleus, and they begin with the nucleus itself: the
    /// smallest run of the whole vocabulary, sorted, whose probabilities reach p — for peaked and flat logits, ties,
    /// masked (−∞) tokens, and temperatures high and low.
    func testTheNucleusIsFoundWithoutSortingTheVocabulary() throws {
        var random = RandomStream(seed: 7, key: 3)
        for (temperature, spread) in [(Float(0.7), 300), (1, 60), (2, 3000), (0.05, 30)] {
            var logits = (0..<8000).map { _ in Float(random.nextInt(below: spread)) / 10 }
            for token in stride(from: 5, to: logits.count, by: 97) { logits[token] = -.infinity }
            let full = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            let top = Double(logits[full[0]])
            let weights = full.map { exp((Double(logits[$0]) - top) / Double(temperature)) }
            let total = weights.reduce(0, +)
            for topP: Float in [0.05, 0.5, 0.9, 0.99] {
                var cumulative = 0.0, size = 0
                while size < full.count, cumulative < Double(topP) {
                    cumulative += weights[size] / total
                    size += 1
                }
                let found = try XCTUnwrap(Sampler.nucleusCandidates(logits, temperature: temperature, topP: topP))
                XCTAssertEqual(Array(found.order.prefix(size)), Array(full.prefix(size)), "T \(temperature), p \(topP)")
                XCTAssertEqual(found.total, total, accuracy: total * 1e-12)
                XCTAssertFalse(found.order.contains { logits[$0] == -.infinity })
                var draws = RandomStream(seed: 1, key: 2)
                for _ in 0..<20 {
                    let token = Sampler.choose(logits, history: [], options: SamplingOptions(temperature: temperature, topK: 0, topP: topP),
                                               random: &draws)
                    XCTAssertTrue(full.prefix(size).contains(Int(token)), "T \(temperature), p \(topP): \(token) is outside the nucleus")
                }
            }
        }
        // A peaked distribution (a trained model's usual one) sorts a small part of the vocabulary.
        let peaked = (0..<8000).map { Float(-Double($0) / 50) }
        XCTAssertLessThan(try XCTUnwrap(Sampler.nucleusCandidates(peaked, temperature: 1, topP: 0.9)).order.count, 200)
        // Logits of a model that overflowed (NaN, +∞) draw a token as the whole sort did, rather than stop the process.
        for broken: [Float] in [[.nan, 1, 0], [1, .infinity, 0]] {
            var draws = RandomStream(seed: 3, key: 1)
            XCTAssertNil(Sampler.nucleusCandidates(broken, temperature: 1, topP: 0.9))
            XCTAssertTrue((0..<3).contains(Sampler.choose(broken, history: [], options: SamplingOptions(temperature: 1, topK: 0, topP: 0.9), random: &draws)))
        }
    }
}

private extension Sampler {
    /// `choose` after the tokens `history` of a sequence, of which it generated `generated`.
    static func choose(_ logits: [Float], history: [Int32], generated: [Int32] = [], options: SamplingOptions,
                       random: inout RandomStream) -> Int32 {
        choose(logits, seen: Set(history), generatedCounts: generated.reduce(into: [:]) { $0[$1, default: 0] += 1 },
               options: options, random: &random)
    }
}
