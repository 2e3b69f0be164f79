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
    /// The steps this invocation ran (none when a resumed run was already at `training.steps` or `--stop-after`).
    public var stepsRun: Int
    /// Validation loss before the first step (nil when resumed) and after the last (nil when a stop signal
    /// ended the run: it stops as soon as the checkpoint is written).
    public var initialValidationLoss: Float?
    public var finalValidationLoss: Float?
    /// Cross-entropy of the validation split under the training split's token frequencies.
    public var unigramLoss: Double
    public var tokensPerSecond: Double
    public var checkpoint: URL
    /// The signal that stopped the run early (`StopSignals`), if one did.
    public var stoppedBy: Int32?
}

/// The training loop: micro-batches with gradient accumulation, global-norm clipping, AdamW with warm-up
/// and cosine decay, periodic validation, metrics, checkpoints and resume — on one process, or on every
/// rank of a pipeline × data-parallel grid (`[parallel]`): each data-parallel replica reads its own part of
/// every batch, each pipeline rank runs its stages under the configured schedule (`TrainingStep` is one
/// step, whatever the layout); world rank 0 alone writes metrics and progress. Every rank writes its own slices
/// of each checkpoint (`ShardPlan`), which any layout can resume from (`CheckpointReader`).
///
/// Output directory layout: `config.toml` (the resolved config), `metrics.jsonl`,
/// `checkpoints/step_NNNNNNNN/{rank_NNNNN.safetensors…, manifest.json}` (and the tokenizer file).
public final class Trainer {
    public let config: TrainConfig
    public let output: URL
    /// This rank's share of the training: its model chunks, optimizers and schedule.
    public let step: TrainingStep
    private let data: TrainingData
    /// The tokenizer file and the settings files beside it (`TokenizerSettings.fileNames`), read when the run
    /// started: every checkpoint carries these bytes, so a dataset moved or changed during a long run neither fails
    /// a checkpoint nor puts another tokenizer in it.
    private let tokenizerFiles: [(name: String, contents: Data)]
    private let groups: ParallelState
    /// The blocks of every pipeline stage, in stage order, and the parameter layout of each.
    private let stageLayers: [Range<Int>]
    private let stageTables: [ParameterTable]
    private let wholeTable: ParameterTable
    /// The layout checkpoints record, and the writer of this rank's slices of them.
    private let checkpointLayout: CheckpointLayout
    private let shardPlan: ShardPlan
    /// Every rank's slices as the manifest lists them: the same for every checkpoint of the run.
    private lazy var manifestTensors = shardPlan.manifestTensors()
    private let shardWriter: ShardWriter
    /// The checkpoint being written.
    private var pending: PendingCheckpoint?
    /// Where in-memory snapshots go on this machine (`checkpoint.snapshot_every`); nil without them.
    private let snapshotRoot: URL?
    /// The machines the ranks run on, when the run takes in-memory snapshots, and the communicator over the whole
    /// job that snapshot files travel on between machines (used for nothing else).
    private let machines: MachinePlacement?
    private let snapshotChannel: (any Communicator)?
    /// The copies of this rank's snapshot files on another machine, when the job runs on several.
    private let buddyCopy: BuddyCopy?
    /// Set on every rank alike once a copy between machines failed (`BuddyCopy.isBroken`): no snapshot is taken after.
    private var snapshotsStopped = false
    /// What the restore fetched from other machines, for the log.
    private var fetchedAtRestore: SnapshotRecovery.Restored?
    private var lastCheckpoint: URL?
    private var metrics: MetricsLog?

    private var state: TrainingState
    private var resumedFrom: URL?
    /// Whether a resume may go on with data other than its checkpoint's (`init`).
    private let acceptsChangedData: Bool
    private let checkpointRoot: URL
    private let log: (String) -> Void
    /// World rank 0 writes the run directory, metrics and progress.
    private var isLeader: Bool { groups.world.rank == 0 }

    /// How a run starts.
    public enum Start: Sendable {
        /// From the beginning, in a run directory that holds no checkpoint.
        case fresh
        /// From the newest valid checkpoint on disk or in-memory snapshot; an error when there is none.
        case resume
        /// As `resume` when the job has a valid checkpoint or snapshot anywhere, else as `fresh`: what a supervisor
        /// restarting a failed job asks for, since the snapshots lie on the job's machines, which it may not see.
        case resumeIfAny
    }

    /// Prepares a run in `output` (see the other initializer), resumed when `resume`.
    public convenience init(config: TrainConfig, output: URL, resume: Bool,
                            groups: ParallelState = .singleProcess(), log: @escaping (String) -> Void) throws {
        try self.init(config: config, output: output, start: resume ? .resume : .fresh, groups: groups, log: log)
    }

