import Foundation
import KeelCore
import KeelData

/// What `JSONLDeduplication.run` did.
public struct DeduplicationReport: Sendable {
    public var documents = 0
    public var inputBytes = 0
    public var keptDocuments = 0
    public var keptBytes = 0
    public var exactDuplicates = 0
    /// Documents removed as near duplicates (not exact ones).
    public var nearDuplicates = 0
    public var clusters = 0
    public var nearDuplicateClusters = 0
    public var withoutShingles = 0
    public var spilledRuns = 0
    public var candidatePairs = 0
    public var seconds = 0.0
}

/// `keel data dedup` on files: JSONL documents with a "text" field in (plain, gzip or zstd, read by KeelData's
/// `DocumentSource`), the first document of each duplicate cluster out, every line copied byte for byte (other
/// fields pass through unchanged).
///
/// The inputs are read twice — once to find the clusters, once to write — so only the keys and one integer per
/// document are ever held. Every line is validated in the first pass, so bad input (a missing file, a line that is not
/// a JSON object, no "text" string) stops the run with the file and line before any output exists; outputs are
/// written to temporary names and renamed when complete.
public enum JSONLDeduplication {
    /// Deduplicates `inputs` into `output`; removed documents go to `removed` (each line with `"duplicate_of"`: the
    /// index of the document kept in its place, counting non-blank lines of all inputs from 0), and LSH candidate
    /// pairs to `pairs` ("i<TAB>j" per line, i < j, sorted).
    public static func run(inputs: [String], output: String, removed: String? = nil, pairs: String? = nil,
                           options: DeduplicationOptions = DeduplicationOptions()) throws -> DeduplicationReport {
        let started = Date()
        // Read twice: what the second reading finds must be what the first clustered.
        // (A file that cannot be read is named by the first reading, as any bad input is.)
        let fingerprints = inputs.map { try? FileFingerprint(of: $0) }
        if let index = fingerprints.firstIndex(where: { $0.map { !$0.isRegular } ?? false }) {
            throw KeelError("\(inputs[index]) is not a regular file: deduplication reads its inputs twice")
        }
        let changed = { (documents: String) in
            KeelError("the inputs changed while they were being deduplicated (\(documents)); run it again on files that stay as they are")
        }
        var report = DeduplicationReport()
        let deduplicator = try Deduplicator(options: options)
        try forEachRecord(inputs) { record in
            report.inputBytes += record.line.count + 1
            try deduplicator.add(String(decoding: record.text, as: UTF8.self))
        }
        var pairText = Data()
        let result = try deduplicator.finish(candidatePair: pairs == nil ? nil : { i, j in
            report.candidatePairs += 1
            pairText.append(contentsOf: Array("\(i)\t\(j)\n".utf8))
        })
        if let pairs { try AtomicFile.write(pairText, to: URL(fileURLWithPath: pairs)) }

        let write = { (kept: FileHandle, dropped: FileHandle?) throws in
            var keptBuffer = Data(), droppedBuffer = Data()
            var document = 0
            guard inputs.map({ try? FileFingerprint(of: $0) }) == fingerprints else { throw changed("their sizes or times differ") }
            try forEachRecord(inputs) { record in
                defer { document += 1 }
                guard document < result.documents else { throw changed("\(result.documents) documents, then more") }
                let line = record.line
                if result.isKept(document) {
                    report.keptDocuments += 1
                    report.keptBytes += line.count + 1
                    keptBuffer.append(line.baseAddress!, count: line.count)
                    keptBuffer.append(0x0A)
                    if keptBuffer.count >= 1 << 22 { try kept.write(contentsOf: keptBuffer); keptBuffer.removeAll() }
                } else if let dropped {
                    droppedBuffer.append(contentsOf: annotated(line, representative: Int(result.representative[document])))
                    if droppedBuffer.count >= 1 << 22 { try dropped.write(contentsOf: droppedBuffer); droppedBuffer.removeAll() }
                }
            }
            try kept.write(contentsOf: keptBuffer)
            try dropped?.write(contentsOf: droppedBuffer)
            guard document == result.documents else { throw changed("\(result.documents) documents, then \(document)") }
        }
        // Both are written before either replaces an earlier run's file, so kept and removed always match.
        try AtomicFile.writeAll([URL(fileURLWithPath: output), removed.map(URL.init(fileURLWithPath:))]) { handles in
            try write(handles[0]!, handles[1])
        }
        report.documents = result.documents
        report.exactDuplicates = result.exactDuplicates
        report.nearDuplicates = result.removed - result.exactDuplicates
        report.clusters = result.clusters
        report.nearDuplicateClusters = result.nearDuplicateClusters
        report.withoutShingles = result.withoutShingles
        report.spilledRuns = result.spilledRuns
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// Writes each document's shingle hashes, in text order with repeats (datatrove's `get_shingles`), as one JSON
    /// array per line: what scripts/bench/dedup_vs_datasketch.py compares with datatrove.
    public static func writeShingles(inputs: [String], to output: String, parameters: MinHashParameters) throws {
        var hasher = MinHasher(parameters)
        // Streamed: a corpus's shingles take several times its size.
        try AtomicFile.write(to: URL(fileURLWithPath: output)) { handle in
            var lines = Data()
            try forEachRecord(inputs) { record in
                let hashes = hasher.shingleHashes(of: String(decoding: record.text, as: UTF8.self))
                lines.append(contentsOf: Array(("[" + hashes.map(String.init).joined(separator: ",") + "]\n").utf8))
                if lines.count >= 1 << 22 { try handle.write(contentsOf: lines); lines.removeAll(keepingCapacity: true) }
            }
            try handle.write(contentsOf: lines)
        }
    }

    /// Every record (non-blank line) of every input, in order.
    private static func forEachRecord(_ inputs: [String], _ body: (DocumentSource.Record) throws -> Void) throws {
        for path in inputs { try DocumentSource(url: URL(fileURLWithPath: path)).forEachRecord(body) }
    }

    /// The line with `"duplicate_of": representative` added as the object's last field, and a newline. The line
    /// was checked to be a JSON object with a "text" field, so it ends in "}" (then perhaps white space).
    static func annotated(_ line: UnsafeBufferPointer<UInt8>, representative: Int) -> [UInt8] {
        var output = Array(line[...line.lastIndex(of: UInt8(ascii: "}"))!])
        JSONFields.add([("duplicate_of", .integer(representative))], to: &output)
        output.append(0x0A)
        return output
    }
}
