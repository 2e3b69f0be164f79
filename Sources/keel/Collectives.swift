import ArgumentParser
import Foundation
import KeelCore
import KeelComm

struct Collectives: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check and time the communication operations across the processes of a job.",
        discussion: """
            Run it under mpirun, srun or keel launch, e.g. `keel launch --nproc 2 -- collectives`. Every \
            operation training uses (all-reduce, reduce-scatter and all-gather with uneven blocks, gather, \
            broadcast, send/receive, non-blocking operations, a Mesh's sub-groups, barrier) is run on values whose \
            exact result is known and checked on every rank; then all-reduce, reduce-scatter, all-gather and \
            broadcast are timed at each size and reported with nccl-tests' algorithm and bus bandwidth.
            """)

    @Option(help: "Message sizes to time, in MB (comma-separated; empty to only check).")
    var sizes = "1,16,64"

    @Option(help: "Timed calls per operation and size.")
    var iterations = 10

    @Option(help: "Seconds an operation may wait for the other ranks.")
    var timeout = 60.0

    func run() throws {
        let placement = try DistributedRun.launchedPlacement(example: "keel launch --nproc 2 -- collectives")
        let megabytes = try sizes.split(separator: ",").map { text -> Double in
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value > 0 else {
                throw ValidationError("--sizes: '\(text)' is not a positive number of MB")
            }
            return value
        }
        try DistributedRun.run(placement: placement, timeout: timeout) { world in
            let passed = try CollectiveCheck.verify(world, elements: 1000)
            if world.rank == 0 { print("\(world.size) processes: \(passed.count) checks passed (\(passed.joined(separator: ", ")))") }
            for size in megabytes {
                let timings = try CollectiveCheck.measure(world, elements: Int(size * 1_048_576 / 4), iterations: iterations)
                guard world.rank == 0 else { continue }
                for timing in timings {
                    let name = timing.operation.padding(toLength: 15, withPad: " ", startingAt: 0)
                    print(name + String(format: " %8.1f MB  %9.3f ms  algbw %6.2f GB/s  busbw %6.2f GB/s", size, timing.seconds * 1000,
                                        timing.algorithmBandwidth / 1e9, timing.busBandwidth / 1e9))
                }
            }
        }
    }
}
