import Foundation
import KeelCore
import KeelKernels
import KeelData
import KeelModel
import KeelParallel

/// Everything a training run is configured by: the `[model]`, `[data]`, `[training]`, `[checkpoint]`,
/// `[logging]`, `[sample]`, `[distributed]` and `[parallel]` sections of a TOML file, with `--set section.key=value` overrides.
///
/// See `docs/configuration.md` for every key, its default and its meaning.
public struct TrainConfig: Sendable {
    /// `data.val_fraction` when a config does not set it.
    public static let defaultValidationFraction = 0.1
    /// The most tokens a sample (`sample.tokens`, `keel sample --tokens`) generates: its text is built whole before it
    /// is printed, and a sample runs after training, where a count past any use would only hold the job.
    public static let mostSampledTokens = 1 << 20

    public var model: ModelConfig
    public var data: DataSettings
    public var training: TrainingSettings
    public var checkpoint: CheckpointSettings
    public var logging: LoggingSettings
    public var sample: SampleSettings
    public var distributed: DistributedSettings
    public var parallel: ParallelSettings
    /// The resolved configuration as TOML (saved beside the run so `--resume` can reuse it).
    public let resolvedTOML: String
    /// Every setting the run uses, its default where the config leaves it out, one `section.key = value` line each
    /// in key order: what the processes of a job compare.
    public var effectiveSettings: String {
        effectiveValues.keys.sorted().map { "\($0) = \(effectiveValues[$0]!)\n" }.joined()
    }
    /// Every setting the run uses as TOML text by `section.key`, its default where the config leaves it out
    /// (`ConfigValues.effectiveValues`).
    public let effectiveValues: [String: String]
    /// The `section.key` names the configuration gives a value (the file, the overrides, and values settled from others
    /// and saved with the run), as opposed to those left to their defaults.
    public let givenKeys: Set<String>

    /// `[data]`
    public struct DataSettings: Sendable {
        /// `dataset`: a directory prepared by `keel data prepare` (shards, manifest, tokenizer).
        public var dataset: String?
        /// `paths`: text files, directories of them, or llm.c `.bin` token shards, tokenised at start-up.
        public var paths: [String]
        /// `val_fraction`: share of the token stream held out for validation.
        public var validationFraction: Double
        /// `tokenizer`: "byte", or a `tokenizer.json` / `.tiktoken` file (with `paths` or `chat`).
        public var tokenizer: String
        /// `chat`: JSONL files of conversations (`messages`) or `prompt`/`completion` pairs for supervised
        /// fine-tuning: rendered by the tokenizer's chat template (Keel's ChatML without one), trained on what the
        /// assistant writes, packed into windows whose documents do not attend to each other.
        public var chat: [String] = []
        /// `document_masking`: with `dataset` or `paths`, a window's documents (each ended by end-of-text) do not
        /// attend to each other, and positions count from each document's start.
        public var documentMasking = false
    }

    /// `[training]`
    public struct TrainingSettings: Sendable {
        public var seed: UInt64
        /// `steps`: optimizer steps.
        public var steps: Int
        /// `batch_size`: sequences per micro-batch.
        public var batchSize: Int
        /// `seq_len`: tokens per sequence (≤ model.max_seq_len).
        public var sequenceLength: Int
        /// `grad_accum`: micro-batches per optimizer step.
        public var gradientAccumulation: Int
        /// `lr`, `min_lr`, `warmup_steps`: linear warm-up then cosine decay to `min_lr`.
        public var learningRate: Double
        public var minLearningRate: Double
        public var warmupSteps: Int
        /// `weight_decay`, `beta1`, `beta2`, `eps`.
        public var adamW: AdamWSettings
        /// `grad_clip`: maximum global gradient norm (0 disables).
        public var gradientClip: Double
        /// `decay_embeddings`: apply weight decay to embedding tables too.
        public var decayEmbeddings: Bool
        /// `eval_every` (0 = only at start and end) and `eval_batches` (micro-batches per evaluation).
        public var evalEvery: Int
        public var evalBatches: Int
        /// `precision`: the operand format of the matrix products, "fp32" or "bf16" (bf16 operands with fp32
        /// accumulation, master weights, optimizer state and every other kernel).
        public var precision: MatrixPrecision
        /// `init_from`: a run or checkpoint directory whose weights a new run starts from (fine-tuning: its shape
        /// must be the config's [model], its tokenizer the data's); nil for the random initialisation.
        public var initFrom: String? = nil

