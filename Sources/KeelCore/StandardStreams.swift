// stdout is a C global that Swift 6 takes for shared mutable state; its FILE locks itself.
@preconcurrency import Glibc

/// Keel's messages on standard error and its results on standard output, written so that a failed write never
/// traps: Foundation's `FileHandle.write(_:)` stops the process with a crash report when the write fails (a log
/// redirected to a full disk, a closed terminal).
public enum StandardStreams {
    /// Writes `text` to standard error. A write that fails is dropped: a message about the work (a training log on
    /// a full disk) must not stop the work it describes.
    public static func error(_ text: String) {
        _ = write(Array(text.utf8), to: STDERR_FILENO)
    }

    /// Writes `bytes` to standard output, after what `print` has buffered; a failed write throws, naming why, since
    /// the output is what the user asked for.
    public static func output(_ bytes: some Collection<UInt8>) throws {
        fflush(stdout)
        if let failure = write(Array(bytes), to: STDOUT_FILENO) {
            throw KeelError("cannot write the output: \(String(cString: strerror(failure)))")
        }
    }

    /// `text` on standard output, as `output(_:)` writes it.
    public static func output(_ text: String) throws {
        try output(Array(text.utf8))
    }

    /// Throws if anything `print` wrote to standard output was lost (a full disk, a closed file): `print` itself
    /// ignores failures, so a command that printed its result checks at the end.
    public static func checkOutput() throws {
        errno = 0
        if fflush(stdout) != 0 || ferror(stdout) != 0 {
            let failure = errno
            clearerr(stdout)
            throw KeelError("cannot write the output: \(failure == 0 ? "write failed" : String(cString: strerror(failure)))")
        }
    }

    /// Writes all of `bytes` to `descriptor`, resuming after interruptions and partial writes; the errno of a
    /// failure, or nil.
    private static func write(_ bytes: [UInt8], to descriptor: Int32) -> Int32? {
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + done, $0.count - done) }
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += written
        }
        return nil
    }
}
