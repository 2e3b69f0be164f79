// Packing and block kernels for bf16 products; layouts are described in bfloat16_gemm.h and below.
//
// Packed A, block mb (32 rows) at mb·32·Kp: for each K step s (32 values of k), two 16×32 tiles (rows
// mb·32+0…15, then +16…31), each row the 32 bf16 of k = 32s…32s+31. Packed B, block nb (32 columns) at
// nb·32·Kp: for each K step, two tiles of 16 rows (pairs of k) × 16 columns × 2 (k even, k odd), the
// layout AMX's TDPBF16PS and AVX512's VDPBF16PS both read (and the AVX2, AVX-512F and portable engines widen). Kp is
// k rounded up to 32; padding is zero.
#include "bfloat16_gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define AMX_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#define AVX2_FMA __attribute__((target("avx2,fma")))
#define AVX512F_FMA __attribute__((target("avx2,fma,avx512f")))

enum { TILE = 512, STEP = 1024 }; // elements in one 16×32 tile, and in one K step of a packed block
// K steps per pass over the blocks: 32 steps (1,024 values of k) keep a pass's A and B sub-panels in L2 when K is
// large (the output head's input gradient has K = vocabulary), instead of streaming whole panels per block.
enum { PASS_STEPS = 32 };
// Row blocks per band: a band's packed A (256 rows × K) stays in L2 while its blocks sweep B's column blocks.
enum { BAND = 8 };

static keel_bf16_engine detected_engine = KEEL_BF16_NONE;
static pthread_once_t detection = PTHREAD_ONCE_INIT;

static void detect_engine(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return; // no OSXSAVE
    int fma = (ecx >> 12) & 1;
    unsigned xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if ((xcr0_low & 0x6) != 0x6) return; // the OS does not save ymm state
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return;
    int avx2 = fma && ((ebx >> 5) & 1);
    if (avx2) detected_engine = KEEL_BF16_AVX2;
    if ((xcr0_low & 0xE6) != 0xE6) return; // nor zmm state
    if (avx2 && ((ebx >> 16) & 1)) detected_engine = KEEL_BF16_AVX512F; // AVX-512F
    int avx512 = ((ebx >> 16) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1); // F, BW, VL
    int amx = ((edx >> 22) & 1) && ((edx >> 24) & 1);                        // AMX-BF16, AMX-TILE
    __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx);
    if (!avx512 || !((eax >> 5) & 1)) return; // AVX512-BF16
    detected_engine = KEEL_BF16_AVX512;
    // Linux hands out the 8 KiB tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    if (amx && syscall(SYS_arch_prctl, 0x1023, 18) == 0) detected_engine = KEEL_BF16_AMX;
}

keel_bf16_engine keel_bf16_best_engine(void) {
    pthread_once(&detection, detect_engine);
    return detected_engine;
}

size_t keel_bf16_packed_count(int rows_or_columns, int k) {
    size_t blocks = (size_t)(rows_or_columns + KEEL_BF16_BLOCK - 1) / KEEL_BF16_BLOCK;
    size_t steps = (size_t)(k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    return blocks * steps * STEP;
}

static inline __mmask16 first(int count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

/// 32 floats (fewer when `count` < 32, zero-filled) rounded to 32 bf16, in order.
AVX512_BF16 static inline __m512i round32(const float *source, int count) {
    __m512 low = _mm512_maskz_loadu_ps(first(count), source);
    __m512 high = _mm512_maskz_loadu_ps(first(count - 16), source + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(high, low);
}

/// 16 pairs (even[c], odd[c]) in bf16 from two rows of 16 floats (fewer when `count` < 16); a null row is zero.
AVX512_BF16 static inline __m512i interleave16(const float *even, const float *odd, int count) {
    __m512 e = even ? _mm512_maskz_loadu_ps(first(count), even) : _mm512_setzero_ps();
    __m512 o = odd ? _mm512_maskz_loadu_ps(first(count), odd) : _mm512_setzero_ps();
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(o, e); // words 0…15 from even, 16…31 from odd
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, both);
}

/// Writes the 16×16 transpose (in 32-bit pairs) of `rows` to `out`, one 64-byte row per column: four rounds of
/// in-register shuffles rather than gathers, which on this path cost several times more.
AVX512_BF16 static inline void store_transposed(const __m512i rows[16], uint16_t *out) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
    }
    // u[4i+q], 128-bit lane L: column 4L+q of rows 4i…4i+3.
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int q = 0; q < 4; q++) {
        __m512i even_lanes_low = _mm512_shuffle_i32x4(u[q], u[4 + q], 0x88);
        __m512i odd_lanes_low = _mm512_shuffle_i32x4(u[q], u[4 + q], 0xDD);
        __m512i even_lanes_high = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0x88);
        __m512i odd_lanes_high = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0xDD);
        _mm512_storeu_si512(out + (0 + q) * 32, _mm512_shuffle_i32x4(even_lanes_low, even_lanes_high, 0x88));
        _mm512_storeu_si512(out + (4 + q) * 32, _mm512_shuffle_i32x4(odd_lanes_low, odd_lanes_high, 0x88));
        _mm512_storeu_si512(out + (8 + q) * 32, _mm512_shuffle_i32x4(even_lanes_low, even_lanes_high, 0xDD));
        _mm512_storeu_si512(out + (12 + q) * 32, _mm512_shuffle_i32x4(odd_lanes_low, odd_lanes_high, 0xDD));
    }
}

/// Row k of a matrix stored with `k_count` rows, or null past the end (read as zeros).
static inline const float *row_or_null(const float *matrix, int k, int k_count, int ld) {
    return k < k_count ? matrix + (size_t)k * ld : NULL;
}

