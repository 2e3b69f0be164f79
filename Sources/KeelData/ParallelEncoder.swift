import Foundation
import KeelCore

/// Documents gathered for one parallel tokenisation pass.
public struct DocumentBatch {
    public private(set) var bytes: [UInt8] = []
    public private(set) var ends: [Int] = []
    public var count: Int { ends.count }

    public init() {}

    public mutating func append(_ document: UnsafeBufferPointer<UInt8>) {
        bytes.append(contentsOf: document)
        ends.append(bytes.count)
    }

    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
    }
}

/// Tokenises batches of documents on a thread pool, one encoder per thread (BPE encoders keep a cache
/// and are not thread-safe). Results come back in document order, whatever the thread count.
public struct ParallelEncoder {
    public let vocabSize: Int
    public let endOfText: Int32
    /// The token the tokenizer puts before every text (`TokenizerSettings.beginningOfTextToken(in:)`), if any.
    public let textStart: Int32?
    private let source: String
    private let pool: ThreadPool
    private let bpe: [BPEEncoder]

    /// Encoders for the tokenizer file `name` (or "byte") running on `pool`.
    public init(_ name: String, pool: ThreadPool = .shared) throws {
        self.pool = pool
        source = name
        if name == "byte" {
            vocabSize = ByteTokenizer.vocabSize
            endOfText = ByteTokenizer().endOfText
            textStart = nil
            bpe = []
        } else {
            let vocabulary = try TokenizerFiles.load(name), settings = TokenizerSettings(besides: name)
            let tokenizer = try BPETokenizer(vocabulary: vocabulary, origin: name, endOfSequence: settings.endOfSequence)
            vocabSize = tokenizer.vocabSize
            endOfText = tokenizer.endOfText
            textStart = settings.beginningOfTextToken(in: tokenizer)
            bpe = (0..<pool.threadCount).map { _ in BPEEncoder(vocabulary: vocabulary) }
        }
    }

    /// The tokens of each document of `batch`, in order.
    public func encode(_ batch: DocumentBatch) -> [[Int32]] {
        var results = [[Int32]](repeating: [], count: batch.count)
        batch.bytes.withUnsafeBufferPointer { bytes in
            results.withUnsafeMutableBufferPointer { out in
                pool.parallelChunks(batch.count) { slot, range in
                    for i in range {
                        let document = UnsafeBufferPointer(rebasing: bytes[(i == 0 ? 0 : batch.ends[i - 1])..<batch.ends[i]])
                        if bpe.isEmpty {
                            out[i] = document.map { Int32($0) }
                        } else {
                            bpe[slot].encodeOrdinary(document, into: &out[i])
                        }
                    }
                }
            }
        }
        return results
    }

    /// Copies the tokenizer file into the dataset, with the settings files beside it (`TokenizerSettings`: its
    /// end-of-sequence token, which the dataset's documents end with, and chat template); returns its name there
    /// ("byte" for byte-level). A `.tiktoken` file keeps its name, which says its split pattern and special tokens
    /// (`TokenizerFiles.load`): under another it could not be read again.
    func copyTokenizer(to directory: URL) throws -> String {
        guard source != "byte" else { return "byte" }
        let url = URL(fileURLWithPath: source)
        let name = url.pathExtension == "tiktoken" ? url.lastPathComponent : "tokenizer.json"
        try AtomicFile.write(Data(contentsOf: url), to: directory.appendingPathComponent(name))
        for (settings, contents) in try TokenizerSettings.files(in: url.deletingLastPathComponent()) {
            try AtomicFile.write(contents, to: directory.appendingPathComponent(settings))
        }
        return name
    }
}