    /// Prepares a run in `output`: reads the data, builds this rank's part of the model, and unless `start` is
    /// `fresh` restores the newest valid checkpoint there. `groups` are this rank's process groups, laid out as
    /// `[parallel]` says (every rank constructs its own `Trainer`). `log` receives one-line status messages
    /// (on world rank 0 only).
    ///
    /// A checkpoint records its data (`DataFingerprint`); resuming on other data is refused, since the saved data
    /// position means nothing in another order of windows, unless `acceptingChangedData` (then it goes on from that
    /// position in the new data's order, and says so).
    public init(config: TrainConfig, output: URL, start: Start, acceptingChangedData: Bool = false,
                groups: ParallelState = .singleProcess(), log: @escaping (String) -> Void) throws {
        let dataParallel = try config.parallel.dataParallelSize(processes: groups.world.size)
        guard groups.mesh.pipeline == config.parallel.pipeline, groups.mesh.tensor == config.parallel.tensor,
              groups.mesh.data == dataParallel else {
            throw KeelError("parallel layout: the job is laid out as \(groups.mesh.pipeline) pipeline × \(groups.mesh.tensor) tensor × \(groups.mesh.data) data ranks, the config asks for \(config.parallel.pipeline) × \(config.parallel.tensor) × \(dataParallel)")
        }
        self.config = config
        self.output = output
        self.groups = groups
        self.log = groups.world.rank == 0 ? log : { _ in }
        checkpointRoot = output.appendingPathComponent("checkpoints")
        // Before anything is allocated: a model whose state alone this machine cannot hold is refused, not killed later.
        let placement = try? ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        try TrainingMemory.check(config, processes: groups.world.size,
                                 processesHere: groups.world.size == 1 ? 1 : placement?.localSize ?? 1) { warning in
            // Each machine's first rank says it of its own machine.
            if groups.world.rank == 0 { log(warning) } else if placement?.localRank == 0 {
                StandardStreams.error("rank \(groups.world.rank): \(warning)\n")
            }
        }
        // The ranks verify the dataset's shards together, each hashing a share: each reading all of them would read
        // the dataset once per rank at every start.
        data = try TrainingData(config: config, share: (groups.world.rank, groups.world.size)) { faulty in
            try Self.onAnyRank(faulty, of: groups.world, label: "dataset verified")
        }
        tokenizerFiles = try data.tokenizerFile.map { file in
            try [(file.lastPathComponent, Data(contentsOf: file))] + TokenizerSettings.files(in: file.deletingLastPathComponent())
        } ?? []
        stageLayers = try config.parallel.stageLayers(config.model, sequenceLength: config.training.sequenceLength)
        stageTables = stageLayers.map { ParameterTable(config: config.model, layers: $0) }
        wholeTable = ParameterTable(config: config.model)
        step = try TrainingStep(model: config.model, layers: stageLayers, schedule: config.parallel.schedule,
                                virtualStages: config.parallel.virtualStages, training: config.training,
                                distributed: config.distributed, sequenceParallel: config.parallel.sequenceParallel,
                                groups: groups)
        checkpointLayout = CheckpointLayout(pipeline: groups.mesh.pipeline, tensor: groups.mesh.tensor, data: groups.mesh.data,
                                            virtualStages: config.parallel.virtualStages,
                                            zeroStage: config.distributed.zeroStage, stageLayers: stageLayers)
        shardPlan = try ShardPlan(config: config.model, layout: checkpointLayout)
        shardWriter = ShardWriter(slices: shardPlan.slices(rank: groups.world.rank),
                                  zstdLevel: config.checkpoint.zstdLevel > 0 ? config.checkpoint.zstdLevel : nil)
        if config.checkpoint.async { shardWriter.allocateSnapshot() }
        state = TrainingState(step: 0, tokens: 0, elapsedSeconds: 0, seed: config.training.seed, samplesConsumed: 0,
                              tokenizer: data.tokenizerFile?.lastPathComponent ?? "byte", config: config.resolvedTOML,
                              data: data.fingerprint(tokenizer: tokenizerFiles.first?.contents))
        self.acceptsChangedData = acceptingChangedData

        if config.checkpoint.snapshotEvery > 0 {
            let machines = try MachinePlacement.discover(world: groups.world)
            self.machines = machines
            snapshotRoot = Self.snapshotRoot(config: config, output: output)
            // Files travel only between machines; on one, the snapshots' few collectives share the world's.
            let channel = try machines.count > 1 ? groups.world.split(color: 0, key: groups.world.rank) : groups.world
            snapshotChannel = channel
            buddyCopy = machines.count > 1 ? BuddyCopy(machines: machines, channel: channel) : nil
        } else {
            machines = nil
            snapshotRoot = nil
            snapshotChannel = nil
            buddyCopy = nil
        }
        if start == .fresh, let existing = CheckpointStore.list(checkpointRoot).first {
            // A restart with --resume would take that run over, its weights trained on by this job's settings.
            throw KeelError("\(output.path) already holds a run (\(existing.lastPathComponent)); continue it with --resume or choose another --out",
                            rulesOutRestart: true)
        }
        if isLeader {
            try AtomicFile.createDirectory(checkpointRoot)
            CheckpointStore.removePartials(root: checkpointRoot)
        }
        if let snapshotRoot {
            // Snapshots on a machine whose identity is not this run's were left by another run of this directory (a
            // crash, then the directory deleted and started again): never resumed, removed. World rank 0 decides the
            // identity; every machine's leader compares.
            var identity = [Int64(bitPattern: groups.world.rank == 0 ? try RunIdentity.establish(in: output, fresh: start == .fresh) : 0)]
            try identity.withUnsafeMutableBufferPointer { try groups.world.broadcast($0, root: 0, label: "run identity") }
            if machines!.isMachineLeader {
                let run = UInt64(bitPattern: identity[0])
                if start == .fresh || RunIdentity.read(snapshotRoot) != run {
                    if !CheckpointStore.list(snapshotRoot).isEmpty {
                        // Every machine's leader says so for its own machine (`log` is world rank 0's alone).
                        let message = "removing the in-memory snapshots in \(snapshotRoot.path): another run's (the run directory's identity differs)"
                        if groups.world.rank == 0 { self.log(message) } else {
                            StandardStreams.error("rank \(groups.world.rank): \(message)\n")
                        }
                    }
                    try? FileManager.default.removeItem(at: snapshotRoot)
                }
                CheckpointStore.removePartials(root: snapshotRoot)
                CheckpointStore.removeSetAside(snapshotRoot)
                try RunIdentity.write(run, to: snapshotRoot)
            }
        }
        if start != .fresh, let checkpoint = try newestCheckpoint(required: start == .resume) {
            try restore(from: checkpoint)
            resumedFrom = checkpoint
        } else {
            if start == .resumeIfAny { log("no valid checkpoint or in-memory snapshot yet: starting from the beginning") }
            if let initFrom = config.training.initFrom { try initialize(from: initFrom) }
        }
        // Every replica initialised (or restored) the same parameters; replica 0's copy is made authoritative
        // anyway, as PyTorch's DistributedDataParallel does, so no rank can silently train a different model.
        // (Under ZeRO-3 there are no replicas to agree: each rank holds the only copy of its range.)
        for (chunk, optimizer) in zip(step.chunks, step.optimizers) where !optimizer.shard.shardsParameters {
            try groups.data.broadcast(chunk.parameters.buffer, root: 0, label: "initial parameters")
        }
        // A checkpoint written in the background needs the parameters and moments unchanged until it has copied them.
        step.beforeUpdate = { [unowned self] in
            if pending != nil { pending!.stall += shardWriter.waitUntilCopied() }
        }
        guard isLeader else { return }
        try AtomicFile.write(Data(config.resolvedTOML.utf8), to: output.appendingPathComponent("config.toml"))
        // Where the run ran, for `keel report`.
        var host = HostDescription.current(processes: groups.world.size, threads: ThreadPool.shared.threadCount)
        host.blas = BLASLibrary.description
        if config.training.precision == .bfloat16 { host.bf16Engine = BFloat16Engine.selected.rawValue }
        try AtomicFile.write(host.json, to: output.appendingPathComponent("hardware.json"))
        if let tokenizer = tokenizerFiles.first {
            try AtomicFile.write(tokenizer.contents, to: output.appendingPathComponent(tokenizer.name))
        }
    }

    /// The whole model, when this rank holds all of it (no pipeline or tensor parallelism, no ZeRO-3); nil
    /// otherwise.
    public var model: Transformer? {
        step.chunks.count == 1 && step.chunks[0].isFirstStage && step.chunks[0].isLastStage && groups.tensor.size == 1
            && step.chunks[0].residency == nil ? step.chunks[0] : nil
    }

    /// The run's tokenizer (to decode samples).
    public var tokenizer: any TextTokenizer { data.tokenizer }
    /// The token the run's tokenizer puts before every text, if any (`TokenizerSettings.beginningOfTextToken(in:)`).
    public var textStart: Int32? { data.textStart }

