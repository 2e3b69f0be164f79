import Foundation

/// Writes files so that a reader (or a crash) only ever sees the old version or the complete new one:
/// write to a temporary name in the same directory, fsync, rename, fsync the directory.
public enum AtomicFile {
    /// Atomically replaces `url` with `data`.
    public static func write(_ data: Data, to url: URL) throws {
        try write(to: url) { handle in
            try handle.write(contentsOf: data)
        }
    }

    /// Atomically replaces `url` with what `body` writes to the handle it is given. A `KeelError` from `body`
    /// propagates unchanged; other failures become "cannot write URL: reason".
    public static func write(to url: URL, _ body: (FileHandle) throws -> Void) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw KeelError("cannot create \(temporary.path): \(String(cString: strerror(errno)))")
        }
        do {
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }
            try body(handle)
            try handle.synchronize()
        } catch let error as KeelError {
            // Already a clear message (bad input found while writing, say): the file stays as it was.
            try? FileManager.default.removeItem(at: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw KeelError("cannot write \(url.path): \(systemReason(error))")
        }
        try rename(temporary, to: url)
    }

    /// Atomically replaces several files with what `body` writes to their handles (nil URLs get nil handles):
    /// all are written before any is renamed into place, and a failure leaves every one as it was.
    public static func writeAll(_ urls: [URL?], _ body: ([FileHandle?]) throws -> Void) throws {
        func open(_ index: Int, _ handles: [FileHandle?]) throws {
            guard index < urls.count else { return try body(handles) }
            guard let url = urls[index] else { return try open(index + 1, handles + [nil]) }
            try write(to: url) { handle in try open(index + 1, handles + [handle]) }
        }
        try open(0, [])
    }

    /// The operating system's words for a failed write ("No space left on device", "File too large"), rather
    /// than Foundation's wrapping of them.
    public static func systemReason(_ error: Error) -> String {
        if let error = error as? KeelError { return error.message }
        var current = error as NSError
        while let underlying = current.userInfo[NSUnderlyingErrorKey] as? NSError { current = underlying }
        return current.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32(current.code))) : "\(error)"
    }

    /// Renames `source` to `destination` (replacing a file) and fsyncs the parent directory.
    public static func rename(_ source: URL, to destination: URL) throws {
        guard Foundation.rename(source.path, destination.path) == 0 else {
            throw KeelError("cannot rename \(source.path) to \(destination.path): \(String(cString: strerror(errno)))")
        }
        syncDirectory(destination.deletingLastPathComponent())
    }

    /// Flushes a directory's entries to disk so a completed rename survives a crash.
    public static func syncDirectory(_ directory: URL) {
        let fd = open(directory.path, O_RDONLY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
