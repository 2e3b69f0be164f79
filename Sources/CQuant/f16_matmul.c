// F16 weights times several activation rows (a prompt) on AVX-512: the F16 dot product's own arithmetic — activations
// rounded to halves, element i's product (exact in fp32: two halves' significands fit) added into lane i mod 32, the
// lanes added in the fixed tree — for tiles of activation rows and weight rows at once, so each row's result is its
// `keel_quant_dot` to the bit (lanes 0…15 and 16…31 are independent sums, so they may be taken in either order). A
// multiply-add of an exact product rounds once, as the reference's add does, so fused instructions give the same bits.
//
// Two tiles, chosen by row width:
// - Rows of up to 1,024 values: four weight rows by four activation rows, lanes 0…15 over the whole row, then lanes
//   16…31 (both at once would need 32 sums, all the registers) — per 16 elements, 4 conversions and 4 loads feed 16
//   multiply-adds. The tile's rows (4 × 1,024 halves and 4 × 1,024 floats) stay in L1 between the two passes.
// - Wider rows (an MLP's down projection): two weight rows by three activation rows, both lane halves in one pass
//   (twelve sums; per 32 elements 4 conversions and 6 loads feed 12 multiply-adds): the four-by-four tile's rows no
//   longer fit L1 and would be read twice from L2. Cutting such rows in two for it, the sums kept in memory between
//   the pieces, was slower than this tile.
// The weight rows are taken in blocks that stay in L2 while every tile of activation rows passes over them. On rows
// of 768 values the four-by-four tile runs 6–9% faster than the two-by-three one on a Zen 4 core
// (`scripts/bench/f16_matmul_peak.sh`, docs/benchmarks.md).
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

/// Lanes 16h…16h+15 of `R` weight rows times `T` activation rows (R, T ≤ 4, constants where inlined), summed over the
/// row into sums[4t + r].
AVX512 static inline __attribute__((always_inline)) void half_tile(int n, const uint16_t *w, size_t ldw, const float *x,
                                                                   size_t ldx, __m512 *sums, const int h, const int R,
                                                                   const int T) {
    __m512 acc[16];
#pragma clang loop unroll(full)
    for (int k = 0; k < 16; k++) acc[k] = _mm512_setzero_ps();
    for (int i = 16 * h; i < n; i += 32) {
        __m512 v[4];
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) v[r] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + r * ldw + i)));
#pragma clang loop unroll(full)
        for (int t = 0; t < T; t++) {
            const __m512 xt = _mm512_loadu_ps(x + t * ldx + i);
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) acc[4 * t + r] = _mm512_fmadd_ps(v[r], xt, acc[4 * t + r]);
        }
    }
#pragma clang loop unroll(full)
    for (int k = 0; k < 16; k++) sums[k] = acc[k];
}

/// `R` weight rows times `T` activation rows (R, T ≤ 4) into out[t · ldo + r], lanes 0…15 in one pass and 16…31 in
/// the next.
AVX512 static inline __attribute__((always_inline)) void two_pass_tile(int n, const uint16_t *w, size_t ldw,
                                                                       const float *x, size_t ldx, float *out,
                                                                       size_t ldo, const int R, const int T) {
    __m512 low[16], high[16];
    half_tile(n, w, ldw, x, ldx, low, 0, R, T);
    half_tile(n, w, ldw, x, ldx, high, 1, R, T);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) out[t * ldo + r] = tree(low[4 * t + r], high[4 * t + r]);
}

/// `R` weight rows (a constant where inlined) times `count` (1…4) activation rows: each count its own instance of
/// `two_pass_tile`, since its sums stay in registers only when R and T are both known.
AVX512 static inline __attribute__((always_inline)) void two_pass_tiles(int n, const uint16_t *w, const float *x, float *out,
                                                                        size_t ldo, const int R, int count) {
    switch (count) {
    case 4: two_pass_tile(n, w, n, x, n, out, ldo, R, 4); break;
    case 3: two_pass_tile(n, w, n, x, n, out, ldo, R, 3); break;
    case 2: two_pass_tile(n, w, n, x, n, out, ldo, R, 2); break;
    default: two_pass_tile(n, w, n, x, n, out, ldo, R, 1);
    }
}

/// Rows of up to `NARROW` values take the four-by-four two-pass tile.
enum { NARROW = 1024 };

AVX512 static void matmul_avx512(int n, int rows, const uint16_t *w, int count, const float *x, float *out,
                                   size_t out_stride) {
    const int narrow = n <= NARROW, tile_rows = narrow ? 4 : 2, tile_count = narrow ? 4 : 3;
    // Whole tiles of weight rows per block, so only the last block has a partial one.
    const int fitting = BLOCK_BYTES / (2 * n) / tile_rows * tile_rows, block = fitting > tile_rows ? fitting : tile_rows;
    for (int first = 0; first < rows; first += block) {
        const int last = first + block < rows ? first + block : rows;
        for (int t = 0; t < count; t += tile_count) {
            const int activations = count - t < tile_count ? count - t : tile_count;
            const float *xt = x + (size_t)t * n;
            float *ot = out + (size_t)t * out_stride;
            for (int r = first; r < last; r += tile_rows) {
                const int weights = last - r < tile_rows ? last - r : tile_rows;
                const uint16_t *wr = w + (size_t)r * n;
                if (narrow) {
                    // A partial tile of weight rows goes one row at a time.
                    if (weights == 4) two_pass_tiles(n, wr, xt, ot + r, out_stride, 4, activations);
                    else for (int q = 0; q < weights; q++)
                        two_pass_tiles(n, wr + (size_t)q * n, xt, ot + r + q, out_stride, 1, activations);
                } else if (activations == 3) {
                    if (weights == 2) tile(n, wr, n, xt, n, ot + r, out_stride, 2, 3);
                    else tile(n, wr, n, xt, n, ot + r, out_stride, 1, 3);
                } else {
                    for (int a = 0; a < activations; a++) {
                        const float *xa = xt + (size_t)a * n;
                        float *oa = ot + (size_t)a * out_stride + r;
                        if (weights == 2) tile(n, wr, n, xa, n, oa, out_stride, 2, 1);
                        else tile(n, wr, n, xa, n, oa, out_stride, 1, 1);
                    }
                }
            }
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
