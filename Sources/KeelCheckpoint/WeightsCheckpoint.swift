import Foundation
import KeelCore
import KeelModel

/// A model's weights saved as a run's checkpoint — a model from elsewhere (`keel import`, step 0), or what
/// preference optimisation made (`keel dpo`, its last step): the weights (no optimizer state: training starts
/// from it with `--init-from`, not `--resume`), its tokenizer file and a config naming its shape, published as
/// training publishes checkpoints (`CheckpointStore`), so that everything reading a run or a checkpoint's weights
/// reads it.
public enum WeightsCheckpoint {
    /// Writes `model` as the checkpoint of `step` into run directory `run` (created; for step 0 it must not hold
    /// checkpoints yet) and returns the checkpoint's directory. `tokenizer` names the tokenizer file and writes it to
    /// the URL it is given (nil: the byte tokenizer); `extras` are other files to keep beside it (a
    /// `tokenizer_config.json` with the chat template); `config` is the TOML recorded as the run's configuration.
    @discardableResult
    public static func write(_ model: Transformer, tokenizer: (name: String, write: (URL) throws -> Void)?,
                             extras: [String: Data] = [:], config: String, step: Int = 0, to run: URL) throws -> URL {
        let root = run.appendingPathComponent("checkpoints")
        if step == 0, let existing = CheckpointStore.list(root).first {
            throw KeelError("\(run.path) already holds a run (\(existing.lastPathComponent)); choose another --out")
        }
        CheckpointStore.removePartials(root: root)
        let partial = try CheckpointStore.prepare(root: root, step: step)
        do {
            let plan = try ShardPlan(config: model.config, layout: .singleProcess(layers: model.config.layers))
            let slices = plan.slices(rank: 0)
            let weights = UnsafePointer(model.parameters.pointer)
            let file = ShardPlan.fileName(rank: 0)
            var files = [file: try ShardWriter.write(slices, kinds: [.model], from: { _, index in weights + slices[index].offset },
                                                     to: partial.appendingPathComponent(file))]
            if let tokenizer {
                let url = partial.appendingPathComponent(tokenizer.name)
                try tokenizer.write(url)
                files[tokenizer.name] = try CheckpointStore.record(of: url)
            }
            for (name, data) in extras.sorted(by: { $0.key < $1.key }) {
                let url = partial.appendingPathComponent(name)
                try AtomicFile.write(data, to: url)
                files[name] = try CheckpointStore.record(of: url)
            }
            let state = TrainingState(step: step, tokens: 0, elapsedSeconds: 0, seed: 0, samplesConsumed: 0,
                                      tokenizer: tokenizer?.name ?? "byte", config: config)
            try AtomicFile.createDirectory(run)
            try AtomicFile.write(Data(config.utf8), to: run.appendingPathComponent("config.toml"))
            return try CheckpointStore.publish(
                CheckpointManifest(step: step, layout: plan.layout, model: model.config, state: state, files: files,
                                   tensors: plan.manifestTensors(kinds: [.model])),
                root: root)
        } catch {
            CheckpointStore.discard(root: root, step: step)
            throw error
        }
    }

    /// The `[model]` section of a training config for `config`, in the keys `keel train` reads.
    public static func modelSection(_ config: ModelConfig) -> String {
        """
        [model]
        arch = "\(config.architecture.rawValue)"
        vocab_size = \(config.vocabSize)
        n_layer = \(config.layers)
        n_head = \(config.heads)
        n_kv_head = \(config.kvHeads)
        d_model = \(config.width)
        d_ff = \(config.hiddenWidth)
        max_seq_len = \(config.maxLength)
        norm_eps = \(config.normEpsilon)
        rope_theta = \(config.ropeTheta)
        tie_embeddings = \(config.tiedEmbeddings)

        """
    }
}
