import Foundation
import KeelCore

/// One record of a WARC file (ISO 28500, versions 1.0 and 1.1).
public struct WARCRecord: Sendable {
    /// Where the record begins in the file: for a compressed file, the start of the gzip member holding it (what
    /// a CDX index records); for a plain file, the record's first byte.
    public let offset: Int
    /// The bytes the record takes in the file — its gzip member, when it is a member of its own as Common Crawl
    /// writes them; nil when several records share a member.
    public let length: Int?
    /// The record's version line, e.g. "WARC/1.0".
    public let version: String
    /// The named fields, in order.
    public let headers: [(name: String, value: String)]
    /// The content block (for a `response` record: the HTTP response, headers and body).
    public let block: [UInt8]

    /// The value of the first header field called `name` (compared without regard to case).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// `WARC-Type`: warcinfo, response, resource, request, metadata, revisit, conversion, continuation.
    public var type: String? { header("WARC-Type") }
    public var targetURI: String? { header("WARC-Target-URI").map(Self.unbracketed) }
    public var date: String? { header("WARC-Date") }

    /// WARC 1.0 allowed `<uri>` around the target URI; 1.1 forbids it.
    private static func unbracketed(_ value: String) -> String {
        value.hasPrefix("<") && value.hasSuffix(">") ? String(value.dropFirst().dropLast()) : value
    }
}

/// Reads the records of a WARC or WARC.gz file one at a time, in memory bounded by the largest record kept.
///
/// A record that cannot be read — a truncated or corrupt gzip member, a header that is not WARC's, a
/// `Content-Length` that disagrees with the record — is skipped: counted in `skipped`, reported to `warn` with the
/// file and offset, and reading goes on with the next record: the next line that begins one, looked for from the end
/// of the bad record's header (so a length too long does not swallow the records it spans) — in a gzip member that
/// held a record before, or the file's first (a WARC compressed as one member, whose every record would be lost with
/// it), else from the next member on (Common Crawl's members hold one record each, whose payload may quote a WARC
/// record's lines). A sound record whose
/// block is larger than `maxRecordBytes` is counted and reported too, but read through, so the record right after
/// it is read even when both share a gzip member; its length is trusted, as it is not kept to look through again.
public final class WARCReader {
    public let path: String
    /// Blocks larger than this are skipped (read through, not kept).
    public let maxRecordBytes: Int
    /// Records skipped so far.
    public private(set) var skipped = 0
    private let input: RecordInput
    private let warn: (String) -> Void
    private var buffer: [UInt8] = []
    private var position = 0
    /// Decoded bytes taken from `buffer` so far (the offset in a plain file).
    private var consumed = 0
    /// A plain file's version line found while looking for the next record after damage, and where it began.
    private var pendingVersion: String?
    private var pendingStart = 0
    /// Whether the current gzip member has held a whole record: only then, or in the file's first member, is another
    /// looked for after a bad one.
    private var memberHeldRecord = false
    /// Whether a bad record came before in the current gzip member: a record after it is not a member of its own.
    private var memberHeldBadRecord = false

    public init(path: String, maxRecordBytes: Int = 64 << 20, warn: @escaping (String) -> Void) throws {
        self.path = path
        self.maxRecordBytes = maxRecordBytes
        self.warn = warn
        input = try RecordInput(path: path)
    }

    /// The next record; nil at the end of the file.
    public func next() throws -> WARCRecord? {
        while true {
            var start = input.isCompressed ? input.memberStart : consumed
            do {
                if position == buffer.count, try !fill() {
                    // The member is done: the next record starts a new one.
                    guard try input.beginMember() else { return nil }
                    memberHeldRecord = false
                    memberHeldBadRecord = false
                    pendingVersion = nil
                    continue
                }
                start = input.isCompressed ? input.memberStart : consumed
                guard let record = try readRecord(startingAt: &start) else { continue }
                return record
            } catch let damage as RecordInput.Damage {
                skip(at: damage.offset, damage.reason)
                try leaveMember()
            } catch let problem as Problem {
                memberHeldBadRecord = true
                skip(at: start, problem.reason)
                try recover()
            }
        }
    }

