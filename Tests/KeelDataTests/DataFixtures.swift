import Foundation
import KeelCore
import KeelData
import XCTest

/// Paths and helpers shared by the data tests.
enum DataFixtures {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var reference: String { repositoryRoot.appendingPathComponent("Tests/Reference/tokenizer_reference.py").path }

    /// Bytes plus the ChatML markers as special tokens (ids 0–2; byte b is 3 + b).
    static func chatTokenizer() throws -> any TextTokenizer {
        let characters = (0..<256).map { String(TokenizerFiles.byteToCharacter[$0]) }
        return try GGUFVocabulary(tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + characters,
                                  types: [3, 3, 3] + Array(repeating: 1, count: 256), merges: [], preTokenizer: "gpt-2",
                                  endOfText: 0).tokenizer()
    }

    /// The text of the trained tokens, run by run.
    static func trainedRuns(_ example: SupervisedExample, _ tokenizer: any TextTokenizer) throws -> [String] {
        var runs: [String] = [], current: [Int32] = []
        for (token, trained) in zip(example.tokens, example.trained) {
            if trained { current.append(token) } else if !current.isEmpty { runs.append(try tokenizer.decodeText(current)); current = [] }
        }
        if !current.isEmpty { runs.append(try tokenizer.decodeText(current)) }
        return runs
    }

    /// The Shakespeare corpus files (fetched by scripts/fetch_corpus.sh, which the test script runs).
    static func shakespeare(file: StaticString = #filePath, line: UInt = #line) throws -> [URL] {
        let directory = repositoryRoot.appendingPathComponent("data/shakespeare")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let files = names.filter { $0.hasSuffix(".txt") }.sorted().map { directory.appendingPathComponent($0) }
        XCTAssertFalse(files.isEmpty, "data/shakespeare is missing: run scripts/fetch_corpus.sh", file: file, line: line)
        return files
    }

    /// Runs python3 with `arguments`; returns stdout.
    @discardableResult
    static func python(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "python3 \(arguments.joined(separator: " ")) failed", file: file, line: line)
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Reads the reference script's output: per file, a count then the ids.
    static func readIDLists(_ url: URL) throws -> [[Int32]] {
        let data = try Data(contentsOf: url)
        var lists: [[Int32]] = []
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let count = Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
                offset += 4
                lists.append((0..<count).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4 * $0, as: Int32.self)) })
                offset += 4 * count
            }
        }
        return lists
    }

    /// A fresh temporary directory, removed when the test ends.
    static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-data-\(UUID())")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
