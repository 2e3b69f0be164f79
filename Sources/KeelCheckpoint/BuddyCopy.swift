import Foundation
import KeelComm
import KeelCore

/// The copy of each rank's snapshot file that its buddy on another machine keeps (`MachinePlacement`), so that
/// losing a machine never loses a snapshot.
///
/// It runs on the writing thread, right after the file is written (`ShardWriter.Completion`): the rank tells its
/// buddy the file's size, the buddy reserves that much in its machine's directory of the snapshot and answers
/// whether it could, and only then is the file sent — so a buddy with a full tmpfs costs the snapshot, never a
/// message left unmatched. Meanwhile the rank does the same as buddy for the ranks whose copies it keeps. The
/// messages travel on the MPI progress thread while training runs; a rank's writer is finished only when its file
/// and its copies are, so a snapshot whose files are all written has its copies too.
public final class BuddyCopy: @unchecked Sendable {
    private let machines: MachinePlacement
    private let channel: any Communicator
    private let sizeTag = 1, answerTag = 2, fileTag = 3
    /// Seconds the last exchange took (from the file written to the copies delivered), and the bytes it received.
    public private(set) var seconds = 0.0
    public private(set) var receivedBytes = 0
    /// Whether a message of an exchange failed (timed out). MPI cannot cancel it: it stays posted, and the next
    /// exchange's messages of the same peers and tags would be matched with the old ones, so no later exchange can
    /// succeed on this channel — the job takes no more snapshots (`Trainer`).
    public private(set) var isBroken = false

    /// Copies between the machines of `machines`, over `channel`: a communicator over every rank of the job, in
    /// world rank order, that carries nothing else.
    public init(machines: MachinePlacement, channel: any Communicator) {
        self.machines = machines
        self.channel = channel
    }

    /// After this rank wrote its snapshot file `file` with `outcome`: sends it to the buddy and receives the files
    /// this rank keeps copies of, into the same directory. Returns `outcome`, or a failure when this rank could not
    /// take its part (a copy it could not make room for, a message that failed).
    public func exchange(after outcome: ShardWriter.Outcome, file: URL) -> ShardWriter.Outcome {
        let started = monotonicSeconds(), rank = channel.rank
        let buddy = machines.buddy(of: rank), sources = machines.buddied(by: rank)
        let directory = file.deletingLastPathComponent()
        var failure: Error?
        // One transfer both ways: `finish` moves only its own messages along, and this rank's receives are what let
        // its sources' sends go on while its own sends wait for its buddy (`FileTransfer`).
        let transfer = FileTransfer()
        // [0] this file's size (-1: none to send); then each source's size; the answers to them; the buddy's answer.
        let words = UnsafeMutableBufferPointer<Int64>.allocate(capacity: 2 + 2 * sources.count)
        _ = words.initialize(from: repeatElement(0, count: words.count))
        let answers = 1 + sources.count, buddyAnswer = answers + sources.count
        words[0] = -1
        if let buddy, case .written(let record, _) = outcome {
            do {
                try transfer.offer(file, bytes: record.bytes, to: buddy, tag: fileTag)
                words[0] = Int64(record.bytes)
            } catch {
                failure = error
            }
        }
        func word(_ index: Int) -> UnsafeMutableBufferPointer<Int64> { UnsafeMutableBufferPointer(rebasing: words[index..<(index + 1)]) }
        func wait(_ requests: [CommunicationRequest]) {
            for request in requests {
                do {
                    try request.wait()
                } catch {
                    failure = failure ?? error
                    isBroken = true
                }
            }
        }
        var requests: [CommunicationRequest] = []
        if let buddy { requests.append(channel.startSend(UnsafeBufferPointer(word(0)), to: buddy, tag: sizeTag, label: "snapshot file size")) }
        for (index, source) in sources.enumerated() {
            requests.append(channel.startReceive(word(1 + index), from: source, tag: sizeTag, label: "snapshot file size"))
        }
        wait(requests)
        for (index, source) in sources.enumerated() where words[1 + index] >= 0 {
            do {
                try transfer.expect(directory.appendingPathComponent(ShardPlan.fileName(rank: source)), bytes: Int(words[1 + index]),
                                    from: source, tag: fileTag)
                words[answers + index] = 1
            } catch {
                failure = failure ?? error
            }
        }
        requests = sources.indices.map {
            channel.startSend(UnsafeBufferPointer(word(answers + $0)), to: sources[$0], tag: answerTag, label: "snapshot copy answer")
        }
        if let buddy { requests.append(channel.startReceive(word(buddyAnswer), from: buddy, tag: answerTag, label: "snapshot copy answer")) }
        wait(requests)
        // The file goes only to a buddy that made room for it; otherwise the buddy reports why.
        if words[0] < 0 || words[buddyAnswer] != 1 { transfer.withdrawOffers() }
        transfer.start(over: channel)
        do { try transfer.finish() } catch { failure = failure ?? error }
        if transfer.lostMessages { isBroken = true }
        // A request that failed (timed out) stays posted — MPI cannot cancel it here — and may still write into the
        // words: then they are kept (a few bytes), as `FileTransfer` keeps a failed transfer's mapping.
        if failure == nil { words.deallocate() }
        seconds = monotonicSeconds() - started
        receivedBytes = transfer.receivedBytes
        guard case .written = outcome, let failure else { return outcome }
        return .failed(KeelError("copying snapshot files between machines: \(AtomicFile.systemReason(failure))"))
    }
}
