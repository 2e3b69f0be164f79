import Foundation
import KeelCore

/// How a collective combines the ranks' values.
public enum Reduction: String, Sendable {
    case sum, average, max, min
}

/// The element types communicators move.
public enum ScalarKind: Sendable {
    case float32, float64, int64

    var byteCount: Int { self == .float32 ? 4 : 8 }
}

/// A type whose buffers a communicator can move.
public protocol CommunicationScalar {
    static var scalarKind: ScalarKind { get }
}

extension Float: CommunicationScalar { public static var scalarKind: ScalarKind { .float32 } }
extension Double: CommunicationScalar { public static var scalarKind: ScalarKind { .float64 } }
extension Int64: CommunicationScalar { public static var scalarKind: ScalarKind { .int64 } }

/// One communication operation over raw memory that the caller keeps alive, unread and unwritten, until
/// the operation's request completes.
///
/// `counts` of the gathering and scattering operations give each rank's block, in rank order; rank r's
/// block starts at the sum of the counts before it.
public struct CommunicationOperation: @unchecked Sendable {
    public enum Kind {
        /// In place: every rank ends with the reduction of all ranks' buffers.
        case allReduce(UnsafeMutableRawPointer, count: Int, Reduction)
        /// Reduces `source` (sum of counts elements) and leaves rank r's block of the result in `destination`.
        case reduceScatter(source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, counts: [Int], Reduction)
        /// In place: rank r contributes its block of `buffer`; every rank ends with all blocks.
        case allGather(UnsafeMutableRawPointer, counts: [Int])
        /// Each rank sends its block (counts[rank] elements at `source`); `root` receives all blocks, in rank
        /// order, in `destination` (ignored on other ranks).
        case gather(source: UnsafeRawPointer, destination: UnsafeMutableRawPointer?, counts: [Int], root: Int)
        /// `root`'s buffer is copied to every rank.
        case broadcast(UnsafeMutableRawPointer, count: Int, root: Int)
        case send(UnsafeRawPointer, count: Int, destination: Int, tag: Int)
        case receive(UnsafeMutableRawPointer, count: Int, source: Int, tag: Int)
        case barrier

        /// A send or a receive: a message between two ranks, not an operation of the whole group.
        public var isPointToPoint: Bool {
            switch self {
            case .send, .receive: true
            default: false
            }
        }
    }

    public let kind: Kind
    public let scalar: ScalarKind
    /// What the operation is for, used in timing traces and in the message when it never finishes
    /// (e.g. "step 12: gradient bucket 3 of 7").
    public let label: String

    public init(_ kind: Kind, scalar: ScalarKind, label: String) {
        self.kind = kind
        self.scalar = scalar
        self.label = label
    }

    /// The bytes rank `rank` puts into the operation: an all-reduce's buffer, a reduce-scatter's whole source,
    /// its own block of an all-gather or gather, a broadcast's buffer (on every rank), a send's message; a
    /// receive and a barrier put in nothing (a message is counted once, by its sender).
    public func payloadBytes(rank: Int) -> Int {
        let elements = switch kind {
        case .allReduce(_, let count, _), .broadcast(_, let count, _), .send(_, let count, _, _): count
        case .reduceScatter(_, _, let counts, _): counts.reduce(0, +)
        case .allGather(_, let counts), .gather(_, _, let counts, _): counts[rank]
        case .receive, .barrier: 0
        }
        return elements * scalar.byteCount
    }
}

