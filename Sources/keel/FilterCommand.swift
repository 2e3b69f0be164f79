import ArgumentParser
import Foundation
import KeelCore
import KeelData
import KeelWeb

extension DataCommand {
    struct Filter: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove low-quality documents with the Gopher, C4 and FineWeb rules, as datatrove applies them.",
            discussion: """
                Inputs: JSONL files (optionally .gz or .zst) with a "text" field, such as `keel data extract` \
                writes; other fields pass through. Rule sets, applied in the order given: \
                \(QualityFilter.ruleNames.joined(separator: ", ")). Thresholds default to datatrove 0.10's and \
                are changed with --set rule.parameter=value (datatrove's parameter names; 0 or none turns a \
                gopher_quality or c4_quality threshold off, as in datatrove; fineweb_quality's and \
                gopher_repetition's numbers are compared as given, as datatrove compares them). c4_quality also drops lines from the documents it keeps. Words are counted \
                with spaCy's English tokenization, reimplemented. Prints the per-rule table of documents and \
                bytes removed; output files are written whole or not at all.
                """)

        @Argument(help: "JSONL files with a \"text\" field.")
        var inputs: [String]

        @Option(name: .shortAndLong, help: "JSONL file of the documents kept.")
        var out: String

        @Option(help: "Rule sets to apply, comma-separated, in order.")
        var rules = QualityFilter.ruleNames.joined(separator: ",")

        @Option(name: .customLong("set"), help: "rule.parameter=value, for example gopher_quality.min_doc_words=100 (repeatable).")
        var settings: [String] = []

        @Option(help: "JSONL file of removed documents, each with \"filter\" and \"filter_reason\" fields.")
        var removed: String?

        @Option(help: "Write at most this many removed documents per rule set to --removed (the first met).")
        var removedPerRule: Int?

        @Option(help: "Write the report (counts per rule set and reason) as JSON here.")
        var report: String?

        @Option(help: "Write every rule set's decision on every document, each judged alone, as TSV (file, line in it, rule, reason or keep).")
        var decisions: String?

        @Option(help: "Write each document's words, as the rules count them, one JSON array per line.")
        var words: String?

        func validate() throws {
            if let removedPerRule, removedPerRule < 0 { throw ValidationError("--removed-per-rule must be 0 or more") }
            if removedPerRule != nil, removed == nil { throw ValidationError("--removed-per-rule needs --removed") }
            try OutputFiles.check([("--out", out), ("--removed", removed), ("--report", report), ("--decisions", decisions),
                                   ("--words", words)], inputs: inputs)
        }

        func run() throws {
            var filter = try QualityFilter(rules: rules.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            for setting in settings { try filter.set(setting) }
            try filter.prepare()
            let files = try inputs.map { input -> (name: String, source: DocumentSource) in
                guard FileManager.default.fileExists(atPath: input) else { throw KeelError("data filter: \(input): no such file") }
                return (input, DocumentSource(url: URL(fileURLWithPath: input)))
            }
            let started = Date()
            var summary = FilterReport()
            var removedCounts: [String: Int] = [:]
            let interactive = isatty(STDERR_FILENO) != 0
            var lastProgress = Date()
            try AtomicFile.writeAll([out, removed, decisions, words].map { $0.map(URL.init(fileURLWithPath:)) }) { handles in
                let (kept, removedHandle, decisionsHandle, wordsHandle) = (handles[0]!, handles[1], handles[2], handles[3])
                var batch = Batch()
                func flush() throws {
                    let results = batch.process(filter, judgeEach: decisionsHandle != nil, words: wordsHandle != nil)
                    for result in results {
                        summary.count(bytes: result.textBytes, removedBy: result.fate, keptBytes: result.keptBytes)
                        if let fate = result.fate {
                            if let removedHandle, removedCounts[fate.rule, default: 0] < (removedPerRule ?? .max) {
                                removedCounts[fate.rule, default: 0] += 1
                                try removedHandle.write(contentsOf: Data(result.output))
                            }
                        } else {
                            try kept.write(contentsOf: Data(result.output))
                        }
                        if let decisionsHandle { try decisionsHandle.write(contentsOf: Data(result.decisions.utf8)) }
                        if let wordsHandle { try wordsHandle.write(contentsOf: Data(result.words)) }
                    }
                    batch = Batch()
                    if Date().timeIntervalSince(lastProgress) > (interactive ? 0.5 : 10) {
                        lastProgress = Date()
                        let line = "\(summary.documents) documents, \(summary.keptDocuments) kept"
                        StandardStreams.error(interactive ? "\r\u{1B}[K" + line : line + "\n")
                    }
                }
                for file in files {
                    // The record's own line in its own file (blank lines count), as an editor or `sed -n` finds it;
                    // a tab in the file's name would shift the columns.
                    let name = file.name.replacingOccurrences(of: "\t", with: " ")
                    try file.source.forEachRecord { record in
                        batch.append(record, file: name)
                        if batch.lines.count == 1024 { try flush() }
                    }
                }
                try flush()
            }
            if interactive { StandardStreams.error("\r\u{1B}[K") }
            if let report {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try AtomicFile.write(try encoder.encode(summary), to: URL(fileURLWithPath: report))
            }
            let seconds = Date().timeIntervalSince(started)
            print(summary.table(order: filter.rules.map(\.name)))
            print(String(format: "%d documents in %.2f s (%.0f documents/s); kept %d; wrote %@", summary.documents, seconds,
                         Double(summary.documents) / max(seconds, 1e-9), summary.keptDocuments, out))
        }
    }
}