AVX512_BF16 static void avx512_pack_a_slice(int transposed, int m, int k, const float *a, int lda, uint16_t *packed,
                                            int total_k, int k_offset, int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    size_t block_stride = keel_bf16_packed_count(KEEL_BF16_BLOCK, total_k);
    packed += (size_t)(k_offset / KEEL_BF16_KSTEP) * STEP;
    if (!transposed) {
        for (int mb = block_begin; mb < block_end; mb++) {
            uint16_t *block = packed + mb * block_stride;
            for (int half = 0; half < 2; half++)
                for (int r = 0; r < 16; r++) {
                    int row = mb * 32 + half * 16 + r;
                    for (int s = 0; s < steps; s++) {
                        __m512i v = row < m ? round32(a + (size_t)row * lda + s * 32, k - s * 32)
                                            : _mm512_setzero_si512();
                        _mm512_storeu_si512(block + s * STEP + half * TILE + r * 32, v);
                    }
                }
        }
        return;
    }
    // A is stored k×m: pair up rows k, k+1 over 16 rows of op(A) at a time, then transpose. K steps outermost,
    // so the 32 stored rows of a step are read front to back across all the blocks instead of in strided strips.
    __m512i pairs[16];
    for (int s = 0; s < steps; s++)
        for (int mb = block_begin; mb < block_end; mb++)
            for (int half = 0; half < 2; half++) {
                int row0 = mb * 32 + half * 16;
                for (int j = 0; j < 16; j++) {
                    int k0 = s * 32 + 2 * j;
                    const float *even = row_or_null(a, k0, k, lda), *odd = row_or_null(a, k0 + 1, k, lda);
                    // As in avx2_pack_a_slice: more streams than the prefetcher follows (2.1× faster: docs/benchmarks.md).
                    if (even) _mm_prefetch((const char *)(even + row0 + 64), _MM_HINT_T0);
                    if (odd) _mm_prefetch((const char *)(odd + row0 + 64), _MM_HINT_T0);
                    pairs[j] = interleave16(even ? even + row0 : NULL, odd ? odd + row0 : NULL, m - row0);
                }
                store_transposed(pairs, packed + mb * block_stride + s * STEP + half * TILE);
            }
}

AVX512_BF16 static void avx512_pack_b(int transposed, int k, int n, const float *b, int ldb, uint16_t *packed,
                                      int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    if (!transposed) {
        // Two stored rows (k, k+1) at a time, across every block: the reads run along the rows.
        for (int s = 0; s < steps; s++)
            for (int j = 0; j < 16; j++) {
                const float *even = row_or_null(b, s * 32 + 2 * j, k, ldb);
                const float *odd = row_or_null(b, s * 32 + 2 * j + 1, k, ldb);
                for (int nb = block_begin; nb < block_end; nb++)
                    for (int half = 0; half < 2; half++) {
                        int column0 = nb * 32 + half * 16;
                        uint16_t *tile = packed + (size_t)nb * steps * STEP + s * STEP + half * TILE;
                        _mm512_storeu_si512(tile + j * 32, interleave16(even ? even + column0 : NULL,
                                                                        odd ? odd + column0 : NULL, n - column0));
                    }
            }
        return;
    }
    // B is stored n×k: each column's k run is contiguous; round it, then transpose.
    __m512i pairs[16];
    for (int nb = block_begin; nb < block_end; nb++)
        for (int s = 0; s < steps; s++)
            for (int half = 0; half < 2; half++) {
                int column0 = nb * 32 + half * 16;
                for (int c = 0; c < 16; c++) {
                    int column = column0 + c;
                    pairs[c] = column < n ? round32(b + (size_t)column * ldb + s * 32, k - s * 32) : _mm512_setzero_si512();
                }
                store_transposed(pairs, packed + (size_t)nb * steps * STEP + s * STEP + half * TILE);
            }
}

// The portable engine: the same layouts and rounding in plain C, for CPUs without AVX512-BF16.

/// fp32 to bf16, round to nearest even, as VCVTNE2PS2BF16 does: denormal inputs count as zero, NaNs stay quiet NaNs.
static inline uint16_t portable_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7F800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40u);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

