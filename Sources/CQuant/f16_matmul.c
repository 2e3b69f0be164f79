// F16 weights times several activation rows (a prompt) on AVX-512: the F16 dot product's own arithmetic — activations
// rounded to halves, element i's product (exact in fp32: two halves' significands fit) added into lane i mod 32, the
// lanes added in the fixed tree — for a tile of three activation rows and two weight rows at once, so each row's
// result is its `keel_quant_dot` to the bit. A multiply-add of an exact product rounds once, as the reference's add
// does, so fused instructions give the same bits. Per 32 elements, 4 conversions and 6 loads feed 12 multiply-adds
// (four activation rows kept sixteen sums, and clang left one of them in memory, which cost more than the tile
// saved). The weight rows are taken in blocks that stay in L2 while every tile of activation rows (in L1) passes
// over them. On the 75M model of docs/benchmarks.md this reads a prompt about 10% faster than converting blocks to
// fp32 for OpenBLAS's sgemm; llama.cpp is faster still.
#include "keel_quant.h"

#include <immintrin.h>


#define AVX512 __attribute__((target("avx2,f16c,fma,avx512f,evex512")))

/// Bytes of weight rows per block: a quarter of a core's L2 here, so that the block stays there while every tile of
/// activation rows passes.
enum { BLOCK_BYTES = 256 << 10 };

/// Lanes 8…15 (AVX-512F has no single-precision extract of eight).
AVX512 static inline __m256 upper(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/// The reference's tree over 32 lanes held as lanes 0…15 in `low`, 16…31 in `high`: (j + j+8) + (j+16 + j+24) for
/// j < 8, then j + j+4, then (0 + 2) + (1 + 3).
AVX512 static inline float tree(__m512 low, __m512 high) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(low), upper(low));
    const __m256 b = _mm256_add_ps(_mm512_castps512_ps256(high), upper(high));
    const __m256 s = _mm256_add_ps(a, b);
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}

/// R weight rows (n halves each, `ldw` apart) times T activation rows (n floats, `ldx` apart) into
/// out[t · ldo + r]; R ≤ 2 and T ≤ 3 are constants where inlined.
AVX512 static inline __attribute__((always_inline)) void tile(int n, const uint16_t *w, size_t ldw, const float *x,
                                                              size_t ldx, float *out, size_t ldo, const int R,
                                                              const int T) {
    // Sums [t][r][half] in one flat array, every index a constant once the loops are unrolled.
    __m512 acc[12];
#pragma clang loop unroll(full)
    for (int k = 0; k < 12; k++) acc[k] = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 32) {
        __m512 v[4];
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            v[2 * r] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + r * ldw + i)));
            v[2 * r + 1] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + r * ldw + i + 16)));
        }
#pragma clang loop unroll(full)
        for (int t = 0; t < T; t++) {
            const __m512 x0 = _mm512_loadu_ps(x + t * ldx + i), x1 = _mm512_loadu_ps(x + t * ldx + i + 16);
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) {
                acc[4 * t + 2 * r] = _mm512_fmadd_ps(v[2 * r], x0, acc[4 * t + 2 * r]);
                acc[4 * t + 2 * r + 1] = _mm512_fmadd_ps(v[2 * r + 1], x1, acc[4 * t + 2 * r + 1]);
            }
        }
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) out[t * ldo + r] = tree(acc[4 * t + 2 * r], acc[4 * t + 2 * r + 1]);
}

AVX512 static void matmul_avx512(int n, int rows, const uint16_t *w, int count, const float *x, float *out,
                                   size_t out_stride) {
    const int block = BLOCK_BYTES / (2 * n) > 2 ? BLOCK_BYTES / (2 * n) : 2;
    for (int first = 0; first < rows; first += block) {
        const int last = first + block < rows ? first + block : rows;
        int t = 0;
        for (; t + 3 <= count; t += 3) {
            int r = first;
            for (; r + 2 <= last; r += 2)
                tile(n, w + (size_t)r * n, n, x + (size_t)t * n, n, out + (size_t)t * out_stride + r, out_stride, 2, 3);
            if (r < last) tile(n, w + (size_t)r * n, n, x + (size_t)t * n, n, out + (size_t)t * out_stride + r, out_stride, 1, 3);
        }
        for (; t < count; t++) {
            int r = first;
            for (; r + 2 <= last; r += 2)
                tile(n, w + (size_t)r * n, n, x + (size_t)t * n, n, out + (size_t)t * out_stride + r, out_stride, 2, 1);
            if (r < last) tile(n, w + (size_t)r * n, n, x + (size_t)t * n, n, out + (size_t)t * out_stride + r, out_stride, 1, 1);
        }
    }
}

int keel_f16_matmul(keel_qdot_engine engine, int n, int rows, const uint16_t *w, int count, const float *x, float *out,
                    size_t out_stride) {
    // The AVX512-VNNI engine stands for AVX-512 here (every CPU with it has AVX-512F and FMA).
    if (engine != KEEL_QDOT_AVX512_VNNI || !keel_qdot_engine_available(engine)) return 0;
    matmul_avx512(n, rows, w, count, x, out, out_stride);
    return 1;
}
