import CMPI
import Foundation
import KeelCore
import Synchronization

/// The process's MPI library: initialisation, one progress thread that makes every MPI call of the run, and
/// shutdown.
///
/// All communication goes through the progress thread, so training code never blocks inside MPI: it starts
/// an operation, keeps computing, and waits on the request when it needs the result. The thread drives
/// OpenMPI's non-blocking operations by polling them (sleeping between polls once an operation is waiting
/// for a peer, so it does not take a core from the computation), and it is also the watchdog: an operation
/// whose peers finish no communication of their own within the communicator's timeout fails with a message
/// naming the ranks that never started it or stopped answering. Even with nothing to do it wakes every 50 ms
/// to answer the peers' pings, so a rank busy computing is never taken for a dead one.
public final class MPIRuntime: @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var stopped = false
    // Used only on the progress thread:
    /// Operations posted and not yet complete: each send or receive, and each communicator's collectives (one in
    /// flight per communicator). They progress side by side with each other and with later operations, because a
    /// pipeline's sends and receives must — a rank that waited for its send to finish before posting its next
    /// receive could deadlock with a neighbour doing the same — and so that one group's collectives (a tensor-parallel
    /// all-reduce, on the critical path) never wait behind another's (data-parallel buckets on their way).
    private var inFlight: [InFlight] = []
    /// Operations of any communicator finished without error: what a ping's answer reports, so a waiting
    /// peer can tell a rank that keeps communicating (slow, but going) from one that is stuck.
    private(set) var finishedOperations: Int64 = 0
    /// Work in progress that this process does alone while peers may wait for it (`Communicator.beginWorkingAlone`),
    /// counted by any thread.
    private let workAlone = Atomic<Int>(0)
    /// The pings answered while such work was in progress (progress thread only): counted as operations finished.
    private var answersWhileWorking: Int64 = 0
    /// Each communicator's service of its watch messages (answering pings, collecting answers).
    private var watchers: [() -> Void] = []
    private var lastService = 0.0

    /// A posted operation: `poll` tests it and finishes its request when done (or timed out), returning whether
    /// it is finished.
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

    /// Keeps a posted operation progressing until its `poll` says it is finished (progress thread only, not from
    /// within a poll).
    func track(_ operation: InFlight) {
        inFlight.append(operation)
    }

    /// Tests every operation in flight once (progress thread only).
    private func pollInFlight() {
        inFlight.removeAll { $0.poll() }
    }

    func beginWorkingAlone() {
        workAlone.add(1, ordering: .relaxed)
    }

    func endWorkingAlone() {
        workAlone.subtract(1, ordering: .relaxed)
    }

    /// What a ping's answer reports (progress thread only): the operations finished, and one more for every answer
    /// given while this process works alone — so a peer waiting for it sees it going on, and waits as long as it takes.
    func progressReport() -> Int64 {
        if workAlone.load(ordering: .relaxed) > 0 { answersWhileWorking += 1 }
        return finishedOperations + answersWhileWorking
    }

    /// Counts an operation finished without error (progress thread only).
    func countFinished() {
        finishedOperations += 1
    }

    /// Adds a communicator's watch service, run whenever the thread waits or idles (progress thread only).
    func addWatcher(_ service: @escaping () -> Void) {
        watchers.append(service)
    }

    /// Runs every communicator's watch service, at most every 5 ms (progress thread only): a rank answers pings
    /// on all its communicators whatever it waits on, so a pipeline neighbour waiting on it hears back while
    /// it sits in a data-parallel all-reduce.
    func serviceWatchers(now: Double = monotonicSeconds()) {
        guard now - lastService >= 0.005 else { return }
        lastService = now
        for service in watchers { service() }
    }

    private func progressLoop() {
        var pause: UInt32 = 20, polls = 0
        condition.lock()
        while true {
            if !jobs.isEmpty {
                let job = jobs.removeFirst()
                condition.unlock()
                job()
                pause = 20
                polls = 0
                condition.lock()
            } else if !inFlight.isEmpty {
                // Operations in flight: keep polling them until a job comes — at once for a while (a small
                // collective finishes within microseconds), then napping briefly in between, so that a long wait
                // for a peer does not take a core from the computation.
                condition.unlock()
                let before = finishedOperations
                pollInFlight()
                serviceWatchers()
                // Something finished (and a communicator's next collective may have just been posted): poll at once again.
                if finishedOperations != before {
                    polls = 0
                    pause = 20
                }
                polls += 1
                if polls > 64 {
                    usleep(pause)
                    pause = min(pause * 2, 200)
                }
                condition.lock()
            } else if stopping {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            } else {
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.05))
                if jobs.isEmpty && !stopping {
                    condition.unlock()
                    serviceWatchers()
                    condition.lock()
                }
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