static inline float portable_widen(uint16_t value) {
    uint32_t bits = (uint32_t)value << 16;
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

static void portable_pack_a_slice(int transposed, int m, int k, const float *a, int lda, uint16_t *packed,
                                  int total_k, int k_offset, int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    size_t block_stride = keel_bf16_packed_count(KEEL_BF16_BLOCK, total_k);
    packed += (size_t)(k_offset / KEEL_BF16_KSTEP) * STEP;
    for (int mb = block_begin; mb < block_end; mb++)
        for (int s = 0; s < steps; s++)
            for (int r = 0; r < 32; r++) {
                int row = mb * 32 + r;
                uint16_t *out = packed + mb * block_stride + s * STEP + (r / 16) * TILE + (r % 16) * 32;
                for (int kk = 0; kk < 32; kk++) {
                    int p = s * 32 + kk;
                    out[kk] = row < m && p < k
                        ? portable_round(transposed ? a[(size_t)p * lda + row] : a[(size_t)row * lda + p]) : 0;
                }
            }
}

static void portable_pack_b(int transposed, int k, int n, const float *b, int ldb, uint16_t *packed,
                            int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    for (int nb = block_begin; nb < block_end; nb++)
        for (int s = 0; s < steps; s++)
            for (int half = 0; half < 2; half++)
                for (int j = 0; j < 16; j++)
                    for (int c = 0; c < 16; c++)
                        for (int parity = 0; parity < 2; parity++) {
                            int p = s * 32 + 2 * j + parity, column = nb * 32 + half * 16 + c;
                            packed[(size_t)nb * steps * STEP + s * STEP + half * TILE + j * 32 + c * 2 + parity] =
                                p < k && column < n
                                    ? portable_round(transposed ? b[(size_t)column * ldb + p] : b[(size_t)p * ldb + column])
                                    : 0;
                        }
}

/// One 32×32 output block: B's step widened to fp32 once, then each row's pairs of k added as VDPBF16PS adds
/// them (the odd k's product, then the even one's; both products are exact in fp32).
static void portable_block(int row0, int column0, int m, int n, int first_step, int end_step, const uint16_t *a,
                           const uint16_t *b, float alpha, float beta, float *c, int ldc) {
    float sums[32][32], even[16][32], odd[16][32];
    memset(sums, 0, sizeof sums);
    int rows = m - row0 < 32 ? m - row0 : 32, columns = n - column0 < 32 ? n - column0 : 32;
    for (int s = first_step; s < end_step; s++) {
        const uint16_t *as = a + s * STEP, *bs = b + s * STEP;
        for (int half = 0; half < 2; half++)
            for (int j = 0; j < 16; j++)
                for (int col = 0; col < 16; col++) {
                    even[j][half * 16 + col] = portable_widen(bs[half * TILE + j * 32 + col * 2]);
                    odd[j][half * 16 + col] = portable_widen(bs[half * TILE + j * 32 + col * 2 + 1]);
                }
        for (int i = 0; i < rows; i++) {
            const uint16_t *row = as + (i / 16) * TILE + (i % 16) * 32;
            for (int j = 0; j < 16; j++) {
                float a0 = portable_widen(row[2 * j]), a1 = portable_widen(row[2 * j + 1]);
                for (int col = 0; col < 32; col++) {
                    float sum = sums[i][col] + a1 * odd[j][col];
                    sums[i][col] = sum + a0 * even[j][col];
                }
            }
        }
    }
    for (int i = 0; i < rows; i++) {
        float *out = c + (size_t)(row0 + i) * ldc + column0;
        for (int col = 0; col < columns; col++) {
            float scaled = sums[i][col] * alpha;
            out[col] = beta != 0 ? fmaf(out[col], beta, scaled) : scaled;
        }
    }
}

// The AVX2 engine, for CPUs with neither AMX nor AVX512-BF16 nor AVX-512F (AMD Zen 3, Intel before Skylake-SP): the
// portable engine's rounding, layouts and order of sums, eight lanes at a time. A bf16 is the top half of an
// fp32, so widening one is a mask or a shift in a register, and the products run on FMA at fp32's rate.

/// 8 floats (fewer when `count` < 8, zero-filled) rounded to 8 bf16 as `portable_round` rounds each.
AVX2_FMA static inline __m128i avx2_round8(const float *source, int count) {
    __m256i bits;
    if (count >= 8)
        bits = _mm256_loadu_si256((const __m256i *)source);
    else
        bits = _mm256_maskload_epi32((const int *)source, _mm256_cmpgt_epi32(_mm256_set1_epi32(count),
                                                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    __m256i top = _mm256_srli_epi32(bits, 16);
    __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), _mm256_and_si256(top, _mm256_set1_epi32(1)));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
    __m256i quiet = _mm256_or_si256(top, _mm256_set1_epi32(0x40));
    __m256i signed_zero = _mm256_and_si256(top, _mm256_set1_epi32(0x8000));
    __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
    __m256i is_small = _mm256_cmpeq_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
    __m256i words = _mm256_blendv_epi8(_mm256_blendv_epi8(rounded, quiet, is_nan), signed_zero, is_small);
    return _mm_packus_epi32(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1)); // all ≤ 0xFFFF
}

