import Foundation
import KeelCore
import KeelWeb
import XCTest

/// Deduplication agrees with datatrove and NumPy (literals below were printed by datatrove 0.10.0, spaCy 3.8.18 and
/// NumPy's RandomState), keeps the first document of every cluster, and behaves the same when its keys spill to disk.
final class DeduplicationTests: XCTestCase {
    // MARK: agreement with the reference tools

    func testSimplifiedTextMatchesDatatrove() {
        // (input, datatrove.utils.text.simplify_text(input))
        let cases: [(String, String)] = [
            ("Hello, World!", "hello world"),
            ("Price: $1,234.56 or 3.14.15 and \u{663}\u{664}\u{665} and \u{FF11}\u{FF12}\u{FF13} units", "price 0 0 or 0 0 and 0 and 0 units"),
            ("  tabs\u{9}and\u{A}newlines\u{A0}nbsp\u{2003}em  ", "tabs and newlines nbsp em"),
            ("Caf\u{E9} na\u{EF}ve r\u{E9}sum\u{E9} \u{C5}ngstr\u{F6}m", "cafe naive resume angstrom"),
            ("\u{130}stanbul \u{39F}\u{394}\u{39F}\u{3A3} \u{39F}\u{394}\u{39F}\u{3A3}. \u{3A3}\u{391}\u{3A3}",
             "istanbul \u{3BF}\u{3B4}\u{3BF}\u{3C2} \u{3BF}\u{3B4}\u{3BF}\u{3C2} \u{3C3}\u{3B1}\u{3C2}"),
            ("a \u{301} b", "a  b"),
            ("\u{FEFF}\u{A}BOM text", "\u{FEFF} bom text"),
            ("don't \u{AB}quote\u{BB} \u{201C}smart\u{201D} \u{2018}single\u{2019} \u{2014} dash\u{2026} ellipsis",
             "don t quote smart \u{2018}single dash ellipsis"),
            ("Stra\u{DF}e 5km 10\u{B0}C \u{A3}20 \u{A9}2024 \u{1F600} emoji", "stra\u{DF}e 0km 0\u{B0}c \u{A3}0 \u{A9}0 \u{1F600} emoji"),
            ("\u{FB01}ne ligature \u{BD} \u{B2} \u{216B}", "\u{FB01}ne ligature \u{BD} \u{B2} \u{217B}"),
            ("\u{65E5}\u{672C}\u{8A9E}\u{306E}\u{30C6}\u{30AD}\u{30B9}\u{30C8}\u{3001}\u{53E5}\u{8AAD}\u{70B9}\u{3002}",
             "\u{65E5}\u{672C}\u{8A9E}\u{306E}\u{30C6}\u{30AD}\u{30B9}\u{30C8} \u{53E5}\u{8AAD}\u{70B9}"),
            ("x\u{300}", "x"),
            ("x \u{301}", "x"),
            ("\u{301}start and end\u{301} ", "start and end"),
        ]
        for (input, expected) in cases {
            // Compared scalar by scalar: String's == would call canonically equivalent strings equal.
            XCTAssertEqual(simplifiedText(input).unicodeScalars.map(\.value), expected.unicodeScalars.map(\.value), input)
        }
    }

    func testMersenneTwisterAndRandintMatchNumPy() {
        // np.random.RandomState(s).randint(0, 2**32, size=n, dtype=np.uint64): the raw 32-bit outputs.
        var one = NumpyRandomState(seed: 1)
        XCTAssertEqual((0..<4).map { _ in one.nextUInt32() }, [1_791_095_845, 4_282_876_139, 3_093_770_124, 4_005_303_368])
        var other = NumpyRandomState(seed: 12345)
        XCTAssertEqual((0..<2).map { _ in other.nextUInt32() }, [3_992_670_690, 3_823_185_381])
        // datatrove's permutations: RandomState(1).randint(1, 2**61 - 1, size=112), then randint(0, 2**61 - 1, size=112).
        let hasher = MinHasher()
        XCTAssertEqual(Array(hasher.a.prefix(3)), [775_169_054_918_279_404, 1_758_426_461_858_698_313, 2_109_959_069_025_162])
        XCTAssertEqual(hasher.a.last, 223_865_076_026_037_746)
        XCTAssertEqual(Array(hasher.b.prefix(3)), [1_062_448_801_025_099_917, 1_324_811_268_927_594_100, 1_217_488_311_597_731_462])
        XCTAssertEqual(hasher.b.last, 1_097_409_548_522_419_201)
        var seven = NumpyRandomState(seed: 7)
        XCTAssertEqual(seven.randintUInt64(low: 1, high: (1 << 61) - 1, count: 2), [1_407_639_518_939_636_933, 551_904_368_352_831_991])
    }

