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

/// The instructions bf16 products run on. Every engine rounds the operands to the same bf16 values and sums their
/// products (exact in fp32) in fp32; they differ in speed and in the order of the sums: within a pair of k (AMX), or
/// the fp32 library's own order (`blas`).
public enum BFloat16Engine: String, CaseIterable, Sendable {
    /// Intel AMX tiles (Sapphire Rapids and later).
    case amx
    /// AVX512-BF16 dot products (AMD Zen 4/5, Intel Cooper Lake).
    case avx512
    /// AVX-512F (for Intel Skylake-SP to Ice Lake, which lack BF16): bf16 widened to fp32 in 512-bit registers, the
    /// AVX2 engine's results sixteen lanes at a time.
    case avx512f
    /// AVX2 + FMA (for CPUs with none of the above, such as AMD Zen 3): bf16 widened to fp32 in registers, the same
    /// results as AVX512-BF16 (away from denormal and overflowing products, which VDPBF16PS flushes) at best at fp32's
    /// rate; `blas` is the default there (faster on the one such setup measured, a Zen 4 held to AVX2), this engine
    /// the one whose results are AVX512-BF16's bit for bit.
    case avx2
    /// Plain C on any x86-64, even without AVX2: the same results as AVX512-BF16, several times slower; the
    /// reference the others are tested against.
    case portable
    /// The fp32 library on bf16 values: the operands rounded to bf16 as every engine rounds them, held as fp32
    /// (the bf16 in the top half), then multiplied by the sgemm `BLASLibrary` chose. Each product is exact in fp32,
    /// as on every engine; the sums run in the library's order, so results differ from the other engines' by the
    /// order of the sums only. The default on CPUs without bf16 instructions: the library's kernels outran Keel's
    /// widening ones on a Zen 4 held to AVX2, the only such setup measured (docs/benchmarks.md).
    case blas

    /// The engine bf16 products use: the first of `available`, or the one `KEEL_BF16_ENGINE` (`amx`,
    /// `avx512`, `avx512f`, `avx2`, `portable`, `blas`) names when the CPU has it (another name, or one the CPU lacks, is warned about on
    /// standard error).
    public static let selected: BFloat16Engine = {
        let available = BFloat16Engine.available
        return environmentChoice("KEEL_BF16_ENGINE", among: allCases, name: \.rawValue,
                                 isAvailable: available.contains, fallback: available[0].rawValue) ?? available[0]
    }()

    /// The engines this CPU and operating system support, fastest first (the portable one last): `blas` on every
    /// CPU, first where there are no bf16 instructions.
    public static let available: [BFloat16Engine] = {
        switch keel_bf16_best_engine() {
        case KEEL_BF16_AMX: [.amx, .avx512, .blas, .avx512f, .avx2, .portable]
        case KEEL_BF16_AVX512: [.avx512, .blas, .avx512f, .avx2, .portable]
        case KEEL_BF16_AVX512F: [.blas, .avx512f, .avx2, .portable]
        case KEEL_BF16_AVX2: [.blas, .avx2, .portable]
        default: [.blas, .portable]
        }
    }()

    /// What a log says beside the engine's name where bf16 is no faster than fp32 on it, or nil.
    public var note: String? {
        switch self {
        case .amx, .avx512: nil
        case .avx512f: "operands widened to fp32 in 512-bit registers: the same results as AVX512-BF16; not measured on an Intel CPU without BF16 (0.87× fp32's speed, median of the small shape, on a Zen 4 forced onto it)"
        case .avx2: "operands widened to fp32 in registers: the same results as AVX512-BF16, at 0.83–0.90× fp32's speed on AMD Zen 4 forced onto it, 0.97–1.00× on Zen 5 (medians)"
        case .portable: "plain C: the same results as AVX512-BF16, several times slower than fp32"
        case .blas: "operands rounded to bf16, multiplied by the fp32 library: AVX512-BF16's products summed in the library's order, at 0.97–0.99× fp32's speed on AMD Zen 4 forced onto AVX2 (medians)"
        }
    }

    /// The C engine that packs and multiplies bf16 blocks; `blas` packs none, and asking for its traps.
    var native: keel_bf16_engine {
        switch self {
        case .amx: KEEL_BF16_AMX
        case .avx512: KEEL_BF16_AVX512
        case .avx512f: KEEL_BF16_AVX512F
        case .avx2: KEEL_BF16_AVX2
        case .portable: KEEL_BF16_PORTABLE
        case .blas: preconditionFailure("the blas engine packs no bf16 blocks")
        }
    }
}

