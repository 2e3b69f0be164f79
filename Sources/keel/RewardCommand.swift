import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelTrain

/// `keel reward`: reward models of human preferences, trained and then measured for trust.
struct Reward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reward",
        abstract: "Train reward models on preference pairs, and measure how far they can be trusted.",
        subcommands: [RewardTrain.self, RewardEval.self])
}

/// `keel reward train`: a scalar head on a run, trained with the Bradley–Terry loss.
struct RewardTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a reward model: a run with a scalar head, on preference pairs (Bradley–Terry).",
        discussion: """
            --data: JSONL files of preference pairs as `keel dpo` reads them ({"prompt", "chosen", "rejected"}, or \
            {"chosen", "rejected"} sharing their prompt; a number "margin" is subtracted from the reward difference, \
            as TRL's RewardTrainer does). A sequence's reward is a head (score.weight, drawn by training.seed) applied \
            to the final norm's features at its last token; sequences are cut to training.seq_len tokens. \
            Settings as `keel dpo` takes them ([training] keys with --set or --config: batch_size pairs per \
            micro-batch, grad_accum, steps, lr (default 1e-4, as TRL's RewardConfig), weight_decay (default 0), beta2 \
            (default 0.999), seed); data.val_fraction holds pairs out, and their accuracy is logged. Writes \
            DIR/metrics.jsonl and checkpoints of the weights with the head in reward_head.safetensors. Under mpirun \
            the processes are data-parallel replicas.
            """)

    @OptionGroup var common: FineTuningOptions

    @Option(help: "Centring coefficient: adds it × (r_chosen + r_rejected)² to the loss, keeping rewards near zero (TRL's center_rewards_coefficient).")
    var centering: Double = 0

    @Option(help: "Seed of the pairs' order alone (default: training.seed, which also draws the head): models that differ only in the order their data came in.")
    var orderSeed: UInt64?

    func run() throws {
        let defaults = FineTuningRun.trlDefaults(learningRate: "1e-4")
        try FineTuningRun.start(common, defaults: defaults, load: { tokenizer, path, settings in
            try PreferenceData(paths: common.data, tokenizer: tokenizer, tokenizerPath: path, length: settings.training.sequenceLength,
                               validationFraction: settings.data.validationFraction, forRewardModel: true)
        }) { run, data in
            let t = run.config.training
            run.log("data: \(data.summary)")
            let model = try run.resumed.map(RewardModel.init(checkpoint:))
                ?? RewardModel(transformer: try run.checkpoint.loadModel(), seed: t.seed)
            let trainer = try RewardTraining(model: model, train: data.train, validation: data.validation,
                                             centering: centering, training: t, shuffles: !common.noShuffle, orderSeed: orderSeed,
                                             padding: run.tokenizer.endOfText, group: run.group)
            let pairsPerStep = t.batchSize * t.gradientAccumulation * run.group.size
            run.log("reward model from \(run.checkpoint.directory.path): \(t.steps) steps of \(pairsPerStep) pairs "
                    + "(\(String(format: "%.2f", Double(t.steps * pairsPerStep) / Double(data.train.count))) epochs), "
                    + "lr \(t.learningRate), seed \(t.seed)\(orderSeed.map { ", order seed \($0)" } ?? ""), \(run.group.size) process\(run.group.size == 1 ? "" : "es")")
            try run.loop(step: { number, rate in
                let m = try trainer.step(number, learningRate: rate)
                return ([("loss", .double(m.loss)), ("accuracy", .double(m.accuracy)), ("rewards_chosen", .double(m.chosenReward)),
                         ("rewards_rejected", .double(m.rejectedReward)), ("grad_norm", .double(m.gradientNorm))],
                        String(format: "loss %.4f | accuracy %.3f | rewards %.4f / %.4f | grad norm %.3f", m.loss, m.accuracy,
                               m.chosenReward, m.rejectedReward, m.gradientNorm))
            }, evaluate: {
                guard !data.validation.isEmpty else { return nil }
                let m = try trainer.evaluate()
                return ([("val_loss", .double(m.loss)), ("val_accuracy", .double(m.accuracy)), ("val_margin", .double(m.margin))],
                        String(format: "loss %.4f, accuracy %.3f, margin %.4f (%d pairs)", m.loss, m.accuracy, m.margin, m.pairs))
            }, model: model.transformer, state: trainer.stateBuffers,
            recipe: run.recipe(options: ["centering": "\(centering)", "order-seed": orderSeed.map(String.init) ?? "(unset)",
                                        "no-shuffle": "\(common.noShuffle)"]) { hasher in
                (data.train + data.validation).forEach { hasher.add($0) }
            }, extras: { [RewardModel.headFile: try model.headFileContents()] })
        }
    }
}