    private let sample = "I dont know why you cannot say it, gonna say 5km, Don't you?"

    func testWordsMatchSpacyOnSimplifiedText() {
        var hasher = MinHasher()
        // spacy.blank("en") on simplify_text(sample), as datatrove's MinhashDedupSignature splits it.
        XCTAssertEqual(hasher.words(of: sample), ["i", "do", "nt", "know", "why", "you", "can", "not", "say", "it", "gon", "na",
                                                  "say", "0", "km", "don", "t", "you"])
        XCTAssertEqual(hasher.words(of: "\u{A3}dont \u{2018}s x\u{2018}s \u{A9}abc\u{A9}def 0kg\u{B2}"),
                       ["\u{A3}", "do", "nt", "\u{2018}s", "x\u{2018}s", "\u{A9}", "abc", "\u{A9}", "def", "0kg\u{B2}"])
        // "‘" is a prefix, so spaCy splits "‘s©abc" into ‘ s © abc, then its special-case pass rejoins "‘s".
        XCTAssertEqual(hasher.words(of: "\u{2018}s\u{A9}abc x \u{2018}s\u{A9}"), ["\u{2018}s", "\u{A9}", "abc", "x", "\u{2018}s", "\u{A9}"])
    }

    func testShinglesAndSignatureMatchDatatrove() throws {
        var hasher = MinHasher()
        // MinhashDedupSignature().get_shingles(sample) and get_signature(...)[0] and [13].
        XCTAssertEqual(hasher.shingleHashes(of: sample), [
            18_347_353_956_080_520_757, 7_920_486_699_194_605_903, 2_986_732_330_190_286_954, 8_204_438_167_791_797_989,
            15_923_786_823_522_614_771, 1_190_325_027_926_018_212, 4_833_686_141_771_253_839, 10_341_028_666_099_913_239,
            1_323_191_083_010_813_827, 16_804_698_235_688_323_849, 1_871_934_713_030_024_731, 4_910_269_150_063_585_056,
            3_728_184_387_451_204_429, 1_884_804_719_842_419_539,
        ])
        let signature = try XCTUnwrap(hasher.signature(of: sample))
        XCTAssertEqual(signature.count, 112)
        XCTAssertEqual(Array(signature[0..<8]), [
            148_536_404_317_320_646, 51_643_439_399_237_638, 214_378_699_605_254_899, 36_524_414_746_901_884,
            70_952_289_815_075_873, 16_543_857_377_169_686, 265_172_446_724_344_604, 38_686_554_778_762_572,
        ])
        XCTAssertEqual(Array(signature[104..<112]), [
            12_574_077_774_055_889, 597_116_289_377_668_056, 340_305_459_324_149_306, 682_638_104_776_950_936,
            61_880_691_580_439_338, 255_118_795_109_640_276, 47_357_387_969_052_933, 33_525_055_786_779_007,
        ])
        // datasketch's MinHash(scheme="legacy", hashfunc=xxh64, permutations=datatrove's): values masked to 32 bits.
        var parameters = MinHashParameters()
        parameters.hashBits = 32
        var hasher32 = MinHasher(parameters)
        XCTAssertEqual(Array(try XCTUnwrap(hasher32.signature(of: sample))[0..<8]),
                       [33_495_569, 911_210_949, 136_893_425, 160_526_047, 189_200_472, 471_342_112, 163_026_285, 539_102_892])
    }

    /// Settings the deduplication cannot run with are named before any document is read.
    func testBadSettingsAreNamed() {
        XCTAssertNil(DeduplicationOptions.problem(shingle: 5, bands: 14, rows: 8, memoryMegabytes: 1024))
        XCTAssertEqual(DeduplicationOptions.problem(shingle: 5, bands: 0, rows: 8, memoryMegabytes: 1024),
                       "shingle, bands and rows must be positive (got 5, 0, 8)")
        XCTAssertEqual(DeduplicationOptions.problem(shingle: 5, bands: 14, rows: 1025, memoryMegabytes: 1024),
                       "bands and rows must be at most 1024 (got 14, 1025)")
        XCTAssertEqual(DeduplicationOptions.problem(shingle: 5, bands: 14, rows: 8, memoryMegabytes: 1 << 31),
                       "memory must be 1 to 1073741824 MB (got 2147483648)")
        // More than the machine holds (its buffers were allocated, and the run ended in a failed allocation).
        let problem = DeduplicationOptions.problem(shingle: 5, bands: 14, rows: 8, memoryMegabytes: 1 << 30) ?? ""
        XCTAssertTrue(problem.hasPrefix("memory of 1073741824 MB is more than ") && problem.contains("can hold ("), problem)
    }

