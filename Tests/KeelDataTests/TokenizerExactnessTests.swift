import Foundation
import KeelCore
@testable import KeelData
import XCTest

/// Keel's BPE against the implementations people already use: tiktoken's cl100k_base and Hugging Face
/// `tokenizers` loading a Keel-trained tokenizer.json.
final class TokenizerExactnessTests: XCTestCase {
    private var stressText: URL { DataFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/unicode_stress.txt") }

    private func keelIDs(_ vocabulary: BPEVocabulary, _ files: [URL], specialTokens: SpecialTokenPolicy = .ordinary) throws -> [[Int32]] {
        let encoder = BPEEncoder(vocabulary: vocabulary)
        return try files.map { file in
            var ids: [Int32] = []
            try Array(Data(contentsOf: file)).withUnsafeBufferPointer { try encoder.encode($0, specialTokens: specialTokens, into: &ids) }
            return ids
        }
    }

    private func assertSameIDs(_ keel: [[Int32]], _ reference: [[Int32]], _ files: [URL],
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(keel.count, reference.count, file: file, line: line)
        for (index, (a, b)) in zip(keel, reference).enumerated() where a != b {
            let first = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
            XCTFail("\(files[index].lastPathComponent): ids differ first at token \(first) (keel \(a.count) tokens, reference \(b.count))",
                    file: file, line: line)
        }
    }

    func testCl100kMatchesTiktokenOnShakespeareAndUnicodeStress() throws {
        let path = try DataFixtures.python([DataFixtures.reference, "tiktoken-path"])
        let vocabulary = try TokenizerFiles.load(path)
        XCTAssertEqual(vocabulary.pattern, .cl100k)
        XCTAssertEqual(vocabulary.endOfText, 100_257)
        let files = try DataFixtures.shakespeare() + [stressText]
        let out = try DataFixtures.temporaryDirectory(self).appendingPathComponent("ids.bin")
        try DataFixtures.python([DataFixtures.reference, "tiktoken", out.path] + files.map(\.path))
        assertSameIDs(try keelIDs(vocabulary, files), try DataFixtures.readIDLists(out), files)
    }

    func testTrainedTokenizerMatchesHuggingFaceTokenizers() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let training = Array(try DataFixtures.shakespeare().prefix(6))
        let vocabulary = try TokenizerTraining.train(inputs: training.map(\.path), vocabSize: 2000)
        XCTAssertEqual(vocabulary.size, 2000)
        XCTAssertEqual(vocabulary.endOfText, 1999)
        let json = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(vocabulary, to: json)
        // Files it was not trained on too, and the stress text with scripts it has never seen.
        let files = try DataFixtures.shakespeare().suffix(4) + [stressText]
        let out = directory.appendingPathComponent("ids.bin")
        try DataFixtures.python([DataFixtures.reference, "hf", json.path, out.path] + files.map(\.path))
        assertSameIDs(try keelIDs(vocabulary, Array(files)), try DataFixtures.readIDLists(out), Array(files))
        // And the file reads back into the same vocabulary.
        let reloaded = try TokenizerFiles.load(json.path)
        XCTAssertEqual(try keelIDs(reloaded, [stressText]), try keelIDs(vocabulary, [stressText]))
    }

