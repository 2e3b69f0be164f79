import CBrotli
import CZlib
import CZstd
import Foundation
import KeelCore

/// An HTTP/1.x response as a WARC `response` record holds it: status, headers, and the body with its transfer
/// coding (chunked) and content coding (gzip, deflate, br, zstd) removed; a body under a label that names no coding
/// ("none", "utf-8") is kept as it is, as warcio keeps it.
public struct HTTPResponse: Sendable {
    public let status: Int
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]

    /// The most bytes a body may decode to (a page's HTML is far smaller): a compressed body can expand a thousandfold
    /// and more, and one crafted to would otherwise exhaust the memory.
    public static let maximumDecodedBytes = 64 << 20

    /// Parses `block`; throws when it does not begin with an HTTP status line and headers, its body decodes to
    /// more than `maximumDecodedBytes`, or it is under Unix `compress` (LZW), a coding Keel does not undo, whose bytes
    /// would read as noise. Another label leaves the body as it is.
    public init(parsing block: [UInt8]) throws {
        guard let end = Self.headerEnd(block) else { throw KeelError("no end to the HTTP header") }
        // Lines split on bytes: as Characters, "\r\n" is one and would not split on "\n".
        var lines = block[..<end.headerEnd].split(separator: 0x0a, omittingEmptySubsequences: false)
            .map { String(decoding: $0.last == 0x0d ? $0.dropLast() : $0, as: UTF8.self) }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw KeelError("not an HTTP response (it begins \(String(reflecting: String(statusLine.prefix(40)))))")
        }
        self.status = status
        let headers: [(name: String, value: String)] = lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        self.headers = headers
        var body = Array(block[end.bodyStart...])
        let lookUp = { (name: String) in
            headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value.lowercased()
        }
        // Archives often store the body already de-chunked while keeping the header: only a body that parses as
        // chunks is de-chunked.
        if lookUp("Transfer-Encoding")?.contains("chunked") == true, let dechunked = Self.dechunked(body) { body = dechunked }
        // Codings are listed in the order they were applied, so they are undone from the last.
        let codings = (lookUp("Content-Encoding") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for coding in codings.reversed() {
            switch coding {
            case "gzip", "x-gzip", "deflate":
                // Some servers label a body gzip that was stored decoded: a body that does not inflate is kept.
                if let inflated = try Self.inflated(body) { body = inflated }
            case "br":
                if let decoded = try Self.unbrotli(body) { body = decoded }
            case "zstd":
                if let decoded = try Self.unzstd(body) { body = decoded }
            case "compress", "x-compress":
                throw KeelError("the body is under Content-Encoding \(coding) (LZW), which Keel does not undo")
            default:
                // "identity", and labels that name no coding (servers send "none", "utf-8", "text"): the body is taken
                // as it is, as warcio takes it — a page is not lost over a header.
                break
            }
        }
        self.body = body
    }

    /// The value of the first header field called `name` (compared without regard to case).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The media type of `Content-Type`, lower-cased, without parameters ("text/html"; also from a value that leaves
    /// out the semicolon, "text/html charset=utf-8", as some servers send it).
    public var mediaType: String? {
        header("Content-Type").map { value in
            value.trimmingCharacters(in: .whitespaces).prefix { $0 != ";" && $0 != " " && $0 != "\t" && $0 != "," }.lowercased()
        }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The `charset` parameter of `Content-Type`, if any.
    public var charset: String? {
        header("Content-Type").flatMap(Charset.parameter)
    }

    /// Where the header ends (before its blank line) and the body begins.
    private static func headerEnd(_ bytes: [UInt8]) -> (headerEnd: Int, bodyStart: Int)? {
        var index = 0
        while index < bytes.count {
            guard let newline = bytes[index...].firstIndex(of: 0x0a) else { return nil }
            if newline + 1 < bytes.count, bytes[newline + 1] == 0x0a { return (newline, newline + 2) }
            if newline + 2 < bytes.count, bytes[newline + 1] == 0x0d, bytes[newline + 2] == 0x0a { return (newline, newline + 3) }
            index = newline + 1
        }
        return nil
    }

    /// `body` without its chunked transfer coding; nil when it is not a sequence of chunks.
    static func dechunked(_ body: [UInt8]) -> [UInt8]? {
        var result: [UInt8] = [], index = 0
        while index < body.count {
            guard let newline = body[index...].firstIndex(of: 0x0a) else { return nil }
            let sizeText = String(decoding: body[index..<newline], as: UTF8.self)
                .prefix { $0 != ";" }.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let size = Int(sizeText, radix: 16), size >= 0 else { return nil }
            if size == 0 { return result }
            let start = newline + 1
            // A truncated last chunk keeps what arrived (compared by subtraction: a size may be near Int.max).
            let end = start + min(size, body.count - start)
            result.append(contentsOf: body[start..<end])
            index = end
            if index < body.count, body[index] == 0x0d { index += 1 }
            if index < body.count, body[index] == 0x0a { index += 1 }
        }
        return result
    }

    /// The error for a body that decodes to more than `maximumDecodedBytes`.
    private static var tooLarge: KeelError {
        KeelError("the body decodes to more than \(maximumDecodedBytes >> 20) MiB")
    }

    /// `body` decoded from Brotli; nil when it is not Brotli (a body stored decoded under the header). A truncated
    /// stream gives what decoded so far.
    static func unbrotli(_ body: [UInt8]) throws -> [UInt8]? {
        guard !body.isEmpty, let state = BrotliDecoderCreateInstance(nil, nil, nil) else { return nil }
        defer { BrotliDecoderDestroyInstance(state) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        return try body.withUnsafeBufferPointer { input -> [UInt8]? in
            var nextIn: UnsafePointer<UInt8>? = input.baseAddress
            var availableIn = input.count
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { output -> (BrotliDecoderResult, Int) in
                    var nextOut: UnsafeMutablePointer<UInt8>? = output.baseAddress
                    var availableOut = output.count
                    let status = BrotliDecoderDecompressStream(state, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                    return (status, output.count - availableOut)
                }
                result.append(contentsOf: chunk[..<produced])
                guard result.count <= maximumDecodedBytes else { throw tooLarge }
                switch status {
                case BROTLI_DECODER_RESULT_SUCCESS: return result
                case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT: continue
                case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT: return result.isEmpty ? nil : result
                default: return nil
                }
            }
        }
    }

    /// `body` decoded from Zstandard frames; nil when it is not one (kept as it is, as a body that is not gzip is). A
    /// frame cut short or damaged on the way gives what decoded before, possibly nothing — never its own bytes.
    static func unzstd(_ body: [UInt8]) throws -> [UInt8]? {
        guard body.starts(with: [0x28, 0xB5, 0x2F, 0xFD]), let context = ZSTD_createDCtx() else { return nil }
        defer { ZSTD_freeDCtx(context) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        return try body.withUnsafeBufferPointer { input -> [UInt8]? in
            var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { output -> (Int, Int) in
                    var destination = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
                    return (ZSTD_decompressStream(context, &destination, &source), destination.pos)
                }
                guard ZSTD_isError(status) == 0 else { return result }
                result.append(contentsOf: chunk[..<produced])
                guard result.count <= maximumDecodedBytes else { throw tooLarge }
                guard source.pos == source.size, produced < chunk.count else { continue }
                // All input read and the output drained: a whole frame (status 0), or one cut short, kept as far as
                // it goes, as a cut gzip body is.
                return result
            }
        }
    }

    /// `body` inflated from gzip, zlib or raw deflate; nil when it is none of them. A gzip or zlib stream damaged on
    /// the way (a flipped byte, a wrong checksum at its end) gives what inflated before the damage, and a gzip
    /// stream damaged from its start gives nothing: its bytes, kept as the page, would be read as text in a legacy
    /// encoding.
    static func inflated(_ body: [UInt8]) throws -> [UInt8]? {
        guard !body.isEmpty else { return body }
        // 15 + 32: gzip or zlib, detected from the header, which a body stored decoded does not pass.
        if let result = try inflate(body, windowBits: 15 + 32, keepingWhatInflated: true) { return result }
        if body.starts(with: [0x1F, 0x8B]) { return [] }
        // Raw deflate, which some servers send as "deflate": no header to check, so a damaged stream is no stream (a
        // body stored decoded may inflate to a few bytes of noise before it fails).
        return try inflate(body, windowBits: -15, keepingWhatInflated: false)
    }

    private static func inflate(_ body: [UInt8], windowBits: Int32, keepingWhatInflated: Bool) throws -> [UInt8]? {
        // zlib keeps a pointer back to its z_stream and rejects a moved one, so it lives at a fixed address.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        guard keel_inflateInit2(stream, windowBits) == Z_OK else { return nil }
        defer { inflateEnd(stream) }
        var result: [UInt8] = []
        let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 16)
        defer { chunk.deallocate() }
        return try body.withUnsafeBufferPointer { input -> [UInt8]? in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!)
            stream.pointee.avail_in = UInt32(input.count)
            while true {
                stream.pointee.next_out = chunk
                stream.pointee.avail_out = 1 << 16
                let status = CZlib.inflate(stream, Z_NO_FLUSH)
                result.append(contentsOf: UnsafeBufferPointer(start: chunk, count: (1 << 16) - Int(stream.pointee.avail_out)))
                guard result.count <= maximumDecodedBytes else { throw tooLarge }
                switch status {
                case Z_STREAM_END: return result
                case Z_OK: continue
                // Truncated bodies are common in crawls: what inflated so far is kept.
                case Z_BUF_ERROR: return result.isEmpty ? nil : result
                default: return keepingWhatInflated && !result.isEmpty ? result : nil
                }
            }
        }
    }
}
