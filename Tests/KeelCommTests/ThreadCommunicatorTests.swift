import Foundation
import KeelCore
import XCTest
@testable import KeelComm

/// The in-process communicator that unit tests of parallel layers run on: every operation `keel collectives`
/// checks across MPI processes gives the exact answer across threads too, on groups made by `split` as well,
/// and a rank that never joins is named.
final class ThreadCommunicatorTests: XCTestCase {
    func testEveryOperationGivesTheExactAnswer() throws {
        for size in [1, 2, 3, 4] {
            let passed = try ThreadCommunicator.run(size: size) { try CollectiveCheck.verify($0, elements: 1000) }
            // One rank has no neighbour: the two message checks and the two of independent communicators are left out.
            XCTAssertEqual(passed.map(\.count), Array(repeating: size == 1 ? 13 : 17, count: size), "size \(size)")
        }
    }

    func testSplitGroupsWorkAndAreOrderedByKey() throws {
        let results = try ThreadCommunicator.run(size: 4) { world -> (rank: Int, size: Int, checks: Int, ranks: [Double]) in
            // Two groups, {0, 2} and {1, 3}, each ordered by descending world rank.
            let group = try world.split(color: world.rank % 2, key: -world.rank)
            let checks = try CollectiveCheck.verify(group, elements: 100).count
            var ranks = [Double](repeating: 0, count: group.size)
            ranks[group.rank] = Double(world.rank)
            return (group.rank, group.size, checks, try group.allReduce(ranks, .sum))
        }
        XCTAssertEqual(results.map(\.rank), [1, 1, 0, 0])
        XCTAssertEqual(results.map(\.size), [2, 2, 2, 2])
        XCTAssertEqual(results.map(\.checks), [17, 17, 17, 17])
        XCTAssertEqual(results.map(\.ranks), [[2, 0], [3, 1], [2, 0], [3, 1]])
    }

    func testOperationsRunInTheOrderStarted() throws {
        // Rank 0 starts two all-reduces before waiting for either; rank 1 waits for each. The sums pair up
        // by order, not by timing.
        let sums = try ThreadCommunicator.run(size: 2) { comm -> [Float] in
            var a: [Float] = [Float(comm.rank + 1)], b: [Float] = [Float(10 * (comm.rank + 1))]
            try a.withUnsafeMutableBufferPointer { first in
                try b.withUnsafeMutableBufferPointer { second in
                    let one = comm.startAllReduce(first, .sum), two = comm.startAllReduce(second, .sum)
                    try two.wait()
                    try one.wait()
                }
            }
            return a + b
        }
        XCTAssertEqual(sums, [[3, 30], [3, 30]])
    }

    /// Each operation counts the bytes this rank puts in: a reduce's whole buffer, its own block of a gather, a
    /// broadcast's buffer on every rank, a message once (by its sender).
    func testCommunicatedBytesCountWhatEachRankPutsIn() throws {
        let counts = try ThreadCommunicator.run(size: 2) { comm -> (operations: Int, bytes: Int) in
            var ten = [Float](repeating: 1, count: 10), eight = [Float](repeating: 1, count: 8), block = [Float](repeating: 0, count: 5)
            try ten.withUnsafeMutableBufferPointer { try comm.allReduce($0, .sum) }
            try eight.withUnsafeBufferPointer { source in
                try block.withUnsafeMutableBufferPointer { try comm.reduceScatter(source.baseAddress!, into: $0.baseAddress!, counts: [3, 5], .sum) }
            }
            try eight.withUnsafeMutableBufferPointer { try comm.allGather($0.baseAddress!, counts: [3, 5]) }
            try ten.withUnsafeMutableBufferPointer { try comm.broadcast(UnsafeMutableBufferPointer(rebasing: $0[0..<4]), root: 0) }
            var message = [Double](repeating: 2, count: 7)
            try message.withUnsafeMutableBufferPointer {
                if comm.rank == 0 { try comm.send(UnsafeBufferPointer($0), to: 1) } else { try comm.receive($0, from: 0) }
            }
            try comm.barrier()
            return (comm.startedOperations, comm.communicatedBytes)
        }
        XCTAssertEqual(counts.map(\.operations), [6, 6])
        XCTAssertEqual(counts.map(\.bytes), [40 + 32 + 12 + 16 + 56, 40 + 32 + 20 + 16])
    }

    func testARankThatNeverJoinsIsNamed() throws {
        let outcomes = try ThreadCommunicator.run(size: 3, timeout: 0.3) { comm -> String in
            guard comm.rank != 2 else { return "absent" }
            do {
                try comm.barrier(label: "step 4: loss")
                return "finished"
            } catch let error as KeelError {
                return error.message
            }
        }
        for message in outcomes.prefix(2) {
            XCTAssertEqual(message, "'step 4: loss' did not finish within 0.3 s: rank 2 never started it")
        }
        let unsent = try ThreadCommunicator.run(size: 2, timeout: 0.3) { comm -> String in
            guard comm.rank == 0 else { return "" }
            var x: [Float] = [0]
            do {
                try x.withUnsafeMutableBufferPointer { try comm.receive($0, from: 1, tag: 7, label: "activations") }
                return "received"
            } catch let error as KeelError {
                return error.message
            }
        }
        XCTAssertEqual(unsent[0], "'activations' did not finish within 0.3 s: rank 1 never sent it")
    }
}
