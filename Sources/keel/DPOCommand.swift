import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelComm
import KeelCore
import KeelData
import KeelKernels
import KeelTrain

/// `keel dpo`: direct preference optimisation (or IPO) of a run against its own starting weights.
struct DPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Optimise a run on preference pairs (DPO or IPO) against its starting weights.",
        discussion: """
            --data: JSONL files of {"prompt", "chosen", "rejected"} lines in TRL's preference format (three strings, \
            or three lists of messages rendered by the chat template beside the run's tokenizer), or of \
            {"chosen", "rejected"} alone, whose shared beginning is the prompt. The reference is --init-from's \
            weights: its log-probabilities of every pair are computed once, before the first step. Training settings \
            come from [training] keys given with --set (or --config): batch_size pairs per micro-batch, grad_accum, \
            steps, lr (default 1e-6, as TRL), warmup_steps and min_lr (cosine decay; min_lr = lr keeps it \
            constant), weight_decay (default 0), beta2 (default 0.999), grad_clip, seq_len (a sequence is cut to \
            seq_len + 1 tokens), seed; data.val_fraction holds pairs out. Writes DIR/config.toml, DIR/metrics.jsonl \
            and checkpoints of the weights (checkpoint.every, and the last step), which every command reading a run \
            reads. Under mpirun the processes are data-parallel replicas, each taking batch_size pairs per \
            micro-batch; rank 0 writes the run.
            """)

    @OptionGroup var common: FineTuningOptions

    @Option(help: "The loss: sigmoid (DPO) or ipo.")
    var loss: String = "sigmoid"

    @Option(help: "β: how far the policy may move from the reference.")
    var beta: Double = 0.1

    @Option(help: "cDPO's label smoothing ε in [0, 0.5) (sigmoid only).")
    var labelSmoothing: Double = 0

    func validate() throws {
        if PreferenceLoss.Objective(rawValue: loss) == nil {
            throw ValidationError("--loss must be one of \(PreferenceLoss.Objective.allCases.map(\.rawValue).joined(separator: ", ")) (got \(loss))")
        }
    }

    func run() throws {
        let objective = PreferenceSettings(objective: PreferenceLoss.Objective(rawValue: loss)!, beta: beta,
                                           labelSmoothing: labelSmoothing)
        let defaults = FineTuningRun.trlDefaults(learningRate: "1e-6")
        try FineTuningRun.start(common, defaults: defaults, load: { tokenizer, path, settings in
            try PreferenceData(paths: common.data, tokenizer: tokenizer, tokenizerPath: path, length: settings.training.sequenceLength,
                               validationFraction: settings.data.validationFraction, forRewardModel: false)
        }) { run, data in
            let t = run.config.training
            run.log("data: \(data.summary)")
            let model = try (run.resumed ?? run.checkpoint).loadModel()
            let trainer = try PreferenceOptimization(model: model, train: data.train, validation: data.validation,
                                                     settings: objective, training: t, shuffles: !common.noShuffle,
                                                     padding: run.tokenizer.endOfText, group: run.group)
            let pairsPerStep = t.batchSize * t.gradientAccumulation * run.group.size
            run.log("\(objective.objective == .sigmoid ? "DPO" : "IPO") from \(run.checkpoint.directory.path): β \(objective.beta), "
                    + "\(t.steps) steps of \(pairsPerStep) pairs (\(String(format: "%.2f", Double(t.steps * pairsPerStep) / Double(data.train.count))) epochs), "
                    + "lr \(t.learningRate), \(run.group.size) process\(run.group.size == 1 ? "" : "es")")
            // The reference log-probabilities were computed at the run's sequence length and precision: a resume at
            // others would compare the policy with values of another truncation or rounding.
            let recipe = run.recipe(options: ["loss": loss, "beta": "\(beta)", "label-smoothing": "\(labelSmoothing)",
                                             "no-shuffle": "\(common.noShuffle)", "training.seq_len": "\(t.sequenceLength)",
                                             "training.precision": t.precision.rawValue]) { hasher in
                (data.train + data.validation).forEach { hasher.add($0) }
            }
            if let resumed = run.resumed {
                // Before the reference log-probabilities, which belong to the data and options the run started with.
                try recipe.verifyResume(from: resumed.directory)
                try trainer.restoreReference(from: resumed.directory)
            } else {
                let started = Date()
                try trainer.computeReference { done, total in
                    try run.stopIfSignalled(during: "the reference log-probabilities (\(done) of \(total) pairs)")
                }
                run.log(String(format: "reference log-probabilities of %d pairs: %.1f s", data.train.count + data.validation.count,
                               Date().timeIntervalSince(started)))
            }
            try run.loop(step: { number, rate in
                let m = try trainer.step(number, learningRate: rate)
                return ([("loss", .double(m.loss)), ("rewards_chosen", .double(m.chosenReward)),
                         ("rewards_rejected", .double(m.rejectedReward)), ("rewards_accuracy", .double(m.accuracy)),
                         ("rewards_margin", .double(m.margin)), ("logps_chosen", .double(m.chosenLogProbability)),
                         ("logps_rejected", .double(m.rejectedLogProbability)), ("grad_norm", .double(m.gradientNorm))],
                        String(format: "loss %.4f | rewards %.4f / %.4f | accuracy %.3f | margin %.4f | grad norm %.3f",
                               m.loss, m.chosenReward, m.rejectedReward, m.accuracy, m.margin, m.gradientNorm))
            }, evaluate: {
                guard !data.validation.isEmpty else { return nil }
                let m = try trainer.evaluate()
                return ([("val_loss", .double(m.loss)), ("val_accuracy", .double(m.accuracy)),
                         ("val_rewards_chosen", .double(m.chosenReward)), ("val_rewards_rejected", .double(m.rejectedReward)),
                         ("val_rewards_margin", .double(m.margin))],
                        String(format: "loss %.4f, accuracy %.3f, margin %.4f (%d pairs)", m.loss, m.accuracy, m.margin, m.pairs))
            }, model: model, state: trainer.stateBuffers, recipe: recipe, extras: {
                [PreferenceOptimization.referenceFile: try trainer.referenceContents()]
            })
        }
    }
}