/// The right-hand operand op(B)[k×n] of bf16 products, packed once and read by many: a weight that
/// several products in a row multiply (the output head, chunk after chunk).
public final class PackedOperand: @unchecked Sendable {
    private var storage = AlignedBuffer<UInt16>()
    private var rounded = AlignedBuffer<Float>()
    /// The depth and width of the packed matrix.
    public private(set) var k = 0, n = 0
    private var contents: Operand?
    /// The operand whose rounded matrix this one reads instead (`shareRounded`), and through which transpose.
    private var sharing: (source: PackedOperand, transB: Transpose)?

    public init() {}

    /// Rounds op(B)[k×n] (row-major storage, `ldb` defaulting to the dense row length) to bf16 and packs it (for
    /// the `blas` engine: keeps the rounded values in fp32, stored as B is).
    public func pack(_ transB: Transpose, k: Int, n: Int, _ b: UnsafePointer<Float>, ldb: Int? = nil) {
        (self.k, self.n, sharing) = (k, n, nil)
        let ldb = ldb ?? (transB == .none ? n : k)
        if BFloat16Engine.selected == .blas {
            let operand = RoundedOperand(.matrix(transB, b, ld: ldb), rows: k, columns: n) { rounded.reserve($0) }
            ThreadPool.shared.parallelFor(operand.rowsToRound) { operand.round($0) }
            contents = .rounded(operand.transpose, operand.pointer, ld: operand.ld)
            return
        }
        let destination = storage.reserve(keel_bf16_packed_count(Int32(n), Int32(k)))
        ThreadPool.shared.parallelFor((n + 31) / 32) { blocks in
            packRight(BFloat16Engine.selected, transB, k: k, n: n, b, ldb: ldb, into: destination, blocks: blocks)
        }
        contents = .packed(destination)
    }

    /// Reads, from now until the next `pack`, the rounded matrix `other` holds (as `other` holds it then: packed again
    /// later, this follows) as op(B)[k×n] through `transB`, instead of rounding a copy, where the engine keeps operands
    /// as they are stored (`blas`: a linear layer's two products read one rounded weight). Returns false, changing
    /// nothing, where each product needs its own packing.
    func shareRounded(from other: PackedOperand, _ transB: Transpose, k: Int, n: Int) -> Bool {
        guard case .rounded? = other.contents else { return false }
        (self.k, self.n, contents, sharing) = (k, n, nil, (other, transB))
        _ = operand  // checks the shapes now
        return true
    }

    /// The matrix as `bfloat16Gemm` reads it.
    var operand: Operand {
        if let (source, transB) = sharing {
            guard case .rounded(let sourceTransB, let pointer, let ld) = source.operand,
                  sourceTransB.stored(rows: source.k, columns: source.n) == transB.stored(rows: k, columns: n) else {
                preconditionFailure("a shared bf16 operand of \(k)×\(n) read from one of \(source.k)×\(source.n)")
            }
            return .rounded(transB, pointer, ld: ld)
        }
        guard let contents else { preconditionFailure("a bf16 operand multiplied before it was packed") }
        return contents
    }
}

/// C[M×N] = alpha · op(A) · B + beta · C with a packed B, in bf16 (see `gemm`); `leftIsRounded` where A holds bf16
/// values already (`RoundedOperands`).
public func gemm(
    _ transA: Transpose, m: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int? = nil, leftIsRounded: Bool = false,
    packed b: PackedOperand, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    let left = Operand.input(transA, a, ld: lda ?? (transA == .none ? b.k : m), isRounded: leftIsRounded)
    bfloat16Gemm(m: m, n: b.n, k: b.k, alpha: alpha, left: left, right: b.operand, beta: beta, c, ldc: ldc ?? b.n)
}

/// The left operand op(A)[m×k] of a bf16 product whose K arrives in slices: packed slice by slice, then
/// multiplied once. The output head's weight gradient is such a product: its K is the batch's rows, whose
/// ∂loss/∂logits exist one chunk at a time.
public final class PackedLeftOperand: @unchecked Sendable {
    private var storage = AlignedBuffer<UInt16>()
    private var rounded = AlignedBuffer<Float>()
    /// The height and depth of the packed matrix.
    public private(set) var m = 0, k = 0
    private var contents: Operand?

    public init() {}

