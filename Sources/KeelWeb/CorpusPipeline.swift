import Foundation
import KeelCore
import KeelData

/// `keel data pipeline`: web pages (HTML files, directories, WARC files) or JSONL documents → main text → quality
/// filters → deduplication → token shards, with a report of what each stage kept.
///
/// Resumable: each input file's extraction and filtering is written to `OUTPUT/work/` under a name derived from
/// its path, atomically, with its statistics beside it; a restarted run skips every file whose statistics exist and
/// which has not changed since (same size and modification time), so finished files are neither redone nor written
/// twice. Deduplication and tokenisation run once all files are done and are skipped when their results exist and
/// were made from the same per-file results. An input named twice (a file and a directory holding it) is read
/// once. Input files are processed in parallel, one per thread.
public struct CorpusPipeline: Sendable {
    public struct Configuration: Sendable {
        /// HTML files, directories of them, WARC files, or JSONL files with a `text` field (already extracted).
        public var inputs: [String]
        /// The dataset directory: token shards and manifest, `work/`, `pipeline-report.json`.
        public var output: URL
        public var includeComments = false
        /// Whether extracted text is Markdown rather than plain lines.
        public var markdown = false
        public var filterRules = QualityFilter.ruleNames
        /// `rule.parameter=value` assignments.
        public var filterSettings: [String] = []
        public var deduplicate = true
        public var deduplication = DeduplicationOptions()
        /// tokenizer.json, a .tiktoken file, or "byte".
        public var tokenizer: String
        public var validationFraction = 0.01
        public var shardTokens = 100_000_000
        public var threads = ThreadPool.defaultThreadCount()

        public init(inputs: [String], output: URL, tokenizer: String) {
            self.inputs = inputs
            self.output = output
            self.tokenizer = tokenizer
        }
    }

    /// What one stage left: documents, UTF-8 bytes of text, and the time it took (summed over threads for the
    /// per-file stages).
    public struct Stage: Codable, Sendable {
        public var name: String
        public var documents = 0
        public var bytes = 0
        public var tokens: Int?
        public var seconds = 0.0
    }

    /// One input file's extraction and filtering, kept beside its output so a restart can skip the file.
    struct FileResult: Codable, Sendable {
        /// The input as it was read: results of a file changed since are stale.
        var input: FileFingerprint
        /// New each time the file is processed: the whole-corpus stages record the ones they were made from, so a
        /// file redone makes them be redone.
        var identifier = UUID().uuidString
        var pages = 0
        /// WARC records skipped (damaged, over the size limit, HTTP that could not be read), each warned of.
        var skippedRecords = 0
        var extracted = Stage(name: "extract")
        var filter = FilterReport()
        var filterSeconds = 0.0
        var keptTokens = 0
    }

