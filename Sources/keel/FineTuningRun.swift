import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelComm
import KeelCore
import KeelData
import KeelModel
import KeelTrain

/// The options `keel dpo`, `keel reward train` and `keel grpo` share.
struct FineTuningOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The run or checkpoint to start from.", valueName: "dir"))
    var initFrom: String

    @Option(help: ArgumentHelp("The data: JSONL files (repeat for several).", valueName: "file.jsonl"))
    var data: [String] = []

    @Option(name: .shortAndLong, help: "Run directory to write (it must not hold a run).")
    var out: String

    @Option(name: .shortAndLong, help: "TOML config: [training], [data], [checkpoint], [logging], [distributed] settings (the model is the --init-from run's).")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key.", valueName: "section.key=value"))
    var overrides: [String] = []

    @Flag(help: "Read the data in the files' order every epoch (default: an order of its own per epoch, seeded by training.seed).")
    var noShuffle = false

    @Flag(help: "Continue the run in --out from its newest valid checkpoint, bit for bit (give the command's other options as before; --set training.steps may grow).")
    var resume = false

    @Flag(help: "Continue the run in --out if it has a valid checkpoint, else start it: one command for a job that may be requeued (a stop before the first step saves nothing).")
    var resumeIfAny = false

    func validate() throws {
        if data.isEmpty { throw ValidationError("give the data with --data FILE.jsonl") }
        if resume && resumeIfAny { throw ValidationError("give --resume or --resume-if-any, not both") }
    }
}

/// What `keel dpo`, `keel reward train` and `keel grpo` share: a run started from a checkpoint, its settings
/// ([training], [data], [checkpoint] keys from --config and --set over the checkpoint's [model]), its tokenizer, the
/// processes it runs on, and the loop of steps that logs, evaluates and saves weights checkpoints.
struct FineTuningRun {
    /// The run it started from (--init-from): the reference's weights.
    let checkpoint: CheckpointReader
    /// With --resume, the newest valid checkpoint of --out: the weights and state it goes on from.
    let resumed: CheckpointReader?
    let config: TrainConfig
    let output: URL
    let tokenizerPath: String
    let tokenizer: any TextTokenizer
    let group: any Communicator

    /// Rank 0's progress lines, on stderr.
    func log(_ message: String) {
        if group.rank == 0 { StandardStreams.error(message + "\n") }
    }