    /// Runs until `training.steps` (or, with `stopAfter`, until that step, as if interrupted there, so that
    /// `--resume` can finish the run), returning the summary; throws (keeping the last good checkpoint) if
    /// the loss or gradient stops being finite. With `trace`, world rank 0 writes every rank's timeline of
    /// the first `traceSteps` steps of this run (0: of every step; each rank holds them in memory until the end)
    /// there as a Chrome trace.
    ///
    /// With `profiler`, every kernel call of this rank's chunks and its tensor group's collectives are timed into
    /// it, from the second step of this run on (the first warms up). `metricsOpened` gets `metrics.jsonl`'s log on
    /// world rank 0 as soon as it is open, before the first record (a metrics endpoint serves its newest values).
    public func run(stopAfter: Int? = nil, trace: URL? = nil, traceSteps: Int = 0, profiler: Profiler? = nil,
                    metricsOpened: ((MetricsLog) throws -> Void)? = nil) throws -> TrainingSummary {
        let t = config.training
        let schedule = LearningRateSchedule(peak: t.learningRate, minimum: t.minLearningRate, warmupSteps: t.warmupSteps,
                                            totalSteps: t.steps)
        let replicas = groups.data
        let tokensPerStep = t.tokensPerStep * replicas.size
        let loader = try TokenLoader(windows: data.train, batch: t.batchSize, seed: t.seed, rank: replicas.rank,
                                     worldSize: replicas.size, position: state.samplesConsumed)
        defer { loader.stop() }
        metrics = isLeader ? try MetricsLog(url: output.appendingPathComponent("metrics.jsonl"),
                                            keepingThrough: resumedFrom == nil ? nil : state.step) : nil
        if config.logging.tensorBoard {
            metrics?.tensorBoard = try TensorBoardLog(directory: output.appendingPathComponent("tensorboard"),
                                                      resumedAfter: resumedFrom == nil ? -1 : state.step)
        }
        if let metrics, let metricsOpened { try metricsOpened(metrics) }
        let progress = isLeader ? ProgressDisplay(totalSteps: t.steps, every: config.logging.every) : nil

        let baseline = isLeader ? data.unigramLoss(vocabSize: config.model.vocabSize) : .nan
        let unigram = baseline ?? .nan
        if baseline == nil {
            log(String(format: "data: %@; %d training and %d validation targets the loss counts (what the assistant writes)",
                       data.summary, data.trainTargets, data.validationTargets))
        } else {
            log(String(format: "data: %@; %d training and %d validation tokens; unigram baseline loss %.4f",
                       data.summary, data.trainTargets, data.validationTargets, unigram))
        }
        log("model: \(config.model.architecture.rawValue), \(wholeTable.count) parameters; \(tokensPerStep) tokens per step"
            + (t.precision == .bfloat16 ? "; bf16 matrix products on \(BFloat16Engine.selected.rawValue)" : "")
            + (t.precision == .bfloat16 ? BFloat16Engine.selected.note.map { " (\($0))" } ?? "" : "")
            + (t.warmupSteps >= t.steps ? "; note: training.warmup_steps (\(t.warmupSteps)) is not below training.steps (\(t.steps)): "
                + "the learning rate warms up for the whole run (reaching training.lr at its last step at most) and never decays to training.min_lr" : ""))
        if groups.pipeline.size > 1 { log(pipelineSummary()) }
        if replicas.size > 1 { log(dataParallelSummary()) }
        var initialValidation: Float?
        if let resumedFrom {
            let inMemory = resumedFrom.deletingLastPathComponent() == snapshotRoot
            let fetched = fetchedAtRestore.map {
                $0.fetchedFiles == 0 ? "" : String(format: " (%d file%@, %.1f MB, fetched from other machines)",
                                                   $0.fetchedFiles, $0.fetchedFiles == 1 ? "" : "s", Double($0.fetchedBytes) / 1e6)
            } ?? ""
            log("resumed from \(inMemory ? "the in-memory snapshot " : "")\(resumedFrom.path)\(fetched) at step \(state.step)")
        } else {
            let loss = try validationLoss()
            initialValidation = loss
            try metrics?.write(["step": .int(0), "val_loss": .float(loss)])
            log(String(format: "step 0: validation loss %.4f", loss))
        }

        // Only checkpoints on disk count as the run's last one (a snapshot disappears when the run ends).
        lastCheckpoint = resumedFrom?.deletingLastPathComponent() == checkpointRoot ? resumedFrom : nil
        var lastValidation: (step: Int, loss: Float)?
        var stoppedBy: Int32?
        if trace != nil { try groups.world.barrier(label: "trace: common start") }
        let tracer = trace.map { _ in PipelineTrace() }
        let segmentStart = Date()
        let firstStep = state.step
        let elapsedBefore = state.elapsedSeconds
        var segmentTokens = 0
        let lastStep = min(t.steps, stopAfter ?? t.steps)
        while state.step < lastStep {
            let number = state.step + 1
            let stepStart = Date()
            let operationsBefore = groups.world.startedOperations, tensorBytesBefore = groups.tensor.communicatedBytes
            let dataBytesBefore = groups.data.communicatedBytes
            let rate = schedule.rate(at: number)
            let result: StepResult
            if let profiler {
                if number == firstStep + 2 { profiler.reset() }
                for chunk in step.chunks { chunk.profiler = profiler }
                profiler.stepStarted()
            }
            do {
                result = try step.run(number: number, learningRate: Float(rate), loader: loader)
            } catch let diverged as TrainingDiverged {
                // Every rank diverges at the same step (the loss and norm are global): a checkpoint still being
                // written holds the state before it, and is finished first.
                if pending != nil { try finishCheckpoint() }
                // Then the step's record, its loss or norm null (JSON has no NaN): the run's metrics end where it did,
                // and a plot or a scraper sees the step it diverged at rather than the one before.
                try metrics?.write([("step", .int(number)), ("loss", .double(diverged.loss)), ("lr", .double(rate)),
                                    ("grad_norm", .double(diverged.norm)), ("diverged", .int(1))])
                // The snapshots hold the steps that led up to it: `--resume` (with a lower learning rate, say) goes
                // back to the checkpoint the error names, not to the brink.
                forgetSnapshots()
                throw diverged.reported(lastCheckpoint: lastCheckpoint)
            }
            if let profiler {  // validation and checkpoints are not part of the step
                profiler.stepEnded()
                for chunk in step.chunks { chunk.profiler = nil }
            }
            let dataBytes = groups.data.communicatedBytes - dataBytesBefore
            if traceSteps == 0 || number - firstStep <= traceSteps { tracer?.record(step: number, step.executor) }

            state.step = number
            state.tokens += tokensPerStep
            state.samplesConsumed = loader.position
            segmentTokens += tokensPerStep
            let segmentSeconds = Date().timeIntervalSince(segmentStart)
            state.elapsedSeconds = elapsedBefore + segmentSeconds
            let tokensPerSecond = Double(tokensPerStep) / max(Date().timeIntervalSince(stepStart), 1e-9)
            var record: [(key: String, value: MetricsLog.Field)] = [
                ("step", .int(number)), ("loss", .float(Float(result.loss))), ("lr", .double(rate)),
                ("grad_norm", .float(result.gradientNorm)), ("tokens", .int(state.tokens)),
                ("tokens_per_s", .double(tokensPerSecond)), ("elapsed_s", .double(state.elapsedSeconds)),
            ]
            if groups.pipeline.size > 1 {
                // The idle share of each pipeline rank's step (replica 0), measured by its executor.
                record += [("bubble", .double(result.bubbles.reduce(0, +) / Double(result.bubbles.count))),
                           ("bubble_per_stage", .doubles(result.bubbles))]
            }
            if groups.tensor.size > 1 {
                // What this rank's tensor group moved in the step (activations, their gradients, the loss's sums).
                record.append(("comm_tensor_bytes", .int(groups.tensor.communicatedBytes - tensorBytesBefore)))
            }
            if replicas.size > 1 {
                // How this step's gradient communication overlapped the backward passes (this rank's chunks).
                let overlap = step.parallels.map(\.statistics)
                // What this rank's data-parallel group moved: gradients, ZeRO's parameter gathers, the loss.
                record += [("comm_ops", .int(groups.world.startedOperations - operationsBefore)),
                           ("comm_data_bytes", .int(dataBytes)),
                           ("comm_buckets", .int(overlap.reduce(0) { $0 + $1.buckets })),
                           ("comm_overlapped_buckets", .int(overlap.reduce(0) { $0 + $1.startedDuringBackward })),
                           ("comm_s", .double(overlap.reduce(0) { $0 + $1.communicationSeconds })),
                           ("comm_exposed_s", .double(overlap.reduce(0) { $0 + $1.exposedSeconds }))]
            }
            try metrics?.write(record)
            progress?.update(step: number, loss: Float(result.loss), learningRate: rate,
                             tokensPerSecond: Double(segmentTokens) / max(segmentSeconds, 1e-9),
                             secondsPerStep: segmentSeconds / Double(number - firstStep))

            // A stop signal on any rank ends the run on every rank after this same step, with a checkpoint; a
            // checkpoint written in the background is published once every rank's file is written.
            let agreed = try agreeAfterStep(number)
            // A signal after the last step stops nothing: the run is finished (and says so with its status).
            stoppedBy = number < lastStep ? agreed.signal : nil
            if agreed.checkpointWritten { try finishCheckpoint() }
            if stoppedBy == nil, (t.evalEvery > 0 && number % t.evalEvery == 0) || number == lastStep {
                let validation = try validationLoss()
                lastValidation = (number, validation)
                try metrics?.write(["step": .int(number), "val_loss": .float(validation)])
                progress?.message(String(format: "step %d: validation loss %.4f", number, validation))
            }
            if (config.checkpoint.every > 0 && number % config.checkpoint.every == 0) || number == lastStep || stoppedBy != nil {
                // The last one is finished before the run ends.
                try startCheckpoint(in: checkpointRoot, finishing: number == lastStep || stoppedBy != nil)
            } else if let snapshotRoot, !snapshotsStopped, number % config.checkpoint.snapshotEvery == 0 {
                try startCheckpoint(in: snapshotRoot, finishing: false)
            }
            if let stoppedBy {
                log("\(StopSignals.name(of: stoppedBy)): stopped after step \(number) with checkpoint \(lastCheckpoint!.path); continue with keel train --resume --out \(output.path)")
                break
            }
        }
        let finalValidation = stoppedBy != nil ? nil
            : lastValidation?.step == state.step ? lastValidation!.loss : try validationLoss()
        if lastCheckpoint == nil { try startCheckpoint(in: checkpointRoot, finishing: true) }
        let checkpoint = lastCheckpoint!
        // The run's state is on disk: its snapshots would only hold memory.
        removeSnapshots()
        let seconds = Date().timeIntervalSince(segmentStart)
        if let trace, let tracer {
            try tracer.write(to: trace, world: groups.world, mesh: groups.mesh)
            let last = traceSteps == 0 ? state.step : min(state.step, firstStep + traceSteps)
            log("trace: \(trace.path), steps \(firstStep + 1)–\(last) (open it in https://ui.perfetto.dev or chrome://tracing)")
        }
        return TrainingSummary(steps: state.step, stepsRun: state.step - firstStep, initialValidationLoss: initialValidation,
                               finalValidationLoss: finalValidation, unigramLoss: unigram,
                               tokensPerSecond: Double(segmentTokens) / max(seconds, 1e-9), checkpoint: checkpoint,
                               stoppedBy: stoppedBy)
    }

