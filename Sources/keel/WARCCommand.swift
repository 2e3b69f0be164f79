import ArgumentParser
import Foundation
import KeelCore
import KeelWeb

extension DataCommand {
    struct Warc: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the records of WARC files: one JSON line per record, as a CDXJ index describes them.",
            discussion: """
                Reads WARC and WARC.gz files (Common Crawl's layout: one gzip member per record) record by record. \
                Each line gives the record's offset and length in the file (its gzip member), type, target URL, \
                date, and for responses the HTTP status, media type and payload digest. A damaged record — a \
                truncated or corrupt gzip member, a wrong Content-Length, junk — is skipped with a warning naming \
                the file and offset, and reading goes on; the summary counts them.
                """)

        @Argument(help: "WARC or WARC.gz files.")
        var files: [String]

        @Option(help: "Skip records whose block is larger than this many megabytes.")
        var maxRecordMb = 64

        func validate() throws {
            guard (1...(1 << 20)).contains(maxRecordMb) else { throw ValidationError("--max-record-mb must be 1 to \(1 << 20)") }
        }

        func run() throws {
            var total = 0, skipped = 0
            for file in files {
                let reader = try WARCReader(path: file, maxRecordBytes: maxRecordMb << 20) {
                    StandardStreams.error("warning: \($0)\n")
                }
                while let record = try reader.next() {
                    total += 1
                    var line: [String: Any] = ["file": file, "offset": record.offset, "type": record.type ?? ""]
                    if let length = record.length { line["length"] = length }
                    if let uri = record.targetURI { line["url"] = uri }
                    if let date = record.date { line["date"] = date }
                    if let digest = record.header("WARC-Payload-Digest") { line["digest"] = digest }
                    if record.type == "response", let response = try? HTTPResponse(parsing: record.block) {
                        line["status"] = response.status
                        if let type = response.mediaType { line["mime"] = type }
                    }
                    let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                }
                skipped += reader.skipped
            }
            StandardStreams.error("\(total) records read, \(skipped) skipped\n")
        }
    }
}
