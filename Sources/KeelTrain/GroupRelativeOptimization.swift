import Foundation
import KeelComm
import KeelCore
import KeelData
import KeelInference
import KeelKernels
import KeelModel

/// How GRPO samples and weighs.
public struct GroupSettings: Sendable {
    /// Completions sampled per prompt (TRL's `num_generations`).
    public var groupSize = 4
    /// The longest completion; one that reaches it without a stop token is kept as it is (truncated).
    public var maxNewTokens = 64
    public var temperature: Float = 1
    /// β: the KL penalty's weight (DeepSeekMath's 0.04; TRL's default is 0, which needs no reference).
    public var beta = 0.04
    /// ε: the ratio π/π_old is clipped to [1 − ε, 1 + ε].
    public var epsilon = 0.2
    /// Optimizer updates per batch of completions (TRL's `num_iterations`, μ): the ratio and its clipping matter from
    /// the second.
    public var iterations = 1
    /// How token losses make the step's loss.
    public var aggregation = Aggregation.tokens

    public enum Aggregation: String, Sendable, CaseIterable {
        /// The mean over every completion token of the step (DAPO's, TRL's default `dapo`): no length bias.
        case tokens = "dapo"
        /// The mean over completions of each one's mean over its tokens (DeepSeekMath's original `grpo`).
        case sequences = "grpo"
    }

    public init() {}
}

/// What a GRPO step measured.
public struct GroupMetrics: Sendable {
    /// Mean reward of the step's completions, and the mean over groups of their rewards' standard deviation.
    public var reward = 0.0
    public var rewardSpread = 0.0
    /// The share of groups whose completions all got the same reward (no advantage, nothing learnt from them).
    public var flatGroups = 0.0
    /// Mean completion length in tokens, and the share that hit the length limit.
    public var completionLength = 0.0
    public var truncated = 0.0
    /// Mean per-token KL estimate to the reference (k3: e^(ρ − π) − (ρ − π) − 1), over the first update's tokens.
    public var kl = 0.0
    /// The share of tokens whose ratio was clipped, over all updates.
    public var clipped = 0.0
    /// The loss of the first update, and the gradient norm of the last.
    public var loss = 0.0
    public var gradientNorm = 0.0
}

/// Group-relative policy optimisation (GRPO, Shao et al. 2024, DeepSeekMath), as TRL's `GRPOTrainer` runs it: for
/// each of a step's prompts, `groupSize` completions sampled from the policy by the KV-cache decoder; a reward for
/// each; advantages normalised within the group ((r − mean) / (std + 10⁻⁴), std with Bessel's correction, as TRL's);
/// then `iterations` updates of the clipped surrogate −min(ρA, clip(ρ, 1 ± ε)A) + β·k3(π, π_ref) per completion token,
/// ρ = π/π_old. As in `PreferenceOptimization`, each micro-batch's forward pass without gradients gives the
/// per-token log-probabilities, which set each token's derivative, and a second one weighs each position's
/// cross-entropy by it (`Transformer.forward(lossWeights:)`) before the backward pass. One process.
public final class GroupRelativeOptimization {
    public let policy: Transformer
    /// The frozen starting weights (nil when β is 0: no KL term).
    public let reference: Transformer?
    public let settings: GroupSettings
    public let training: TrainConfig.TrainingSettings
    public let train: [TaskPrompt]
    public let validation: [TaskPrompt]
    private let decoder: Decoder
    private let optimizer: Optimizer
    private let order: PairOrder
    private let padding: Int32
    private let stops: [[Int32]]
    /// The tokenizer's ids: completions are drawn among them.
    private let vocabulary: Int
    private let reward: (_ completions: [[Int32]], _ tasks: [TaskPrompt]) throws -> [Double]

