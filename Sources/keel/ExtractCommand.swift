import ArgumentParser
import Foundation
import KeelCore
import KeelWeb

extension DataCommand {
    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Extract the main text of web pages (HTML files, WARC responses) as JSONL.",
            discussion: """
                Inputs: HTML files (.html, .htm), directories of them, WARC or WARC.gz files (their text/html \
                responses), and JSONL files of fetched pages (an "html" field, and "url" if known). Each page is decoded to UTF-8 (encoding from the HTTP header, a byte order mark or \
                <meta>), parsed by an HTML5 parser, and its main content kept (docs/data.md says how). Output: one \
                JSON line per page, {"source", "url", "title", "declared_language", "date", "text"} (what is \
                known); pages with no text are counted, not written. \
                The output is written whole or not at all.
                """)

        @Argument(help: "HTML files, directories of them, WARC files, or JSONL files with an \"html\" field.")
        var inputs: [String]

        @Option(name: .shortAndLong, help: "JSONL file to write.")
        var out: String

        @Flag(help: "Keep comment sections.")
        var comments = false

        @Flag(help: "Write the text as Markdown: headings, lists, quotes, code fences, tables.")
        var markdown = false

        @Flag(help: "Render pages that still give little text (under 100 characters) with headless Chromium, then extract them.")
        var render = false

        @Option(help: "Seconds a page may take to render before its browser is stopped.")
        var renderTimeout = 15.0

        @Option(help: "Browsers running at once.")
        var renderWorkers = 2

        @Option(help: "The headless Chromium binary (default: chromium-headless-shell, then chromium, on PATH).")
        var chromium: String?

        func validate() throws {
            guard renderTimeout > 0 else { throw ValidationError("--render-timeout must be positive") }
            guard renderWorkers > 0 else { throw ValidationError("--render-workers must be positive") }
            try OutputFiles.check([("--out", out)], inputs: inputs)
        }

        func run() throws {
            var reader = PageReader()
            reader.extractor.includeComments = comments
            reader.extractor.markdown = markdown
            var renderer = render ? try PageRenderer(browser: chromium) : nil
            renderer?.timeout = renderTimeout
            let (files, repeated) = try PageReader.inputFiles(inputs)
            if repeated > 0 {
                StandardStreams.error("note: \(repeated) file(s) named more than once, read once\n")
            }
            var counts = PageReader.Counts(), rendered = 0, renderFailures = 0
            let started = Date()
            func warn(_ message: String) { StandardStreams.error("warning: \(message)\n") }
            try AtomicFile.write(to: URL(fileURLWithPath: out)) { handle in
                // Pages to render wait until every file is read, then render in parallel and come last.
                var waiting: [(page: PageReader.Page, html: [UInt8])] = []
                for file in files {
                    counts += try reader.forEachPage(in: file, warn: warn, minimumCharacters: renderer == nil ? 1 : 100,
                                                     littleText: renderer == nil ? nil : { waiting.append(($0, $1)) }) { page in
                        try handle.write(contentsOf: Data(page.record.line + [0x0A]))
                    }
                }
                guard let renderer, !waiting.isEmpty else { return }
                StandardStreams.error("rendering \(waiting.count) page(s) with \(renderer.browser)\n")
                for (waited, result) in zip(waiting, renderer.renderAll(waiting.map(\.html), workers: renderWorkers)) {
                    var page = waited.page
                    switch result {
                    case .success(let dom):
                        rendered += 1
                        let extracted = reader.extractor.extract(html: dom)
                        // Rendering can only add: keep what the page gave before if the browser's DOM has less.
                        if extracted.text.count > page.text.count { page.text = extracted.text }
                        page.title = page.title ?? extracted.title
                        page.declaredLanguage = page.declaredLanguage ?? extracted.language
                        page.date = page.date ?? extracted.date
                    case .failure(let error):
                        renderFailures += 1
                        warn("\(page.source): not rendered: \(error.message)")
                    }
                    if page.text.isEmpty { counts.empty += 1 } else { try handle.write(contentsOf: Data(page.record.line + [0x0A])) }
                }
            }
            let seconds = Date().timeIntervalSince(started)
            var notes = render ? String(format: "; %d rendered, %d could not be", rendered, renderFailures) : ""
            if counts.truncated > 0 { notes += "; \(counts.truncated) cut short by the crawler, marked \"truncated\"" }
            // Each was warned of above; the count says that the pages read are not all there were.
            if counts.skipped > 0 { notes += "; \(counts.skipped) WARC record(s) skipped" }
            if counts.notPages > 0 { notes += "; \(counts.notPages) other response(s) passed over: not status 200, or not HTML" }
            StandardStreams.error(String(format: "%d pages (%d without text%@) in %.2f s, %.0f pages/s; wrote %@\n",
                                         counts.pages, counts.empty, notes, seconds, Double(counts.pages) / max(seconds, 1e-9), out))
        }
    }
}
