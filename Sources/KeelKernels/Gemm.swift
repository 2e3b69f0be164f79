import COpenBLAS

/// Whether a matrix operand of `gemm` is read as stored or transposed.
public enum Transpose: Sendable {
    case none, transposed

    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C, row-major, through OpenBLAS.
///
/// `lda`, `ldb` and `ldc` default to the dense row length of the stored matrices.
@inline(__always)
public func gemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int? = nil,
    _ b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    let lda = lda ?? (transA == .none ? k : m)
    let ldb = ldb ?? (transB == .none ? n : k)
    cblas_sgemm(
        CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc ?? n))
}

/// Sets the number of threads OpenBLAS uses for each call.
public func setBLASThreadCount(_ count: Int) {
    openblas_set_num_threads(Int32(count))
}
