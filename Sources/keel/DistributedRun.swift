import ArgumentParser
import Foundation
import KeelCore
import KeelComm

/// How a command runs as one rank of a multi-process job.
enum DistributedRun {
    /// This process's place in the job a launcher started; throws, showing `example`, when no launcher did
    /// (a check across processes means nothing in one).
    static func launchedPlacement(example: String) throws -> ProcessPlacement {
        let placement = try ProcessPlacement.discover(ProcessInfo.processInfo.environment)
        guard placement.isDistributed else { throw ValidationError("run this under a launcher, e.g. `\(example)`") }
        return placement
    }

    /// The exit status of a job aborted by an error that resuming would meet again (`KeelError.recursOnResume`):
    /// mpirun exits with the status a rank aborts with, and `keel launch --max-restarts` does not restart on it.
    static let recurringFailureStatus: Int32 = 3

    /// Initialises MPI, runs `body` with the world communicator and shuts MPI down. When `body` throws, prints
    /// "Error: rank R: …" and aborts the whole job (a rank that merely exited would leave the others waiting
    /// for it until their timeout), with `recurringFailureStatus` for an error that a restart would meet again.
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
            FileHandle.standardError.write(Data("Error: rank \(world.rank): \(error)\n".utf8))
            world.abort(code: (error as? KeelError)?.recursOnResume == true ? recurringFailureStatus : 1)
        }
    }
}
