import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelComm
import KeelKernels
import KeelModel
import KeelParallel

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    public var steps: Int
    /// Validation loss before the first step (nil when resumed) and after the last.
    public var initialValidationLoss: Float?
    public var finalValidationLoss: Float
    /// Cross-entropy of the validation split under the training split's token frequencies.
    public var unigramLoss: Double
    public var tokensPerSecond: Double
    public var checkpoint: URL
}

/// The training loop: micro-batches with gradient accumulation, global-norm clipping, AdamW with warm-up
/// and cosine decay, periodic validation, metrics, checkpoints and resume — on one process, or on every
/// rank of a data-parallel group (each rank reads its own part of every batch; gradients are averaged in
/// overlapped buckets; rank 0 alone writes metrics, progress and checkpoints).
///
/// Output directory layout: `config.toml` (the resolved config), `metrics.jsonl`,
/// `checkpoints/step_NNNNNNNN/{model.safetensors, model.json, optimizer.safetensors, state.json, manifest.json}`.
public final class Trainer {
    public let config: TrainConfig
    public let output: URL
    public let model: Transformer
    private let data: TrainingData
    private let optimizer: Optimizer
    private let parallel: DataParallel
    private let communicator: any Communicator
    private var state: TrainingState
    private var resumedFrom: URL?
    private let checkpointRoot: URL
    private let log: (String) -> Void
    /// Rank 0 writes the run directory, metrics and progress.
    private var isLeader: Bool { communicator.rank == 0 }

    /// Prepares a run in `output`: reads the data, builds the model, and with `resume` restores the newest
    /// valid checkpoint there. `groups` are this rank's process groups; training is data parallel over
    /// `groups.data` (every rank constructs its own
    /// `Trainer`). `log` receives one-line status messages (on rank 0 only).
    public init(config: TrainConfig, output: URL, resume: Bool,
                groups: ParallelState = .singleProcess(), log: @escaping (String) -> Void) throws {
        precondition(groups.mesh.pipeline == 1 && groups.mesh.tensor == 1, "Trainer runs data parallelism only")
        let communicator = groups.data
        self.config = config
        self.output = output
        self.communicator = communicator
        self.log = communicator.rank == 0 ? log : { _ in }
        checkpointRoot = output.appendingPathComponent("checkpoints")
        data = try TrainingData(config: config)
        model = try Transformer(config: config.model, seed: config.training.seed)
        model.matrixPrecision = config.training.precision
        parallel = DataParallel(model: model, communicator: communicator, bucketElements: config.distributed.bucketElements,
                                shardOptimizerState: config.distributed.zeroStage == 1)
        optimizer = Optimizer(model: model, parallel: parallel, settings: config.training.adamW,
                              gradientClip: config.training.gradientClip, decayEmbeddings: config.training.decayEmbeddings)
        state = TrainingState(step: 0, tokens: 0, elapsedSeconds: 0, seed: config.training.seed, samplesConsumed: 0,
                              tokenizer: data.tokenizerFile?.lastPathComponent ?? "byte", config: config.resolvedTOML)

        if !resume, let existing = CheckpointStore.list(checkpointRoot).first {
            throw KeelError("\(output.path) already holds a run (\(existing.lastPathComponent)); continue it with --resume or choose another --out")
        }
        if isLeader { try FileManager.default.createDirectory(at: checkpointRoot, withIntermediateDirectories: true) }
        if resume {
            let found = CheckpointStore.latestValid(in: checkpointRoot)
            for problem in found.problems { self.log("warning: skipping \(problem)") }
            guard let checkpoint = found.checkpoint else {
                throw KeelError("--resume: no valid checkpoint in \(checkpointRoot.path)")
            }
            try restore(from: checkpoint)
            resumedFrom = checkpoint
        }
        // Every rank initialised (or restored) the same parameters; rank 0's copy is made authoritative anyway,
        // as PyTorch's DistributedDataParallel does, so no rank can silently train a different model.
        try communicator.broadcast(model.parameters.buffer, root: 0, label: "initial parameters")
        guard isLeader else { return }
        try AtomicFile.write(Data(config.resolvedTOML.utf8), to: output.appendingPathComponent("config.toml"))
        if let file = data.tokenizerFile {
            try AtomicFile.write(Data(contentsOf: file), to: output.appendingPathComponent(file.lastPathComponent))
        }
    }

    /// The run's tokenizer (to decode samples).
    public var tokenizer: any TextTokenizer { data.tokenizer }

