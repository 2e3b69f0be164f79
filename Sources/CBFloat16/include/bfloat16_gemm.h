// bf16 matrix products with fp32 accumulation on Intel AMX tiles (Sapphire Rapids and later), on AVX512-BF16
// dot products without AMX, on AVX-512F or AVX2 + FMA (operands widened to fp32 in registers) without either, or in plain
// C on any other x86-64 (every packing function takes the engine; all of them pack into the same bytes). Operands arrive
// as fp32 and are rounded to bf16 (nearest even) while they are packed; results are fp32. Threading is the caller's: each
// function works on a range of blocks. `keel_bf16_round_rows` rounds the same way without packing, for the engine that
// multiplies the rounded values with the fp32 library instead (KeelKernels' `blas`).
#ifndef KEEL_BFLOAT16_GEMM_H
#define KEEL_BFLOAT16_GEMM_H

#include <stddef.h>
#include <stdint.h>

/// Which instructions the bf16 products run on.
typedef enum {
    KEEL_BF16_NONE = 0,   ///< not even AVX2 + FMA usable: only the portable engine
    KEEL_BF16_AVX512 = 1, ///< AVX512-BF16 dot products (e.g. AMD Zen 4/5, Intel Cooper Lake)
    KEEL_BF16_AMX = 2,    ///< AMX tiles (Intel Sapphire Rapids and later)
    KEEL_BF16_PORTABLE = 3, ///< plain C on any x86-64: the same packed layouts, rounding and fp32 sums, slower
    KEEL_BF16_AVX2 = 4,   ///< AVX2 + FMA (e.g. AMD Zen 3): the portable engine's results, eight lanes at a time
    KEEL_BF16_AVX512F = 5 ///< AVX-512F without BF16 (e.g. Intel Ice Lake): the same, sixteen lanes at a time
} keel_bf16_engine;

/// The best engine this CPU and kernel allow; asks Linux for AMX tile state once per process.
keel_bf16_engine keel_bf16_best_engine(void);

/// Rows (of A) or columns (of B) per packed block, and the K granularity of packing.
enum { KEEL_BF16_BLOCK = 32, KEEL_BF16_KSTEP = 32 };

/// Elements (uint16) of a packed A with m rows and depth k, or of a packed B with depth k and n columns.
size_t keel_bf16_packed_count(int rows_or_columns, int k);

/// Packs 32-row blocks [block_begin, block_end) of op(A)[m×k] (row-major storage, `transposed` meaning
/// A is stored k×m) into tile order, zero-padded to whole blocks and whole K steps.
void keel_bf16_pack_a(keel_bf16_engine engine, int transposed, int m, int k, const float *a, int lda,
                      uint16_t *packed, int block_begin, int block_end);

/// Packs 32-row blocks [block_begin, block_end) of op(A)[m×k] as K columns [k_offset, k_offset + k) of a
/// packed A of depth total_k: one slice of K at a time, for a left operand whose K arrives in parts (the
/// output head's ∂loss/∂logitsᵀ, chunk of rows by chunk). k_offset is a multiple of KEEL_BF16_KSTEP; a slice
/// whose k is not pads the rest of its last step with zeros, so only the last slice may be one.
void keel_bf16_pack_a_slice(keel_bf16_engine engine, int transposed, int m, int k, const float *a, int lda,
                            uint16_t *packed, int total_k, int k_offset, int block_begin, int block_end);

/// Packs 32-column blocks [block_begin, block_end) of op(B)[k×n] (`transposed` meaning B is stored n×k)
/// into pairs-of-K ("VNNI") tile order, zero-padded like `keel_bf16_pack_a`.
void keel_bf16_pack_b(keel_bf16_engine engine, int transposed, int k, int n, const float *b, int ldb,
                      uint16_t *packed, int block_begin, int block_end);

/// C = alpha · A·B + beta · C for the 32×32 output blocks [block_begin, block_end), numbered in bands of 8
/// row blocks (256 rows), column-block-major within a band, so one thread's blocks share a band of A in L2
/// and B panels in L1. With beta == 0, C is not read. Each output element is summed over K in a fixed order.
void keel_bf16_gemm_blocks(keel_bf16_engine engine, int m, int n, int k, const uint16_t *packed_a,
                           const uint16_t *packed_b, float alpha, float beta, float *c, int ldc,
                           int block_begin, int block_end);

/// uint16 values of scratch `keel_bf16_gemm_serial` needs for an m×n×k product.
size_t keel_bf16_serial_scratch_count(int m, int n, int k);

/// C[m×n] = alpha · op(A) · op(B) + beta · C on the calling thread: packs both operands into `scratch`
/// (`keel_bf16_serial_scratch_count` values), then multiplies. For small products inside kernels that are
/// already parallel, such as attention's per-head blocks. With beta == 0, C is not read.
void keel_bf16_gemm_serial(keel_bf16_engine engine, int transposed_a, int transposed_b, int m, int n, int k,
                           float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc, uint16_t *scratch);

/// Rounds `rows` × `columns` floats (row stride `ld`) to bf16 as every packing rounds them and writes them back as
/// fp32 (the bf16 in the top half, zeros below) to `out` (row stride `ld_out`): the operands of the engine that
/// multiplies bf16 values with the fp32 library's sgemm. In plain C with KEEL_BF16_PORTABLE, with AVX2 (which the
/// CPU must have) with any other engine.
void keel_bf16_round_rows(keel_bf16_engine engine, int rows, int columns, const float *source, int ld, float *out,
                          int ld_out);

#endif
