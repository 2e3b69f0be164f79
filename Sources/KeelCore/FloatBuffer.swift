#if canImport(Glibc)
import Glibc
#endif

/// A fixed-size, 64-byte aligned, zero-initialised array of `Float` with reference semantics.
///
/// Parameters, gradients, optimizer moments and activations each live in one of these, so kernels see
/// plain pointers and no copy-on-write or bounds checks sit in hot loops.
///
/// A large buffer is mapped from the operating system rather than taken from the heap: its pages cost no memory
/// until first written, and `release` hands written ones back. That is how a fully sharded model (ZeRO-3) keeps a
/// buffer the size of the whole model, so every part keeps its offsets, while only the pieces in use are resident.
public final class FloatBuffer: @unchecked Sendable {
    /// The storage; valid for the lifetime of the buffer.
    public let pointer: UnsafeMutablePointer<Float>
    /// Number of elements.
    public let count: Int
    /// Bytes mapped, when the buffer was mapped (0 when it came from the heap).
    private let mappedBytes: Int

    /// Buffers from this many bytes up are mapped (anonymous pages read as zero until written).
    private static let mappingThreshold = 1 << 20
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Allocates `count` zeroed floats.
    public init(count: Int) {
        precondition(count >= 0, "negative buffer size")
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        if bytes >= Self.mappingThreshold,
           let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mapped != MAP_FAILED {
            mappedBytes = bytes
            pointer = mapped.bindMemory(to: Float.self, capacity: max(count, 1))
        } else {
            mappedBytes = 0
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
            pointer.initialize(repeating: 0, count: max(count, 1))
        }
    }

    deinit {
        if mappedBytes > 0 { munmap(UnsafeMutableRawPointer(pointer), mappedBytes) } else { pointer.deallocate() }
    }

    /// The whole buffer as a buffer pointer.
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// Sets every element to zero.
    public func zero() {
        pointer.update(repeating: 0, count: count)
    }

    /// Sets the elements of `range` to zero and, for a mapped buffer, gives the memory of every page that lies
    /// wholly inside it back to the operating system (it reads as zero and costs nothing until written again).
    /// Elements outside `range` are untouched, even on a page it shares.
    public func release(_ range: Range<Int>) {
        let range = range.clamped(to: 0..<count)
        guard !range.isEmpty else { return }
        guard mappedBytes > 0 else { return (pointer + range.lowerBound).update(repeating: 0, count: range.count) }
        let floatsPerPage = Self.pageSize / MemoryLayout<Float>.stride
        let firstPage = (range.lowerBound + floatsPerPage - 1) / floatsPerPage * floatsPerPage
        let endPage = range.upperBound / floatsPerPage * floatsPerPage
        guard firstPage < endPage else { return (pointer + range.lowerBound).update(repeating: 0, count: range.count) }
        (pointer + range.lowerBound).update(repeating: 0, count: firstPage - range.lowerBound)
        (pointer + endPage).update(repeating: 0, count: range.upperBound - endPage)
        // MADV_DONTNEED on private anonymous pages: the next read sees zeros.
        _ = madvise(UnsafeMutableRawPointer(pointer + firstPage), (endPage - firstPage) * MemoryLayout<Float>.stride,
                    MADV_DONTNEED)
    }

    /// Copies the elements out into an array (for tests and serialisation).
    public func toArray() -> [Float] {
        Array(buffer)
    }
}
