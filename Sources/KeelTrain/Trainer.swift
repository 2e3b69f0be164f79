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
/// step, whatever the layout); world rank 0 alone writes metrics, progress and checkpoints, which hold the
/// whole model whatever the layout.
///
/// Output directory layout: `config.toml` (the resolved config), `metrics.jsonl`,
/// `checkpoints/step_NNNNNNNN/{model.safetensors, model.json, optimizer.safetensors, state.json, manifest.json}`.
public final class Trainer {
    public let config: TrainConfig
    public let output: URL
    /// This rank's share of the training: its model chunks, optimizers and schedule.
    public let step: TrainingStep
    private let data: TrainingData
    private let groups: ParallelState
    /// The blocks of every pipeline stage, in stage order, and the parameter layout of each.
    private let stageLayers: [Range<Int>]
    private let stageTables: [ParameterTable]
    private let wholeTable: ParameterTable
    private var state: TrainingState
    private var resumedFrom: URL?
    private let checkpointRoot: URL
    private let log: (String) -> Void
    /// World rank 0 writes the run directory, metrics and progress.
    private var isLeader: Bool { groups.world.rank == 0 }

    /// Prepares a run in `output`: reads the data, builds this rank's part of the model, and with `resume`
    /// restores the newest valid checkpoint there. `groups` are this rank's process groups, laid out as
    /// `[parallel]` says (every rank constructs its own `Trainer`). `log` receives one-line status messages
    /// (on world rank 0 only).
    public init(config: TrainConfig, output: URL, resume: Bool,
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
        data = try TrainingData(config: config)
        stageLayers = try config.parallel.stageLayers(config.model)
        stageTables = stageLayers.map { ParameterTable(config: config.model, layers: $0) }
        wholeTable = ParameterTable(config: config.model)
        step = try TrainingStep(model: config.model, layers: stageLayers, schedule: config.parallel.schedule,
                                virtualStages: config.parallel.virtualStages, training: config.training,
                                distributed: config.distributed, sequenceParallel: config.parallel.sequenceParallel,
                                groups: groups)
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
        // Every replica initialised (or restored) the same parameters; replica 0's copy is made authoritative
        // anyway, as PyTorch's DistributedDataParallel does, so no rank can silently train a different model.
        // (Under ZeRO-3 there are no replicas to agree: each rank holds the only copy of its range.)
        for (chunk, optimizer) in zip(step.chunks, step.optimizers) where !optimizer.shard.shardsParameters {
            try groups.data.broadcast(chunk.parameters.buffer, root: 0, label: "initial parameters")
        }
        guard isLeader else { return }
        try AtomicFile.write(Data(config.resolvedTOML.utf8), to: output.appendingPathComponent("config.toml"))
        if let file = data.tokenizerFile {
            try AtomicFile.write(Data(contentsOf: file), to: output.appendingPathComponent(file.lastPathComponent))
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

    /// Runs until `training.steps` (or, with `stopAfter`, until that step, as if interrupted there, so that
    /// `--resume` can finish the run), returning the summary; throws (keeping the last good checkpoint) if
    /// the loss or gradient stops being finite. With `trace`, world rank 0 writes every rank's timeline of
    /// the run's steps there as a Chrome trace.
    ///
    /// With `profiler`, every kernel call of this rank's chunks and its tensor group's collectives are timed into
    /// it, from the second step of this run on (the first warms up).
    public func run(stopAfter: Int? = nil, trace: URL? = nil, profiler: Profiler? = nil) throws -> TrainingSummary {
        let t = config.training
        let schedule = LearningRateSchedule(peak: t.learningRate, minimum: t.minLearningRate, warmupSteps: t.warmupSteps,
                                            totalSteps: t.steps)
        let replicas = groups.data
        let tokensPerStep = t.tokensPerStep * replicas.size
        let loader = try TokenLoader(windows: data.train, batch: t.batchSize, seed: t.seed, rank: replicas.rank,
                                     worldSize: replicas.size, position: state.samplesConsumed)
        defer { loader.stop() }
        let metrics = isLeader ? try MetricsLog(url: output.appendingPathComponent("metrics.jsonl"),
                                                keepingThrough: resumedFrom == nil ? nil : state.step) : nil
        let progress = isLeader ? ProgressDisplay(totalSteps: t.steps, every: config.logging.every) : nil

        let unigram = isLeader ? data.unigramLoss(vocabSize: config.model.vocabSize) : .nan
        log(String(format: "data: %@; %d training and %d validation tokens; unigram baseline loss %.4f",
                   data.summary, data.train.tokenCount, data.validation.tokenCount, unigram))
        log("model: \(config.model.architecture.rawValue), \(wholeTable.count) parameters; \(tokensPerStep) tokens per step"
            + (t.precision == .bfloat16 ? "; bf16 matrix products on \(BFloat16Engine.selected!.rawValue)" : ""))
        if groups.pipeline.size > 1 { log(pipelineSummary()) }
        if replicas.size > 1 { log(dataParallelSummary()) }
        var initialValidation: Float?
        if let resumedFrom {
            log("resumed from \(resumedFrom.path) at step \(state.step)")
        } else {
            let loss = try validationLoss()
            initialValidation = loss
            try metrics?.write(["step": .int(0), "val_loss": .float(loss)])
            log(String(format: "step 0: validation loss %.4f", loss))
        }

        var lastCheckpoint = resumedFrom
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
                let kept = lastCheckpoint.map { "; the last good checkpoint is \($0.path)" } ?? "; no checkpoint was written"
                throw KeelError("training diverged: \(diverged.reason) at step \(diverged.step)\(kept)")
            }
            if let profiler {  // validation and checkpoints are not part of the step
                profiler.stepEnded()
                for chunk in step.chunks { chunk.profiler = nil }
            }
            let dataBytes = groups.data.communicatedBytes - dataBytesBefore
            tracer?.record(step: number, step.executor)

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

            // A stop signal on any rank ends the run on every rank after this same step, with a checkpoint.
            stoppedBy = try agreedStopSignal(step: number)
            if stoppedBy == nil, (t.evalEvery > 0 && number % t.evalEvery == 0) || number == lastStep {
                let validation = try validationLoss()
                lastValidation = (number, validation)
                try metrics?.write(["step": .int(number), "val_loss": .float(validation)])
                progress?.message(String(format: "step %d: validation loss %.4f", number, validation))
            }
            if (config.checkpoint.every > 0 && number % config.checkpoint.every == 0) || number == lastStep || stoppedBy != nil {
                // Training waits for the whole write (gather, serialise, fsync, rename): log how long.
                let started = monotonicSeconds()
                lastCheckpoint = try saveCheckpoint()
                try metrics?.write(["step": .int(number), "checkpoint_s": .double(monotonicSeconds() - started)])
            }
            if let stoppedBy {
                log("\(StopSignals.name(of: stoppedBy)): stopped after step \(number) with checkpoint \(lastCheckpoint!.path); continue with keel train --resume --out \(output.path)")
                break
            }
        }
        let finalValidation = stoppedBy != nil ? nil
            : lastValidation?.step == state.step ? lastValidation!.loss : try validationLoss()
        let checkpoint = try lastCheckpoint ?? saveCheckpoint()
        let seconds = Date().timeIntervalSince(segmentStart)
        if let trace, let tracer {
            try tracer.write(to: trace, world: groups.world, mesh: groups.mesh)
            log("trace: \(trace.path) (open it in https://ui.perfetto.dev or chrome://tracing)")
        }
        return TrainingSummary(steps: state.step, initialValidationLoss: initialValidation,
                               finalValidationLoss: finalValidation, unigramLoss: unigram,
                               tokensPerSecond: Double(segmentTokens) / max(seconds, 1e-9), checkpoint: checkpoint,
                               stoppedBy: stoppedBy)
    }