    /// Runs until `training.steps` (or, with `stopAfter`, until that step, as if interrupted there, so that
    /// `--resume` can finish the run), returning the summary; throws (keeping the last good checkpoint) if
    /// the loss or gradient stops being finite.
    public func run(stopAfter: Int? = nil) throws -> TrainingSummary {
        let t = config.training
        let batch = t.batchSize, length = t.sequenceLength, accumulation = t.gradientAccumulation
        let schedule = LearningRateSchedule(peak: t.learningRate, minimum: t.minLearningRate, warmupSteps: t.warmupSteps,
                                            totalSteps: t.steps)
        let tokensPerStep = t.tokensPerStep * communicator.size
        let loader = try TokenLoader(windows: data.train, batch: batch, seed: t.seed, rank: communicator.rank,
                                     worldSize: communicator.size, position: state.samplesConsumed)
        defer { loader.stop() }
        let metrics = isLeader ? try MetricsLog(url: output.appendingPathComponent("metrics.jsonl"),
                                                keepingThrough: resumedFrom == nil ? nil : state.step) : nil
        let progress = isLeader ? ProgressDisplay(totalSteps: t.steps, every: config.logging.every) : nil

        let unigram = isLeader ? data.unigramLoss(vocabSize: config.model.vocabSize) : .nan
        log(String(format: "data: %@; %d training and %d validation tokens; unigram baseline loss %.4f",
                   data.summary, data.train.tokenCount, data.validation.tokenCount, unigram))
        log("model: \(config.model.architecture.rawValue), \(model.table.count) parameters; \(tokensPerStep) tokens per step"
            + (model.matrixPrecision == .bfloat16 ? "; bf16 matrix products on \(BFloat16Engine.selected!.rawValue)" : ""))
        if communicator.size > 1 { log(parallelSummary()) }
        var initialValidation: Float?
        if let resumedFrom {
            log("resumed from \(resumedFrom.path) at step \(state.step)")
        } else {
            let loss = try validationLoss()
            initialValidation = loss
            try metrics?.write(["step": .int(0), "val_loss": .float(loss)])
            log(String(format: "step 0: validation loss %.4f", loss))
        }

        var inputs = [Int32](repeating: 0, count: batch * length), targets = inputs
        var lastCheckpoint = resumedFrom
        var lastValidation: (step: Int, loss: Float)?
        let segmentStart = Date()
        let firstStep = state.step
        let elapsedBefore = state.elapsedSeconds
        var segmentTokens = 0
        let lastStep = min(t.steps, stopAfter ?? t.steps)
        while state.step < lastStep {
            let step = state.step + 1
            let stepStart = Date()
            let operationsBefore = communicator.startedOperations
            let loss = try optimizer.accumulateGradients(from: loader, accumulation: accumulation, inputs: &inputs,
                                                         targets: &targets, label: "step \(step)")
            let gradientNorm = try optimizer.gradientNorm()
            guard loss.isFinite, gradientNorm.isFinite else {
                let kept = lastCheckpoint.map { "; the last good checkpoint is \($0.path)" } ?? "; no checkpoint was written"
                let culprit = loss.isFinite ? "gradient norm is \(gradientNorm.isNaN ? "NaN" : "infinite")"
                                            : "loss is \(loss.isNaN ? "NaN" : "infinite")"
                throw KeelError("training diverged: \(culprit) at step \(step)\(kept)")
            }
            let rate = schedule.rate(at: step)
            try optimizer.update(gradientNorm: gradientNorm, learningRate: Float(rate), step: step)

            state.step = step
            state.tokens += tokensPerStep
            state.samplesConsumed = loader.position
            segmentTokens += tokensPerStep
            let segmentSeconds = Date().timeIntervalSince(segmentStart)
            state.elapsedSeconds = elapsedBefore + segmentSeconds
            let tokensPerSecond = Double(tokensPerStep) / max(Date().timeIntervalSince(stepStart), 1e-9)
            var record: [(key: String, value: MetricsLog.Field)] = [
                ("step", .int(step)), ("loss", .float(Float(loss))), ("lr", .double(rate)), ("grad_norm", .float(gradientNorm)),
                ("tokens", .int(state.tokens)), ("tokens_per_s", .double(tokensPerSecond)),
                ("elapsed_s", .double(state.elapsedSeconds)),
            ]
            if communicator.size > 1 {
                // How this step's gradient communication overlapped the backward pass.
                let overlap = parallel.statistics
                record += [("comm_ops", .int(communicator.startedOperations - operationsBefore)),
                           ("comm_buckets", .int(overlap.buckets)),
                           ("comm_overlapped_buckets", .int(overlap.startedDuringBackward)),
                           ("comm_s", .double(overlap.communicationSeconds)),
                           ("comm_exposed_s", .double(overlap.exposedSeconds))]
            }
            try metrics?.write(record)
            progress?.update(step: step, loss: Float(loss), learningRate: rate,
                            tokensPerSecond: Double(segmentTokens) / max(segmentSeconds, 1e-9),
                            secondsPerStep: segmentSeconds / Double(step - firstStep))

            if (t.evalEvery > 0 && step % t.evalEvery == 0) || step == lastStep {
                let validation = try validationLoss()
                lastValidation = (step, validation)
                try metrics?.write(["step": .int(step), "val_loss": .float(validation)])
                progress?.message(String(format: "step %d: validation loss %.4f", step, validation))
            }
            if (config.checkpoint.every > 0 && step % config.checkpoint.every == 0) || step == lastStep {
                lastCheckpoint = try saveCheckpoint()
            }
        }
        let finalValidation = lastValidation?.step == state.step ? lastValidation!.loss : try validationLoss()
        let checkpoint = try lastCheckpoint ?? saveCheckpoint()
        let seconds = Date().timeIntervalSince(segmentStart)
        return TrainingSummary(steps: state.step, initialValidationLoss: initialValidation,
                               finalValidationLoss: finalValidation, unigramLoss: unigram,
                               tokensPerSecond: Double(segmentTokens) / max(seconds, 1e-9), checkpoint: checkpoint)
    }