/// A group of processes that exchange data: the interface training code talks to, whatever moves the bytes.
///
/// Operations run one after another in the order this process starts them, and every rank of the group must
/// start the same collectives in the same order (as with NCCL's streams). `start` returns at once, so
/// computation continues while the operation is in flight; the blocking helpers start and wait.
public protocol Communicator: AnyObject, Sendable {
    /// This process's index in the group.
    var rank: Int { get }
    /// Number of processes in the group.
    var size: Int { get }
    /// Seconds an operation may wait for the other ranks before the job is declared hung.
    var timeout: Double { get }
    /// Starts `operation` after every operation this process started before it.
    func start(_ operation: CommunicationOperation) -> CommunicationRequest
    /// How many operations this process has started on this communicator so far: what metrics report as
    /// the communication of a step, and what tests count to prove that a step communicated nothing more.
    var startedOperations: Int { get }
    /// The bytes this process has put into the operations it started (`CommunicationOperation.payloadBytes`):
    /// the volume that tests compare with the analytic communication of a parallel layout.
    var communicatedBytes: Int { get }
    /// A communicator over the ranks that pass the same `color`, ordered by `key` (collective: every rank
    /// of this group must call it).
    func split(color: Int, key: Int) throws -> any Communicator
    /// Ends every process of the job after an unrecoverable error on this one.
    func abort(code: Int32) -> Never
    /// Marks the start of work this process does alone while its peers may wait for it (a checkpoint that rank 0
    /// writes for all, a file that one rank writes slower than the others): until `endWorkingAlone`, it answers
    /// their pings as making progress, so that work longer than the timeout is not taken for a hang. Any thread may
    /// call it; calls nest. `workingAlone(_:)` pairs them.
    func beginWorkingAlone()
    /// Marks the end of the work `beginWorkingAlone` began.
    func endWorkingAlone()
}

extension Communicator {
    /// Without a watchdog (one process, ranks that are threads) there is nothing to tell.
    public func beginWorkingAlone() {}
    public func endWorkingAlone() {}

    /// Runs `body`, work this process does while its peers may wait for it, with its pings answered as progress
    /// (`beginWorkingAlone`).
    @discardableResult
    public func workingAlone<T>(_ body: () throws -> T) rethrows -> T {
        beginWorkingAlone()
        defer { endWorkingAlone() }
        return try body()
    }

    /// Runs `body` where a failure cannot be thrown to the caller (inside a model's passes): a collective that
    /// fails (a rank that died or hangs past the timeout) ends the job as `keel` does for any error on a rank —
    /// one "Error: rank R of the GROUP: …" line, then every process is stopped.
    public func stoppingJobOnFailure(of group: String, _ body: () throws -> Void) {
        do {
            try body()
        } catch {
            StandardStreams.error("Error: rank \(rank) of the \(group): \(error)\n")
            abort(code: 1)
        }
    }

    /// Each of `values`' lowest and highest value over the ranks (collective: one all-reduce).
    public func extremes(_ values: [Double], label: String) throws -> (lowest: [Double], highest: [Double]) {
        let reduced = try allReduce(values + values.map { -$0 }, .max, label: label)
        return (reduced[values.count...].map { -$0 }, Array(reduced[..<values.count]))
    }

