import Foundation
import KeelCore
import KeelData
import XCTest

/// The hand-written pre-tokenizer on hand-checked examples, and against Tests/Reference/pretokenize_reference.py
/// (tiktoken's own split patterns, run by Python's `regex` module) on the Unicode stress text, Shakespeare, and
/// seeded fuzz text, valid and invalid UTF-8.
final class PreTokenizerTests: XCTestCase {
    // MARK: Hand-checked examples

    func testGPT2Examples() {
        let examples: [(String, [String])] = [
            ("Hello world", ["Hello", " world"]),
            // Contractions are lower-case only; an apostrophe that starts none joins the symbols.
            ("it's IT'S we'll WE'LL x'ſx", ["it", "'s", " IT", "'", "S", " we", "'ll", " WE", "'", "LL", " x", "'", "ſx"]),
            ("'ll 'LL ''s", ["'ll", " '", "LL", " ''", "s"]),
            // `\s+(?!\S)` leaves the last whitespace of a run to the word after it.
            ("  hello", [" ", " hello"]),
            ("a  \n\nb", ["a", "  \n", "\n", "b"]),
            ("\n\n  x", ["\n\n ", " x"]),
            ("x.\n\ny", ["x", ".", "\n", "\n", "y"]),
            (" !!\r\n\r\nz", [" !!", "\r\n\r", "\n", "z"]),
            // `\s++$` takes trailing whitespace whole.
            ("end   ", ["end", "   "]),
            ("end\n\n", ["end", "\n\n"]),
            (" 1234567 x1 ½", [" 1234567", " x", "1", " ½"]),
            // Only U+0020 joins a following word; other whitespace stands alone.
            ("\tfoo \u{A0}bar", ["\t", "foo", " ", "\u{A0}", "bar"]),
            ("foo!!! ?? \"quoted\"", ["foo", "!!!", " ??", " \"", "quoted", "\""]),
            // A combining mark (Mn) is not a letter.
            ("a\u{301}b", ["a", "\u{301}", "b"]),
            // U+001C is no White_Space, although Python's str.isspace() says it is.
            ("x \u{1C}y", ["x", " \u{1C}", "y"]),
            // Letters new in Unicode 17.0 are unassigned to tiktoken 0.14, so symbols.
            ("a\u{A7CE}b \u{1E6C0}", ["a", "\u{A7CE}", "b", " \u{1E6C0}"]),
        ]
        for (text, expected) in examples {
            XCTAssertEqual(pieceStrings(text, .gpt2), expected, "gpt2 \(text.debugDescription)")
        }
    }

    func testCL100kExamples() {
        let examples: [(String, [String])] = [
            ("Hello world", ["Hello", " world"]),
            // Contractions in any case, and U+017F LONG S, which case-folds to "s".
            ("it's IT'S we'll WE'LL x'ſx", ["it", "'s", " IT", "'S", " we", "'ll", " WE", "'LL", " x", "'ſ", "x"]),
            ("'ll 'LL ''s", ["'ll", " '", "LL", " ''", "s"]),
            ("  hello", [" ", " hello"]),
            // `\s*[\r\n]` ends a whitespace run at its last line break.
            ("a  \n\nb", ["a", "  \n\n", "b"]),
            ("\n\n  x", ["\n\n", " ", " x"]),
            ("a\r\n\r\n b", ["a", "\r\n\r\n", " b"]),
            // Symbols take the line breaks after them.
            ("x.\n\ny", ["x", ".\n\n", "y"]),
            (" !!\r\n\r\nz", [" !!\r\n\r\n", "z"]),
            ("end   ", ["end", "   "]),
            ("end\n\n", ["end", "\n\n"]),
            // Numbers come in threes and never take a space.
            (" 1234567 x1 ½", [" ", "123", "456", "7", " x", "1", " ", "½"]),
            // Any one character but a line break, letter or number may lead a word.
            ("\tfoo \u{A0}bar", ["\tfoo", " ", "\u{A0}bar"]),
            ("foo!!! ?? \"quoted\"", ["foo", "!!!", " ??", " \"", "quoted", "\""]),
            ("a\u{301}b", ["a", "\u{301}b"]),
            ("a \u{3000}b", ["a", " ", "\u{3000}b"]),
            ("x \u{1C}y", ["x", " \u{1C}", "y"]),
            ("a\u{A7CE}b 1\u{11DE0}", ["a", "\u{A7CE}b", " ", "1", "\u{11DE0}"]),
        ]
        for (text, expected) in examples {
            XCTAssertEqual(pieceStrings(text, .cl100k), expected, "cl100k \(text.debugDescription)")
        }
    }

