import Foundation
import KeelCore
import KeelData
import XCTest

/// DocumentSource against fixtures written to a temporary directory; compressed fixtures come from the
/// `gzip` and `zstd` command-line tools and the reference decoding from Python's `json` module.
final class DocumentSourceTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-docs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    // MARK: Plain files

    func testTextFileIsOneDocumentWithBytesPassedThrough() throws {
        // Invalid UTF-8 (a lone continuation byte, a truncated sequence) reaches the tokenizer unchanged.
        let bytes: [UInt8] = Array("first line\nsecond line\n".utf8) + [0x80, 0xE2, 0x82, 0x0A] + Array("é".utf8)
        let url = try write("notes.txt", bytes)
        XCTAssertEqual(try documents(url), [bytes])
        XCTAssertEqual(try documents(write("README", bytes)), [bytes], "an unknown extension is text")
    }

    func testEmptyFilesHaveNoDocuments() throws {
        XCTAssertEqual(try documents(write("empty.txt", [])), [])
        XCTAssertEqual(try documents(write("empty.jsonl", [])), [])
        XCTAssertEqual(try documents(write("blank.jsonl", "\n  \n\t\r\n")), [])
    }

    func testJSONLEscapesUnicodeAndSurrogatePairs() throws {
        let lines = [
            #"{"text": "plain"}"#,
            #"{"id": 7, "text": "tab\there\nnew \"quoted\" back\\slash \/ \b\f\r"}"#,
            #"{"text": "\u00e9\u00E9 \u6771\u4eac \ud83d\ude00 \uD83D\uDE00 raw é 東京 😀"}"#,
            #"{"text": "lone \ud800 high, lone \udc00 low, reversed \udc00\ud800, \ud800\u0041"}"#,
            #"{"t\u0065xt": "escaped key", "meta": {"text": 1, "list": [1, -2.5e+3, true, false, null, "s", {}, []]}}"#,
            #"{"text": 1, "text": "the last duplicate wins"}"#,
            #"{"text": ""}"#,
            "",
            "   ",
            "{ \"text\" : \"spaces and CRLF\" , \"n\" : NaN, \"i\": -Infinity }\r",
            #"{"a": {"b": [[[{"c": "\"}]"}]]]}, "text": "after nesting"}"#,
            #"{"text": "no final newline"}"#,
        ]
        let url = try write("escapes.jsonl", lines.joined(separator: "\n"))
        let expected = [
            "plain",
            "tab\there\nnew \"quoted\" back\\slash / \u{8}\u{c}\r",
            "éé 東京 😀 😀 raw é 東京 😀",
            "lone \u{FFFD} high, lone \u{FFFD} low, reversed \u{FFFD}\u{FFFD}, \u{FFFD}A",
            "escaped key",
            "the last duplicate wins",
            "spaces and CRLF",
            "after nesting",
            "no final newline",
        ]
        XCTAssertEqual(try documents(url), expected.map { Array($0.utf8) })
    }

    func testJSONLPassesInvalidUTF8AndSkipsByteOrderMark() throws {
        let line: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(#"{"text": "bad "#.utf8) + [0xFF, 0xC3] + Array("\"}\n".utf8)
        XCTAssertEqual(try documents(write("bytes.jsonl", line)), [Array("bad ".utf8) + [0xFF, 0xC3]])
    }

    // MARK: JSONL errors

    func testMissingTextNamesFileAndLine() throws {
        let url = try write("missing.jsonl", "{\"text\": \"ok\"}\n\n{\"content\": \"no text here\"}\n")
        try assertError(url, contains: ["line 3", "no \"text\" field"])
    }

    func testNonObjectAndMalformedLinesNameFileAndLine() throws {
        let cases = [
            ("[\"text\", \"an array\"]", "not a JSON object"),
            ("\"just a string\"", "not a JSON object"),
            ("text: plain", "not a JSON object"),
            ("{\"text\": \"unterminated}", "unterminated string"),
            ("{\"text\": \"unbalanced\"", "ends where ',' or '}'"),
            ("{\"text\": \"x\", \"m\": [1, 2}", "expected ',' or ']'"),
            ("{\"text\": \"x\"}}", "after the JSON object"),
            ("{\"text\": \"x\",}", "quoted field name"),
            ("{\"text\": \"bad \\x escape\"}", "invalid escape"),
            ("{\"text\": \"bad \\u12 escape\"}", "invalid \\u escape"),
            ("{\"text\": \"x\", \"n\": 01}", "expected ',' or '}'"),
            ("{\"text\": \"x\", \"n\": 1.}", "invalid number"),
            ("{\"text\": \"x\", \"b\": tru}", "JSON value"),
        ]
        for (index, (line, message)) in cases.enumerated() {
            let url = try write("malformed\(index).jsonl", "{\"text\": \"fine\"}\n\(line)\n")
            try assertError(url, contains: ["line 2", message])
        }
        let column = try write("column.jsonl", "{\"text\": \"x\", \"n\": -}")
        try assertError(column, contains: ["line 1, column 20", "invalid number"])
    }

    func testTextThatIsNotAStringNamesFileAndLine() throws {
        for (value, kind) in [("42", "a number"), ("null", "null"), ("[\"a\"]", "an array"), ("{}", "an object"), ("true", "a boolean")] {
            let url = try write("kind.jsonl", "{\"text\": \(value)}\n")
            try assertError(url, contains: ["line 1", "\"text\" is \(kind), not a string"])
        }
    }

    func testMissingFileIsReported() throws {
        let url = directory.appendingPathComponent("absent.jsonl")
        try assertError(url, contains: ["cannot read", "No such file"])
    }

    func testErrorsFromTheBodyPropagate() throws {
        struct Stop: Error {}
        let source = DocumentSource(url: try write("two.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n"))
        var seen = 0
        XCTAssertThrowsError(try source.forEachDocument { _ in
            seen += 1
            throw Stop()
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertEqual(seen, 1)
    }

    // MARK: Names and magic bytes

    func testFormatAndCompressionFromNameAndMagic() throws {
        func kind(_ name: String) -> (DocumentFormat, Compression) {
            let source = DocumentSource(url: directory.appendingPathComponent(name))
            return (source.format, source.compression)
        }
        XCTAssertTrue(kind("a.jsonl") == (.jsonl, Compression.none))
        XCTAssertTrue(kind("a.JSONL.GZ") == (.jsonl, .gzip))
        XCTAssertTrue(kind("c4-train.00000-of-01024.json.gz") == (.jsonl, .gzip))
        XCTAssertTrue(kind("a.ndjson.zst") == (.jsonl, .zstd))
        XCTAssertTrue(kind("a.txt.zstd") == (.text, .zstd))
        XCTAssertTrue(kind("a.gz") == (.text, .gzip))
        XCTAssertTrue(kind("a.md") == (.text, Compression.none))

        let gzip = try compressed("{\"text\": \"hidden gzip\"}\n", tool: "gzip", name: "g.jsonl")
        let zstd = try compressed("{\"text\": \"hidden zstd\"}\n", tool: "zstd", name: "z.jsonl")
        // The magic bytes win over a name that says otherwise.
        let renamedGzip = try write("renamed.jsonl", Data(contentsOf: gzip))
        let renamedZstd = try write("renamed.jsonl.gz", Data(contentsOf: zstd))
        XCTAssertEqual(DocumentSource(url: renamedGzip).compression, .gzip)
        XCTAssertEqual(DocumentSource(url: renamedZstd).compression, .zstd)
        XCTAssertEqual(try documents(renamedGzip), [Array("hidden gzip".utf8)])
        XCTAssertEqual(try documents(renamedZstd), [Array("hidden zstd".utf8)])
        // A compressed name without the magic is not silently read as plain bytes.
        try assertError(try write("plain.txt.gz", "not compressed"), contains: ["corrupt gzip data"])
        try assertError(try write("plain.txt.zst", "not compressed"), contains: ["corrupt zstd data"])
        try assertError(try write("empty.jsonl.gz", []), contains: ["empty file, not a gzip stream"])
    }

    /// Files in formats Keel does not read — archives and compressions other than gzip and zstd, Parquet, Arrow —
    /// are refused by what their first bytes say, whatever their names (they were each read as one document of
    /// binary noise: a Hugging Face dataset's Parquet shards in a directory given whole); text that happens to begin
    /// with a format's first letters is still text.
    func testFilesInFormatsKeelDoesNotReadAreRefused() throws {
        let jsonl = try write("corpus.jsonl", "{\"text\": \"a document\"}\n")
        // Real files, from Python's standard library.
        let script = """
            import bz2, lzma, sys, tarfile, zipfile
            source, out = sys.argv[1], sys.argv[2]
            data = open(source, "rb").read()
            open(out + "/corpus.jsonl.xz", "wb").write(lzma.compress(data))
            open(out + "/corpus.jsonl.bz2", "wb").write(bz2.compress(data))
            open(out + "/empty.bz2", "wb").write(bz2.compress(b""))
            with zipfile.ZipFile(out + "/corpus.zip", "w") as archive: archive.write(source, "corpus.jsonl")
            with tarfile.open(out + "/corpus.tar", "w", format=tarfile.USTAR_FORMAT) as archive: archive.add(source, "corpus.jsonl")
            with tarfile.open(out + "/corpus.tar.gz", "w:gz", format=tarfile.USTAR_FORMAT) as archive: archive.add(source, "corpus.jsonl")
            """
        try runTool("python3", ["-c", script, jsonl.path, directory.path])
        for (name, format) in [("corpus.jsonl.xz", "an xz-compressed file"), ("corpus.jsonl.bz2", "a bzip2-compressed file"),
                               ("empty.bz2", "a bzip2-compressed file"), ("corpus.zip", "a zip archive"), ("corpus.tar", "a tar archive")] {
            try assertError(directory.appendingPathComponent(name), contains: [format, "which Keel does not read"])
        }
        // A tar archive under gzip is not text either: refused once it is decompressed.
        try assertError(directory.appendingPathComponent("corpus.tar.gz"), contains: ["holds a tar archive under its compression"])
        // Parquet's ends, Arrow's and lz4's first bytes, under names that say text.
        try assertError(try write("train-00000.txt", Array("PAR1".utf8) + [0x15, 0x04, 0x15, 0x00] + Array("PAR1".utf8)), contains: ["a Parquet file"])
        try assertError(try write("data.arrow", Array("ARROW1".utf8) + [0, 0, 0xFF]), contains: ["an Arrow file"])
        try assertError(try write("part.jsonl", [0x04, 0x22, 0x4D, 0x18, 0x64, 0x40]), contains: ["an lz4-compressed file"])
        do {
            try DocumentSource(url: directory.appendingPathComponent("corpus.tar")).forEachRecord { _ in }
            XCTFail("a tar archive read as JSON Lines")
        } catch let error as KeelError {
            XCTAssertTrue(error.message.contains("a tar archive"), error.message)
        }
        // Text that begins as a format's signature does, and then goes on as text.
        for text in ["BZh9 is a bzip2 header", "PAR1: a heading, not Parquet, whose file does not end PAR1.", "PK is a monogram",
                     "ARROW1 as a word"] {
            XCTAssertEqual(try documents(write("plain-\(text.prefix(3)).txt", text)), [Array(text.utf8)])
        }
    }

    /// A named pipe (or `<(…)`) is read whole: looking at a file's first bytes read them from the pipe, and the
    /// document lost its first four bytes (or, with a writer of more than a pipe's buffer, the reader hung).
    func testANamedPipeIsReadWhole() throws {
        let pipe = directory.appendingPathComponent("pipe.txt")
        XCTAssertEqual(mkfifo(pipe.path, 0o600), 0)
        let text = String(repeating: "Hello, pipe. ", count: 20_000)  // more than a pipe's 64 KiB buffer
        let writer = Thread {
            let handle = FileHandle(forWritingAtPath: pipe.path)!
            handle.write(Data(text.utf8))
            try? handle.close()
        }
        writer.start()
        XCTAssertEqual(try documents(pipe), [Array(text.utf8)])
    }

    // MARK: Compressed streams

    func testGzipMultiMember() throws {
        let first = try compressed("{\"text\": \"one\"}\n{\"text\": \"two\"}\n", tool: "gzip", name: "first.jsonl")
        let second = try compressed("{\"text\": \"three\"}", tool: "gzip", name: "second.jsonl")
        let joined = try write("joined.jsonl.gz", Data(contentsOf: first) + Data(contentsOf: second))
        XCTAssertEqual(try documents(joined), ["one", "two", "three"].map { Array($0.utf8) })

        let text = try compressed("whole document\n", tool: "gzip", name: "doc.txt")
        let doubled = try write("doubled.txt.gz", Data(contentsOf: text) + Data(contentsOf: text))
        XCTAssertEqual(try documents(doubled), [Array("whole document\nwhole document\n".utf8)])
    }

    func testZstdMultiFrame() throws {
        let first = try compressed("{\"text\": \"one\"}\n{\"text\": \"two\"}\n", tool: "zstd", name: "first.jsonl")
        let second = try compressed("{\"text\": \"three\"}", tool: "zstd", name: "second.jsonl")
        let joined = try write("joined.jsonl.zst", Data(contentsOf: first) + Data(contentsOf: second))
        XCTAssertEqual(try documents(joined), ["one", "two", "three"].map { Array($0.utf8) })

        let text = try compressed("whole document\n", tool: "zstd", name: "doc.txt")
        XCTAssertEqual(try documents(text), [Array("whole document\n".utf8)])
    }

    func testTruncatedAndCorruptStreamsNameTheFile() throws {
        let corpus = (0..<5000).map { "{\"text\": \"document \($0) \(String(repeating: "w\($0 % 97) ", count: $0 % 40))\"}\n" }.joined()
        for (tool, suffix) in [("gzip", "gz"), ("zstd", "zst")] {
            let whole = try Data(contentsOf: compressed(corpus, tool: tool, name: "corpus-\(tool).jsonl"))
            XCTAssertEqual(try documents(write("whole.jsonl.\(suffix)", whole)).count, 5000)
            let half = try write("half.jsonl.\(suffix)", whole.prefix(whole.count / 2))
            try assertError(half, contains: ["\(tool) stream ends early", "truncated"])
            // Only the gzip trailer (CRC and length) or the last bytes of the zstd frame are missing.
            let tail = try write("tail.jsonl.\(suffix)", whole.prefix(whole.count - 3))
            try assertError(tail, contains: ["\(tool) stream ends early"])
            var damaged = whole
            for offset in stride(from: whole.count / 3, to: whole.count / 3 + 64, by: 1) { damaged[offset] ^= 0x5A }
            try assertError(write("damaged.jsonl.\(suffix)", damaged), contains: ["corrupt \(tool) data"])
        }
    }

    // MARK: Scale and reference decoding

    func testHundredMegabyteLineStreamsWithBoundedMemory() throws {
        // Each block decodes to 1,000 letters, "é" (from an escape) and a newline (from an escape).
        let letters = (0..<1000).map { UInt8(ascii: "a") + UInt8($0 % 26) }
        let block = letters + Array("\\u00e9\\n".utf8)
        let decodedBlock = letters + [0xC3, 0xA9, 0x0A]
        let blocks = 100_000
        let url = directory.appendingPathComponent("huge.jsonl")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
        let handle = try FileHandle(forWritingTo: url)
        try handle.write(contentsOf: Array("{\"id\": 1, \"text\": \"".utf8))
        let chunk = Data(Array(repeating: block, count: 1000).joined())
        for _ in 0..<(blocks / 1000) { try handle.write(contentsOf: chunk) }
        try handle.write(contentsOf: Array("\"}\n{\"text\": \"small\"}\n".utf8))
        try handle.close()
        let lineBytes = blocks * block.count

        let baseline = try memoryStatus("VmRSS")
        let resetPeak = (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil
        var sizes: [Int] = []
        var mismatches = 0
        try DocumentSource(url: url).forEachDocument { document in
            sizes.append(document.count)
            guard document.count == blocks * decodedBlock.count else { return }
            decodedBlock.withUnsafeBufferPointer { expected in
                for start in stride(from: 0, to: document.count, by: expected.count)
                where memcmp(document.baseAddress! + start, expected.baseAddress!, expected.count) != 0 {
                    mismatches += 1
                }
            }
        }
        XCTAssertEqual(sizes, [blocks * decodedBlock.count, 5])
        XCTAssertEqual(mismatches, 0)
        // With the peak reset the high-water mark covers only this read; otherwise it is the process's peak.
        let peak = try memoryStatus("VmHWM")
        XCTAssertLessThan(peak - (resetPeak ? baseline : 0), 5 * lineBytes, "peak RSS \(peak >> 20) MiB for a \(lineBytes >> 20) MiB line")
    }

    func testRandomizedJSONLMatchesPython() throws {
        let script = """
        import json, random, struct, sys
        rng = random.Random(20240607)
        def char():
            r = rng.random()
            if r < 0.45: return chr(rng.randint(0x20, 0x7E))
            if r < 0.55: return rng.choice('"\\\\/\\b\\f\\n\\r\\t')
            if r < 0.60: return chr(rng.randint(0, 0x1F))
            if r < 0.80:
                c = rng.randint(0x80, 0xFFFD)
                return chr(c) if not 0xD800 <= c < 0xE000 else 'x'
            return chr(rng.randint(0x10000, 0x10FFFF))
        def text(longest=3000):
            return ''.join(char() for _ in range(rng.choice([0, 1, 3, 40, 400, longest])))
        def number():
            return rng.choice([rng.randint(-10**15, 10**15), rng.uniform(-1e6, 1e6),
                               rng.random() * 10.0 ** rng.randint(-30, 30), float('nan'), float('inf'), -0.0])
        def value(depth):
            kinds = [lambda: None, lambda: rng.random() < 0.5, number, lambda: text(100)]
            if depth < 4:
                kinds.append(lambda: [value(depth + 1) for _ in range(rng.randint(0, 4))])
                kinds.append(lambda: {rng.choice(['text', 'id', text(6)]): value(depth + 1) for _ in range(rng.randint(0, 4))})
            return rng.choice(kinds)()
        with open(sys.argv[1], 'wb') as out, open(sys.argv[2], 'wb') as expected:
            for _ in range(2000):
                if rng.random() < 0.03:
                    out.write(rng.choice([b'', b'  ', b'\\t\\r']) + b'\\n')
                    continue
                fields = [(rng.choice(['id', 'meta', 'url', 'te', 'texts', text(5)]), value(1)) for _ in range(rng.randint(0, 4))]
                fields.insert(rng.randint(0, len(fields)), ('text', text()))
                line = json.dumps(dict(fields), ensure_ascii=rng.random() < 0.5,
                                  separators=rng.choice([(',', ':'), (', ', ': '), (' , ', ' : ')]))
                out.write(line.encode('utf-8') + b'\\n')
                document = json.loads(line)['text'].encode('utf-8')
                if document:
                    expected.write(struct.pack('<Q', len(document)) + document)
        """
        let input = directory.appendingPathComponent("random.jsonl"), reference = directory.appendingPathComponent("expected.bin")
        try runTool("python3", ["-c", script, input.path, reference.path])
        let expectedData = try Data(contentsOf: reference)
        var expected: [[UInt8]] = []
        var offset = 0
        while offset < expectedData.count {
            let length = expectedData[offset..<offset + 8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            expected.append(Array(expectedData[offset + 8..<offset + 8 + length]))
            offset += 8 + length
        }
        XCTAssertGreaterThan(expected.count, 1500)
        let decoded = try documents(input)
        XCTAssertEqual(decoded.count, expected.count)
        for (index, (ours, theirs)) in zip(decoded, expected).enumerated() where ours != theirs {
            XCTFail("document \(index) differs from Python's json.loads")
            break
        }
    }

    // MARK: Helpers

    @discardableResult
    func write(_ name: String, _ text: String) throws -> URL { try write(name, Data(text.utf8)) }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> URL { try write(name, Data(bytes)) }

    @discardableResult
    func write(_ name: String, _ data: Data) throws -> URL {
        let url = directory.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    func documents(_ url: URL) throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        try DocumentSource(url: url).forEachDocument { result.append(Array($0)) }
        return result
    }

    /// Asserts that reading `url` throws a one-line KeelError that names the file and says `fragments`.
    func assertError(_ url: URL, contains fragments: [String], line: UInt = #line) throws {
        do {
            try DocumentSource(url: url).forEachDocument { _ in }
            XCTFail("\(url.lastPathComponent): no error", line: line)
        } catch let error as KeelError {
            XCTAssertFalse(error.message.contains("\n"), error.message, line: line)
            for fragment in [url.path] + fragments where !error.message.contains(fragment) {
                XCTFail("\"\(error.message)\" does not say \"\(fragment)\"", line: line)
            }
        }
    }

    /// `text` written as `name` and compressed with `tool` (gzip or zstd), which adds its own suffix.
    func compressed(_ text: String, tool: String, name: String) throws -> URL {
        let url = try write(name, text)
        try runTool(tool, ["-q", "-f", url.path])
        return URL(fileURLWithPath: url.path + (tool == "gzip" ? ".gz" : ".zst"))
    }

    /// Runs a command-line tool found on PATH (scripts/setup.sh installs gzip and zstd); a missing tool
    /// fails the test rather than skipping it.
    func runTool(_ name: String, _ arguments: [String]) throws {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { throw KeelError("\(name) is not installed: run scripts/setup.sh") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(name) \(arguments.joined(separator: " ")) failed")
    }

    /// A memory figure from /proc/self/status, in bytes.
    func memoryStatus(_ key: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix(key + ":") })
        let kilobytes = try XCTUnwrap(Int(line.split(separator: " ")[1]))
        return kilobytes * 1024
    }

    /// What Python's `json.dumps(..., ensure_ascii=False)` writes for the same string (the literal is its output).
    func testJSONStringsAreWrittenAsPythonWritesThem() {
        XCTAssertEqual(String(decoding: JSONString.quoted("a\"b\\c\nd\te\u{01}f é"), as: UTF8.self), #""a\"b\\c\nd\te\u0001f é""#)
        XCTAssertEqual(String(decoding: JSONString.quoted("plain"), as: UTF8.self), "\"plain\"")
        XCTAssertEqual(String(decoding: JSONString.quoted(""), as: UTF8.self), "\"\"")
    }
}
