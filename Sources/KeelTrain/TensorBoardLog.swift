import Foundation
import KeelCore

/// TensorBoard's event file: a run's scalars (`logging.tensorboard = true`), one `Event` protocol buffer per
/// record in TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data), written
/// and flushed as each step ends, under `RUN/tensorboard/`. Every run starts a new file, which opens with a session
/// start at the step it goes on from: TensorBoard then drops the earlier files' values from that step on (steps a run
/// logged before it stopped and logs again after resuming; all of them for a run started afresh in the directory of
/// one that failed before its first checkpoint), as it does for TensorFlow's own restarts.
public final class TensorBoardLog {
    private let handle: FileHandle
    public let url: URL

    /// Creates `events.out.tfevents.<seconds>.<host>` in `directory` (another name when that one exists: a restart
    /// within the same second) and writes the file-version record and a session start at the step after
    /// `resumedAfter` (0 for a run from the beginning).
    public init(directory: URL, resumedAfter: Int = -1) throws {
        try AtomicFile.createDirectory(directory)
        let now = Date().timeIntervalSince1970
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "keel"
        let name = "events.out.tfevents.\(Int(now)).\(host)"
        var url = directory.appendingPathComponent(name)
        var attempt = 0
        while FileManager.default.fileExists(atPath: url.path) {
            attempt += 1
            url = directory.appendingPathComponent("\(name).\(attempt)")
        }
        self.url = url
        guard FileManager.default.createFile(atPath: url.path, contents: nil),
              let handle = try? FileHandle(forWritingTo: url)
        else { throw KeelError("cannot create \(url.path)") }
        self.handle = handle
        var event = ProtocolBuffer()
        event.double(field: 1, now)
        event.string(field: 3, "brain.Event:2")
        try append(event.bytes)
        // Event.session_log (field 7), SessionLog.status START (1): TensorBoard purges what follows the step.
        var start = ProtocolBuffer()
        start.varint(field: 1, 1)
        var session = ProtocolBuffer()
        session.double(field: 1, now)
        session.varint(field: 2, UInt64(resumedAfter + 1))
        session.message(field: 7, start)
        try append(session.bytes)
    }

    deinit {
        try? handle.close()
    }

    /// Appends one event at `step` holding the finite `scalars` (tag → value), e.g. `loss`, `lr`, `val_loss`, as
    /// TensorBoard's float32 scalars (counts above 2²⁴ such as `tokens` lose their last digits there).
    public func write(step: Int, scalars: [(tag: String, value: Double)]) throws {
        let finite = scalars.filter { $0.value.isFinite }
        guard !finite.isEmpty else { return }
        var summary = ProtocolBuffer()
        for (tag, value) in finite {
            var entry = ProtocolBuffer()
            entry.string(field: 1, tag)
            entry.float(field: 2, Float(value))
            summary.message(field: 1, entry)
        }
        var event = ProtocolBuffer()
        event.double(field: 1, Date().timeIntervalSince1970)
        event.varint(field: 2, UInt64(max(step, 0)))
        event.message(field: 5, summary)
        try append(event.bytes)
    }

    private func append(_ data: [UInt8]) throws {
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        var record = lengthBytes
        record += littleEndian(CRC32C.masked(lengthBytes))
        record += data
        record += littleEndian(CRC32C.masked(data))
        do {
            try handle.write(contentsOf: Data(record))
        } catch {
            throw KeelError("cannot write \(url.path): \(AtomicFile.systemReason(error))")
        }
    }

    private func littleEndian(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
}

/// The protocol buffer wire format, as far as TensorBoard's `Event` and `Summary` need it.
struct ProtocolBuffer {
    private(set) var bytes: [UInt8] = []

    private mutating func key(_ field: Int, _ wireType: UInt64) { appendVarint(UInt64(field) << 3 | wireType) }

    private mutating func appendVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, 0)
        appendVarint(value)
    }

    mutating func double(field: Int, _ value: Double) {
        key(field, 1)
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: value.bitPattern >> (8 * $0)) }
    }

    mutating func float(field: Int, _ value: Float) {
        key(field, 5)
        bytes += (0..<4).map { UInt8(truncatingIfNeeded: value.bitPattern >> (8 * $0)) }
    }

    mutating func string(field: Int, _ value: String) {
        key(field, 2)
        appendVarint(UInt64(value.utf8.count))
        bytes += Array(value.utf8)
    }

    mutating func message(field: Int, _ value: ProtocolBuffer) {
        key(field, 2)
        appendVarint(UInt64(value.bytes.count))
        bytes += value.bytes
    }
}
