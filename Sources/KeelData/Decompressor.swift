import CZlib
import CZstd
import Glibc
import KeelCore

/// A stream of decoded bytes, read front to back.
protocol ByteStream: AnyObject {
    /// Writes up to `count` bytes at `destination` and returns how many; 0 only at the end of the stream.
    func read(into destination: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int
}

/// A file read with read(2), so that any size of file streams through a fixed buffer.
final class FileInput: ByteStream {
    let path: String
    /// Bytes read so far: the position that compressed-stream errors report.
    private(set) var offset = 0
    private let descriptor: Int32

    init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw KeelError("data: cannot read \(path): \(String(cString: strerror(errno)))") }
        self.path = path
    }

    deinit { close(descriptor) }

    func read(into destination: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
        while true {
            let got = Glibc.read(descriptor, destination, count)
            if got >= 0 {
                offset += got
                return got
            }
            // A signal that interrupts the read is not a read error.
            guard errno == EINTR else {
                throw KeelError("data: cannot read \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Calls `body` with the whole file mapped into memory (nothing for an empty file), or returns false
    /// without calling it when the file cannot be mapped (a pipe, a character device).
    func withMappedContents(_ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Bool {
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return false }
        let size = Int(status.st_size)
        guard size > 0 else { return true }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), mapped != MAP_FAILED else {
            return false
        }
        defer { munmap(mapped, size) }
        // The document is read once from front to back; read-ahead and early reclaim suit that.
        madvise(mapped, size, MADV_SEQUENTIAL)
        try withExtendedLifetime(MappedFileName(UnsafeRawBufferPointer(start: mapped, count: size), path: path)) {
            try body(UnsafeBufferPointer(start: mapped.assumingMemoryBound(to: UInt8.self), count: size))
        }
        return true
    }
}

/// Size of the compressed-input buffer: large enough that read(2) overhead vanishes.
private let compressedChunk = 1 << 18

/// gzip decoding with zlib. Concatenated members (what `cat a.gz b.gz`, pigz and bgzip produce) decode
/// as one stream, like `gzip -d` does.
final class GzipStream: ByteStream {
    private let file: FileInput
    /// zlib keeps a pointer back to its `z_stream` and rejects a moved one, so it lives at a fixed address.
    private let stream: UnsafeMutablePointer<z_stream>
    private let input: UnsafeMutablePointer<UInt8>
    private var fileEnded = false
    private var inMember = false

    init(file: FileInput) throws {
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // 15 + 16: the largest window, and a gzip header and trailer (not zlib or raw deflate).
        let status = keel_inflateInit2(stream, 15 + 16)
        guard status == Z_OK else {
            stream.deallocate()
            throw KeelError("data: \(file.path): cannot start gzip decoding (zlib status \(status))")
        }
        self.file = file
        input = UnsafeMutablePointer<UInt8>.allocate(capacity: compressedChunk)
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
        input.deallocate()
    }

    func read(into destination: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
        let capacity = UInt32(clamping: count)
        while true {
            if stream.pointee.avail_in == 0 && !fileEnded {
                let got = try file.read(into: input, count: compressedChunk)
                fileEnded = got == 0
                stream.pointee.next_in = input
                stream.pointee.avail_in = UInt32(got)
            }
            if !inMember {
                if stream.pointee.avail_in == 0 {
                    guard file.offset > 0 else { throw KeelError("data: \(file.path): empty file, not a gzip stream") }
                    return 0
                }
                inflateReset(stream)
                inMember = true
            }
            stream.pointee.next_out = destination
            stream.pointee.avail_out = capacity
            let status = inflate(stream, Z_NO_FLUSH)
            let produced = Int(capacity - stream.pointee.avail_out)
            switch status {
            case Z_STREAM_END:
                inMember = false
            case Z_OK:
                break
            case Z_BUF_ERROR where produced == 0 && stream.pointee.avail_in == 0 && fileEnded:
                throw KeelError("data: \(file.path): gzip stream ends early at byte \(file.offset) (truncated file?)")
            case Z_BUF_ERROR:
                break
            default:
                let reason = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                let position = file.offset - Int(stream.pointee.avail_in)
                throw KeelError("data: \(file.path): corrupt gzip data near byte \(position): \(reason)")
            }
            if produced > 0 { return produced }
        }
    }
}

/// zstd decoding with libzstd. Concatenated frames decode as one stream, like `zstd -d` does.
final class ZstdStream: ByteStream {
    private let file: FileInput
    private let context: OpaquePointer
    private let input: UnsafeMutablePointer<UInt8>
    private var pending: ZSTD_inBuffer
    private var fileEnded = false
    /// Whether the last call left a frame unfinished: at the end of the file that means truncation.
    private var inFrame = false

    init(file: FileInput) throws {
        guard let context = ZSTD_createDCtx() else {
            throw KeelError("data: \(file.path): cannot start zstd decoding (out of memory)")
        }
        self.file = file
        self.context = context
        input = UnsafeMutablePointer<UInt8>.allocate(capacity: compressedChunk)
        pending = ZSTD_inBuffer(src: input, size: 0, pos: 0)
    }

    deinit {
        ZSTD_freeDCtx(context)
        input.deallocate()
    }

    func read(into destination: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
        while true {
            if pending.pos == pending.size && !fileEnded {
                let got = try file.read(into: input, count: compressedChunk)
                fileEnded = got == 0
                pending = ZSTD_inBuffer(src: input, size: got, pos: 0)
            }
            let drained = pending.pos == pending.size && fileEnded
            if drained && !inFrame {
                guard file.offset > 0 else { throw KeelError("data: \(file.path): empty file, not a zstd stream") }
                return 0
            }
            var output = ZSTD_outBuffer(dst: destination, size: count, pos: 0)
            let result = ZSTD_decompressStream(context, &output, &pending)
            if ZSTD_isError(result) != 0 {
                let position = file.offset - (pending.size - pending.pos)
                throw KeelError(
                    "data: \(file.path): corrupt zstd data near byte \(position): \(String(cString: ZSTD_getErrorName(result)))")
            }
            // 0 means a frame is complete and flushed; anything else means it wants more input or output room.
            inFrame = result != 0
            if output.pos > 0 { return output.pos }
            if drained {
                throw KeelError("data: \(file.path): zstd stream ends early at byte \(file.offset) (truncated file?)")
            }
        }
    }
}
