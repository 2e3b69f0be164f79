import CBFloat16
import Foundation
import KeelCore
import Synchronization

/// The number format matrix products read their operands in. Results, accumulation, master weights and
/// every other kernel stay fp32 either way.
public enum MatrixPrecision: String, Sendable, CaseIterable {
    /// fp32 operands through the sgemm of the library `BLASLibrary` chose (OpenBLAS, BLIS or MKL).
    case float32 = "fp32"
    /// Operands rounded to bf16 (nearest even) and multiplied with fp32 accumulation on AMX tiles,
    /// AVX512-BF16 dot products, or (without either) fp32 FMA: Keel's mixed-precision mode.
    case bfloat16 = "bf16"
}

/// The instructions bf16 products run on. Every engine rounds and packs the operands into the same bytes and
/// sums in fp32; they differ in speed and in the order of the sums within a pair of k (AMX).
public enum BFloat16Engine: String, CaseIterable, Sendable {
    /// Intel AMX tiles (Sapphire Rapids and later).
    case amx
    /// AVX512-BF16 dot products (AMD Zen 4/5, Intel Cooper Lake).
    case avx512
    /// AVX-512F without BF16 (Intel Skylake-SP to Ice Lake): bf16 widened to fp32 in 512-bit registers, the AVX2
    /// engine's results sixteen lanes at a time.
    case avx512f
    /// AVX2 + FMA (AMD Zen 3 and other CPUs with none of the above): bf16 widened to fp32 in registers, the same
    /// results as AVX512-BF16 (away from denormal and overflowing products, which VDPBF16PS flushes) at fp32's rate.
    case avx2
    /// Plain C on any x86-64, even without AVX2: the same results as AVX512-BF16, several times slower; the
    /// reference the others are tested against.
    case portable

    /// The engine bf16 products use: the fastest this CPU offers, or the one `KEEL_BF16_ENGINE` (`amx`,
    /// `avx512`, `avx512f`, `avx2`, `portable`) names when the CPU has it (another name, or one the CPU lacks, is warned about on
    /// standard error).
    public static let selected: BFloat16Engine = {
        let available = BFloat16Engine.available
        return environmentChoice("KEEL_BF16_ENGINE", among: allCases, name: \.rawValue,
                                 isAvailable: available.contains, fallback: available[0].rawValue) ?? available[0]
    }()

    /// The engines this CPU and operating system support, fastest first; the portable one always.
    public static let available: [BFloat16Engine] = {
        switch keel_bf16_best_engine() {
        case KEEL_BF16_AMX: [.amx, .avx512, .avx512f, .avx2, .portable]
        case KEEL_BF16_AVX512: [.avx512, .avx512f, .avx2, .portable]
        case KEEL_BF16_AVX512F: [.avx512f, .avx2, .portable]
        case KEEL_BF16_AVX2: [.avx2, .portable]
        default: [.portable]
        }
    }()

    /// What a log says beside the engine's name where bf16 is no faster than fp32 on it, or nil.
    public var note: String? {
        switch self {
        case .amx, .avx512: nil
        case .avx512f: "operands widened to fp32 in 512-bit registers: the same results as AVX512-BF16; its speed not measured on a CPU that picks it"
        case .avx2: "operands widened to fp32 in registers: the same results as AVX512-BF16, at 0.88–1.00× fp32's speed as measured on AMD Zen 4/5 forced onto it"
        case .portable: "plain C: the same results as AVX512-BF16, several times slower than fp32"
        }
    }

    var native: keel_bf16_engine {
        switch self {
        case .amx: KEEL_BF16_AMX
        case .avx512: KEEL_BF16_AVX512
        case .avx512f: KEEL_BF16_AVX512F
        case .avx2: KEEL_BF16_AVX2
        case .portable: KEEL_BF16_PORTABLE
        }
    }
}

/// The right-hand operand op(B)[k×n] of bf16 products, packed once and read by many: a weight that
/// several products in a row multiply (the output head, chunk after chunk).
public final class PackedOperand: @unchecked Sendable {
    private var storage = PackingBuffer()
    /// The depth and width of the packed matrix.
    public private(set) var k = 0, n = 0

    public init() {}

