import Foundation
import Glibc
import KeelCore

/// How a corpus file is read.
public enum DocumentFormat: Sendable {
    /// The whole file is one document.
    case text
    /// JSON Lines: each non-blank line is a JSON object whose string field `text` is one document.
    case jsonl
}

/// How a corpus file is compressed.
public enum Compression: Sendable {
    /// Stored as is.
    case none
    /// gzip; concatenated members are one stream.
    case gzip
    /// Zstandard; concatenated frames are one stream.
    case zstd
}

/// A corpus file, streamed one document at a time for tokenisation.
///
/// Memory stays bounded by the largest single document (for JSONL, the longest line) however large the
/// file is: plain text files are memory-mapped, JSONL is read in pieces, and a compressed text file is
/// decompressed into memory whole because it is one document.
///
/// Behaviours worth knowing:
/// - Empty documents (an empty text file, a JSONL `"text": ""`) are skipped; blank JSONL lines
///   (whitespace only, including a lone `\r`) too. An empty `.gz`/`.zst` file is an error, not an empty
///   stream, since it is what a failed download leaves.
/// - Bytes after a complete gzip member or zstd frame must be another member or frame: trailing padding
///   is reported as corrupt data.
/// - Bytes are passed through as they are: invalid UTF-8 in a text file or inside a JSON string reaches
///   the tokenizer unchanged, which handles it.
/// - A `\u` escape of a lone UTF-16 surrogate (not half of a pair) decodes to U+FFFD, since it has no
///   UTF-8 encoding.
/// - A UTF-8 byte-order mark at the start of a JSONL file is ignored.
/// - JSON is checked as Python's `json.loads` checks it (`NaN`/`Infinity` accepted, the last of
///   duplicate keys wins), except that raw control characters inside strings are accepted.
public struct DocumentSource: Sendable {
    /// The corpus file.
    public let url: URL
    /// How the decompressed bytes divide into documents.
    public let format: DocumentFormat
    /// How the file is decompressed.
    public let compression: Compression
    /// What the file's first bytes say it is when that is a format Keel does not read (`foreignFormat(head:tail:)`): an xz,
    /// bzip2, 7-Zip, lz4, zip or tar archive, Parquet, Arrow. Read, it would be one document of binary noise — as a
    /// Hugging Face dataset's Parquet shards would, in a directory given whole — so reading it is an error instead.
    public let foreignFormat: String?

    /// Format and compression of `url`, from its name and its first bytes.
    ///
    /// The name decides the format after a compression suffix (`.gz`, `.zst`, `.zstd`) is removed:
    /// `.jsonl`, `.ndjson` and `.json` are JSON Lines (`.json.gz` is how several public corpora name JSON
    /// Lines shards; a true JSON document fails on its first line), anything else is text.
    /// Compression comes from the magic bytes when they are gzip's (`1f 8b`) or zstd's (`28 b5 2f fd`),
    /// whatever the name says; otherwise from the name. So a mislabelled compressed file still decodes,
    /// while a `.gz` file without the gzip magic fails loudly rather than being tokenised as binary noise.
    /// An unreadable file is classified by name alone; reading it later reports the problem. So is anything but a
    /// regular file (a pipe, `<(…)`): bytes read to look at would be gone from it.
    public init(url: URL) {
        self.url = url
        let named = Self.classify(name: url.lastPathComponent)
        format = named.format
        let ends = Self.ends(of: url.path)
        compression = ends.flatMap { Self.compression(announcedBy: $0.head) } ?? named.compression
        foreignFormat = ends.flatMap { Self.foreignFormat(head: $0.head, tail: $0.tail) }
    }

    /// The format and compression a file's name says (`.jsonl`, `.ndjson` or `.json`, each also with `.gz`, `.zst` or
    /// `.zstd` after it, is JSON Lines), without opening it.
    public static func classify(name: String) -> (format: DocumentFormat, compression: Compression) {
        var name = name.lowercased()
        var compression = Compression.none
        let suffixes = [(".gz", Compression.gzip), (".zst", .zstd), (".zstd", .zstd)]
        if let (suffix, kind) = suffixes.first(where: { name.hasSuffix($0.0) }) {
            name.removeLast(suffix.count)
            compression = kind
        }
        let jsonLines = [".jsonl", ".ndjson", ".json"].contains { name.hasSuffix($0) }
        return (jsonLines ? .jsonl : .text, compression)
    }

