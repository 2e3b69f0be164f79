import ArgumentParser
import Foundation
import KeelComm
import KeelCore
import KeelParallel

struct PipelineCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-check",
        abstract: "Check pipeline-parallel execution across the processes of a job.",
        discussion: """
            Run it under mpirun, srun or keel launch, e.g. `keel launch --nproc 2 -- pipeline-check`. Every \
            process is one pipeline rank of a small GPT-2 and Llama; for GPipe, 1F1B, interleaved 1F1B \
            (2 chunks per rank) and ZB-H1 (split backward) at p and 2p micro-batches, one iteration runs over real messages and its \
            loss and every gradient are compared with the whole model run in one process.
            """)

    @Option(help: "Seconds an operation may wait for the other ranks.")
    var timeout = 60.0

    func run() throws {
        let placement = try DistributedRun.launchedPlacement(example: "keel launch --nproc 2 -- pipeline-check")
        try DistributedRun.run(placement: placement, timeout: timeout) { world in
            let passed = try PipelineCheck.verify(world)
            if world.rank == 0 { print("\(world.size) pipeline ranks: \(passed.count) checks passed (\(passed.joined(separator: ", ")))") }
        }
    }
}
