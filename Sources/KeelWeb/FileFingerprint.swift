import Foundation
import KeelCore

/// What tells whether a file changed: its size and modification time (to the nanosecond, where the file system keeps
/// them), as rsync's quick check judges a file.
struct FileFingerprint: Codable, Equatable, Sendable {
    var size: Int
    /// Nanoseconds since 1970 (wrapping past the year 2262, where a damaged archive's dates may lie: it only has to
    /// differ when the time does).
    var modified: Int
    /// Whether it is a regular file (a pipe or a device reads differently each time).
    var isRegular: Bool { kind == S_IFREG }
    private var kind: mode_t = 0

    enum CodingKeys: String, CodingKey { case size, modified }

    /// By size and time only: a fingerprint read back from a record has no kind.
    static func == (a: FileFingerprint, b: FileFingerprint) -> Bool { a.size == b.size && a.modified == b.modified }

    init(of path: String) throws {
        var status = stat()
        guard stat(path, &status) == 0 else { throw KeelError("cannot read \(path): \(String(cString: strerror(errno)))") }
        size = Int(status.st_size)
        modified = Int(status.st_mtim.tv_sec) &* 1_000_000_000 &+ Int(status.st_mtim.tv_nsec)
        kind = status.st_mode & S_IFMT
    }
}