        /// Tokens per optimizer step.
        public var tokensPerStep: Int { batchSize * sequenceLength * gradientAccumulation }
    }

    /// `[checkpoint]`
    public struct CheckpointSettings: Sendable {
        /// `every`: steps between checkpoints (0 = only at the end).
        public var every: Int
        /// `keep`: newest checkpoints kept (0 = all).
        public var keep: Int
        /// `keep_every`: also keep the checkpoints of steps that this divides (0 = none).
        public var keepEvery: Int
        /// `async`: write checkpoints in the background while training goes on (`ShardWriter`); false writes
        /// them before the next step starts.
        public var async: Bool
        /// `zstd_level`: compress each slice with zstd at this level (1–19); 0 stores plain F32.
        public var zstdLevel: Int
        /// `snapshot_every`: steps between in-memory snapshots (0 = none): checkpoints kept in `snapshot_dir`, a
        /// memory-backed file system that outlives a crashed process, from which a restarted job resumes.
        public var snapshotEvery: Int
        /// `snapshot_dir`: where in-memory snapshots go (a tmpfs).
        public var snapshotDirectory: String
    }

    /// `[logging]`
    public struct LoggingSettings: Sendable {
        /// `every`: steps between progress lines when the output is not a terminal.
        public var every: Int
        /// `tensorboard`: also write every metrics record as TensorBoard scalars under `RUN/tensorboard/`.
        public var tensorBoard: Bool = false
    }

    /// `[sample]`: text printed after training.
    public struct SampleSettings: Sendable {
        public var prompt: String
        /// `tokens`: how many to generate (0 = no sample).
        public var tokens: Int
        public var temperature: Double
        /// `top_k`: keep only the k most likely tokens (0 = all).
        public var topK: Int
    }

    /// `[distributed]`: how data-parallel processes (started by mpirun, srun or `keel launch`) cooperate.
    public struct DistributedSettings: Sendable {
        /// `bucket_mb`: gradient megabytes communicated together (PyTorch DDP's `bucket_cap_mb`).
        public var bucketMegabytes: Double
        /// `zero_stage`: what is sharded over the data-parallel group: 0 nothing, 1 the optimizer state, 2 also
        /// the gradients, 3 also the parameters (FSDP).
        public var zeroStage: Int
        /// `timeout_s`: seconds a rank waits for the others in any communication before stopping the job.
        public var timeoutSeconds: Double

        /// Floats per gradient bucket.
        public var bucketElements: Int { max(1, Int(bucketMegabytes * 1_048_576 / 4)) }
    }

    /// `[parallel]`: how the processes of a job divide the work — pipeline stages × data-parallel replicas ×
    /// tensor-parallel ranks.
    public struct ParallelSettings: Sendable {
        /// `pp`: pipeline ranks; each holds consecutive blocks (1: every rank holds the whole model).
        public var pipeline: Int
        /// `tp`: tensor-parallel ranks; each holds its share of every layer's heads, MLP width and vocabulary.
        public var tensor: Int
        /// `dp`: data-parallel replicas (default: the processes divided by `pp × tp`); `pp × tp × dp` must be the
        /// job's size.
        public var data: Int?
        /// `schedule`: the pipeline schedule ("gpipe", "1f1b", "interleaved", "zb-h1").
        public var schedule: PipelineSchedule
        /// `virtual_stages`: model chunks per pipeline rank (interleaved only; default 2 there, 1 otherwise).
        public var virtualStages: Int
        /// `sequence_parallel`: split the residual stream and the norms along the B·T token rows over the tensor
        /// group (Korthikanti et al., 2022); needs tp > 1 and training.seq_len divisible by tp.
        public var sequenceParallel: Bool
        /// `stage_boundaries`: the first block of every stage after the first (pp · virtual_stages − 1 values);
        /// nil balances the stages by `stageBalance`.
        public var stageBoundaries: [Int]?
        /// `stage_balance`: what the stages are balanced by without `stage_boundaries` ("compute", the default, or
        /// "parameters").
        public var stageBalance: StageBalance = .compute

        /// Pipeline stages in all: pp · virtual_stages.
        public var stages: Int { pipeline * virtualStages }