    /// Llama 3's split is cl100k's but where whitespace after a line break ends the text.
    func testLlama3Examples() {
        let examples: [(String, [String], [String])] = [
            ("a\n  ", ["a", "\n", "  "], ["a", "\n  "]),
            ("x \n\t\n ", ["x", " \n\t\n", " "], ["x", " \n\t\n "]),
            ("end   ", ["end", "   "], ["end", "   "]),
            ("end\n\n", ["end", "\n\n"], ["end", "\n\n"]),
            ("a\n  b", ["a", "\n", " ", " b"], ["a", "\n", " ", " b"]),
        ]
        for (text, llama3, cl100k) in examples {
            XCTAssertEqual(pieceStrings(text, .llama3), llama3, "llama3 \(text.debugDescription)")
            XCTAssertEqual(pieceStrings(text, .cl100k), cl100k, "cl100k \(text.debugDescription)")
        }
    }

    /// Every number character alone, and GPT-2's pattern on the text between: a space before a number stays
    /// behind (GPT-2 would join it), and whitespace before a number is a segment's trailing whitespace, whole.
    func testGPT2DigitsExamples() {
        let examples: [(String, [String])] = [
            ("Hello world", ["Hello", " world"]),
            ("a 12 x3y  4\n", ["a", " ", "1", "2", " x", "3", "y", "  ", "4", "\n"]),
            ("in 1999, ½ of ٣٤", ["in", " ", "1", "9", "9", "9", ",", " ", "½", " of", " ", "٣", "٤"]),
            ("it's 3's", ["it", "'s", " ", "3", "'s"]),
            ("x   \n7", ["x", "   \n", "7"]),
        ]
        for (text, expected) in examples {
            XCTAssertEqual(pieceStrings(text, .gpt2Digits), expected, "gpt2-digits \(text.debugDescription)")
        }
    }

    func testEmptyTextHasNoPieces() {
        for pattern in SplitPattern.allCases {
            XCTAssertTrue(pieces([], pattern).isEmpty, "\(pattern)")
        }
    }

    /// Each byte outside well-formed UTF-8 is a character of its own that is neither letter, number nor
    /// whitespace: it runs together with symbols, and in cl100k it may lead a word like any symbol.
    func testInvalidUTF8Examples() {
        let examples: [(bytes: [UInt8], gpt2: [[UInt8]], cl100k: [[UInt8]])] = [
            // A stray continuation byte.
            ([0x61, 0x80, 0x62], [[0x61], [0x80], [0x62]], [[0x61], [0x80, 0x62]]),
            // A three-byte sequence cut short, then a space and a word.
            ([0xE2, 0x82, 0x20, 0x41], [[0xE2, 0x82], [0x20, 0x41]], [[0xE2, 0x82], [0x20, 0x41]]),
            // An overlong "/", an encoded surrogate, 0xFF: six invalid bytes, one run.
            ([0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xFF], [[0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xFF]],
             [[0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xFF]]),
            // A lone lead byte, then "é", which still decodes as a letter and which the byte leads in cl100k.
            ([0xE2, 0xC3, 0xA9, 0x0A], [[0xE2], [0xC3, 0xA9], [0x0A]], [[0xE2, 0xC3, 0xA9], [0x0A]]),
            // A four-byte sequence cut short by the end of the text.
            ([0x61, 0x20, 0xF0, 0x9F, 0x98], [[0x61], [0x20, 0xF0, 0x9F, 0x98]], [[0x61], [0x20, 0xF0, 0x9F, 0x98]]),
        ]
        for example in examples {
            let hex = example.bytes.map { String($0, radix: 16) }.joined(separator: " ")
            XCTAssertEqual(pieces(example.bytes, .gpt2).map { Array(example.bytes[$0]) }, example.gpt2, "gpt2 \(hex)")
            XCTAssertEqual(pieces(example.bytes, .cl100k).map { Array(example.bytes[$0]) }, example.cl100k, "cl100k \(hex)")
        }
    }

