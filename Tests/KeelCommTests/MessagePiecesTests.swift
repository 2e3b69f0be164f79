@testable import KeelComm
import XCTest

/// Collectives cut into pieces within MPI's message limit do what the whole collective does: each is carried out here
/// on every rank's memory by a plain simulation of its meaning, whole and piece by piece, and the ranks' memory must
/// end the same, bit for bit.
final class MessagePiecesTests: XCTestCase {
    private typealias Kind = CommunicationOperation.Kind
    private let counts = [5, 0, 13, 4]  // a rank with nothing, blocks across piece boundaries
    private var ranks: Int { counts.count }
    private var total: Int { counts.reduce(0, +) }

    func testEveryCollectiveInPiecesEqualsTheWhole() {
        for limit in [1, 3, 7, 13, 21] {
            for name in ["all-reduce", "broadcast", "all-gather", "reduce-scatter", "gather"] {
                let whole = run(name, limit: nil), cut = run(name, limit: limit)
                XCTAssertEqual(cut.memory, whole.memory, "\(name) in pieces of \(limit)")
                XCTAssertEqual(cut.pieces, (total + limit - 1) / limit, "\(name) in pieces of \(limit)")
            }
        }
    }

    /// Without KEEL_MPI_MESSAGE_LIMIT, a collective of more than 1 GiB of fp32 goes in pieces of at most that, each of
    /// which the hang detector counts as progress (never touched: the pointer only marks where each piece begins).
    func testCollectivesOfMoreThanAGibibyteGoInPieces() throws {
        XCTAssertNil(ProcessInfo.processInfo.environment["KEEL_MPI_MESSAGE_LIMIT"])
        let base = UnsafeMutableRawPointer(bitPattern: 1 << 20)!
        let pieces = Kind.allReduce(base, count: 3 << 28, .sum).pieces(limit: mpiMessageLimit, rank: 0, scalar: .float32)
        XCTAssertEqual(pieces.count, 3)
        for (index, piece) in pieces.enumerated() {
            guard case .allReduce(let buffer, let count, _) = piece else { return XCTFail("piece \(index) is not an all-reduce") }
            XCTAssertEqual(count, 1 << 28)
            XCTAssertEqual(buffer, base + index * (1 << 30))
        }
    }