    /// - Parameters:
    ///   - reward: the rewards of completions (their tokens without the stop token), each for its task — all of a
    ///     batch at once, so that a reward model scores them together.
    ///   - stops: the token sequences that end a completion (end of text, the chat template's end of turn: one special
    ///     token, or the bytes of `<|im_end|>` for a byte-level tokenizer).
    ///   - vocabulary: the tokenizer's ids, among which completions are drawn (the model's may be padded beyond).
    public init(policy: Transformer, reference: Transformer?, train: [TaskPrompt], validation: [TaskPrompt],
                settings: GroupSettings, training: TrainConfig.TrainingSettings, shuffles: Bool, padding: Int32,
                stops: [[Int32]], vocabulary: Int,
                reward: @escaping (_ completions: [[Int32]], _ tasks: [TaskPrompt]) throws -> [Double]) throws {
        order = try PairOrder(count: train.count, kind: "prompts", training: training, ranks: nil, shuffles: shuffles)
        // Each bound names its flag; the group's completions are generated and held at once, so their count is capped.
        guard (2...4096).contains(settings.groupSize) else {
            throw KeelError("--group-size must be from 2 to 4096 completions per prompt (got \(settings.groupSize))")
        }
        guard settings.maxNewTokens >= 1 else { throw KeelError("--max-new-tokens must be positive (got \(settings.maxNewTokens))") }
        guard settings.iterations >= 1 else { throw KeelError("--iterations must be positive (got \(settings.iterations))") }
        guard settings.epsilon > 0, settings.epsilon.isFinite else {
            throw KeelError("--epsilon must be a positive number (got \(settings.epsilon))")
        }
        guard settings.beta >= 0, settings.beta.isFinite else {
            throw KeelError("--beta must be a number that is not negative (got \(settings.beta))")
        }
        guard settings.beta == 0 || reference != nil else { throw KeelError("a KL penalty (β > 0) needs the reference model") }
        if let longest = (train + validation).map(\.tokens.count).max(), longest >= training.sequenceLength {
            throw KeelError("a prompt of \(longest) tokens leaves no room for a completion within training.seq_len (\(training.sequenceLength))")
        }
        self.policy = policy
        self.reference = reference
        self.settings = settings
        self.training = training
        self.train = train
        self.validation = validation
        self.padding = padding
        guard !stops.contains(where: \.isEmpty) else { throw KeelError("an empty stop sequence") }
        self.stops = stops
        self.vocabulary = vocabulary
        self.reward = reward
        policy.matrixPrecision = training.precision
        reference?.matrixPrecision = training.precision
        // The log-probabilities — the sampler's, the policy's and the reference's — are all of the distribution at the
        // sampling temperature, as TRL's GRPOTrainer divides the logits by it: the ratio then compares the policy with
        // the distribution the completions were drawn from.
        guard settings.temperature > 0 else { throw KeelError("GRPO samples at a temperature above 0 (got \(settings.temperature))") }
        policy.lossTemperature = settings.temperature
        reference?.lossTemperature = settings.temperature
        // The decoder reads the policy's parameters where they are: it samples from the weights as they change.
        decoder = try Decoder(model: policy)
        optimizer = Optimizer(model: policy, dataParallel: SingleProcessCommunicator(), zeroStage: 0, settings: training.adamW,
                              decayEmbeddings: training.decayEmbeddings)
    }

    /// What a checkpoint keeps to resume: AdamW's moments (`TrainingStateFile`).
    public var stateBuffers: [String: FloatBuffer] { ["adam.m": optimizer.m, "adam.v": optimizer.v] }

    /// A completion: its tokens (with the stop sequence that ended it, if one did) and its reward.
    struct Completion {
        var tokens: [Int32]
        var stopped: Bool
        var reward: Double
    }

    /// Completions of `tasks` — `count` each, drawn with seeds from `seed` (temperature 0: greedy) — and their rewards.
    func complete(_ tasks: [TaskPrompt], count: Int, temperature: Float, seed: UInt64) throws -> [[Completion]] {
        let batch = GenerationBatch(decoder: decoder)
        let room = training.sequenceLength
        for (i, task) in tasks.enumerated() {
            for j in 0..<count {
                var random = RandomStream(seed: seed, key: UInt64(i), UInt64(j))
                let options = SamplingOptions(temperature: temperature, topK: 0, topP: 1, seed: random.next(), vocabulary: vocabulary)
                batch.admit(id: i * count + j, prompt: task.tokens, maxTokens: min(settings.maxNewTokens, room - task.tokens.count),
                            options: options)
            }
        }
        var generated = [[Int32]](repeating: [], count: tasks.count * count)
        while !batch.isEmpty {
            for ended in batch.advance({ _, _, tokens in stopLength(tokens) == nil }) { generated[ended.id] = ended.generated }
        }
        let stopLengths = generated.map(stopLength)
        let rewards = try reward(zip(generated, stopLengths).map { Array($0.dropLast($1 ?? 0)) },
                                 tasks.flatMap { Array(repeating: $0, count: count) })
        return tasks.indices.map { i in
            (0..<count).map { j in
                Completion(tokens: generated[i * count + j], stopped: stopLengths[i * count + j] != nil, reward: rewards[i * count + j])
            }
        }
    }

