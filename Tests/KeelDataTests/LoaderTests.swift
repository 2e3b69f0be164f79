import Foundation
import KeelCore
import KeelData
import XCTest

final class LoaderTests: XCTestCase {
    /// Windows over a stream where token i is i, so a window's first input names it.
    private func windows(tokens: Int, length: Int, segments: Int = 3) -> TokenWindows {
        let per = tokens / segments
        return TokenWindows(segments: (0..<segments).map { s in .memory((0..<per).map { Int32(s * per + $0) }) }, length: length)
    }

    /// The first input token of every row of the next `steps` batches.
    private func starts(_ loader: TokenLoader, steps: Int) -> [[Int32]] {
        let n = loader.batch * loader.windows.length
        var inputs = [Int32](repeating: 0, count: n), targets = inputs
        return (0..<steps).map { _ in
            inputs.withUnsafeMutableBufferPointer { i in
                targets.withUnsafeMutableBufferPointer { t in loader.next(inputs: i.baseAddress!, targets: t.baseAddress!) }
            }
            for row in 0..<loader.batch {
                let r = row * loader.windows.length
                XCTAssertEqual(Array(targets[r..<(r + loader.windows.length - 1)]), Array(inputs[(r + 1)..<(r + loader.windows.length)]))
            }
            return (0..<loader.batch).map { inputs[$0 * loader.windows.length] }
        }
    }

    func testPermutationIsABijection() {
        for count in [1, 2, 3, 7, 64, 100, 1000, 4097] {
            for epoch in 0..<3 {
                let permutation = WindowPermutation(count: count, seed: 5, epoch: epoch)
                XCTAssertEqual(Set((0..<count).map { permutation($0) }).count, count, "count \(count)")
            }
        }
        let a = WindowPermutation(count: 1000, seed: 5, epoch: 0), b = WindowPermutation(count: 1000, seed: 5, epoch: 1)
        XCTAssertNotEqual((0..<1000).map { a($0) }, (0..<1000).map { b($0) })
    }

    func testWindowsNeverCrossSegmentsAndCoverEveryTarget() {
        let w = windows(tokens: 300, length: 8)  // three segments of 100 tokens: 12 windows each
        XCTAssertEqual(w.count, 36)
        var inputs = [Int32](repeating: 0, count: 8), targets = inputs
        var seen = Set<Int32>()
        for index in 0..<w.count {
            w.copy(window: index, inputs: &inputs, targets: &targets)
            XCTAssertEqual(inputs[0] / 100, targets[7] / 100, "window \(index) crosses a segment")
            seen.formUnion(targets)
        }
        XCTAssertEqual(seen.count, 36 * 8)
    }

    func testSameSeedSameBatchesAndEpochVisitsEveryWindowOnce() throws {
        let w = windows(tokens: 3000, length: 10)  // 297 windows
        let a = try TokenLoader(windows: w, batch: 9, seed: 1), b = try TokenLoader(windows: w, batch: 9, seed: 1)
        let c = try TokenLoader(windows: w, batch: 9, seed: 2)
        defer { a.stop(); b.stop(); c.stop() }
        let first = starts(a, steps: 33)
        XCTAssertEqual(first, starts(b, steps: 33))
        XCTAssertNotEqual(first, starts(c, steps: 33))
        XCTAssertEqual(Set(first.joined()).count, 297, "one epoch (33 × 9 = 297) visits every window once")
        XCTAssertEqual(a.position, 297)
    }

    func testRanksReadDisjointWindows() throws {
        let w = windows(tokens: 6000, length: 12)
        for world in [2, 4] {
            let loaders = try (0..<world).map { try TokenLoader(windows: w, batch: 5, seed: 3, rank: $0, worldSize: world) }
            defer { loaders.forEach { $0.stop() } }
            let perRank = loaders.map { starts($0, steps: 6) }
            let all = perRank.flatMap { $0.joined() }
            XCTAssertEqual(Set(all).count, all.count, "world \(world): ranks overlap")
            // Together the ranks read exactly what one process with the whole global batch reads.
            let single = try TokenLoader(windows: w, batch: 5 * world, seed: 3)
            defer { single.stop() }
            let whole = starts(single, steps: 6)
            for step in 0..<6 { XCTAssertEqual(perRank.flatMap { $0[step] }, whole[step]) }
        }
    }

    func testResumingAtAPositionContinuesWithTheNextBatch() throws {
        let w = windows(tokens: 2000, length: 7)
        let straight = try TokenLoader(windows: w, batch: 4, seed: 9)
        defer { straight.stop() }
        let all = starts(straight, steps: 100)  // crosses epochs (285 windows)
        let resumed = try TokenLoader(windows: w, batch: 4, seed: 9, position: 40 * 4)
        let unprefetched = try TokenLoader(windows: w, batch: 4, seed: 9, position: 40 * 4, prefetch: 0)
        defer { resumed.stop(); unprefetched.stop() }
        XCTAssertEqual(starts(resumed, steps: 60), Array(all[40...]))
        XCTAssertEqual(starts(unprefetched, steps: 60), Array(all[40...]))
    }

    func testTooLittleDataIsAnError() {
        XCTAssertThrowsError(try TokenLoader(windows: windows(tokens: 30, length: 8), batch: 4, seed: 1)) {
            XCTAssertTrue("\($0)".contains("fewer than one batch"))
        }
    }
}

/// `data.document_masking`: a window's documents start after each end-of-text token, which stays in the document
/// it ends (and keeps its target); the loader hands the starts out with the batch.
final class DocumentMaskingWindowsTests: XCTestCase {
    func testDocumentsStartAfterEachEndOfText() throws {
        let end: Int32 = 99
        let tokens: [Int32] = [1, 2, end, 3, 4, 5, end, end, 6, 7, 8]
        let windows = TokenWindows(segments: [.memory(tokens)], length: 10, documentEnd: end)
        XCTAssertTrue(windows.packsDocuments)
        var inputs = [Int32](repeating: 0, count: 10), targets = inputs, documents = inputs
        windows.copy(window: 0, inputs: &inputs, targets: &targets, documents: &documents)
        XCTAssertEqual(documents, [0, 0, 0, 3, 3, 3, 3, 7, 8, 8])
        XCTAssertEqual(targets, [2, end, 3, 4, 5, end, end, 6, 7, 8], "targets are the corpus's, across documents too")
        let loader = try TokenLoader(windows: windows, batch: 1, seed: 1, prefetch: 2)
        defer { loader.stop() }
        var fetched = [Int32](repeating: -1, count: 10)
        loader.next(inputs: &inputs, targets: &targets, documents: &fetched)
        XCTAssertEqual(fetched, documents)
        XCTAssertFalse(TokenWindows(segments: [.memory(tokens)], length: 10).packsDocuments)
    }
}