    /// Makes room for op(A)[m×k]; `pack` then fills it slice by slice.
    public func reserve(m: Int, k: Int) {
        self.m = m
        self.k = k
        if BFloat16Engine.selected == .blas {
            contents = .rounded(.none, rounded.reserve(m * k), ld: max(1, k))
        } else {
            contents = .packed(storage.reserve(keel_bf16_packed_count(Int32(m), Int32(k))))
        }
    }

    /// Rounds op(A)[m × columns] to bf16 and packs it as K columns [offset, offset + columns); `offset` is a
    /// multiple of 32, and only the last slice may have a `columns` that is not. Every slice is stored alike
    /// (`transA`).
    public func pack(_ transA: Transpose, columns: Int, offset: Int, _ a: UnsafePointer<Float>, lda: Int) {
        precondition(offset % Int(KEEL_BF16_KSTEP) == 0 && offset + columns <= k, "slice \(offset)+\(columns) of K = \(k)")
        let (m, k) = (m, k)
        switch operand {
        case .rounded(_, let destination, _):
            // Kept as A is stored: op(A)'s rows (m × k), or for a transposed A its K rows (k × m), whose slice is a
            // block of whole rows.
            let target = UnsafeMutablePointer(mutating: destination)
            if transA == .none {
                roundRows(rows: m, columns: columns, a, ld: lda, into: target + offset, ldOut: k)
            } else {
                roundRows(rows: columns, columns: m, a, ld: lda, into: target + offset * m, ldOut: m)
            }
            contents = .rounded(transA, destination, ld: max(1, transA == .none ? k : m))
        case .packed(let destination):
            let target = UnsafeMutablePointer(mutating: destination)
            ThreadPool.shared.parallelFor((m + 31) / 32) { blocks in
                keel_bf16_pack_a_slice(BFloat16Engine.selected.native, transA.flag, Int32(m), Int32(columns), a, Int32(lda), target,
                                       Int32(k), Int32(offset), Int32(blocks.lowerBound), Int32(blocks.upperBound))
            }
        case .matrix: preconditionFailure("a packed operand is never a plain matrix")
        }
    }

    /// The bf16 values of the slice packed at `offset` as they were given (`columns` × m, dense rows), where this
    /// engine keeps them so: the `blas` engine's slices of a transposed A are A's rows, rounded. Nil on the other
    /// engines. A product that reads the same slice as A reads it from here without rounding it again.
    public func roundedSlice(offset: Int) -> UnsafePointer<Float>? {
        guard case .rounded(.transposed, let pointer, _)? = contents else { return nil }
        return pointer + offset * m
    }

    /// The matrix as `bfloat16Gemm` reads it, once every slice is packed.
    var operand: Operand {
        guard let contents else { preconditionFailure("a bf16 operand multiplied before it was reserved") }
        return contents
    }
}

/// C[M×N] = alpha · A · op(B) + beta · C with a packed A, in bf16 (see `gemm`).
public func gemm(
    packed a: PackedLeftOperand, _ transB: Transpose, n: Int, alpha: Float = 1, _ b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    bfloat16Gemm(m: a.m, n: n, k: a.k, alpha: alpha, left: a.operand,
                 right: .matrix(transB, b, ld: ldb ?? (transB == .none ? n : a.k)), beta: beta, c, ldc: ldc ?? n)
}

/// An operand of `bfloat16Gemm`: an fp32 matrix to round and pack (with its transpose and row stride), one
/// packed already, or (the `blas` engine's) one rounded already, held in fp32 as stored.
enum Operand {
    case matrix(Transpose, UnsafePointer<Float>, ld: Int)
    case packed(UnsafePointer<UInt16>)
    case rounded(Transpose, UnsafePointer<Float>, ld: Int)

    /// An fp32 matrix as the selected engine reads it: as it is where it holds bf16 values already and the engine
    /// multiplies rounded operands (`blas`), else a matrix to round and pack (rounding a bf16 value gives itself).
    static func input(_ transpose: Transpose, _ pointer: UnsafePointer<Float>, ld: Int, isRounded: Bool) -> Operand {
        isRounded && bfloat16ProductsReadRoundedOperands ? .rounded(transpose, pointer, ld: ld) : .matrix(transpose, pointer, ld: ld)
    }
}