/// `keel reward eval`: one or more reward models on held-out pairs.
struct RewardEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure reward models on held-out preference pairs: accuracy, calibration, length bias, agreement.",
        discussion: """
            For each model: pairwise accuracy (a tie counts as wrong), expected calibration error of \
            σ(r_chosen − r_rejected), the correlation of reward with response length and the accuracy on pairs whose \
            chosen response is the shorter. With several models (other seeds, other data orders): the share of pairs \
            each two order alike and the rank correlation of their rewards, and their mean as an ensemble whose \
            disagreement is the uncertainty (its accuracy where the models agree most and least). Triples of \
            responses to one prompt labelled pairwise are checked for cyclic labels and for the models' order. The \
            models must share a tokenizer; sequences are cut to --seq-len tokens.
            """)

    @Option(name: .customLong("model"), help: ArgumentHelp("A reward model's run or checkpoint (repeat to compare several).", valueName: "dir"))
    var models: [String] = []

    @Option(help: ArgumentHelp("Held-out preference pairs (repeat for several files).", valueName: "file.jsonl"))
    var data: [String] = []

    @Option(help: "Tokens a sequence is cut to (default: the model's context).")
    var seqLen: Int?

    @Option(help: "Pairs per forward pass.")
    var batchSize = 8

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: ArgumentHelp("Also write the report as JSON to this file.", valueName: "file.json"))
    var save: String?

    func validate() throws {
        if models.isEmpty { throw ValidationError("give a reward model with --model DIR") }
        if data.isEmpty { throw ValidationError("give the held-out pairs with --data FILE.jsonl") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let checkpoints = try models.map { try CheckpointReader(resolving: $0) }
        // Each model's tokenizer is the file its state names (tokenizer.json, gpt2.json, cl100k_base.tiktoken, or bytes).
        let contents = try checkpoints.map { try $0.tokenizerContents() }
        if let different = contents.firstIndex(where: { $0 != contents[0] }) {
            throw KeelError("\(models[different]) has another tokenizer than \(models[0]): reward models compared on the same pairs must share one")
        }
        let tokenizerPath = checkpoints[0].tokenizerPath
        let tokenizer = try loadTokenizer(tokenizerPath)
        let length = seqLen ?? checkpoints[0].model.maxLength
        guard length >= 1, length <= checkpoints.map(\.model.maxLength).min()! else {
            throw KeelError("--seq-len \(length) must be within 1...\(checkpoints.map(\.model.maxLength).min()!) (the models' context)")
        }
        let pairs = try PreferenceData(paths: data, tokenizer: tokenizer, tokenizerPath: tokenizerPath, length: length,
                                       validationFraction: 0, forRewardModel: true, lengthName: "--seq-len")
        StandardStreams.error("data: \(pairs.summary)\n")
        var scores: [(name: String, rewards: [(chosen: Double, rejected: Double)])] = []
        for (name, checkpoint) in zip(models, checkpoints) {
            let model = try RewardModel(checkpoint: checkpoint)
            scores.append((name, model.rewards(of: pairs.train, batch: batchSize, maximumLength: length, padding: tokenizer.endOfText)))
        }
        let report = RewardEvaluation(pairs: pairs.train, scores: scores)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let encoded = try encoder.encode(report)
        if let save { try AtomicFile.write(encoded, to: URL(fileURLWithPath: save)) }
        print(json ? String(decoding: encoded, as: UTF8.self) : report.text)
    }
}
