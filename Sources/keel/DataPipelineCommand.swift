import ArgumentParser
import Foundation
import KeelCore
import KeelData
import KeelTrain
import KeelWeb

extension DataCommand {
    struct Pipeline: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Web pages or JSONL to token shards: extract, filter, deduplicate, tokenize; resumable per input file.",
            discussion: """
                The configuration (TOML) names the inputs, the rule sets, the deduplication and the tokenizer \
                (docs/data.md lists every key; --set section.key=value overrides one). Each input file is \
                extracted and filtered on its own thread into OUTPUT/work/; a restarted run skips the files \
                already done. Then the documents are deduplicated together and tokenised into OUTPUT (train/val \
                shards and manifest.json, as `keel data prepare` writes), and OUTPUT/pipeline-report.json records \
                the documents, bytes and tokens after each stage, its time, and the per-rule table.
                """)

        @Option(help: "Pipeline configuration (TOML).")
        var config: String

        @Option(name: .customLong("set"), help: "section.key=value overriding the configuration (repeatable).")
        var overrides: [String] = []

        func run() throws {
            let configuration = try Self.configuration(path: config, overrides: overrides)
            let interactive = isatty(STDERR_FILENO) != 0
            let report = try CorpusPipeline(configuration).run { line in
                StandardStreams.error((interactive ? "\r\u{1B}[K" : "") + line + "\n")
            }
            print("| stage | documents | text bytes | tokens | seconds |")
            print("| --- | ---: | ---: | ---: | ---: |")
            let skipped = report.skippedRecords > 0 ? ", \(report.skippedRecords) WARC record(s) skipped" : ""
            print("| read | \(report.pages) pages in \(report.files) file(s)\(skipped) | | | |")
            for stage in report.stages {
                print("| \(stage.name) | \(stage.documents) | \(stage.bytes) | \(stage.tokens.map(String.init) ?? "") | \(String(format: "%.2f", stage.seconds)) |")
            }
            print()
            print(report.filter.table(order: configuration.filterRules))
            print()
            print("wrote \(configuration.output.path): \(report.trainTokens) train and \(report.validationTokens) validation tokens"
                + (report.resumedFiles > 0 ? " (\(report.resumedFiles) file(s) resumed from an earlier run)" : ""))
        }

        /// Reads the TOML configuration: [input] paths, comments, markdown; [filter] rules, settings; [dedup] enabled,
        /// shingle, bands, rows, memory_mb; [output] dir, tokenizer, val_fraction, shard_tokens, threads.
        static func configuration(path: String, overrides: [String]) throws -> CorpusPipeline.Configuration {
            let text: String
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw KeelError("config: \(path): cannot read (\(AtomicFile.systemReason(error)))")
            }
            var values = try ConfigValues(toml: text, origin: path)
            try values.override(overrides)
            let inputs = try values.strings("input.paths")
            guard !inputs.isEmpty else { throw KeelError("config: input.paths must name at least one file or directory") }
            guard let output = try values.string("output.dir", nil) else { throw KeelError("config: output.dir is missing") }
            guard let tokenizer = try values.string("output.tokenizer", nil) else {
                throw KeelError("config: output.tokenizer is missing (a tokenizer.json, a .tiktoken file, or \"byte\")")
            }
            // Relative paths are relative to the configuration file, so a config works from any directory.
            let base = URL(fileURLWithPath: path).deletingLastPathComponent()
            func resolve(_ name: String) -> String { name == "byte" || name.hasPrefix("/") ? name : base.appendingPathComponent(name).path }
            var configuration = CorpusPipeline.Configuration(inputs: inputs.map(resolve), output: URL(fileURLWithPath: resolve(output)),
                                                             tokenizer: resolve(tokenizer))
            configuration.includeComments = try values.bool("input.comments", false)
            configuration.markdown = try values.bool("input.markdown", false)
            let rules = try values.strings("filter.rules")
            if !rules.isEmpty { configuration.filterRules = rules }
            configuration.filterSettings = try values.strings("filter.settings")
            configuration.deduplicate = try values.bool("dedup.enabled", true)
            configuration.deduplication.minHash.shingleSize = try values.int("dedup.shingle", configuration.deduplication.minHash.shingleSize)
            configuration.deduplication.minHash.bands = try values.int("dedup.bands", configuration.deduplication.minHash.bands)
            configuration.deduplication.minHash.rows = try values.int("dedup.rows", configuration.deduplication.minHash.rows)
            let memoryMegabytes = try values.int("dedup.memory_mb", configuration.deduplication.memoryBudget >> 20)
            configuration.validationFraction = try values.double("output.val_fraction", configuration.validationFraction)
            configuration.shardTokens = try values.int("output.shard_tokens", configuration.shardTokens)
            configuration.threads = try values.int("output.threads", configuration.threads)
            try values.rejectUnknownKeys()
            guard configuration.threads >= 1 else { throw KeelError("config: output.threads must be at least 1") }
            // Checked here, not hours later when the deduplication or the shards reach them.
            let minHash = configuration.deduplication.minHash
            if let problem = DeduplicationOptions.problem(shingle: minHash.shingleSize, bands: minHash.bands, rows: minHash.rows,
                                                          memoryMegabytes: memoryMegabytes) {
                throw KeelError("config: dedup.shingle, dedup.bands, dedup.rows, dedup.memory_mb: \(problem)")
            }
            configuration.deduplication.memoryBudget = memoryMegabytes << 20
            if let problem = TokenShardFormat.problem(shardTokens: configuration.shardTokens) {
                throw KeelError("config: output.shard_tokens \(problem)")
            }
            guard (0..<1).contains(configuration.validationFraction) else { throw KeelError("config: output.val_fraction must be in [0, 1)") }
            return configuration
        }
    }
}