    /// A record's own content is wrong (the file's compression is intact).
    private struct Problem: Error {
        let reason: String
    }

    /// Reads the record beginning at the next byte, past blank lines (which move a plain file's `start`); nil when
    /// only blank lines remained in the member, or when the record was skipped whole (its block over the size limit).
    private func readRecord(startingAt start: inout Int) throws -> WARCRecord? {
        var versionLine = pendingVersion
        if pendingVersion != nil { start = pendingStart }
        pendingVersion = nil
        while versionLine == nil {
            if !input.isCompressed { start = consumed }
            guard let line = try readLine() else { return nil }
            if !line.isEmpty { versionLine = line }
        }
        // A byte-order mark some writers put at the start of a file.
        if start == 0, let line = versionLine, line.hasPrefix("\u{FEFF}") { versionLine = String(line.dropFirst()) }
        guard let version = versionLine, version.hasPrefix("WARC/") else {
            throw Problem(reason: "not a WARC record (it begins \(String(reflecting: String((versionLine ?? "").prefix(40)))))")
        }
        var headers: [(name: String, value: String)] = []
        var headerBytes = 0
        while true {
            guard let line = try readLine() else { throw Problem(reason: "the file ends inside the record's header") }
            if line.isEmpty { break }
            headerBytes += line.utf8.count
            guard headerBytes < 1 << 20 else { throw Problem(reason: "a header of over 1 MB") }
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                // A continuation line (allowed by WARC 1.0's grammar).
                headers[headers.count - 1].value += " " + line.trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw Problem(reason: "a header line without a colon: \(line.prefix(60))") }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        guard let lengthText = headers.first(where: { $0.name.caseInsensitiveCompare("Content-Length") == .orderedSame })?.value,
              let length = Int(lengthText), length >= 0 else {
            throw Problem(reason: "no valid Content-Length")
        }
        if length > maxRecordBytes {
            // Read through to its end, counted and warned of: the next record follows, in this member or the next, and
            // nothing of the member may be discarded (a WARC compressed as one member holds every later record in it).
            try discard(length)
            _ = try takeBlock(0)  // the line ends after it
            memberHeldRecord = true
            skip(at: start, "a block of \(length) bytes, over the limit of \(maxRecordBytes)")
            return nil
        }
        let block = try takeBlock(length)
        let firstInMember = !memberHeldRecord && !memberHeldBadRecord
        memberHeldRecord = true
        var recordLength: Int?
        if input.isCompressed {
            // A record that is a member of its own: the member begins with it and ends right after it.
            if firstInMember, position == buffer.count, try !fill(), let end = input.memberEnd { recordLength = end - start }
        } else {
            recordLength = consumed - start
        }
        return WARCRecord(offset: start, length: recordLength, version: version, headers: headers, block: block)
    }

    /// The block of `length` bytes and the two line ends after it, consumed only when both are there: otherwise
    /// `Content-Length` was wrong, and the search for the next record begins right after the header.
    private func takeBlock(_ length: Int) throws -> [UInt8] {
        while buffer.count - position < length + 4 {
            guard try fill() else { break }
        }
        let available = buffer.count - position
        guard available >= length else {
            throw Problem(reason: "the file ends inside the record's block (\(available) of \(length) bytes)")
        }
        // Each line end is CRLF or LF; the last record of a file (or of its member) may lack them.
        var end = position + length
        for _ in 0..<2 where end < buffer.count {
            if buffer[end] == 0x0a {
                end += 1
            } else if buffer[end] == 0x0d, end + 1 < buffer.count, buffer[end + 1] == 0x0a {
                end += 2
            } else {
                let found = String(decoding: buffer[end..<min(end + 40, buffer.count)], as: UTF8.self)
                throw Problem(reason: "the record does not end where its Content-Length says (found \(String(reflecting: found)))")
            }
        }
        let block = Array(buffer[position..<(position + length)])
        consumed += end - position
        position = end
        return block
    }