    /// Starts an in-place all-reduce of `buffer`.
    public func startAllReduce<T: CommunicationScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, _ reduction: Reduction = .sum, label: String = "all-reduce"
    ) -> CommunicationRequest {
        start(CommunicationOperation(.allReduce(UnsafeMutableRawPointer(buffer.baseAddress!), count: buffer.count,
                                                reduction), scalar: T.scalarKind, label: label))
    }

    /// Reduces `buffer` in place across the group.
    public func allReduce<T: CommunicationScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, _ reduction: Reduction = .sum, label: String = "all-reduce"
    ) throws {
        try startAllReduce(buffer, reduction, label: label).wait()
    }

    /// Reduces `values` across the group.
    public func allReduce<T: CommunicationScalar>(
        _ values: [T], _ reduction: Reduction = .sum, label: String = "all-reduce"
    ) throws -> [T] {
        var result = values
        try result.withUnsafeMutableBufferPointer { try allReduce($0, reduction, label: label) }
        return result
    }

    /// Starts a reduce-scatter of `source` (the sum of `counts` elements): rank r receives the reduction of
    /// its block in `destination` (counts[r] elements).
    public func startReduceScatter<T: CommunicationScalar>(
        _ source: UnsafePointer<T>, into destination: UnsafeMutablePointer<T>, counts: [Int],
        _ reduction: Reduction = .sum, label: String = "reduce-scatter"
    ) -> CommunicationRequest {
        start(CommunicationOperation(.reduceScatter(source: UnsafeRawPointer(source),
                                                    destination: UnsafeMutableRawPointer(destination), counts: counts,
                                                    reduction), scalar: T.scalarKind, label: label))
    }

    public func reduceScatter<T: CommunicationScalar>(
        _ source: UnsafePointer<T>, into destination: UnsafeMutablePointer<T>, counts: [Int],
        _ reduction: Reduction = .sum, label: String = "reduce-scatter"
    ) throws {
        try startReduceScatter(source, into: destination, counts: counts, reduction, label: label).wait()
    }

    /// Starts an in-place all-gather: rank r's block (counts[r] elements at offset Σcounts[..<r]) goes to all.
    public func startAllGather<T: CommunicationScalar>(
        _ buffer: UnsafeMutablePointer<T>, counts: [Int], label: String = "all-gather"
    ) -> CommunicationRequest {
        start(CommunicationOperation(.allGather(UnsafeMutableRawPointer(buffer), counts: counts), scalar: T.scalarKind,
                                     label: label))
    }

    public func allGather<T: CommunicationScalar>(
        _ buffer: UnsafeMutablePointer<T>, counts: [Int], label: String = "all-gather"
    ) throws {
        try startAllGather(buffer, counts: counts, label: label).wait()
    }

    /// Every rank's `values` (the same number on every rank), concatenated in rank order, on every rank.
    public func allGather<T: CommunicationScalar & Numeric>(_ values: [T], label: String = "all-gather") throws -> [T] {
        guard !values.isEmpty else { return [] }
        var all = [T](repeating: 0, count: size * values.count)
        all.replaceSubrange((rank * values.count)..<((rank + 1) * values.count), with: values)
        try all.withUnsafeMutableBufferPointer {
            try allGather($0.baseAddress!, counts: Array(repeating: values.count, count: size), label: label)
        }
        return all
    }

    /// Collects every rank's block (counts[rank] elements at `source`) into `root`'s `destination`.
    public func gather<T: CommunicationScalar>(
        _ source: UnsafePointer<T>, into destination: UnsafeMutablePointer<T>?, counts: [Int], root: Int,
        label: String = "gather"
    ) throws {
        try start(CommunicationOperation(.gather(source: UnsafeRawPointer(source),
                                                 destination: destination.map { UnsafeMutableRawPointer($0) },
                                                 counts: counts, root: root),
                                         scalar: T.scalarKind, label: label)).wait()
    }

    /// Copies `root`'s buffer to every rank.
    public func broadcast<T: CommunicationScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, root: Int, label: String = "broadcast"
    ) throws {
        try start(CommunicationOperation(.broadcast(UnsafeMutableRawPointer(buffer.baseAddress!), count: buffer.count,
                                                    root: root), scalar: T.scalarKind, label: label)).wait()
    }

    public func startSend<T: CommunicationScalar>(
        _ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0, label: String = "send"
    ) -> CommunicationRequest {
        start(CommunicationOperation(.send(UnsafeRawPointer(buffer.baseAddress!), count: buffer.count,
                                           destination: destination, tag: tag), scalar: T.scalarKind, label: label))
    }

    public func send<T: CommunicationScalar>(
        _ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0, label: String = "send"
    ) throws {
        try startSend(buffer, to: destination, tag: tag, label: label).wait()
    }

    public func startReceive<T: CommunicationScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int = 0, label: String = "receive"
    ) -> CommunicationRequest {
        start(CommunicationOperation(.receive(UnsafeMutableRawPointer(buffer.baseAddress!), count: buffer.count,
                                              source: source, tag: tag), scalar: T.scalarKind, label: label))
    }

    public func receive<T: CommunicationScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int = 0, label: String = "receive"
    ) throws {
        try startReceive(buffer, from: source, tag: tag, label: label).wait()
    }

    /// Returns once every rank of the group has called it.
    public func barrier(label: String = "barrier") throws {
        try start(CommunicationOperation(.barrier, scalar: .float32, label: label)).wait()
    }
}

/// Splits `0..<count` into `parts` contiguous ranges whose sizes differ by at most one (ZeRO's shards).
public func evenPartition(count: Int, parts: Int) -> [Range<Int>] {
    precondition(parts > 0)
    return (0..<parts).map { p in (p * count / parts)..<((p + 1) * count / parts) }
}
