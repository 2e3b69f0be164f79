import CMappedFiles
import Foundation

/// Names a mapped file to the process's SIGBUS handler for as long as it lives, so that a read of the mapping that
/// fails — the file truncated while in use (rewritten in place under a running job), or a network
/// file system that cannot deliver a page — dies with "keel: reading PATH failed at byte N: …" on standard error,
/// rather than a bare "Bus error" that names nothing. Keep it beside the mapping and let it go before the mapping.
public final class MappedFileName: @unchecked Sendable {
    private let slot: Int32

    /// Names the mapping `bytes` (all of a mapped file) as the file at `path`.
    public init(_ bytes: UnsafeRawBufferPointer, path: String) {
        slot = bytes.baseAddress.map { keel_name_mapping($0, bytes.count, path) } ?? -1
    }

    /// Names the mapping behind `data`, read from `url` with `.alwaysMapped` (its bytes stay where they are).
    public init(_ data: Data, url: URL) {
        slot = data.withUnsafeBytes { bytes in bytes.baseAddress.map { keel_name_mapping($0, bytes.count, url.path) } ?? -1 }
    }

    deinit { keel_forget_mapping(slot) }
}
