import ArgumentParser
import Foundation
import KeelCore
import KeelWeb

extension DataCommand {
    struct Dedup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove exact and near-duplicate documents (MinHash LSH) from JSONL files.",
            discussion: """
                Inputs: JSONL files with a "text" field, one document per line. Output: the first document of \
                every duplicate cluster, lines copied unchanged, in input order. Exact duplicates have the same \
                text up to white space; near duplicates share all the MinHash values of one LSH band (FineWeb's \
                parameters by default: 5-word shingles of datatrove's simplified text, 14 bands × 8 rows, seed 1). \
                Clusters are closed under both (union-find). Keys are sorted on disk, so memory stays within \
                --memory-mb plus 5 bytes per document. docs/data.md says more.
                """)

        @Argument(help: "JSONL files to deduplicate (plain, .gz or .zst).")
        var inputs: [String]

        @Option(name: .shortAndLong, help: "JSONL file to write (the documents kept).")
        var out: String

        @Option(help: "JSONL file for the documents removed, each with \"duplicate_of\": the index of the one kept.")
        var removed: String?

        @Flag(help: "Only exact duplicates (no MinHash).")
        var exactOnly = false

        @Option(help: "Words per shingle.")
        var shingle = 5

        @Option(help: "LSH bands.")
        var bands = 14

        @Option(help: "MinHash values per band.")
        var rows = 8

        @Option(help: "Seed of the MinHash permutations (numpy RandomState, as datatrove).")
        var seed: UInt32 = 1

        @Option(help: "Hash value width: 64 (datatrove) or 32 (datasketch's legacy MinHash: values masked to 32 bits).")
        var hashBits = 64

        @Option(help: "Write LSH candidate pairs (documents sharing a bucket) to this file, \"i<TAB>j\" per line.")
        var pairs: String?

        @Option(help: "Also write each document's shingle hashes (a JSON array per line), to compare with datatrove.")
        var shingles: String?

        @Option(help: "Memory for keys before they are sorted to disk, in MB.")
        var memoryMb = 1024

        @Option(help: "Directory for the sorted runs (default: the system's temporary directory).")
        var tempDir: String?

        func validate() throws {
            guard hashBits == 32 || hashBits == 64 else { throw ValidationError("--hash-bits must be 32 or 64") }
            try OutputFiles.check([("--out", out), ("--removed", removed), ("--pairs", pairs), ("--shingles", shingles)], inputs: inputs)
            if let problem = DeduplicationOptions.problem(shingle: shingle, bands: bands, rows: rows, memoryMegabytes: memoryMb) {
                throw ValidationError("--shingle, --bands, --rows, --memory-mb: \(problem)")
            }
        }

        func run() throws {
            var options = DeduplicationOptions()
            options.exactOnly = exactOnly
            options.minHash.shingleSize = shingle
            options.minHash.bands = bands
            options.minHash.rows = rows
            options.minHash.seed = seed
            options.minHash.hashBits = hashBits
            options.memoryBudget = memoryMb << 20
            if let tempDir { options.temporaryDirectory = URL(fileURLWithPath: tempDir) }
            if let shingles { try JSONLDeduplication.writeShingles(inputs: inputs, to: shingles, parameters: options.minHash) }
            let r = try JSONLDeduplication.run(inputs: inputs, output: out, removed: removed, pairs: pairs, options: options)
            let seconds = max(r.seconds, 1e-9)
            print("documents in: \(r.documents) (\(Self.megabytes(r.inputBytes)))")
            print("exact duplicates removed: \(r.exactDuplicates)")
            if !exactOnly {
                print("near-duplicate clusters: \(r.nearDuplicateClusters); near duplicates removed: \(r.nearDuplicates)"
                      + (r.withoutShingles > 0 ? " (\(r.withoutShingles) documents shorter than a shingle)" : ""))
            }
            print("documents removed: \(r.documents - r.keptDocuments) in \(r.clusters) clusters; kept \(r.keptDocuments) (\(Self.megabytes(r.keptBytes)))")
            if pairs != nil { print("candidate pairs: \(r.candidatePairs)") }
            print(String(format: "time: %.2f s, %.0f docs/s, %.1f MB/s%@", r.seconds, Double(r.documents) / seconds,
                         Double(r.inputBytes) / 1e6 / seconds, r.spilledRuns > 0 ? " (\(r.spilledRuns) sorted runs on disk)" : ""))
            print("wrote \(out)" + (removed.map { " and \($0)" } ?? ""))
        }

        static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
    }
}