    /// The length of the stop sequence that `tokens` end with, if they end with one.
    private func stopLength(_ tokens: [Int32]) -> Int? {
        stops.first { tokens.count >= $0.count && tokens.suffix($0.count).elementsEqual($0) }?.count
    }

    /// A step's completions as the updates read them: per micro-batch, the sequences (prompt and completion), each
    /// completion's advantage, and the sampling policy's and the reference's log-probability of every target.
    struct Round {
        var microBatches: [(batch: SequenceBatch, advantages: [Double], old: [Float], reference: [Float])] = []
        /// The step's completion tokens, and completions: the loss's normalisers.
        var tokens: Int { microBatches.reduce(0) { $0 + $1.batch.completionLengths.reduce(0, +) } }
        var completions: Int { microBatches.reduce(0) { $0 + $1.batch.rows } }

        /// Adds a micro-batch of `sequences` with their `advantages`, the log-probabilities read from `policy` (as it
        /// samples) and `reference`.
        mutating func add(_ sequences: [SupervisedExample], advantages: [Double], policy: Transformer, reference: Transformer?,
                          maximumLength: Int, padding: Int32) {
            let batch = SequenceBatch(sequences: sequences, maximumLength: maximumLength, padding: padding)
            microBatches.append((batch, advantages, GroupRelativeOptimization.logProbabilities(policy, batch),
                                 reference.map { GroupRelativeOptimization.logProbabilities($0, batch) } ?? []))
        }
    }

    /// Runs step `number` (from 1): samples the completions of the step's prompts, then `iterations` AdamW updates at
    /// `learningRate`. Throws `TrainingDiverged`, before the update that would use them, when the loss or the gradient
    /// norm is not finite.
    public func step(_ number: Int, learningRate: Float) throws -> GroupMetrics {
        let b = training.batchSize, m = training.gradientAccumulation, k = settings.groupSize
        var metrics = GroupMetrics()
        // 1. Completions and advantages, micro-batch by micro-batch of b prompts.
        var round = Round()
        var rewards: [Double] = [], spreads: [Double] = [], lengths: [Int] = [], truncated = 0
        for micro in 0..<m {
            let tasks = order.indices(step: number, microBatch: micro, batch: b, accumulation: m, rank: 0, ranks: 1).map { train[$0] }
            let groups = try complete(tasks, count: k, temperature: settings.temperature,
                                      seed: training.seed &+ UInt64(number) &* 0x9E37_79B9 &+ UInt64(micro))
            let values = groups.flatMap { $0.map(\.reward) }
            let (advantages, groupSpreads) = PolicyLoss.groupAdvantages(values, groupSize: k)
            rewards += values
            spreads += groupSpreads
            var sequences: [SupervisedExample] = []
            for (task, group) in zip(tasks, groups) {
                for completion in group {
                    sequences.append(SupervisedExample(tokens: task.tokens + completion.tokens,
                                                       trained: task.tokens.map { _ in false } + completion.tokens.map { _ in true }))
                    lengths.append(completion.tokens.count)
                    truncated += completion.stopped ? 0 : 1
                }
            }
            round.add(sequences, advantages: advantages, policy: policy, reference: reference,
                      maximumLength: training.sequenceLength, padding: padding)
        }
        metrics.reward = rewards.reduce(0, +) / Double(rewards.count)
        metrics.rewardSpread = spreads.reduce(0, +) / Double(spreads.count)
        metrics.flatGroups = Double(spreads.filter { $0 == 0 }.count) / Double(spreads.count)
        metrics.completionLength = Double(lengths.reduce(0, +)) / Double(lengths.count)
        metrics.truncated = Double(truncated) / Double(lengths.count)

        // 2. The updates.
        var clipped = 0
        for iteration in 1...settings.iterations {
            policy.gradients.zero()
            let pass = accumulate(round, firstIteration: iteration == 1)
            clipped += pass.clipped
            let norm = optimizer.shard.sumOfSquares().squareRoot()
            if iteration == 1 {
                metrics.loss = pass.loss
                metrics.kl = pass.kl / Double(max(1, round.tokens))
            }
            metrics.gradientNorm = norm
            let scale = try TrainingDiverged.clippingFactor(loss: pass.loss, norm: norm, clip: training.gradientClip, step: number)
            try optimizer.update(learningRate: learningRate, step: (number - 1) * settings.iterations + iteration, gradientScale: scale)
        }
        metrics.clipped = Double(clipped) / Double(max(1, round.tokens * settings.iterations))
        return metrics
    }

