import Foundation
import KeelCore

/// The group of one process: every collective is the identity (or a copy), so training code runs the
/// same way with and without MPI.
public final class SingleProcessCommunicator: Communicator {
    public let rank = 0
    public let size = 1
    public let timeout = Double.infinity

    private let counter = OperationCounter()

    public init() {}

    public var startedOperations: Int { counter.value }

    public var communicatedBytes: Int { counter.bytes }

    public func start(_ operation: CommunicationOperation) -> CommunicationRequest {
        counter.record(operation, rank: rank)
        var failure: KeelError?
        switch operation.kind {
        case .reduceScatter(let source, let destination, let counts, _):
            destination.copyMemory(from: source, byteCount: counts[0] * operation.scalar.byteCount)
        case .gather(let source, let destination, let counts, _):
            destination?.copyMemory(from: source, byteCount: counts[0] * operation.scalar.byteCount)
        case .send, .receive:
            failure = KeelError("\(operation.label): a single process has no peer to exchange messages with")
        case .allReduce, .allGather, .broadcast, .barrier:
            break
        }
        return CommunicationRequest.completed(label: operation.label, failure: failure)
    }

    public func split(color: Int, key: Int) throws -> any Communicator {
        SingleProcessCommunicator()
    }

    public func abort(code: Int32) -> Never {
        exit(code)
    }
}