/// Up to a thousand documents read in order, judged in parallel, written in order.
private struct Batch {
    struct Result {
        var fate: (rule: String, reason: String)?
        var textBytes = 0
        var keptBytes = 0
        var output: [UInt8] = []
        var decisions = ""
        var words: [UInt8] = []
    }

    var lines: [[UInt8]] = []
    var texts: [String] = []
    var textValues: [Range<Int>] = []
    /// Each document's file and line, as `--decisions` names it ("FILE<TAB>LINE").
    var places: [String] = []

    mutating func append(_ record: DocumentSource.Record, file: String) {
        lines.append(Array(record.line))
        texts.append(String(decoding: record.text, as: UTF8.self))
        textValues.append(record.textValue)
        places.append("\(file)\t\(record.number)")
    }

    func process(_ filter: QualityFilter, judgeEach: Bool, words: Bool) -> [Result] {
        var results = [Result](repeating: Result(), count: lines.count)
        results.withUnsafeMutableBufferPointer { results in
            ThreadPool.shared.parallelFor(lines.count) { range in
                for index in range { results[index] = judge(index, filter, judgeEach: judgeEach, words: words) }
            }
        }
        return results
    }

    private func judge(_ index: Int, _ filter: QualityFilter, judgeEach: Bool, words: Bool) -> Result {
        var result = Result()
        let text = texts[index]
        result.textBytes = text.utf8.count
        if judgeEach {
            let shared = FilterDocument(text: text)
            for rule in filter.rules {
                // c4_quality rewrites the text it keeps, so it judges its own copy.
                let document = rule is C4QualityRule ? FilterDocument(text: text) : shared
                result.decisions += "\(places[index])\t\(rule.name)\t\(rule.check(document) ?? "keep")\n"
            }
        }
        if words {
            result.words = [UInt8(ascii: "[")]
            for (position, word) in FilterDocument(text: text).wordStrings.enumerated() {
                if position > 0 { result.words.append(UInt8(ascii: ",")) }
                JSONString.append(word, to: &result.words)
            }
            result.words.append(contentsOf: [UInt8(ascii: "]"), 0x0A])
        }
        let filtered = FilteredRecord(line: lines[index], text: text, textValue: textValues[index], filter: filter)
        result.fate = filtered.fate
        result.keptBytes = filtered.keptBytes
        result.output = filtered.line + [0x0A]
        return result
    }
}
