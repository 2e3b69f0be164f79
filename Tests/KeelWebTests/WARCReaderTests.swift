import Foundation
import KeelWeb
import XCTest

/// WARC files are read record by record, at the offsets an index records, and a damaged record costs only itself.
final class WARCReaderTests: XCTestCase {
    private let bodies = ["<p>first</p>", "<p>second</p>", "<p>third</p>"]

    private func records() -> [[UInt8]] {
        bodies.enumerated().map { WARCFixture.record(uri: "http://example.com/\($0.offset)", block: WARCFixture.response($0.element)) }
    }

    /// Every record of `url`, with the warnings given.
    private func read(_ url: URL, maxRecordBytes: Int = 1 << 20) throws -> (records: [WARCRecord], warnings: [String], skipped: Int) {
        var warnings: [String] = []
        let reader = try WARCReader(path: url.path, maxRecordBytes: maxRecordBytes) { warnings.append($0) }
        var records: [WARCRecord] = []
        while let record = try reader.next() { records.append(record) }
        return (records, warnings, reader.skipped)
    }

    func testPlainRecordsAtTheirOffsets() throws {
        let records = records()
        let url = try temporaryFile(records.flatMap { $0 }, name: "plain.warc")
        let read = try read(url)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1", "http://example.com/2"])
        XCTAssertEqual(read.records.map(\.offset), [0, records[0].count, records[0].count + records[1].count])
        XCTAssertEqual(read.records.map(\.length), records.map(\.count))
        XCTAssertEqual(try HTTPResponse(parsing: read.records[1].block).body, Array(bodies[1].utf8))
        XCTAssertEqual(read.warnings, [])
    }

    func testOneGzipMemberPerRecordGivesEachMembersOffsetAndLength() throws {
        let members = records().map(WARCFixture.gzip)
        let url = try temporaryFile(members.flatMap { $0 }, name: "records.warc.gz")
        let read = try read(url)
        XCTAssertEqual(read.records.count, 3)
        XCTAssertEqual(read.records.map(\.offset), [0, members[0].count, members[0].count + members[1].count])
        XCTAssertEqual(read.records.map(\.length), members.map(\.count))
        XCTAssertEqual(read.records.map(\.type), ["response", "response", "response"])
    }

    func testATruncatedLastMemberIsSkippedWithItsOffset() throws {
        let members = records().map(WARCFixture.gzip)
        let url = try temporaryFile(members[0] + members[1] + members[2].dropLast(20), name: "cut.warc.gz")
        let read = try read(url)
        XCTAssertEqual(read.records.count, 2)
        XCTAssertEqual(read.skipped, 1)
        XCTAssertEqual(read.warnings.count, 1)
        XCTAssertTrue(read.warnings[0].contains("cut.warc.gz: record at offset \(members[0].count + members[1].count) skipped"), read.warnings[0])
    }

    func testACorruptMemberCostsOnlyItsRecord() throws {
        var members = records().map(WARCFixture.gzip)
        for index in 12..<(members[1].count - 10) { members[1][index] ^= 0x5a }
        let url = try temporaryFile(members.flatMap { $0 }, name: "corrupt.warc.gz")
        let read = try read(url)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/2"])
        XCTAssertEqual(read.records.last?.offset, members[0].count + members[1].count, "the record after the damage keeps its offset")
        XCTAssertEqual(read.skipped, 1)
        XCTAssertTrue(read.warnings.first?.contains("offset \(members[0].count)") == true, "\(read.warnings)")
    }

    func testAWrongContentLengthAndJunkAreSkippedInAPlainFile() throws {
        let good = records()
        let wrong = WARCFixture.record(uri: "http://example.com/wrong", block: WARCFixture.response("<p>x</p>"), contentLength: 10)
        let junk = [UInt8](repeating: 0xff, count: 300) + Array("\r\n".utf8)
        let url = try temporaryFile(good[0] + wrong + junk + good[1], name: "bad.warc")
        let read = try read(url)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1"])
        XCTAssertEqual(read.records[1].offset, good[0].count + wrong.count + junk.count)
        XCTAssertEqual(read.skipped, 1, "the junk is read through while looking for the next record")
        XCTAssertTrue(read.warnings[0].contains("does not end where its Content-Length says"), read.warnings[0])
    }

