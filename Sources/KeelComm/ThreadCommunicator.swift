import Foundation
import KeelCore

/// A group of ranks that are threads of one process, exchanging data through shared memory: a real
/// multi-rank `Communicator` without MPI, for tests of parallel layers (each rank's code runs on its own
/// thread, as it would in its own process).
///
/// Each rank runs its collectives in the order it starts them, one after another; a collective completes
/// when every rank of the group has contributed (each contribution is copied, so no rank reads another's
/// memory). Sends copy their data into the receiver's mailbox and complete at once; receives complete when
/// their message is there, independently of the collectives. An operation that the other ranks do not join
/// within `timeout` fails, naming them.
public final class ThreadCommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let timeout: Double
    private let hub: Hub
    private let counter = OperationCounter()
    /// Collectives started so far on this rank (the sequence number that matches them across ranks).
    private var collectives = 0
    /// The last collective started: the next one runs after it.
    private var previous: CommunicationRequest?

    private init(rank: Int, hub: Hub, timeout: Double) {
        self.rank = rank
        size = hub.size
        self.hub = hub
        self.timeout = timeout
    }

    /// The `size` ranks of a new group, in rank order.
    public static func group(size: Int, timeout: Double = 60) -> [ThreadCommunicator] {
        precondition(size >= 1)
        let hub = Hub(size: size)
        return (0..<size).map { ThreadCommunicator(rank: $0, hub: hub, timeout: timeout) }
    }

    /// Runs `body` for every rank of a new group of `size`, each on its own thread, and returns the results in
    /// rank order; rethrows the error of the lowest rank that threw.
    public static func run<T>(size: Int, timeout: Double = 60,
                              _ body: @escaping @Sendable (ThreadCommunicator) throws -> T) throws -> [T] {
        let ranks = group(size: size, timeout: timeout)
        let results = Results<T>(count: size)
        let finished = DispatchGroup()
        // One thread per rank, all at once: a collective needs every rank running.
        for communicator in ranks {
            finished.enter()
            Thread.detachNewThread {
                results.set(communicator.rank, Result(catching: { try body(communicator) }))
                finished.leave()
            }
        }
        finished.wait()
        return try results.values.map { try $0!.get() }
    }

    public var startedOperations: Int { counter.value }

    public var communicatedBytes: Int { counter.bytes }

    public func start(_ operation: CommunicationOperation) -> CommunicationRequest {
        counter.record(operation, rank: rank)
        let request = CommunicationRequest(label: operation.label)
        switch operation.kind {
        case .send(let source, let count, let destination, let tag):
            request.markStarted(at: monotonicSeconds())
            let bytes = [UInt8](UnsafeRawBufferPointer(start: source, count: count * operation.scalar.byteCount))
            let failure = (0..<size).contains(destination) ? nil
                : KeelError("\(operation.label): no rank \(destination) in a group of \(size)")
            if failure == nil { hub.post(bytes, from: rank, to: destination, tag: tag) }
            request.finish(at: monotonicSeconds(), failure: failure)
        case .receive(let destination, let count, let source, let tag):
            request.markStarted(at: monotonicSeconds())
            let (rank, hub, timeout, label) = (self.rank, self.hub, self.timeout, operation.label)
            let byteCount = count * operation.scalar.byteCount
            let buffer = UncheckedPointer(destination)
            Thread.detachNewThread {
                var failure: KeelError?
                if let bytes = hub.take(from: source, to: rank, tag: tag, timeout: timeout) {
                    if bytes.count == byteCount {
                        bytes.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: byteCount) }
                    } else {
                        failure = KeelError("'\(label)': received \(bytes.count) bytes, expected \(byteCount)")
                    }
                } else {
                    failure = KeelError("'\(label)' did not finish within \(String(format: "%g", timeout)) s: rank \(source) never sent it")
                }
                request.finish(at: monotonicSeconds(), failure: failure)
            }
        default:
            let sequence = collectives, before = previous
            collectives += 1
            previous = request
            let work = UncheckedOperation(operation)
            // Each collective on its own thread, after this rank's previous one.
            Thread.detachNewThread { [self] in
                try? before?.wait()
                request.markStarted(at: monotonicSeconds())
                let failure = runCollective(work.operation, sequence: sequence)
                request.finish(at: monotonicSeconds(), failure: failure)
            }
        }
        return request
    }

    public func split(color: Int, key: Int) throws -> any Communicator {
        // Every rank learns every (color, key); the members of a color share the hub the first of them made.
        let sequence = collectives
        collectives += 1
        let mine = [Int64(color), Int64(key)].withUnsafeBytes { [UInt8]($0) }
        guard let all = hub.exchange(mine, rank: rank, sequence: sequence, timeout: timeout) else {
            throw missing("split", sequence: sequence)
        }
        let pairs = all.map { bytes in bytes.withUnsafeBytes { (color: Int($0.load(as: Int64.self)), key: Int($0.load(fromByteOffset: 8, as: Int64.self))) } }
        let members = pairs.indices.filter { pairs[$0].color == color }.sorted { (pairs[$0].key, $0) < (pairs[$1].key, $1) }
        let subgroup = hub.subgroup(sequence: sequence, color: color, size: members.count)
        return ThreadCommunicator(rank: members.firstIndex(of: rank)!, hub: subgroup, timeout: timeout)
    }

    public func abort(code: Int32) -> Never {
        exit(code)
    }

    // MARK: Collectives

    /// Runs collective number `sequence` of this rank; returns its failure, if any.
    private func runCollective(_ operation: CommunicationOperation, sequence: Int) -> KeelError? {
        let width = operation.scalar.byteCount
        let contribution: [UInt8]
        switch operation.kind {
        case .allReduce(let buffer, let count, _):
            contribution = Self.bytes(buffer, count * width)
        case .reduceScatter(let source, _, let counts, _):
            contribution = Self.bytes(source, counts.reduce(0, +) * width)
        case .allGather(let buffer, let counts):
            contribution = Self.bytes(buffer + counts[..<rank].reduce(0, +) * width, counts[rank] * width)
        case .gather(let source, _, let counts, _):
            contribution = Self.bytes(source, counts[rank] * width)
        case .broadcast(let buffer, let count, let root):
            contribution = rank == root ? Self.bytes(buffer, count * width) : []
        case .barrier, .send, .receive:
            contribution = []
        }
        guard let all = hub.exchange(contribution, rank: rank, sequence: sequence, timeout: timeout) else {
            return missing(operation.label, sequence: sequence)
        }
        switch operation.kind {
        case .allReduce(let buffer, let count, let reduction):
            Self.reduce(all, reduction, scalar: operation.scalar, count: count, into: buffer)
        case .reduceScatter(_, let destination, let counts, let reduction):
            let whole = UnsafeMutableRawPointer.allocate(byteCount: max(1, counts.reduce(0, +) * width), alignment: 16)
            defer { whole.deallocate() }
            Self.reduce(all, reduction, scalar: operation.scalar, count: counts.reduce(0, +), into: whole)
            destination.copyMemory(from: whole + counts[..<rank].reduce(0, +) * width, byteCount: counts[rank] * width)
        case .allGather(let buffer, _):
            Self.concatenate(all, into: buffer)
        case .gather(_, let destination, _, let root):
            if rank == root, let destination { Self.concatenate(all, into: destination) }
        case .broadcast(let buffer, _, let root):
            all[root].withUnsafeBytes { if let base = $0.baseAddress { buffer.copyMemory(from: base, byteCount: $0.count) } }
        case .barrier, .send, .receive:
            break
        }
        return nil
    }

    private func missing(_ label: String, sequence: Int) -> KeelError {
        let absent = hub.absent(sequence: sequence).map { "rank \($0)" }.joined(separator: ", ")
        return KeelError("'\(label)' did not finish within \(String(format: "%g", timeout)) s: \(absent) never started it")
    }

    private static func bytes(_ pointer: UnsafeRawPointer, _ count: Int) -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(start: pointer, count: count))
    }

    private static func concatenate(_ blocks: [[UInt8]], into destination: UnsafeMutableRawPointer) {
        var offset = 0
        for block in blocks {
            block.withUnsafeBytes { if let base = $0.baseAddress { (destination + offset).copyMemory(from: base, byteCount: $0.count) } }
            offset += block.count
        }
    }

    /// Reduces the ranks' buffers element by element, in rank order.
    private static func reduce(_ buffers: [[UInt8]], _ reduction: Reduction, scalar: ScalarKind, count: Int,
                               into destination: UnsafeMutableRawPointer) {
        switch scalar {
        case .float32: reduce(buffers, reduction, count: count, into: destination.assumingMemoryBound(to: Float.self))
        case .float64: reduce(buffers, reduction, count: count, into: destination.assumingMemoryBound(to: Double.self))
        case .int64: reduce(buffers, reduction, count: count, into: destination.assumingMemoryBound(to: Int64.self))
        }
    }

    private static func reduce<T: Numeric & Comparable>(_ buffers: [[UInt8]], _ reduction: Reduction, count: Int,
                                                        into destination: UnsafeMutablePointer<T>) {
        let values = buffers.map { bytes in bytes.withUnsafeBytes { Array($0.bindMemory(to: T.self)) } }
        for i in 0..<count {
            var x = values[0][i]
            for other in values.dropFirst() {
                switch reduction {
                case .sum, .average: x += other[i]
                case .max: x = max(x, other[i])
                case .min: x = min(x, other[i])
                }
            }
            destination[i] = x
        }
        if reduction == .average { divide(destination, count: count, by: buffers.count) }
    }

    private static func divide<T>(_ values: UnsafeMutablePointer<T>, count: Int, by n: Int) {
        switch values {
        case let floats as UnsafeMutablePointer<Float>: for i in 0..<count { floats[i] /= Float(n) }
        case let doubles as UnsafeMutablePointer<Double>: for i in 0..<count { doubles[i] /= Double(n) }
        default: preconditionFailure("average of integers")
        }
    }
}

