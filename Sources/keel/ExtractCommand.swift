import ArgumentParser
import Foundation
import KeelCore
import KeelWeb

extension DataCommand {
    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Extract the main text of web pages (HTML files, WARC responses) as JSONL.",
            discussion: """
                Inputs: HTML files (.html, .htm), directories of them, and WARC or WARC.gz files (their text/html \
                responses). Each page is decoded to UTF-8 (encoding from the HTTP header, a byte order mark or \
                <meta>), parsed by an HTML5 parser, and its main content kept (docs/data.md says how). Output: one \
                JSON line per page, {"source", "url", "title", "text"}; pages with no text are counted, not written.
                """)

        @Argument(help: "HTML files, directories of them, or WARC files.")
        var inputs: [String]

        @Option(name: .shortAndLong, help: "JSONL file to write.")
        var out: String

        @Flag(help: "Keep comment sections.")
        var comments = false

        func run() throws {
            var extractor = ContentExtractor()
            extractor.includeComments = comments
            let output = URL(fileURLWithPath: out)
            var lines = Data(), pages = 0, empty = 0
            let started = Date()
            func emit(source: String, url: String?, bytes: [UInt8], httpCharset: String?) throws {
                let charset = Charset.detect(bytes, httpCharset: httpCharset)
                let page = extractor.extract(html: Charset.decode(bytes, charset: charset.name))
                pages += 1
                guard !page.text.isEmpty else { return empty += 1 }
                var record: [String: Any] = ["source": source, "text": page.text]
                if let url { record["url"] = url }
                if let title = page.title { record["title"] = title }
                lines.append(try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes]))
                lines.append(0x0a)
            }
            for input in inputs {
                for file in try Self.files(input) {
                    if file.hasSuffix(".warc") || file.hasSuffix(".warc.gz") {
                        let reader = try WARCReader(path: file) { FileHandle.standardError.write(Data("warning: \($0)\n".utf8)) }
                        while let record = try reader.next() {
                            guard record.type == "response", let response = try? HTTPResponse(parsing: record.block),
                                  response.status == 200, response.mediaType == "text/html" else { continue }
                            try emit(source: "\(file)@\(record.offset)", url: record.targetURI, bytes: response.body,
                                     httpCharset: response.charset)
                        }
                    } else {
                        let bytes: [UInt8]
                        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
                            throw KeelError("cannot read \(file): \(error.localizedDescription)")
                        }
                        try emit(source: file, url: nil, bytes: bytes, httpCharset: nil)
                    }
                }
            }
            try AtomicFile.write(lines, to: output)
            let seconds = Date().timeIntervalSince(started)
            FileHandle.standardError.write(Data(String(format: "%d pages (%d without text) in %.2f s, %.0f pages/s; wrote %@\n",
                                                       pages, empty, seconds, Double(pages) / max(seconds, 1e-9), out).utf8))
        }

        /// The files `input` names: itself, or the HTML and WARC files under a directory, sorted.
        static func files(_ input: String) throws -> [String] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw KeelError("\(input): no such file or directory")
            }
            guard isDirectory.boolValue else { return [input] }
            let names = FileManager.default.enumerator(atPath: input)?.compactMap { $0 as? String } ?? []
            return names.filter { [".html", ".htm", ".warc", ".warc.gz"].contains(where: $0.lowercased().hasSuffix) }
                .sorted().map { (input as NSString).appendingPathComponent($0) }
        }
    }
}