    func testShingleHashIsXXH64OfTheWordsJoinedBySpaces() {
        var hasher = MinHasher()
        // Words of every length, so that shingles are hashed both in place and joined, under and over 32 bytes.
        let text = (1...40).map { String(repeating: Character(UnicodeScalar(UInt8(97 + $0 % 26))), count: $0 % 13 + 1) }
            .joined(separator: " ") + " dont stop cannot"
        let words = hasher.words(of: text)
        let expected = (0...(words.count - 5)).map { XXH64.hash(Array(words[$0..<$0 + 5].joined(separator: " ").utf8)) }
        XCTAssertEqual(hasher.shingleHashes(of: text), expected)
        XCTAssertNil(hasher.signature(of: "only four words here"), "fewer words than a shingle: no signature, as datatrove")
    }

    // MARK: clusters

    /// Distinct letter words ("kaaa", "kbaa", …: digits would all simplify to "0"), `range` of them.
    private func words(_ range: Range<Int>) -> [String] {
        range.map { i in "k" + (0..<3).map { String(UnicodeScalar(UInt8(97 + (i / [1, 26, 676][$0]) % 26))) }.joined() }
    }

    private func text(_ range: Range<Int>) -> String { words(range).joined(separator: " ") }

    private func deduplicate(_ texts: [String], options: DeduplicationOptions = DeduplicationOptions())
        throws -> (result: DeduplicationResult, pairs: [[Int]]) {
        let deduplicator = try Deduplicator(options: options)
        for text in texts { try deduplicator.add(text) }
        var pairs: [[Int]] = []
        let result = try deduplicator.finish { pairs.append([$0, $1]) }
        return (result, pairs)
    }

    func testExactDuplicatesKeepTheFirst() throws {
        let x = text(0..<30), y = text(100..<130)
        let texts = [x, y, "  " + x.replacingOccurrences(of: " ", with: "\n\t ") + " ", text(200..<230), y, x.uppercased()]
        for exactOnly in [true, false] {
            var options = DeduplicationOptions()
            options.exactOnly = exactOnly
            let (result, _) = try deduplicate(texts, options: options)
            XCTAssertEqual(result.representative, [0, 1, 0, 3, 1, exactOnly ? 5 : 0], "exact only: \(exactOnly)")
            XCTAssertEqual(result.exact, [false, false, true, false, true, false], "case counts for exact duplicates")
            XCTAssertEqual(result.exactDuplicates, 2)
            XCTAssertEqual(result.removed, exactOnly ? 2 : 3)
            XCTAssertEqual(result.nearDuplicateClusters, exactOnly ? 0 : 1, "the uppercased copy is a near duplicate")
        }
    }

    func testANearDuplicateClusterIsKeptOnce() throws {
        var edited = words(0..<100)
        edited[50] = "changed"
        let texts = [text(1000..<1100), text(0..<100), text(2000..<2100), edited.joined(separator: " ") + " and more"]
        let (result, pairs) = try deduplicate(texts)
        XCTAssertEqual(pairs, [[1, 3]])
        XCTAssertEqual(result.representative, [0, 1, 2, 1])
        XCTAssertEqual(result.exactDuplicates, 0)
        XCTAssertEqual(result.clusters, 1)
        XCTAssertEqual(result.nearDuplicateClusters, 1)
    }

    func testAChainOfNearDuplicatesIsOneCluster() throws {
        // A ~ B and B ~ C share buckets but A and C do not (found with datatrove's signatures: shift 8 of 100 words).
        let texts = [text(0..<100), text(8..<108), text(16..<116)]
        let (result, pairs) = try deduplicate(texts)
        XCTAssertEqual(pairs, [[0, 1], [1, 2]])
        XCTAssertEqual(result.representative, [0, 0, 0], "union-find closes the chain; the first document is kept")
        XCTAssertEqual(result.clusters, 1)
    }

