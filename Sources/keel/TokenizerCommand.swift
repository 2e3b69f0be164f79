import ArgumentParser
import Foundation
import KeelCore
import KeelData

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Train byte-level BPE vocabularies and encode or decode text.",
        subcommands: [TrainTokenizer.self, Encode.self, Decode.self, Bench.self])

    struct TrainTokenizer: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "Learn a byte-level BPE vocabulary from text.",
            discussion: """
                Writes a Hugging Face tokenizer.json (loadable with tokenizers.Tokenizer.from_file, which \
                encodes any text to the same ids as Keel) or, with a .tiktoken extension, a tiktoken rank \
                file. The vocabulary holds the 256 bytes, the merges, and <|endoftext|> as its last id.
                """)

        @Option(help: "Number of ids, including the 256 bytes and <|endoftext|>.")
        var vocabSize: Int

        @Option(name: .long, parsing: .upToNextOption, help: "Text/JSONL files or directories (gzip or zstd allowed).")
        var input: [String]

        @Option(help: "Split pattern applied before BPE: gpt2, cl100k (tiktoken's), llama3 (cl100k's as Llama 3 and llama.cpp write it) or gpt2-digits.")
        var pattern: SplitPattern = .gpt2

        @Option(name: .shortAndLong, help: "File to write (tokenizer.json, or NAME.tiktoken).")
        var out: String

        func run() throws {
            let start = Date()
            let vocabulary = try TokenizerTraining.train(
                inputs: input, vocabSize: vocabSize, pattern: pattern,
                progress: { StandardStreams.error("tokenizer: " + $0 + "\n") })
            let url = URL(fileURLWithPath: out)
            if url.pathExtension == "tiktoken" {
                try TokenizerFiles.writeTiktoken(vocabulary, to: url)
                // The format has no place for them: say what a reader must be told, and what training cannot do.
                StandardStreams.error("note: a .tiktoken file holds the ranks only: read it with --pattern \(pattern.rawValue); without <|endoftext|> (id \(vocabulary.size - 1) here) Keel cannot prepare data or train with it — tokenizer.json keeps both\n")
            } else {
                try TokenizerFiles.writeHuggingFace(vocabulary, to: url)
            }
            print(String(format: "wrote %@: %d ids in %.1f s", out, vocabulary.size, Date().timeIntervalSince(start)))
        }
    }

    struct Encode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encode text to token ids (whitespace-separated integers on stdout).")

        @Option(help: "tokenizer.json or .tiktoken file (or \"byte\").")
        var tokenizer: String

        @Option(help: "Split pattern for a .tiktoken file whose name does not say (gpt2, cl100k, llama3 or gpt2-digits).")
        var pattern: SplitPattern?

        @Option(help: "File to encode (default: standard input).")
        var input: String?

        @Option(help: "Special-token text in the input: ordinary (encode as text), allowed (emit its id) or rejected (error).")
        var special: SpecialTokenPolicy = .rejected

        func run() throws {
            let text = try readInput(input)
            let ids: [Int32]
            if tokenizer == "byte" {
                ids = text.map { Int32($0) }
            } else {
                let encoder = BPEEncoder(vocabulary: try TokenizerFiles.load(tokenizer, pattern: pattern))
                var output: [Int32] = []
                try text.withUnsafeBufferPointer { try encoder.encode($0, specialTokens: special, into: &output) }
                ids = output
            }
            try StandardStreams.output(ids.map(String.init).joined(separator: " ") + "\n")
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Decode whitespace-separated token ids to text.")

        @Option(help: "tokenizer.json or .tiktoken file (or \"byte\").")
        var tokenizer: String

        @Option(help: "Split pattern for a .tiktoken file whose name does not say (gpt2, cl100k, llama3 or gpt2-digits).")
        var pattern: SplitPattern?

        @Option(help: "File of ids (default: standard input).")
        var input: String?

        func run() throws {
            let text = String(decoding: try readInput(input), as: UTF8.self)
            var ids: [Int32] = []
            for (index, field) in text.split(whereSeparator: { $0.isWhitespace }).enumerated() {
                guard let id = Int32(field) else { throw KeelError("decode: item \(index + 1) ('\(field)') is not an integer id") }
                ids.append(id)
            }
            let bytes = tokenizer == "byte" ? ByteTokenizer().decode(ids)
                : try TokenizerFiles.load(tokenizer, pattern: pattern).decode(ids)
            try StandardStreams.output(bytes)
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure encoding throughput (MB/s) over files held in memory.",
            discussion: """
                Each measurement loads the tokenizer file and encodes every file once with fresh encoders (no \
                warm cache carried over); both times are reported. scripts/bench/tokenizer.py runs this beside \
                tiktoken and Hugging Face tokenizers.
                """)

        @Option(help: "tokenizer.json or .tiktoken file.")
        var tokenizer: String

        @Option(name: .long, parsing: .upToNextOption, help: "Files or directories to encode.")
        var input: [String]

        @Option(help: "Threads (1: single-threaded encoder; 0: all cores).")
        var threads = 1

        @Option(help: "Measurements to take (the median is printed).")
        var repeats = 3

        func validate() throws {
            guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
            guard threads >= 0 else { throw ValidationError("--threads must not be negative") }
        }

        func run() throws {
            var batch = DocumentBatch()
            for file in try TokenCorpus.expand(input) {
                try Array(Data(contentsOf: file)).withUnsafeBufferPointer { batch.append($0) }
            }
            let pool = threads == 0 ? ThreadPool.shared : ThreadPool(threadCount: threads)
            var times: [Double] = [], loadTimes: [Double] = []
            var tokens = 0
            for _ in 0..<repeats {
                let loadStart = Date()
                let encoder = try ParallelEncoder(tokenizer, pool: pool)
                loadTimes.append(Date().timeIntervalSince(loadStart))
                let start = Date()
                let encoded = encoder.encode(batch)
                times.append(Date().timeIntervalSince(start))
                tokens = encoded.reduce(0) { $0 + $1.count }
            }
            let bytes = batch.bytes.count, files = batch.count
            let median = times.sorted()[times.count / 2]
            print(String(format: "keel: %.2f MB in %d files, %d tokens, %d thread(s): %.2f MB/s (median of %d)",
                         Double(bytes) / 1e6, files, tokens, pool.threadCount, Double(bytes) / 1e6 / median, repeats))
            print(String(format: "keel: tokenizer loaded in %.1f ms (median of %d)", 1000 * loadTimes.sorted()[repeats / 2], repeats))
        }
    }
}

/// The bytes of `path`, or of standard input when nil.
func readInput(_ path: String?) throws -> [UInt8] {
    guard let path else { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
    guard let data = FileManager.default.contents(atPath: path) else { throw KeelError("\(path): cannot read") }
    return Array(data)
}

extension SplitPattern: ExpressibleByArgument {}
extension SpecialTokenPolicy: ExpressibleByArgument {}
