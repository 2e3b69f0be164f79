import Foundation
import KeelCore

/// A corpus tokenised in memory at start-up, split into training and validation token streams: the simple
/// path for small corpora (large ones are prepared once into shards with `keel data prepare`).
///
/// Inputs are read as `keel data prepare` reads them (`DocumentSource`: text files, one document each; JSON
/// Lines with a `text` field, one document per line; either gzip or zstd compressed), or are llm.c token
/// shards (`.bin`); directories are read recursively in sorted order, hidden files skipped. Each document is
/// followed by end-of-text, and starts with the token the tokenizer puts before every text when one is given
/// (`DataPreparation` writes the same separators, end-of-text first: the documents read alike, only the stream's
/// ends differ); the last `validationFraction` of the stream is held out, so the document there is split between
/// the two.
public struct TokenCorpus: Sendable {
    public let train: [Int32]
    public let validation: [Int32]
    /// Number of input files read.
    public let fileCount: Int

    /// Reads and tokenises `paths`, each text document after `textStart` when given, checking every token id against
    /// `vocabSize`.
    public init(paths: [String], tokenizer: any TextTokenizer, textStart: Int32? = nil, vocabSize: Int,
                validationFraction: Double) throws {
        guard !paths.isEmpty else { throw KeelError("config: data.paths is empty: name at least one file or directory") }
        let files = try TokenCorpus.expand(paths)
        var tokens: [Int32] = []
        for file in files {
            if file.pathExtension == "bin" {
                tokens += try TokenShard(url: file).tokens()
            } else {
                try DocumentSource(url: file).forEachDocument { document in
                    if let textStart { tokens.append(textStart) }
                    tokens += tokenizer.encode(document)
                    tokens.append(tokenizer.endOfText)
                }
            }
        }
        guard !tokens.isEmpty else {
            throw KeelError("data: the corpus is empty (\(files.count) file(s) under \(paths.joined(separator: ", ")) hold no text)")
        }
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw KeelError("data: token id \(tokens[bad]) at position \(bad) is outside the vocabulary (vocab_size \(vocabSize))")
        }
        let held = Int((Double(tokens.count) * validationFraction).rounded())
        train = Array(tokens[..<(tokens.count - held)])
        validation = Array(tokens[(tokens.count - held)...])
        fileCount = files.count
    }

    /// The files of `paths` (`expand`) for a reader of text (`reader`, as the message names it): an llm.c token shard
    /// among them is refused, since its bytes read as text would be one document of noise (and a tokenizer trained
    /// on it, noise's merges).
    public static func expandText(_ paths: [String], reader: String) throws -> [URL] {
        let files = try expand(paths)
        if let shard = files.first(where: { $0.pathExtension == "bin" }) {
            throw KeelError("data: \(shard.path) is a token shard (.bin), not text: \(reader) reads text, JSONL or compressed files (train on shards with data.paths, or leave them out of the input)")
        }
        return files
    }

    /// Regular files named by `paths`, directories expanded recursively, in a deterministic order. A symbolic link in
    /// a directory counts as the file it points to (a Hugging Face cache's snapshot holds only links); one that points
    /// nowhere is an error, not a file skipped. A file named twice — a directory and a file in it, or two links to one
    /// file — is read once, where it first appears: read twice, its documents would weigh double, and with a held-out
    /// share some would be in both splits.
    public static func expand(_ paths: [String]) throws -> [URL] {
        var seen = Set<String>()
        return try expandAll(paths).filter { seen.insert($0.resolvingSymlinksInPath().standardizedFileURL.path).inserted }
    }

    private static func expandAll(_ paths: [String]) throws -> [URL] {
        var files: [URL] = []
        let manager = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw KeelError("data: no such file or directory: \(path)")
            }
            guard isDirectory.boolValue else {
                guard manager.isReadableFile(atPath: path) else { throw KeelError("data: cannot read \(path): permission denied") }
                files.append(URL(fileURLWithPath: path))
                continue
            }
            guard let enumerator = manager.enumerator(
                at: URL(fileURLWithPath: path), includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey],
                options: [.skipsHiddenFiles])
            else { throw KeelError("data: cannot list directory \(path)") }
            var found: [URL] = []
            for case let url as URL in enumerator {
                let kind = try? url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
                if kind?.isRegularFile == true {
                    found.append(url)
                } else if kind?.isSymbolicLink == true {
                    // fileExists follows the link; links to directories are not followed (they may loop).
                    var targetIsDirectory: ObjCBool = false
                    guard manager.fileExists(atPath: url.path, isDirectory: &targetIsDirectory) else {
                        let target = (try? manager.destinationOfSymbolicLink(atPath: url.path)) ?? "?"
                        throw KeelError("data: \(url.path) is a link to \(target), which does not exist")
                    }
                    if !targetIsDirectory.boolValue { found.append(url) }
                }
            }
            files += found.sorted { $0.path < $1.path }
        }
        return files
    }
}
