import Foundation
import KeelCore
import XCTest

/// Paths and helpers shared by the data tests.
enum DataFixtures {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var reference: String { repositoryRoot.appendingPathComponent("Tests/Reference/tokenizer_reference.py").path }

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