    func testPiecesStayWithinTheLimit() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4 * total, alignment: 16)
        defer { buffer.deallocate() }
        for piece in Kind.allGather(buffer, counts: counts).pieces(limit: 7, rank: 0, scalar: .float32) {
            guard case .allGather(_, let pieceCounts) = piece else { return XCTFail("an all-gather became \(piece)") }
            XCTAssertLessThanOrEqual(pieceCounts.reduce(0, +), 7)
            XCTAssertEqual(pieceCounts.count, ranks)
        }
    }

    func testEachPieceIsLabelledWithItsPlace() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4 * total, alignment: 16)
        defer { buffer.deallocate() }
        let operation = CommunicationOperation(.allGather(buffer, counts: counts), scalar: .float32, label: "step 3: parameters")
        let labels = operation.pieces(limit: (total + 2) / 3, rank: 0).map(\.label)
        XCTAssertEqual(labels, ["step 3: parameters (piece 1 of 3)", "step 3: parameters (piece 2 of 3)",
                                "step 3: parameters (piece 3 of 3)"])
        XCTAssertEqual(operation.pieces(limit: total, rank: 0).map(\.label), ["step 3: parameters"])
    }

    func testWithinTheLimitAndPointToPointStayWhole() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4 * total, alignment: 16)
        defer { buffer.deallocate() }
        XCTAssertEqual(Kind.allGather(buffer, counts: counts).pieces(limit: total, rank: 1, scalar: .float32).count, 1)
        XCTAssertEqual(Kind.send(buffer, count: total, destination: 1, tag: 0).pieces(limit: 2, rank: 0, scalar: .float32).count, 1)
        XCTAssertEqual(Kind.barrier.pieces(limit: 1, rank: 0, scalar: .float32).count, 1)
    }

    /// Every rank's two buffers after the collective `name`, whole (`limit` nil) or in pieces; and how many pieces.
    private func run(_ name: String, limit: Int?) -> (memory: [[Float]], pieces: Int) {
        // Each rank's source (or buffer) holds values of its own; its destination starts as NaN-free markers.
        var sources = (0..<ranks).map { r in (0..<total).map { Float(r * 100 + $0) + 0.25 } }
        var destinations = (0..<ranks).map { r in [Float](repeating: -Float(r + 1), count: total) }
        var pieceCount = 0
        sources.withPointers { source in
            destinations.withPointers { destination in
                let kinds: [Kind] = (0..<ranks).map { r in
                    switch name {
                    case "all-reduce": .allReduce(source[r], count: total, .sum)
                    case "broadcast": .broadcast(source[r], count: total, root: 2)
                    case "all-gather": .allGather(source[r], counts: counts)
                    case "reduce-scatter": .reduceScatter(source: source[r], destination: destination[r], counts: counts, .sum)
                    default: .gather(source: source[r], destination: r == 2 ? destination[r] : nil, counts: counts, root: 2)
                    }
                }
                let perRank = (0..<ranks).map { r in limit.map { kinds[r].pieces(limit: $0, rank: r, scalar: .float32) } ?? [kinds[r]] }
                pieceCount = perRank[0].count
                for piece in 0..<pieceCount { perform(perRank.map { $0[piece] }) }
            }
        }
        return (sources + destinations, pieceCount)
    }

    /// Carries out one collective, given as each rank passes it, on the ranks' memory.
    private func perform(_ kinds: [Kind]) {
        func floats(_ pointer: UnsafeRawPointer) -> UnsafeMutablePointer<Float> {
            UnsafeMutablePointer(mutating: pointer.assumingMemoryBound(to: Float.self))
        }
        func starts(_ counts: [Int]) -> [Int] { counts.indices.map { counts[..<$0].reduce(0, +) } }
        switch kinds[0] {
        case .allReduce(_, let count, _):
            let buffers = kinds.map { kind -> UnsafeMutablePointer<Float> in
                guard case .allReduce(let buffer, _, _) = kind else { preconditionFailure() }
                return floats(buffer)
            }
            for i in 0..<count {
                let sum = buffers.map { $0[i] }.reduce(0, +)
                for buffer in buffers { buffer[i] = sum }
            }
        case .broadcast(_, let count, let root):
            let buffers = kinds.map { kind -> UnsafeMutablePointer<Float> in
                guard case .broadcast(let buffer, _, _) = kind else { preconditionFailure() }
                return floats(buffer)
            }
            for buffer in buffers where buffer != buffers[root] { buffer.update(from: buffers[root], count: count) }
        case .allGather(_, let counts):
            let buffers = kinds.map { kind -> UnsafeMutablePointer<Float> in
                guard case .allGather(let buffer, _) = kind else { preconditionFailure() }
                return floats(buffer)
            }
            for (r, start) in starts(counts).enumerated() {
                for buffer in buffers where buffer != buffers[r] { (buffer + start).update(from: buffers[r] + start, count: counts[r]) }
            }
        case .reduceScatter(_, _, let counts, _):
            let pairs = kinds.map { kind -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) in
                guard case .reduceScatter(let source, let destination, _, _) = kind else { preconditionFailure() }
                return (floats(source), floats(destination))
            }
            for (r, start) in starts(counts).enumerated() {
                for i in 0..<counts[r] { pairs[r].1[i] = pairs.map { $0.0[start + i] }.reduce(0, +) }
            }
        case .gather(_, _, let counts, let root):
            let sources = kinds.map { kind -> UnsafeMutablePointer<Float> in
                guard case .gather(let source, _, _, _) = kind else { preconditionFailure() }
                return floats(source)
            }
            guard case .gather(_, let destination?, _, _) = kinds[root] else { return XCTFail("the root has no destination") }
            for (r, start) in starts(counts).enumerated() { (floats(destination) + start).update(from: sources[r], count: counts[r]) }
        default:
            XCTFail("not a collective: \(kinds[0])")
        }
    }
}

private extension Array where Element == [Float] {
    /// Calls `body` with a raw pointer to each inner array's storage, kept alive and writable for the call.
    mutating func withPointers(_ body: ([UnsafeMutableRawPointer]) -> Void) {
        let copies = map { inner -> UnsafeMutablePointer<Float> in
            let pointer = UnsafeMutablePointer<Float>.allocate(capacity: inner.count)
            pointer.initialize(from: inner, count: inner.count)
            return pointer
        }
        defer { copies.forEach { $0.deallocate() } }
        body(copies.map(UnsafeMutableRawPointer.init))
        for index in indices { self[index] = [Float](UnsafeBufferPointer(start: copies[index], count: self[index].count)) }
    }
}
