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

    @Flag(help: "Also fit keel plan's ring model (all-reduce = 2(n−1)/n · bytes / bandwidth + 2(n−1) · latency) to all-reduces of 4 KB and 64 MB, take reduce-scatter's and all-gather's rates at 64 MB, and print them as keel plan's link settings.")
    var link = false

    @Flag(help: "Also check that a rank is waited for past --timeout while it keeps communicating: rank 1 sends rank 0 a message every third of the timeout, seven times, while rank 0 waits for one more, then while the others wait for it in an all-reduce; and while it works alone for 2.5 timeouts as a rank writing a checkpoint does (takes about eight timeouts; e.g. --timeout 2).")
    var checkPatience = false

    func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be positive (got \(iterations))") }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds (got \(timeout))") }
    }

    func run() throws {
        let placement = try DistributedRun.launchedPlacement(example: "keel launch --nproc 2 -- collectives")
        let megabytes = try sizes.split(separator: ",").map { text -> Double in
            // At most a petabyte: the floats it makes must fit an Int.
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value > 0, value <= Double(1 << 30) else {
                throw ValidationError("--sizes: '\(text)' is not a positive number of MB of at most \(1 << 30)")
            }
            return value
        }
        try DistributedRun.run(placement: placement, timeout: timeout) { world in
            let passed = try CollectiveCheck.verify(world, elements: 1000)
            if world.rank == 0 { print("\(world.size) processes: \(passed.count) checks passed (\(passed.joined(separator: ", ")))") }
            if checkPatience {
                let waits = try CollectiveCheck.verifyPatience(world, timeout: timeout)
                if world.rank == 0, waits.count == 3 {
                    print(String(format: "patience: waited %.1f s for a receive and %.1f s in an all-reduce on a rank that kept "
                                 + "communicating, %.1f s on one that worked alone (timeout %g s)", waits[0], waits[1], waits[2], timeout))
                }
            }
            for size in megabytes {
                let timings = try CollectiveCheck.measure(world, elements: Int(size * 1_048_576 / 4), iterations: iterations)
                guard world.rank == 0 else { continue }
                for timing in timings {
                    let name = timing.operation.padding(toLength: 15, withPad: " ", startingAt: 0)
                    print(name + String(format: " %8.1f MB  %9.3f ms  algbw %6.2f GB/s  busbw %6.2f GB/s", size, timing.seconds * 1000,
                                        timing.algorithmBandwidth / 1e9, timing.busBandwidth / 1e9))
                }
            }
            if link, world.size > 1 {
                func seconds(_ elements: Int) throws -> [String: Double] {
                    let timings = try CollectiveCheck.measure(world, elements: elements, iterations: max(iterations, 20))
                    return Dictionary(uniqueKeysWithValues: timings.map { ($0.operation, $0.seconds) })
                }
                let smallBytes = 4096.0, largeBytes = 64.0 * 1_048_576
                let small = try seconds(Int(smallBytes) / 4), large = try seconds(Int(largeBytes) / 4)
                // The all-reduce at two sizes gives the two unknowns of t = 2(n−1)/n · bytes / bandwidth + 2(n−1) · latency;
                // the large reduce-scatter and all-gather then give their own rates with that latency.
                let n = Double(world.size), share = (n - 1) / n
                let bandwidth = 2 * share * (largeBytes - smallBytes) / max(large["all-reduce"]! - small["all-reduce"]!, 1e-12)
                let latency = max(0, (small["all-reduce"]! - 2 * share * smallBytes / bandwidth) / (2 * (n - 1)))
                func rate(_ operation: String) -> Double {
                    share * largeBytes / max(large[operation]! - (n - 1) * latency, 1e-12)
                }
                if world.rank == 0 {
                    print(String(format: "link: all-reduce of 4 KB %.1f µs, of 64 MB %.2f ms → %.2f GB/s, %.2f µs per ring step; "
                                 + "reduce-scatter %.2f GB/s, all-gather %.2f GB/s", small["all-reduce"]! * 1e6,
                                 large["all-reduce"]! * 1e3, bandwidth / 1e9, latency * 1e6, rate("reduce-scatter") / 1e9,
                                 rate("all-gather") / 1e9))
                    print(String(format: "for keel plan: --set cluster.intra_node_gbs=%.3f --set cluster.intra_node_latency_us=%.3f "
                                 + "--set cluster.intra_node_reduce_scatter_gbs=%.3f --set cluster.intra_node_all_gather_gbs=%.3f",
                                 bandwidth / 1e9, latency * 1e6, rate("reduce-scatter") / 1e9, rate("all-gather") / 1e9))
                }
            }
        }
    }
}
