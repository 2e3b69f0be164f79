import KeelComm
import XCTest

/// Which machine keeps the copy of which one's snapshots: always another machine, as Gemini's group placement
/// pairs them, and every rank of the job can compute it alike.
final class MachinePlacementTests: XCTestCase {
    /// `machines` machines of `perMachine[m]` ranks each, ranks numbered machine by machine.
    private func placement(_ perMachine: [Int], rank: Int = 0) -> MachinePlacement {
        MachinePlacement(machineOfRank: perMachine.enumerated().flatMap { Array(repeating: $0.offset, count: $0.element) }, rank: rank)
    }

    func testMachinesArePairedAndTheLastThreeOfAnOddCountFormARing() {
        XCTAssertEqual((0..<4).map { placement([1, 1, 1, 1]).buddyMachine(of: $0) }, [1, 0, 3, 2])
        XCTAssertEqual((0..<5).map { placement([1, 1, 1, 1, 1]).buddyMachine(of: $0) }, [1, 0, 3, 4, 2])
        XCTAssertEqual((0..<3).map { placement([1, 1, 1]).buddyMachine(of: $0) }, [1, 2, 0])
        XCTAssertNil(placement([4]).buddyMachine(of: 0), "one machine has no other to keep a copy")
    }

    func testEveryRanksCopyIsKeptOnAnotherMachineByTheRankOfTheSameIndex() {
        for shape in [[2, 2], [3, 3, 3], [4, 2], [1, 3, 2, 2, 1]] {
            let machines = placement(shape), ranks = machines.machineOfRank.count
            var kept = [Int](repeating: 0, count: ranks)
            for rank in 0..<ranks {
                let buddy = try! XCTUnwrap(machines.buddy(of: rank))
                XCTAssertNotEqual(machines.machineOfRank[buddy], machines.machineOfRank[rank], "\(shape): rank \(rank)")
                XCTAssertEqual(machines.buddyMachine(of: machines.machineOfRank[rank]), machines.machineOfRank[buddy])
                XCTAssertTrue(machines.buddied(by: buddy).contains(rank))
                kept[buddy] += 1
            }
            XCTAssertEqual(kept.reduce(0, +), ranks, "\(shape)")
            if Set(shape).count == 1 { XCTAssertEqual(kept, Array(repeating: 1, count: ranks), "equal machines: one copy each") }
        }
        // Rank 1 is the second of machine 0, so its copy goes to the second rank of machine 1 (rank 3).
        XCTAssertEqual(placement([2, 2]).buddy(of: 1), 3)
        XCTAssertNil(placement([3]).buddy(of: 1))
    }

    func testMachinesAreNumberedByTheirLowestRank() throws {
        let results = try ThreadCommunicator.run(size: 4) { world in
            try MachinePlacement.discover(world: world, name: ["b", "a", "b", "c"][world.rank])
        }
        XCTAssertEqual(results[0].machineOfRank, [0, 1, 0, 2])
        XCTAssertEqual(results.map(\.machine), [0, 1, 0, 2])
        XCTAssertEqual(results.map(\.isMachineLeader), [true, true, false, true])
        XCTAssertEqual(results[0].ranks(on: 0), [0, 2])
    }

    func testTheMachineNameComesFromKeelMachineOrTheHost() {
        XCTAssertEqual(MachinePlacement.localName(environment: ["KEEL_MACHINE": "node-7"]), "node-7")
        let host = MachinePlacement.localName(environment: [:])
        XCTAssertFalse(host.isEmpty)
        XCTAssertEqual(MachinePlacement.localName(environment: ["KEEL_MACHINE": ""]), host)
    }
}
