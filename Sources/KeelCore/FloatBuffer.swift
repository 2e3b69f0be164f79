/// A fixed-size, 64-byte aligned, zero-initialised array of `Float` with reference semantics.
///
/// Parameters, gradients, optimizer moments and activations each live in one of these, so kernels see
/// plain pointers and no copy-on-write or bounds checks sit in hot loops.
public final class FloatBuffer: @unchecked Sendable {
    /// The storage; valid for the lifetime of the buffer.
    public let pointer: UnsafeMutablePointer<Float>
    /// Number of elements.
    public let count: Int

    /// Allocates `count` zeroed floats.
    public init(count: Int) {
        precondition(count >= 0, "negative buffer size")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit {
        pointer.deallocate()
    }

    /// The whole buffer as a buffer pointer.
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// Sets every element to zero.
    public func zero() {
        pointer.update(repeating: 0, count: count)
    }

    /// Copies the elements out into an array (for tests and serialisation).
    public func toArray() -> [Float] {
        Array(buffer)
    }
}
