import CMappedFiles
import Foundation

/// Names a mapped file to the process's SIGBUS handler for as long as it lives, so that a read of the mapping that
/// fails — the file truncated while in use (rewritten in place under a running job), or a network
/// file system that cannot deliver a page — dies with "keel: reading PATH failed at byte N: …" on standard error,
/// rather than a bare "Bus error" that names nothing.
public final class MappedFileName: @unchecked Sendable {
    private let slot: Int32
    /// The mapped `Data` named, held so that it is unmapped only after the name is forgotten (whatever order its
    /// holder's properties go in).
    private let mapping: Data?

    /// Names the mapping `bytes` (all of a mapped file) as the file at `path`; the caller unmaps it after this is gone.
    public init(_ bytes: UnsafeRawBufferPointer, path: String) {
        slot = bytes.baseAddress.map { keel_name_mapping($0, bytes.count, path) } ?? -1
        mapping = nil
    }

    /// Names the mapping behind `data`, read from `url` with `.alwaysMapped`, whose bytes stay where they are for as
    /// long as this holds it. (A file of a few bytes may be held inline instead: then the name covers a copy, which
    /// cannot fault, and names nothing.)
    public init(_ data: Data, url: URL) {
        slot = data.withUnsafeBytes { bytes in bytes.baseAddress.map { keel_name_mapping($0, bytes.count, url.path) } ?? -1 }
        mapping = data
    }

    deinit { keel_forget_mapping(slot) }
}
