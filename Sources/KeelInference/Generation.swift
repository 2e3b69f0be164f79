import KeelCore

extension Decoder {
    /// Continues each of `prompts` by up to `maxTokens` tokens, the prompts prefilled one by one and then stepped
    /// together, one token each per step. `emit` gets each token as it is chosen (sequence index, token); a
    /// sequence ends when `shouldStop` says so after one of its tokens (a stop string was written, an end token
    /// came). A sequence that reaches `max_seq_len` is refilled from its last half and goes on, as the model saw
    /// at most that much text in training. Returns each prompt's generated tokens.
    public func generate(
        prompts: [[Int32]], maxTokens: Int, options: SamplingOptions,
        shouldStop: (_ sequence: Int, _ generated: [Int32]) -> Bool = { _, _ in false },
        emit: (_ sequence: Int, _ token: Int32) -> Void = { _, _ in }
    ) -> [[Int32]] {
        var texts = prompts.map { $0.isEmpty ? [Int32(0)] : $0 }
        var generated = [[Int32]](repeating: [], count: prompts.count)
        guard maxTokens > 0 else { return generated }
        let sequences = prompts.map { _ in makeSequence() }
        var logits = texts.enumerated().map { index, text in
            append(Array(text.suffix(config.maxLength)), to: sequences[index])
        }
        var active = Array(prompts.indices)
        for position in 0..<maxTokens {
            var next: [Int32] = []
            for index in active {
                // Keyed by position only: a prompt gets the same text alone or in any batch.
                var random = RandomStream(seed: options.seed, key: 0x5A3, UInt64(position))
                let token = Sampler.choose(logits[index], history: texts[index], options: options, random: &random)
                texts[index].append(token)
                generated[index].append(token)
                emit(index, token)
                next.append(token)
            }
            let stopping = active.filter { shouldStop($0, generated[$0]) }
            var stepping: [(index: Int, token: Int32)] = []
            for (index, token) in zip(active, next) where !stopping.contains(index) {
                if sequences[index].count == config.maxLength {
                    // Full: refill from the last half of the text (its keys are rotated by position, so they are
                    // computed again rather than moved).
                    sequences[index].reset()
                    logits[index] = append(Array(texts[index].suffix(config.maxLength / 2 + 1)), to: sequences[index])
                } else {
                    stepping.append((index, token))
                }
            }
            active = active.filter { !stopping.contains($0) }
            guard !active.isEmpty, position + 1 < maxTokens else { break }
            if !stepping.isEmpty {
                let stepped = step(stepping.map(\.token), sequences: stepping.map { sequences[$0.index] })
                for (item, values) in zip(stepping, stepped) { logits[item.index] = values }
            }
        }
        return generated
    }
}