    /// Rounds op(B)[k×n] (row-major storage, `ldb` defaulting to the dense row length) to bf16 and packs it.
    public func pack(_ transB: Transpose, k: Int, n: Int, _ b: UnsafePointer<Float>, ldb: Int? = nil) {
        self.k = k
        self.n = n
        let ldb = ldb ?? (transB == .none ? n : k)
        let destination = storage.reserve(keel_bf16_packed_count(Int32(n), Int32(k)))
        ThreadPool.shared.parallelFor((n + 31) / 32) { blocks in
            packRight(BFloat16Engine.selected, transB, k: k, n: n, b, ldb: ldb, into: destination, blocks: blocks)
        }
    }

    var packed: UnsafePointer<UInt16> { UnsafePointer(storage.pointer!) }
}

/// C[M×N] = alpha · op(A) · B + beta · C with a packed B, in bf16 (see `gemm`).
public func gemm(
    _ transA: Transpose, m: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int? = nil,
    packed b: PackedOperand, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    bfloat16Gemm(m: m, n: b.n, k: b.k, alpha: alpha, left: .matrix(transA, a, ld: lda ?? (transA == .none ? b.k : m)),
                 right: .packed(b.packed), beta: beta, c, ldc: ldc ?? b.n)
}

/// The left operand op(A)[m×k] of a bf16 product whose K arrives in slices: packed slice by slice, then
/// multiplied once. The output head's weight gradient is such a product: its K is the batch's rows, whose
/// ∂loss/∂logits exist one chunk at a time.
public final class PackedLeftOperand: @unchecked Sendable {
    private var storage = PackingBuffer()
    /// The height and depth of the packed matrix.
    public private(set) var m = 0, k = 0

    public init() {}

    /// Makes room for op(A)[m×k]; `pack` then fills it slice by slice.
    public func reserve(m: Int, k: Int) {
        self.m = m
        self.k = k
        _ = storage.reserve(keel_bf16_packed_count(Int32(m), Int32(k)))
    }

    /// Rounds op(A)[m × columns] to bf16 and packs it as K columns [offset, offset + columns); `offset` is a
    /// multiple of 32, and only the last slice may have a `columns` that is not.
    public func pack(_ transA: Transpose, columns: Int, offset: Int, _ a: UnsafePointer<Float>, lda: Int) {
        precondition(offset % Int(KEEL_BF16_KSTEP) == 0 && offset + columns <= k, "slice \(offset)+\(columns) of K = \(k)")
        let (m, k, destination) = (m, k, storage.pointer!)
        ThreadPool.shared.parallelFor((m + 31) / 32) { blocks in
            keel_bf16_pack_a_slice(BFloat16Engine.selected.native, transA.flag, Int32(m), Int32(columns), a, Int32(lda), destination, Int32(k),
                                   Int32(offset), Int32(blocks.lowerBound), Int32(blocks.upperBound))
        }
    }

    var packed: UnsafePointer<UInt16> { UnsafePointer(storage.pointer!) }
}

/// C[M×N] = alpha · A · op(B) + beta · C with a packed A, in bf16 (see `gemm`).
public func gemm(
    packed a: PackedLeftOperand, _ transB: Transpose, n: Int, alpha: Float = 1, _ b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    bfloat16Gemm(m: a.m, n: n, k: a.k, alpha: alpha, left: .packed(a.packed),
                 right: .matrix(transB, b, ld: ldb ?? (transB == .none ? n : a.k)), beta: beta, c, ldc: ldc ?? n)
}

/// An operand of `bfloat16Gemm`: an fp32 matrix to round and pack (with its transpose and row stride), or
/// one packed already.
enum Operand {
    case matrix(Transpose, UnsafePointer<Float>, ld: Int)
    case packed(UnsafePointer<UInt16>)
}