    /// The stop signal any rank has received (`StopSignals`), agreed by all so that every rank stops after the
    /// same step; nil when none has. Not counted in the step's communication metrics.
    private func agreedStopSignal(step: Int) throws -> Int32? {
        var signal = Double(StopSignals.received ?? 0)
        if groups.world.size > 1 {
            signal = try groups.world.allReduce([signal], .max, label: "step \(step): stop request")[0]
        }
        return signal > 0 ? Int32(signal) : nil
    }

    /// Mean loss over up to `eval_batches` micro-batches per replica of consecutive validation windows: the
    /// replicas share the micro-batches out as `Evaluation.batches` deals them, each runs its own forward
    /// through its pipeline, and the sums are combined.
    public func validationLoss() throws -> Float {
        let batch = config.training.batchSize, length = data.validation.length
        let replicas = groups.data
        let windows = min(data.validation.count, config.training.evalBatches * batch * replicas.size)
        let ranges = Evaluation.batches(count: windows, batch: batch, rank: replicas.rank, ranks: replicas.size)
        let rows = { (k: Int) in ranges[k].count }
        var inputs = [Int32](repeating: 0, count: max(1, ranges.count * batch * length)), targets = inputs
        inputs.withUnsafeMutableBufferPointer { i in
            targets.withUnsafeMutableBufferPointer { t in
                for (k, range) in ranges.enumerated() {
                    Evaluation.copy(range, of: data.validation, inputs: i.baseAddress! + k * batch * length,
                                    targets: t.baseAddress! + k * batch * length)
                }
            }
        }
        let losses = try inputs.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in
                try step.executor.evaluate(microBatches: ranges.count, rows: rows,
                                           inputs: { i.baseAddress! + $0 * batch * length },
                                           targets: { t.baseAddress! + $0 * batch * length }, label: "validation")
            }
        }
        let local = losses.enumerated().reduce(0.0) { $0 + Double($1.element) * Double(rows($1.offset)) }
        var total = try replicas.allReduce([local], .sum, label: "validation loss")[0]
        if groups.pipeline.size > 1 {
            total = try groups.pipeline.allReduce([losses.isEmpty ? 0 : total], .sum, label: "validation loss from the last stage")[0]
        }
        return Float(total / Double(windows))
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

    /// Writes a checkpoint of the whole model (world rank 0 writes; every rank contributes its stages'
    /// parameters and its optimizer shards) and returns its directory.
    @discardableResult
    private func saveCheckpoint() throws -> URL {
        let url = checkpointRoot.appendingPathComponent(CheckpointStore.name(step: state.step))
        // Each chunk's optimizer shards to replica 0, then replica 0's stages to pipeline rank 0.
        var moments: [(m: FloatBuffer, v: FloatBuffer)] = []
        for optimizer in step.optimizers {
            let m = try optimizer.shard.gatherToFirstRank(optimizer.m), v = try optimizer.shard.gatherToFirstRank(optimizer.v)
            if let m, let v { moments.append((m, v)) }
        }
        let replicaParameters = try step.optimizers.compactMap { try $0.shard.parametersOnFirstRank() }
        guard groups.data.rank == 0 else { return url }
        let parameters = try collect(replicaParameters, label: "parameters")
        let m = try collect(moments.map(\.m), label: "optimizer state"), v = try collect(moments.map(\.v), label: "optimizer state")
        guard let parameters, let m, let v else { return url }
        // The loss and gradient norm were finite, but an update can still overflow a weight (one no pass reads,
        // say): such a state is never saved as the last good one.
        if let broken = wholeTable.entries.first(where: { entry in
            UnsafeBufferPointer(start: parameters.pointer + entry.offset, count: entry.count).contains { !$0.isFinite }
        }) {
            throw KeelError("training diverged: \(broken.name) holds NaN or infinite values after step \(state.step); no checkpoint was written for it (the older ones are intact)")
        }
        let table = wholeTable, config = self.config, state = self.state
        let written = try CheckpointStore.write(root: checkpointRoot, step: state.step, writers: [
            (ModelFiles.weightsFile, { try ModelFiles.writeWeights(table, parameters, to: $0) }),
            (ModelFiles.configFile, { try ModelFiles.writeConfig(config.model, to: $0) }),
            ("optimizer.safetensors", {
                try Safetensors.write([
                    TensorSlice(name: "exp_avg", shape: [table.count], floats: m.pointer),
                    TensorSlice(name: "exp_avg_sq", shape: [table.count], floats: v.pointer),
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
        CheckpointStore.prune(checkpointRoot, keep: config.checkpoint.keep, keepEvery: config.checkpoint.keepEvery)
        return written
    }

    /// Assembles the whole model's buffer on pipeline rank 0 from every rank's chunk buffers (laid out as
    /// each chunk's parameters), placing each tensor by name; nil on the other ranks. A tied table's copy on
    /// the last stage is left out: the first stage's is the model's.
    private func collect(_ pieces: [FloatBuffer], label: String) throws -> FloatBuffer? {
        let local = try pieces.enumerated().map { try wholeStage($1, chunk: $0, label: label) }
        guard groups.tensor.rank == 0 else { return nil }
        let pipeline = groups.pipeline, p = pipeline.size
        let whole = pipeline.rank == 0 ? FloatBuffer(count: wholeTable.count) : nil
        for (chunk, buffer) in local.map({ $0! }).enumerated() {
            let stages = (0..<p).map { chunk * p + $0 }
            let counts = stages.map { stageTables[$0].count }
            let gathered = p == 1 ? buffer : (pipeline.rank == 0 ? FloatBuffer(count: counts.reduce(0, +)) : nil)
            if p > 1 {
                try pipeline.gather(UnsafePointer(buffer.pointer), into: gathered?.pointer, counts: counts, root: 0,
                                    label: "checkpoint: \(label) of chunk \(chunk)")
            }
            guard let whole, let gathered else { continue }
            var offset = 0
            for (stage, count) in zip(stages, counts) {
                for entry in stageTables[stage].entries where wholeTable[entry.name]!.slot == entry.slot {
                    (whole.pointer + wholeTable[entry.name]!.offset).update(from: gathered.pointer + offset + entry.offset,
                                                                           count: entry.count)
                }
                offset += count
            }
        }
        return whole
    }

    /// A chunk's buffer laid out as its whole stage: with tensor parallelism the tensor ranks' pieces, gathered
    /// to tensor rank 0 and put back together there (nil on the other ranks); otherwise `piece` itself.
    private func wholeStage(_ piece: FloatBuffer, chunk: Int, label: String) throws -> FloatBuffer? {
        let tensor = groups.tensor, t = tensor.size
        guard t > 1 else { return piece }
        // Every tensor rank's pieces are laid out alike (equal shares), so rank r's tensor sits at the same offset.
        let pieces = step.chunks[chunk].table, count = pieces.count
        let gathered = tensor.rank == 0 ? FloatBuffer(count: t * count) : nil
        try tensor.gather(UnsafePointer(piece.pointer), into: gathered?.pointer, counts: Array(repeating: count, count: t),
                          root: 0, label: "checkpoint: \(label) of the tensor ranks")
        guard let gathered else { return nil }
        let stage = stageTables[chunk * groups.pipeline.size + groups.pipeline.rank]
        let whole = FloatBuffer(count: stage.count)
        for entry in stage.entries {
            let source = pieces[entry.name]!.offset
            for r in 0..<t {
                entry.split.copy(whole.pointer + entry.offset, shape: entry.shape, gathered.pointer + r * count + source,
                                 rank: entry.split.piece(for: TensorRank(rank: r, size: t)), gathering: true)
            }
        }
        return whole
    }

    private func restore(from checkpoint: URL) throws {
        let saved = try ModelFiles.readConfig(from: checkpoint.appendingPathComponent(ModelFiles.configFile))
        guard saved == config.model else {
            throw KeelError("--resume: \(checkpoint.path) holds a different model shape than the config's [model] section")
        }
        let moments = try SafetensorsFile(url: checkpoint.appendingPathComponent("optimizer.safetensors"))
        for (chunk, optimizer) in zip(step.chunks, step.optimizers) {
            // Under ZeRO-3 only this rank's range, so no rank ever holds the whole model.
            try ModelFiles.loadWeights(into: chunk, from: checkpoint.appendingPathComponent(ModelFiles.weightsFile),
                                       only: optimizer.shard.shardsParameters ? optimizer.shard.range : nil)
            // This rank's shard of each tensor's moments, read from where the tensor lies in the whole model (and,
            // for a tensor-parallel piece, cut from the whole tensor's).
            let shard = optimizer.shard.range
            for entry in chunk.table.entries {
                let part = entry.range.clamped(to: shard)
                guard !part.isEmpty else { continue }
                let whole = wholeTable[entry.name]!
                for (name, buffer) in [("exp_avg", optimizer.m), ("exp_avg_sq", optimizer.v)] {
                    let destination = buffer.pointer + part.lowerBound - shard.lowerBound
                    guard entry.count != whole.count else {
                        let start = whole.offset + part.lowerBound - entry.offset
                        try moments.copyFloats(name, shape: [wholeTable.count], elements: start..<(start + part.count), to: destination)
                        continue
                    }
                    let values = FloatBuffer(count: whole.count), piece = FloatBuffer(count: entry.count)
                    try moments.copyFloats(name, shape: [wholeTable.count], elements: whole.range, to: values.pointer)
                    entry.split.copy(values.pointer, shape: whole.shape, piece.pointer, rank: entry.tensorRank)
                    destination.update(from: piece.pointer + part.lowerBound - entry.offset, count: part.count)
                }
            }
        }
        state = try TrainingState.read(from: checkpoint.appendingPathComponent("state.json"))
        guard state.seed == config.training.seed else {
            throw KeelError("--resume: \(checkpoint.path) was trained with seed \(state.seed), the config says \(config.training.seed)")
        }
    }
}
