import Foundation
import KeelCore

/// `manifest.json` of a prepared dataset directory: the tokenizer, and for each split its shards with
/// their token counts and checksums. Written last by `keel data prepare`, so a directory with a manifest
/// is complete.
public struct ShardManifest: Codable, Equatable, Sendable {
    /// One shard file.
    public struct Shard: Codable, Equatable, Sendable {
        public var file: String
        public var tokens: Int
        public var xxh64: String
    }

    /// One split (`train` or `val`).
    public struct Split: Codable, Equatable, Sendable {
        public var documents: Int
        public var tokens: Int
        public var shards: [Shard]
    }

    /// The layout's version: a manifest of another is refused rather than misread.
    public var version = ShardManifest.currentVersion
    public static let currentVersion = 1
    /// The tokenizer file inside the dataset directory (`tokenizer.json`, or the `.tiktoken` file under its own name,
    /// which says its split pattern), or "byte".
    public var tokenizer: String
    public var vocabSize: Int
    public var endOfText: Int32
    /// The token written before every document, after end-of-text (the tokenizer's text start), if any.
    public var textStart: Int32? = nil
    public var dtype: TokenShardFormat
    public var train: Split
    public var val: Split
    /// Input bytes read.
    public var sourceBytes: Int

    enum CodingKeys: String, CodingKey {
        case version, tokenizer, dtype, train, val
        case vocabSize = "vocab_size", endOfText = "end_of_text", textStart = "text_start", sourceBytes = "source_bytes"
    }

    /// The tokens written before each document's own: end-of-text, and the text start if any.
    public var separatorsPerDocument: Int { textStart == nil ? 1 : 2 }

    public static let fileName = "manifest.json"

    /// Reads `directory/manifest.json`.
    public static func read(from directory: URL) throws -> ShardManifest {
        let url = directory.appendingPathComponent(fileName)
        guard let data = try? Data(contentsOf: url) else {
            throw KeelError("data: \(directory.path) is not a prepared dataset (no \(fileName); run keel data prepare)")
        }
        let manifest: ShardManifest
        do { manifest = try JSONDecoder().decode(ShardManifest.self, from: data) } catch {
            throw KeelError("data: \(url.path) is malformed: \(decodingProblem(error))")
        }
        guard manifest.version == ShardManifest.currentVersion else {
            throw KeelError("data: \(url.path) is a version \(manifest.version) dataset; this Keel reads version \(ShardManifest.currentVersion)")
        }
        return manifest
    }

    /// Moves the files of a dataset made in `staged` into `output`, replacing files of the same names: every other
    /// file first, the manifest last, so that `output` holds a dataset only once all of it is there.
    public static func moveDataset(from staged: URL, to output: URL) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: staged.path).filter { $0 != fileName }
        for name in names + [fileName] {
            try AtomicFile.rename(staged.appendingPathComponent(name), to: output.appendingPathComponent(name))
        }
    }

    /// Writes the manifest atomically.
    public func write(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(self), to: directory.appendingPathComponent(ShardManifest.fileName))
    }

    /// Maps the shards of one split and verifies those of `share` (every `share.count`-th from `share.index`: the
    /// ranks of a job verify a share each, rather than each reading the whole dataset), with `tokensBelow` also
    /// that their tokens are below it.
    public func openShards(_ split: Split, in directory: URL, share: (index: Int, count: Int) = (0, 1),
                           tokensBelow vocabSize: Int? = nil) throws -> [TokenShard] {
        try split.shards.enumerated().map { index, shard in
            guard let checksum = UInt64(shard.xxh64, radix: 16) else {
                throw KeelError("data: \(ShardManifest.fileName) has a malformed checksum for \(shard.file)")
            }
            let verified = index % share.count == share.index
            let opened = try TokenShard(url: directory.appendingPathComponent(shard.file), checksum: verified ? checksum : nil,
                                        tokensBelow: verified ? vocabSize : nil)
            guard opened.count == shard.tokens else {
                throw KeelError("data: \(shard.file) holds \(opened.count) tokens, the manifest says \(shard.tokens)")
            }
            // A shard of another width than the manifest's comes from another dataset (or a manifest edited by hand).
            guard opened.format == dtype else {
                throw KeelError("data: \(shard.file) holds \(opened.format.rawValue) tokens, the manifest says \(dtype.rawValue)")
            }
            return opened
        }
    }
}