    public struct Report: Codable, Sendable {
        public var files = 0
        /// Files whose results a previous run had already written.
        public var resumedFiles = 0
        public var pages = 0
        /// WARC records skipped (damaged, over the size limit, HTTP that could not be read), each warned of.
        public var skippedRecords = 0
        public var stages: [Stage] = []
        public var filter = FilterReport()
        public var trainTokens = 0
        public var validationTokens = 0
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// Runs every stage not yet done; `progress` gets one line per event.
    public func run(progress: @escaping @Sendable (String) -> Void) throws -> Report {
        var filter = try QualityFilter(rules: configuration.filterRules)
        for setting in configuration.filterSettings { try filter.set(setting) }
        try filter.prepare()
        // Loaded now, so a wrong tokenizer stops the run before hours of extraction, not after; it also counts the
        // tokens each stage leaves.
        let tokenizer = try loadTokenizer(configuration.tokenizer)
        // Each file once: read twice, its documents would be doubled, and two threads would write the same results.
        let (files, repeated) = try PageReader.inputFiles(configuration.inputs)
        if repeated > 0 { progress("inputs: \(repeated) file(s) named more than once, read once") }
        guard !files.isEmpty else { throw KeelError("data pipeline: the inputs hold no HTML, WARC or JSONL files") }
        let work = configuration.output.appendingPathComponent("work")
        let extracted = work.appendingPathComponent("filtered")
        try AtomicFile.createDirectory(extracted)
        try checkSettings(in: work)
        // What a killed run was writing: a file's results, the deduplicated corpus (a whole copy of it), shards.
        for directory in [extracted, work, configuration.output] { AtomicFile.removeAbandoned(in: directory) }

        var report = Report()
        report.files = files.count
        let outputs = files.map { extracted.appendingPathComponent(Self.workName(for: $0)) }
        let results = try processFiles(files, outputs, filter, tokenizer, progress: progress, resumed: &report.resumedFiles)
        var extractStage = Stage(name: "extract", tokens: 0), filterStage = Stage(name: "filter", tokens: 0)
        for result in results {
            report.pages += result.pages
            report.skippedRecords += result.skippedRecords
            extractStage.documents += result.extracted.documents
            extractStage.bytes += result.extracted.bytes
            extractStage.tokens! += result.extracted.tokens ?? 0
            extractStage.seconds += result.extracted.seconds
            filterStage.documents += result.filter.keptDocuments
            filterStage.bytes += result.filter.keptBytes
            filterStage.tokens! += result.keptTokens
            filterStage.seconds += result.filterSeconds
            report.filter.merge(result.filter)
        }
        report.stages = [extractStage, filterStage]

        var documents = outputs.map { $0.appendingPathExtension("jsonl").path }
        // The later stages are redone when the results under them changed: inputs added or removed, or a file redone
        // (changed, or its results lost).
        let sources = zip(outputs, results).map { "\($0.lastPathComponent) \($1.identifier)" }.sorted()
        if configuration.deduplicate {
            let deduplicated = work.appendingPathComponent("deduplicated.jsonl")
            let statistics = work.appendingPathComponent("deduplicated.json")
            var stage: Stage
            if let done = DoneStage.read(statistics, sources: sources, settings: deduplicationSettings) {
                stage = done.stage
                progress("deduplicate: done by an earlier run")
            } else {
                progress("deduplicate: \(filterStage.documents) documents")
                // Its record goes before its result is replaced: a stop between the two would leave the new corpus
                // beside a record of the old one's sources, which a rerun on those sources would take as its own.
                try AtomicFile.remove(statistics)
                // Sorted runs spill next to the work, not to a small /tmp.
                var options = configuration.deduplication
                options.temporaryDirectory = work
                let result = try JSONLDeduplication.run(inputs: documents, output: deduplicated.path, options: options)
                stage = Stage(name: "deduplicate", documents: result.keptDocuments, bytes: 0, seconds: result.seconds)
                stage.bytes = try Self.textBytes(deduplicated.path)
                try AtomicFile.write(JSONEncoder().encode(DoneStage(stage: stage, sources: sources, settings: deduplicationSettings)),
                                     to: statistics)
            }
            report.stages.append(stage)
            documents = [deduplicated.path]
        }

        let tokenStart = Date()
        let manifest: ShardManifest
        let tokenized = work.appendingPathComponent("tokenized.json")
        if DoneStage.read(tokenized, sources: sources, settings: tokenizationSettings) != nil,
           let finished = try? ShardManifest.read(from: configuration.output) {
            manifest = finished
            progress("tokenize: done by an earlier run")
        } else {
            // As the deduplicated corpus's record, this one goes before the dataset it describes is replaced.
            try AtomicFile.remove(tokenized)
            // Made aside and put in place once complete: a failure (a full disk) leaves the earlier dataset as it was.
            // A run stopped while putting it in place left it complete there, with its record beside: it is finished.
            let staged = work.appendingPathComponent("dataset.partial"), stagedRecord = work.appendingPathComponent("dataset.partial.json")
            let staging = DoneStage.read(stagedRecord, sources: sources, settings: tokenizationSettings) != nil
            if staging, let complete = try? ShardManifest.read(from: staged) {
                progress("tokenize: done by an earlier run, put in place now")
                manifest = complete
                try replaceDataset(with: staged, manifest: manifest)
            } else if staging, let placed = try? ShardManifest.read(from: configuration.output) {
                // Stopped after its manifest went in (the last file to), before its record: the dataset is in place.
                progress("tokenize: done by an earlier run")
                manifest = placed
                try? FileManager.default.removeItem(at: staged)
                try removeShards(otherThan: manifest)
            } else {
                progress("tokenize: \(documents.count) file(s) with \(configuration.tokenizer)")
                try AtomicFile.remove(stagedRecord)
                try? FileManager.default.removeItem(at: staged)
                var preparation = DataPreparation(inputs: documents, tokenizer: configuration.tokenizer, output: staged)
                preparation.validationFraction = configuration.validationFraction
                preparation.shardTokens = configuration.shardTokens
                manifest = try preparation.run()
                try AtomicFile.write(JSONEncoder().encode(DoneStage(stage: Stage(name: "tokenize"), sources: sources,
                                                                    settings: tokenizationSettings)), to: stagedRecord)
                try replaceDataset(with: staged, manifest: manifest)
            }
            try AtomicFile.rename(stagedRecord, to: tokenized)
        }
        report.trainTokens = manifest.train.tokens
        report.validationTokens = manifest.val.tokens
        if configuration.deduplicate {
            // The shards hold end-of-text (and the text start, if any) before each document; the rest is the documents' text.
            let documents = manifest.train.documents + manifest.val.documents
            report.stages[report.stages.count - 1].tokens = manifest.train.tokens + manifest.val.tokens
                - documents * manifest.separatorsPerDocument
        }
        report.stages.append(Stage(name: "tokenize", documents: manifest.train.documents + manifest.val.documents,
                                   bytes: report.stages.last!.bytes, tokens: manifest.train.tokens + manifest.val.tokens,
                                   seconds: Date().timeIntervalSince(tokenStart)))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(report), to: configuration.output.appendingPathComponent("pipeline-report.json"))
        return report
    }

