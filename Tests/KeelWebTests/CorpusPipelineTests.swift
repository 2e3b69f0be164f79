import Foundation
import KeelCore
import KeelData
import KeelWeb
import XCTest

/// `keel data pipeline` resumes only what is still right: a changed input, or a file whose results were lost, is
/// redone and so are the deduplication and tokenisation after it; a file named twice is read once; the report's
/// seconds are each stage's own.
final class CorpusPipelineTests: XCTestCase {
    /// The progress lines of a run (called from the pipeline's threads).
    private final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    /// A document of 40 distinct words, all starting with `word`.
    private func text(_ word: String) -> String { (0..<40).map { "\(word)\($0)" }.joined(separator: " ") }

    private func jsonl(_ texts: [String]) -> Data {
        Data(texts.map { "{\"text\":\"\($0)\"}\n" }.joined().utf8)
    }

    private func run(_ configuration: CorpusPipeline.Configuration) throws -> (report: CorpusPipeline.Report, progress: [String]) {
        let lines = Lines()
        let report = try CorpusPipeline(configuration).run { lines.append($0) }
        return (report, lines.all)
    }

    private func configuration(_ inputs: [URL], output: URL, rules: [String] = ["gopher_repetition"]) -> CorpusPipeline.Configuration {
        var configuration = CorpusPipeline.Configuration(inputs: inputs.map(\.path), output: output, tokenizer: "byte")
        configuration.filterRules = rules
        configuration.validationFraction = 0
        configuration.threads = 2
        return configuration
    }

