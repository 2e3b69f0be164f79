import CMPI
import Foundation
import KeelCore

/// A `Communicator` over an MPI communicator; every MPI call runs on the `MPIRuntime`'s progress thread.
///
/// Hang detection: before each collective the progress thread tells every peer the operation's sequence
/// number (an 8-byte message on a duplicate communicator, so it never mixes with the caller's messages) and
/// collects what the peers told it. An operation that waits pings the peers it waits on (those that have not
/// started it; a send's or receive's one peer) every eighth of the timeout; every progress thread answers
/// pings, busy or idle, with the number of operations its process has finished. A wait ends in an error only
/// when those peers finished nothing for a whole timeout: a slow stage that keeps communicating is waited
/// for, however long, while a hung, stopped or dead one is named — the peers that never announced the
/// operation, or that no longer answer.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let timeout: Double
    /// The world rank of each member, for messages.
    public let worldRanks: [Int]
    private let comm: MPI_Comm
    private let watch: MPI_Comm
    private let runtime: MPIRuntime
    private let counter = OperationCounter()
    // Used only on the progress thread:
    private var sequence: Int64 = 0
    private var lastAnnounced: [Int64]
    private var recentLabels: [Int64: String] = [:]
    /// Each peer's latest answer to a ping: its count of finished operations, and when it arrived.
    private var answers: [(finished: Int64, at: Double)?]
    /// The first failure; every later operation fails with it at once, so the caller hears of it right away.
    private var failure: KeelError?
    /// The collective in flight, and those started after it: one at a time, in the order started (every rank posts
    /// a communicator's collectives in the same order), while other communicators' collectives and the sends and
    /// receives progress beside them — a tensor-parallel all-reduce does not wait behind data-parallel buckets.
    private var current: RunningCollective?
    private var queued: [(operation: CommunicationOperation, request: CommunicationRequest)] = []
    private static let announcementTag: Int32 = 7
    private static let pingTag: Int32 = 8
    private static let pongTag: Int32 = 9

    /// Wraps `comm`; runs on the progress thread (it makes collective calls).
    init(comm: MPI_Comm, runtime: MPIRuntime, timeout: Double) throws {
        self.comm = comm
        self.runtime = runtime
        self.timeout = timeout
        var value: Int32 = 0
        MPI_Comm_rank(comm, &value)
        rank = Int(value)
        MPI_Comm_size(comm, &value)
        size = Int(value)
        var duplicate: MPI_Comm?
        let code = MPI_Comm_dup(comm, &duplicate)
        guard code == MPI_SUCCESS, let duplicate else { throw KeelError("MPI_Comm_dup failed: \(MPIRuntime.errorText(code))") }
        watch = duplicate
        var worldRank: Int32 = 0
        MPI_Comm_rank(keel_mpi_comm_world(), &worldRank)
        var all = [Int32](repeating: 0, count: size)
        MPI_Allgather(&worldRank, 1, keel_mpi_int32(), &all, 1, keel_mpi_int32(), comm)
        worldRanks = all.map(Int.init)
        lastAnnounced = [Int64](repeating: 0, count: size)
        answers = Array(repeating: nil, count: size)
        if size > 1 {
            runtime.addWatcher { [weak self] in
                self?.answerPings()
                self?.collectAnswers()
            }
        }
    }

    /// This process's rank in the job.
    public var worldRank: Int { worldRanks[rank] }

    public var startedOperations: Int { counter.value }

    public var communicatedBytes: Int { counter.bytes }

    public func start(_ operation: CommunicationOperation) -> CommunicationRequest {
        counter.record(operation, rank: rank)
        let request = CommunicationRequest(label: operation.label)
        runtime.enqueue { self.execute(operation, request) }
        return request
    }

    public func split(color: Int, key: Int) throws -> any Communicator {
        // MPI_Comm_split is a collective of this communicator, made on the progress thread at once: the collectives
        // started before it must be through first, or one rank could make it before a collective another made after.
        try barrier(label: "before a split")
        var result: Result<MPICommunicator, Error>!
        runtime.perform {
            var part: MPI_Comm?
            let code = MPI_Comm_split(self.comm, Int32(color), Int32(key), &part)
            guard code == MPI_SUCCESS, let part else {
                result = .failure(KeelError("MPI_Comm_split failed: \(MPIRuntime.errorText(code))"))
                return
            }
            result = Result { try MPICommunicator(comm: part, runtime: self.runtime, timeout: self.timeout) }
        }
        return try result.get()
    }

    public func abort(code: Int32) -> Never {
        MPI_Abort(keel_mpi_comm_world(), code)
        exit(code)
    }

    public func beginWorkingAlone() {
        runtime.beginWorkingAlone()
    }

    public func endWorkingAlone() {
        runtime.endWorkingAlone()
    }

    /// Waits for queued operations, then shuts MPI down (call once, on the world communicator, at the end).
    public func finalize() {
        runtime.finalize()
    }

    // MARK: - Progress thread

    private func execute(_ operation: CommunicationOperation, _ request: CommunicationRequest) {
        if let failure {
            request.finish(at: monotonicSeconds(), failure: failure)
            return
        }
        if operation.kind.isPointToPoint { return startPointToPoint(operation, request) }
        queued.append((operation, request))
        guard current == nil else { return }
        startNextCollective()
        // A small collective finishes within microseconds: a few polls at once spare it a round of the progress loop.
        for _ in 0..<64 where current != nil { _ = progressCollectives() }
        if current != nil { runtime.track(MPIRuntime.InFlight { [self] in progressCollectives() }) }
    }

    /// A collective being run: one MPI call per piece of at most 2³¹ − 1 elements (one piece for all but huge
    /// buffers), each posted when the one before it finished; the timeout runs per piece, which is still progressing
    /// when a huge buffer's whole transfer would outlast it.
    private final class RunningCollective {
        let operation: CommunicationOperation
        let request: CommunicationRequest
        let pieces: [CommunicationOperation]
        /// The piece posted (an index into `pieces`), its MPI request, and the wait's patience (from its posting).
        var posted = -1
        var handle: MPI_Request? = keel_mpi_request_null()
        var patience: Patience
        // Counts and displacements must outlive the non-blocking call.
        var counts: [Int32] = []
        var displacements: [Int32] = []

        init(_ operation: CommunicationOperation, _ request: CommunicationRequest, pieces: [CommunicationOperation], patience: Patience) {
            self.operation = operation
            self.request = request
            self.pieces = pieces
            self.patience = patience
        }
    }

    /// Posts the next queued collective, after announcing it to the peers; those queued after a failure fail at
    /// once. `current` is nil afterwards when none was left.
    private func startNextCollective() {
        current = nil
        while !queued.isEmpty {
            let (operation, request) = queued.removeFirst()
            if let failure {
                request.finish(at: monotonicSeconds(), failure: failure)
                continue
            }
            sequence += 1
            recentLabels[sequence] = operation.label
            recentLabels[sequence - 256] = nil
            if size > 1 {
                announce(sequence)
                collectAnnouncements()
            }
            request.markStarted(at: monotonicSeconds())
            let collective = RunningCollective(operation, request, pieces: operation.pieces(limit: mpiMessageLimit, rank: rank),
                                               patience: Patience(began: monotonicSeconds(), timeout: timeout))
            if let error = postNextPiece(of: collective) {
                fail(collective, error)
                continue
            }
            current = collective
            return
        }
    }

    /// Posts `collective`'s next piece; the error when MPI refused it.
    private func postNextPiece(of collective: RunningCollective) -> KeelError? {
        collective.posted += 1
        let piece = collective.pieces[collective.posted]
        let code = post(piece, &collective.handle, &collective.counts, &collective.displacements)
        collective.patience = Patience(began: monotonicSeconds(), timeout: timeout)
        return code == MPI_SUCCESS ? nil : mpiFailure(piece, code)
    }

    /// Records `error` as the communicator's failure and ends `collective`'s request with it.
    private func fail(_ collective: RunningCollective, _ error: KeelError) {
        failure = error
        collective.request.finish(at: monotonicSeconds(), failure: error)
    }

    /// Tests the collective in flight once, answering for its peers' progress (the runtime's poll of this
    /// communicator's collectives): when it finished, posts its next piece or the next collective queued. True when
    /// none is left in flight.
    private func progressCollectives() -> Bool {
        guard let collective = current else { return true }
        let piece = collective.pieces[collective.posted]
        var flag: Int32 = 0
        let testCode = MPI_Test(&collective.handle, &flag, keel_mpi_status_ignore())
        if testCode != MPI_SUCCESS {
            fail(collective, mpiFailure(piece, testCode))
        } else if flag != 0 {
            // Each piece counts as progress: peers waiting on a huge collective's rank see it going.
            runtime.countFinished()
            if collective.posted + 1 < collective.pieces.count {
                guard let error = postNextPiece(of: collective) else { return false }
                fail(collective, error)
            } else {
                finish(collective)
            }
        } else {
            let now = monotonicSeconds()
            // The peers that have not announced this operation are the ones it waits on; once all have, none
            // can be waited for longer.
            if now >= collective.patience.nextPing { collectAnnouncements() }
            let late = (0..<size).filter { $0 != rank && lastAnnounced[$0] < sequence }
            guard exhausted(&collective.patience, awaiting: late, now: now) else { return false }
            fail(collective, diagnoseTimeout(piece))
        }
        startNextCollective()
        return current == nil
    }

    /// Ends a collective whose every piece finished: an average is the sum divided by the ranks.
    private func finish(_ collective: RunningCollective) {
        let operation = collective.operation
        if case .allReduce(let buffer, let count, .average) = operation.kind {
            divide(buffer, count: count, scalar: operation.scalar)
        }
        if case .reduceScatter(_, let destination, let counts, .average) = operation.kind {
            divide(destination, count: counts[rank], scalar: operation.scalar)
        }
        collective.request.finish(at: monotonicSeconds(), failure: nil)
    }

    /// A wait's deadline, moved while the peers it waits on keep finishing operations.
    struct Patience {
        let timeout: Double
        var deadline: Double
        var nextPing: Double
        /// When this wait first pinged; answers from before it say nothing about this wait.
        var firstPing = Double.infinity
        /// Each awaited peer's count of finished operations when last heard in this wait, and when it last grew.
        var finished: [Int: Int64] = [:]
        var progressed: [Int: Double] = [:]

        init(began: Double, timeout: Double) {
            self.timeout = timeout
            deadline = began + timeout
            nextPing = began + min(1, timeout / 8)
        }
    }

    /// Whether a wait on `awaiting` has run out of patience: pings those peers every eighth of the timeout,
    /// notes which have finished operations since the wait's first ping, and moves the deadline to a timeout
    /// after the last progress that every one of them has shown. True once past the deadline.
    private func exhausted(_ patience: inout Patience, awaiting: [Int], now: Double) -> Bool {
        for peer in awaiting {
            guard let answer = answers[peer], answer.at >= patience.firstPing else { continue }
            if let before = patience.finished[peer], before != answer.finished { patience.progressed[peer] = answer.at }
            patience.finished[peer] = answer.finished
        }
        if now >= patience.nextPing && !awaiting.isEmpty {
            ping(awaiting)
            patience.firstPing = min(patience.firstPing, now)
            patience.nextPing = now + patience.timeout / 8
        }
        guard now > patience.deadline else { return false }
        let lastProgress = awaiting.map { patience.progressed[$0] ?? -Double.infinity }.min() ?? -Double.infinity
        guard lastProgress + patience.timeout > now else { return true }
        patience.deadline = lastProgress + patience.timeout
        return false
    }

    /// Posts a send or receive and leaves it to the runtime to progress, beside later operations. Collectives'
    /// sequence numbers are not involved (each rank of a pipeline sends and receives different messages); a
    /// message that does not arrive in time is reported with its peer and whether the peer still answers.
    private func startPointToPoint(_ operation: CommunicationOperation, _ request: CommunicationRequest) {
        var counts: [Int32] = [], displacements: [Int32] = []
        var handle: MPI_Request? = keel_mpi_request_null()
        let code = post(operation, &handle, &counts, &displacements)
        let began = monotonicSeconds()
        request.markStarted(at: began)
        guard code == MPI_SUCCESS else {
            failure = mpiFailure(operation, code)
            return request.finish(at: monotonicSeconds(), failure: failure)
        }
        let peer: Int
        switch operation.kind {
        case .send(_, _, let destination, _): peer = destination
        case .receive(_, _, let source, _): peer = source
        default: preconditionFailure("not a point-to-point operation")
        }
        var patience = Patience(began: began, timeout: timeout)
        runtime.track(MPIRuntime.InFlight { [self] in
            var flag: Int32 = 0
            let testCode = MPI_Test(&handle, &flag, keel_mpi_status_ignore())
            if testCode != MPI_SUCCESS || flag != 0 {
                let error = testCode == MPI_SUCCESS ? nil : mpiFailure(operation, testCode)
                if let error { failure = error } else { runtime.countFinished() }
                request.finish(at: monotonicSeconds(), failure: error)
                return true
            }
            guard exhausted(&patience, awaiting: [peer], now: monotonicSeconds()) else { return false }
            failure = peerTimeout(operation, peer: peer)
            request.finish(at: monotonicSeconds(), failure: failure)
            return true
        })
    }

    /// The error for a send or receive whose peer finished nothing for a whole timeout: it stopped answering,
    /// or answers but is stuck on something else.
    private func peerTimeout(_ operation: CommunicationOperation, peer: Int) -> KeelError {
        let waited = String(format: "%.0f", timeout)
        let answers = responsivePeers([peer]).contains(peer)
        return KeelError("'\(operation.label)' did not finish within \(waited) s: rank \(worldRanks[peer]) "
            + (answers ? "is alive but finished no communication in that time: it waits for something else (do the ranks run the same program?), or computes for longer than distributed.timeout_s between two communications" : "does not respond (stopped or dead)"))
    }

    private func post(
        _ operation: CommunicationOperation, _ handle: inout MPI_Request?, _ counts: inout [Int32],
        _ displacements: inout [Int32]
    ) -> Int32 {
        let type = datatype(operation.scalar)
        func blocks(_ sizes: [Int]) {
            precondition(sizes.count == size, "\(operation.label): \(sizes.count) counts for \(size) ranks")
            counts = sizes.map { Int32(checkedCount($0)) }
            var offset = 0
            displacements = sizes.map { count in
                defer { offset += count }
                return Int32(checkedCount(offset))
            }
        }
        switch operation.kind {
        case .allReduce(let buffer, let count, let reduction):
            return MPI_Iallreduce(keel_mpi_in_place(), buffer, Int32(checkedCount(count)), type, mpiOperation(reduction),
                                  comm, &handle)
        case .reduceScatter(let source, let destination, let sizes, let reduction):
            blocks(sizes)
            return MPI_Ireduce_scatter(source, destination, counts, type, mpiOperation(reduction), comm, &handle)
        case .allGather(let buffer, let sizes):
            blocks(sizes)
            return MPI_Iallgatherv(keel_mpi_in_place(), 0, type, buffer, counts, displacements, type, comm, &handle)
        case .gather(let source, let destination, let sizes, let root):
            blocks(sizes)
            return MPI_Igatherv(source, counts[rank], type, rank == root ? destination : nil, counts, displacements, type,
                                Int32(root), comm, &handle)
        case .broadcast(let buffer, let count, let root):
            return MPI_Ibcast(buffer, Int32(checkedCount(count)), type, Int32(root), comm, &handle)
        case .send(let buffer, let count, let destination, let tag):
            return MPI_Isend(buffer, Int32(checkedCount(count)), type, Int32(destination), Int32(tag), comm, &handle)
        case .receive(let buffer, let count, let source, let tag):
            return MPI_Irecv(buffer, Int32(checkedCount(count)), type, Int32(source), Int32(tag), comm, &handle)
        case .barrier:
            return MPI_Ibarrier(comm, &handle)
        }
    }

    /// Tells every peer that this rank has reached operation `number`.
    private func announce(_ number: Int64) {
        var value = number
        for peer in 0..<size where peer != rank {
            MPI_Send(&value, 1, keel_mpi_int64(), Int32(peer), Self.announcementTag, watch)
        }
    }

    /// Records the newest operation number each peer has announced.
    private func collectAnnouncements() {
        while let source = probe(tag: Self.announcementTag) {
            var value: Int64 = 0
            MPI_Recv(&value, 1, keel_mpi_int64(), source, Self.announcementTag, watch, keel_mpi_status_ignore())
            lastAnnounced[Int(source)] = max(lastAnnounced[Int(source)], value)
        }
    }

    /// Replies to every ping a peer has sent with the number of operations this process has finished
    /// (`MPIRuntime.progressReport`).
    private func answerPings() {
        while let source = probe(tag: Self.pingTag) {
            var value: Int64 = 0
            MPI_Recv(&value, 1, keel_mpi_int64(), source, Self.pingTag, watch, keel_mpi_status_ignore())
            value = runtime.progressReport()
            MPI_Send(&value, 1, keel_mpi_int64(), source, Self.pongTag, watch)
        }
    }

    /// Records the peers' answers to pings.
    private func collectAnswers() {
        while let source = probe(tag: Self.pongTag) {
            var value: Int64 = 0
            MPI_Recv(&value, 1, keel_mpi_int64(), source, Self.pongTag, watch, keel_mpi_status_ignore())
            answers[Int(source)] = (value, monotonicSeconds())
        }
    }

    /// Pings `peers`; their answers arrive through `collectAnswers`.
    private func ping(_ peers: [Int]) {
        var value: Int64 = 0
        for peer in peers {
            MPI_Send(&value, 1, keel_mpi_int64(), Int32(peer), Self.pingTag, watch)
        }
    }

    /// The source of a pending message with `tag` on the watch communicator, if any.
    private func probe(tag: Int32) -> Int32? {
        var flag: Int32 = 0
        var status = MPI_Status()
        MPI_Iprobe(MPI_ANY_SOURCE, tag, watch, &flag, &status)
        return flag == 0 ? nil : keel_mpi_status_source(&status)
    }

    /// Those of `peers` that answer a ping within two seconds.
    private func responsivePeers(_ peers: [Int]) -> Set<Int> {
        let sent = monotonicSeconds()
        ping(peers)
        while true {
            runtime.serviceWatchers()
            let answered = Set(peers.filter { (answers[$0]?.at ?? -1) >= sent })
            if answered.count == peers.count || monotonicSeconds() >= sent + 2 { return answered }
            usleep(10_000)
        }
    }

    /// The error for an operation that outlived the timeout, naming the ranks that never started it or
    /// that no longer respond.
    private func diagnoseTimeout(_ operation: CommunicationOperation) -> KeelError {
        // Announcements already sent may still be in flight: give them a moment to land.
        let until = monotonicSeconds() + 1
        while monotonicSeconds() < until {
            collectAnnouncements()
            runtime.serviceWatchers()
            usleep(10_000)
        }
        let missing = (0..<size).filter { $0 != rank && lastAnnounced[$0] < sequence }
        let waited = String(format: "%.0f", timeout)
        guard !missing.isEmpty else {
            let answered = responsivePeers((0..<size).filter { $0 != rank })
            let silent = (0..<size).filter { $0 != rank && !answered.contains($0) }.map { "rank \(worldRanks[$0])" }
            guard !silent.isEmpty else {
                return KeelError("'\(operation.label)' did not finish within \(waited) s although every rank started it and responds; the transport is stuck")
            }
            return KeelError("'\(operation.label)' did not finish within \(waited) s: \(silent.joined(separator: ", ")) started it but does not respond (stopped or dead)")
        }
        let names = missing.map { peer -> String in
            let last = lastAnnounced[peer]
            let where_ = last == 0 ? "has not communicated at all"
                : "never reported starting it (its last report: '\(recentLabels[last] ?? "operation \(last)")')"
            return "rank \(worldRanks[peer]) \(where_)"
        }
        return KeelError("'\(operation.label)' did not finish within \(waited) s: \(names.joined(separator: "; ")) (hung or dead)")
    }

    private func mpiFailure(_ operation: CommunicationOperation, _ code: Int32) -> KeelError {
        KeelError("'\(operation.label)' failed: \(MPIRuntime.errorText(code))")
    }

    private func divide(_ buffer: UnsafeMutableRawPointer, count: Int, scalar: ScalarKind) {
        switch scalar {
        case .float32:
            let p = buffer.assumingMemoryBound(to: Float.self), factor = 1 / Float(size)
            for i in 0..<count { p[i] *= factor }
        case .float64:
            let p = buffer.assumingMemoryBound(to: Double.self), factor = 1 / Double(size)
            for i in 0..<count { p[i] *= factor }
        case .int64:
            preconditionFailure("average of integers")
        }
    }

    private func datatype(_ scalar: ScalarKind) -> MPI_Datatype {
        switch scalar {
        case .float32: keel_mpi_float()
        case .float64: keel_mpi_double()
        case .int64: keel_mpi_int64()
        }
    }

    private func mpiOperation(_ reduction: Reduction) -> MPI_Op {
        switch reduction {
        case .sum, .average: keel_mpi_sum()
        case .max: keel_mpi_max()
        case .min: keel_mpi_min()
        }
    }

    /// MPI counts are 32-bit: collectives come here in pieces within that (`pieces(limit:rank:scalar:)`); a send or
    /// a receive of more stops the process.
    private func checkedCount(_ count: Int) -> Int {
        precondition(count <= Int(Int32.max), "MPI message of \(count) elements exceeds 2³¹ − 1")
        return count
    }
}
