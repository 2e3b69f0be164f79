import Foundation
import Synchronization

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
        try writeAll([url]) { handles in try body(handles[0]!) }
    }

    /// Atomically replaces several files with what `body` writes to their handles (nil URLs get nil handles).
    /// Every file is written and synced under a temporary name before any is renamed into place, so a failure or
    /// a crash while writing leaves every one as it was; only the renames themselves, one after another, come last.
    /// Errors propagate as `write(to:_:)`'s do, and no temporary file is left behind. `removingFirst` are removed once
    /// every file is written, before any is renamed: a file that says how to read the others (a config beside weights),
    /// so that a stop between the renames leaves it missing rather than describing files it was not written for, and
    /// files that must not be read with the new ones.
    public static func writeAll(_ urls: [URL?], removingFirst: [URL] = [], _ body: ([FileHandle?]) throws -> Void) throws {
        // Two names for one file (`--out x --removed x`) would share a temporary file and write over each other.
        var named = Set<String>()
        for url in urls.compactMap({ $0 }) where urls.count > 1 && !named.insert(url.standardizedFileURL.resolvingSymlinksInPath().path).inserted {
            throw KeelError("\(url.standardizedFileURL.path) is named twice among the files to write")
        }
        for url in urls.compactMap({ $0 }) { sweepOnce(url.deletingLastPathComponent()) }
        var temporaries: [URL?] = []
        var handles: [FileHandle?] = []
        // Until every rename is done, what remains of the temporaries is removed on the way out.
        defer {
            for handle in handles { try? handle?.close() }
            for temporary in temporaries.compactMap({ $0 }) { try? FileManager.default.removeItem(at: temporary) }
        }
        var writing: URL?
        do {
            for url in urls {
                guard let url else {
                    temporaries.append(nil)
                    handles.append(nil)
                    continue
                }
                writing = url
                // A device, a pipe or a directory would be replaced by a plain file (`--out /dev/null` would then
                // delete the system's device), the output going nowhere it was meant to.
                var existing = stat()
                if stat(url.path, &existing) == 0, existing.st_mode & S_IFMT != S_IFREG {
                    throw KeelError("cannot write \(url.path): it exists and is not a regular file (\(fileType(existing.st_mode)))")
                }
                let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(host)")
                guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
                    throw KeelError("cannot write \(url.path): its temporary file \(temporary.lastPathComponent) cannot be created: \(String(cString: strerror(errno)))")
                }
                temporaries.append(temporary)
                handles.append(try FileHandle(forWritingTo: temporary))
            }
            writing = nil
            try body(handles)
            for index in handles.indices {
                guard let handle = handles[index] else { continue }
                writing = urls[index]
                try handle.synchronize()
                handles[index] = nil
                try handle.close()
            }
        } catch let error as KeelError {
            // Already a clear message (bad input found while writing, say): the files stay as they were.
            throw error
        } catch {
            // A failure in `body` cannot say which of several handles failed: each file is named.
            let named = writing.map { [$0] } ?? urls.compactMap { $0 }
            let files = named.count == 1 ? named[0].path : "one of " + named.map(\.path).joined(separator: ", ")
            throw KeelError("cannot write \(files): \(systemReason(error))")
        }
        for url in removingFirst { try remove(url) }
        for (index, (temporary, url)) in zip(temporaries, urls).enumerated() {
            guard let temporary, let url else { continue }
            try rename(temporary, to: url)
            temporaries[index] = nil
        }
    }

    /// Creates `directory` and the directories above it that are missing; a failure names the directory and the
    /// system's reason ("Read-only file system"), not Foundation's wrapping of them.
    public static func createDirectory(_ directory: URL) throws {
        // mkdir itself, a level at a time: Foundation's error for a path through a plain file has no reason in it.
        func isDirectory(_ url: URL) -> Bool {
            var status = stat()
            return stat(url.path, &status) == 0 && status.st_mode & S_IFMT == S_IFDIR
        }
        var missing: [URL] = []
        // The path as given: `..` after a symbolic link is the kernel's to resolve, not the text's.
        var level = directory
        while !isDirectory(level), level.path != "/" {
            missing.append(level)
            level = level.deletingLastPathComponent()
        }
        for level in missing.reversed() where mkdir(level.path, 0o777) != 0 {
            let failure = errno
            if failure == EEXIST && isDirectory(level) { continue }  // made by another process meanwhile
            let reason = failure == EEXIST ? "it exists and is not a directory" : String(cString: strerror(failure))
            throw KeelError("cannot create directory \(directory.path): \(level == directory ? "" : "\(level.path): ")\(reason)")
        }
    }

    /// What kind of file `mode` says, in words.
    private static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a named pipe"
        case S_IFSOCK: "a socket"
        default: "a file of another kind"
        }
    }

    /// This machine and its process numbers, in the names of temporaries: a writer of another machine (a shared file
    /// system), or of another container on this one that shares its host name, is not looked for here — its process
    /// numbers are another namespace's, so a number that is free here may be a living writer's there. At most 32
    /// characters of the host name, so that a long file name's temporary still fits a file system's 255, then the
    /// process namespace's number (`/proc/self/ns/pid` reads "pid:[4026531836]").
    public static let host: String = {
        let name = String(ProcessInfo.processInfo.hostName.replacingOccurrences(of: "/", with: "_").prefix(32))
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid"))?.filter(\.isNumber) ?? ""
        return namespace.isEmpty ? name : name + "~" + namespace
    }()

    /// Whether process `pid`, named with `host` in a temporary's name, is known to be gone: it ran on this machine and
    /// no process has its number now.
    public static func hasEnded(pid: Int32, on host: Substring) -> Bool {
        host == self.host && pid > 0 && kill(pid, 0) != 0 && errno == ESRCH
    }

    /// The directories this process has swept of abandoned temporaries.
    private static let swept = Mutex<Set<String>>([])

    /// `removeAbandoned(in: directory)` the first time this process writes there: a command killed while it wrote (a
    /// quantize stopped by Ctrl-C, whose temporary may be gigabytes) leaves its temporary for the next write there to
    /// remove, and a directory of many files is listed once, not at every write.
    private static func sweepOnce(_ directory: URL) {
        guard swept.withLock({ $0.insert(directory.standardizedFileURL.path).inserted }) else { return }
        removeAbandoned(in: directory)
    }

    /// Removes from `directory` the temporaries (`.NAME.tmp-PID-HOST`) that writers on this machine left when they were
    /// killed (SIGKILL, the out-of-memory killer, a preempted job) before they could remove them: each restart of a
    /// long job would leave more. Others' are left alone.
    public static func removeAbandoned(in directory: URL) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where name.hasPrefix(".") {
            guard let marker = name.range(of: ".tmp-", options: .backwards) else { continue }
            let parts = name[marker.upperBound...].split(separator: "-", maxSplits: 1)
            guard parts.count == 2, let pid = Int32(parts[0]), hasEnded(pid: pid, on: parts[1]) else { continue }
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    /// The operating system's words for a failed write ("No space left on device", "File too large"), rather
    /// than Foundation's wrapping of them.
    public static func systemReason(_ error: Error) -> String {
        if let error = error as? KeelError { return error.message }
        var current = error as NSError
        while let underlying = current.userInfo[NSUnderlyingErrorKey] as? NSError { current = underlying }
        if current.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(current.code))) }
        // Foundation's own words ("The volume is read only.") without its domain, code and user info.
        return current.domain == NSCocoaErrorDomain ? current.localizedDescription : "\(error)"
    }

    /// Renames `source` to `destination` (replacing a file) and fsyncs the parent directory.
    public static func rename(_ source: URL, to destination: URL) throws {
        guard Foundation.rename(source.path, destination.path) == 0 else {
            throw KeelError("cannot rename \(source.path) to \(destination.path): \(String(cString: strerror(errno)))")
        }
        try syncDirectory(destination.deletingLastPathComponent())
    }

    /// Removes the file at `url`, if there is one, and syncs its directory: what is written after it cannot reach the
    /// disk first (a record removed before the result it describes is replaced).
    public static func remove(_ url: URL) throws {
        guard unlink(url.path) == 0 else {
            guard errno == ENOENT else { throw KeelError("cannot remove \(url.path): \(String(cString: strerror(errno)))") }
            return
        }
        try syncDirectory(url.deletingLastPathComponent())
    }

    /// Flushes a directory's entries to disk so a completed rename survives a crash. A failure (EIO from a failing
    /// disk or a network file system) is an error: the rename may not survive a crash, so nothing may count on it.
    /// What PostgreSQL's `fsync_fname` lets pass for a directory passes: one this process may write but not read
    /// (EACCES), and file systems that cannot sync a directory at all (EINVAL, EBADF).
    public static func syncDirectory(_ directory: URL) throws {
        let fd = open(directory.path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else {
            if errno == EACCES { return }
            throw KeelError("cannot open directory \(directory.path) to sync it: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard fsync(fd) == 0 || errno == EINVAL || errno == EBADF else {
            throw KeelError("cannot sync directory \(directory.path): \(String(cString: strerror(errno)))")
        }
    }
}