    /// Every one- and two-byte text, and random bytes: the pieces tile the text and nothing traps.
    func testAnyBytesAreCovered() {
        var texts: [[UInt8]] = (0...255).map { [UInt8($0)] }
        for first in 0...255 {
            for second in 0...255 { texts.append([UInt8(first), UInt8(second)]) }
        }
        var random = RandomStream(seed: 17)
        for _ in 0..<2000 {
            texts.append((0..<random.nextInt(below: 40)).map { _ in UInt8(random.nextInt(below: 256)) })
        }
        for pattern in SplitPattern.allCases {
            for text in texts { assertTiles(pieces(text, pattern), text.count, "\(pattern) \(text)") }
        }
    }

    /// A text that ends inside a multi-byte sequence is split as if nothing followed it, whatever the memory
    /// after the buffer holds.
    func testSplitStopsAtTheEndOfTheBuffer() {
        let whole = Array("ab \u{20AC}\u{1F600}\u{E9}".utf8)
        for pattern in SplitPattern.allCases {
            for count in 0...whole.count {
                let alone = pieces(Array(whole[..<count]), pattern)
                let inside = whole.withUnsafeBufferPointer { buffer in
                    var ranges: [Range<Int>] = []
                    let prefix = UnsafeBufferPointer(rebasing: buffer[..<count])
                    PreTokenizer(pattern: pattern).split(prefix) { ranges.append($0) }
                    return ranges
                }
                XCTAssertEqual(inside, alone, "\(pattern) first \(count) bytes")
            }
        }
    }

    // MARK: Against the Python reference

    func testUnicodeStressTextMatchesReference() throws {
        let url = Self.repositoryRoot.appendingPathComponent("Tests/Reference/unicode_stress.txt")
        try assertMatchesReference([try [UInt8](Data(contentsOf: url))], "unicode_stress.txt")
    }