    func testSpillingToDiskGivesTheSameResult() throws {
        var texts: [String] = []
        for i in 0..<40 {
            texts.append(text(i * 37..<i * 37 + 60))
            if i % 3 == 0 { texts.append(texts[texts.count - 1]) }
            if i % 4 == 0 { texts.append(text(i * 37 + 1..<i * 37 + 61)) }
        }
        let inMemory = try deduplicate(texts)
        XCTAssertEqual(inMemory.result.spilledRuns, 0)
        var options = DeduplicationOptions()
        options.memoryBudget = 4096  // a few documents' keys per run
        options.mergeFanIn = 2  // and merge passes over the runs
        let spilled = try deduplicate(texts, options: options)
        // 3 words of exact key and 14 × (8 + 1) of band keys per document, 8 bytes each, and 6 bytes of sorting: 3
        // documents' keys fit in 4,096 bytes. Each of the 15 sorters spills every 3 documents and its rest at the end
        // (r runs), and its merge passes, two runs at a time, write r − 2 more.
        XCTAssertEqual(try Deduplicator(options: options).documentsPerRun, 3)
        let runs = (texts.count + 2) / 3
        XCTAssertEqual(spilled.result.spilledRuns, 15 * (runs + runs - 2))
        XCTAssertEqual(spilled.result.representative, inMemory.result.representative)
        XCTAssertEqual(spilled.result.exact, inMemory.result.exact)
        XCTAssertEqual(spilled.pairs, inMemory.pairs)
        XCTAssertGreaterThan(inMemory.result.removed, 14)
    }

    // MARK: files

    /// A deduplication killed on this machine leaves its run directory; the next one removes it, and leaves those of
    /// processes still running and of other machines.
    func testRunsOfKilledDeduplicationsAreRemoved() throws {
        let dir = try temporaryDirectory()
        let finished = try endedProcessIdentifier()
        let host = AtomicFile.host
        let names = ["keel-dedup-\(finished)-7-\(host)", "keel-dedup-\(getpid())-7-\(host)",
                     "keel-dedup-\(finished)-7-elsewhere"]
        for name in names {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        var options = DeduplicationOptions()
        options.temporaryDirectory = dir
        _ = try Deduplicator(options: options)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)), Set(names.dropFirst()))
    }

    func testJSONLLinesPassThroughUnchanged() throws {
        let dir = try temporaryDirectory()
        let lines = [
            #"{"id": 1, "text": "\#(text(0..<20))", "meta": {"a": [1, 2]}}"#,
            #"{"text":"\#(text(0..<20))","id":2}"#,
            "",
            #"{"id": 3, "text": "\#(text(50..<70)) caf\u00e9"}"#,
        ]
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("in.jsonl"))
        let out = dir.appendingPathComponent("out.jsonl"), removed = dir.appendingPathComponent("removed.jsonl")
        let report = try JSONLDeduplication.run(inputs: [dir.appendingPathComponent("in.jsonl").path], output: out.path,
                                                removed: removed.path)
        XCTAssertEqual(report.documents, 3, "blank lines are not documents")
        XCTAssertEqual(report.exactDuplicates, 1)
        XCTAssertEqual(try String(contentsOf: out, encoding: .utf8), lines[0] + "\n" + lines[3] + "\n")
        XCTAssertEqual(try String(contentsOf: removed, encoding: .utf8), #"{"text":"\#(text(0..<20))","id":2,"duplicate_of":0}"# + "\n")
    }

    func testBadInputNamesTheFileAndLineAndWritesNothing() throws {
        let dir = try temporaryDirectory()
        let good = #"{"text": "fine"}"#
        // KeelData's DocumentSource reads the records, and its messages name the file and line.
        let cases: [(String, String)] = [
            ("{\"text\": \"unterminated", "line 2, column 10: unterminated string"),
            (#"{"title": "no text"}"#, #"line 2: the JSON object has no "text" field"#),
            (#"{"text": 42}"#, #"line 2: "text" is a number, not a string"#),
            (#"{"text": null}"#, #"line 2: "text" is null, not a string"#),
            (#"["text"]"#, "line 2, column 1: the line is not a JSON object"),
        ]
        let out = dir.appendingPathComponent("out.jsonl")
        for (bad, message) in cases {
            let input = dir.appendingPathComponent("bad.jsonl")
            try Data((good + "\n" + bad + "\n" + good + "\n").utf8).write(to: input)
            XCTAssertThrowsError(try JSONLDeduplication.run(inputs: [input.path], output: out.path)) { error in
                XCTAssertEqual((error as? KeelError)?.message, "data: \(input.path): \(message)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no partial output for \(bad)")
        }
        let missing = dir.appendingPathComponent("missing.jsonl").path
        XCTAssertThrowsError(try JSONLDeduplication.run(inputs: [missing], output: out.path)) { error in
            XCTAssertEqual((error as? KeelError)?.message, "data: cannot read \(missing): No such file or directory")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["bad.jsonl"],
                       "no output and no temporary file left behind")
    }
}
