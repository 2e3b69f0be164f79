import CMPI
import Foundation
import KeelCore

/// The process's MPI library: initialisation, one progress thread that makes every MPI call of the run, and
/// shutdown.
///
/// All communication goes through the progress thread, so training code never blocks inside MPI: it starts
/// an operation, keeps computing, and waits on the request when it needs the result. The thread drives
/// OpenMPI's non-blocking operations by polling them (sleeping between polls once an operation is waiting
/// for a peer, so it does not take a core from the computation), and it is also the watchdog: an operation
/// that does not finish within the communicator's timeout fails with a message naming the ranks that
/// never started it.
public final class MPIRuntime: @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var stopped = false
    // Used only on the progress thread:
    /// Point-to-point operations posted and not yet complete. They progress side by side with each other and
    /// with later operations, because a pipeline's sends and receives must: a rank that waited for its send
    /// to finish before posting its next receive could deadlock with a neighbour doing the same.
    private var inFlight: [InFlight] = []

    /// A posted point-to-point operation: `poll` tests it and finishes its request when done (or timed out),
    /// returning whether it is finished.
    struct InFlight {
        let poll: () -> Bool
    }

    private init() {}

    /// Initialises MPI (once per process) and returns the communicator over every process of the job.
    /// `timeout` is how long any operation may wait for its peers.
    public static func initialize(timeout: Double) throws -> MPICommunicator {
        var provided: Int32 = 0
        let code = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_MULTIPLE), &provided)
        guard code == MPI_SUCCESS else { throw KeelError("MPI_Init_thread failed: \(errorText(code))") }
        // The progress thread makes all calls but MPI_Abort, which an error may issue from another thread.
        guard provided >= Int32(MPI_THREAD_SERIALIZED) else {
            MPI_Finalize()
            throw KeelError("this MPI library offers no thread support (level \(provided)); Keel needs MPI_THREAD_SERIALIZED")
        }
        MPI_Comm_set_errhandler(keel_mpi_comm_world(), keel_mpi_errors_return())
        // All-reduce bandwidth measured 3× lower when glibc unmaps OpenMPI's temporaries (docs/platform.md).
        keel_keep_freed_memory()

        let runtime = MPIRuntime()
        let thread = Thread { runtime.progressLoop() }
        thread.name = "keel-mpi"
        thread.start()
        var world: MPICommunicator?
        var failure: Error?
        runtime.perform {
            do { world = try MPICommunicator(comm: keel_mpi_comm_world(), runtime: runtime, timeout: timeout) }
            catch { failure = error }
        }
        if let failure { throw failure }
        return world!
    }

    /// Runs `job` on the progress thread after every job queued before it, and returns when it is done.
    func perform(_ job: @escaping () -> Void) {
        let done = DispatchSemaphore(value: 0)
        enqueue {
            job()
            done.signal()
        }
        done.wait()
    }

    /// Queues `job` for the progress thread.
    func enqueue(_ job: @escaping () -> Void) {
        condition.lock()
        precondition(!stopping, "MPI operation after MPIRuntime.finalize()")
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Finishes queued work, stops the progress thread and finalises MPI. Call once, at the end of a
    /// successful run.
    func finalize() {
        condition.lock()
        stopping = true
        condition.signal()
        while !stopped { condition.wait() }
        condition.unlock()
        MPI_Finalize()
    }

    /// Keeps a posted point-to-point operation progressing until its `poll` says it is finished (progress
    /// thread only).
    func track(_ operation: InFlight) {
        inFlight.append(operation)
    }

    /// Tests every point-to-point operation in flight once (progress thread only; collectives call it while
    /// they wait, so messages keep moving).
    func pollInFlight() {
        inFlight.removeAll { $0.poll() }
    }

    private func progressLoop() {
        var pause: UInt32 = 20
        condition.lock()
        while true {
            if !jobs.isEmpty {
                let job = jobs.removeFirst()
                condition.unlock()
                job()
                pause = 20
                condition.lock()
            } else if !inFlight.isEmpty {
                // Messages in flight: keep polling them, napping briefly in between, until a job comes.
                condition.unlock()
                pollInFlight()
                usleep(pause)
                pause = min(pause * 2, 200)
                condition.lock()
            } else if stopping {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            } else {
                condition.wait()
            }
        }
    }

    /// OpenMPI's description of an error code.
    static func errorText(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
