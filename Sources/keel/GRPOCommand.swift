import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelTrain

/// `keel grpo`: group-relative policy optimisation of a run on tasks with a reward a program checks.
struct GRPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grpo",
        abstract: "Optimise a run on tasks whose answers a program checks (GRPO), with a KL penalty to its starting weights.",
        discussion: """
            --data: JSONL files of tasks, {"prompt": …, "answer": …} as TRL's GRPOTrainer reads them: a string prompt \
            is continued as it is, a list of messages is rendered by the chat template beside the run's tokenizer with \
            the generation prompt. Each step takes training.batch_size × training.grad_accum prompts, samples \
            --group-size completions of each (up to --max-new-tokens, ended by the end-of-text token or the template's \
            end of turn) and rewards each with --reward: last-number (the completion's last number equals the answer) \
            or exact-match — or with --reward-model's score (tasks then need no answer). Advantages are normalised within each prompt's group; the loss is the clipped surrogate \
            with a KL penalty β to the starting weights. Held-out prompts (data.val_fraction) are answered greedily \
            before the first step, every training.eval_every steps and after the last, and their mean reward logged. \
            Settings as `keel dpo` takes them (lr default 1e-6, weight_decay 0, beta2 0.999, as TRL). Writes \
            DIR/metrics.jsonl and checkpoints of the weights. One process.
            """)

    @OptionGroup var common: FineTuningOptions

    @Option(help: "How a completion is rewarded: last-number or exact-match (the task's \"answer\" checked).")
    var reward: String = VerifiableReward.lastNumber.rawValue

    @Option(help: ArgumentHelp("Reward each completion with this reward model's score of the prompt and completion instead (`keel reward train`; the same tokenizer).", valueName: "dir"))
    var rewardModel: String?

    @Option(help: "Completions sampled per prompt.")
    var groupSize = 4

    @Option(help: "The longest completion, in tokens.")
    var maxNewTokens = 64

    @Option(help: "Sampling temperature.")
    var temperature: Float = 1

    @Option(help: "β: the weight of the KL penalty to the starting weights (0: none, and no reference model held).")
    var beta = 0.04

    @Option(help: "ε: the ratio to the sampling policy is clipped to [1 − ε, 1 + ε].")
    var epsilon = 0.2

    @Option(help: "Optimizer updates per batch of completions (μ).")
    var iterations = 1

    @Option(help: "How token losses add up: dapo (the mean over the step's completion tokens) or grpo (the mean over completions of their means).")
    var loss: String = GroupSettings.Aggregation.tokens.rawValue

    func validate() throws {
        if !(temperature > 0 && temperature.isFinite) { throw ValidationError("--temperature must be above 0 (got \(temperature))") }
        if VerifiableReward(rawValue: reward) == nil {
            throw ValidationError("--reward must be one of \(VerifiableReward.allCases.map(\.rawValue).joined(separator: ", ")) (got \(reward))")
        }
        if GroupSettings.Aggregation(rawValue: loss) == nil {
            throw ValidationError("--loss must be one of \(GroupSettings.Aggregation.allCases.map(\.rawValue).joined(separator: ", ")) (got \(loss))")
        }
    }

    func run() throws {
        var settings = GroupSettings()
        settings.groupSize = groupSize
        settings.maxNewTokens = maxNewTokens
        settings.temperature = temperature
        settings.beta = beta
        settings.epsilon = epsilon
        settings.iterations = iterations
        settings.aggregation = GroupSettings.Aggregation(rawValue: loss)!
        let check = VerifiableReward(rawValue: reward)!
        let defaults = FineTuningRun.trlDefaults(learningRate: "1e-6")
        try FineTuningRun.start(common, defaults: defaults, load: { tokenizer, path, config in
            try TaskData(paths: common.data, tokenizer: tokenizer, tokenizerPath: path,
                         validationFraction: config.data.validationFraction,
                         reward: rewardModel == nil ? check : nil)
        }) { run, tasks in
            guard run.group.size == 1 else { throw KeelError("keel grpo runs on one process (start it without mpirun)") }
            let t = run.config.training
            let policy = try (run.resumed ?? run.checkpoint).loadModel()
            let reference = settings.beta > 0 ? try run.checkpoint.loadModel() : nil
            let settingsFile = run.tokenizerPath == "byte" ? nil : TokenizerSettings(besides: run.tokenizerPath)
            // A reply ends at end of text, at the end-of-sequence token, at ChatML's end of turn (Keel's ChatML and
            // most templates close a turn with it, whatever eos_token says) — each its special token, or its text's
            // tokens where it is not one (a byte-level tokenizer spells `<|im_end|>` in bytes, as its SFT taught it) —
            // and at any other end-of-turn token the tokenizer has (`<|eot_id|>`, `<|end|>`), where generate stops.
            var stops = [[run.tokenizer.endOfText]] + Set([settingsFile?.endOfSequence, ChatFormat.end].compactMap { $0 }).sorted().map {
                run.tokenizer.specialToken($0).map { [$0] } ?? run.tokenizer.encode($0)
            }
            stops += EndOfTurn.tokens(in: run.tokenizer).map { [$0.token] }.filter { !stops.contains($0) }
            let tokenizer = run.tokenizer
            let score: ([[Int32]], [TaskPrompt]) throws -> [Double]
            if let rewardModel {
                let checkpoint = try CheckpointReader(resolving: rewardModel)
                guard try checkpoint.tokenizerContents() == run.checkpoint.tokenizerContents() else {
                    throw KeelError("--reward-model \(rewardModel) has another tokenizer than --init-from: it would read other tokens")
                }
                let model = try RewardModel(checkpoint: checkpoint)
                let formatter = tasks.formatter
                // The reward is read at a sequence's last token: one cut to the model's context would be scored in the
                // middle of its completion, so every prompt must leave room for the longest completion.
                let context = model.transformer.config.maxLength
                if let longest = try (tasks.train + tasks.validation).map({ try formatter.rewardExample($0, completion: "").tokens.count }).max(),
                   longest + maxNewTokens > context {
                    throw KeelError("--reward-model \(rewardModel) reads at most \(context) tokens (its max_seq_len), and the longest prompt as it reads it takes \(longest): "
                                    + (longest < context ? "lower --max-new-tokens to \(context - longest) or leave the longer prompts out"
                                                         : "leave the prompts of \(context) tokens or more out"))
                }
                score = { completions, prompts in
                    // Each completion rendered after its prompt as the reward model's training pairs were, so that it
                    // reads the reward where it learnt to: after the end-of-sequence token or the end of the turn.
                    var cut = 0
                    let sequences = try zip(completions, prompts).map { completion, prompt in
                        let sequence = try formatter.rewardExample(prompt, completion: try tokenizer.decodeText(completion))
                        // Encoded again, a completion can take more tokens than it was sampled in (bytes that are not
                        // UTF-8 decode to U+FFFD, three bytes): scored on its last tokens, where its reward is read.
                        guard sequence.tokens.count > context else { return sequence }
                        cut += 1
                        return SupervisedExample(tokens: Array(sequence.tokens.suffix(context)), trained: Array(sequence.trained.suffix(context)))
                    }
                    if cut > 0 {
                        run.log("warning: \(cut) completion\(cut == 1 ? "" : "s") took more than the reward model's \(context) tokens once decoded and encoded again: scored on \(cut == 1 ? "its" : "their") last \(context) tokens")
                    }
                    return model.rewards(of: sequences, batch: t.batchSize * groupSize,
                                         maximumLength: model.transformer.config.maxLength,
                                         padding: tokenizer.endOfText)
                }
            } else {
                score = { completions, tasks in
                    try zip(completions, tasks).map { check.reward($1.reply + (try tokenizer.decodeText($0)), fields: $1.fields) }
                }
            }
            let trainer = try GroupRelativeOptimization(
                policy: policy, reference: reference, train: tasks.train, validation: tasks.validation, settings: settings,
                training: t, shuffles: !common.noShuffle, padding: tokenizer.endOfText, stops: stops,
                vocabulary: tokenizer.vocabSize, reward: score)
            run.log("data: \(tasks.summary)")
            run.log("GRPO from \(run.checkpoint.directory.path): \(t.steps) steps of \(t.batchSize * t.gradientAccumulation) prompts × "
                    + "\(groupSize) completions (up to \(maxNewTokens) tokens, temperature \(temperature)), reward \(rewardModel.map { "model \($0)" } ?? reward), "
                    + "β \(beta), ε \(epsilon), \(iterations) update\(iterations == 1 ? "" : "s") each, loss \(loss), lr \(t.learningRate)")
            try run.loop(step: { number, rate in
                let m = try trainer.step(number, learningRate: rate)
                return ([("reward", .double(m.reward)), ("reward_std", .double(m.rewardSpread)), ("flat_groups", .double(m.flatGroups)),
                         ("completion_length", .double(m.completionLength)), ("truncated", .double(m.truncated)),
                         ("kl", .double(m.kl)), ("clipped", .double(m.clipped)), ("loss", .double(m.loss)),
                         ("grad_norm", .double(m.gradientNorm))],
                        String(format: "reward %.3f (std %.3f) | length %.1f | KL %.4f | clipped %.3f | loss %.4f | grad norm %.3f",
                               m.reward, m.rewardSpread, m.completionLength, m.kl, m.clipped, m.loss, m.gradientNorm))
            }, evaluate: {
                guard !tasks.validation.isEmpty else { return nil }
                let result = try trainer.evaluate()
                let first = (try? tokenizer.decodeText(result.first)) ?? ""
                return ([("val_reward", .double(result.reward))],
                        String(format: "greedy reward %.3f on %d prompts; the first: %@", result.reward, tasks.validation.count,
                               String(reflecting: first)))
            }, model: policy, state: trainer.stateBuffers,
            recipe: run.recipe(options: ["reward": reward, "reward-model": rewardModel.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "(unset)", "group-size": "\(groupSize)",
                                        "max-new-tokens": "\(maxNewTokens)", "temperature": "\(temperature)", "beta": "\(beta)",
                                        "epsilon": "\(epsilon)", "iterations": "\(iterations)", "loss": loss,
                                        "no-shuffle": "\(common.noShuffle)"]) { hasher in
                (tasks.train + tasks.validation).forEach { hasher.add($0) }
            }, extras: { [:] })
        }
    }
}
