import COpenBLAS
import CQuant
import KeelCore

/// Whether a matrix operand of `gemm` is read as stored or transposed.
public enum Transpose: Sendable {
    case none, transposed

    /// CBLAS's CblasNoTrans or CblasTrans, the same numbers in every library's cblas.h.
    var cblas: Int32 { self == .none ? 111 : 112 }
    /// The `transposed` flag of the bf16 C functions.
    var flag: Int32 { self == .none ? 0 : 1 }

    /// The rows and columns of the stored matrix whose op() is `rows` × `columns`.
    func stored(rows: Int, columns: Int) -> (rows: Int, columns: Int) { self == .none ? (rows, columns) : (columns, rows) }
}

/// C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C, row-major, through the BLAS library `BLASLibrary`
/// chose (fp32) or, with `precision: .bfloat16`, with operands rounded to bf16 on the selected engine (see
/// `bfloat16Gemm`); the `rounded` ones hold bf16 values already (`RoundedOperands`).
///
/// `lda`, `ldb` and `ldc` default to the dense row length of the stored matrices.
///
/// In fp32, the BLAS library runs single-threaded: Keel's pool splits C into row blocks (or column blocks when C
/// is wide and short) and each thread multiplies its block. One set of threads then serves both BLAS and Keel's
/// own kernels, instead of two sets spinning against each other on the same cores. Each element of C
/// is computed by one BLAS call over the full K, so the result does not depend on the thread count.
public func gemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int? = nil,
    _ b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil, precision: MatrixPrecision = .float32,
    rounded: RoundedOperands = []
) {
    let lda = lda ?? (transA == .none ? k : m)
    let ldb = ldb ?? (transB == .none ? n : k)
    let ldc = ldc ?? n
    if precision == .bfloat16 {
        bfloat16Gemm(m: m, n: n, k: k, alpha: alpha, left: .input(transA, a, ld: lda, isRounded: rounded.contains(.left)),
                     right: .input(transB, b, ld: ldb, isRounded: rounded.contains(.right)), beta: beta, c, ldc: ldc)
        return
    }
    if m == 1, transA == .none {
        // One row: a matrix-vector product (a generation step). sgemm packs B before using it, which for one row
        // costs more than the product; sgemv streams it once.
        matrixVector(transB, n: n, k: k, alpha: alpha, a, b, ldb: ldb, beta: beta, c)
        return
    }
    // 64-row (or column) blocks: measured faster than one large block per thread, where concurrent
    // single-threaded OpenBLAS calls on 2 cores ran at half speed.
    let block = 64
    let splitRows = m >= n
    let blocks = ((splitRows ? m : n) + block - 1) / block
    ThreadPool.shared.parallelFor(blocks) { range in
        let start = range.lowerBound * block
        let end = min(splitRows ? m : n, range.upperBound * block)
        if splitRows {
            serialGemm(transA, transB, m: end - start, n: n, k: k, alpha: alpha,
                       transA == .none ? a + start * lda : a + start, lda: lda, b, ldb: ldb,
                       beta: beta, c + start * ldc, ldc: ldc)
        } else {
            serialGemm(transA, transB, m: m, n: end - start, k: k, alpha: alpha, a, lda: lda,
                       transB == .none ? b + start : b + start * ldb, ldb: ldb, beta: beta, c + start, ldc: ldc)
        }
    }
}

/// c[N] = alpha · a[K] · op(B)[K×N] + beta · c, its N outputs split among the pool in blocks of 256: rows of B
/// ([N, K], Llama's layout) through Keel's own kernel (`keel_f32_matvec`, one stream per thread: faster than
/// OpenBLAS's sgemv here), columns (GPT-2's [K, N]) through sgemv.
private func matrixVector(
    _ transB: Transpose, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, ldb: Int,
    beta: Float, _ c: UnsafeMutablePointer<Float>
) {
    let block = 256, engine = QuantizedDotEngine.best.engine
    ThreadPool.shared.parallelFor((n + block - 1) / block) { range in
        let start = range.lowerBound * block, end = min(n, range.upperBound * block)
        if transB == .transposed {
            // B is [N, K]: rows start..<end of B times a.
            for first in stride(from: start, to: end, by: block) {
                let count = min(block, end - first)
                withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { dots in
                    keel_f32_matvec(engine, Int32(count), Int32(k), b + first * ldb, ldb, a, dots.baseAddress!)
                    for j in 0..<count {
                        c[first + j] = beta == 0 ? alpha * dots[j] : alpha * dots[j] + beta * c[first + j]
                    }
                }
            }
        } else {
            // B is [K, N]: columns start..<end, that is B[:, start..<end]ᵀ times a.
            BLASLibrary.selected.sgemv(cblasRowMajor, Transpose.transposed.cblas, Int32(k), Int32(end - start), alpha, b + start,
                                       Int32(ldb), a, 1, beta, c + start, 1)
        }
    }
}

/// `gemm` on the calling thread only, for use inside a kernel that is already parallel.
@inline(__always)
public func serialGemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
    _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    BLASLibrary.selected.sgemm(cblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                               alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// C = A·B (row-major, dense) with OpenBLAS's own threading on `threads` threads, for measuring the
/// machine's sgemm ceiling; Keel's kernels use `gemm`.
public func openBLASGemm(threads: Int, m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                         _ c: UnsafeMutablePointer<Float>) {
    _ = singleThreadedBLAS
    openblas_set_num_threads(Int32(threads))
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c,
                Int32(n))
    openblas_set_num_threads(1)
}

/// CBLAS's CblasRowMajor, the same number in every library's cblas.h.
let cblasRowMajor: Int32 = 101

/// Makes OpenBLAS single-threaded and stops its idle worker threads now (as every call into it does first): a
/// command that may run without calling it — generation from a quantized model — calls this at its start.
public func useSingleThreadedBLAS() {
    _ = singleThreadedBLAS
}

/// OpenBLAS is made single-threaded before its first use: `gemm` parallelises over Keel's own pool. Its worker
/// threads, started when the library loaded, are stopped too: idle, they spin (yielding) for about 2^28 cycles
/// before they sleep, which took a tenth of the machine from a short `keel generate` (a third busy thread on 2
/// cores) and left Keel's own workers waiting for a core.
private let singleThreadedBLAS: Void = {
    openblas_set_num_threads(1)
    _ = blas_thread_shutdown_()
}()