    /// The first 262 bytes (or fewer) and the last 4 of the regular file at `path`; nil for anything else, or one that
    /// cannot be read.
    private static func ends(of path: String) -> (head: [UInt8], tail: [UInt8])? {
        // Looked at before it is opened: opening a named pipe would let its writer start, and closing it kill the writer.
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { return nil }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var head = [UInt8](repeating: 0, count: 262), tail = [UInt8](repeating: 0, count: 4)
        let got = head.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        let gotTail = status.st_size >= 4 ? tail.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 4, status.st_size - 4) } : 0
        guard got >= 0, gotTail >= 0 else { return nil }
        return (Array(head.prefix(got)), Array(tail.prefix(gotTail)))
    }

    /// The compression that a file's first bytes announce, if any.
    private static func compression(announcedBy head: [UInt8]) -> Compression? {
        if head.starts(with: [0x1F, 0x8B]) { return .gzip }
        if head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        return nil
    }

    /// The name of the format that a file beginning with `head` and ending with `tail` (its last 4 bytes) is in, when it
    /// is one Keel does not read: the magic numbers of xz, bzip2 (its first block's, or an empty stream's, after the
    /// header), 7-Zip, lz4 frames, zip, POSIX tar (`ustar` at byte 257), Arrow (`ARROW1` and two zero bytes) and
    /// Parquet (`PAR1` at both ends). Each holds bytes no text file begins with, or, for Parquet, both ends.
    public static func foreignFormat(head: [UInt8], tail: [UInt8]) -> String? {
        let signatures: [(String, [UInt8])] = [
            ("an xz-compressed file", [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]),
            ("a 7-Zip archive", [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]),
            ("an lz4-compressed file", [0x04, 0x22, 0x4D, 0x18]),
            ("a zip archive", [0x50, 0x4B, 0x03, 0x04]),
            ("a zip archive", [0x50, 0x4B, 0x05, 0x06]),
            ("an Arrow file", Array("ARROW1".utf8) + [0, 0]),
        ]
        if let (name, _) = signatures.first(where: { head.starts(with: $0.1) }) { return name }
        if head.starts(with: Array("PAR1".utf8)), tail.elementsEqual("PAR1".utf8) { return "a Parquet file" }
        if head.count >= 10, head.starts(with: Array("BZh".utf8)), (0x31...0x39).contains(head[3]),
           [[0x31, 0x41, 0x59, 0x26, 0x53, 0x59], [0x17, 0x72, 0x45, 0x38, 0x50, 0x90]].contains(Array(head[4..<10])) {
            return "a bzip2-compressed file"
        }
        if head.count >= 262, head[257..<262].elementsEqual("ustar".utf8) { return "a tar archive" }
        return nil
    }

    /// Throws for a file in a format Keel does not read (`foreignFormat`), naming it.
    private func refuseForeignFormat() throws {
        guard let foreignFormat else { return }
        throw KeelError("\(url.path) is \(foreignFormat), which Keel does not read: give text, JSON Lines, or either compressed with gzip or zstd (convert it first, or leave it out of the input)")
    }

    /// Calls `body` with each document's UTF-8 bytes, in file order. The bytes are valid only during the
    /// call. Errors from `body` propagate unchanged.
    ///
    /// Throws `KeelError` naming the file (and for JSONL the line and column) when the file cannot be
    /// read, is in a format Keel does not read (`foreignFormat`), a compressed stream is corrupt or truncated, or a JSONL line is not a JSON object, has no
    /// `text` field, or has a `text` that is not a string.
    public func forEachDocument(_ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        try refuseForeignFormat()
        let file = try FileInput(path: url.path)
        if compression == .none, format == .text, try file.withMappedContents(body) { return }
        let stream = try decompressed(file)
        switch format {
        case .text: try forWholeStream(stream, body)
        case .jsonl: try forEachText(stream, body)
        }
    }

    /// One line of a JSON Lines file: the whole line and its decoded `text`, both valid only during the call.
    public struct Record {
        /// 1-based line number.
        public let number: Int
        /// The line, without its newline or a leading byte-order mark.
        public let line: UnsafeBufferPointer<UInt8>
        /// The decoded `text` field (UTF-8).
        public let text: UnsafeBufferPointer<UInt8>
        /// Where the `text` value, quotes included, lies in `line`: a record can be rewritten with another
        /// text by replacing these bytes.
        public let textValue: Range<Int>
    }

    /// Every record of a JSON Lines file, for readers that keep whole records rather than their `text`
    /// (decompressed; blank lines skipped). Throws `KeelError` as `forEachDocument` does for a line that is not
    /// a JSON object with a string `text` — or with a string `field`, when another field is wanted (`html`; the
    /// record's `text` is then that field). Memory stays bounded by the longest line.
    public func forEachRecord(field: String = "text", _ body: (Record) throws -> Void) throws {
        try refuseForeignFormat()
        let lines = LineReader(try decompressed(FileInput(path: url.path)))
        let extractor = JSONLTextExtractor(field: field)
        while var line = try lines.next() {
            switch try parse(&line, lines.number, extractor, field: field) {
            case .blank, .missingText, .textNotString: continue
            case .text(let text, let value): try body(Record(number: lines.number, line: line, text: text, textValue: value))
            }
        }
    }

    /// Parses one line, throwing `KeelError` naming the file and line for anything but a blank line or a
    /// JSON object with a string `text`.
    private func parse(_ line: inout UnsafeBufferPointer<UInt8>, _ number: Int, _ extractor: JSONLTextExtractor,
                       field: String = "text") throws -> JSONLine {
        // A byte-order mark may open the file; columns still count it.
        var column = 0
        if number == 1, line.starts(with: [0xEF, 0xBB, 0xBF]) {
            line = UnsafeBufferPointer(rebasing: line[3...])
            column = 3
        }
        let parsed: JSONLine
        do { parsed = try extractor.parse(line) } catch {
            throw KeelError("data: \(url.path): line \(number), column \(error.column + column): \(error.message)")
        }
        switch parsed {
        case .missingText:
            throw KeelError("data: \(url.path): line \(number): the JSON object has no \"\(field)\" field")
        case .textNotString(let kind):
            throw KeelError("data: \(url.path): line \(number): \"\(field)\" is \(kind), not a string")
        default:
            return parsed
        }
    }

    private func decompressed(_ file: FileInput) throws -> ByteStream {
        switch compression {
        case .none: file
        case .gzip: try GzipStream(file: file)
        case .zstd: try ZstdStream(file: file)
        }
    }

    /// The whole decoded stream as one document.
    private func forWholeStream(_ stream: ByteStream, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        let buffer = ByteBuffer(capacity: 1 << 20)
        while true {
            if buffer.count == buffer.capacity { buffer.reserve(buffer.capacity * 2) }
            let got = try stream.read(into: buffer.base + buffer.count, count: buffer.capacity - buffer.count)
            if got == 0 { break }
            buffer.count += got
        }
        guard buffer.count > 0 else { return }
        // A compressed archive (`.tar.gz`): what the compression holds is not text either.
        if let inside = Self.foreignFormat(head: Array(buffer.bytes.prefix(262)), tail: Array(buffer.bytes.suffix(4))) {
            throw KeelError("\(url.path) holds \(inside) under its compression, which Keel does not read: give text, JSON Lines, or either compressed with gzip or zstd (unpack it first, or leave it out of the input)")
        }
        try body(buffer.bytes)
    }

    /// The `text` of every JSONL line.
    private func forEachText(_ stream: ByteStream, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        let lines = LineReader(stream)
        let extractor = JSONLTextExtractor()
        while var line = try lines.next() {
            if case .text(let text, _) = try parse(&line, lines.number, extractor), !text.isEmpty { try body(text) }
        }
    }
}