    /// Llama 3's kind of tokenizer.json — its split regex, `ignore_merges` — and the cl100k one Keel writes (tiktoken's
    /// split, `\s+\z` for its `\s++$`) each encode as `tokenizers` encodes them, texts that end in a line break and
    /// spaces included, where the two splits part.
    func testLlama3AndCl100kTokenizerJSONMatchTokenizers() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let trained = try TokenizerTraining.train(inputs: try DataFixtures.shakespeare().prefix(4).map(\.path), vocabSize: 1500,
                                                  pattern: .llama3)
        let ending = directory.appendingPathComponent("ending.txt")
        try Data("Enter the KING\n    ".utf8).write(to: ending)
        let files = Array(try DataFixtures.shakespeare().suffix(2)) + [stressText, ending]
        // One more token, "\n " (after the end-of-text id), merged first: it forms only within a piece that holds a
        // line break and a space, as cl100k's last piece here does and Llama 3's do not.
        let tokens = (0..<trained.ordinaryCount).map { Array(trained.bytes(of: Int32($0))) } + [[], [10, 32]]
        let byte = { (value: UInt8) in Int32(tokens.firstIndex(of: [value])!) }
        let merges = [(left: byte(10), right: byte(32))] + trained.merges
        var endings: [SplitPattern: [Int32]] = [:]
        for (pattern, wholePieces) in [(SplitPattern.llama3, true), (.cl100k, false)] {
            let vocabulary = try BPEVocabulary(tokens: tokens, merges: merges, specialTokens: trained.specialTokens, pattern: pattern,
                                               emitsWholePieces: wholePieces)
            let json = directory.appendingPathComponent("\(pattern).json")
            try TokenizerFiles.writeHuggingFace(vocabulary, to: json)
            let reloaded = try TokenizerFiles.load(json.path)
            XCTAssertEqual(reloaded.pattern, pattern)
            XCTAssertEqual(reloaded.emitsWholePieces, wholePieces)
            let out = directory.appendingPathComponent("ids.bin")
            try DataFixtures.python([DataFixtures.reference, "hf", json.path, out.path] + files.map(\.path))
            let keel = try keelIDs(reloaded, files)
            assertSameIDs(keel, try DataFixtures.readIDLists(out), files)
            endings[pattern] = keel.last
        }
        XCTAssertNotEqual(endings[.llama3], endings[.cl100k], "the text's end splits otherwise in the two patterns")
        // Llama 3's own file names its regex so: it reads as llama3.
        let pre = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("llama3.json"))) as! [String: Any]
        let split = ((pre["pre_tokenizer"] as! [String: Any])["pretokenizers"] as! [[String: Any]])[0]
        XCTAssertEqual((split["pattern"] as! [String: String])["Regex"],
                       #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#)
    }

    /// SmolLM2's kind of tokenizer: numbers split into single digits before GPT-2's pattern (`Digits` +
    /// `ByteLevel`), and a vocabulary without tokens for a few bytes, which `tokenizers` (like llama.cpp) drops.
    func testDigitsTokenizerWithMissingBytesMatchesTokenizers() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let training = Array(try DataFixtures.shakespeare().prefix(3))
        let trained = try TokenizerTraining.train(inputs: training.map(\.path), vocabSize: 1500, pattern: .gpt2Digits)
        let json = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFiles.writeHuggingFace(trained, to: json)
        // Take out the tokens of bytes 0x04 and 0xFF (and any merge that names them), as SmolLM2's file lacks them.
        var root = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
        var model = root["model"] as! [String: Any]
        var vocab = model["vocab"] as! [String: Int]
        let missing = [TokenizerFiles.byteToCharacter[4], TokenizerFiles.byteToCharacter[255]].map { String($0) }
        for key in missing { XCTAssertNotNil(vocab.removeValue(forKey: key)) }
        model["vocab"] = vocab
        model["merges"] = (model["merges"] as! [String]).filter { merge in !missing.contains { merge.contains($0) } }
        root["model"] = model
        try JSONSerialization.data(withJSONObject: root).write(to: json)
        let vocabulary = try TokenizerFiles.load(json.path)
        XCTAssertEqual(vocabulary.pattern, .gpt2Digits)

        let numbers = directory.appendingPathComponent("numbers.txt")
        var text = "In 1599, 12,000 people paid 3½ pence; ٣٤ and ²³ are numbers too.\n"
        text += "control \u{04} bytes \u{04}\u{04} and ÿ survive? 2024-12-04T19:46:07Z  \t 42\n"
        try Data((text + String(repeating: text, count: 20)).utf8).write(to: numbers)
        let files = Array(try DataFixtures.shakespeare().suffix(2)) + [stressText, numbers]
        let out = directory.appendingPathComponent("ids.bin")
        try DataFixtures.python([DataFixtures.reference, "hf", json.path, out.path] + files.map(\.path))
        let keel = try keelIDs(vocabulary, files)
        assertSameIDs(keel, try DataFixtures.readIDLists(out), files)
        // The 0x04 bytes left no trace.
        XCTAssertFalse(try BPEEncoder(vocabulary: vocabulary).decode(keel.last!).contains(4))
    }

    /// Hugging Face's own GPT-2 tokenizer.json lists `<|endoftext|>` in model.vocab (its last id) as well as
    /// among the added tokens. Such a file, made by `tokenizers` itself, loads with that id as the
    /// end-of-text special token and encodes as `tokenizers` does, special-token text included.
    func testHuggingFaceGPT2LayoutMatchesTokenizers() throws {
        let directory = try DataFixtures.temporaryDirectory(self)
        let json = directory.appendingPathComponent("tokenizer.json")
        let shakespeare = try DataFixtures.shakespeare()
        try DataFixtures.python([DataFixtures.reference, "hf-gpt2-layout", json.path] + shakespeare.prefix(4).map(\.path))
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
        let vocab = (root["model"] as! [String: Any])["vocab"] as! [String: Int]
        XCTAssertEqual(vocab["<|endoftext|>"], 1000, "the reference must lay the file out as GPT-2's")
        XCTAssertEqual((root["added_tokens"] as! [[String: Any]]).map { $0["id"] as? Int }, [1000])

        let vocabulary = try TokenizerFiles.load(json.path)
        XCTAssertEqual(vocabulary.endOfText, 1000)
        XCTAssertEqual(vocabulary.size, 1001)
        XCTAssertEqual(try loadTokenizer(json.path).endOfText, 1000)
        // Documents joined by the special token's text, as corpora dumped with separators are.
        let joined = directory.appendingPathComponent("joined.txt")
        let documents = try shakespeare.suffix(2).map { try String(contentsOf: $0, encoding: .utf8) }
        try Data((documents.joined(separator: "<|endoftext|>") + "<|endoftext|>").utf8).write(to: joined)
        let files = Array(shakespeare.suffix(3)) + [stressText, joined]
        let out = directory.appendingPathComponent("ids.bin")
        try DataFixtures.python([DataFixtures.reference, "hf", json.path, out.path] + files.map(\.path))
        let keel = try keelIDs(vocabulary, files, specialTokens: .allowed)
        assertSameIDs(keel, try DataFixtures.readIDLists(out), files)
        XCTAssertEqual(keel.last!.filter { $0 == 1000 }.count, 2)
    }

    /// One `BPETokenizer` encoding on several threads at once (each call borrows an encoder of its own, kept for
    /// later calls): every text gets what a lone encoder gives it.
    func testOneTokenizerEncodesOnManyThreadsAtOnce() throws {
        let path = try DataFixtures.python([DataFixtures.reference, "tiktoken-path"])
        let vocabulary = try TokenizerFiles.load(path)
        let tokenizer = try BPETokenizer(vocabulary: vocabulary, origin: path)
        let files = Array(try DataFixtures.shakespeare().prefix(6)) + [stressText]
        let expected = try keelIDs(vocabulary, files)
        let texts = try files.map { Array(try Data(contentsOf: $0)) }
        let lock = NSLock()
        nonisolated(unsafe) var results: [Int: [Int32]] = [:]
        DispatchQueue.concurrentPerform(iterations: texts.count * 4) { i in
            let ids = texts[i % texts.count].withUnsafeBufferPointer { tokenizer.encode($0) }
            lock.withLock { results[i] = ids }
        }
        XCTAssertEqual(results.count, texts.count * 4)
        for (i, ids) in results where ids != expected[i % texts.count] {
            XCTFail("\(files[i % texts.count].lastPathComponent), call \(i): other ids than a lone encoder's")
        }
    }

    func testRoundTripIncludingInvalidUTF8() throws {
        let path = try DataFixtures.python([DataFixtures.reference, "tiktoken-path"])
        let encoder = BPEEncoder(vocabulary: try TokenizerFiles.load(path))
        var random = RandomStream(seed: 17)
        var samples: [[UInt8]] = [Array(try Data(contentsOf: stressText))]
        samples.append([0xFF, 0xFE, 0x80, 0x41, 0xC3, 0x28, 0xE2, 0x82, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 0x98])
        samples.append([UInt8](repeating: 0x20, count: 5000) + Array("x".utf8) + [UInt8](repeating: 0x39, count: 777))
        for _ in 0..<50 { samples.append((0..<300).map { _ in UInt8(random.nextInt(below: 256)) }) }
        for sample in samples {
            var ids: [Int32] = []
            sample.withUnsafeBufferPointer { encoder.encodeOrdinary($0, into: &ids) }
            XCTAssertEqual(try encoder.decode(ids), sample)
        }
    }

    func testSpecialTokensOnlyWhereAllowed() throws {
        let path = try DataFixtures.python([DataFixtures.reference, "tiktoken-path"])
        let encoder = BPEEncoder(vocabulary: try TokenizerFiles.load(path))
        let text = "hello<|endoftext|>world"
        XCTAssertEqual(try encoder.encode(text, specialTokens: .allowed), try encoder.encode("hello") + [100_257] + encoder.encode("world"))
        XCTAssertFalse(try encoder.encode(text, specialTokens: .ordinary).contains(100_257))
        XCTAssertThrowsError(try encoder.encode(text, specialTokens: .rejected)) {
            XCTAssertTrue("\($0)".contains("<|endoftext|>"))
        }
    }

    func testLongPiecesMergeLikeShortOnes() throws {
        // Pieces over the heap threshold take the O(n log n) path; splitting the same bytes into short
        // pieces must not be needed for agreement with tiktoken's own result on the whole text.
        let path = try DataFixtures.python([DataFixtures.reference, "tiktoken-path"])
        let vocabulary = try TokenizerFiles.load(path)
        let directory = try DataFixtures.temporaryDirectory(self)
        var texts: [URL] = []
        var random = RandomStream(seed: 3)
        for (i, alphabet) in [Array("ab"), Array("abcdefghij"), Array(" "), Array("é中")].enumerated() {
            let text = String((0..<3000).map { _ in alphabet[random.nextInt(below: alphabet.count)] })
            let url = directory.appendingPathComponent("long\(i).txt")
            try Data(text.utf8).write(to: url)
            texts.append(url)
        }
        let out = directory.appendingPathComponent("ids.bin")
        try DataFixtures.python([DataFixtures.reference, "tiktoken", out.path] + texts.map(\.path))
        assertSameIDs(try keelIDs(vocabulary, texts), try DataFixtures.readIDLists(out), texts)
    }

    /// A piece longer than `BPEEncoder.longestCachedPiece` bytes is merged each time, not cached: a server's prompts of
    /// long letter runs (DNA, base64, an adversary's) grew the cache by their bytes until its 32-bit offsets trapped.
    func testLongPiecesAreNotCached() throws {
        let vocabulary = try BPEVocabulary(tokens: (0..<256).map { [UInt8($0)] } + [[97, 98]], merges: [(left: 97, right: 98)],
                                           specialTokens: [:], pattern: .gpt2)
        let encoder = BPEEncoder(vocabulary: vocabulary)
        let long = String(repeating: "ab", count: 200)  // one piece of 400 letters
        XCTAssertEqual(try encoder.encode(long), [Int32](repeating: 256, count: 200))
        XCTAssertEqual(encoder.cachedPieces, 0)
        XCTAssertEqual(try encoder.encode(long), [Int32](repeating: 256, count: 200))
        XCTAssertEqual(try encoder.encode(" abab"), [32, 256, 256])
        XCTAssertEqual(encoder.cachedPieces, 1, "a short piece is cached")
    }

    /// The cache starts again once it holds `cacheByteLimit` bytes (32 MiB; 1 MiB here), not only 2¹⁸ pieces: 250-letter made-up
    /// words (a server's prompts) filled each pooled encoder's cache to over 300 MiB when only pieces were counted.
    /// What it returns stays the same.
    func testTheCacheIsBoundedByItsBytes() throws {
        let vocabulary = try BPEVocabulary(tokens: (0..<256).map { [UInt8($0)] } + [[97, 98]], merges: [(left: 97, right: 98)],
                                           specialTokens: [:], pattern: .gpt2)
        let encoder = BPEEncoder(vocabulary: vocabulary, cacheByteLimit: 1 << 20)
        var random = RandomStream(seed: 3)
        var largest = 0
        for _ in 0..<2_000 {
            let word = " " + String((0..<250).map { _ in Character(Unicode.Scalar(UInt8(99 + random.nextInt(below: 20)))) })
            XCTAssertEqual(try encoder.encode(word).count, 251)
            largest = max(largest, encoder.cachedBytes)
        }
        XCTAssertLessThan(encoder.cachedPieces, 2_000, "the cache started again")
        XCTAssertLessThanOrEqual(largest, (1 << 20) + 2_000)
        XCTAssertEqual(try encoder.encode(" abab"), [32, 256, 256])
    }

    /// Eight calls at once use eight encoders, and the pool keeps only as many as it may between calls.
    func testThePoolKeepsAtMostItsIdleEncoders() throws {
        let vocabulary = try BPEVocabulary(tokens: (0..<256).map { [UInt8($0)] } + [[97, 98]], merges: [(left: 97, right: 98)],
                                           specialTokens: [:], pattern: .gpt2)
        let pool = EncoderPool(vocabulary: vocabulary, keptIdle: 2)
        let inside = DispatchGroup(), release = DispatchSemaphore(value: 0), done = DispatchGroup()
        final class Seen: @unchecked Sendable { let lock = NSLock(); var encoders = Set<ObjectIdentifier>() }
        let seen = Seen()
        for _ in 0..<8 {
            inside.enter()
            done.enter()
            Thread.detachNewThread {
                pool.borrow { encoder in
                    seen.lock.withLock { _ = seen.encoders.insert(ObjectIdentifier(encoder)) }
                    inside.leave()
                    release.wait()  // every call holds its encoder before any returns
                }
                done.leave()
            }
        }
        inside.wait()
        for _ in 0..<8 { release.signal() }
        done.wait()
        XCTAssertEqual(seen.encoders.count, 8)
        XCTAssertEqual(pool.idleCount, 2)
    }

}
