import Foundation
import Glibc
@testable import KeelWeb
import XCTest

/// A response's body comes out as the server meant it — chunks joined, gzip undone — and its text in UTF-8
/// whatever encoding it was served in, found as the HTML standard finds it.
final class HTTPAndCharsetTests: XCTestCase {
    /// A gzip body that inflates to one byte more than `HTTPResponse.maximumDecodedBytes` (spaces): a decompression bomb,
    /// made once for the tests that need it.
    private static let gzipBomb = WARCFixture.gzip([UInt8](repeating: 0x20, count: HTTPResponse.maximumDecodedBytes + 1))

    func testChunkedAndGzippedBodies() throws {
        let chunked = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/html\r\n\r\n5\r\nHello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n".utf8)
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: chunked).body, as: UTF8.self), "Hello, world")
        // Archives often keep the header of a body they stored de-chunked.
        let stored = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n<html>plain</html>".utf8)
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: stored).body, as: UTF8.self), "<html>plain</html>")
        let gzipped = Array("HTTP/1.1 404 Not Found\r\nContent-Encoding: gzip\r\nContent-Type: TEXT/HTML; Charset=\"ISO-8859-1\"\r\n\r\n".utf8)
            + WARCFixture.gzip(Array("<p>zipped</p>".utf8))
        let response = try HTTPResponse(parsing: gzipped)
        XCTAssertEqual(response.status, 404)
        XCTAssertEqual(String(decoding: response.body, as: UTF8.self), "<p>zipped</p>")
        XCTAssertEqual(response.mediaType, "text/html")
        XCTAssertEqual(response.charset, "ISO-8859-1")
        // Cut short, as crawlers cut large bodies: what inflates is kept.
        let cut = Array("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".utf8)
            + WARCFixture.gzip(Array(String(repeating: "<p>long text</p>", count: 500).utf8)).prefix(60)
        XCTAssertTrue(String(decoding: try HTTPResponse(parsing: cut).body, as: UTF8.self).hasPrefix("<p>long text</p>"))
        // Damaged on the way: a wrong checksum at the end keeps the whole text, a byte flipped in the middle what came
        // before it; damaged from its first block, nothing (the compressed bytes were kept, and read as text). The
        // same for a Zstandard frame.
        let header = Array("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".utf8), text = String(repeating: "<p>long text</p>", count: 500)
        var wrongSum = WARCFixture.gzip(Array(text.utf8))
        wrongSum[wrongSum.count - 6] ^= 0xFF
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: header + wrongSum).body, as: UTF8.self), text)
        var flipped = WARCFixture.gzip(Array((text + String(repeating: "<p>other words</p>", count: 500)).utf8))
        flipped[flipped.count / 2] ^= 0xFF
        let partial = String(decoding: try HTTPResponse(parsing: header + flipped).body, as: UTF8.self)
        XCTAssertTrue(partial.hasPrefix("<p>long text</p>") && !partial.contains("\u{1F}"), partial.prefix(100).debugDescription)
        var damagedFirstBlock = WARCFixture.gzip(Array(text.utf8))
        for index in 10..<14 { damagedFirstBlock[index] ^= 0xFF }
        // (A damaged deflate stream may inflate to a few bytes before zlib sees the damage.)
        let fromDamaged = try HTTPResponse(parsing: header + damagedFirstBlock).body
        XCTAssertTrue(fromDamaged.count < 8 && !fromDamaged.starts(with: [0x1F, 0x8B]), "\(fromDamaged)")
        // A frame whose first block is of the reserved type 3.
        let frame: [UInt8] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x07, 0x00, 0x00]
        XCTAssertEqual(try HTTPResponse(parsing: Array("HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\n\r\n".utf8) + frame).body, [],
                       "a Zstandard frame whose block header is damaged")
        XCTAssertThrowsError(try HTTPResponse(parsing: Array("GET / HTTP/1.1\r\n\r\n".utf8))) { XCTAssertTrue("\($0)".contains("not an HTTP response")) }
        // A chunk size near Int.max (a damaged or hostile record): the chunk keeps what arrived, no overflow.
        let huge = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n<p>short</p>".utf8)
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: huge).body, as: UTF8.self), "<p>short</p>")
        // A body that inflates beyond 64 MiB (a thousandfold from 65 KB of gzip) is refused, not held in memory.
        let bomb = Array("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".utf8)
            + Self.gzipBomb
        XCTAssertThrowsError(try HTTPResponse(parsing: bomb)) { XCTAssertEqual("\($0)", "the body decodes to more than 64 MiB") }
    }

    /// Servers send labels that name no coding ("none", "utf-8"): the body is kept as it is, as warcio keeps it,
    /// rather than the page lost; codings listed one after another are undone from the last.
    func testUnknownContentCodingsLeaveTheBody() throws {
        for coding in ["none", "utf-8", "UTF-8", "text", "identity", ""] {
            let block = Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: \(coding)\r\n\r\n<p>as sent</p>".utf8)
            XCTAssertEqual(String(decoding: try HTTPResponse(parsing: block).body, as: UTF8.self), "<p>as sent</p>", coding)
        }
        let twice = Array("HTTP/1.1 200 OK\r\nContent-Encoding: gzip, identity, gzip\r\n\r\n".utf8)
            + WARCFixture.gzip(WARCFixture.gzip(Array("<p>twice</p>".utf8)))
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: twice).body, as: UTF8.self), "<p>twice</p>")
        // Zstandard, which CDNs serve: `printf '<p>Zstandard-coded pages come from CDNs.</p>' | zstd -c --no-check`.
        let frame: [UInt8] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x61, 0x01, 0x00] + Array("<p>Zstandard-coded pages come from CDNs.</p>".utf8)
        let zstd = Array("HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\n\r\n".utf8) + frame
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: zstd).body, as: UTF8.self), "<p>Zstandard-coded pages come from CDNs.</p>")
        // Unix compress (LZW) is a real coding Keel does not undo: its bytes are refused, not read as a page.
        let lzw = Array("HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\n\r\n\u{1f}\u{9d}\u{90}<".utf8)
        XCTAssertThrowsError(try HTTPResponse(parsing: lzw)) { XCTAssertTrue("\($0)".contains("Content-Encoding compress (LZW)"), "\($0)") }
    }

    /// A WARC response under an unknown coding becomes a page; one that cannot be read (a body over the size limit)
    /// is counted as skipped and named in a warning, not lost without a word.
    func testPagesAreReadOrCountedAsSkipped() throws {
        let page = "<html><body><article><p>This page was served with a content coding that names no coding at all.</p></article></body></html>"
        let none = WARCFixture.record(uri: "http://example.com/none",
                                      block: WARCFixture.response(page, headers: ["Content-Type: text/html", "Content-Encoding: none"]))
        let bomb = WARCFixture.record(uri: "http://example.com/bomb", block: Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n".utf8)
            + Self.gzipBomb)
        let dns = WARCFixture.record(uri: "dns:example.com", block: Array("20240102030405\nexample.com.\t300\tIN\tA\t93.184.216.34\n".utf8))
        let url = try temporaryFile(WARCFixture.gzip(none) + WARCFixture.gzip(bomb) + WARCFixture.gzip(dns), name: "codings.warc.gz")
        var warnings: [String] = [], texts: [String] = []
        let counts = try PageReader().forEachPage(in: url.path, warn: { warnings.append($0) }) { texts.append($0.text) }
        XCTAssertEqual(texts, ["This page was served with a content coding that names no coding at all."])
        XCTAssertEqual(counts.pages, 1)
        XCTAssertEqual(counts.skipped, 1, "the body too large to decode; the dns: record is no HTTP")
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings.first?.contains("record at offset \(WARCFixture.gzip(none).count) skipped: the body decodes to more than 64 MiB") == true,
                      "\(warnings)")
    }

    /// A page the crawler cut short is marked so in its record (its text may end mid-sentence), and the responses
    /// that are not pages — another status, another type — are counted, so that the summary accounts for the crawl.
    func testTruncatedPagesAreMarkedAndOtherResponsesCounted() throws {
        let text = "<html><body><article><p>A page long enough that the crawler stopped fetching it after a megabyte of it"
        let cut = WARCFixture.record(uri: "http://example.com/cut", block: WARCFixture.response(text), headers: ["WARC-Truncated: length"])
        let whole = WARCFixture.record(uri: "http://example.com/whole", block: WARCFixture.response("<p>A whole page.</p>"))
        let pdf = WARCFixture.record(uri: "http://example.com/a.pdf", block: WARCFixture.response("%PDF-1.4", headers: ["Content-Type: application/pdf"]))
        let moved = WARCFixture.record(uri: "http://example.com/old", block: Array("HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\n\r\n".utf8))
        let url = try temporaryFile([cut, pdf, whole, moved].flatMap(WARCFixture.gzip), name: "truncated.warc.gz")
        var pages: [PageReader.Page] = []
        let counts = try PageReader().forEachPage(in: url.path, warn: { XCTFail($0) }) { pages.append($0) }
        XCTAssertEqual(pages.map(\.url), ["http://example.com/cut", "http://example.com/whole"])
        XCTAssertEqual(pages.map(\.truncated), ["length", nil])
        let line = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(pages[0].record.line)) as? [String: String])
        XCTAssertEqual(line["truncated"], "length")
        XCTAssertNil(try XCTUnwrap(JSONSerialization.jsonObject(with: Data(pages[1].record.line)) as? [String: String])["truncated"])
        XCTAssertEqual([counts.pages, counts.truncated, counts.notPages, counts.skipped, counts.empty], [2, 1, 2, 0, 0])
    }

    func testBrotliBodies() throws {
        // brotli.compress(b"<html><body><p>Brotli-coded pages are common on the modern web.</p></body></html>"), Python's
        // brotli 1.x: the reference encoder.
        let coded: [UInt8] = [27, 80, 0, 232, 141, 211, 37, 180, 87, 249, 44, 189, 225, 245, 58, 30, 156, 55, 217, 161, 20, 73, 73,
                              30, 31, 33, 216, 128, 3, 151, 166, 69, 39, 88, 121, 28, 54, 224, 16, 18, 216, 182, 7, 154, 214, 112,
                              6, 71, 142, 233, 237, 171, 100, 28, 253, 17, 91, 208, 19, 232, 138, 220, 240, 112, 161, 147, 62]
        let header = Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\n\r\n".utf8)
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: header + coded).body, as: UTF8.self),
                       "<html><body><p>Brotli-coded pages are common on the modern web.</p></body></html>")
        // A body stored decoded under the header stays as it is.
        XCTAssertEqual(String(decoding: try HTTPResponse(parsing: header + Array("<p>plain</p>".utf8)).body, as: UTF8.self), "<p>plain</p>")
    }

    /// A page is HTML or XHTML by its Content-Type (also one that leaves out the semicolon before its charset), or by
    /// the crawler's sniffing when the server declared no type; another declared type is not a page.
    func testPagesAreFoundByTheirTypeOrTheCrawlersSniffing() throws {
        func response(_ contentType: String?) throws -> HTTPResponse {
            try HTTPResponse(parsing: Array(("HTTP/1.1 200 OK\r\n" + (contentType.map { "Content-Type: \($0)\r\n" } ?? "") + "\r\n<p>x</p>").utf8))
        }
        XCTAssertTrue(PageReader.isHTML(try response("text/html; charset=utf-8"), identified: nil))
        XCTAssertTrue(PageReader.isHTML(try response("application/xhtml+xml"), identified: nil))
        XCTAssertTrue(PageReader.isHTML(try response("text/html charset=utf-8"), identified: nil))
        XCTAssertEqual(try response("text/html charset=utf-8").charset, "utf-8")
        XCTAssertTrue(PageReader.isHTML(try response(nil), identified: "text/html"))
        XCTAssertFalse(PageReader.isHTML(try response(nil), identified: nil))
        XCTAssertFalse(PageReader.isHTML(try response("application/pdf"), identified: "text/html"), "a declared type stands")
    }

    func testTheEncodingIsFoundInTheStandardsOrder() {
        let meta = Array("<html><head><META Charset='koi8-r'></head>".utf8)
        XCTAssertEqual(Charset.detect([0xef, 0xbb, 0xbf] + meta, httpCharset: "iso-8859-2").name, "UTF-8", "a BOM comes first")
        XCTAssertEqual(Charset.detect(meta, httpCharset: "iso-8859-2").name, "ISO-8859-2", "then the HTTP header")
        XCTAssertEqual(Charset.detect(meta, httpCharset: nil).name, "KOI8-R", "then <meta charset>")
        let equiv = Array(#"<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">"#.utf8)
        XCTAssertEqual(Charset.detect(equiv, httpCharset: nil).name, "CP932", "Shift_JIS is read with Microsoft's extensions")
        XCTAssertEqual(Charset.detect(equiv, httpCharset: nil).source, .meta)
        XCTAssertEqual(Charset.detect(Array("<p>naïve</p>".utf8), httpCharset: nil).name, "UTF-8", "valid UTF-8 bytes")
        XCTAssertEqual(Charset.detect([0x3c, 0x70, 0x3e, 0xe9, 0x3c], httpCharset: nil).name, "WINDOWS-1252", "otherwise windows-1252")
        XCTAssertEqual(Charset.detect(meta, httpCharset: "latin1").name, "WINDOWS-1252", "latin1 means windows-1252")
        XCTAssertEqual(Charset.detect(meta, httpCharset: "no-such-charset").name, "KOI8-R", "an unknown label is passed over")
    }

    /// Labels that would decode a page wrongly: an empty one (iconv's locale encoding), UTF-32 and UTF-7 (no encodings of
    /// the web's) are passed over; UTF-16 declared for a page without zero bytes is UTF-8; a legacy encoding declared for
    /// valid UTF-8 with letters outside ASCII (a mislabelled page) gives way to UTF-8; Japanese pages are read with
    /// Microsoft's extensions (① is 0x87 0x40 in Shift_JIS as browsers read it; glibc's SHIFT_JIS has no such character).
    func testLabelsThatWouldMisreadAPageAreNotTaken() {
        let ascii = Array("<p>plain text</p>".utf8)
        // Also labels iconv knows that are not the standard's, for UTF-16 ("utf16", "ucs-2be", "unicodebig": an ASCII page
        // became CJK noise) or EBCDIC ("ibm037"), which reads no page as a browser does.
        for label in ["", "utf-32", "UTF-7", "ucs-4", "utf16", "ucs-2be", "unicodebig", "ibm037"] {
            let page = Array("<meta charset=\"\(label)\">".utf8) + ascii
            XCTAssertEqual(Charset.detect(page, httpCharset: nil).source, .bytes, "<meta charset=\"\(label)\"> is passed over")
            XCTAssertEqual(Charset.detect(ascii, httpCharset: label).source, .bytes, "charset=\(label) is passed over")
        }
        for label in ["unicode", "ucs-2", "utf-16"] {
            XCTAssertEqual(Charset.detect(Array("<meta charset=\"\(label)\">".utf8) + ascii, httpCharset: nil).name, "UTF-8", label)
            XCTAssertEqual(Charset.detect(ascii, httpCharset: label).name, "UTF-8", label)
        }
        let utf8 = Array("<p>naïve café, 日本</p>".utf8)
        XCTAssertEqual(Charset.detect(utf8, httpCharset: "iso-8859-1").name, "UTF-8")
        XCTAssertEqual(Charset.detect(Array("<meta charset=\"windows-1251\">".utf8) + utf8, httpCharset: nil).name, "UTF-8")
        XCTAssertEqual(Charset.detect(ascii, httpCharset: "iso-8859-2").name, "ISO-8859-2", "ASCII alone keeps the declaration")
        XCTAssertEqual(Charset.detect(ascii, httpCharset: "koi8-r").name, "KOI8-R", "an encoding iconv knows, ASCII-compatible")
        // Vietnamese windows-1258, whose glibc decoder holds its last character back until the input ends; the standard's
        // hyphenated Shift_JIS label (glibc's own SJIS reads 0x5C as ¥: Keel reads it as CP932, as browsers do).
        XCTAssertEqual(Charset.detect(ascii, httpCharset: "windows-1258").name, "WINDOWS-1258")
        XCTAssertEqual(Charset.detect(ascii, httpCharset: "shift-jis").name, "CP932")
        let japanese = Charset.normalized("shift_jis")!
        XCTAssertEqual(Charset.decode([0x87, 0x40, 0x87, 0x54], charset: japanese), "①Ⅰ")
        XCTAssertEqual(Charset.decode([0xad, 0xa1], charset: Charset.normalized("euc-jp")!), "①")
        // A UTF-16 page's byte order mark is dropped, as UTF-8's is.
        XCTAssertEqual(Charset.decode([0xff, 0xfe, 0x61, 0x00], charset: "UTF-16LE"), "a")
        XCTAssertEqual(Charset.decode([0xfe, 0xff, 0x00, 0x61], charset: "UTF-16BE"), "a")
    }

    /// `text` in `charset`, by glibc's iconv (the reference encoder).
    private func encoded(_ text: String, _ charset: String) -> [UInt8] {
        let converter = iconv_open(charset, "UTF-8")
        defer { iconv_close(converter) }
        var input = Array(text.utf8), output = [UInt8](repeating: 0, count: input.count * 4)
        var inLeft = input.count, outLeft = output.count
        input.withUnsafeMutableBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes in
                var inPointer: UnsafeMutablePointer<CChar>? = inBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
                var outPointer: UnsafeMutablePointer<CChar>? = outBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
                XCTAssertNotEqual(iconv(converter, &inPointer, &inLeft, &outPointer, &outLeft), -1, charset)
            }
        }
        return Array(output[..<(output.count - outLeft)])
    }

    func testUndeclaredLegacyEncodingsAreGuessedFromTheBytes() {
        for (text, charsets) in [
            ("Le château est situé près de la rivière, où les élèves étudient l'été.", ["WINDOWS-1252"]),
            ("Привет, мир! Это простой текст на русском языке для проверки кодировки.", ["WINDOWS-1251", "KOI8-R"]),
            ("Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.", ["WINDOWS-1253"]),
            ("这是一个用于测试编码检测的简体中文句子，内容很普通。", ["GB18030"]),
            ("これは文字コードの判定を確かめるための日本語の文章です。", ["CP932", "EUC-JP-MS"]),
            ("이것은 인코딩 감지를 확인하기 위한 한국어 문장입니다.", ["CP949"]),
        ] {
            for charset in charsets {
                let page = Array("<html><body><p>".utf8) + encoded(text, charset) + Array("</p></body></html>".utf8)
                let found = Charset.detect(page, httpCharset: nil)
                XCTAssertEqual(found.name, charset, text)
                XCTAssertEqual(found.source, .bytes)
                XCTAssertTrue(Charset.decode(page, charset: found.name).contains(text), charset)
            }
        }
    }

    func testTextIsConvertedToUTF8() {
        // "Привет" in windows-1251, "日本" in Shift_JIS, "café" in windows-1252, "中文" in GBK.
        XCTAssertEqual(Charset.decode([0xcf, 0xf0, 0xe8, 0xe2, 0xe5, 0xf2], charset: "WINDOWS-1251"), "Привет")
        XCTAssertEqual(Charset.decode([0x93, 0xfa, 0x96, 0x7b], charset: "SHIFT_JIS"), "日本")
        XCTAssertEqual(Charset.decode([0x63, 0x61, 0x66, 0xe9], charset: "WINDOWS-1252"), "café")
        XCTAssertEqual(Charset.decode([0xd6, 0xd0, 0xce, 0xc4], charset: "GB18030"), "中文")
        // An invalid sequence is replaced, and the text around it kept.
        XCTAssertEqual(Charset.decode([0x61, 0x81, 0x62], charset: "WINDOWS-1252"), "a\u{FFFD}b")
        XCTAssertEqual(Charset.decode([0x61, 0x93, 0xfa, 0x93], charset: "SHIFT_JIS"), "a日\u{FFFD}", "a sequence cut short at the end")
        XCTAssertEqual(Charset.decode([0xef, 0xbb, 0xbf, 0x61], charset: "UTF-8"), "a", "the BOM is dropped")
        // glibc's windows-1258 holds a letter back until it knows no combining tone mark follows: the page's last
        // character comes only when the decoder is told the input ended.
        XCTAssertEqual(Charset.decode([0x48, 0xe0, 0x20, 0x4e, 0x6f, 0x69], charset: "WINDOWS-1258"), "Hà Noi")
        XCTAssertEqual(Charset.decode([0x48, 0xe0], charset: "WINDOWS-1258"), "Hà")
    }

    /// An invalid sequence in UTF-16 or UTF-32 is passed over a whole code unit at a time: the text after it stays
    /// aligned and decodes as it was written.
    func testAnInvalidCodeUnitInUTF16Or32KeepsTheRestOfThePage() {
        let before = "<p>Before the lone surrogate</p>", after = "<p>and after it, the page goes on: naïve café 日本</p>"
        let loneHigh: [UInt8] = [0x00, 0xd8], loneLow: [UInt8] = [0x00, 0xdc]
        for lone in [loneHigh, loneLow] {
            let page = encoded(before, "UTF-16LE") + lone + encoded(after, "UTF-16LE")
            XCTAssertEqual(Charset.decode(page, charset: "UTF-16LE"), before + "\u{FFFD}" + after)
        }
        let big = encoded(before, "UTF-16BE") + [0xdc, 0x00] + encoded(after, "UTF-16BE")
        XCTAssertEqual(Charset.decode(big, charset: "UTF-16BE"), before + "\u{FFFD}" + after)
        let wide = encoded(before, "UTF-32LE") + [0x00, 0xd8, 0x00, 0x00] + encoded(after, "UTF-32LE")
        XCTAssertEqual(Charset.decode(wide, charset: "UTF-32LE"), before + "\u{FFFD}" + after)
        // A page cut inside its last code unit loses only that unit.
        XCTAssertEqual(Charset.decode(encoded(before, "UTF-16LE") + [0x41], charset: "UTF-16LE"), before + "\u{FFFD}")
    }
}