        /// The blocks of each pipeline stage, in stage order, for sequences of `sequenceLength` tokens.
        public func stageLayers(_ model: ModelConfig, sequenceLength: Int) throws -> [Range<Int>] {
            guard let boundaries = stageBoundaries else {
                return try StagePartition.balanced(model, stages: stages, by: stageBalance, sequenceLength: sequenceLength)
            }
            let edges = [0] + boundaries + [model.layers]
            guard zip(edges, edges.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw KeelError("config: parallel.stage_boundaries \(boundaries) must rise strictly within 1..<model.n_layer (\(model.layers)), so that every stage has a block")
            }
            return zip(edges, edges.dropFirst()).map { $0..<$1 }
        }

        /// The data-parallel size in a job of `processes`, or an error naming the keys that do not fit.
        public func dataParallelSize(processes: Int) throws -> Int {
            let split = tensor == 1 ? "parallel.pp (\(pipeline))" : "parallel.pp × parallel.tp (\(pipeline) × \(tensor))"
            guard processes % (pipeline * tensor) == 0 else {
                throw KeelError("config: \(split) must divide the number of processes (\(processes))")
            }
            let dp = processes / (pipeline * tensor)
            if let data, data != dp {
                let keys = tensor == 1 ? "parallel.pp × parallel.dp = \(pipeline) × \(data)"
                    : "parallel.pp × parallel.tp × parallel.dp = \(pipeline) × \(tensor) × \(data)"
                throw KeelError("config: \(keys) = \(pipeline * tensor * data) must equal the number of processes (\(processes))")
            }
            return dp
        }

        /// Processes the layout needs when `dp` is given (or 1).
        public var processes: Int { pipeline * tensor * (data ?? 1) }
    }