/// Splits a byte stream at '\n' through one buffer that grows to the longest line.
final class LineReader {
    private let stream: ByteStream
    private let buffer = ByteBuffer(capacity: 1 << 20)
    /// Start of the first line not yet returned.
    private var start = 0
    /// Where the search for the next '\n' resumes: bytes before it hold none past `start`.
    private var searched = 0
    private var ended = false
    /// 1-based number of the line last returned.
    private(set) var number = 0

    init(_ stream: ByteStream) {
        self.stream = stream
    }

    /// The next line without its '\n'; valid until the next call. Nil at the end of the stream.
    func next() throws -> UnsafeBufferPointer<UInt8>? {
        while true {
            let base = buffer.base
            if let hit = memchr(base + searched, 0x0A, buffer.count - searched) {
                let newline = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                return take(upTo: newline, skipping: 1)
            }
            searched = buffer.count
            if ended {
                return start < buffer.count ? take(upTo: buffer.count, skipping: 0) : nil
            }
            // Keep only the unfinished line, at the front, and grow when it fills the buffer.
            if start > 0 {
                let kept = buffer.count - start
                memmove(base, base + start, kept)
                buffer.count = kept
                searched -= start
                start = 0
            }
            if buffer.count == buffer.capacity { buffer.reserve(buffer.capacity * 2) }
            let got = try stream.read(into: buffer.base + buffer.count, count: buffer.capacity - buffer.count)
            if got == 0 { ended = true } else { buffer.count += got }
        }
    }

    private func take(upTo end: Int, skipping separator: Int) -> UnsafeBufferPointer<UInt8> {
        let line = UnsafeBufferPointer(start: buffer.base + start, count: end - start)
        start = end + separator
        searched = start
        number += 1
        return line
    }
}
