import ArgumentParser
import Foundation
import KeelCore
import KeelData

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Prepare training data, read web crawls (WARC) and measure the loader.",
        subcommands: [Prepare.self, Warc.self, Extract.self, Filter.self, Dedup.self, Pipeline.self, Bench.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tokenise a corpus into llm.c token shards with a train/validation split and a manifest.",
            discussion: """
                Inputs: text files (one document each), JSONL files with a "text" field (one document per \
                line), gzip (.gz) or zstd (.zst) compressed, and directories of them. Each document is written after \
                end-of-text and, when the tokenizer puts a token before every text (Llama 3's <|begin_of_text|>), \
                after that token. Output: OUT/train_*.bin, \
                OUT/val_*.bin (uint16 tokens, or uint32 when the vocabulary exceeds 65,536 ids), \
                OUT/manifest.json and a copy of the tokenizer. Train on it with data.dataset = "OUT".
                """)

        @Option(help: "tokenizer.json or .tiktoken file, or \"byte\".")
        var tokenizer: String

        @Option(name: .long, parsing: .upToNextOption, help: "Files or directories to read.")
        var input: [String]

        @Option(name: .shortAndLong, help: "Dataset directory to create.")
        var out: String

        @Option(help: "Share of documents held out for validation.")
        var valFraction = 0.01

        @Option(help: "Tokens per shard.")
        var shardTokens = 100_000_000

        @Option(help: "Token width: uint16 or uint32 (default: the narrowest that fits the vocabulary).")
        var dtype: TokenShardFormat?

        func run() throws {
            var preparation = DataPreparation(inputs: input, tokenizer: tokenizer, output: URL(fileURLWithPath: out))
            preparation.validationFraction = valFraction
            preparation.shardTokens = shardTokens
            preparation.format = dtype
            let interactive = isatty(STDERR_FILENO) != 0
            var lastPrinted = Date()
            var last = DataPreparation.Progress()
            let manifest = try preparation.run { status in
                last = status
                guard interactive || Date().timeIntervalSince(lastPrinted) > 5 else { return }
                lastPrinted = Date()
                StandardStreams.error((interactive ? "\r\u{1B}[K" : "") + Prepare.describe(status)
                    + (interactive ? "" : "\n"))
            }
            if interactive { StandardStreams.error("\n") }
            print(Prepare.describe(last))
            print("train: \(manifest.train.documents) documents, \(manifest.train.tokens) tokens in \(manifest.train.shards.count) shard(s)")
            print("val: \(manifest.val.documents) documents, \(manifest.val.tokens) tokens in \(manifest.val.shards.count) shard(s)")
            print("wrote \(out)/\(ShardManifest.fileName) (\(manifest.dtype.rawValue) tokens, vocabulary \(manifest.vocabSize))")
            if manifest.val.documents == 0 {
                // Said now rather than when a training run starts on it.
                StandardStreams.error("note: no document was held out (--val-fraction \(valFraction) of \(last.documents)); keel train needs a validation split and will refuse this dataset (keel eval --split train reads it)\n")
            }
        }

        static func describe(_ s: DataPreparation.Progress) -> String {
            let seconds = max(s.seconds, 1e-9)
            return String(format: "%d documents, %.1f MB, %d tokens | %.1f MB/s, %.0fk tokens/s | %.1f s",
                          s.documents, Double(s.bytes) / 1e6, s.tokens, Double(s.bytes) / 1e6 / seconds,
                          Double(s.tokens) / 1e3 / seconds, s.seconds)
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure how fast the loader delivers training batches from a prepared dataset.",
            discussion: "Compare with the tokens/s `keel train` consumes (metrics.jsonl) for the same batch shape.")

        @Option(help: "Dataset directory (from keel data prepare).")
        var dataset: String

        @Option(help: "Sequences per batch.")
        var batchSize = 4

        @Option(help: "Tokens per sequence.")
        var seqLen = 256

        @Option(help: "Batches to draw.")
        var batches = 5000

        func validate() throws {
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
            guard seqLen > 0 else { throw ValidationError("--seq-len must be positive") }
            // A batch's tokens are allocated at once.
            guard let tokens = checkedProduct([batchSize, seqLen]), tokens <= 1 << 31 else {
                throw ValidationError("--batch-size × --seq-len must be at most \(1 << 31) tokens")
            }
            guard batches > 0 else { throw ValidationError("--batches must be positive") }
        }

        func run() throws {
            let directory = URL(fileURLWithPath: dataset)
            let manifest = try ShardManifest.read(from: directory)
            let windows = TokenWindows(segments: try manifest.openShards(manifest.train, in: directory).map { .shard($0) },
                                       length: seqLen)
            let loader = try TokenLoader(windows: windows, batch: batchSize, seed: 1)
            defer { loader.stop() }
            var inputs = [Int32](repeating: 0, count: batchSize * seqLen), targets = inputs
            var checksum: Int64 = 0
            let start = Date()
            for _ in 0..<batches {
                inputs.withUnsafeMutableBufferPointer { i in
                    targets.withUnsafeMutableBufferPointer { t in loader.next(inputs: i.baseAddress!, targets: t.baseAddress!) }
                }
                checksum &+= Int64(inputs[0])
            }
            let seconds = Date().timeIntervalSince(start)
            let tokens = Double(batches * batchSize * seqLen)
            print(String(format: "loader: %d batches of %d × %d tokens in %.3f s = %.0f tokens/s (checksum %lld)",
                         batches, batchSize, seqLen, seconds, tokens / seconds, checksum))
        }
    }
}

extension TokenShardFormat: ExpressibleByArgument {}