    /// The stop signal any rank has received (`StopSignals`), agreed by all so that every rank stops after the
    /// same step (nil when none has), and whether every rank has written its file of the checkpoint being written
    /// in the background. Not counted in the step's communication metrics.
    private func agreeAfterStep(_ number: Int) throws -> (signal: Int32?, checkpointWritten: Bool) {
        var values = [Double(StopSignals.received ?? 0), pending != nil && !shardWriter.isFinished ? 1 : 0]
        if groups.world.size > 1 {
            values = try groups.world.allReduce(values, .max, label: "step \(number): stop request and checkpoint progress")
        }
        return (values[0] > 0 ? Int32(values[0]) : nil, pending != nil && values[1] == 0)
    }

    /// The most micro-batches one validation pass evaluates (`validationLoss`); the tests set others.
    var evaluationPass = 64

    /// Mean loss over up to `eval_batches` micro-batches per replica of consecutive validation windows: the
    /// replicas share the micro-batches out as `Evaluation.batches` deals them, each runs its own forward
    /// through its pipeline, and the sums are combined.
    public func validationLoss() throws -> Float {
        let batch = config.training.batchSize, length = data.validation.length
        let replicas = groups.data
        let windows = min(data.validation.count, config.training.evalBatches * batch * replicas.size)
        var ranges = Evaluation.batches(count: windows, batch: batch, rank: replicas.rank, ranks: replicas.size)
        let dealt = ranges.count
        if step.optimizers.contains(where: \.shard.shardsParameters) {
            // Under ZeRO-3 every forward gathers its parameters over the data group, so every replica runs as many
            // as replica 0, which is dealt the most: the extra ones repeat real windows and weigh nothing. Without
            // them the replicas' collectives would not pair up when the windows do not divide evenly.
            let most = Evaluation.batches(count: windows, batch: batch, rank: 0, ranks: replicas.size).count
            ranges += Array(repeating: 0..<min(batch, windows), count: most - dealt)
        }
        // A pass over at most `evaluationPass` micro-batches at a time: the ids held at once stay small however many
        // windows are evaluated (every replica cuts its equal share under ZeRO-3 alike, so their gathers still pair up).
        let packed = data.validation.packsDocuments, size = batch * length
        var inputs = [Int32](repeating: 0, count: max(1, min(ranges.count, evaluationPass) * size)), targets = inputs, documents = inputs
        var local = 0.0, weight = 0.0
        for first in stride(from: 0, to: max(ranges.count, 1), by: evaluationPass) {
            let pass = Array(ranges[first..<min(first + evaluationPass, ranges.count)])
            let rows = { (k: Int) in pass[k].count }
            inputs.withUnsafeMutableBufferPointer { i in
                targets.withUnsafeMutableBufferPointer { t in
                    documents.withUnsafeMutableBufferPointer { d in
                        for (k, range) in pass.enumerated() {
                            Evaluation.copy(range, of: data.validation, inputs: i.baseAddress! + k * size,
                                            targets: t.baseAddress! + k * size, documents: d.baseAddress! + k * size)
                        }
                    }
                }
            }
            let losses = try inputs.withUnsafeBufferPointer { i in
                try targets.withUnsafeBufferPointer { t in
                    try documents.withUnsafeBufferPointer { d in
                        try step.executor.evaluate(microBatches: pass.count, rows: rows,
                                                   inputs: { i.baseAddress! + $0 * size }, targets: { t.baseAddress! + $0 * size },
                                                   documents: packed ? { d.baseAddress! + $0 * size } : nil, label: "validation")
                    }
                }
            }
            // Each micro-batch's loss is its mean per target counted: weigh it by its sequences (a corpus: every
            // position counts), or by the targets it counts (chat data).
            targets.withUnsafeBufferPointer { t in
                for (k, loss) in losses.enumerated() where first + k < dealt {
                    let w = packed ? Double(CrossEntropy.counted(t.baseAddress! + k * size, count: rows(k) * length)) : Double(rows(k))
                    local += Double(loss) * w
                    weight += w
                }
            }
        }
        let sums = try replicas.allReduce([local, weight], .sum, label: "validation loss")
        var total = sums[1] > 0 ? sums[0] / sums[1] : 0
        if groups.pipeline.size > 1 {
            // The last stage's total (over its replicas, so also on one dealt no windows); the other stages' sums hold none.
            let held = step.chunks.last!.isLastStage ? total : 0
            total = try groups.pipeline.allReduce([held], .sum, label: "validation loss from the last stage")[0]
        }
        return Float(total)
    }