    /// Replaces the token shards and manifest an earlier run made from other files (the pipeline owns them) with the
    /// complete dataset `manifest` in `staged`: the old manifest goes first and the new one comes last, so that a stop
    /// part-way leaves no dataset rather than one whose shards are missing or another's. Shards no manifest names (an
    /// older dataset's, which a stop while they were removed left behind) go once the new one is in place.
    private func replaceDataset(with staged: URL, manifest: ShardManifest) throws {
        let output = configuration.output, manager = FileManager.default
        if let old = try? ShardManifest.read(from: output) {
            try AtomicFile.remove(output.appendingPathComponent(ShardManifest.fileName))
            if old.tokenizer != "byte" { try? manager.removeItem(at: output.appendingPathComponent(old.tokenizer)) }
            // Its tokenizer's settings too: left beside the new tokenizer, they would be read as its own.
            for name in TokenizerSettings.fileNames { try? manager.removeItem(at: output.appendingPathComponent(name)) }
        }
        try ShardManifest.moveDataset(from: staged, to: output)
        try manager.removeItem(at: staged)
        try removeShards(otherThan: manifest)
    }

    /// Removes from the output the shards `manifest` does not name.
    private func removeShards(otherThan manifest: ShardManifest) throws {
        let output = configuration.output, named = Set((manifest.train.shards + manifest.val.shards).map(\.file))
        for name in try FileManager.default.contentsOfDirectory(atPath: output.path)
        where name.wholeMatch(of: /(train|val)_[0-9]{6}\.bin/) != nil && !named.contains(name) {
            try? FileManager.default.removeItem(at: output.appendingPathComponent(name))
        }
    }

    /// A whole-corpus stage's result, the per-file results it was made from (output names and identifiers), and the
    /// settings it was made with (none recorded before they were: the stage is then redone once).
    struct DoneStage: Codable {
        var stage: Stage
        var sources: [String]
        var settings: String?

        /// The record at `url` when it was made from `sources` with `settings`; nil otherwise, or when there is none.
        static func read(_ url: URL, sources: [String], settings: String) -> DoneStage? {
            guard let done = try? JSONDecoder().decode(DoneStage.self, from: Data(contentsOf: url)),
                  done.sources == sources, done.settings == settings else { return nil }
            return done
        }
    }

