import Foundation
import KeelCore
import KeelData

/// The pages `keel data extract` reads — HTML files, directories of them, WARC files (their `text/html` responses
/// with status 200) — each decoded to UTF-8 and reduced to its main text.
public struct PageReader: Sendable {
    /// One page's main text and what is known of it.
    public struct Page: Sendable {
        /// The file, or `file@offset` for a WARC record.
        public var source: String
        public var url: String?
        public var title: String?
        /// The language the page declares (its primary subtag), and its publication date (YYYY-MM-DD).
        public var declaredLanguage: String?
        public var date: String?
        /// Why the crawler cut the page short (its WARC record's `WARC-Truncated`: "length", "time", "disconnect",
        /// "unspecified"): the text is the part that was fetched, perhaps ending mid-sentence. Nil for a whole page.
        public var truncated: String?
        public var text: String

        /// The page as a JSON line (without its newline) — source, url, title, declared_language, date, truncated, text —
        /// and where the text's value lies in it.
        public var record: (line: [UInt8], textValue: Range<Int>) {
            var line: [UInt8] = Array("{".utf8)
            for (key, value) in [("source", source), ("url", url), ("title", title), ("declared_language", declaredLanguage), ("date", date), ("truncated", truncated)] {
                guard let value else { continue }
                JSONString.append(key, to: &line)
                line.append(UInt8(ascii: ":"))
                JSONString.append(value, to: &line)
                line.append(UInt8(ascii: ","))
            }
            JSONString.append("text", to: &line)
            line.append(UInt8(ascii: ":"))
            let start = line.count
            JSONString.append(text, to: &line)
            let textValue = start..<line.count
            line.append(UInt8(ascii: "}"))
            return (line, textValue)
        }
    }

    public var extractor = ContentExtractor()

    public init() {}