    /// One line describing the pipeline: its stages, schedule and micro-batches.
    private func pipelineSummary() -> String {
        let p = config.parallel
        let stages = stageLayers.enumerated().map { "\($0.offset):\($0.element.lowerBound)..<\($0.element.upperBound)" }
        let largest = stageTables.map(\.count).max()!
        return "pipeline: \(p.pipeline) ranks × \(p.virtualStages) chunk\(p.virtualStages == 1 ? "" : "s"), schedule \(p.schedule.rawValue), "
            + "\(config.training.gradientAccumulation) micro-batches per step; blocks by stage \(stages.joined(separator: " ")); "
            + "largest stage \(largest) parameters"
    }

    /// One line describing the data-parallel layout and the optimizer memory per rank.
    private func dataParallelSummary() -> String {
        // Two moments of 4 bytes per parameter.
        let size = { (floats: Int) in String(format: "%.1f KiB", Double(floats) * 8 / 1024) }
        let shards = step.optimizers.map(\.shard)
        let local = step.chunks.reduce(0) { $0 + $1.table.count }, shard = shards.reduce(0) { $0 + $1.range.count }
        let stage = shards[0].shardsParameters ? 3 : shards[0].shardsGradients ? 2 : 1
        let optimizerState = shards[0].isSharded
            ? "ZeRO-\(stage), optimizer state \(size(shard)) per rank (\(size(local)) unsharded)"
            : "optimizer state replicated, \(size(local)) per rank"
        return "data parallel: \(groups.data.size) replicas, \(step.parallels.reduce(0) { $0 + $1.buckets.count }) gradient buckets of up to \(String(format: "%g", config.distributed.bucketMegabytes)) MB; \(optimizerState)"
    }

    /// A checkpoint being written.
    private struct PendingCheckpoint {
        let root: URL
        /// Whether `root` is the in-memory snapshots' (not the run's checkpoints on disk).
        let isSnapshot: Bool
        let state: TrainingState
        /// The seconds training has waited for it so far.
        var stall: Double
        /// This rank's outcome, when its file was written in the foreground.
        var outcome: ShardWriter.Outcome?
    }

    /// Starts the checkpoint of step `state.step` under `root` (the run's checkpoints, or its in-memory snapshots)
    /// — after finishing the one before, if it is still being written — and with `finishing`, or when checkpoints
    /// are not asynchronous, finishes it (`finishCheckpoint`). Every rank writes only its slices (`ShardPlan`); no
    /// rank gathers anything from another. A snapshot on several machines is then copied to the buddy machines by
    /// the same thread (`BuddyCopy`).
    private func startCheckpoint(in root: URL, finishing: Bool) throws {
        if pending != nil { try finishCheckpoint() }
        let isSnapshot = root != checkpointRoot
        // The snapshot before may have just ended the job's snapshots (its copies failed, `finishCheckpoint`): every
        // rank learned so from the same all-gather, and none starts this one.
        if isSnapshot, snapshotsStopped { return }
        let started = monotonicSeconds(), inBackground = config.checkpoint.async && !finishing
        var outcome: ShardWriter.Outcome?
        let url = CheckpointStore.partialDirectory(root: root, step: state.step)
            .appendingPathComponent(ShardPlan.fileName(rank: groups.world.rank))
        let copy: ShardWriter.Completion? = isSnapshot ? buddyCopy.map { copies in { copies.exchange(after: $0, file: url) } } : nil
        do {
            _ = try CheckpointStore.prepare(root: root, step: state.step)
            let source: ShardWriter.Source = { [unowned self] kind, index in liveState(kind, slice: index) }
            if inBackground {
                shardWriter.begin(to: url, from: source, then: copy) { write in writingAlone(isSnapshot, write) }
            } else {
                outcome = writingAlone(isSnapshot) { shardWriter.write(to: url, from: source, then: copy) }
            }
        } catch {
            // The buddy waits for word of this rank's file, written or not.
            outcome = copy?(.failed(error)) ?? .failed(error)
        }
        pending = PendingCheckpoint(root: root, isSnapshot: isSnapshot, state: state, stall: monotonicSeconds() - started,
                                    outcome: outcome)
        if !inBackground { try finishCheckpoint() }
    }