    /// Reads the TOML at `path` (if any) and applies `overrides`. With `requiresData` false the data need not be
    /// configured (a command that takes it from its own arguments: `keel dpo`).
    public static func load(path: String?, overrides: [String], requiresData: Bool = true) throws -> TrainConfig {
        var text = ""
        if let path {
            guard FileManager.default.fileExists(atPath: path) else { throw KeelError("config: \(path): no such file") }
            guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw KeelError("config: \(path): cannot read (not UTF-8 text?)")
            }
            text = contents
        }
        return try TrainConfig(toml: text, origin: path ?? "(no file)", overrides: overrides, requiresData: requiresData)
    }

    /// The settings TOML `text` gives (`origin` names it in errors), with `overrides` applied.
    public init(toml text: String, origin: String, overrides: [String] = [], requiresData: Bool = true) throws {
        var values = try ConfigValues(toml: text, origin: origin)
        try values.override(overrides)
        try self.init(values, requiresData: requiresData)
    }

    /// The settings that differ from `earlier`'s, as "key earlier → now" (defaults included on both sides, so a key
    /// spelled out at its default is no change), in key order.
    public func changes(since earlier: TrainConfig) -> [String] {
        let before = earlier.effectiveValues, now = effectiveValues
        return Set(before.keys).union(now.keys).sorted().compactMap { key in
            before[key] == now[key] ? nil : "\(key) \(before[key] ?? "(unset)") → \(now[key] ?? "(unset)")"
        }
    }

    init(_ source: ConfigValues, requiresData: Bool = true) throws {
        var v = source
        data = DataSettings(
            dataset: try v.string("data.dataset", nil),
            paths: try v.strings("data.paths"),
            validationFraction: try v.double("data.val_fraction", Self.defaultValidationFraction),
            tokenizer: try v.string("data.tokenizer", "byte")!,
            chat: try v.strings("data.chat"),
            documentMasking: try v.bool("data.document_masking", false))
        if !data.chat.isEmpty, data.dataset != nil || !data.paths.isEmpty {
            throw KeelError("config: data.chat (keel sft's --data) is the whole training data; remove data.dataset and data.paths from the config and --set")
        }
        if data.dataset != nil {
            guard data.paths.isEmpty else { throw KeelError("config: give data.dataset or data.paths, not both") }
            guard v.values["data.tokenizer"] == nil else {
                throw KeelError("config: data.tokenizer comes from the dataset's manifest; remove it or use data.paths")
            }
        }
        guard data.validationFraction >= 0, data.validationFraction < 1 else {
            throw KeelError("config: data.val_fraction must be in [0, 1) (got \(data.validationFraction))")
        }

        let presetName = try v.string("model.preset", nil)
        var shape = (layers: 2, heads: 4, width: 64, maxLength: 64)
        if let presetName {
            guard let preset = ModelConfig.presets[presetName] else {
                throw KeelError("config: model.preset \"\(presetName)\" is not one of \(ModelConfig.presets.keys.sorted().joined(separator: ", "))")
            }
            shape = preset
        }
        let archName = try v.string("model.arch", "gpt2")!
        guard let architecture = Architecture(rawValue: archName) else {
            throw KeelError("config: model.arch must be \"gpt2\" or \"llama\" (got \"\(archName)\")")
        }
        let heads = try v.int("model.n_head", shape.heads)
        // The tokenizer's vocabulary at every tensor-parallel size: its rows are cut into pieces that differ by one
        // where the ranks do not divide it (`ParameterTable.divides`), so no padded ids change the loss, and a run
        // resumes in any layout.
        let vocabSize = try v.optionalInt("model.vocab_size") ?? TrainConfig.vocabularySize(of: data)
        model = ModelConfig(
            architecture: architecture, vocabSize: vocabSize,
            layers: try v.int("model.n_layer", shape.layers), heads: heads,
            kvHeads: try v.optionalInt("model.n_kv_head"), width: try v.int("model.d_model", shape.width),
            hiddenWidth: try v.optionalInt("model.d_ff"), maxLength: try v.int("model.max_seq_len", shape.maxLength),
            normEpsilon: try v.optionalDouble("model.norm_eps").map(Float.init),
            ropeTheta: try v.double("model.rope_theta", 10_000),
            tiedEmbeddings: try v.optionalBool("model.tie_embeddings"))
        if architecture == .gpt2, let kv = v.values["model.n_kv_head"], kv != .int(heads) {
            throw KeelError("config: model.n_kv_head applies to llama only (gpt2 uses n_head)")
        }
        try model.validate()
        // What the model makes of the keys that default from others, so that given or left out they compare alike.
        v.settle("model.n_kv_head", .int(model.kvHeads))
        v.settle("model.d_ff", .int(model.hiddenWidth))
        v.settle("model.norm_eps", .double(Double(model.normEpsilon)))
        v.settle("model.tie_embeddings", .bool(model.tiedEmbeddings))

        training = TrainingSettings(
            seed: UInt64(truncatingIfNeeded: try v.int("training.seed", 1337)),
            steps: try v.int("training.steps", 1000),
            batchSize: try v.int("training.batch_size", 8),
            sequenceLength: try v.int("training.seq_len", model.maxLength),
            gradientAccumulation: try Self.microBatches(&v),
            learningRate: try v.double("training.lr", 3e-4),
            minLearningRate: try v.optionalDouble("training.min_lr") ?? 0,
            warmupSteps: try v.int("training.warmup_steps", 0),
            adamW: AdamWSettings(
                beta1: Float(try v.double("training.beta1", 0.9)), beta2: Float(try v.double("training.beta2", 0.95)),
                epsilon: Float(try v.double("training.eps", 1e-8)),
                weightDecay: Float(try v.double("training.weight_decay", 0.1))),
            gradientClip: try v.double("training.grad_clip", 1.0),
            decayEmbeddings: try v.bool("training.decay_embeddings", false),
            evalEvery: try v.int("training.eval_every", 100),
            evalBatches: try v.int("training.eval_batches", 20),
            precision: try Self.precision(try v.string("training.precision", "fp32")!),
            initFrom: try v.string("training.init_from", nil))
        if v.values["training.min_lr"] == nil { training.minLearningRate = training.learningRate / 10 }
        v.settle("training.min_lr", .double(training.minLearningRate))
        checkpoint = CheckpointSettings(every: try v.int("checkpoint.every", 0), keep: try v.int("checkpoint.keep", 3),
                                        keepEvery: try v.int("checkpoint.keep_every", 0),
                                        async: try v.bool("checkpoint.async", true),
                                        zstdLevel: try v.int("checkpoint.zstd_level", 0),
                                        snapshotEvery: try v.int("checkpoint.snapshot_every", 0),
                                        snapshotDirectory: try v.string("checkpoint.snapshot_dir", "/dev/shm/keel")!)
        logging = LoggingSettings(every: try v.int("logging.every", 10), tensorBoard: try v.bool("logging.tensorboard", false))
        sample = SampleSettings(
            prompt: try v.string("sample.prompt", "\n")!, tokens: try v.int("sample.tokens", 0),
            temperature: try v.double("sample.temperature", 0.8), topK: try v.int("sample.top_k", 40))
        distributed = DistributedSettings(
            bucketMegabytes: try v.double("distributed.bucket_mb", 25), zeroStage: try v.int("distributed.zero_stage", 0),
            timeoutSeconds: try v.double("distributed.timeout_s", 60))
        let pipelineSchedule = try v.choice("parallel.schedule", PipelineSchedule.oneForwardOneBackward)
        parallel = ParallelSettings(
            pipeline: try v.int("parallel.pp", 1), tensor: try v.int("parallel.tp", 1), data: try v.optionalInt("parallel.dp"),
            schedule: pipelineSchedule,
            virtualStages: try v.int("parallel.virtual_stages", pipelineSchedule == .interleaved ? 2 : 1),
            sequenceParallel: try v.bool("parallel.sequence_parallel", false),
            stageBoundaries: try v.optionalInts("parallel.stage_boundaries"))
        let stageBalance = try v.choice("parallel.stage_balance", StageBalance.compute)
        parallel.stageBalance = stageBalance
        // Saved with a pipeline's run, so that a resume cuts its stages as it started, whatever the default becomes.
        if parallel.pipeline > 1 { v.resolve("parallel.stage_balance", .string(stageBalance.rawValue)) }
        try v.rejectUnknownKeys()
        resolvedTOML = v.tomlText
        effectiveValues = v.effectiveValues
        givenKeys = Set(v.keys)
        try validate(requiresData: requiresData)
    }

    /// `training.grad_accum`, or its pipeline name `parallel.micro_batches` (m): the micro-batches of a step.
    private static func microBatches(_ v: inout ConfigValues) throws -> Int {
        let accumulation = try v.optionalInt("training.grad_accum"), microBatches = try v.optionalInt("parallel.micro_batches")
        if let accumulation, let microBatches, accumulation != microBatches {
            throw KeelError("config: training.grad_accum (\(accumulation)) and parallel.micro_batches (\(microBatches)) both set the micro-batches per step; give one")
        }
        let count = microBatches ?? accumulation ?? 1
        v.settle("training.grad_accum", .int(count))
        v.settle("parallel.micro_batches", .int(count))
        return count
    }

    static func precision(_ name: String) throws -> MatrixPrecision {
        guard let precision = MatrixPrecision(rawValue: name) else {
            throw KeelError("config: training.precision must be \"fp32\" or \"bf16\" (got \"\(name)\")")
        }
        return precision
    }

    /// The vocabulary size of the configured data's tokenizer (the default for `model.vocab_size`).
    static func vocabularySize(of data: DataSettings) throws -> Int {
        if let dataset = data.dataset { return try ShardManifest.read(from: URL(fileURLWithPath: dataset)).vocabSize }
        return try loadTokenizer(data.tokenizer).vocabSize
    }

    private func validate(requiresData: Bool) throws {
        func require(_ condition: Bool, _ key: String, _ message: String) throws {
            if !condition { throw KeelError("config: \(key) \(message)") }
        }
        let t = training
        try require(!requiresData || !data.paths.isEmpty || data.dataset != nil || !data.chat.isEmpty, "data.paths",
                    "or data.dataset (or data.chat) is required: the text files, the prepared dataset or the chat data to train on")
        try require(t.steps > 0, "training.steps", "must be positive (got \(t.steps))")
        try require(t.batchSize > 0, "training.batch_size", "must be positive (got \(t.batchSize))")
        try require(t.sequenceLength > 0 && t.sequenceLength <= model.maxLength, "training.seq_len",
                    "must be in 1...model.max_seq_len (\(model.maxLength)) (got \(t.sequenceLength))")
        try require(t.gradientAccumulation > 0, "training.grad_accum", "must be positive (got \(t.gradientAccumulation))")
        // A micro-batch's tokens, and the activations they make, are allocated at once; a step's tokens are counted.
        try require((checkedProduct([t.batchSize, t.sequenceLength]) ?? .max) <= 1 << 31, "training.batch_size",
                    "(\(t.batchSize)) × training.seq_len (\(t.sequenceLength)) must be at most \(1 << 31) tokens per micro-batch")
        try require((checkedProduct([t.batchSize, t.sequenceLength, t.gradientAccumulation]) ?? .max) <= 1 << 40, "training.grad_accum",
                    "(\(t.gradientAccumulation)) × training.batch_size × training.seq_len must be at most \(1 << 40) tokens per step")
        // Steps run in Float: a rate past its range would become infinite and every weight NaN at the first step.
        try require(t.learningRate > 0 && Float(t.learningRate).isFinite, "training.lr",
                    "must be a positive number below \(Float.greatestFiniteMagnitude) (got \(t.learningRate))")
        try require(t.minLearningRate >= 0 && t.minLearningRate <= t.learningRate, "training.min_lr",
                    "must be in [0, training.lr] (got \(t.minLearningRate))")
        try require(t.warmupSteps >= 0, "training.warmup_steps", "must not be negative (got \(t.warmupSteps))")
        try require((0..<1).contains(t.adamW.beta1), "training.beta1", "must be in [0, 1) (got \(t.adamW.beta1))")
        try require((0..<1).contains(t.adamW.beta2), "training.beta2", "must be in [0, 1) (got \(t.adamW.beta2))")
        try require(t.adamW.epsilon > 0 && t.adamW.epsilon.isFinite, "training.eps", "must be a positive number (got \(t.adamW.epsilon))")
        try require(t.adamW.weightDecay >= 0 && t.adamW.weightDecay.isFinite, "training.weight_decay",
                    "must be a number that is not negative (got \(t.adamW.weightDecay))")
        // Decoupled decay multiplies each weight by 1 − lr·weight_decay every step: at 1 or more it zeroes or flips them.
        try require(t.learningRate * Double(t.adamW.weightDecay) < 1, "training.weight_decay",
                    "× training.lr must be below 1 (got \(t.adamW.weightDecay) × \(t.learningRate)): each step multiplies the weights by 1 − lr·weight_decay")
        try require(t.gradientClip >= 0, "training.grad_clip", "must be a number that is not negative, 0 for none (got \(t.gradientClip))")
        try require(t.evalEvery >= 0, "training.eval_every", "must not be negative (got \(t.evalEvery))")
        try require((1...1 << 20).contains(t.evalBatches), "training.eval_batches", "must be from 1 to \(1 << 20) (got \(t.evalBatches))")
        try require(checkpoint.every >= 0, "checkpoint.every", "must not be negative (got \(checkpoint.every))")
        try require(checkpoint.keep >= 0, "checkpoint.keep", "must not be negative (got \(checkpoint.keep))")
        try require(checkpoint.keepEvery >= 0, "checkpoint.keep_every", "must not be negative (got \(checkpoint.keepEvery))")
        try require(checkpoint.snapshotEvery >= 0, "checkpoint.snapshot_every", "must not be negative (got \(checkpoint.snapshotEvery))")
        try require((0...19).contains(checkpoint.zstdLevel), "checkpoint.zstd_level",
                    "must be 0 (no compression) or a zstd level from 1 to 19 (got \(checkpoint.zstdLevel))")
        try require(logging.every > 0, "logging.every", "must be positive (got \(logging.every))")
        try require((0...Self.mostSampledTokens).contains(sample.tokens), "sample.tokens",
                    "must be from 0 to \(Self.mostSampledTokens) (got \(sample.tokens))")
        try require(sample.temperature >= 0 && sample.temperature.isFinite, "sample.temperature",
                    "must be a number that is not negative (got \(sample.temperature))")
        // At most a petabyte: the bucket's float count must fit an Int.
        try require(distributed.bucketMegabytes > 0 && distributed.bucketMegabytes <= Double(1 << 30), "distributed.bucket_mb",
                    "must be a positive number of at most \(1 << 30) (got \(distributed.bucketMegabytes))")
        try require((0...3).contains(distributed.zeroStage), "distributed.zero_stage",
                    "must be 0 (nothing sharded), 1 (optimizer state), 2 (and gradients) or 3 (and parameters) (got \(distributed.zeroStage))")
        try require(distributed.timeoutSeconds > 0, "distributed.timeout_s", "must be positive (got \(distributed.timeoutSeconds))")
        let p = parallel
        try require(p.pipeline >= 1, "parallel.pp", "must be positive (got \(p.pipeline))")
        try require(p.data.map { $0 >= 1 } ?? true, "parallel.dp", "must be positive (got \(p.data ?? 0))")
        try require(p.tensor >= 1, "parallel.tp", "must be positive (got \(p.tensor))")
        try require(distributed.zeroStage <= 1 || p.pipeline == 1, "distributed.zero_stage",
                    "(\(distributed.zeroStage)) must be 0 or 1 with pipeline parallelism (parallel.pp = \(p.pipeline)): ZeRO-2 and -3 reduce each micro-batch's gradients as its backward pass ends, which a pipeline's interleaved micro-batches do not allow; a stage already holds 1/pp of the model (DeepSpeed too limits pipelines to ZeRO-1)")
        try require(distributed.zeroStage <= 1 || p.schedule != .gpipe, "distributed.zero_stage",
                    "(\(distributed.zeroStage)) must be 0 or 1 with the gpipe schedule: ZeRO-2 and -3 send each micro-batch's gradients as its backward pass ends, and gpipe runs every forward pass first (an untied head's gradient, added at the end of each forward pass, would land in buckets already sent); use the 1f1b schedule")
        for (key, value) in [("model.n_head", model.heads), ("model.d_ff", model.hiddenWidth)] {
            try require(value % p.tensor == 0, "parallel.tp", "(\(p.tensor)) must divide \(key) (\(value)): each tensor rank holds an equal share of it")
        }
        try require(model.kvHeads % p.tensor == 0 || p.tensor % model.kvHeads == 0, "parallel.tp",
                    "(\(p.tensor)) must divide model.n_kv_head (\(model.kvHeads)) or be a multiple of it: each tensor rank holds an equal share of the key/value heads, or shares one with tp / n_kv_head ranks")
        try require(!p.sequenceParallel || p.tensor > 1, "parallel.sequence_parallel",
                    "needs tensor parallelism (parallel.tp > 1): it splits the tensor group's token rows")
        try require(!p.sequenceParallel || t.sequenceLength % p.tensor == 0, "parallel.sequence_parallel",
                    "needs training.seq_len (\(t.sequenceLength)) divisible by parallel.tp (\(p.tensor)): each tensor rank holds an equal share of the rows")
        try require(p.virtualStages >= 1, "parallel.virtual_stages", "must be positive (got \(p.virtualStages))")
        try require(p.schedule == .interleaved || p.virtualStages == 1, "parallel.virtual_stages",
                    "must be 1 with the \(p.schedule.rawValue) schedule (only interleaved holds several chunks per rank)")
        try require(p.schedule != .interleaved || p.pipeline >= 2, "parallel.pp",
                    "must be at least 2 for the interleaved schedule (got \(p.pipeline))")
        try require(p.schedule != .interleaved || p.virtualStages >= 2, "parallel.virtual_stages",
                    "must be at least 2 with the interleaved schedule (got \(p.virtualStages))")
        // A pipeline stage sends a micro-batch's activations (its share of the rows under sequence parallelism) as one
        // message, whose elements MPI counts in 32 bits: a larger one would trap on the communication thread.
        let sent = checkedProduct([t.batchSize, t.sequenceLength, model.width]).map { $0 / (p.sequenceParallel ? p.tensor : 1) }
        try require(p.pipeline == 1 || (sent ?? .max) <= Int(Int32.max), "training.batch_size",
                    "(\(t.batchSize)) × training.seq_len (\(t.sequenceLength)) × model.d_model (\(model.width)): a micro-batch's activations, which a pipeline stage sends as one message, must be at most 2147483647 elements (MPI's limit); use smaller micro-batches")
        try require(p.stages <= model.layers, "parallel.pp",
                    "× parallel.virtual_stages = \(p.stages) stages need at least as many blocks (model.n_layer is \(model.layers))")
        try require(p.schedule != .interleaved || t.gradientAccumulation % p.pipeline == 0, "parallel.micro_batches",
                    "(\(t.gradientAccumulation)) must be a multiple of parallel.pp (\(p.pipeline)) for the interleaved schedule")
        if let boundaries = p.stageBoundaries {
            try require(boundaries.count == p.stages - 1, "parallel.stage_boundaries",
                        "needs pp × virtual_stages − 1 = \(p.stages - 1) values (got \(boundaries.count))")
            _ = try p.stageLayers(model, sequenceLength: t.sequenceLength)
        }
        try require(sample.topK >= 0, "sample.top_k", "must not be negative (got \(sample.topK))")
    }
}
