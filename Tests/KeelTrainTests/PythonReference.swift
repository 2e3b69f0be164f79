import Foundation
import XCTest

/// Runs a script of Tests/Reference on an input written as JSON, and returns what it printed.
enum PythonReference {
    static func run(_ script: String, input: Data, file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-reference-\(UUID()).json")
        try input.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let process = Process(), pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Reference/\(script)").path, url.path]
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(script) failed (pip install numpy)", file: file, line: line)
        return output
    }
}