    /// Finishes the pending checkpoint: waits for this rank's file (and its copies), then with every rank publishes
    /// it — world rank 0 writes the manifest and renames the directory into place; for a snapshot, the leading rank
    /// of each machine does so in that machine's directory — and logs how long training waited for it. If any
    /// rank's weights hold a NaN or infinity, or its write failed, nothing of the checkpoint stays on disk, the
    /// older ones are intact, and every rank throws (for a snapshot: warns, and training goes on).
    private func finishCheckpoint() throws {
        guard let pending else { return }
        self.pending = nil
        let started = monotonicSeconds(), world = groups.world, number = pending.state.step, root = pending.root
        let publishes = pending.isSnapshot ? machines!.isMachineLeader : isLeader
        // This rank's outcome, shared with all: [0 written, 1 failed, 2 non-finite weights; that slice, or for a failure
        // 1 when a copy's message failed (`BuddyCopy.isBroken`); bytes; xxh64].
        var failure: Error?, writeSeconds = 0.0
        let local: [Int64]
        switch writingAlone(pending.isSnapshot, { pending.outcome ?? shardWriter.finish() }) {
        case .written(let record, let seconds):
            local = [0, 0, Int64(record.bytes), Int64(bitPattern: UInt64(record.xxh64, radix: 16)!)]
            writeSeconds = seconds
        case .nonFinite(let slice):
            local = [2, Int64(slice), 0, 0]
        case .failed(let error):
            local = [1, pending.isSnapshot && buddyCopy?.isBroken == true ? 1 : 0, 0, 0]
            failure = CheckpointStore.notWritten(root: root, step: number, because: AtomicFile.systemReason(error))
        }
        let outcomes = try world.allGather(local, label: "checkpoint \(number): files written")
        let ranks = (0..<world.size).map { Array(outcomes[(4 * $0)..<(4 * $0 + 4)]) }
        if let bad = ranks.firstIndex(where: { $0[0] != 0 }) {
            if publishes { CheckpointStore.discard(root: root, step: number) }
            if ranks[bad][0] == 2 {
                // The loss and gradient norm were finite, but an update can still overflow a weight (one no pass
                // reads, say): such a state is never saved as the last good one.
                let name = shardPlan.slices(rank: bad)[Int(ranks[bad][1])].name
                forgetSnapshots()  // as for a loss that is not finite
                let older = lastCheckpoint.map { "; the last good checkpoint is \($0.path)" } ?? ""
                throw KeelError("training diverged: \(name) holds NaN or infinite values after step \(number); no checkpoint was written for it\(older)",
                                rulesOutRestart: true)
            }
            let error = failure ?? CheckpointStore.notWritten(root: root, step: number,
                                                               because: "rank \(bad) could not write its file (its error says why)")
            // Snapshots only shorten recovery: without one, training goes on (the checkpoints on disk still hold).
            guard pending.isSnapshot else { throw error }
            if failure != nil, !isLeader { StandardStreams.error("warning: rank \(world.rank): \(error)\n") }
            log("warning: no in-memory snapshot of step \(number): \(error)")
            if let broken = ranks.firstIndex(where: { $0[0] == 1 && $0[1] == 1 }) {
                // Every later snapshot would fail too, after its ranks waited up to the timeout for their copies.
                snapshotsStopped = true
                log("warning: no more in-memory snapshots in this job: a message of rank \(broken)'s copies between machines failed, and stays posted (MPI cannot withdraw it), so the copies can no longer pair up; checkpoints on disk go on, and a restarted job takes snapshots again")
            }
            return
        }
        var published = true
        if publishes {
            do {
                try groups.world.workingAlone { try publish(pending, files: ranks) }
            } catch {
                failure = error
                published = false
            }
        }
        if world.size > 1 {
            published = try world.allReduce([published ? 0.0 : 1.0], .max, label: "checkpoint \(number): published")[0] == 0
        }
        if !published {
            if publishes { CheckpointStore.discard(root: root, step: number) }
            let error = failure ?? CheckpointStore.notWritten(root: root, step: number, because: "it could not be published (rank 0's error says why)")
            guard pending.isSnapshot else { throw error }
            log("warning: no in-memory snapshot of step \(number): \(error)")
            return
        }
        if !pending.isSnapshot { lastCheckpoint = root.appendingPathComponent(CheckpointStore.name(step: number)) }
        // Training waited `checkpoint_s` for it (snapshot, the rare wait for the copy, publishing); world rank 0
        // wrote its file in `checkpoint_write_s`; all files together hold `checkpoint_bytes`. An in-memory
        // snapshot's record says so with `"in_memory": 1`; on several machines, world rank 0's copies to and from
        // its buddies took `checkpoint_copy_s` after its file was written and brought it `checkpoint_copy_bytes`.
        let copies = pending.isSnapshot ? buddyCopy : nil
        // Pairs, not a dictionary literal: a record's fields keep their order, and its kind is its first after "step".
        let fields: [(key: String, value: MetricsLog.Field)] = [
            ("step", .int(number)), ("checkpoint_s", .double(pending.stall + monotonicSeconds() - started)),
            ("checkpoint_write_s", .double(writeSeconds)), ("checkpoint_bytes", .int(Int(ranks.reduce(0) { $0 + $1[2] }))),
        ]
        try metrics?.write(fields + (pending.isSnapshot ? [("in_memory", .int(1))] : [])
                           + (copies.map { [("checkpoint_copy_s", .double($0.seconds)), ("checkpoint_copy_bytes", .int($0.receivedBytes))] } ?? []))
    }

    /// Publishes `pending` (its rank's files of sizes and checksums `files`: [_, _, bytes, xxh64] each): writes the
    /// tokenizer's files and the manifest, renames the directory into place, and prunes the older ones.
    private func publish(_ pending: PendingCheckpoint, files outcomes: [[Int64]]) throws {
        let root = pending.root, number = pending.state.step
        var files: [String: CheckpointStore.FileRecord] = [:]
        for (rank, outcome) in outcomes.enumerated() {
            files[ShardPlan.fileName(rank: rank)] = CheckpointStore.FileRecord(
                bytes: Int(outcome[2]), xxh64: String(UInt64(bitPattern: outcome[3]), radix: 16))
        }
        // The tokenizer, and what Hugging Face keeps beside it for generation (an imported model's
        // end-of-sequence token and chat template), when present.
        for (name, contents) in tokenizerFiles {
            let copy = CheckpointStore.partialDirectory(root: root, step: number).appendingPathComponent(name)
            try AtomicFile.write(contents, to: copy)
            files[name] = try CheckpointStore.record(of: copy)
        }
        try CheckpointStore.publish(CheckpointManifest(step: number, layout: checkpointLayout, model: config.model,
                                                       state: pending.state, files: files, tensors: manifestTensors,
                                                       zstdLevel: shardWriter.zstdLevel),
                                    root: root)
        if pending.isSnapshot {
            // Freeing the older snapshot's memory takes a while (0.2 s for GPT-2 124M): not in the step. Snapshots
            // of later steps (which a resume found unusable) go too; they are listed now, before a next
            // snapshot is published.
            let later = CheckpointStore.list(root, after: number)
            Thread.detachNewThread {
                for snapshot in later { try? FileManager.default.removeItem(at: snapshot) }
                CheckpointStore.prune(root, keep: 1, written: number)
            }
        } else {
            CheckpointStore.prune(root, keep: config.checkpoint.keep, keepEvery: config.checkpoint.keepEvery, written: number)
        }
    }