/// What the ranks of one thread group share: contributions to each collective, by sequence number, the
/// message mailboxes, and the groups `split` makes.
private final class Hub: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var contributions: [Int: [[UInt8]?]] = [:]
    private var collected: [Int: Int] = [:]
    private var mailboxes: [MessageKey: [[UInt8]]] = [:]
    private var subgroups: [SubgroupKey: Hub] = [:]

    init(size: Int) {
        self.size = size
    }

    /// Adds `rank`'s contribution to collective `sequence` and waits for everyone's; nil on timeout.
    func exchange(_ contribution: [UInt8], rank: Int, sequence: Int, timeout: Double) -> [[UInt8]]? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        var slots = contributions[sequence] ?? Array(repeating: nil, count: size)
        slots[rank] = contribution
        contributions[sequence] = slots
        condition.broadcast()
        while contributions[sequence]!.contains(where: { $0 == nil }) {
            if !condition.wait(until: deadline) { return nil }
        }
        let all = contributions[sequence]!.map { $0! }
        collected[sequence, default: 0] += 1
        if collected[sequence] == size {
            contributions[sequence] = nil
            collected[sequence] = nil
        }
        return all
    }

    /// The ranks that have not contributed to collective `sequence`.
    func absent(sequence: Int) -> [Int] {
        condition.lock()
        defer { condition.unlock() }
        guard let slots = contributions[sequence] else { return [] }
        return slots.indices.filter { slots[$0] == nil }
    }

    func post(_ bytes: [UInt8], from source: Int, to destination: Int, tag: Int) {
        condition.lock()
        mailboxes[MessageKey(source: source, destination: destination, tag: tag), default: []].append(bytes)
        condition.broadcast()
        condition.unlock()
    }

    /// The oldest message from `source` to `destination` with `tag`, waiting for it up to `timeout` seconds.
    func take(from source: Int, to destination: Int, tag: Int, timeout: Double) -> [UInt8]? {
        let key = MessageKey(source: source, destination: destination, tag: tag)
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while mailboxes[key, default: []].isEmpty {
            if !condition.wait(until: deadline) { return nil }
        }
        return mailboxes[key]!.removeFirst()
    }

    /// The hub of the group that `split` number `sequence` made for `color` (the same object for all members).
    func subgroup(sequence: Int, color: Int, size: Int) -> Hub {
        condition.lock()
        defer { condition.unlock() }
        let key = SubgroupKey(sequence: sequence, color: color)
        if let hub = subgroups[key] { return hub }
        let hub = Hub(size: size)
        subgroups[key] = hub
        return hub
    }
}

private struct MessageKey: Hashable {
    let source: Int
    let destination: Int
    let tag: Int
}

private struct SubgroupKey: Hashable {
    let sequence: Int
    let color: Int
}

/// A destination pointer handed to the thread that completes a receive (the caller keeps it alive and
/// untouched until the request completes).
private struct UncheckedPointer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// An operation handed to a rank's queue (its buffers, likewise, stay alive until it completes).
private struct UncheckedOperation: @unchecked Sendable {
    let operation: CommunicationOperation
    init(_ operation: CommunicationOperation) { self.operation = operation }
}

/// Each rank's result, written by its own thread.
private final class Results<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Result<T, Error>?]
    init(count: Int) { storage = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Result<T, Error>) {
        lock.lock()
        storage[index] = value
        lock.unlock()
    }
    var values: [Result<T, Error>?] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}