    /// Reads the checkpoint and the settings, refuses an output directory that holds a run, reads the data with
    /// `load` (given the tokenizer, its file and the settings), and calls `body` on every process of the job (one, or
    /// those mpirun started) with the run and the data.
    static func start<Loaded>(_ options: FineTuningOptions, defaults: [String],
                            load: (any TextTokenizer, String, TrainConfig) throws -> Loaded,
                            _ body: (FineTuningRun, Loaded) throws -> Void) throws {
        // SIGTERM, SIGUSR1 (Slurm's pre-emption warning) and Ctrl-C stop the run after the current step, with a checkpoint.
        StopSignals.install()
        let output = URL(fileURLWithPath: options.out), root = output.appendingPathComponent("checkpoints")
        var resumed: CheckpointReader?
        let existing = CheckpointStore.list(root).first
        if options.resume || (options.resumeIfAny && existing != nil) {
            // --resume-if-any goes on from a run that has checkpoints, and refuses one whose checkpoints are all damaged
            // as --resume does: starting again over them would lose the run.
            let found = CheckpointStore.latestValid(in: root)
            guard let latest = found.checkpoint else {
                throw KeelError("--resume\(options.resume ? "" : "-if-any"): \(options.out) holds no valid checkpoint to go on from"
                                + (found.problems.isEmpty ? "" : " (\(found.problems.joined(separator: "; ")))"))
            }
            resumed = try CheckpointReader(latest, verify: false)   // `latestValid` just verified it
        } else if let existing, !options.resumeIfAny {
            throw KeelError("\(options.out) already holds a run (\(existing.lastPathComponent)); choose another --out, or go on with --resume")
        }
        try Train.refuseTwoStarts(options.overrides)
        let checkpoint = try CheckpointReader(resolving: options.initFrom)
        // A resumed run goes on with the settings its checkpoint was written under, as `keel train --resume` does: the
        // reference's log-probabilities, the schedule and the data order were made with them. A --config given
        // again replaces them.
        var saved: String?
        if let resumed, options.config == nil {
            guard !resumed.state.config.isEmpty else {
                throw KeelError("--resume: \(resumed.directory.path) records no settings; give --config and --set as the run had them")
            }
            saved = resumed.state.config
        }
        let settings = try Self.settings(model: checkpoint.model, config: options.config, overrides: options.overrides,
                                         defaults: defaults, saved: saved)
        try Self.refuseLayout(settings.parallel, zeroStage: settings.distributed.zeroStage)
        // The tokenizer file the checkpoint's state names (a run on tiktoken's file keeps its name, cl100k_base.tiktoken).
        let tokenizerPath = checkpoint.tokenizerPath
        let tokenizer = try loadCheckpointTokenizer(checkpoint)
        let data = try load(tokenizer, tokenizerPath, settings)
        func run(_ group: any Communicator) throws {
            if let replicas = settings.parallel.data, replicas != group.size {
                throw KeelError("config: parallel.dp = \(replicas), and the job has \(group.size) process\(group.size == 1 ? "" : "es"): each is one data-parallel replica")
            }
            if group.size > 1 {
                // Each process chose its checkpoint before the job's processes could talk (a machine whose view of a
                // shared directory lags, or that found the newest damaged, chooses an older one): processes going on from
                // different steps would train different weights, their collectives pairing up across steps. Compared
                // first: each took its settings from its own checkpoint, so those would differ too.
                let (lowest, highest) = try group.extremes([Double(resumed?.state.step ?? -1)], label: "the checkpoint to resume from")
                // Without --resume on some: their settings and options differ, which the check below says.
                if lowest[0] != highest[0], lowest[0] >= 0 {
                    throw KeelError("--resume: the job's processes found different newest valid checkpoints in \(root.path) (of steps \(Int(lowest[0])) to \(Int(highest[0]))): every machine must see the same checkpoints")
                }
                try DistributedRun.requireSameSettings(settings, flags: ["resume \(options.resume || resumed != nil)"], on: group)
            }
            do {
                try body(FineTuningRun(checkpoint: checkpoint, resumed: resumed, config: settings, output: output,
                                       tokenizerPath: tokenizerPath, tokenizer: tokenizer, group: group), data)
            } catch let stop as Stopped {
                // Not an error: every process ends normally (MPI shut down), with the status that says "resume me".
                stopped = stop
                if group.rank == 0 {
                    DistributedRun.recordStop(signal: StopSignals.name(of: stop.signal), step: stop.step)
                    if let step = stop.step {
                        print("stopped by \(StopSignals.name(of: stop.signal)) after step \(step)")
                    } else {
                        print("stopped by \(StopSignals.name(of: stop.signal)) during \(stop.phase), before the first step: nothing was saved; run the command again")
                    }
                }
            }
        }
        var stopped: Stopped?
        let placement = try ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        if placement.isDistributed {
            try DistributedRun.run(placement: placement, timeout: settings.distributed.timeoutSeconds) { try run($0) }
        } else {
            try DistributedRun.runAlone { try run(SingleProcessCommunicator()) }
        }
        if stopped != nil { throw ExitCode(DistributedRun.stoppedStatus) }
    }

    /// A stop signal ended the run after `step`, with a checkpoint (`loop`), or before the first step, during `phase`
    /// (`stopIfSignalled`).
    private struct Stopped: Error {
        let signal: Int32
        let step: Int?
        var phase = ""
    }

    /// Ends the run when a stop signal has come before its first step, when there is nothing to checkpoint: called
    /// between the pieces of the work before it (the reference log-probabilities, the first validation), which grows
    /// with the data — a scheduler's grace period would otherwise end in SIGKILL. A signal to any process stops them all
    /// at the same call, as the steps' stop requests do: one stopping alone would leave the others waiting in their next
    /// collective. `phase` names the work for the message.
    func stopIfSignalled(during phase: @autoclosure () -> String) throws {
        var signal = [Int64(StopSignals.received ?? 0)]
        if group.size > 1 { signal = try group.allReduce(signal, .max, label: "stop request before the first step") }
        guard signal[0] != 0 else { return }
        throw Stopped(signal: Int32(signal[0]), step: nil, phase: phase())
    }

    /// Fine-tuning runs one whole replica per process (data parallelism only): a layout the settings ask for
    /// otherwise is refused rather than ignored, since a user counting on it to fit memory would get full replicas.
    static func refuseLayout(_ parallel: TrainConfig.ParallelSettings, zeroStage: Int) throws {
        let asked = [("parallel.tp", parallel.tensor != 1 ? "\(parallel.tensor)" : nil),
                     ("parallel.pp", parallel.pipeline != 1 ? "\(parallel.pipeline)" : nil),
                     ("parallel.sequence_parallel", parallel.sequenceParallel ? "true" : nil),
                     ("distributed.zero_stage", zeroStage != 0 ? "\(zeroStage)" : nil)]
            .compactMap { key, value in value.map { "\(key) = \($0)" } }
        guard asked.isEmpty else {
            throw KeelError("config: \(asked.joined(separator: ", ")): fine-tuning runs data-parallel only, a whole replica per process (under mpirun); remove \(asked.count == 1 ? "it" : "them") from --set and --config (a resumed run's saved settings are overridden by --set, e.g. --set parallel.tp=1)")
        }
    }