/// Which operands of a bf16 product hold bf16 values already, held in fp32 (rounded by `roundToBFloat16` or by the
/// kernel that wrote them): the `blas` engine multiplies those as they are instead of rounding a copy. The other
/// engines round and pack them as ever; rounding a bf16 value gives itself, so the results are the same either way.
public struct RoundedOperands: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// op(A), the left operand.
    public static let left = RoundedOperands(rawValue: 1)
    /// op(B), the right operand.
    public static let right = RoundedOperands(rawValue: 2)

    /// The operands whose flag is true.
    public init(left: Bool, right: Bool) {
        self = RoundedOperands(rawValue: (left ? 1 : 0) | (right ? 2 : 0))
    }
}

/// Whether bf16 products should be handed operands rounded beforehand (`RoundedOperands`): true on the `blas`
/// engine, where a kernel that rounds a matrix once for several products saves the rounding each product does;
/// false on the others, which round while packing and would round twice.
var bfloat16ProductsReadRoundedOperands: Bool { BFloat16Engine.selected == .blas }

extension MatrixPrecision {
    /// Whether this precision's products read operands rounded beforehand as they are (`RoundedOperands`): bf16 on the
    /// `blas` engine. There an operand several products read is rounded once for all of them (a linear layer's
    /// ∂loss/∂output, attention's heads), and the kernels that write a product's operand (the norms, the activation
    /// functions) write it rounded (their `roundingOutput`), where rounding a row just written costs little. The other
    /// engines round while packing, and a bf16 value rounds to itself: every engine's results are the same bits either way.
    public var readsRoundedOperands: Bool { self == .bfloat16 && bfloat16ProductsReadRoundedOperands }
}

/// x[0..<count] rounded to bf16 in place, where a kernel has just written them (`MatrixPrecision.readsRoundedOperands`).
@inline(__always)
func roundInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    roundToBFloat16(rows: 1, columns: count, x, ld: count, into: x, ldOut: count)
}

/// rounded[r·ldOut + c] = x[r·ld + c] rounded to bf16 (nearest even, as every engine rounds) and held in fp32, for
/// `rows` × `columns`; on the calling thread (in place when both are the same matrix).
func roundToBFloat16(
    rows: Int, columns: Int, _ x: UnsafePointer<Float>, ld: Int, into rounded: UnsafeMutablePointer<Float>, ldOut: Int
) {
    guard rows > 0, columns > 0 else { return }
    keel_bf16_round_rows(roundingEngine, Int32(rows), Int32(columns), x, Int32(ld), rounded, Int32(ldOut))
}