    /// Runs `body`, which writes this rank's file of a checkpoint or waits for it, as work alone
    /// (`Communicator.workingAlone`): the ranks done first wait in the next collective as long as this one writes. Not
    /// for a snapshot on several machines, whose writer also copies files to and from other ranks: a copy that stalls
    /// must still time out.
    private func writingAlone<T>(_ isSnapshot: Bool, _ body: () -> T) -> T {
        isSnapshot && buddyCopy != nil ? body() : groups.world.workingAlone(body)
    }

    /// Removes this machine's in-memory snapshots of the run (its machine leader does): renamed aside first, at once,
    /// since the background thread may still be pruning an older one inside the directory.
    private func removeSnapshots() {
        guard let snapshotRoot, machines!.isMachineLeader else { return }
        CheckpointStore.remove(snapshotRoot)
        // The run's directory of machines, once the last machine sharing this file system has left it.
        rmdir(snapshotRoot.deletingLastPathComponent().path)
    }

    /// After a divergence: the run takes a new identity, so that no machine's snapshots — also those of machines this
    /// job does not run on, left by an earlier job of the run — count as this run's any more, and this job's machines
    /// remove theirs.
    private func forgetSnapshots() {
        guard snapshotRoot != nil else { return }
        if groups.world.rank == 0 { _ = try? RunIdentity.establish(in: output, fresh: true) }
        removeSnapshots()
    }

