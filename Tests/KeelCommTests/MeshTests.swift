import KeelCore
import XCTest
@testable import KeelComm

final class MeshTests: XCTestCase {
    func testRanksAreLaidOutTensorInnermost() throws {
        let mesh = try Mesh(worldSize: 24, pipeline: 2, tensor: 3)
        XCTAssertEqual(mesh.data, 4)
        // rank = (p · dp + d) · tp + t, written out for one rank.
        XCTAssertEqual(mesh.rank(at: .init(pipeline: 1, data: 2, tensor: 1)), (1 * 4 + 2) * 3 + 1)
        for rank in 0..<24 { XCTAssertEqual(mesh.rank(at: mesh.coordinates(of: rank)), rank) }
        XCTAssertEqual(mesh.group(.tensor, containing: 7), [6, 7, 8])
        XCTAssertEqual(mesh.group(.data, containing: 7), [1, 4, 7, 10])
        XCTAssertEqual(mesh.group(.pipeline, containing: 7), [7, 19])
    }

    func testGroupsOfEachAxisPartitionTheWorld() throws {
        let mesh = try Mesh(worldSize: 16, pipeline: 2, tensor: 2)
        for axis in Mesh.Axis.allCases {
            let groups = mesh.groups(axis)
            XCTAssertEqual(groups.count, 16 / mesh.extent(axis), "\(axis)")
            XCTAssertEqual(groups.flatMap { $0 }.sorted(), Array(0..<16), "\(axis)")
            XCTAssertTrue(groups.allSatisfy { $0.count == mesh.extent(axis) })
        }
        XCTAssertEqual(try Mesh(worldSize: 8, pipeline: 4).embeddingGroups(), [[0, 6], [1, 7]])
        XCTAssertEqual(try Mesh(worldSize: 2).embeddingGroups(), [[0], [1]])
    }

    func testLayoutThatDoesNotDivideTheWorldIsRejected() {
        XCTAssertThrowsError(try Mesh(worldSize: 6, pipeline: 4)) { error in
            XCTAssertTrue("\(error)".contains("does not divide the 6 processes"))
        }
        XCTAssertThrowsError(try Mesh(worldSize: 4, tensor: 0))
    }

    func testEvenPartitionCoversEverythingOnce() {
        for (count, parts) in [(10, 3), (3, 4), (0, 2), (1_000_003, 7)] {
            let ranges = evenPartition(count: count, parts: parts)
            XCTAssertEqual(ranges.count, parts)
            XCTAssertEqual(ranges.first?.lowerBound, 0)
            XCTAssertEqual(ranges.last?.upperBound, count)
            for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            XCTAssertLessThanOrEqual(ranges.map(\.count).max()! - ranges.map(\.count).min()!, 1)
        }
    }
}
