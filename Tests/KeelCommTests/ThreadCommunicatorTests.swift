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
            // One rank has no neighbour: the two message checks are left out.
            XCTAssertEqual(passed.map(\.count), Array(repeating: size == 1 ? 13 : 15, count: size), "size \(size)")
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
        XCTAssertEqual(results.map(\.checks), [15, 15, 15, 15])
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
