import ArgumentParser
import Foundation
import KeelCore
import KeelData

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Prepare training data.", subcommands: [Prepare.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tokenise a corpus into llm.c token shards with a train/validation split and a manifest.",
            discussion: """
                Inputs: text files (one document each), JSONL files with a "text" field (one document per \
                line), gzip (.gz) or zstd (.zst) compressed, and directories of them. Output: OUT/train_*.bin, \
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
            var lastPrinted = Date.distantPast
            var last = DataPreparation.Progress()
            let manifest = try preparation.run { status in
                last = status
                guard interactive || Date().timeIntervalSince(lastPrinted) > 5 else { return }
                lastPrinted = Date()
                FileHandle.standardError.write(Data(((interactive ? "\r\u{1B}[K" : "") + Prepare.describe(status)
                    + (interactive ? "" : "\n")).utf8))
            }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            print(Prepare.describe(last))
            print("train: \(manifest.train.documents) documents, \(manifest.train.tokens) tokens in \(manifest.train.shards.count) shard(s)")
            print("val: \(manifest.val.documents) documents, \(manifest.val.tokens) tokens in \(manifest.val.shards.count) shard(s)")
            print("wrote \(out)/\(ShardManifest.fileName) (\(manifest.dtype.rawValue) tokens, vocabulary \(manifest.vocabSize))")
        }

        static func describe(_ s: DataPreparation.Progress) -> String {
            let seconds = max(s.seconds, 1e-9)
            return String(format: "%d documents, %.1f MB, %d tokens | %.1f MB/s, %.0fk tokens/s | %.1f s",
                          s.documents, Double(s.bytes) / 1e6, s.tokens, Double(s.bytes) / 1e6 / seconds,
                          Double(s.tokens) / 1e3 / seconds, s.seconds)
        }
    }
}

extension TokenShardFormat: ExpressibleByArgument {}
