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
/// crash when a message lands in a page that cannot be had. Then `start` posts the first message of every file, and
/// `finish` posts each next one as the one before it completes (see `Lane`). Files that share a peer and a tag go in
/// the order they were prepared, which must be the same at both ends. Messages that depend on each other (a rank's
/// sends and its receives, where its peers send and receive too) belong in one transfer: `finish` moves only its own
/// transfer's messages along, so two finished one after the other could each wait for the other's peer.
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

    /// The messages that share a direction, a peer and a tag, in order (the files as prepared, each one's pieces in
    /// order), with one in flight at a time. The transport matches such messages in the order they are posted, so
    /// both ends must post them alike; and since a message's timeout runs from its posting, a copy posted all at once
    /// would fail when it took longer than the timeout in all (a large file on a slow link), though it progresses.
    /// One at a time, a copy fails only when a message waits the timeout for its peer.
    private struct Lane {
        var messages: [(file: Int, firstWord: Int, words: Int)] = []
        /// The index in `messages` of the next one to post.
        var next = 0
        var inFlight: CommunicationRequest?
    }

    private var files: [Mapped] = []
    private var lanes: [Lane] = []
    private var channel: (any Communicator)?
    /// Messages carry 8-byte words, at most this many each (MPI counts are 32-bit).
    private let wordsPerMessage: Int

    /// A transfer whose messages carry at most `wordsPerMessage` 8-byte words (1 GiB; tests cut smaller pieces).
    public init(wordsPerMessage: Int = 1 << 27) {
        precondition(wordsPerMessage > 0, "messages of \(wordsPerMessage) words")
        self.wordsPerMessage = wordsPerMessage
    }

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

    /// Drops the files prepared to send (`offer`): the receiver could not make room for them. Before `start` only.
    public func withdrawOffers() {
        precondition(channel == nil, "offers withdrawn from a transfer already started")
        for file in files where !file.isReceive { munmap(file.pointer, file.length) }
        files.removeAll { !$0.isReceive }
    }

    /// Posts the first message of every lane on `channel`; `finish` posts the rest.
    public func start(over channel: any Communicator) {
        self.channel = channel
        struct LaneKey: Hashable { let isReceive: Bool, peer: Int, tag: Int }
        var laneOf: [LaneKey: Int] = [:]
        for (index, file) in files.enumerated() {
            let key = LaneKey(isReceive: file.isReceive, peer: file.peer, tag: file.tag)
            let lane = laneOf[key] ?? lanes.count
            if lane == lanes.count {
                laneOf[key] = lane
                lanes.append(Lane())
            }
            for first in stride(from: 0, to: file.words, by: wordsPerMessage) {
                lanes[lane].messages.append((index, first, min(wordsPerMessage, file.words - first)))
            }
        }
        for lane in lanes.indices { post(lane) }
    }

    /// Posts lane `lane`'s next message, if it has one left.
    private func post(_ lane: Int) {
        guard lanes[lane].next < lanes[lane].messages.count, let channel else {
            lanes[lane].inFlight = nil
            return
        }
        let message = lanes[lane].messages[lanes[lane].next], file = files[message.file]
        lanes[lane].next += 1
        let words = file.pointer.assumingMemoryBound(to: Int64.self) + message.firstWord
        let label = "\(file.isReceive ? "receive" : "send") of snapshot file \(file.tag) \(file.isReceive ? "from" : "to") rank \(file.peer)"
        lanes[lane].inFlight = file.isReceive
            ? channel.startReceive(UnsafeMutableBufferPointer(start: words, count: message.words), from: file.peer, tag: file.tag,
                                   label: label)
            : channel.startSend(UnsafeBufferPointer(start: UnsafePointer(words), count: message.words), to: file.peer,
                                tag: file.tag, label: label)
    }

    /// Whether a message failed (timed out): it stays posted with the transport, where a later message of the same
    /// peer and tag would be matched with it, so the channel can carry no more transfers.
    public private(set) var lostMessages = false

    /// Waits for every message, then puts each received file in place; throws the first failure, after removing
    /// what was received. Also what gives up on a transfer never started: its files are removed, none put in place.
    ///
    /// A file with a failed message stays mapped until the process ends: a message that timed out is still posted
    /// with the transport, which may yet write into the file's pages (or read from them) when its peer comes back,
    /// and pages unmapped under it would crash a training run that carries on without the copy. Its memory (the
    /// file's size, in a tmpfs) is what that costs.
    public func finish() throws {
        var failure: Error?, failed = Set<Int>()
        // Polled rather than waited on one by one: a lane's next message may be what lets the peer's lanes go on.
        var pause: UInt32 = 50
        while lanes.contains(where: { $0.inFlight != nil }) {
            var progressed = false
            for lane in lanes.indices {
                guard let request = lanes[lane].inFlight, request.isComplete else { continue }
                progressed = true
                do {
                    try request.wait()
                    post(lane)
                } catch {
                    // The peer did not answer within the timeout: the rest of the lane is not posted.
                    failure = failure ?? error
                    lostMessages = true
                    failed.insert(lanes[lane].messages[lanes[lane].next - 1].file)
                    lanes[lane].inFlight = nil
                }
            }
            if !progressed { usleep(pause) }
            pause = progressed ? 50 : min(pause * 2, 2000)
        }
        let started = channel != nil
        for (index, file) in files.enumerated() {
            if !failed.contains(index) { munmap(file.pointer, file.length) }
            guard let temporary = file.temporary, let destination = file.destination else { continue }
            if started, failure == nil, Foundation.rename(temporary.path, destination.path) != 0 {
                failure = KeelError("cannot rename \(temporary.path) to \(destination.path): \(String(cString: strerror(errno)))")
            }
            if !started || failure != nil { unlink(temporary.path) }
        }
        files = []
        lanes = []
        channel = nil
        if let failure { throw failure }
    }
}
