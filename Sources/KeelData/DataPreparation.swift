import Foundation
import KeelCore

/// `keel data prepare`: tokenises a corpus into llm.c token shards with a train/validation split by
/// document and a manifest.
///
/// Every document is preceded by end-of-text (llm.c's convention), so a window's context never runs from
/// one document into the next without the separator, and then by the token the tokenizer puts before every text
/// when it has one (Llama 3's `<|begin_of_text|>`: Hugging Face's `tokenizer(text)` and torchtitan start each
/// document with it, and a model trained that way reads text after it). Documents are assigned to validation evenly: document
/// i goes to validation when ⌊(i+1)·f⌋ > ⌊i·f⌋, which holds out exactly ⌊n·f⌋ of n documents spread over
/// the corpus, deterministically. Documents are tokenised in parallel in batches and written in input
/// order, so the output does not depend on the thread count.
public struct DataPreparation {
    /// Files to read (text, JSONL, optionally gzip/zstd compressed; directories expanded).
    public var inputs: [String]
    /// The tokenizer file (`tokenizer.json`, `.tiktoken`) or "byte".
    public var tokenizer: String
    public var output: URL
    public var validationFraction: Double = 0.01
    /// Tokens per shard (the last shard of each split may be shorter).
    public var shardTokens = 100_000_000
    /// Shard token width; nil picks the narrowest that holds the vocabulary.
    public var format: TokenShardFormat?

    public init(inputs: [String], tokenizer: String, output: URL) {
        self.inputs = inputs
        self.tokenizer = tokenizer
        self.output = output
    }

    /// Counters for the progress display.
    public struct Progress: Sendable {
        public var documents = 0
        public var bytes = 0
        public var tokens = 0
        public var seconds = 0.0

        public init() {}
    }

    /// Runs the preparation; `progress` is called after each batch of documents.
    @discardableResult
    public func run(progress: (Progress) -> Void = { _ in }) throws -> ShardManifest {
        guard validationFraction >= 0, validationFraction < 1 else {
            throw KeelError("--val-fraction must be in [0, 1) (got \(validationFraction))")
        }
        if let problem = TokenShardFormat.problem(shardTokens: shardTokens) { throw KeelError("--shard-tokens \(problem)") }
        if FileManager.default.fileExists(atPath: output.appendingPathComponent(ShardManifest.fileName).path) {
            throw KeelError("\(output.path) already holds a prepared dataset; choose another --out or delete it")
        }
        let files = try TokenCorpus.expandText(inputs, reader: "keel data prepare")
        let encoders = try ParallelEncoder(tokenizer)
        let format = self.format ?? TokenShardFormat.narrowest(vocabSize: encoders.vocabSize)
        try format.check(vocabSize: encoders.vocabSize)
        // The files are made in a hidden directory inside the output and moved out once all are complete, the manifest
        // last: a run that fails (a bad line in the tenth file, a full disk) or is killed leaves no shards beside the
        // directory's other files to look like a dataset in the making. A directory this run made is removed then.
        let made = !FileManager.default.fileExists(atPath: output.path)
        try AtomicFile.createDirectory(output)
        let staged = output.appendingPathComponent(Self.stagingName)
        do {
            try? FileManager.default.removeItem(at: staged)  // left by a killed run
            try AtomicFile.createDirectory(staged)
            let manifest = try write(files, encoders: encoders, format: format, into: staged, progress: progress)
            try ShardManifest.moveDataset(from: staged, to: output)
            try? FileManager.default.removeItem(at: staged)
            return manifest
        } catch {
            try? FileManager.default.removeItem(at: made ? output : staged)
            throw error
        }
    }

    /// The hidden directory inside the output where a preparation makes its files.
    public static let stagingName = ".prepare.partial"

    /// Tokenises `files` into shards of `format` in `output` (the staging directory), then writes the tokenizer and the manifest.
    private func write(_ files: [URL], encoders: ParallelEncoder, format: TokenShardFormat, into output: URL,
                       progress: (Progress) -> Void) throws -> ShardManifest {
        var writers = [SplitWriter(name: "train", format: format, shardTokens: shardTokens, directory: output),
                       SplitWriter(name: "val", format: format, shardTokens: shardTokens, directory: output)]
        var status = Progress()
        let start = Date()
        var batch = DocumentBatch()
        let separators = [encoders.endOfText] + (encoders.textStart.map { [$0] } ?? [])
        func flush() throws {
            guard batch.count > 0 else { return }
            let encoded = encoders.encode(batch)
            for (offset, tokens) in encoded.enumerated() {
                let index = status.documents + offset
                let isValidation = Int(Double(index + 1) * validationFraction) > Int(Double(index) * validationFraction)
                try writers[isValidation ? 1 : 0].append(document: tokens, after: separators)
                status.tokens += separators.count + tokens.count
            }
            status.documents += batch.count
            status.bytes += batch.bytes.count
            status.seconds = Date().timeIntervalSince(start)
            batch.removeAll()
            progress(status)
        }
        for file in files {
            try DocumentSource(url: file).forEachDocument { document in
                batch.append(document)
                if batch.bytes.count >= 32 << 20 || batch.count >= 4096 { try flush() }
            }
        }
        try flush()
        guard status.documents > 0 else {
            throw KeelError("data: no documents in \(inputs.joined(separator: ", ")) (empty files are skipped)")
        }
        let manifest = ShardManifest(
            tokenizer: try encoders.copyTokenizer(to: output), vocabSize: encoders.vocabSize,
            endOfText: encoders.endOfText, textStart: encoders.textStart, dtype: format, train: try writers[0].finish(), val: try writers[1].finish(),
            sourceBytes: status.bytes)
        try manifest.write(to: output)
        return manifest
    }
}

/// Accumulates one split's tokens and writes a shard whenever `shardTokens` are buffered.
private struct SplitWriter {
    let name: String
    let format: TokenShardFormat
    let shardTokens: Int
    let directory: URL
    /// Tokens not yet in a shard: `buffer[written...]` (the front is dropped once per document, not per shard, so a
    /// document of many shards costs no quadratic copying).
    private var buffer: [Int32] = []
    private var written = 0
    private var shards: [ShardManifest.Shard] = []
    private var documents = 0
    private var tokens = 0

    init(name: String, format: TokenShardFormat, shardTokens: Int, directory: URL) {
        self.name = name
        self.format = format
        self.shardTokens = shardTokens
        self.directory = directory
    }

    /// Adds one document's tokens after its `separators`.
    mutating func append(document: [Int32], after separators: [Int32]) throws {
        buffer.append(contentsOf: separators)
        buffer.append(contentsOf: document)
        documents += 1
        tokens += separators.count + document.count
        while buffer.count - written >= shardTokens { try writeShard(count: shardTokens) }
        buffer.removeFirst(written)
        written = 0
    }

    mutating func finish() throws -> ShardManifest.Split {
        if buffer.count > written { try writeShard(count: buffer.count - written) }
        return ShardManifest.Split(documents: documents, tokens: tokens, shards: shards)
    }

    private mutating func writeShard(count: Int) throws {
        let file = String(format: "%@_%06d.bin", name, shards.count)
        let checksum = try format.write(buffer[written..<(written + count)], to: directory.appendingPathComponent(file))
        shards.append(ShardManifest.Shard(file: file, tokens: count, xxh64: String(checksum, radix: 16)))
        written += count
    }
}
