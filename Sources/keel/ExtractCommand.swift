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
                JSON line per page, {"source", "url", "title", "text"}; pages with no text are counted, not written. \
                The output is written whole or not at all.
                """)

        @Argument(help: "HTML files, directories of them, or WARC files.")
        var inputs: [String]

        @Option(name: .shortAndLong, help: "JSONL file to write.")
        var out: String

        @Flag(help: "Keep comment sections.")
        var comments = false

        func run() throws {
            var reader = PageReader()
            reader.extractor.includeComments = comments
            let files = try inputs.flatMap(PageReader.files)
            var pages = 0, empty = 0
            let started = Date()
            try AtomicFile.write(to: URL(fileURLWithPath: out)) { handle in
                for file in files {
                    let counts = try reader.forEachPage(in: file, warn: { FileHandle.standardError.write(Data("warning: \($0)\n".utf8)) }) { page in
                        try handle.write(contentsOf: Data(page.record.line + [0x0A]))
                    }
                    pages += counts.pages
                    empty += counts.empty
                }
            }
            let seconds = Date().timeIntervalSince(started)
            FileHandle.standardError.write(Data(String(format: "%d pages (%d without text) in %.2f s, %.0f pages/s; wrote %@\n",
                                                       pages, empty, seconds, Double(pages) / max(seconds, 1e-9), out).utf8))
        }
    }
}