    private func documents(_ report: CorpusPipeline.Report) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: report.stages.map { ($0.name, $0.documents) })
    }

    func testAChangedInputIsRedoneWithTheStagesAfterIt() throws {
        let directory = try temporaryDirectory()
        let first = directory.appendingPathComponent("a.jsonl"), second = directory.appendingPathComponent("b.jsonl")
        try jsonl([text("alpha"), text("beta")]).write(to: first)
        try jsonl([text("alpha")]).write(to: second)
        let configuration = configuration([first, second], output: directory.appendingPathComponent("corpus"))
        let fresh = try run(configuration)
        XCTAssertEqual(documents(fresh.report), ["extract": 3, "filter": 3, "deduplicate": 2, "tokenize": 2])

        // Unchanged: everything comes from the first run.
        let again = try run(configuration)
        XCTAssertEqual(again.report.resumedFiles, 2)
        XCTAssertTrue(again.progress.contains("deduplicate: done by an earlier run"), "\(again.progress)")
        XCTAssertTrue(again.progress.contains("tokenize: done by an earlier run"), "\(again.progress)")

        // The same size, other words, a later modification time: the copy of "alpha" is now a new document.
        let modified = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: second.path)[.modificationDate] as? Date)
        try jsonl([text("gamma")]).write(to: second)
        try FileManager.default.setAttributes([.modificationDate: modified.addingTimeInterval(60)], ofItemAtPath: second.path)
        let changed = try run(configuration)
        XCTAssertEqual(changed.report.resumedFiles, 1)
        XCTAssertTrue(changed.progress.contains("resume: 1 of 2 file(s) done by an earlier run; 1 changed since, redone"),
                      "\(changed.progress)")
        XCTAssertEqual(documents(changed.report), ["extract": 3, "filter": 3, "deduplicate": 3, "tokenize": 3])
        let kept = try String(contentsOf: configuration.output.appendingPathComponent("work/deduplicated.jsonl"), encoding: .utf8)
        XCTAssertTrue(kept.contains("gamma0 gamma1"), kept)
    }

    /// A file dated past 2262 (a damaged archive's date) is read and resumed like any other: its time in
    /// nanoseconds overflowed, a trap.
    func testAFileFromTheFarFutureIsReadAndResumed() throws {
        let directory = try temporaryDirectory()
        let file = directory.appendingPathComponent("a.jsonl")
        try jsonl([text("alpha")]).write(to: file)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 32_503_680_000)], ofItemAtPath: file.path)
        let configuration = configuration([file], output: directory.appendingPathComponent("corpus"))
        XCTAssertEqual(documents(try run(configuration).report)["tokenize"], 1)
        XCTAssertEqual(try run(configuration).report.resumedFiles, 1)
    }

    /// What a killed run was writing (`.NAME.tmp-PID-HOST` of a process of this machine that is gone) is removed when the
    /// pipeline runs again: each restart of a preempted job left another. A live process's, and another machine's,
    /// stay.
    func testTheTemporariesOfAKilledRunAreRemoved() throws {
        let directory = try temporaryDirectory()
        let file = directory.appendingPathComponent("a.jsonl")
        try jsonl([text("alpha")]).write(to: file)
        let configuration = configuration([file], output: directory.appendingPathComponent("corpus"))
        _ = try run(configuration)
        let ended = try endedProcessIdentifier()
        let work = configuration.output.appendingPathComponent("work")
        let abandoned = [work.appendingPathComponent("filtered/.a.jsonl-0.jsonl.tmp-\(ended)-\(AtomicFile.host)"),
                         work.appendingPathComponent(".deduplicated.jsonl.tmp-\(ended)-\(AtomicFile.host)")]
        let kept = [work.appendingPathComponent(".deduplicated.jsonl.tmp-\(getpid())-\(AtomicFile.host)"),
                    work.appendingPathComponent(".deduplicated.jsonl.tmp-\(ended)-another-\(AtomicFile.host)")]
        for url in abandoned + kept { try Data("partial".utf8).write(to: url) }
        _ = try run(configuration)
        for url in abandoned { XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), url.lastPathComponent) }
        for url in kept { XCTAssertTrue(FileManager.default.fileExists(atPath: url.path), url.lastPathComponent) }
    }

    /// Settings of the whole-corpus stages redo those stages only: the files' extraction and filtering (hours on a
    /// crawl) are resumed. Before, any of them refused the directory ("remove work/ to start over").
    func testOtherDeduplicationOrShardSettingsRedoOnlyTheirStages() throws {
        let directory = try temporaryDirectory()
        let file = directory.appendingPathComponent("a.jsonl")
        try jsonl([text("alpha"), text("beta")]).write(to: file)
        var configuration = configuration([file], output: directory.appendingPathComponent("corpus"))
        _ = try run(configuration)
        configuration.validationFraction = 0.5
        let split = try run(configuration)
        XCTAssertEqual(split.report.resumedFiles, 1)
        XCTAssertTrue(split.progress.contains("deduplicate: done by an earlier run"), "\(split.progress)")
        XCTAssertFalse(split.progress.contains("tokenize: done by an earlier run"), "\(split.progress)")
        XCTAssertEqual(split.report.validationTokens > 0, true)
        configuration.deduplication.minHash.bands = 7
        let rebanded = try run(configuration)
        XCTAssertEqual(rebanded.report.resumedFiles, 1)
        XCTAssertTrue(rebanded.progress.contains("deduplicate: 2 documents"), "\(rebanded.progress)")
        XCTAssertFalse(rebanded.progress.contains("tokenize: done by an earlier run"), "\(rebanded.progress)")
        // A setting of the files' own results still refuses the directory.
        configuration.filterRules = ["gopher_quality"]
        XCTAssertThrowsError(try run(configuration)) { XCTAssertTrue("\($0)".contains("was made with another rules"), "\($0)") }
    }

    /// A run stopped while it put a new dataset in place (the old manifest gone, some new shards moved) left the
    /// complete dataset in work/dataset.partial with its record beside it: the next run finishes putting it in place,
    /// the same dataset an uninterrupted run wrote, without tokenizing again.
    func testADatasetLeftHalfInPlaceIsFinished() throws {
        let directory = try temporaryDirectory()
        let file = directory.appendingPathComponent("a.jsonl")
        try jsonl([text("alpha"), text("beta"), text("gamma")]).write(to: file)
        var configuration = configuration([file], output: directory.appendingPathComponent("corpus"))
        configuration.shardTokens = 200  // several shards
        _ = try run(configuration)
        let output = configuration.output, work = output.appendingPathComponent("work"), manager = FileManager.default
        let manifest = try ShardManifest.read(from: output)
        let names = ["manifest.json"] + (manifest.train.shards + manifest.val.shards).map(\.file)
        XCTAssertGreaterThan(names.count, 3)
        let written = try names.map { try Data(contentsOf: output.appendingPathComponent($0)) }
        // The state a stop after the second shard's move leaves.
        let staged = work.appendingPathComponent("dataset.partial")
        try manager.createDirectory(at: staged, withIntermediateDirectories: true)
        for name in names.dropFirst(3) + ["manifest.json"] { try manager.moveItem(at: output.appendingPathComponent(name), to: staged.appendingPathComponent(name)) }
        try manager.moveItem(at: work.appendingPathComponent("tokenized.json"), to: work.appendingPathComponent("dataset.partial.json"))
        let finished = try run(configuration)
        XCTAssertTrue(finished.progress.contains("tokenize: done by an earlier run, put in place now"), "\(finished.progress)")
        XCTAssertEqual(try names.map { try Data(contentsOf: output.appendingPathComponent($0)) }, written)
        XCTAssertFalse(manager.fileExists(atPath: staged.path))
        XCTAssertTrue(try run(configuration).progress.contains("tokenize: done by an earlier run"))
        // Stopped after the manifest went in, before the record did; an older dataset's shard left behind by a stop
        // while the old ones were removed: the dataset is taken as it is, the stray shard removed.
        try manager.createDirectory(at: staged, withIntermediateDirectories: true)
        try manager.moveItem(at: work.appendingPathComponent("tokenized.json"), to: work.appendingPathComponent("dataset.partial.json"))
        try Data("old".utf8).write(to: output.appendingPathComponent("train_000099.bin"))
        let placed = try run(configuration)
        XCTAssertTrue(placed.progress.contains("tokenize: done by an earlier run"), "\(placed.progress)")
        XCTAssertEqual(try names.map { try Data(contentsOf: output.appendingPathComponent($0)) }, written)
        XCTAssertFalse(manager.fileExists(atPath: output.appendingPathComponent("train_000099.bin").path))
        XCTAssertFalse(manager.fileExists(atPath: staged.path))
        XCTAssertTrue(manager.fileExists(atPath: work.appendingPathComponent("tokenized.json").path))
        // Another split makes the dataset again: the staged one is not taken for it.
        try manager.createDirectory(at: staged, withIntermediateDirectories: true)
        for name in names.dropFirst(3) + ["manifest.json"] { try manager.moveItem(at: output.appendingPathComponent(name), to: staged.appendingPathComponent(name)) }
        try manager.moveItem(at: work.appendingPathComponent("tokenized.json"), to: work.appendingPathComponent("dataset.partial.json"))
        configuration.validationFraction = 0.5
        let other = try run(configuration)
        XCTAssertTrue(other.progress.contains("tokenize: 1 file(s) with byte"), "\(other.progress)")
        XCTAssertGreaterThan(other.report.validationTokens, 0)
    }

    func testAFileWhoseResultsWereLostIsRedoneWithTheStagesAfterIt() throws {
        let directory = try temporaryDirectory()
        let first = directory.appendingPathComponent("a.jsonl"), second = directory.appendingPathComponent("b.jsonl")
        try jsonl([text("alpha")]).write(to: first)
        try jsonl([text("beta")]).write(to: second)
        let configuration = configuration([first, second], output: directory.appendingPathComponent("corpus"))
        _ = try run(configuration)
        let filtered = configuration.output.appendingPathComponent("work/filtered")
        for name in try FileManager.default.contentsOfDirectory(atPath: filtered.path) where name.hasPrefix("b.jsonl-") && name.hasSuffix(".json") {
            try FileManager.default.removeItem(at: filtered.appendingPathComponent(name))
        }
        let resumed = try run(configuration)
        XCTAssertEqual(resumed.report.resumedFiles, 1)
        XCTAssertTrue(resumed.progress.contains("deduplicate: 2 documents"), "\(resumed.progress)")
        XCTAssertFalse(resumed.progress.contains { $0.hasSuffix("done by an earlier run") && !$0.hasPrefix("resume:") },
                       "\(resumed.progress)")
        XCTAssertEqual(documents(resumed.report)["tokenize"], 2)
    }

    func testAFileNamedTwiceIsReadOnce() throws {
        let directory = try temporaryDirectory()
        let site = directory.appendingPathComponent("site")
        try FileManager.default.createDirectory(at: site, withIntermediateDirectories: true)
        let page = site.appendingPathComponent("page.html")
        try Data("<html><body><article><p>\(text("delta"))</p></article></body></html>".utf8).write(to: page)
        let link = directory.appendingPathComponent("link.html")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: page)
        var configuration = configuration([site, page, site.appendingPathComponent("./page.html"), link],
                                          output: directory.appendingPathComponent("corpus"))
        configuration.deduplicate = false
        let result = try run(configuration)
        XCTAssertEqual(result.report.files, 1)
        XCTAssertEqual(result.report.pages, 1)
        XCTAssertEqual(documents(result.report), ["extract": 1, "filter": 1, "tokenize": 1])
        XCTAssertTrue(result.progress.contains("inputs: 3 file(s) named more than once, read once"), "\(result.progress)")
    }

    /// Reading a JSONL file is its extraction: the filter's time (and the tokens counted) are not in it, so the
    /// per-file stages' seconds, on one thread, add up to no more than the run took.
    func testExtractSecondsOfJSONLExcludeTheFilter() throws {
        let directory = try temporaryDirectory()
        let input = directory.appendingPathComponent("docs.jsonl")
        // Prose every rule set keeps (the CLI tests' good document).
        let good = "The history of the town is long and varied, and it has been told many times by the people who live there. "
            + "It was founded in the twelfth century by monks who wanted to have a place to pray and to work with their hands. "
            + "Over time, the settlement grew into a market town with a church, a mill and several inns. "
            + "Today it is known for its old bridge and the annual fair, which brings visitors from all over the country. "
            + "The museum tells the story of the town and of the families that shaped it over the centuries."
        try jsonl((0..<300).map { "Document \($0) is this one. " + good }).write(to: input)
        var configuration = configuration([input], output: directory.appendingPathComponent("corpus"),
                                          rules: ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"])
        configuration.threads = 1
        configuration.deduplicate = false
        let started = Date()
        let report = try run(configuration).report
        let elapsed = Date().timeIntervalSince(started)
        let extract = try XCTUnwrap(report.stages.first { $0.name == "extract" }), filter = try XCTUnwrap(report.stages.first { $0.name == "filter" })
        XCTAssertEqual(extract.documents, 300)
        XCTAssertLessThan(extract.seconds, filter.seconds, "parsing a JSON line is far cheaper than judging its text")
        XCTAssertLessThanOrEqual(extract.seconds + filter.seconds, elapsed)
    }
}
