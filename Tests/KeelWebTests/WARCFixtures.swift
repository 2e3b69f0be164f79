import CZlib
import Foundation
import XCTest

/// WARC files written for the tests: records as WARC writers lay them out, plain or one gzip member each.
enum WARCFixture {
    /// A record of `type` for `uri` whose block is `block`.
    static func record(type: String = "response", uri: String = "http://example.com/", block: [UInt8],
                       contentLength: Int? = nil, headers: [String] = []) -> [UInt8] {
        var header = "WARC/1.0\r\nWARC-Type: \(type)\r\nWARC-Target-URI: \(uri)\r\n"
        header += headers.map { $0 + "\r\n" }.joined()
        header += "WARC-Date: 2024-01-02T03:04:05Z\r\nContent-Type: application/http; msgtype=response\r\n"
        header += "Content-Length: \(contentLength ?? block.count)\r\n\r\n"
        return Array(header.utf8) + block + Array("\r\n\r\n".utf8)
    }

    /// An HTTP response with `body` and extra header lines.
    static func response(_ body: String, headers: [String] = ["Content-Type: text/html; charset=utf-8"]) -> [UInt8] {
        Array((["HTTP/1.1 200 OK"] + headers).joined(separator: "\r\n").utf8) + Array("\r\n\r\n".utf8) + Array(body.utf8)
    }

    /// `bytes` as one gzip member.
    static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        precondition(keel_deflateInit2(stream, 6, 15 + 16) == Z_OK)
        defer { deflateEnd(stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(stream, UInt(bytes.count))) + 64)
        var input = bytes
        let produced = input.withUnsafeMutableBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                stream.pointee.next_in = source.baseAddress
                stream.pointee.avail_in = UInt32(source.count)
                stream.pointee.next_out = destination.baseAddress
                stream.pointee.avail_out = UInt32(destination.count)
                precondition(deflate(stream, Z_FINISH) == Z_STREAM_END)
                return destination.count - Int(stream.pointee.avail_out)
            }
        }
        return Array(output[..<produced])
    }
}

extension XCTestCase {
    /// A new empty directory, removed when the test ends.
    func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-web-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return directory
    }

    /// The number of a process that has ended (for the temporaries of a killed writer).
    func endedProcessIdentifier() throws -> Int32 {
        let ended = Process()
        ended.executableURL = URL(fileURLWithPath: "/bin/true")
        try ended.run()
        ended.waitUntilExit()
        return ended.processIdentifier
    }

    /// Writes `bytes` to a new temporary file named `name`, removed when the test ends.
    func temporaryFile(_ bytes: [UInt8], name: String) throws -> URL {
        let url = try temporaryDirectory().appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }
}