    /// Mean loss over up to `eval_batches` micro-batches of consecutive validation windows (the ranks of a
    /// data-parallel group share the micro-batches out and combine their sums).
    public func validationLoss() throws -> Float {
        let windows = min(data.validation.count, config.training.evalBatches * config.training.batchSize * communicator.size)
        let local = Evaluation.lossSum(of: model, on: data.validation, count: windows, batch: config.training.batchSize,
                                       rank: communicator.rank, ranks: communicator.size)
        let total = try communicator.allReduce([local], .sum, label: "validation loss")[0]
        return Float(total / Double(windows))
    }

    /// One line describing the data-parallel layout and the optimizer memory per rank.
    private func parallelSummary() -> String {
        // Two moments of 4 bytes per parameter.
        let size = { (floats: Int) in String(format: "%.1f KiB", Double(floats) * 8 / 1024) }
        let optimizerState = parallel.shardsOptimizerState
            ? "ZeRO-1, optimizer state \(size(parallel.shard.count)) per rank (\(size(model.table.count)) unsharded)"
            : "optimizer state replicated, \(size(model.table.count)) per rank"
        return "data parallel: \(communicator.size) processes, \(parallel.buckets.count) gradient buckets of up to \(String(format: "%g", config.distributed.bucketMegabytes)) MB; \(optimizerState)"
    }

    /// Writes a checkpoint (rank 0; the other ranks contribute their optimizer shards) and returns its directory.
    @discardableResult
    private func saveCheckpoint() throws -> URL {
        let gatheredM = try parallel.gatherToFirstRank(optimizer.m), gatheredV = try parallel.gatherToFirstRank(optimizer.v)
        guard let m = gatheredM, let v = gatheredV else {
            return checkpointRoot.appendingPathComponent(CheckpointStore.name(step: state.step))
        }
        let model = self.model, state = self.state
        let count = model.table.count
        let url = try CheckpointStore.write(root: checkpointRoot, step: state.step, writers: [
            (ModelFiles.weightsFile, { try ModelFiles.writeWeights(of: model, to: $0) }),
            (ModelFiles.configFile, { try ModelFiles.writeConfig(model.config, to: $0) }),
            ("optimizer.safetensors", {
                try Safetensors.write([
                    TensorSlice(name: "exp_avg", shape: [count], floats: m.pointer),
                    TensorSlice(name: "exp_avg_sq", shape: [count], floats: v.pointer),
                ], to: $0)
            }),
            ("state.json", {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try AtomicFile.write(encoder.encode(state), to: $0)
            }),
        ] + (data.tokenizerFile.map { file in
            [(file.lastPathComponent, { try AtomicFile.write(Data(contentsOf: file), to: $0) })]
        } ?? []))
        CheckpointStore.prune(checkpointRoot, keep: config.checkpoint.keep)
        return url
    }

    private func restore(from checkpoint: URL) throws {
        let saved = try ModelFiles.readConfig(from: checkpoint.appendingPathComponent(ModelFiles.configFile))
        guard saved == config.model else {
            throw KeelError("--resume: \(checkpoint.path) holds a different model shape than the config's [model] section")
        }
        try ModelFiles.loadWeights(into: model, from: checkpoint.appendingPathComponent(ModelFiles.weightsFile))
        let moments = try SafetensorsFile(url: checkpoint.appendingPathComponent("optimizer.safetensors"))
        try moments.copyFloats("exp_avg", shape: [model.table.count], elements: parallel.shard, to: optimizer.m.pointer)
        try moments.copyFloats("exp_avg_sq", shape: [model.table.count], elements: parallel.shard, to: optimizer.v.pointer)
        state = try TrainingState.read(from: checkpoint.appendingPathComponent("state.json"))
        guard state.seed == config.training.seed else {
            throw KeelError("--resume: \(checkpoint.path) was trained with seed \(state.seed), the config says \(config.training.seed)")
        }
    }
}