    /// TRL's training defaults where Keel's differ: its trainer's learning rate, no weight decay, β₂ 0.999.
    static func trlDefaults(learningRate: String) -> [String] {
        ["training.lr=\(learningRate)", "training.weight_decay=0", "training.beta2=0.999"]
    }

    /// The config: the checkpoint's [model] (or all of `saved`, the settings a resumed run's checkpoint records), `defaults` where none of
    /// `saved`, --config and --set gives the key, then --config's sections and --set; the model is the run's, so
    /// neither --config nor --set may set `model.` keys.
    static func settings(model: ModelConfig, config: String?, overrides: [String], defaults: [String],
                         saved: String? = nil) throws -> TrainConfig {
        var text = saved ?? WeightsCheckpoint.modelSection(model)
        let key = { (assignment: String) in String(assignment.prefix { $0 != "=" }).trimmingCharacters(in: .whitespaces) }
        var given = overrides.map(key)
        let kept = try saved.map { try ConfigValues(toml: $0, origin: "config.toml").keys } ?? []
        if let config {
            guard let extra = try? String(contentsOfFile: config, encoding: .utf8) else { throw KeelError("config: \(config): cannot read") }
            let keys = try ConfigValues(toml: extra, origin: config).keys
            if keys.contains(where: { $0.hasPrefix("model.") }) {
                throw KeelError("config: \(config): the model is the run's; remove its [model] section")
            }
            text += "\n" + extra
            given += keys
        }
        if let model = given.first(where: { $0.hasPrefix("model.") }) {
            throw KeelError("config: \(model): the model is the run's (--init-from); it cannot be changed here")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-fine-tuning-\(UUID())")
        try AtomicFile.createDirectory(directory)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("settings.toml").path
        try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: path))
        let unset = defaults.filter { !given.contains(key($0)) && !kept.contains(key($0)) }
        let settings = try TrainConfig.load(path: path, overrides: unset + overrides, requiresData: false)
        if !settings.data.chat.isEmpty || settings.data.dataset != nil || !settings.data.paths.isEmpty {
            throw KeelError("config: the data comes from --data; remove data.chat, data.dataset and data.paths")
        }
        return settings
    }

    /// Runs the steps: `step` returns the fields of its metrics record and its progress line; `evaluate` (given the
    /// step, 0 before the first) returns the fields of a validation record and its line, or nil without validation
    /// pairs; rank 0 writes config.toml, metrics.jsonl and, every checkpoint.every steps and after the last,
    /// a checkpoint of the weights with `extras` and the trainer's `state` (`TrainingStateFile`) beside them. A resumed
    /// run starts after its checkpoint's step, its metrics of later steps dropped, once its `recipe` is the one its
    /// checkpoint keeps (every checkpoint keeps it). Prints the last checkpoint's path.
    func loop(step: (Int, Float) throws -> (fields: [(key: String, value: MetricsLog.Field)], line: String),
              evaluate: () throws -> (fields: [(key: String, value: MetricsLog.Field)], line: String)?,
              model: Transformer, state: [String: FloatBuffer], recipe: RunRecipe, extras: () throws -> [String: Data]) throws {
        let t = config.training, first = (resumed?.state.step ?? 0) + 1
        if let resumed {
            try recipe.verifyResume(from: resumed.directory)
            try TrainingStateFile.restore(state, from: resumed.directory)
            log("resuming after step \(first - 1) from \(resumed.directory.path)")
        }
        var metrics: MetricsLog?
        if group.rank == 0 {
            try AtomicFile.createDirectory(output)
            try AtomicFile.write(Data(config.resolvedTOML.utf8), to: output.appendingPathComponent("config.toml"))
            metrics = try MetricsLog(url: output.appendingPathComponent("metrics.jsonl"), keepingThrough: resumed.map { _ in first - 1 })
        }
        func validate(_ step: Int) throws {
            guard let result = try evaluate() else { return }
            log("validation at step \(step): " + result.line)
            try metrics?.write([("step", .int(step))] + result.fields)
        }
        if resumed == nil {
            try stopIfSignalled(during: "the run's start")
            try validate(0)
            try stopIfSignalled(during: "the validation before the first step")
        }
        let schedule = LearningRateSchedule(peak: t.learningRate, minimum: t.minLearningRate, warmupSteps: t.warmupSteps,
                                            totalSteps: t.steps)
        var last: URL?
        for number in stride(from: first, through: t.steps, by: 1) {
            let rate = schedule.rate(at: number), started = Date()
            let result: (fields: [(key: String, value: MetricsLog.Field)], line: String)
            do {
                result = try step(number, Float(rate))
            } catch let diverged as TrainingDiverged {
                // The step's record closes the metrics, its loss or norm null, as `keel train`'s does.
                try metrics?.write([("step", .int(number)), ("loss", .double(diverged.loss)), ("grad_norm", .double(diverged.norm)),
                                    ("lr", .double(rate)), ("diverged", .int(1))])
                throw diverged.reported(lastCheckpoint: last ?? resumed?.directory)
            }
            try metrics?.write([("step", .int(number))] + result.fields
                               + [("lr", .double(rate)), ("seconds", .double(Date().timeIntervalSince(started)))])
            if number == 1 || number == t.steps || number % max(1, config.logging.every) == 0 {
                log("step \(number)/\(t.steps) | " + result.line + String(format: " | lr %.2e", rate))
            }
            // A stop signal any process received, agreed by all, so that every one stops after the same step.
            var signal = [Int64(StopSignals.received ?? 0)]
            if group.size > 1 { signal = try group.allReduce(signal, .max, label: "step \(number): stop request") }
            let stopping = signal[0] != 0 && number < t.steps
            if !stopping, t.evalEvery > 0, number % t.evalEvery == 0, number != t.steps { try validate(number) }
            if number == t.steps || stopping || (config.checkpoint.every > 0 && number % config.checkpoint.every == 0) {
                // Every rank knows the newest checkpoint (a diverged step names it), only rank 0 writes it, while the
                // others wait for it in the next step's collectives: however long the write, they hear it is going on.
                last = group.rank == 0
                    ? try group.workingAlone {
                        try save(model, step: number, extras: try extras().merging([TrainingStateFile.name: try TrainingStateFile.contents(state),
                                                                                    RunRecipe.fileName: try recipe.contents()]) { $1 })
                    }
                    : output.appendingPathComponent("checkpoints").appendingPathComponent(CheckpointStore.name(step: number))
            }
            if stopping {
                log("\(StopSignals.name(of: Int32(signal[0]))): stopped after step \(number) with checkpoint \(last!.path); continue with the same command and --resume")
                throw Stopped(signal: Int32(signal[0]), step: number)
            }
        }
        if first <= t.steps { try validate(t.steps) }
        if group.rank == 0, let last { print("checkpoint: \(last.path)") }
    }

    /// The run's recipe (`RunRecipe`): the command's `options`, what every fine-tuning run depends on besides
    /// (`startingPoint`), and the examples `addData` feeds.
    func recipe(options: [String: String], data addData: (inout DataHasher) -> Void) -> RunRecipe {
        RunRecipe(options: options.merging(startingPoint) { $1 }, data: addData)
    }

    /// What every fine-tuning run's steps depend on besides its command's options (`RunRecipe`): the settings that
    /// decide which examples a step takes — `training.seed`, `training.batch_size`, `training.grad_accum` and the
    /// number of processes (a resume with others skipped some examples and repeated others) — and the checkpoint it
    /// started from, by its content (`CheckpointReader.identity`: GRPO reads its KL reference from it again on a
    /// resume). Named with dots,
    /// so that a checkpoint written before they were recorded is not compared on them.
    private var startingPoint: [String: String] {
        let t = config.training
        return ["training.seed": "\(t.seed)", "training.batch_size": "\(t.batchSize)",
                "training.grad_accum": "\(t.gradientAccumulation)", "run.processes": "\(group.size)",
                "run.init_from": checkpoint.identity]
    }

    /// The weights as the run's checkpoint of `step`, with the tokenizer files of the run it started from.
    private func save(_ model: Transformer, step: Int, extras: [String: Data]) throws -> URL {
        let source = checkpoint.directory, tokenizer = checkpoint.state.tokenizer
        var files = extras
        for (name, contents) in try TokenizerSettings.files(in: source) { files[name] = contents }
        let written = try WeightsCheckpoint.write(
            model, tokenizer: tokenizer == "byte" ? nil
                // Written and synced as every file of a checkpoint is (a copy is not synced: after a power loss the
                // checkpoint could hold an empty tokenizer once pruning had removed the one before).
                : (tokenizer, { try AtomicFile.write(checkpoint.tokenizerContents()!, to: $0) }),
            extras: files, config: config.resolvedTOML, step: step, to: output)
        CheckpointStore.prune(output.appendingPathComponent("checkpoints"), keep: config.checkpoint.keep,
                              keepEvery: config.checkpoint.keepEvery, written: step)
        return written
    }
}