    /// The settings that shape every file's output, as the work directory records them: a run may resume only
    /// with the same ones (inputs may be added; the whole-corpus stages are then redone). The tokenizer counts each
    /// file's tokens. Those of the whole-corpus stages only redo their stage (`deduplicationSettings`,
    /// `tokenizationSettings`).
    private var settings: [String: String] {
        [
            "rules": configuration.filterRules.joined(separator: ","), "settings": configuration.filterSettings.joined(separator: ";"),
            "comments": "\(configuration.includeComments)", "markdown": "\(configuration.markdown)",
            "tokenizer": configuration.tokenizer,
        ]
    }

    /// What the deduplicated corpus depends on besides the files' results.
    private var deduplicationSettings: String {
        let options = configuration.deduplication, minHash = options.minHash
        return "exact_only=\(options.exactOnly) minhash=\(minHash.shingleSize) \(minHash.bands) \(minHash.rows) \(minHash.seed) \(minHash.hashBits)"
    }

    /// What the shards depend on besides the files' results.
    private var tokenizationSettings: String {
        "deduplicate=\(configuration.deduplicate) \(configuration.deduplicate ? deduplicationSettings : "") tokenizer=\(configuration.tokenizer) "
            + "val_fraction=\(configuration.validationFraction) shard_tokens=\(configuration.shardTokens)"
    }

    private func checkSettings(in work: URL) throws {
        let file = work.appendingPathComponent("settings.json")
        if let recorded = try? JSONDecoder().decode([String: String].self, from: Data(contentsOf: file)) {
            // Only these keys: a record written before the whole-corpus stages kept their own holds theirs too.
            if let changed = settings.keys.sorted().first(where: { recorded[$0] != settings[$0] }) {
                throw KeelError("data pipeline: \(configuration.output.path) was made with another \(changed) "
                    + "(\(recorded[changed] ?? "none"), now \(settings[changed]!)); use a new output directory, or remove "
                    + "\(work.path) to start over")
            }
        } else {
            try AtomicFile.write(JSONEncoder().encode(settings), to: file)
        }
    }

    /// Extracts and filters every file not already done, `configuration.threads` files at a time.
    private func processFiles(_ files: [String], _ outputs: [URL], _ filter: QualityFilter, _ tokenizer: any TextTokenizer,
                              progress: @escaping @Sendable (String) -> Void, resumed: inout Int) throws -> [FileResult] {
        var results = [FileResult?](repeating: nil, count: files.count)
        var changed = 0
        for (index, output) in outputs.enumerated() {
            let statistics = output.appendingPathExtension("json")
            guard let recorded = try? Data(contentsOf: statistics) else { continue }
            // Results of a file changed since they were made (or written before fingerprints were kept) are stale.
            if let done = try? JSONDecoder().decode(FileResult.self, from: recorded), try done.input == FileFingerprint(of: files[index]) {
                results[index] = done
            } else {
                changed += 1
            }
        }
        resumed = results.compactMap { $0 }.count
        if resumed > 0 || changed > 0 {
            progress("resume: \(resumed) of \(files.count) file(s) done by an earlier run"
                + (changed > 0 ? "; \(changed) changed since, redone" : ""))
        }
        let pending = results.indices.filter { results[$0] == nil }
        let done = try concurrentMap(pending.count, workers: configuration.threads) { position in
            let index = pending[position]
            let result = try processFile(files[index], into: outputs[index], filter, tokenizer, warn: progress)
            progress("done: \(files[index]): \(result.pages) pages, \(result.filter.keptDocuments) kept"
                + (result.skippedRecords > 0 ? ", \(result.skippedRecords) WARC record(s) skipped" : ""))
            return result
        }
        for (position, index) in pending.enumerated() { results[index] = done[position] }
        return results.map { $0! }
    }

