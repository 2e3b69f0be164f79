import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelComm
import KeelCore
import KeelData
import KeelKernels
import KeelModel
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

    @Option(help: ArgumentHelp("The run or checkpoint to optimise (the policy's start and the reference).", valueName: "dir"))
    var initFrom: String

    @Option(help: ArgumentHelp("Preference pairs (repeat for several files).", valueName: "file.jsonl"))
    var data: [String] = []

    @Option(name: .shortAndLong, help: "Run directory to write (it must not hold a run).")
    var out: String

    @Option(name: .shortAndLong, help: "TOML config with [training], [data] and [checkpoint] settings.")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key.", valueName: "section.key=value"))
    var overrides: [String] = []

    @Option(help: "The loss: sigmoid (DPO) or ipo.")
    var loss: String = "sigmoid"

    @Option(help: "β: how far the policy may move from the reference.")
    var beta: Double = 0.1

    @Option(help: "cDPO's label smoothing ε in [0, 0.5) (sigmoid only).")
    var labelSmoothing: Double = 0

    @Flag(help: "Read the pairs in the files' order every epoch (default: an order of its own per epoch, seeded by training.seed).")
    var noShuffle = false

    func validate() throws {
        if data.isEmpty { throw ValidationError("give the preference pairs with --data FILE.jsonl") }
        if PreferenceLoss.Objective(rawValue: loss) == nil {
            throw ValidationError("--loss must be one of \(PreferenceLoss.Objective.allCases.map(\.rawValue).joined(separator: ", ")) (got \(loss))")
        }
    }

    func run() throws {
        signal(SIGXFSZ, SIG_IGN)
        let output = URL(fileURLWithPath: out)
        if let existing = CheckpointStore.list(output.appendingPathComponent("checkpoints")).first {
            throw KeelError("\(out) already holds a run (\(existing.lastPathComponent)); choose another --out")
        }
        let checkpoint = try CheckpointReader(resolving: initFrom)
        let settings = try Self.settings(model: checkpoint.model, config: config, overrides: overrides)
        let objective = PreferenceSettings(objective: PreferenceLoss.Objective(rawValue: loss)!, beta: beta,
                                           labelSmoothing: labelSmoothing)
        let placement = try ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        guard placement.isDistributed else {
            try optimise(checkpoint, settings, objective, output: output, group: SingleProcessCommunicator())
            return
        }
        try DistributedRun.run(placement: placement, timeout: settings.distributed.timeoutSeconds) { world in
            try optimise(checkpoint, settings, objective, output: output, group: world)
        }
    }

    /// The config: the checkpoint's [model], TRL's DPO defaults where Keel's training defaults differ, then
    /// --config's sections and --set.
    static func settings(model: ModelConfig, config: String?, overrides: [String]) throws -> TrainConfig {
        var text = WeightsCheckpoint.modelSection(model)
        if let config {
            guard let extra = try? String(contentsOfFile: config, encoding: .utf8) else { throw KeelError("config: \(config): cannot read") }
            if extra.split(separator: "\n").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "[model]" }) {
                throw KeelError("config: \(config): the model is the run's; remove its [model] section")
            }
            text += "\n" + extra
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-dpo-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("dpo.toml").path
        try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: path))
        let defaults = ["training.lr=1e-6", "training.weight_decay=0", "training.beta2=0.999"]
        let given = Set((overrides + (config.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }.map(Self.keys) ?? []))
            .map { String($0.prefix { $0 != "=" }).trimmingCharacters(in: .whitespaces) })
        let settings = try TrainConfig.load(path: path, overrides: defaults.filter { !given.contains(String($0.prefix { $0 != "=" })) } + overrides,
                                             requiresData: false)
        if !settings.data.chat.isEmpty || settings.data.dataset != nil || !settings.data.paths.isEmpty {
            throw KeelError("config: keel dpo reads its pairs from --data; remove data.chat, data.dataset and data.paths")
        }
        return settings
    }

    /// The section.key names a TOML text sets.
    private static func keys(_ text: String) -> [String] {
        var section = "", keys: [String] = []
        for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) where !line.hasPrefix("#") {
            if line.hasPrefix("[") { section = line.trimmingCharacters(in: CharacterSet(charactersIn: "[] ")) }
            else if let equals = line.firstIndex(of: "=") { keys.append(section + "." + line[..<equals].trimmingCharacters(in: .whitespaces)) }
        }
        return keys
    }

    private func optimise(_ checkpoint: CheckpointReader, _ config: TrainConfig, _ objective: PreferenceSettings, output: URL,
                          group: any Communicator) throws {
        let log = { (message: String) in if group.rank == 0 { FileHandle.standardError.write(Data((message + "\n").utf8)) } }
        let t = config.training
        let tokenizerFile = checkpoint.directory.appendingPathComponent("tokenizer.json")
        let tokenizerPath = FileManager.default.fileExists(atPath: tokenizerFile.path) ? tokenizerFile.path : "byte"
        let tokenizer = try loadTokenizer(tokenizerPath)
        let data = try PreferenceData(paths: self.data, tokenizer: tokenizer, tokenizerPath: tokenizerPath,
                                      length: t.sequenceLength, validationFraction: config.data.validationFraction)
        log("data: \(data.summary)")
        let model = try checkpoint.loadModel()
        let trainer = try PreferenceOptimization(model: model, train: data.train, validation: data.validation,
                                                 settings: objective, training: t, shuffles: !noShuffle,
                                                 padding: tokenizer.endOfText, group: group)
        let pairsPerStep = t.batchSize * t.gradientAccumulation * group.size
        log("\(objective.objective == .sigmoid ? "DPO" : "IPO") from \(checkpoint.directory.path): β \(objective.beta), "
            + "\(t.steps) steps of \(pairsPerStep) pairs (\(String(format: "%.2f", Double(t.steps * pairsPerStep) / Double(data.train.count))) epochs), "
            + "lr \(t.learningRate), \(group.size) process\(group.size == 1 ? "" : "es")")
        let started = Date()
        trainer.computeReference { done, total in
            if done == total { log(String(format: "reference log-probabilities of %d pairs: %.1f s", total, Date().timeIntervalSince(started))) }
        }

        var metrics: MetricsLog?
        if group.rank == 0 {
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            try AtomicFile.write(Data(config.resolvedTOML.utf8), to: output.appendingPathComponent("config.toml"))
            metrics = try MetricsLog(url: output.appendingPathComponent("metrics.jsonl"), keepingThrough: nil)
        }
        let schedule = LearningRateSchedule(peak: t.learningRate, minimum: t.minLearningRate, warmupSteps: t.warmupSteps,
                                            totalSteps: t.steps)
        func evaluate(_ step: Int) throws {
            guard !data.validation.isEmpty else { return }
            let m = try trainer.evaluate()
            log(String(format: "validation at step %d: loss %.4f, accuracy %.3f, margin %.4f (%d pairs)", step, m.loss, m.accuracy,
                       m.margin, m.pairs))
            try metrics?.write(["step": .int(step), "val_loss": .double(m.loss), "val_accuracy": .double(m.accuracy),
                                "val_rewards_chosen": .double(m.chosenReward), "val_rewards_rejected": .double(m.rejectedReward),
                                "val_rewards_margin": .double(m.margin)])
        }
        try evaluate(0)
        var last: URL?
        for step in 1...max(1, t.steps) where t.steps > 0 {
            let rate = schedule.rate(at: step)
            let stepStart = Date()
            let m = try trainer.step(step, learningRate: Float(rate))
            try metrics?.write(["step": .int(step), "loss": .double(m.loss), "rewards_chosen": .double(m.chosenReward),
                                "rewards_rejected": .double(m.rejectedReward), "rewards_accuracy": .double(m.accuracy),
                                "rewards_margin": .double(m.margin), "logps_chosen": .double(m.chosenLogProbability),
                                "logps_rejected": .double(m.rejectedLogProbability), "grad_norm": .double(m.gradientNorm),
                                "lr": .double(rate), "seconds": .double(Date().timeIntervalSince(stepStart))])
            if step == 1 || step == t.steps || step % max(1, config.logging.every) == 0 {
                log(String(format: "step %d/%d | loss %.4f | rewards %.4f / %.4f | accuracy %.3f | margin %.4f | grad norm %.3f | lr %.2e",
                           step, t.steps, m.loss, m.chosenReward, m.rejectedReward, m.accuracy, m.margin, m.gradientNorm, rate))
            }
            if t.evalEvery > 0, step % t.evalEvery == 0, step != t.steps { try evaluate(step) }
            if step == t.steps || (config.checkpoint.every > 0 && step % config.checkpoint.every == 0) {
                if group.rank == 0 { last = try save(model: model, from: checkpoint, config: config, step: step, to: output) }
            }
        }
        try evaluate(t.steps)
        if let last { print("checkpoint: \(last.path)") }
    }

    /// The policy's weights as the run's checkpoint of `step`, with the tokenizer files of the run it started from.
    private func save(model: Transformer, from checkpoint: CheckpointReader, config: TrainConfig, step: Int,
                      to output: URL) throws -> URL {
        let source = checkpoint.directory, manager = FileManager.default
        let tokenizer = source.appendingPathComponent("tokenizer.json")
        var extras: [String: Data] = [:]
        for name in ["tokenizer_config.json", "chat_template.jinja"] {
            if let data = manager.contents(atPath: source.appendingPathComponent(name).path) { extras[name] = data }
        }
        let written = try WeightsCheckpoint.write(
            model, tokenizer: manager.fileExists(atPath: tokenizer.path)
                ? ("tokenizer.json", { try manager.copyItem(at: tokenizer, to: $0) }) : nil,
            extras: extras, config: config.resolvedTOML, step: step, to: output)
        CheckpointStore.prune(output.appendingPathComponent("checkpoints"), keep: config.checkpoint.keep,
                              keepEvery: config.checkpoint.keepEvery)
        return written
    }
}