    /// The files `input` names: itself, or the HTML and WARC files under a directory, sorted (JSON Lines are named
    /// one by one: a directory's other JSON files, or a pipeline's own output under it, are not pages).
    public static func files(_ input: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw KeelError("\(input): no such file or directory")
        }
        guard isDirectory.boolValue else { return [input] }
        let names = FileManager.default.enumerator(atPath: input)?.compactMap { $0 as? String } ?? []
        return names.map { (input as NSString).appendingPathComponent($0) }
            .filter { isWARC($0) || [".html", ".htm"].contains(where: $0.lowercased().hasSuffix) }.sorted()
    }

    /// The files of `inputs` (`files` of each), in order, each once: a file named twice — listed and under a listed
    /// directory, or through a symbolic link — would be read twice, its pages doubled. `repeated` counts the names
    /// left out.
    public static func inputFiles(_ inputs: [String]) throws -> (files: [String], repeated: Int) {
        let named = try inputs.flatMap(files)
        var seen = Set<String>()
        let unique = named.filter { seen.insert(URL(fileURLWithPath: $0).resolvingSymlinksInPath().path).inserted }
        return (unique, named.count - unique.count)
    }

    /// Whether `file` is read as a WARC file (by its name, in any case).
    public static func isWARC(_ file: String) -> Bool {
        let name = file.lowercased()
        return name.hasSuffix(".warc") || name.hasSuffix(".warc.gz")
    }

    /// Whether `file` is read as JSON Lines: a name `DocumentSource` reads so (.jsonl, .ndjson or .json, each also
    /// with .gz, .zst or .zstd after it: C4's and Dolma's .json.gz shards too).
    public static func isJSONL(_ file: String) -> Bool {
        DocumentSource.classify(name: URL(fileURLWithPath: file).lastPathComponent).format == .jsonl
    }

    /// What `forEachPage` found in a file.
    public struct Counts: Sendable {
        /// Pages read (HTML files, JSON Lines records, WARC responses with status 200 and an HTML type).
        public var pages = 0
        /// Pages with no text.
        public var empty = 0
        /// WARC records skipped: damaged or over the size limit, or HTTP responses whose message cannot be read (a
        /// body that decodes to more than `HTTPResponse.maximumDecodedBytes`), each reported to `warn`.
        public var skipped = 0
        /// Pages the crawler cut short (`Page.truncated`).
        public var truncated = 0
        /// HTTP responses that are not pages: another status than 200 (redirects, errors) or another type than HTML
        /// (PDFs, images, scripts) — in a crawl, often as many as the pages.
        public var notPages = 0

        /// Nothing found yet.
        public init() {}

        /// Adds another file's counts.
        public static func += (total: inout Counts, more: Counts) {
            total.pages += more.pages
            total.empty += more.empty
            total.skipped += more.skipped
            total.truncated += more.truncated
            total.notPages += more.notPages
        }
    }

    /// Calls `body` with every page of `file` that has text, and returns what it found. With `littleText`, a page
    /// with fewer than `minimumCharacters` of text goes there instead, with its UTF-8 HTML (to be rendered, say).
    @discardableResult
    public func forEachPage(in file: String, warn: @escaping (String) -> Void, minimumCharacters: Int = 1,
                            littleText: ((Page, [UInt8]) throws -> Void)? = nil,
                            _ body: (Page) throws -> Void) throws -> Counts {
        var counts = Counts()
        func emit(source: String, url: String?, bytes: [UInt8], httpCharset: String?, truncated: String? = nil) throws {
            let charset = Charset.detect(bytes, httpCharset: httpCharset)
            let html = Charset.decode(bytes, charset: charset.name)
            let page = extractor.extract(html: html)
            counts.pages += 1
            if truncated != nil { counts.truncated += 1 }
            let found = Page(source: source, url: url, title: page.title, declaredLanguage: page.language, date: page.date,
                             truncated: truncated, text: page.text)
            if let littleText, page.text.count < minimumCharacters { return try littleText(found, Array(html.utf8)) }
            guard !page.text.isEmpty else { return counts.empty += 1 }
            try body(found)
        }
        if Self.isJSONL(file) {
            // Pages already fetched, one JSON object each: the HTML in "html", the address in "url" if any.
            try DocumentSource(url: URL(fileURLWithPath: file)).forEachRecord(field: "html") { record in
                let line = Data(buffer: record.line)
                let url = line.range(of: Data("\"url\"".utf8)) == nil ? nil
                    : (try? JSONSerialization.jsonObject(with: line) as? [String: Any])?["url"] as? String
                try emit(source: "\(file):\(record.number)", url: url, bytes: Array(record.text), httpCharset: "utf-8")
            }
        } else if Self.isWARC(file) {
            let reader = try WARCReader(path: file, warn: warn)
            while let record = try reader.next() {
                guard record.type == "response" else { continue }
                let response: HTTPResponse
                do { response = try HTTPResponse(parsing: record.block) } catch {
                    // A crawler's dns: responses are no HTTP; an HTTP response that cannot be read may have been a
                    // page, so it is counted and named rather than lost.
                    if let uri = record.targetURI?.lowercased(), uri.hasPrefix("http:") || uri.hasPrefix("https:") {
                        counts.skipped += 1
                        warn("\(file): record at offset \(record.offset) skipped: \(error)")
                    }
                    continue
                }
                guard response.status == 200, Self.isHTML(response, identified: record.header("WARC-Identified-Payload-Type")) else {
                    counts.notPages += 1
                    continue
                }
                try emit(source: "\(file)@\(record.offset)", url: record.targetURI, bytes: response.body, httpCharset: response.charset,
                         truncated: record.header("WARC-Truncated"))
            }
            counts.skipped += reader.skipped
        } else {
            // Read whole as one page's HTML: a compressed file of another kind would be one page of noise.
            // By the magic bytes too: a gzip file named x.html is no page either.
            guard DocumentSource(url: URL(fileURLWithPath: file)).compression == .none else {
                throw KeelError("\(file): compressed, but neither JSON Lines (.jsonl, .ndjson, .json) nor WARC (.warc.gz) by its name; an HTML page is read uncompressed")
            }
            let bytes: [UInt8]
            do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
                throw KeelError("cannot read \(file): \(AtomicFile.systemReason(error))")
            }
            try emit(source: file, url: nil, bytes: bytes, httpCharset: nil)
        }
        return counts
    }

    /// Whether a response is a page: HTML or XHTML by its `Content-Type`, or — when the server sent none — by the
    /// type the crawler found in its bytes (Common Crawl's `WARC-Identified-Payload-Type`).
    static func isHTML(_ response: HTTPResponse, identified: String?) -> Bool {
        let html: Set<String> = ["text/html", "application/xhtml+xml"]
        if let declared = response.mediaType { return html.contains(declared) }
        return identified.map { html.contains($0.prefix { $0 != ";" }.trimmingCharacters(in: .whitespaces).lowercased()) } ?? false
    }

}
