import Foundation
import KeelComm
import KeelCore

/// Files moved between ranks as messages: how a snapshot file reaches the buddy machine that keeps a copy of
/// it, and how a machine fetches the snapshot files it lacks at recovery.
///
/// Both ends map the file, so no copy of it is made in memory: the sender's pages (in a tmpfs, the file's own
/// memory) go straight into the message and the receiver's message lands in the pages of the new file. All
/// files are prepared first (`offer`, `expect`): a receiver reserves the file's whole size then, so a full
/// tmpfs is an error there — before anything is sent, when every rank can still agree to give up — not a
/// crash when a message lands in a page that cannot be had. Then `start` posts every message at once and they
/// progress in the background until `finish`.
public final class FileTransfer: @unchecked Sendable {
    /// A file mapped for a message, and where a received one goes once complete.
    private struct Mapped {
        let pointer: UnsafeMutableRawPointer
        let length: Int
        let words: Int
        let peer: Int
        let tag: Int
        let isReceive: Bool
        let temporary: URL?
        let destination: URL?
    }

    private var files: [Mapped] = []
    /// Each posted message, with the index of its file in `files`.
    private var requests: [(request: CommunicationRequest, file: Int)] = []
    /// Messages carry 8-byte words, at most this many each (MPI counts are 32-bit).
    private static let wordsPerMessage = 1 << 27

    public init() {}

    /// The bytes of files received so far (counted when they are prepared).
    public private(set) var receivedBytes = 0

    /// Prepares to send the file at `url`, `bytes` long, to rank `destination`, tagged `tag` (which tells the
    /// receiver's files apart when one peer sends it several).
    public func offer(_ url: URL, bytes: Int, to destination: Int, tag: Int) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw KeelError("cannot read \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // Whole 8-byte words: the mapping's last page reads as zeros past the end of the file.
        let words = (bytes + 7) / 8
        guard let pointer = mmap(nil, max(1, words * 8), PROT_READ, MAP_SHARED, fd, 0), pointer != MAP_FAILED else {
            throw KeelError("cannot map \(url.path): \(String(cString: strerror(errno)))")
        }
        files.append(Mapped(pointer: pointer, length: max(1, words * 8), words: words, peer: destination, tag: tag,
                            isReceive: false, temporary: nil, destination: nil))
    }

    /// Prepares to receive a file of `bytes` bytes from rank `source`, tagged `tag`, into `url`, reserving its
    /// space now; it appears at `url` only when complete (`finish`).
    public func expect(_ url: URL, bytes: Int, from source: Int, tag: Int) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).receiving")
        let fd = open(temporary.path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw KeelError("cannot create \(temporary.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let words = (bytes + 7) / 8
        let reserved = bytes > 0 ? posix_fallocate(fd, 0, off_t(bytes)) : 0
        guard reserved == 0 else {
            unlink(temporary.path)
            throw KeelError("cannot receive \(url.lastPathComponent) (\(bytes) bytes) into \(url.deletingLastPathComponent().path): \(String(cString: strerror(reserved)))")
        }
        guard let pointer = mmap(nil, max(1, words * 8), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), pointer != MAP_FAILED else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw KeelError("cannot map \(temporary.path): \(reason)")
        }
        files.append(Mapped(pointer: pointer, length: max(1, words * 8), words: words, peer: source, tag: tag,
                            isReceive: true, temporary: temporary, destination: url))
        receivedBytes += bytes
    }

    /// Posts every prepared message on `channel`; they progress in the background.
    public func start(over channel: any Communicator) {
        for (index, file) in files.enumerated() {
            let words = file.pointer.assumingMemoryBound(to: Int64.self)
            for first in stride(from: 0, to: file.words, by: Self.wordsPerMessage) {
                let count = min(Self.wordsPerMessage, file.words - first)
                let label = "\(file.isReceive ? "receive" : "send") of snapshot file \(file.tag) \(file.isReceive ? "from" : "to") rank \(file.peer)"
                requests.append((file.isReceive
                    ? channel.startReceive(UnsafeMutableBufferPointer(start: words + first, count: count), from: file.peer,
                                           tag: file.tag, label: label)
                    : channel.startSend(UnsafeBufferPointer(start: UnsafePointer(words + first), count: count), to: file.peer,
                                        tag: file.tag, label: label), index))
            }
        }
    }

    /// Whether nothing was prepared.
    public var isEmpty: Bool { files.isEmpty }

    /// Whether every message has been delivered (or failed).
    public var isComplete: Bool { requests.allSatisfy(\.request.isComplete) }

    /// Waits for every message, then puts each received file in place; throws the first failure, after removing
    /// what was received. Also what gives up on a transfer never started.
    ///
    /// A file with a failed message stays mapped until the process ends: a message that timed out is still posted
    /// with the transport, which may yet write into the file's pages (or read from them) when its peer comes back,
    /// and pages unmapped under it would crash a training run that carries on without the copy. Its memory (the
    /// file's size, in a tmpfs) is what that costs.
    public func finish() throws {
        var failure: Error?, failed = Set<Int>()
        for (request, file) in requests {
            do { try request.wait() } catch {
                failure = failure ?? error
                failed.insert(file)
            }
        }
        for (index, file) in files.enumerated() {
            if !failed.contains(index) { munmap(file.pointer, file.length) }
            guard let temporary = file.temporary, let destination = file.destination else { continue }
            if failure == nil, Foundation.rename(temporary.path, destination.path) != 0 {
                failure = KeelError("cannot rename \(temporary.path) to \(destination.path): \(String(cString: strerror(errno)))")
            }
            if failure != nil { unlink(temporary.path) }
        }
        files = []
        requests = []
        if let failure { throw failure }
    }
}