    /// Where the in-memory snapshots of a run in `output` configured as `config` go on the machine called
    /// `machine`; nil when it takes none. Each machine has a directory of its own under the run's, so that ranks
    /// standing for several machines on one host (`KEEL_MACHINE`) keep apart what separate machines would.
    public static func snapshotRoot(config: TrainConfig, output: URL,
                                    machine: String = MachinePlacement.localName()) -> URL? {
        guard config.checkpoint.snapshotEvery > 0 else { return nil }
        let safe = String(machine.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "_" })
        return CheckpointStore.snapshotRoot(for: output, in: URL(fileURLWithPath: config.checkpoint.snapshotDirectory))
            .appendingPathComponent(safe)
    }

    /// The checkpoint `--resume` continues from: the newest on disk that verifies (the ranks check it together,
    /// warning about newer damaged ones), unless the machines' in-memory snapshots hold a newer one — then that,
    /// with the files this rank needs fetched to its machine (`SnapshotRecovery`). Without either: an error when
    /// `required` or when checkpoints are there but none verifies (a run to repair, not to start over), else nil
    /// (every rank alike: the search is collective).
    private func newestCheckpoint(required: Bool) throws -> URL? {
        let world = groups.world
        let candidates = CheckpointStore.list(checkpointRoot)
        if world.size > 1 {
            // The ranks check the checkpoints together, so they must see the same ones: one directory every machine shares.
            let seen = [Double(candidates.count), candidates.first.map { Double(CheckpointStore.step(of: $0)!) } ?? -1]
            let (lowest, highest) = try world.extremes(seen, label: "checkpoints on disk")
            guard lowest == highest else {
                // (A restart may mend it: a network filesystem's cache can lag right after a node failure.)
                throw KeelError("--resume: the ranks see different checkpoints in \(checkpointRoot.path) (\(Int(lowest[0])) to \(Int(highest[0])) of them): the run directory must be one that every machine shares")
            }
        }
        let found = try CheckpointStore.latestValid(in: checkpointRoot, share: (world.rank, world.size), agree: damagedOnAnyRank)
        // A manifest's fault every rank meets: one says so. A file's, the rank whose share holds it (`log` is rank 0's).
        for problem in found.problems {
            if isLeader {
                log("warning: skipping \(problem.message)")
            } else if !problem.everyRank {
                StandardStreams.error("rank \(world.rank): warning: skipping \(problem.message)\n")
            }
        }
        if let snapshotRoot, let machines, let snapshotChannel,
           let restored = try SnapshotRecovery.restore(root: snapshotRoot, machines: machines, channel: snapshotChannel,
                                                       newerThan: found.checkpoint.flatMap(CheckpointStore.step(of:)) ?? -1, needs: neededFiles, warn: log) {
            fetchedAtRestore = restored
            return restored.directory
        }
        guard let checkpoint = found.checkpoint else {
            // Checkpoints there of which none verifies: a run to repair, not to start over.
            guard required || !candidates.isEmpty else { return nil }
            // Not ruled out for a supervisor: a file server's hiccup fails reads too, and restarts that make no progress
            // are limited and spaced out.
            throw KeelError("--resume: no valid checkpoint in \(([checkpointRoot] + (snapshotRoot.map { [$0] } ?? [])).map(\.path).joined(separator: " or "))")
        }
        return checkpoint
    }

    /// Whether any rank found `candidate` damaged (`damaged`: this rank's share of its files did), for the ranks'
    /// verification of a checkpoint together (each hashing a share of its files).
    private func damagedOnAnyRank(_ candidate: URL, _ damaged: Bool) throws -> Bool {
        try Self.onAnyRank(damaged, of: groups.world, label: "checkpoint \(candidate.lastPathComponent) verified")
    }

    /// Whether `flag` holds on any rank of `world` (collective).
    private static func onAnyRank(_ flag: Bool, of world: any Communicator, label: String) throws -> Bool {
        guard world.size > 1 else { return flag }
        return try world.allReduce([flag ? 1 : 0], .max, label: label)[0] > 0
    }

    /// Where slice `index` of this rank's checkpoint slices lies in the live buffers, for `kind`: in its chunk's
    /// parameters, or in the moments, which hold only the optimizer shard's range.
    private func liveState(_ kind: CheckpointKind, slice index: Int) -> UnsafePointer<Float> {
        let slice = shardWriter.slices[index], optimizer = step.optimizers[slice.chunk]
        let inShard = slice.offset - optimizer.shard.range.lowerBound
        switch kind {
        case .model: return UnsafePointer(step.chunks[slice.chunk].parameters.pointer + slice.offset)
        case .firstMoment: return UnsafePointer(optimizer.m.pointer + inShard)
        case .secondMoment: return UnsafePointer(optimizer.v.pointer + inShard)
        }
    }

    /// What this rank restores: for each chunk, its weights (under ZeRO-3 only its shard's range) into its
    /// parameters, and its shard of each moment into the optimizer's buffers (which begin at the shard's start).
    private var restoreTargets: [(kind: CheckpointKind, table: ParameterTable, destination: UnsafeMutablePointer<Float>,
                                  base: Int, range: Range<Int>?)] {
        zip(step.chunks, step.optimizers).flatMap { chunk, optimizer in
            let shard = optimizer.shard.range
            return [(CheckpointKind.model, chunk.table, chunk.parameters.pointer, 0, optimizer.shard.shardsParameters ? shard : nil),
                    (.firstMoment, chunk.table, optimizer.m.pointer, shard.lowerBound, shard),
                    (.secondMoment, chunk.table, optimizer.v.pointer, shard.lowerBound, shard)]
        }
    }

    /// The files of `reader`'s checkpoint this rank reads to restore its share.
    private func neededFiles(_ reader: CheckpointReader) throws -> Set<String> {
        try restoreTargets.reduce(into: []) { $0.formUnion(try reader.files(for: $1.kind, table: $1.table, only: $1.range)) }
    }

    /// Starts from the weights of checkpoint `path` (a run or checkpoint directory, any layout): this rank's share of
    /// them (under ZeRO-3 only its range), the optimizer fresh — fine-tuning. The checkpoint's model must be the
    /// config's, and its tokenizer the data's, or the ids would stand for other tokens.
    private func initialize(from path: String) throws {
        // The ranks verify it together, each hashing its share of the files: each reading all of them would read the
        // checkpoint once per rank from the shared file system, the first done waiting on the last.
        let world = groups.world
        if world.size > 1 {
            // They check its checkpoints together, so they must see the same ones (as on --resume).
            let url = URL(fileURLWithPath: path)
            let listed = [url.appendingPathComponent("checkpoints"), url].map { Double(CheckpointStore.list($0).count) }
            let (lowest, highest) = try world.extremes(listed, label: "training.init_from checkpoints")
            guard lowest == highest else {
                throw KeelError("training.init_from: the ranks see different checkpoints in \(path): it must be a directory every machine shares")
            }
        }
        let reader = try CheckpointReader(resolving: path, share: (world.rank, world.size), agree: damagedOnAnyRank)
        guard reader.model == config.model else {
            throw KeelError("training.init_from: \(reader.directory.path) holds another model than the config's [model] section (\(Self.differences(reader.model, config.model))); copy the [model] section of the run's config.toml")
        }
        // The run's tokenizer as read when it started (tokenizerFiles' first), against the checkpoint's file.
        guard try tokenizerFiles.first?.contents == reader.tokenizerContents() else {
            throw KeelError("training.init_from: the data's tokenizer (\(data.tokenizerFile?.path ?? "byte")) is not the checkpoint's (\(reader.tokenizerPath)): tokenize the data with that one")
        }
        for (chunk, optimizer) in zip(step.chunks, step.optimizers) {
            try reader.load(.model, table: chunk.table, into: chunk.parameters.pointer,
                            only: optimizer.shard.shardsParameters ? optimizer.shard.range : nil)
        }
        log("initialized from \(reader.directory.path) (step \(reader.state.step))")
    }

    /// The keys in which two model shapes differ, as "n_layer 2 there, 3 here".
    private static func differences(_ a: ModelConfig, _ b: ModelConfig) -> String {
        let encoder = JSONEncoder()
        guard let left = try? JSONSerialization.jsonObject(with: encoder.encode(a)) as? [String: Any],
              let right = try? JSONSerialization.jsonObject(with: encoder.encode(b)) as? [String: Any] else { return "" }
        return left.keys.sorted().compactMap { key in
            let x = "\(left[key] ?? "")", y = "\(right[key] ?? "")"
            return x == y ? nil : "\(key) \(x) there, \(y) here"
        }.joined(separator: ", ")
    }

    /// Restores this rank's share from `checkpoint`, whatever layout wrote it: its chunks' weights (under ZeRO-3
    /// only its range, so no rank ever holds the whole model) and its shard of the moments.
    private func restore(from checkpoint: URL) throws {
        let reader = try CheckpointReader(checkpoint, verify: false)
        // Settings that differ from the checkpoint's differ on every restart too: status 3, no restart.
        guard reader.model == config.model else {
            throw KeelError("--resume: \(checkpoint.path) holds a different model shape than the config's [model] section (\(Self.differences(reader.model, config.model)))",
                            rulesOutRestart: true)
        }
        if let manifest = reader.manifest, manifest.tensors[CheckpointKind.firstMoment.rawValue] == nil {
            throw KeelError("--resume: \(checkpoint.path) holds weights only, no optimizer state (an import's, or a dpo, reward or grpo run's): start a training run from it with --init-from \(checkpoint.path) and another --out",
                            rulesOutRestart: true)
        }
        guard reader.state.seed == config.training.seed else {
            throw KeelError("--resume: \(checkpoint.path) was trained with seed \(reader.state.seed), the config says \(config.training.seed)",
                            rulesOutRestart: true)
        }
        let data = state.data!
        if let saved = reader.state.data {
            let differences = data.differences(from: saved)
            if !differences.isEmpty {
                let what = "the data is not what \(checkpoint.lastPathComponent) was trained on (\(differences.joined(separator: "; ")))"
                guard acceptsChangedData else {
                    // The same refusal on every restart: nothing a supervisor's retry could change.
                    throw KeelError("--resume: \(what): its data position (\(reader.state.samplesConsumed) windows) would go on in another order of windows, repeating some and skipping others; restore the data and settings, or pass --accept-changed-data to go on with this data from that position",
                                    rulesOutRestart: true)
                }
                log("note: \(what); going on with this data from position \(reader.state.samplesConsumed) (--accept-changed-data)")
            }
        }
        // Settings may change on a resume (a lower learning rate after a spike, another layout), but not unnoticed.
        if let earlier = try? TrainConfig(toml: reader.state.config, origin: checkpoint.path, requiresData: false) {
            let changes = config.changes(since: earlier)
            if !changes.isEmpty {
                log("note: settings changed since \(checkpoint.lastPathComponent) was written: " + changes.prefix(12).joined(separator: ", ")
                    + (changes.count > 12 ? ", and \(changes.count - 12) more" : ""))
            }
        }
        // Another cut of the same pipeline reads fine (checkpoints reshard), but moves memory between the stages: said.
        if let saved = reader.manifest?.layout, saved.pipeline == groups.mesh.pipeline, saved.virtualStages == config.parallel.virtualStages,
           saved.stageLayers != stageLayers {
            func ends(_ layers: [Range<Int>]) -> String { layers.map { String($0.upperBound) }.joined(separator: ", ") }
            log("note: \(checkpoint.lastPathComponent)'s stages end at blocks [\(ends(saved.stageLayers))], this run's at [\(ends(stageLayers))] "
                + (config.parallel.stageBoundaries == nil ? "(cut by parallel.stage_balance = \"\(config.parallel.stageBalance.rawValue)\"; parallel.stage_boundaries = [\(ends(Array(saved.stageLayers.dropLast())))] keeps the checkpoint's)" : "(parallel.stage_boundaries)"))
        }
        for target in restoreTargets {
            try reader.load(target.kind, table: target.table, into: target.destination, base: target.base, only: target.range)
        }
        // Later checkpoints hold this data's fingerprint, this run's tokenizer file, under its name, and this run's
        // settings (a resume may change some — document masking with --accept-changed-data — which `keel eval` reads).
        let fresh = state
        state = reader.state
        state.data = fresh.data
        state.tokenizer = fresh.tokenizer
        state.config = fresh.config
    }
}