    /// A `Content-Length` too long spans the records after it: the search for the next record starts right after the
    /// bad record's header, so they are read, at their own offsets.
    func testAContentLengthTooLongDoesNotSwallowTheRecordsItSpans() throws {
        let good = records()
        let block = WARCFixture.response("<p>x</p>")
        let long = WARCFixture.record(uri: "http://example.com/long", block: block, contentLength: block.count + 100)
        let url = try temporaryFile(good[0] + long + good[1] + good[2], name: "long.warc")
        let read = try read(url)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1", "http://example.com/2"])
        XCTAssertEqual(read.records.map(\.offset), [0, good[0].count + long.count, good[0].count + long.count + good[1].count])
        XCTAssertEqual(read.skipped, 1)
        XCTAssertTrue(read.warnings[0].contains("record at offset \(good[0].count) skipped: the record does not end where its Content-Length says"),
                      read.warnings[0])
        // A length past the end of the file: the records after it are found the same way.
        let beyond = WARCFixture.record(uri: "http://example.com/long", block: block, contentLength: 100_000)
        let cut = try self.read(try temporaryFile(good[0] + beyond + good[1], name: "beyond.warc"))
        XCTAssertEqual(cut.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1"])
        XCTAssertTrue(cut.warnings[0].contains("the file ends inside the record's block"), cut.warnings[0])
    }

    /// A WARC compressed as one gzip member (`gzip file.warc`): a record with a wrong `Content-Length`, too short or
    /// too long, costs only itself — the records after it in the member are read.
    func testABadRecordInASingleMemberCostsOnlyItself() throws {
        let good = records()
        let block = WARCFixture.response("<p>x</p>")
        let short = WARCFixture.record(uri: "http://example.com/short", block: block, contentLength: 10)
        let long = WARCFixture.record(uri: "http://example.com/long", block: block, contentLength: block.count + 30)
        let url = try temporaryFile(WARCFixture.gzip(good[0] + short + good[1] + long + good[2]), name: "one-member-bad.warc.gz")
        let read = try read(url)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1", "http://example.com/2"])
        XCTAssertEqual(try read.records.last.map { try HTTPResponse(parsing: $0.block).body }, Array(bodies[2].utf8))
        XCTAssertEqual(read.skipped, 2)
        XCTAssertEqual(read.warnings.count, 2)
    }

    /// A bad record alone in its gzip member (as Common Crawl writes them) costs its member, not more: a page that
    /// quotes a WARC record's lines is not read for records — only a member that held a record before may hold another.
    func testAQuotedRecordInABadMemberIsNoRecord() throws {
        let good = records()
        let quoted = WARCFixture.record(uri: "http://example.com/quoted", block: WARCFixture.response("<p>quoted</p>"))
        let block = WARCFixture.response("<pre>\n" + String(decoding: quoted, as: UTF8.self) + "</pre>")
        let bad = WARCFixture.record(uri: "http://example.com/bad", block: block, contentLength: block.count + 50)
        let members = [good[0], bad, good[2]].map(WARCFixture.gzip)
        let read = try read(try temporaryFile(members.flatMap { $0 }, name: "quoted.warc.gz"))
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/2"])
        XCTAssertEqual(read.records.last?.offset, members[0].count + members[1].count)
        XCTAssertEqual(read.skipped, 1)
    }

    /// A WARC compressed whole with gzip is one member: a bad first record costs that record, not every record after
    /// it (the member was passed over whole, as a Common Crawl member of one record is), and the records in it give no
    /// length of their own — the last one's is not the file's (a CDX reader would fetch the whole file for it).
    func testABadFirstRecordOfAWholeCompressedFileCostsOnlyItself() throws {
        let good = records()
        let block = WARCFixture.response("<p>x</p>")
        let wrong = WARCFixture.record(uri: "http://example.com/wrong", block: block, contentLength: block.count + 30)
        let read = try read(try temporaryFile(WARCFixture.gzip(wrong + good.flatMap { $0 }), name: "whole-bad-first.warc.gz"))
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1", "http://example.com/2"])
        XCTAssertEqual(read.skipped, 1)
        let whole = try self.read(try temporaryFile(WARCFixture.gzip(good.flatMap { $0 }), name: "whole.warc.gz"))
        XCTAssertEqual(whole.records.map(\.length), [nil, nil, nil])
        // The one good record after a bad one in a member is not a member of its own either.
        let afterBad = try self.read(try temporaryFile(WARCFixture.gzip(wrong + good[0]), name: "bad-then-one.warc.gz"))
        XCTAssertEqual(afterBad.records.map(\.targetURI), ["http://example.com/0"])
        XCTAssertEqual(afterBad.records.map(\.length), [nil])
        XCTAssertEqual(whole.records.map(\.offset), [0, 0, 0])
    }

    /// A byte-order mark before a file's first record (some writers put one) does not cost the record.
    func testAByteOrderMarkBeforeTheFirstRecordIsPassedOver() throws {
        let good = records(), bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        for (name, bytes) in [("bom.warc", bom + good.flatMap { $0 }), ("bom.warc.gz", WARCFixture.gzip(bom + good.flatMap { $0 }))] {
            let read = try read(try temporaryFile(bytes, name: name))
            XCTAssertEqual(read.records.count, 3, name)
            XCTAssertEqual(read.skipped, 0, name)
        }
    }

    /// Recovery in a plain file passes over lines of any length (a crashed writer's zeros) to the next record.
    func testRecoveryPassesOverLinesOfOverAMegabyte() throws {
        let good = records()
        let wrong = WARCFixture.record(uri: "http://example.com/wrong", block: WARCFixture.response("<p>x</p>"), contentLength: 10)
        let zeros = [UInt8](repeating: 0, count: 3 << 20) + Array("\r\n".utf8)
        let url = try temporaryFile(good[0] + wrong + zeros + good[1], name: "zeros.warc")
        let read = try read(url)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1"])
        XCTAssertEqual(read.records[1].offset, good[0].count + wrong.count + zeros.count)
        XCTAssertEqual(read.skipped, 1)
    }

    func testARecordOverTheLimitIsSkippedAndTheNextOneRead() throws {
        let big = WARCFixture.record(uri: "http://example.com/big", block: WARCFixture.response(String(repeating: "x", count: 5000)))
        let members = [records()[0], big, records()[2]].map(WARCFixture.gzip)
        let url = try temporaryFile(members.flatMap { $0 }, name: "big.warc.gz")
        let read = try read(url, maxRecordBytes: 1000)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/2"])
        XCTAssertEqual(read.skipped, 1)
        XCTAssertTrue(read.warnings[0].contains("over the limit of 1000"), read.warnings[0])
    }

    /// A WARC compressed as one gzip member: a record over the limit is read through, and every record after it in
    /// the member is still read (recovering from it as from damage would discard the rest of the member).
    func testARecordOverTheLimitInASingleMemberKeepsTheRecordsAfterIt() throws {
        let big = WARCFixture.record(uri: "http://example.com/big", block: WARCFixture.response(String(repeating: "x", count: 5000)))
        let all = records()
        let url = try temporaryFile(WARCFixture.gzip(all[0] + big + all[1] + all[2]), name: "one-member.warc.gz")
        let read = try read(url, maxRecordBytes: 1000)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1", "http://example.com/2"])
        XCTAssertEqual(try read.records.last.map { try HTTPResponse(parsing: $0.block).body }, Array(bodies[2].utf8))
        XCTAssertEqual(read.skipped, 1)
        XCTAssertEqual(read.warnings.count, 1)
        XCTAssertTrue(read.warnings[0].contains("over the limit of 1000"), read.warnings[0])
    }

    /// The same in a plain file: the record after the one over the limit is read, at its own offset.
    func testARecordOverTheLimitInAPlainFileKeepsTheNextOffset() throws {
        let big = WARCFixture.record(uri: "http://example.com/big", block: WARCFixture.response(String(repeating: "x", count: 5000)))
        let all = records()
        let url = try temporaryFile(all[0] + big + all[1], name: "plain-big.warc")
        let read = try read(url, maxRecordBytes: 1000)
        XCTAssertEqual(read.records.map(\.targetURI), ["http://example.com/0", "http://example.com/1"])
        XCTAssertEqual(read.records[1].offset, all[0].count + big.count)
        XCTAssertEqual(read.skipped, 1)
    }

    func testAFileThatIsNotAWARC() throws {
        let url = try temporaryFile(Array("just some text\nand more\n".utf8), name: "text.warc")
        let read = try read(url)
        XCTAssertEqual(read.records.count, 0)
        XCTAssertEqual(read.skipped, 1)
        XCTAssertThrowsError(try WARCReader(path: "/nonexistent.warc") { _ in }) { XCTAssertTrue("\($0)".contains("/nonexistent.warc")) }
    }

    /// pywb's sample crawl (its sdist on PyPI): every record its CDXJ index lists is read at the same offset, with
    /// the same compressed length, URL, digest, status and media type.
    func testPywbSampleCrawlMatchesItsIndex() throws {
        let archive = ProcessInfo.processInfo.environment["KEEL_PYWB_SAMPLES"] ?? Self.defaultSamples
        let warc = URL(fileURLWithPath: archive).appendingPathComponent("warcs/iana.warc.gz")
        let cdxj = URL(fileURLWithPath: archive).appendingPathComponent("cdxj/iana.cdxj")
        guard FileManager.default.fileExists(atPath: warc.path) else {
            return XCTFail("\(warc.path) is missing: run scripts/fetch_web_fixtures.sh (the test suite does)")
        }
        let read = try read(warc, maxRecordBytes: 64 << 20)
        XCTAssertEqual(read.records.count, 343)
        XCTAssertEqual(read.skipped, 0)
        let byOffset = Dictionary(uniqueKeysWithValues: read.records.map { ($0.offset, $0) })
        let lines = try String(contentsOf: cdxj, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 171)
        for line in lines {
            let json = try XCTUnwrap(line.firstIndex(of: "{").map { line[$0...] })
            let entry = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String])
            let offset = try XCTUnwrap(Int(entry["offset"] ?? "")), length = try XCTUnwrap(Int(entry["length"] ?? ""))
            guard let record = byOffset[offset] else { XCTFail("no record at offset \(offset) (\(entry["url"] ?? ""))"); continue }
            XCTAssertEqual(record.length, length, "offset \(offset)")
            XCTAssertEqual(record.targetURI, entry["url"], "offset \(offset)")
            XCTAssertEqual(record.header("WARC-Payload-Digest").map { String($0.split(separator: ":").last!) }, entry["digest"],
                           "offset \(offset)")
            if record.type == "response" {
                let response = try HTTPResponse(parsing: record.block)
                XCTAssertEqual(String(response.status), entry["status"], "offset \(offset)")
                XCTAssertEqual(response.mediaType ?? "unk", entry["mime"], "offset \(offset)")
            } else {
                XCTAssertEqual(entry["mime"], "warc/revisit")
            }
        }
    }

    /// Where scripts/fetch_web_fixtures.sh unpacks pywb's samples (data/pywb/ of this package).
    private static var defaultSamples: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("data/pywb/sample_archive").path
    }
}