    private func skip(at offset: Int, _ reason: String) {
        skipped += 1
        warn("\(path): record at offset \(offset) skipped: \(reason)")
    }

    /// After a record's own damage, finds the next record: reads line by line up to the next version line, or to the
    /// end of the gzip member (the next member begins a record); a member damaged on the way is left for the next. A
    /// member whose first record is the bad one is passed over whole, unless it is the file's first: it holds one
    /// record, whose payload may quote another's lines — while a file's first member may be the whole file.
    private func recover() throws {
        if input.isCompressed, !memberHeldRecord, input.memberStart != 0 {
            do {
                while try fill() { position = buffer.count }
            } catch is RecordInput.Damage {
                return try leaveMember()
            }
            // The member is done: what is left of it buffered (the bad block, not consumed) goes with it.
            buffer.removeAll(keepingCapacity: true)
            position = 0
            return
        }
        while true {
            let lineStart = input.isCompressed ? input.memberStart : consumed
            let line: String?
            do {
                line = try readLine()
            } catch is RecordInput.Damage {
                return try leaveMember()
            } catch is Problem {
                // A line of over 1 MB (a crashed writer's zeros, a minified script) starts no record: what is
                // buffered of it is passed over, and the search goes on.
                consumed += buffer.count - position
                position = buffer.count
                continue
            }
            guard let line else { return }
            if line.hasPrefix("WARC/1.") {
                pendingVersion = line
                pendingStart = lineStart
                return
            }
        }
    }

    // MARK: - Buffered bytes of the current member

    /// Drops what is buffered of a damaged gzip member and moves to the next member.
    private func leaveMember() throws {
        try input.skipToNextMember()
        buffer.removeAll(keepingCapacity: true)
        position = 0
    }

    /// Appends more decoded bytes of the current member to the buffer; false at its end.
    private func fill() throws -> Bool {
        if position > 0 {
            buffer.removeSubrange(0..<position)
            position = 0
        }
        let old = buffer.count
        buffer.append(contentsOf: Self.room)
        let got = try buffer.withUnsafeMutableBufferPointer { try input.read(into: $0.baseAddress! + old, count: Self.room.count) }
        buffer.removeLast(Self.room.count - got)
        return got > 0
    }

    /// What `fill` appends and then overwrites: copying it is a memcpy.
    private static let room = [UInt8](repeating: 0, count: 1 << 16)

    /// The next line without its line end (CRLF or LF), as UTF-8 with invalid bytes replaced; nil at the member's end.
    private func readLine() throws -> String? {
        while true {
            if let newline = buffer[position...].firstIndex(of: 0x0a) {
                var end = newline
                if end > position && buffer[end - 1] == 0x0d { end -= 1 }
                let line = String(decoding: buffer[position..<end], as: UTF8.self)
                consumed += newline + 1 - position
                position = newline + 1
                return line
            }
            guard buffer.count - position < 1 << 20 else { throw Problem(reason: "a line of over 1 MB") }
            guard try fill() else {
                guard position < buffer.count else { return nil }
                let line = String(decoding: buffer[position...], as: UTF8.self)
                consumed += buffer.count - position
                position = buffer.count
                return line
            }
        }
    }

    /// Reads through the next `count` bytes without keeping them.
    private func discard(_ count: Int) throws {
        var left = count
        while left > 0 {
            if position == buffer.count {
                guard try fill() else { throw Problem(reason: "the file ends inside the record's block") }
            }
            let step = min(left, buffer.count - position)
            position += step
            consumed += step
            left -= step
        }
    }
}
