import Foundation

/// `body` on each of `0..<count`, on up to `workers` threads, each index taken by the next free thread (so slow
/// items do not hold up the rest); the results in index order. After the first error no new index is started,
/// and that error is thrown once the running ones finish.
///
/// For coarse, uneven work — files, browser renders — rather than the even loops of `ThreadPool`.
public func concurrentMap<T>(_ count: Int, workers: Int, _ body: @Sendable (Int) throws -> T) throws -> [T] {
    let state = ConcurrentMapState<T>(count)
    DispatchQueue.concurrentPerform(iterations: max(1, min(workers, count))) { _ in
        while let index = state.take() {
            do { state.put(index, try body(index)) } catch { state.fail(error) }
        }
    }
    if let error = state.error { throw error }
    return state.results.map { $0! }
}

/// What `concurrentMap`'s threads share, behind one lock.
private final class ConcurrentMapState<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private(set) var results: [T?]
    private(set) var error: Error?

    init(_ count: Int) { results = Array(repeating: nil, count: count) }

    /// The next index to work on, or nil when all are taken or one has failed.
    func take() -> Int? {
        lock.withLock {
            guard error == nil, next < results.count else { return nil }
            defer { next += 1 }
            return next
        }
    }

    func put(_ index: Int, _ result: T) { lock.withLock { results[index] = result } }

    func fail(_ error: Error) { lock.withLock { if self.error == nil { self.error = error } } }
}
