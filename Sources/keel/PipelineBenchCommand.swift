import ArgumentParser
import Foundation
import KeelComm
import KeelCore
import KeelModel
import KeelParallel

struct PipelineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-bench",
        abstract: "Measure pipeline schedules' step time and bubble on the processes of a job.",
        discussion: """
            Run it under mpirun, srun or keel launch, one process per pipeline rank, e.g. \
            `KEEL_THREADS=1 keel launch --nproc 2 -- pipeline-bench`. For each schedule and micro-batch count it \
            prints the step time, the measured bubble (each rank's idle share of the step, from the executor's \
            timeline, averaged over ranks), the bubble the simulator predicts from the measured cost of each \
            kind of pass, the published formula's, and the activations each rank held at most (per chunk; ranks \
            apart by |) beside the simulator's count; then each schedule \
            simulated with those costs at larger pipeline sizes (--project).
            """)

    @Option(help: "Model family: gpt2 or llama.")
    var arch = "gpt2"
    @Option(help: "Blocks.") var layers = 8
    @Option(help: "Model width.") var width = 512
    @Option(help: "Attention heads.") var heads = 8
    @Option(help: "Vocabulary size.") var vocab = 256
    @Option(help: "Sequences per micro-batch.") var batch = 1
    @Option(help: "Tokens per sequence.") var seqLen = 128
    @Option(help: "Micro-batch counts (comma-separated).") var microBatches = "2,4,8"
    @Option(help: "Schedules (comma-separated): gpipe, 1f1b, interleaved (2 chunks per rank), zb-h1.")
    var schedules = "gpipe,1f1b,interleaved,zb-h1"
    @Option(help: "Timed steps per measurement (after one untimed).") var steps = 2
    @Option(help: "Pipeline sizes to simulate with the measured costs (comma-separated; empty for none).")
    var project = "4,8,16"
    @Option(help: "Seconds an operation may wait for the other ranks.") var timeout = 120.0

    func run() throws {
        guard let architecture = Architecture(rawValue: arch) else { throw ValidationError("--arch must be gpt2 or llama") }
        let counts = try microBatches.split(separator: ",").map { text -> Int in
            guard let count = Int(text.trimmingCharacters(in: .whitespaces)), count > 0 else {
                throw ValidationError("--micro-batches: '\(text)' is not a positive count")
            }
            return count
        }
        let chosen = try schedules.split(separator: ",").map { name -> (PipelineSchedule, Int) in
            guard let schedule = PipelineSchedule(rawValue: String(name)) else {
                throw ValidationError("--schedules: unknown schedule '\(name)' (gpipe, 1f1b, interleaved, zb-h1)")
            }
            return (schedule, schedule == .interleaved ? 2 : 1)
        }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        let projected = try project.split(separator: ",").map { text -> Int in
            guard let p = Int(text.trimmingCharacters(in: .whitespaces)), p > 0 else {
                throw ValidationError("--project: '\(text)' is not a positive pipeline size")
            }
            return p
        }
        let config = ModelConfig(architecture: architecture, vocabSize: vocab, layers: layers, heads: heads, width: width,
                                 maxLength: seqLen)
        try config.validate()
        let placement = try DistributedRun.launchedPlacement(example: "keel launch --nproc 2 -- pipeline-bench")
        try DistributedRun.run(placement: placement, timeout: timeout) { world in
            let results = try PipelineBenchmark.run(config, schedules: chosen, microBatches: counts, batch: batch, length: seqLen,
                                                    steps: steps, pipeline: world)
            guard world.rank == 0 else { return }
            print("\(arch) \(layers) × \(width), micro-batches of \(batch) × \(seqLen) tokens, p = \(world.size)")
            print("schedule      m   step (s)  bubble: measured  simulated  formula   slots: held  simulated")
            for r in results {
                let held = r.activationSlots.map { $0.map(String.init).joined(separator: ",") }.joined(separator: "|")
                print(String(format: "%@ %3d %10.3f %17.1f%% %9.1f%% %7.1f%%   %@  %@",
                             r.schedule.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0), r.microBatches, r.stepSeconds,
                             100 * r.measuredBubble, 100 * r.simulatedBubble, 100 * r.theoreticalBubble,
                             String(repeating: " ", count: max(0, 11 - held.count)) + held,
                             r.simulatedSlots.map(String.init).joined(separator: "|")))
            }
            guard !projected.isEmpty else { return }
            print("\nsimulated at larger p with each schedule's costs measured at its largest m (transfers free):")
            print("schedule       p    m  bubble: simulated  formula")
            for r in try PipelineBenchmark.project(results, stages: projected) {
                print(String(format: "%@ %3d %4d %18.1f%% %7.1f%%", r.schedule.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0),
                             r.stages, r.microBatches, 100 * r.simulatedBubble, 100 * r.theoreticalBubble))
            }
        }
    }
}
