import Foundation
import KeelCore

/// The handle of an operation in flight: wait on it before touching its buffers.
///
/// It also records when the operation actually began and ended (monotonic seconds), which is how training
/// shows that gradient communication overlaps the backward pass.
public final class CommunicationRequest: @unchecked Sendable {
    public let label: String
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var done = false
    private var failure: KeelError?
    private var began: Double?
    private var ended: Double?

    init(label: String) {
        self.label = label
    }

    /// A request that finished at once (single-process operations).
    static func completed(label: String, failure: KeelError? = nil) -> CommunicationRequest {
        let request = CommunicationRequest(label: label)
        let now = monotonicSeconds()
        request.markStarted(at: now)
        request.finish(at: now, failure: failure)
        return request
    }

    /// Blocks until the operation is done; throws if it failed or timed out.
    public func wait() throws {
        condition.lock()
        while !done { condition.wait() }
        let failure = self.failure
        condition.unlock()
        if let failure { throw failure }
    }

    public var isComplete: Bool {
        condition.lock()
        defer { condition.unlock() }
        return done
    }

    /// (began, ended) in `monotonicSeconds()`, once the operation has finished.
    public var interval: (began: Double, ended: Double)? {
        condition.lock()
        defer { condition.unlock() }
        guard let began, let ended else { return nil }
        return (began, ended)
    }

    func markStarted(at time: Double) {
        condition.lock()
        began = time
        condition.unlock()
    }

    func finish(at time: Double, failure: KeelError?) {
        condition.lock()
        ended = time
        self.failure = failure
        done = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Seconds on a monotonic clock, comparable across threads of one process.
public func monotonicSeconds() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}

/// Counts that any thread may bump and read: the operations a communicator started and their bytes.
final class OperationCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var byteCount = 0

    /// Counts `operation`, started by `rank`.
    func record(_ operation: CommunicationOperation, rank: Int) {
        let bytes = operation.payloadBytes(rank: rank)
        lock.lock()
        count += 1
        byteCount += bytes
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    var bytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return byteCount
    }
}
