import ArgumentParser

struct Keel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keel",
        abstract: "Train, sample and export GPT-2 and Llama models on CPU.",
        discussion: """
            Start with `keel train --config configs/demo.toml`. Every run directory holds config.toml, \
            metrics.jsonl and checkpoints/; `sample` and `export` accept a run directory (newest valid \
            checkpoint) or one checkpoint directory.
            """,
        subcommands: [Train.self, SFT.self, DPO.self, Reward.self, GRPO.self, Launch.self, Sample.self, Generate.self, Serve.self, Eval.self, Import.self, Export.self, Quantize.self, Logits.self, TokenizerCommand.self, DataCommand.self,
                      CheckpointCommand.self, Bench.self, Collectives.self, PipelineCheckCommand.self, PipelineBenchCommand.self, PlanCommand.self, ReportCommand.self, BoundToParent.self])
}
