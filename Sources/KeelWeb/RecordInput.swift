import CZlib
import Glibc
import KeelCore

/// The bytes of a WARC file, plain or gzip-compressed, read front to back through fixed buffers, knowing where in
/// the file they come from.
///
/// A compressed WARC is a sequence of gzip members — Common Crawl compresses every record as a member of its own,
/// so that an index can point at it — and members are decoded one at a time: `beginMember` starts the next and
/// says where it begins in the file, `read` returns 0 at its end. A damaged member does not end the file:
/// `skipToNextMember` finds where the next one begins. A plain file is one "member" spanning the whole file.
final class RecordInput {
    let path: String
    let isCompressed: Bool
    private let descriptor: Int32
    private let chunk = 1 << 18
    /// Compressed bytes read from the file, and where they start in it.
    private var input: UnsafeMutablePointer<UInt8>
    private var inputStart = 0
    private var inputCount = 0
    /// zlib keeps a pointer back to its `z_stream`, so it lives at a fixed address.
    private let stream: UnsafeMutablePointer<z_stream>
    private var inMember = false
    private var fileEnded = false
    /// The file offset of the next byte of a plain file.
    private var plainOffset = 0
    /// Where the member being decoded began, and where it ended (once it has).
    private(set) var memberStart = 0
    private(set) var memberEnd: Int?

    init(path: String) throws {
        self.path = path
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw KeelError("\(path): cannot read: \(String(cString: strerror(errno)))") }
        input = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        var magic: [UInt8] = [0, 0]
        isCompressed = Glibc.pread(descriptor, &magic, 2, 0) == 2 && magic == [0x1f, 0x8b]
        guard isCompressed else { return }
        // 15 + 16: the largest window, and a gzip header and trailer.
        let status = keel_inflateInit2(stream, 15 + 16)
        // Every property is set, so deinit runs after this throw and closes the descriptor (closing it here too
        // closed it twice: by then another thread's file may have its number).
        guard status == Z_OK else { throw KeelError("\(path): cannot start gzip decoding (zlib status \(status))") }
    }

    deinit {
        if isCompressed { inflateEnd(stream) }
        stream.deallocate()
        input.deallocate()
        close(descriptor)
    }

    /// The file offset of the next compressed byte not yet given to zlib.
    private var compressedOffset: Int { inputStart + inputCount - Int(stream.pointee.avail_in) }

    /// Starts the next member; returns false at the end of the file. A plain file has one, starting at 0.
    func beginMember() throws -> Bool {
        guard isCompressed else {
            defer { inMember = true }
            return !inMember
        }
        if stream.pointee.avail_in == 0 { try refill() }
        guard stream.pointee.avail_in > 0 else { return false }
        memberStart = compressedOffset
        memberEnd = nil
        inflateReset(stream)
        inMember = true
        return true
    }

    /// Up to `count` decoded bytes of the current member at `destination`; 0 at its end. Throws `Damage` for a
    /// corrupt or truncated member.
    func read(into destination: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
        guard isCompressed else {
            let got = try pread(into: destination, count: count, at: plainOffset)
            plainOffset += got
            return got
        }
        guard inMember else { return 0 }
        while true {
            if stream.pointee.avail_in == 0 { try refill() }
            stream.pointee.next_out = destination
            stream.pointee.avail_out = UInt32(clamping: count)
            let status = inflate(stream, Z_NO_FLUSH)
            let produced = count - Int(stream.pointee.avail_out)
            switch status {
            case Z_STREAM_END:
                inMember = false
                memberEnd = compressedOffset
                return produced
            case Z_OK, Z_BUF_ERROR:
                if produced > 0 { return produced }
                if stream.pointee.avail_in == 0 && fileEnded {
                    throw Damage(offset: memberStart, reason: "gzip member ends early (truncated file?)")
                }
            default:
                let reason = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                throw Damage(offset: memberStart, reason: "corrupt gzip data: \(reason)")
            }
        }
    }

    /// After damage: moves to the next gzip member header after the damaged member's start (plain files: to the end,
    /// as nothing marks where the next record begins but its own header, which the reader looks for).
    func skipToNextMember() throws {
        inMember = false
        guard isCompressed else { return }
        var position = memberStart + 1
        var window = [UInt8](repeating: 0, count: chunk + 2)
        while true {
            let got = try window.withUnsafeMutableBufferPointer { try pread(into: $0.baseAddress!, count: $0.count, at: position) }
            if got < 3 {
                reposition(to: position + got)
                return
            }
            if let found = (0..<(got - 2)).first(where: { window[$0] == 0x1f && window[$0 + 1] == 0x8b && window[$0 + 2] == 0x08 }) {
                reposition(to: position + found)
                return
            }
            position += got - 2
        }
    }

    /// A damaged part of the file: where it begins and what is wrong.
    struct Damage: Error {
        let offset: Int
        let reason: String
    }

    private func reposition(to offset: Int) {
        inputStart = offset
        inputCount = 0
        stream.pointee.avail_in = 0
        fileEnded = false
    }

    private func refill() throws {
        inputStart += inputCount
        inputCount = try pread(into: input, count: chunk, at: inputStart)
        fileEnded = inputCount == 0
        stream.pointee.next_in = input
        stream.pointee.avail_in = UInt32(inputCount)
    }

    private func pread(into destination: UnsafeMutablePointer<UInt8>, count: Int, at offset: Int) throws -> Int {
        while true {
            let got = Glibc.pread(descriptor, destination, count, off_t(offset))
            if got >= 0 { return got }
            guard errno == EINTR else { throw KeelError("\(path): cannot read: \(String(cString: strerror(errno)))") }
        }
    }
}