    func testCorpusMatchesReference() throws {
        let directory = Self.repositoryRoot.appendingPathComponent("data/shakespeare")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasSuffix(".txt") }.sorted()
        if names.isEmpty {
            print("PreTokenizerTests: data/shakespeare is absent; comparing a generated prose corpus instead")
            try assertMatchesReference([Self.generatedProse(seed: 5, words: 60000)], "generated prose")
            return
        }
        // Three files spread over the sorted list (with the full corpus: two folio spellings, one modern).
        for name in [names[0], names[names.count / 2], names[names.count - 1]] {
            try assertMatchesReference([try [UInt8](Data(contentsOf: directory.appendingPathComponent(name)))], name)
        }
    }

    func testFuzzMatchesReference() throws {
        var random = RandomStream(seed: 1)
        let texts = (0..<4000).map { _ in Self.fuzzText(&random, invalidBytes: false) }
        try assertMatchesReference(texts, "fuzz")
    }

    func testInvalidUTF8FuzzMatchesReference() throws {
        var random = RandomStream(seed: 2)
        var texts = (0..<2000).map { _ in Self.fuzzText(&random, invalidBytes: true) }
        texts += (0..<500).map { _ in (0..<random.nextInt(below: 30)).map { _ in UInt8(random.nextInt(below: 256)) } }
        try assertMatchesReference(texts, "invalid UTF-8 fuzz")
    }

    // MARK: Helpers

    private static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    private func pieces(_ text: [UInt8], _ pattern: SplitPattern) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        text.withUnsafeBufferPointer { PreTokenizer(pattern: pattern).split($0) { ranges.append($0) } }
        return ranges
    }

    private func pieceStrings(_ text: String, _ pattern: SplitPattern) -> [String] {
        let bytes = Array(text.utf8)
        return pieces(bytes, pattern).map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    /// Asserts that `ranges` are non-empty and follow each other from 0 to `count`.
    private func assertTiles(_ ranges: [Range<Int>], _ count: Int, _ label: @autoclosure () -> String,
                             file: StaticString = #filePath, line: UInt = #line) {
        var position = 0
        for range in ranges {
            guard range.lowerBound == position, !range.isEmpty else {
                XCTFail("\(label()): piece \(range) after \(position)", file: file, line: line)
                return
            }
            position = range.upperBound
        }
        XCTAssertEqual(position, count, "\(label()): pieces end early", file: file, line: line)
    }

    /// Splits each of `texts` with both patterns, here and in the reference, and asserts the pieces agree.
    private func assertMatchesReference(_ texts: [[UInt8]], _ label: String,
                                        file: StaticString = #filePath, line: UInt = #line) throws {
        for pattern in SplitPattern.allCases {
            let expected = try referencePieces(texts, pattern)
            XCTAssertEqual(expected.count, texts.count, "\(label) \(pattern): reference answered for other texts",
                           file: file, line: line)
            var mismatches = 0
            for (index, (text, reference)) in zip(texts, expected).enumerated() {
                let ranges = pieces(text, pattern)
                assertTiles(ranges, text.count, "\(label) \(pattern) text \(index)", file: file, line: line)
                guard ranges != reference else { continue }
                mismatches += 1
                if mismatches <= 3 {
                    let at = zip(ranges, reference).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                        ?? min(ranges.count, reference.count)
                    func show(_ list: [Range<Int>]) -> String {
                        list[max(0, at - 2)..<min(list.count, at + 3)]
                            .map { String(decoding: text[$0], as: UTF8.self).debugDescription }.joined(separator: " ")
                    }
                    XCTFail("\(label) \(pattern) text \(index), piece \(at): "
                                + "Swift \(show(ranges)), reference \(show(reference))", file: file, line: line)
                }
            }
            XCTAssertEqual(mismatches, 0, "\(label) \(pattern): texts that split differently", file: file, line: line)
        }
    }

    /// The reference's pieces of each of `texts`, which it reads from one file cut at the given lengths.
    private func referencePieces(_ texts: [[UInt8]], _ pattern: SplitPattern) throws -> [[Range<Int>]] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-pretokenize-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let textURL = directory.appendingPathComponent("texts.bin")
        let lengthsURL = directory.appendingPathComponent("lengths.txt")
        try Data(texts.joined()).write(to: textURL)
        try Data(texts.map { String($0.count) }.joined(separator: " ").utf8).write(to: lengthsURL)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let script = Self.repositoryRoot.appendingPathComponent("Tests/Reference/pretokenize_reference.py").path
        process.arguments = ["python3", script, pattern.rawValue, textURL.path, "--lengths", lengthsURL.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let json = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ReferenceFailure(message: "pretokenize_reference.py \(pattern) exited with \(process.terminationStatus)")
        }
        let lists = try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [[[Int]]])
        return lists.map { list in list.map { $0[0]..<$0[1] } }
    }

    private struct ReferenceFailure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// Fragments for fuzz text, by weight: what the patterns treat differently, with contraction letters and
    /// apostrophes, spaces and line breaks over-represented so that their interplay comes up often.
    private static let fragments: [(weight: Int, choices: [String])] = [
        (10, "abcdefghijklmnopqrstuvwxyz".map(String.init)), (4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ".map(String.init)),
        (6, "sdmtlvreSDMTLVRE".map(String.init)), (8, ["'"]), (12, [" "]), (3, ["  ", "   "]),
        (4, ["\n"]), (2, ["\r"]), (2, ["\r\n"]), (2, ["\t"]),
        (1, ["\u{B}", "\u{C}", "\u{85}", "\u{A0}", "\u{2003}", "\u{3000}", "\u{2028}", "\u{1C}", "\u{1F}", "\u{200B}",
             "\u{200D}", "\u{FEFF}"]),
        (5, "0123456789".map(String.init)), (2, "٠١٢٣٤５６²³½Ⅰⅻ①𝟏१".map(String.init)),
        (5, ".,;:!?-_()[]{}<>\"/\\@#$%^&*+=|~`".map(String.init)), (2, "€©™…—–“”‘’•→∞".map(String.init)),
        (4, "éüñçøßÆœαβγΩЖжЯשלוםمرحبا".map(String.init)), (3, "中文日本語ひらがなカタ한국어กขค".map(String.init)),
        (1, ["ſ", "ﬁ", "ǅ", "ʰ", "ª", "々", "\u{A7CE}", "\u{11DE0}", "\u{323B0}"]),
        (2, ["\u{301}", "\u{308}", "\u{20E3}", "\u{FE0F}", "\u{338}"]),
        (2, ["😀", "👍🏽", "👨‍👩‍👧", "🇺🇸", "🫠", "❤️"]),
    ]

    /// Byte sequences that are not UTF-8: stray continuations, overlong forms, encoded surrogates, values past
    /// U+10FFFF, truncated sequences and bytes that never occur.
    private static let invalidFragments: [[UInt8]] = [
        [0x80], [0xBF], [0xC0], [0xC1, 0xBF], [0xC3], [0xE2, 0x82], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80],
        [0xED, 0xBF, 0xBF], [0xF0, 0x9F, 0x98], [0xF0, 0x80, 0x80, 0xAF], [0xF4, 0x90, 0x80, 0x80],
        [0xF5, 0x80, 0x80, 0x80], [0xFE], [0xFF], [0xC0, 0x80],
    ]

    /// Up to 60 random fragments; with `invalidBytes`, about one in twelve is an invalid sequence.
    private static func fuzzText(_ random: inout RandomStream, invalidBytes: Bool) -> [UInt8] {
        let totalWeight = fragments.reduce(0) { $0 + $1.weight }
        var text: [UInt8] = []
        for _ in 0..<random.nextInt(below: 61) {
            if invalidBytes && random.nextInt(below: 12) == 0 {
                text += invalidFragments[random.nextInt(below: invalidFragments.count)]
                continue
            }
            var pick = random.nextInt(below: totalWeight), group = 0
            while pick >= fragments[group].weight {
                pick -= fragments[group].weight
                group += 1
            }
            let choices = fragments[group].choices
            text += Array(choices[random.nextInt(below: choices.count)].utf8)
        }
        return text
    }

    /// English-like text (words, numbers, punctuation, line breaks and indentation) for when the corpus is absent.
    private static func generatedProse(seed: UInt64, words: Int) -> [UInt8] {
        var random = RandomStream(seed: seed)
        let vocabulary = ["the", "and", "I", "you", "my", "lord", "is", "it's", "thou'lt", "we'll", "O", "what", "Enter",
                          "KING", "HENRY", "'tis", "sweet", "love", "1623", "42", "Act", "II", "Scene", "--"]
        let separators = [" ", " ", " ", " ", ", ", ". ", "; ", "! ", "? ", ".\n", "\n\n", ":\n  ", "  ", "\n\t", "\r\n"]
        var text: [UInt8] = []
        for _ in 0..<words {
            text += Array(vocabulary[random.nextInt(below: vocabulary.count)].utf8)
            text += Array(separators[random.nextInt(below: separators.count)].utf8)
        }
        return text
    }
}