/// Transposes the 8×8 matrix of 16-bit values in `x` (one row each) in place.
AVX2_FMA static inline void avx2_transpose8x16(__m128i x[8]) {
    __m128i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm_unpacklo_epi16(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm_unpackhi_epi16(x[2 * i], x[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) { // u[4i + q]: columns 2q and 2q+1 of rows 4i…4i+3
        u[4 * i] = _mm_unpacklo_epi32(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm_unpackhi_epi32(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm_unpacklo_epi32(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm_unpackhi_epi32(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int q = 0; q < 4; q++) {
        x[2 * q] = _mm_unpacklo_epi64(u[q], u[4 + q]);
        x[2 * q + 1] = _mm_unpackhi_epi64(u[q], u[4 + q]);
    }
}

/// Transposes the 8×8 matrix of 32-bit values in `x` (one row each) in place.
AVX2_FMA static inline void avx2_transpose8x32(__m256i x[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int q = 0; q < 4; q++) {
        x[q] = _mm256_permute2x128_si256(u[q], u[4 + q], 0x20);
        x[4 + q] = _mm256_permute2x128_si256(u[q], u[4 + q], 0x31);
    }
}

AVX2_FMA static void avx2_pack_a_slice(int transposed, int m, int k, const float *a, int lda, uint16_t *packed,
                                       int total_k, int k_offset, int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    size_t block_stride = keel_bf16_packed_count(KEEL_BF16_BLOCK, total_k);
    packed += (size_t)(k_offset / KEEL_BF16_KSTEP) * STEP;
    if (!transposed) {
        for (int mb = block_begin; mb < block_end; mb++)
            for (int r = 0; r < 32; r++) {
                int row = mb * 32 + r;
                for (int s = 0; s < steps; s++) {
                    uint16_t *out = packed + mb * block_stride + s * STEP + (r / 16) * TILE + (r % 16) * 32;
                    for (int q = 0; q < 4; q++) {
                        int p = s * 32 + q * 8;
                        __m128i v = row < m ? avx2_round8(a + (size_t)row * lda + p, k - p) : _mm_setzero_si128();
                        _mm_storeu_si128((__m128i *)(out + q * 8), v);
                    }
                }
            }
        return;
    }
    // A is stored k×m: 8 stored rows (k) × 8 of their columns (rows of op(A)) at a time, rounded, then transposed.
    // K steps outermost, so a step's 32 stored rows are read front to back across all the blocks.
    __m128i x[8];
    for (int s = 0; s < steps; s++)
        for (int mb = block_begin; mb < block_end; mb++)
            for (int r0 = 0; r0 < 32; r0 += 8)
                for (int q = 0; q < 4; q++) {
                    int row0 = mb * 32 + r0, p0 = s * 32 + q * 8;
                    for (int i = 0; i < 8; i++) {
                        if (p0 + i >= k) { x[i] = _mm_setzero_si128(); continue; }
                        const float *source = a + (size_t)(p0 + i) * lda + row0;
                        // 32 stored rows are read side by side, more streams than the hardware prefetcher
                        // follows: ask for each row's line two blocks ahead (1.7× faster on Zen 5: docs/benchmarks.md).
                        if (r0 % 16 == 0) _mm_prefetch((const char *)(source + 64), _MM_HINT_T0);
                        x[i] = avx2_round8(source, m - row0);
                    }
                    avx2_transpose8x16(x);
                    for (int j = 0; j < 8; j++) {
                        int r = r0 + j;
                        _mm_storeu_si128((__m128i *)(packed + mb * block_stride + s * STEP + (r / 16) * TILE + (r % 16) * 32 + q * 8), x[j]);
                    }
                }
}

AVX2_FMA static void avx2_pack_b(int transposed, int k, int n, const float *b, int ldb, uint16_t *packed,
                                 int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    if (!transposed) {
        // Two stored rows (k, k+1) at a time, across every block: rounded 8 columns at a time, then interleaved.
        for (int s = 0; s < steps; s++)
            for (int j = 0; j < 16; j++) {
                int p = s * 32 + 2 * j;
                for (int nb = block_begin; nb < block_end; nb++)
                    for (int c0 = 0; c0 < 32; c0 += 8) {
                        int column0 = nb * 32 + c0;
                        __m128i even = p < k ? avx2_round8(b + (size_t)p * ldb + column0, n - column0) : _mm_setzero_si128();
                        __m128i odd = p + 1 < k ? avx2_round8(b + (size_t)(p + 1) * ldb + column0, n - column0) : _mm_setzero_si128();
                        uint16_t *out = packed + (size_t)nb * steps * STEP + s * STEP + (c0 / 16) * TILE + j * 32 + (c0 % 16) * 2;
                        _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi16(even, odd));
                        _mm_storeu_si128((__m128i *)(out + 8), _mm_unpackhi_epi16(even, odd));
                    }
            }
        return;
    }
    // B is stored n×k: a column's pairs of k are adjacent already; round 8 columns × 8 pairs, then transpose.
    __m256i x[8];
    for (int nb = block_begin; nb < block_end; nb++)
        for (int s = 0; s < steps; s++)
            for (int c0 = 0; c0 < 32; c0 += 8)
                for (int j0 = 0; j0 < 16; j0 += 8) {
                    int p = s * 32 + 2 * j0;
                    for (int i = 0; i < 8; i++) {
                        int column = nb * 32 + c0 + i;
                        const float *source = b + (size_t)column * ldb + p;
                        // 32 columns stream along k side by side: as in avx2_pack_a_slice.
                        if (column < n && j0 == 0) _mm_prefetch((const char *)(source + 64), _MM_HINT_T0);
                        x[i] = column < n ? _mm256_setr_m128i(avx2_round8(source, k - p), avx2_round8(source + 8, k - p - 8))
                                          : _mm256_setzero_si256();
                    }
                    avx2_transpose8x32(x);
                    uint16_t *tile = packed + (size_t)nb * steps * STEP + s * STEP + (c0 / 16) * TILE + (c0 % 16) * 2;
                    for (int j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(tile + (j0 + j) * 32), x[j]);
                }
}

/// c[0..<count] = alpha · sums + beta · c (c not read when beta is 0), as `merge16` computes it.
AVX2_FMA static inline void merge8(float *c, __m256 sums, int count, float alpha, float beta) {
    if (count <= 0) return;
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 result = _mm256_mul_ps(sums, _mm256_set1_ps(alpha));
    if (beta != 0)
        result = _mm256_fmadd_ps(_mm256_maskload_ps(c, mask), _mm256_set1_ps(beta), result);
    _mm256_maskstore_ps(c, mask, result);
}

// K steps the AVX2 blocks widen B for at a time: the widened B (8 KiB) stays in L1.
enum { AVX2_CHUNK = 2, AVX2_PAIRS = AVX2_CHUNK * 16 };

/// `steps` (at most AVX2_CHUNK) K steps of a packed B block's 32 columns widened to fp32 for the AVX2 and AVX-512F
/// blocks: wide_b[pair][0] holds each column's odd k, wide_b[pair][1] its even k (a bf16 is the top half of an fp32).
AVX2_FMA static inline void widen_b(const uint16_t *b, int steps, float (*wide_b)[2][32]) {
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int s = 0; s < steps; s++)
        for (int j = 0; j < 16; j++)
            for (int v = 0; v < 4; v++) {
                __m256i pairs = _mm256_loadu_si256((const __m256i *)(b + s * STEP + (v / 2) * TILE + j * 32 + (v % 2) * 16));
                _mm256_store_si256((__m256i *)&wide_b[s * 16 + j][0][v * 8], _mm256_and_si256(pairs, high));
                _mm256_store_si256((__m256i *)&wide_b[s * 16 + j][1][v * 8], _mm256_slli_epi32(pairs, 16));
            }
}

/// Two pairs of k for 3 rows × 32 columns, by hand (in C, compilers run out of the 16 registers): the 12 sums in
/// registers, enough independent ones to hide FMA's latency although each pair adds twice to each sum (the odd
/// k's product first, as VDPBF16PS adds them). ymm12-14 hold A's three rows: a pair broadcast from the packed
/// bf16, then its odd k kept by a mask or its even k moved up by a shift. ymm15 holds 8 columns of widened B
/// (odd k's 32 columns at bytes 0-127 of a pair, even k's at 128-255).
#define KEEL_AVX2_ROWS(offset, widen) "vpbroadcastd " #offset "(%[a0]), %%ymm12\n\t"                              \
                                      "vpbroadcastd " #offset "(%[a1]), %%ymm13\n\t"                              \
                                      "vpbroadcastd " #offset "(%[a2]), %%ymm14\n\t"                              \
                                      widen(ymm12) widen(ymm13) widen(ymm14)
#define KEEL_AVX2_ODD(register) "vpand %[high], %%" #register ", %%" #register "\n\t"
#define KEEL_AVX2_EVEN(register) "vpslld $16, %%" #register ", %%" #register "\n\t"
#define KEEL_AVX2_COLUMNS(offset, s0, s1, s2) "vmovaps " #offset "(%[b]), %%ymm15\n\t"                           \
                                              "vfmadd231ps %%ymm15, %%ymm12, %[" #s0 "]\n\t"                     \
                                              "vfmadd231ps %%ymm15, %%ymm13, %[" #s1 "]\n\t"                     \
                                              "vfmadd231ps %%ymm15, %%ymm14, %[" #s2 "]\n\t"

/// `count` 32×32 output blocks down one column block (row blocks from row0, their packed A `a_stride` apart):
/// B's bf16 widened to fp32 (a bf16 is the top half of an fp32: a mask or a shift) a chunk of K at a time, once
/// for all the blocks, then multiplied 3 of the blocks' rows at a time with the sums kept in `sums` between
/// chunks (the same floats either way).
AVX2_FMA static void avx2_blocks(int row0, int count, size_t a_stride, int column0, int m, int n, int first_step,
                                 int end_step, const uint16_t *a, const uint16_t *b, float alpha, float beta, float *c,
                                 int ldc) {
    float wide_b[AVX2_PAIRS][2][32] __attribute__((aligned(32)));
    float sums[BAND * 32 + 2][32] __attribute__((aligned(32))); // + 2: the last group of 3 may run past the rows
    static const uint16_t zero_row[32] = {0};                     // the A of rows past the last block
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
    int rows = m - row0 < count * 32 ? m - row0 : count * 32;
    if (first_step >= end_step) memset(sums, 0, sizeof sums); // k = 0: C becomes beta · C
    for (int chunk = first_step; chunk < end_step; chunk += AVX2_CHUNK) {
        int steps = end_step - chunk < AVX2_CHUNK ? end_step - chunk : AVX2_CHUNK;
        widen_b(b + chunk * STEP, steps, wide_b);
        // The blocks' rows one after the other, 3 at a time: only the last group may run past them.
        for (int group = 0; group < rows; group += 3) {
            __m256 t[3][4];
            for (int r = 0; r < 3; r++)
                for (int v = 0; v < 4; v++)
                    t[r][v] = chunk == first_step ? _mm256_setzero_ps() : _mm256_load_ps(sums[group + r] + v * 8);
            for (int s = 0; s < steps; s++) {
                // A step of a packed block is 32 rows of 32 bf16 (its two tiles one after the other).
                const uint16_t *row_pairs[3];
                for (int r = 0; r < 3; r++) {
                    int row = group + r;
                    row_pairs[r] = row < count * 32 ? a + (row / 32) * a_stride + (chunk + s) * STEP + (row % 32) * 32
                                                    : zero_row;
                }
                for (int j = 0; j < 16; j += 2) { // two pairs per statement: less loop overhead
                    __asm__(KEEL_AVX2_ROWS(0, KEEL_AVX2_ODD)
                            KEEL_AVX2_COLUMNS(0, r0v0, r1v0, r2v0) KEEL_AVX2_COLUMNS(32, r0v1, r1v1, r2v1)
                            KEEL_AVX2_COLUMNS(64, r0v2, r1v2, r2v2) KEEL_AVX2_COLUMNS(96, r0v3, r1v3, r2v3)
                            KEEL_AVX2_ROWS(0, KEEL_AVX2_EVEN)
                            KEEL_AVX2_COLUMNS(128, r0v0, r1v0, r2v0) KEEL_AVX2_COLUMNS(160, r0v1, r1v1, r2v1)
                            KEEL_AVX2_COLUMNS(192, r0v2, r1v2, r2v2) KEEL_AVX2_COLUMNS(224, r0v3, r1v3, r2v3)
                            KEEL_AVX2_ROWS(4, KEEL_AVX2_ODD)
                            KEEL_AVX2_COLUMNS(256, r0v0, r1v0, r2v0) KEEL_AVX2_COLUMNS(288, r0v1, r1v1, r2v1)
                            KEEL_AVX2_COLUMNS(320, r0v2, r1v2, r2v2) KEEL_AVX2_COLUMNS(352, r0v3, r1v3, r2v3)
                            KEEL_AVX2_ROWS(4, KEEL_AVX2_EVEN)
                            KEEL_AVX2_COLUMNS(384, r0v0, r1v0, r2v0) KEEL_AVX2_COLUMNS(416, r0v1, r1v1, r2v1)
                            KEEL_AVX2_COLUMNS(448, r0v2, r1v2, r2v2) KEEL_AVX2_COLUMNS(480, r0v3, r1v3, r2v3)
                            : [r0v0] "+x"(t[0][0]), [r0v1] "+x"(t[0][1]), [r0v2] "+x"(t[0][2]), [r0v3] "+x"(t[0][3]),
                              [r1v0] "+x"(t[1][0]), [r1v1] "+x"(t[1][1]), [r1v2] "+x"(t[1][2]), [r1v3] "+x"(t[1][3]),
                              [r2v0] "+x"(t[2][0]), [r2v1] "+x"(t[2][1]), [r2v2] "+x"(t[2][2]), [r2v3] "+x"(t[2][3])
                            : [a0] "r"(row_pairs[0] + j * 2), [a1] "r"(row_pairs[1] + j * 2), [a2] "r"(row_pairs[2] + j * 2),
                              [b] "r"(&wide_b[s * 16 + j][0][0]), [high] "m"(high)
                            : "xmm12", "xmm13", "xmm14", "xmm15", "memory");
                }
            }
            for (int r = 0; r < 3; r++)
                for (int v = 0; v < 4; v++) _mm256_store_ps(sums[group + r] + v * 8, t[r][v]);
        }
    }
    for (int row = 0; row < rows; row++) {
        float *out = c + (size_t)(row0 + row) * ldc + column0;
        for (int v = 0; v < 4; v++) merge8(out + v * 8, _mm256_load_ps(sums[row] + v * 8), n - column0 - v * 8, alpha, beta);
    }
}
#undef KEEL_AVX2_ROWS
#undef KEEL_AVX2_ODD
#undef KEEL_AVX2_EVEN
#undef KEEL_AVX2_COLUMNS

// The AVX-512F engine, for CPUs with 512-bit vectors but neither AMX nor AVX512-BF16 (Intel Skylake-SP to Ice Lake):
// the AVX2 engine's packing, widening and order of sums, sixteen lanes at a time, with 32 registers for the sums.

/// Adds a chunk's `steps` K steps of `R` consecutive rows of a packed block (`rows`: the first's pairs at the chunk's
/// first step) to their sums (`sums`, 32 floats a row), B's pairs widened in `wide_b`: R × 32 sums in 2R zmm registers,
/// each pair of k added odd k first. The rows' pairs are widened first, 16 pairs a row in two instructions, so the
/// pair loop itself has only broadcasts from memory and FMAs (a mask and a shift per row and pair there would take the
/// ports that 512-bit FMAs use on Intel cores). R is a constant where this is inlined, so the loops over it unroll.
__attribute__((always_inline)) AVX512F_FMA static inline void avx512f_rows(const int R, const uint16_t *rows, int steps,
                                                                         int first, const float (*wide_b)[2][32],
                                                                         float (*sums)[32]) {
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    float wide_a[AVX2_CHUNK][12][2][16] __attribute__((aligned(64))); // [step][row][odd, even][pair]
    for (int s = 0; s < steps; s++)
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            __m512i pairs = _mm512_loadu_si512(rows + s * STEP + r * 32);
            _mm512_store_si512(wide_a[s][r][0], _mm512_and_si512(pairs, high));
            _mm512_store_si512(wide_a[s][r][1], _mm512_slli_epi32(pairs, 16));
        }
    __m512 t[12][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 2; v++) t[r][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(sums[r] + v * 16);
    for (int s = 0; s < steps; s++)
        for (int j = 0; j < 16; j++) {
            const float *wide = &wide_b[s * 16 + j][0][0];
            __m512 odd0 = _mm512_load_ps(wide), odd1 = _mm512_load_ps(wide + 16);
            __m512 even0 = _mm512_load_ps(wide + 32), even1 = _mm512_load_ps(wide + 48);
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) {
                __m512 a_odd = _mm512_set1_ps(wide_a[s][r][0][j]), a_even = _mm512_set1_ps(wide_a[s][r][1][j]);
                t[r][0] = _mm512_fmadd_ps(a_even, even0, _mm512_fmadd_ps(a_odd, odd0, t[r][0]));
                t[r][1] = _mm512_fmadd_ps(a_even, even1, _mm512_fmadd_ps(a_odd, odd1, t[r][1]));
            }
        }
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 2; v++) _mm512_store_ps(sums[r] + v * 16, t[r][v]);
}

/// As `avx2_blocks`, in 512-bit registers: `count` 32×32 output blocks down one column block, B widened a chunk of K
/// at a time for all of them, then each block's rows 12, 12 and 8 at a time (24 or 16 of the 32 zmm registers hold
/// sums; a group that starts past the last row is skipped, the rest of a partial group reads the packing's zeros).
AVX512F_FMA static void avx512f_blocks(int row0, int count, size_t a_stride, int column0, int m, int n, int first_step,
                                       int end_step, const uint16_t *a, const uint16_t *b, float alpha, float beta,
                                       float *c, int ldc) {
    float wide_b[AVX2_PAIRS][2][32] __attribute__((aligned(64)));
    float sums[BAND * 32][32] __attribute__((aligned(64)));
    int rows = m - row0 < count * 32 ? m - row0 : count * 32;
    if (first_step >= end_step) memset(sums, 0, sizeof sums); // k = 0: C becomes beta · C
    for (int chunk = first_step; chunk < end_step; chunk += AVX2_CHUNK) {
        int steps = end_step - chunk < AVX2_CHUNK ? end_step - chunk : AVX2_CHUNK;
        widen_b(b + chunk * STEP, steps, wide_b);
        const float (*widened)[2][32] = (const float (*)[2][32])wide_b;
        for (int block = 0; block * 32 < rows; block++) {
            // A step of a packed block is its 32 rows of 32 bf16 one after the other (its two tiles).
            const uint16_t *rows_of = a + block * a_stride + chunk * STEP;
            int first = chunk == first_step, live = rows - block * 32;
            avx512f_rows(12, rows_of, steps, first, widened, sums + block * 32);
            if (live > 12) avx512f_rows(12, rows_of + 12 * 32, steps, first, widened, sums + block * 32 + 12);
            if (live > 24) avx512f_rows(8, rows_of + 24 * 32, steps, first, widened, sums + block * 32 + 24);
        }
    }
    for (int row = 0; row < rows; row++) {
        float *out = c + (size_t)(row0 + row) * ldc + column0;
        for (int v = 0; v < 4; v++) merge8(out + v * 8, _mm256_load_ps(sums[row] + v * 8), n - column0 - v * 8, alpha, beta);
    }
}

/// Rows rounded 8 floats at a time as `avx2_round8` rounds them, each left in the top half of an fp32 (the product
/// of two such values is exact in fp32, as on every engine).
AVX2_FMA static void avx2_round_rows(int rows, int columns, const float *source, int ld, float *out, int ld_out) {
    for (int r = 0; r < rows; r++) {
        const float *in = source + (size_t)r * ld;
        float *to = out + (size_t)r * ld_out;
        for (int c = 0; c < columns; c += 8) {
            __m256i words = _mm256_cvtepu16_epi32(avx2_round8(in + c, columns - c));
            __m256i bits = _mm256_slli_epi32(words, 16);
            if (columns - c >= 8)
                _mm256_storeu_si256((__m256i *)(to + c), bits);
            else
                _mm256_maskstore_epi32((int *)(to + c), _mm256_cmpgt_epi32(_mm256_set1_epi32(columns - c),
                                                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                                       bits);
        }
    }
}

void keel_bf16_round_rows(keel_bf16_engine engine, int rows, int columns, const float *source, int ld, float *out,
                          int ld_out) {
    if (engine != KEEL_BF16_PORTABLE) {
        avx2_round_rows(rows, columns, source, ld, out, ld_out);
        return;
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < columns; c++) out[(size_t)r * ld_out + c] = portable_widen(portable_round(source[(size_t)r * ld + c]));
}

void keel_bf16_pack_a_slice(keel_bf16_engine engine, int transposed, int m, int k, const float *a, int lda,
                            uint16_t *packed, int total_k, int k_offset, int block_begin, int block_end) {
    if (engine == KEEL_BF16_PORTABLE)
        portable_pack_a_slice(transposed, m, k, a, lda, packed, total_k, k_offset, block_begin, block_end);
    else if (engine == KEEL_BF16_AVX2 || engine == KEEL_BF16_AVX512F)
        avx2_pack_a_slice(transposed, m, k, a, lda, packed, total_k, k_offset, block_begin, block_end);
    else
        avx512_pack_a_slice(transposed, m, k, a, lda, packed, total_k, k_offset, block_begin, block_end);
}

void keel_bf16_pack_a(keel_bf16_engine engine, int transposed, int m, int k, const float *a, int lda,
                      uint16_t *packed, int block_begin, int block_end) {
    keel_bf16_pack_a_slice(engine, transposed, m, k, a, lda, packed, k, 0, block_begin, block_end);
}

void keel_bf16_pack_b(keel_bf16_engine engine, int transposed, int k, int n, const float *b, int ldb,
                      uint16_t *packed, int block_begin, int block_end) {
    if (engine == KEEL_BF16_PORTABLE)
        portable_pack_b(transposed, k, n, b, ldb, packed, block_begin, block_end);
    else if (engine == KEEL_BF16_AVX2 || engine == KEEL_BF16_AVX512F)
        avx2_pack_b(transposed, k, n, b, ldb, packed, block_begin, block_end);
    else
        avx512_pack_b(transposed, k, n, b, ldb, packed, block_begin, block_end);
}

/// c[0..<count] = alpha · sums + beta · c (c not read when beta is 0).
AVX512_BF16 static inline void merge16(float *c, __m512 sums, int count, float alpha, float beta) {
    __mmask16 mask = first(count);
    __m512 result = _mm512_mul_ps(sums, _mm512_set1_ps(alpha));
    if (beta != 0)
        result = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, c), _mm512_set1_ps(beta), result);
    _mm512_mask_storeu_ps(c, mask, result);
}

AVX512_BF16 static void avx512_block(int row0, int column0, int m, int n, int first_step, int end_step,
                                     const uint16_t *a, const uint16_t *b, float alpha, float beta, float *c, int ldc) {
    // 8 rows × 32 columns of accumulators at a time: 16 of the 32 zmm registers.
    for (int group = 0; group < 32 && row0 + group < m; group += 8) {
        __m512 sums[8][2];
        for (int i = 0; i < 8; i++) sums[i][0] = sums[i][1] = _mm512_setzero_ps();
        for (int s = first_step; s < end_step; s++) {
            const uint16_t *as = a + s * STEP, *bs = b + s * STEP;
            for (int pair = 0; pair < 16; pair++) {
                __m512bh b0 = (__m512bh)_mm512_loadu_si512(bs + pair * 32);
                __m512bh b1 = (__m512bh)_mm512_loadu_si512(bs + TILE + pair * 32);
                for (int i = 0; i < 8; i++) {
                    int row = group + i;
                    uint32_t word;
                    memcpy(&word, as + (row / 16) * TILE + (row % 16) * 32 + pair * 2, 4);
                    __m512bh av = (__m512bh)_mm512_set1_epi32((int)word);
                    sums[i][0] = _mm512_dpbf16_ps(sums[i][0], av, b0);
                    sums[i][1] = _mm512_dpbf16_ps(sums[i][1], av, b1);
                }
            }
        }
        for (int i = 0; i < 8 && row0 + group + i < m; i++) {
            float *row = c + (size_t)(row0 + group + i) * ldc + column0;
            merge16(row, sums[i][0], n - column0, alpha, beta);
            merge16(row + 16, sums[i][1], n - column0 - 16, alpha, beta);
        }
    }
}

AMX_BF16 static void amx_block(int row0, int column0, int m, int n, int first_step, int end_step, const uint16_t *a,
                               const uint16_t *b, float alpha, float beta, float *c, int ldc) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    float *corner = c + (size_t)row0 * ldc + column0;
    int rows = m - row0 < 32 ? m - row0 : 32, prefetched = 0;
    for (int s = first_step; s < end_step; s++) {
        // Ask for C's lines a few per step, so their misses overlap the products without flooding the fill buffers.
        for (int line = 0; line < 4 && prefetched < 2 * rows; line++, prefetched++)
            __builtin_prefetch(corner + (size_t)(prefetched >> 1) * ldc + (prefetched & 1) * 16, 1, 3);
        _tile_loadd(4, a + s * STEP, 64);
        _tile_loadd(5, a + s * STEP + TILE, 64);
        _tile_loadd(6, b + s * STEP, 64);
        _tile_loadd(7, b + s * STEP + TILE, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    // Through an L1-resident buffer rather than tile stores straight into C: measured 30-40% faster when C
    // is larger than the caches (stores that miss stall the tile unit).
    float sums[32 * 32] __attribute__((aligned(64)));
    _tile_stored(0, sums, 128);
    _tile_stored(1, sums + 16, 128);
    _tile_stored(2, sums + 16 * 32, 128);
    _tile_stored(3, sums + 16 * 32 + 16, 128);
    for (int i = 0; i < rows; i++) {
        float *row = corner + (size_t)i * ldc;
        merge16(row, _mm512_load_ps(sums + i * 32), n - column0, alpha, beta);
        merge16(row + 16, _mm512_load_ps(sums + i * 32 + 16), n - column0 - 16, alpha, beta);
    }
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} tile_config;

AMX_BF16 static void amx_configure(void) {
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    _tile_loadconfig(&config);
}

AMX_BF16 static void amx_release(void) { _tile_release(); }

/// The row and column block of output block `block`: bands of BAND row blocks in order, and within a band,
/// column block major.
static inline void block_position(int block, int row_blocks, int column_blocks, int *mb, int *nb) {
    int band = block / (BAND * column_blocks), first_row = band * BAND;
    int band_rows = row_blocks - first_row < BAND ? row_blocks - first_row : BAND;
    int within = block - band * BAND * column_blocks;
    *nb = within / band_rows;
    *mb = first_row + within % band_rows;
}

void keel_bf16_gemm_blocks(keel_bf16_engine engine, int m, int n, int k, const uint16_t *packed_a,
                           const uint16_t *packed_b, float alpha, float beta, float *c, int ldc,
                           int block_begin, int block_end) {
    int steps = (k + KEEL_BF16_KSTEP - 1) / KEEL_BF16_KSTEP;
    int row_blocks = (m + 31) / 32, column_blocks = (n + 31) / 32;
    if (engine == KEEL_BF16_AMX) amx_configure();
    // Each pass adds its partial sums into C, so every element is still summed over k in one fixed order.
    // There is always a first pass, so that with k = 0 C still becomes beta · C.
    for (int first = 0; first < steps || first == 0; first += PASS_STEPS) {
        int end = first + PASS_STEPS < steps ? first + PASS_STEPS : steps;
        float pass_beta = first == 0 ? beta : 1;
        for (int block = block_begin; block < block_end; block++) {
            int mb, nb;
            block_position(block, row_blocks, column_blocks, &mb, &nb);
            const uint16_t *a = packed_a + (size_t)mb * steps * STEP, *b = packed_b + (size_t)nb * steps * STEP;
            if (engine == KEEL_BF16_AMX)
                amx_block(mb * 32, nb * 32, m, n, first, end, a, b, alpha, pass_beta, c, ldc);
            else if (engine == KEEL_BF16_AVX512)
                avx512_block(mb * 32, nb * 32, m, n, first, end, a, b, alpha, pass_beta, c, ldc);
            else if (engine == KEEL_BF16_AVX2 || engine == KEEL_BF16_AVX512F) {
                // The next blocks down the same column block share its widened B.
                int run = 1, next_mb, next_nb;
                for (; block + run < block_end && run < BAND; run++) {
                    block_position(block + run, row_blocks, column_blocks, &next_mb, &next_nb);
                    if (next_nb != nb || next_mb != mb + run) break;
                }
                if (engine == KEEL_BF16_AVX2)
                    avx2_blocks(mb * 32, run, (size_t)steps * STEP, nb * 32, m, n, first, end, a, b, alpha, pass_beta, c, ldc);
                else
                    avx512f_blocks(mb * 32, run, (size_t)steps * STEP, nb * 32, m, n, first, end, a, b, alpha, pass_beta, c,
                                   ldc);
                block += run - 1;
            }
            else
                portable_block(mb * 32, nb * 32, m, n, first, end, a, b, alpha, pass_beta, c, ldc);
        }
    }
    if (engine == KEEL_BF16_AMX) amx_release();
}

size_t keel_bf16_serial_scratch_count(int m, int n, int k) {
    return keel_bf16_packed_count(m, k) + keel_bf16_packed_count(n, k);
}

void keel_bf16_gemm_serial(keel_bf16_engine engine, int transposed_a, int transposed_b, int m, int n, int k,
                           float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc, uint16_t *scratch) {
    int row_blocks = (m + 31) / 32, column_blocks = (n + 31) / 32;
    uint16_t *packed_b = scratch + keel_bf16_packed_count(m, k);
    keel_bf16_pack_a(engine, transposed_a, m, k, a, lda, scratch, 0, row_blocks);
    keel_bf16_pack_b(engine, transposed_b, k, n, b, ldb, packed_b, 0, column_blocks);
    keel_bf16_gemm_blocks(engine, m, n, k, scratch, packed_b, alpha, beta, c, ldc, 0, row_blocks * column_blocks);
}