/// The bf16 product behind `gemm(…, precision: .bfloat16)`: packs the operands that are not packed yet in
/// parallel, then splits C's 32 × 32 blocks among the pool's threads. Every block is summed over the full
/// K by one thread in a fixed order, so the result does not depend on the thread count. On the `blas` engine: rounds
/// the operands not rounded yet, then the fp32 `gemm` (equally independent of the thread count).
func bfloat16Gemm(
    m: Int, n: Int, k: Int, alpha: Float, left: Operand, right: Operand, beta: Float, _ c: UnsafeMutablePointer<Float>,
    ldc: Int, engine: BFloat16Engine = BFloat16Engine.selected
) {
    guard m > 0, n > 0 else { return }
    if engine == .blas {
        roundedGemm(m: m, n: n, k: k, alpha: alpha, left: left, right: right, beta: beta, c, ldc: ldc)
        return
    }
    packingLock.withLock { _ in
        let rowBlocks = (m + 31) / 32, columnBlocks = (n + 31) / 32
        // Where each operand is packed: its own packing when it comes packed, scratch when it is to be packed here.
        let packedA: UnsafePointer<UInt16>, packedB: UnsafePointer<UInt16>
        var leftBlocks = 0, rightBlocks = 0
        switch left {
        case .packed(let pointer): packedA = pointer
        case .matrix:
            packedA = UnsafePointer(scratch.a.reserve(keel_bf16_packed_count(Int32(m), Int32(k))))
            leftBlocks = rowBlocks
        case .rounded: preconditionFailure("an operand rounded for the blas engine, multiplied on \(engine)")
        }
        switch right {
        case .packed(let pointer): packedB = pointer
        case .matrix:
            packedB = UnsafePointer(scratch.b.reserve(keel_bf16_packed_count(Int32(n), Int32(k))))
            rightBlocks = columnBlocks
        case .rounded: preconditionFailure("an operand rounded for the blas engine, multiplied on \(engine)")
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

/// The `blas` engine's product: the operands not rounded yet are rounded into scratch as they are stored (in
/// parallel, both in one loop), then the fp32 `gemm` multiplies the rounded values.
private func roundedGemm(
    m: Int, n: Int, k: Int, alpha: Float, left: Operand, right: Operand, beta: Float, _ c: UnsafeMutablePointer<Float>,
    ldc: Int
) {
    packingLock.withLock { _ in
        let a = RoundedOperand(left, rows: m, columns: k) { scratch.roundedA.reserve($0) }
        let b = RoundedOperand(right, rows: k, columns: n) { scratch.roundedB.reserve($0) }
        ThreadPool.shared.parallelFor(a.rowsToRound + b.rowsToRound) { rows in
            // A's stored rows first, then B's.
            let own = rows.clamped(to: a.rowsToRound..<a.rowsToRound + b.rowsToRound)
            a.round(rows.clamped(to: 0..<a.rowsToRound))
            b.round((own.lowerBound - a.rowsToRound)..<(own.upperBound - a.rowsToRound))
        }
        gemm(a.transpose, b.transpose, m: m, n: n, k: k, alpha: alpha, a.pointer, lda: a.ld, b.pointer, ldb: b.ld, beta: beta,
             c, ldc: ldc)
    }
}

/// An operand of the `blas` engine's product as the fp32 `gemm` reads it: rounded already, or a matrix to round
/// into memory of its own, kept as it is stored (dense rows).
private struct RoundedOperand {
    /// Whether up to 64 × 64 elements spread over x's stored rows × columns are bf16 values (low 16 bits zero).
    static func holdsBFloat16(_ x: UnsafePointer<Float>, _ shape: (rows: Int, columns: Int), ld: Int) -> Bool {
        let rowStep = max(1, shape.rows / 64), columnStep = max(1, shape.columns / 64)
        return stride(from: 0, to: shape.rows, by: rowStep).allSatisfy { r in
            stride(from: 0, to: shape.columns, by: columnStep).allSatisfy { x[r * ld + $0].bitPattern & 0xFFFF == 0 }
        }
    }

    let transpose: Transpose, pointer: UnsafePointer<Float>, ld: Int
    /// The matrix still to round (nil when it was rounded already), and its stored rows and columns.
    private let source: (pointer: UnsafePointer<Float>, ld: Int)?
    let rowsToRound: Int
    private let columns: Int

    /// `operand` as op(X)[rows × columns]; a matrix to round gets its memory from `space` (given the floats it needs).
    init(_ operand: Operand, rows: Int, columns: Int, space: (Int) -> UnsafeMutablePointer<Float>) {
        switch operand {
        case .rounded(let transpose, let pointer, let ld):
            (self.transpose, self.pointer, self.ld, source, rowsToRound, self.columns) = (transpose, pointer, ld, nil, 0, 0)
            // A flag on the wrong operand would multiply fp32 values as if rounded: debug builds (the tests) look.
            assert(Self.holdsBFloat16(pointer, transpose.stored(rows: rows, columns: columns), ld: ld),
                   "an operand marked as rounded (RoundedOperands) holds values that are not bf16")
        case .matrix(let transpose, let matrix, let ld):
            let (stored, width) = transpose.stored(rows: rows, columns: columns)
            // BLAS wants a row stride of at least 1 even when there are no columns (k = 0).
            (self.transpose, self.ld, source, rowsToRound, self.columns) = (transpose, max(1, width), (matrix, ld), stored, width)
            pointer = UnsafePointer(space(stored * width))
        case .packed: preconditionFailure("an operand packed in bf16 blocks, multiplied on the blas engine")
        }
    }

    /// Rounds the stored rows `rows` (none when empty or when nothing is to round).
    func round(_ rows: Range<Int>) {
        guard let source else { return }
        roundToBFloat16(rows: rows.count, columns: columns, source.pointer + rows.lowerBound * source.ld, ld: source.ld,
                        into: UnsafeMutablePointer(mutating: pointer) + rows.lowerBound * ld, ldOut: ld)
    }
}

/// Rounds `rows` × `columns` floats to bf16 values held in fp32, the rows split among the pool's threads.
private func roundRows(
    rows: Int, columns: Int, _ source: UnsafePointer<Float>, ld: Int, into destination: UnsafeMutablePointer<Float>, ldOut: Int
) {
    ThreadPool.shared.parallelFor(rows) { range in
        roundToBFloat16(rows: range.count, columns: columns, source + range.lowerBound * ld, ld: ld,
                        into: destination + range.lowerBound * ldOut, ldOut: ldOut)
    }
}

/// Calls `body` with x[rows, columns] (dense rows) rounded to bf16 into scratch of its own, the rows rounded in
/// parallel: an operand that several products read, rounded once for all of them. One caller at a time.
func withRoundedCopy(_ x: UnsafePointer<Float>, rows: Int, columns: Int, _ body: (UnsafePointer<Float>) -> Void) {
    roundedCopyLock.withLock { _ in
        let rounded = scratch.roundedCopy.reserve(rows * columns)
        roundRows(rows: rows, columns: columns, x, ld: columns, into: rounded, ldOut: columns)
        body(rounded)
    }
}

/// The instructions `keel_bf16_round_rows` rounds with: AVX2 where the CPU has it.
private let roundingEngine = keel_bf16_best_engine() == KEEL_BF16_NONE ? KEEL_BF16_PORTABLE : KEEL_BF16_AVX2

/// Bytes of scratch `serialBFloat16Gemm` needs for an m×n×k product on the selected engine.
func serialBFloat16ScratchBytes(m: Int, n: Int, k: Int) -> Int {
    BFloat16Engine.selected == .blas ? 4 * (m * k + k * n) : 2 * keel_bf16_serial_scratch_count(Int32(m), Int32(n), Int32(k))
}

/// A bf16 product on the calling thread, for kernels that are already parallel: packs (or, on the `blas` engine,
/// rounds) both operands into `scratch` (`serialBFloat16ScratchBytes(m:n:k:)` bytes, 64-byte aligned).
func serialBFloat16Gemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int,
    scratch: UnsafeMutableRawPointer
) {
    guard BFloat16Engine.selected == .blas else {
        let packing = scratch.bindMemory(to: UInt16.self, capacity: keel_bf16_serial_scratch_count(Int32(m), Int32(n), Int32(k)))
        keel_bf16_gemm_serial(BFloat16Engine.selected.native, transA.flag, transB.flag,
                              Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc), packing)
        return
    }
    let space = scratch.bindMemory(to: Float.self, capacity: m * k + k * n)
    let left = RoundedOperand(.matrix(transA, a, ld: lda), rows: m, columns: k) { _ in space }
    let right = RoundedOperand(.matrix(transB, b, ld: ldb), rows: k, columns: n) { _ in space + m * k }
    left.round(0..<left.rowsToRound)
    right.round(0..<right.rowsToRound)
    serialGemm(transA, transB, m: m, n: n, k: k, alpha: alpha, left.pointer, lda: left.ld, right.pointer, ldb: right.ld,
               beta: beta, c, ldc: ldc)
}

/// Rounds and packs the 32-column blocks `blocks` of op(B)[k×n] (none when the range is empty).
private func packRight(
    _ engine: BFloat16Engine, _ transB: Transpose, k: Int, n: Int, _ b: UnsafePointer<Float>, ldb: Int, into packed: UnsafeMutablePointer<UInt16>,
    blocks: Range<Int>
) {
    keel_bf16_pack_b(engine.native, transB.flag, Int32(k), Int32(n), b, Int32(ldb), packed,
                     Int32(blocks.lowerBound), Int32(blocks.upperBound))
}

/// A grow-only, 64-byte aligned buffer: packing and rounding allocate only when a product is larger than any
/// before it.
struct AlignedBuffer<Element: BitwiseCopyable>: ~Copyable {
    private(set) var pointer: UnsafeMutablePointer<Element>?
    private var capacity = 0

    mutating func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity || pointer == nil {
            pointer.map { UnsafeMutableRawPointer($0).deallocate() }
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Element>.stride, alignment: 64)
            pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
            capacity = max(count, 1)
        }
        return pointer!
    }

    deinit { pointer.map { UnsafeMutableRawPointer($0).deallocate() } }
}

/// Packing space of the products that pack both operands (rounding space on the `blas` engine); `packingLock` makes
/// products run one at a time. And `withRoundedCopy`'s space, under `roundedCopyLock` (held while its products run).
private final class PackingScratch: @unchecked Sendable {
    var a = AlignedBuffer<UInt16>(), b = AlignedBuffer<UInt16>()
    var roundedA = AlignedBuffer<Float>(), roundedB = AlignedBuffer<Float>()
    var roundedCopy = AlignedBuffer<Float>()
}

private let scratch = PackingScratch()
private let packingLock = Mutex(()), roundedCopyLock = Mutex(())