    /// One file: its pages' main text (or its JSONL records), filtered, written to `output`.jsonl, then the
    /// statistics to `output`.json — the marker a restart looks for.
    private func processFile(_ file: String, into output: URL, _ filter: QualityFilter, _ tokenizer: any TextTokenizer,
                             warn: @escaping @Sendable (String) -> Void) throws -> FileResult {
        // Taken before the file is read: a file changed while it is read is redone by the next run.
        var result = FileResult(input: try FileFingerprint(of: file))
        result.extracted.tokens = 0
        var reader = PageReader()
        reader.extractor.includeComments = configuration.includeComments
        reader.extractor.markdown = configuration.markdown
        // The marker goes first: a stop after the results are replaced must not leave them beside the old marker.
        try AtomicFile.remove(output.appendingPathExtension("json"))
        try AtomicFile.write(to: output.appendingPathExtension("jsonl")) { handle in
            var pending = Data()
            func judge(_ line: [UInt8], _ text: String, _ textValue: Range<Int>) throws {
                let tokens = tokenizer.encode(text).count
                result.extracted.tokens! += tokens
                let started = Date()
                let judged = FilteredRecord(line: line, text: text, textValue: textValue, filter: filter)
                result.filterSeconds += Date().timeIntervalSince(started)
                result.filter.count(bytes: text.utf8.count, removedBy: judged.fate, keptBytes: judged.keptBytes)
                guard judged.fate == nil else { return }
                // c4_quality may have dropped lines: then the kept text is counted again.
                result.keptTokens += judged.keptText == text ? tokens : tokenizer.encode(judged.keptText).count
                pending.append(contentsOf: judged.line)
                pending.append(0x0A)
                if pending.count > 1 << 20 { try handle.write(contentsOf: pending); pending.removeAll(keepingCapacity: true) }
            }
            var started = Date()
            if PageReader.isJSONL(file) {
                try DocumentSource(url: URL(fileURLWithPath: file)).forEachRecord { record in
                    let text = String(decoding: record.text, as: UTF8.self)
                    // Reading is the extraction; the tokens and the filter are timed apart, as for pages.
                    result.extracted.seconds += Date().timeIntervalSince(started)
                    result.pages += 1
                    result.extracted.documents += 1
                    result.extracted.bytes += record.text.count
                    try judge(Array(record.line), text, record.textValue)
                    started = Date()
                }
            } else {
                let counts = try reader.forEachPage(in: file, warn: warn) { page in
                    result.extracted.seconds += Date().timeIntervalSince(started)
                    result.extracted.documents += 1
                    result.extracted.bytes += page.text.utf8.count
                    let record = page.record
                    try judge(record.line, page.text, record.textValue)
                    started = Date()
                }
                result.pages = counts.pages
                result.skippedRecords = counts.skipped
            }
            result.extracted.seconds += Date().timeIntervalSince(started)
            try handle.write(contentsOf: pending)
        }
        try AtomicFile.write(JSONEncoder().encode(result), to: output.appendingPathExtension("json"))
        return result
    }

    /// A file name for an input's results: its base name and a hash of its full path (two inputs may share a name).
    static func workName(for file: String) -> String {
        let path = URL(fileURLWithPath: file).standardizedFileURL.path
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in path.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return "\((file as NSString).lastPathComponent)-\(String(hash, radix: 16))"
    }

    /// UTF-8 bytes of the `text` fields of a JSONL file.
    static func textBytes(_ path: String) throws -> Int {
        var bytes = 0
        try DocumentSource(url: URL(fileURLWithPath: path)).forEachRecord { bytes += $0.text.count }
        return bytes
    }
}

extension FilterReport {
    /// Adds another report's counts (one file's, to the run's).
    public mutating func merge(_ other: FilterReport) {
        documents += other.documents
        bytes += other.bytes
        keptDocuments += other.keptDocuments
        keptBytes += other.keptBytes
        for (rule, reasons) in other.removed {
            for (reason, removal) in reasons {
                removed[rule, default: [:]][reason, default: Removal()].documents += removal.documents
                removed[rule, default: [:]][reason, default: Removal()].bytes += removal.bytes
            }
        }
    }
}
