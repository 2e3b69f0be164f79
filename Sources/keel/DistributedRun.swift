import ArgumentParser
import Foundation
import KeelCore
import KeelComm
import KeelTrain

/// How a command runs as one rank of a multi-process job.
enum DistributedRun {
    /// This process's place in the job a launcher started; throws, showing `example`, when no launcher did
    /// (a check across processes means nothing in one).
    static func launchedPlacement(example: String) throws -> ProcessPlacement {
        let placement = try ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        guard placement.isDistributed else { throw ValidationError("run this under a launcher, e.g. `\(example)`") }
        return placement
    }

    /// The exit status of a job aborted by an error that rules out a restart (`KeelError.rulesOutRestart`):
    /// mpirun exits with the status a rank aborts with, and `keel launch --max-restarts` does not restart on it.
    static let recurringFailureStatus: Int32 = 3

    /// The exit status of a run that a stop signal (SIGTERM, SIGUSR1, Ctrl-C) ended before its last step, with a
    /// checkpoint: sysexits' EX_TEMPFAIL, "try again later". Not 0, which says the run is finished — a batch script
    /// requeues on it, a Kubernetes Job whose pod was evicted is run again, and a supervisor does not restart it.
    static let stoppedStatus: Int32 = 75

    /// The file a supervised job's rank writes, with its message, when it stops with an error that rules out a
    /// restart, or when a stop signal ended it (`recordStop`) (`keel launch --max-restarts` names it in this variable and looks for it when the job fails). A
    /// launcher's exit status cannot be relied on to carry 3: srun reports a signal that killed any task in
    /// preference to exit codes, and the ranks still running when one aborts are killed.
    static let noRestartVariable = "KEEL_NO_RESTART_FILE"

    /// Writes `error` to the file `noRestartVariable` names, when the job is supervised (best effort: the exit
    /// status says it too).
    static func recordNoRestart(_ error: Error) {
        record("\(error)")
    }

    /// What `recordStop` writes first: the supervisor tells a stop from an error by it.
    static let stopRecord = "stopped by "

    /// Writes to the same file that a stop signal ended the run (`stoppedStatus`), as `stopRecord` and the signal: srun
    /// with --kill-on-bad-exit may kill the ranks still finishing when the first exits 75, and then report the kill.
    static func recordStop(signal: String, step: Int?) {
        record("\(stopRecord)\(signal) " + (step.map { "after step \($0)" } ?? stoppedBeforeFirstStep))
    }

    /// How `recordStop` ends the record of a stop that saved nothing.
    static let stoppedBeforeFirstStep = "before the first step"

    private static func record(_ message: String) {
        guard let path = ProcessInfo.processInfo.environment[noRestartVariable], !path.isEmpty else { return }
        // In the run's directory, which a run stopped before its first step has not made yet.
        try? AtomicFile.createDirectory(URL(fileURLWithPath: path).deletingLastPathComponent())
        try? AtomicFile.write(Data((message + "\n").utf8), to: URL(fileURLWithPath: path))
    }

    /// Initialises MPI, runs `body` with the world communicator and shuts MPI down. When `body` throws, prints
    /// "Error: rank R: …" and aborts the whole job (a rank that merely exited would leave the others waiting
    /// for it until their timeout), with `recurringFailureStatus` for an error that rules out a restart.
    static func run(placement: ProcessPlacement, timeout: Double, _ body: (MPICommunicator) throws -> Void) throws {
        let world = try MPIRuntime.initialize(timeout: timeout)
        let mismatch = KeelError("\(placement.launcher) variables say this job has \(placement.worldSize) processes but MPI sees \(world.size): Keel's processes talk through MPI, so start them with mpirun, srun or `keel launch` (see docs/operations.md)")
        if world.size == 1 {
            // Started without an MPI launcher (e.g. by torchrun): there is no job to abort.
            world.finalize()
            throw mismatch
        }
        do {
            guard world.size == placement.worldSize else { throw mismatch }
            try body(world)
            world.finalize()
        } catch {
            StandardStreams.error("Error: rank \(world.rank): \(error)\n")
            let status = exitStatus(for: error)
            if status == recurringFailureStatus { recordNoRestart(error) }
            world.abort(code: status)
        }
    }

    /// Refuses a job whose processes were not all given the same settings (`settings`: each value the configuration
    /// and the command line's --set overrides give, defaults included, so that a key set to its default on one machine
    /// and left out on another is the same; `flags`: the command's options that change what the processes do
    /// together, such as --resume): mpirun and srun start whatever each command line says, and replicas trained with
    /// another learning rate drift apart without an error, with another bucket size or ZeRO stage their collectives no
    /// longer pair up. Paths a machine may have its own copy under (`machineLocalKeys`) are not compared.
    static func requireSameSettings(_ settings: TrainConfig, flags: [String], on world: any Communicator) throws {
        let compared = settings.effectiveValues.filter { !machineLocalKeys.contains($0.key) }.sorted { $0.key < $1.key }
        let text = (compared.map { "\($0.key) = \($0.value)" } + flags).joined(separator: "\n")
        let hash = Int64(bitPattern: XXH64.hash(Array(text.utf8)))
        let hashes = try world.allGather([hash], label: "every process's settings")
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        guard differing.isEmpty else {
            let ranks = differing.count == 1 ? "rank \(differing[0]) differs"
                : differing.count > 8 ? "\(differing.count) ranks differ" : "ranks " + differing.map(String.init).joined(separator: ", ") + " differ"
            // The same on every restart: not one for a supervisor to retry.
            throw KeelError("the job's processes were given different settings: \(ranks) from rank 0 (config file, --set, or options such as --resume); start every process with the same command",
                            rulesOutRestart: true)
        }
    }

    /// Settings naming files that each machine may hold a copy of under its own path (a node-local dataset, its own
    /// tmpfs): the data's identity is checked by other means (a resumed checkpoint's data fingerprint).
    static let machineLocalKeys: Set<String> = ["data.paths", "data.dataset", "data.tokenizer", "training.init_from",
                                                "checkpoint.snapshot_dir"]

    /// The status a process ends with for `error`: `recurringFailureStatus` for one that rules out a restart, else 1.
    static func exitStatus(for error: Error) -> Int32 {
        (error as? KeelError)?.rulesOutRestart == true ? recurringFailureStatus : 1
    }

    /// Runs `body` in a process of its own (no launcher): an error that rules out a restart ends the process with
    /// `recurringFailureStatus`, as a job's ranks end, so that `keel launch --max-restarts` of one process tells a
    /// diverged run from a crash too.
    static func runAlone(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as KeelError where error.rulesOutRestart {
            StandardStreams.error("Error: \(error)\n")
            recordNoRestart(error)
            throw ExitCode(recurringFailureStatus)
        }
    }
}