/// The bf16 product behind `gemm(…, precision: .bfloat16)`: packs the operands that are not packed yet in
/// parallel, then splits C's 32 × 32 blocks among the pool's threads. Every block is summed over the full
/// K by one thread in a fixed order, so the result does not depend on the thread count.
func bfloat16Gemm(
    m: Int, n: Int, k: Int, alpha: Float, left: Operand, right: Operand, beta: Float, _ c: UnsafeMutablePointer<Float>,
    ldc: Int, engine: BFloat16Engine = BFloat16Engine.selected
) {
    guard m > 0, n > 0 else { return }
    packingLock.withLock { _ in
        let rowBlocks = (m + 31) / 32, columnBlocks = (n + 31) / 32
        // Where each operand is packed: its own packing when it comes packed, scratch when it is to be packed here.
        let packedA: UnsafePointer<UInt16>, packedB: UnsafePointer<UInt16>
        var leftBlocks = 0, rightBlocks = 0
        if case .packed(let pointer) = left { packedA = pointer } else {
            packedA = UnsafePointer(scratch.a.reserve(keel_bf16_packed_count(Int32(m), Int32(k))))
            leftBlocks = rowBlocks
        }
        if case .packed(let pointer) = right { packedB = pointer } else {
            packedB = UnsafePointer(scratch.b.reserve(keel_bf16_packed_count(Int32(n), Int32(k))))
            rightBlocks = columnBlocks
        }
        // One loop packs both: A's row blocks first, then B's column blocks.
        ThreadPool.shared.parallelFor(leftBlocks + rightBlocks) { blocks in
            if case .matrix(let transA, let a, let lda) = left {
                let rows = blocks.clamped(to: 0..<leftBlocks)
                keel_bf16_pack_a(engine.native, transA.flag, Int32(m), Int32(k), a, Int32(lda), scratch.a.pointer!,
                                 Int32(rows.lowerBound), Int32(rows.upperBound))
            }
            if case .matrix(let transB, let b, let ldb) = right {
                let columns = blocks.clamped(to: leftBlocks..<leftBlocks + rightBlocks)
                packRight(engine, transB, k: k, n: n, b, ldb: ldb, into: scratch.b.pointer!,
                          blocks: (columns.lowerBound - leftBlocks)..<(columns.upperBound - leftBlocks))
            }
        }
        ThreadPool.shared.parallelFor(rowBlocks * columnBlocks) { blocks in
            keel_bf16_gemm_blocks(engine.native, Int32(m), Int32(n), Int32(k), packedA, packedB, alpha, beta, c,
                                  Int32(ldc), Int32(blocks.lowerBound), Int32(blocks.upperBound))
        }
    }
}

/// A bf16 product on the calling thread, for kernels that are already parallel: packs both operands into
/// `scratch` (`keel_bf16_serial_scratch_count(m, n, k)` values).
func serialBFloat16Gemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int,
    scratch: UnsafeMutablePointer<UInt16>
) {
    keel_bf16_gemm_serial(BFloat16Engine.selected.native, transA.flag, transB.flag,
                          Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc), scratch)
}

/// Rounds and packs the 32-column blocks `blocks` of op(B)[k×n] (none when the range is empty).
private func packRight(
    _ engine: BFloat16Engine, _ transB: Transpose, k: Int, n: Int, _ b: UnsafePointer<Float>, ldb: Int, into packed: UnsafeMutablePointer<UInt16>,
    blocks: Range<Int>
) {
    keel_bf16_pack_b(engine.native, transB.flag, Int32(k), Int32(n), b, Int32(ldb), packed,
                     Int32(blocks.lowerBound), Int32(blocks.upperBound))
}

/// A grow-only, 64-byte aligned buffer of bf16 values: packing allocates only when a product is larger
/// than any before it.
struct PackingBuffer: ~Copyable {
    private(set) var pointer: UnsafeMutablePointer<UInt16>?
    private var capacity = 0

    mutating func reserve(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        if count > capacity || pointer == nil {
            pointer.map { UnsafeMutableRawPointer($0).deallocate() }
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 2, alignment: 64)
            pointer = raw.bindMemory(to: UInt16.self, capacity: max(count, 1))
            capacity = max(count, 1)
        }
        return pointer!
    }

    deinit { pointer.map { UnsafeMutableRawPointer($0).deallocate() } }
}

/// Packing space of the products that pack both operands; `packingLock` makes products run one at a time.
private final class PackingScratch: @unchecked Sendable {
    var a = PackingBuffer(), b = PackingBuffer()
}

private let scratch = PackingScratch()
private let packingLock = Mutex(())
