import KeelCore

/// Why a sequence's generation ended.
public enum FinishReason: String, Sendable {
    /// It reached its token limit.
    case length
    /// Its caller stopped it (a stop string, an end token, a client gone).
    case stop
}

/// Sequences being generated together: each admitted with its prompt (prefilled at once), then advanced one token
/// per step, all the sequences' new tokens run through the model as one batch. `Decoder.generate` drives one to
/// the end; a server admits requests into one as they arrive.
public final class GenerationBatch {
    private struct Entry {
        let id: Int
        let sequence: DecoderSequence
        var text: [Int32]
        var generated: [Int32] = []
        /// The distinct tokens of `text` and how often each was generated: the penalties' inputs, kept as they grow.
        var seen: Set<Int32>
        var generatedCounts: [Int32: Int] = [:]
        var logits: [Float]
        let maxTokens: Int
        let options: SamplingOptions
    }

    public let decoder: Decoder
    /// The token the model's texts start with (Llama's BOS), when it has one: kept first when a text is cut to the
    /// context (`contextWindow`).
    public let textStart: Int32?
    private var entries: [Entry] = []

    public init(decoder: Decoder, textStart: Int32? = nil) {
        self.decoder = decoder
        self.textStart = textStart
    }

    /// Whether no sequence is being generated.
    public var isEmpty: Bool { entries.isEmpty }
    /// How many sequences are being generated.
    public var count: Int { entries.count }

    /// Adds a sequence: `prompt` (its last `max_seq_len` tokens, `contextWindow`; an empty one starts from token 0)
    /// goes through the model as one batch of rows. It will get at most `maxTokens` tokens (at least one).
    public func admit(id: Int, prompt: [Int32], maxTokens: Int, options: SamplingOptions) {
        let text = prompt.isEmpty ? [Int32(0)] : prompt
        let sequence = decoder.makeSequence()
        let logits = decoder.append(contextWindow(of: text, count: decoder.config.maxLength, keeping: textStart), to: sequence)
        entries.append(Entry(id: id, sequence: sequence, text: text, seen: Set(text), logits: logits, maxTokens: max(1, maxTokens),
                             options: options))
    }

    /// Draws the next token of every sequence and hands it to `accept` (id, token, the sequence's tokens so far),
    /// which says whether the sequence goes on; then runs the tokens of those that go on through the model as one
    /// batch. Returns the sequences that ended, with their generated tokens.
    ///
    /// The draw for a position depends only on the seed and the position, so a prompt gets the same draws alone or
    /// in any batch; its logits are the same up to the order of sums (one sequence's step multiplies a vector, a
    /// batch's a matrix, on other kernels), so at a near-tie the text can part. A sequence that reaches `max_seq_len` is refilled from its last half and goes on, as the model
    /// saw at most that much text in training.
    public func advance(_ accept: (_ id: Int, _ token: Int32, _ generated: [Int32]) -> Bool) -> [(id: Int, generated: [Int32], reason: FinishReason)] {
        var finished: [(id: Int, generated: [Int32], reason: FinishReason)] = []
        var stepping: [Int] = []
        for index in entries.indices {
            var random = RandomStream(seed: entries[index].options.seed, key: 0x5A3, UInt64(entries[index].generated.count))
            let token = Sampler.choose(entries[index].logits, seen: entries[index].seen,
                                       generatedCounts: entries[index].generatedCounts, options: entries[index].options,
                                       random: &random)
            entries[index].text.append(token)
            entries[index].generated.append(token)
            entries[index].seen.insert(token)
            entries[index].generatedCounts[token, default: 0] += 1
            let entry = entries[index]
            if !accept(entry.id, token, entry.generated) {
                finished.append((entry.id, entry.generated, .stop))
            } else if entry.generated.count >= entry.maxTokens {
                finished.append((entry.id, entry.generated, .length))
            } else if entry.sequence.count == decoder.config.maxLength {
                // Full: refill from the last half of the text (its keys are rotated by position, so they are
                // computed again rather than moved).
                entry.sequence.reset()
                entries[index].logits = decoder.append(contextWindow(of: entry.text, count: decoder.config.maxLength / 2 + 1, keeping: textStart),
                                                       to: entry.sequence)
            } else {
                stepping.append(index)
            }
        }
        if !stepping.isEmpty {
            let logits = decoder.step(stepping.map { entries[$0].text.last! }, sequences: stepping.map { entries[$0].sequence })
            for (index, values) in zip(stepping, logits) { entries[index].logits = values }
        }
        let ended = Set(finished.map(\.id))
        entries.removeAll { ended.contains($0.id) }
        return finished
    }
}

/// The last `count` tokens of `text`, for a model that reads at most that many; when `text` begins with `start` (the
/// token the model's texts start with, like Llama's BOS), that token stays first, as llama.cpp keeps BOS when it
/// shifts its context: the model never saw a text without it.
public func contextWindow(of text: [Int32], count: Int, keeping start: Int32?) -> [Int32] {
    guard text.count > count else { return text }
    if let start, text.first == start, count > 1 { return [start] + text.suffix(count - 1) }
    return Array(text.suffix(count))
}

extension Decoder {
    /// Continues each of `prompts` by up to `maxTokens` tokens, the prompts prefilled one by one and then stepped
    /// together (`GenerationBatch`, which keeps `textStart` first when it cuts a text to the context). `emit` gets
    /// each token as it is chosen (prompt index, token); a sequence ends when `shouldStop` says so after one of its
    /// tokens. Returns each prompt's generated tokens.
    public func generate(
        prompts: [[Int32]], maxTokens: Int, options: SamplingOptions, textStart: Int32? = nil,
        shouldStop: (_ sequence: Int, _ generated: [Int32]) -> Bool = { _, _ in false },
        emit: (_ sequence: Int, _ token: Int32) -> Void = { _, _ in }
    ) -> [[Int32]] {
        var generated = [[Int32]](repeating: [], count: prompts.count)
        guard maxTokens > 0 else { return generated }
        let batch = GenerationBatch(decoder: self, textStart: textStart)
        for (index, prompt) in prompts.enumerated() { batch.admit(id: index, prompt: prompt, maxTokens: maxTokens, options: options) }
        while !batch.isEmpty {
            for ended in batch.advance({ index, token, tokens in
                emit(index, token)
                return !shouldStop(index, tokens)
            }) {
                generated[ended.id] = ended.generated
            }
        }
        return generated
    }
}