    /// Adds the gradient of the round's loss into the policy's gradients: the token losses (`PolicyLoss`) weighed by
    /// the aggregation, each token's derivative in log π set as its position's loss weight. The first iteration
    /// reads the policy's log-probabilities from the round (they are the sampling policy's); later ones compute them.
    /// Returns the loss, the sum of the tokens' KL estimates, and how many tokens were clipped.
    func accumulate(_ round: Round, firstIteration: Bool) -> (loss: Double, kl: Double, clipped: Int) {
        let tokens = round.tokens, completions = round.completions
        var loss = 0.0, kl = 0.0, clipped = 0
        for (batch, advantages, old, reference) in round.microBatches {
            let current = firstIteration ? old : Self.logProbabilities(policy, batch)
            var weights = [Float](repeating: 0, count: batch.rows * batch.length)
            for row in 0..<batch.rows {
                let scale = settings.aggregation == .tokens
                    ? 1 / Double(max(1, tokens)) : 1 / (Double(completions) * Double(max(1, batch.completionLengths[row])))
                for t in 0..<batch.length where batch.targets[row * batch.length + t] != CrossEntropy.ignored {
                    let at = row * batch.length + t, lp = Double(current[at])
                    let token = PolicyLoss.clippedSurrogate(
                        logProbability: lp, old: Double(old[at]), reference: reference.isEmpty ? nil : Double(reference[at]),
                        advantage: advantages[row], epsilon: settings.epsilon, beta: settings.beta)
                    clipped += token.clipped ? 1 : 0
                    if !reference.isEmpty { kl += PolicyLoss.kl(logProbability: lp, reference: Double(reference[at])) }
                    loss += scale * token.loss
                    // The loss weighs log π; the model's position losses are −log π.
                    weights[at] = Float(-scale * token.derivative)
                }
            }
            batch.withTokens { inputs, targets in
                weights.withUnsafeBufferPointer { w in
                    _ = policy.forward(inputs: inputs, targets: targets, batch: batch.rows, length: batch.length, lossScale: 1,
                                       lossWeights: w.baseAddress!)
                }
            }
            policy.backward()
        }
        return (loss, kl, clipped)
    }

    /// The mean reward of greedy completions of the validation prompts, and the first prompt's completion.
    public func evaluate() throws -> (reward: Double, first: [Int32]) {
        guard !validation.isEmpty else { return (0, []) }
        var total = 0.0, first: [Int32] = []
        for start in stride(from: 0, to: validation.count, by: training.batchSize) {
            let tasks = Array(validation[start..<min(start + training.batchSize, validation.count)])
            let groups = try complete(tasks, count: 1, temperature: 0, seed: 0)
            if start == 0 { first = groups[0][0].tokens }
            total += groups.reduce(0.0) { $0 + $1[0].reward }
        }
        return (total / Double(validation.count), first)
    }

    /// `model`'s log-probability of each position's target ([rows · length]; 0 where there is none).
    static func logProbabilities(_ model: Transformer, _ batch: SequenceBatch) -> [Float] {
        batch.withTokens { inputs, targets in
            _ = model.forward(inputs: inputs, targets: targets, batch: batch.rows, length: batch.length)
        }
        return model.rowLosses().map { -$0 }
    }
}
