// The interleaved kernels on 512-bit registers (the AVX512-VNNI engine): one vpdpbusd takes two 4-byte chunks of
// eight weight rows (64 bytes, chunks c and c + 1 lie side by side in a group). Its other operand must hold
// activation chunk c broadcast to lanes 0…7 and chunk c + 1 to lanes 8…15; building that from two broadcasts and an
// insert cost more than the product saved, so each activation row is first written out broadcast — chunk k as 32
// bytes, 8 bytes of pattern per activation byte — and the products read it as a memory operand. A prompt runs in
// tiles of four activation rows, each expanded once and taken by every group of the thread's range while it sits in
// L2. The integer sums are exact whatever the lanes, and the float steps are each row's reference steps in lanes, so
// the results are the other engines' to the bit.
#include "quant_dot_x86.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_blocks.h"

#define AVX512 __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

/// Group bytes per block of each layout (quant_interleave.c).
enum {
    Q8_0_GROUP = 8 * sizeof(block_q8_0),
    Q4_0_GROUP = 8 * sizeof(block_q4_0),
    Q5_0_GROUP = 8 * sizeof(block_q5_0),
    Q4_K_GROUP = 8 * (4 + 16 + QK_K / 2)
};

/// One activation row as the kernels read it: its quants broadcast (chunk k at pattern + 32k), each block's
/// scale as fp32, and (Q8_0, Q4_0, Q5_0) the correction for unsigned weights, −shift · Σ quants per block.
typedef struct {
    const uint8_t *pattern;
    const float *scales;
    const int32_t *corrections;
    const block_q8_K *q8_K; // Q4_K: the row itself, for its sums of 16
} expanded_row;

/// The eight 32-bit lanes of a 512-bit sum added pairwise: lane r and lane r + 8 (chunks c and c + 1 of row r).
AVX512 INLINE __m256i fold(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

AVX512 INLINE __m512i pattern_at(const expanded_row *row, int chunk) {
    return _mm512_loadu_si512((const void *)(row->pattern + 32 * (size_t)chunk));
}

AVX512 INLINE void q8_0_rows(int first, int last, int resume, const uint8_t *g, const expanded_row *rows, float *out, size_t out_stride,
                             const int T) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m256 acc[4];
    // A later range of blocks goes on from the sums the earlier one left in `out`: the same steps in the same order.
    for (int t = 0; t < T; t++) acc[t] = resume ? _mm256_loadu_ps(out + t * out_stride) : _mm256_setzero_ps();
    g += (size_t)first * Q8_0_GROUP;
    for (int b = first; b < last; b++, g += Q8_0_GROUP) {
        __m512i s[4];
        // The sums start at the correction (lanes 0…7), so that the folded sum is exact.
        for (int t = 0; t < T; t++) s[t] = _mm512_zextsi256_si512(_mm256_set1_epi32(rows[t].corrections[b]));
        for (int c = 0; c < 8; c += 2) {
            // w + 128 as unsigned bytes; the correction takes 128 · Σ a away.
            const __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)(g + 16 + 32 * c)), flip);
            for (int t = 0; t < T; t++) s[t] = _mm512_dpbusd_epi32(s[t], u, pattern_at(&rows[t], 8 * b + c));
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        for (int t = 0; t < T; t++) {
            const __m256 scale = _mm256_mul_ps(dx, _mm256_set1_ps(rows[t].scales[b]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(fold(s[t])), scale));
        }
    }
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

AVX512 INLINE void q4_0_rows(int first, int last, int resume, const uint8_t *g, const expanded_row *rows, float *out, size_t out_stride,
                             const int T) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m256 acc[4];
    // A later range of blocks goes on from the sums the earlier one left in `out`: the same steps in the same order.
    for (int t = 0; t < T; t++) acc[t] = resume ? _mm256_loadu_ps(out + t * out_stride) : _mm256_setzero_ps();
    g += (size_t)first * Q4_0_GROUP;
    for (int b = first; b < last; b++, g += Q4_0_GROUP) {
        __m512i s[4];
        // The sums start at the correction (lanes 0…7): the nibbles are taken unsigned.
        for (int t = 0; t < T; t++) s[t] = _mm512_zextsi256_si512(_mm256_set1_epi32(rows[t].corrections[b]));
        for (int c = 0; c < 4; c += 2) {
            const __m512i q = _mm512_loadu_si512((const void *)(g + 16 + 32 * c));
            const __m512i lo = _mm512_and_si512(q, low), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
            for (int t = 0; t < T; t++) {
                // Low nibbles are values 4c…, high ones 16 + 4c…: activation chunks c and 4 + c.
                s[t] = _mm512_dpbusd_epi32(s[t], lo, pattern_at(&rows[t], 8 * b + c));
                s[t] = _mm512_dpbusd_epi32(s[t], hi, pattern_at(&rows[t], 8 * b + 4 + c));
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        for (int t = 0; t < T; t++) {
            const __m256 scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(fold(s[t])), dx);
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(scaled, _mm256_set1_ps(rows[t].scales[b])));
        }
    }
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

/// Q5_0: Q4_0's nibbles with their fifth bits put in (quant_interleave.c's rearranged bits: chunk c's low values
/// have theirs at bit c of each byte, its high ones at bit 4 + c; chunks c and c + 1 sit in the two halves), taken
/// unsigned; the sums start at −16 · Σ a.
AVX512 INLINE void q5_0_rows(int first, int last, int resume, const uint8_t *g, const expanded_row *rows, float *out, size_t out_stride,
                             const int T) {
    const __m512i low = _mm512_set1_epi8(0x0F), fifth = _mm512_set1_epi8(0x10);
    // Shifts for chunks c (lanes 0…7) and c + 1 (lanes 8…15).
    const __m512i up0 = _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(3), 1);
    const __m512i up1 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(1), 1);
    const __m512i down0 = _mm512_inserti64x4(_mm512_set1_epi32(0), _mm256_set1_epi32(1), 1);
    const __m512i down1 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(3), 1);
    __m256 acc[4];
    // A later range of blocks goes on from the sums the earlier one left in `out`: the same steps in the same order.
    for (int t = 0; t < T; t++) acc[t] = resume ? _mm256_loadu_ps(out + t * out_stride) : _mm256_setzero_ps();
    g += (size_t)first * Q5_0_GROUP;
    for (int b = first; b < last; b++, g += Q5_0_GROUP) {
        const __m256i bits256 = _mm256_loadu_si256((const __m256i *)(g + 16));
        const __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(bits256), bits256, 1);
        __m512i s[4];
        for (int t = 0; t < T; t++) s[t] = _mm512_zextsi256_si512(_mm256_set1_epi32(rows[t].corrections[b]));
        for (int c = 0; c < 4; c += 2) {
            const __m512i q = _mm512_loadu_si512((const void *)(g + 48 + 32 * c));
            const __m512i up = c == 0 ? up0 : up1, down = c == 0 ? down0 : down1;
            const __m512i lo = _mm512_or_si512(_mm512_and_si512(q, low), _mm512_and_si512(_mm512_sllv_epi32(bits, up), fifth));
            const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), low),
                                               _mm512_and_si512(_mm512_srlv_epi32(bits, down), fifth));
            for (int t = 0; t < T; t++) {
                s[t] = _mm512_dpbusd_epi32(s[t], lo, pattern_at(&rows[t], 8 * b + c));
                s[t] = _mm512_dpbusd_epi32(s[t], hi, pattern_at(&rows[t], 8 * b + 4 + c));
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        for (int t = 0; t < T; t++) {
            const __m256 scale = _mm256_mul_ps(dx, _mm256_set1_ps(rows[t].scales[b]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(fold(s[t])), scale));
        }
    }
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

AVX512 INLINE void q4_K_rows(int first, int last, int resume, const uint8_t *g, const expanded_row *rows, float *out,
                             size_t out_stride, const int T) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m256 acc[4];
    // A later range of blocks goes on from the sums the earlier one left in `out`: the same steps in the same order.
    for (int t = 0; t < T; t++) acc[t] = resume ? _mm256_loadu_ps(out + t * out_stride) : _mm256_setzero_ps();
    g += (size_t)first * Q4_K_GROUP;
    for (int i = first; i < last; i++, g += Q4_K_GROUP) {
        const uint8_t *scales = g + 32, *mins = g + 96, *qs = g + 160;
        __m256i isum[4];
        for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        for (int j = 0; j < QK_K / 64; j++) {
            __m512i lo[4], hi[4];
            for (int t = 0; t < T; t++) lo[t] = hi[t] = _mm512_setzero_si512();
            for (int c = 0; c < 8; c += 2) {
                const __m512i q = _mm512_loadu_si512((const void *)(qs + 32 * (8 * j + c)));
                const __m512i ql = _mm512_and_si512(q, low), qh = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
                for (int t = 0; t < T; t++) {
                    // Sub-block 2j: values 64j + 4c…, activation chunk 64i + 16j + c; sub-block 2j + 1: 8 chunks on.
                    lo[t] = _mm512_dpbusd_epi32(lo[t], ql, pattern_at(&rows[t], 64 * i + 16 * j + c));
                    hi[t] = _mm512_dpbusd_epi32(hi[t], qh, pattern_at(&rows[t], 64 * i + 16 * j + 8 + c));
                }
            }
            const __m256i s0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(scales + 16 * j)));
            const __m256i s1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(scales + 16 * j + 8)));
            for (int t = 0; t < T; t++)
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_mullo_epi32(fold(lo[t]), s0),
                                                                     _mm256_mullo_epi32(fold(hi[t]), s1)));
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
        for (int t = 0; t < T; t++) {
            const block_q8_K *y = rows[t].q8_K + i;
            __m256i msum = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++) {
                const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mins + 8 * j)));
                msum = _mm256_add_epi32(msum, _mm256_mullo_epi32(m, _mm256_set1_epi32(y->bsums[2 * j] + y->bsums[2 * j + 1])));
            }
            // keel_q4_K_add's steps in lanes: d = dx·dy, m = dmin·dy; sumf += d·isum; sumf −= m·msum.
            const __m256 dy = _mm256_set1_ps(y->d);
            const __m256 d = _mm256_mul_ps(dx, dy), m = _mm256_mul_ps(dmin, dy);
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])));
            acc[t] = _mm256_sub_ps(acc[t], _mm256_mul_ps(m, _mm256_cvtepi32_ps(msum)));
        }
    }
    for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

/// `groups` groups times T activation rows over blocks first..<last (super-blocks for Q4_K), going on from the sums
/// in `out` when `resume`; T a constant where inlined.
AVX512 INLINE void groups_rows(keel_quant_type type, int first, int last, int resume, int groups, const uint8_t *g,
                               size_t group_bytes, const expanded_row *rows, float *out, size_t out_stride, const int T) {
    for (int k = 0; k < groups; k++, g += group_bytes, out += 8) {
        switch (type) {
        case KEEL_QUANT_Q8_0: q8_0_rows(first, last, resume, g, rows, out, out_stride, T); break;
        case KEEL_QUANT_Q4_0: q4_0_rows(first, last, resume, g, rows, out, out_stride, T); break;
        case KEEL_QUANT_Q5_0: q5_0_rows(first, last, resume, g, rows, out, out_stride, T); break;
        case KEEL_QUANT_Q4_K: q4_K_rows(first, last, resume, g, rows, out, out_stride, T); break;
        default: break;
        }
    }
}

/// Writes activation row `a` (Q8_0 or Q8_K blocks of n values) out broadcast into `pattern` (8n bytes), with its
/// blocks' scales and corrections.
AVX512 static void expand(keel_quant_type type, int n, const void *a, uint8_t *pattern, float *scales,
                          int32_t *corrections) {
    if (type == KEEL_QUANT_Q4_K) {
        const block_q8_K *y = a;
        for (int i = 0; i < n / QK_K; i++) {
            scales[i] = y[i].d;
            for (int k = 0; k < QK_K / 4; k++) {
                int32_t chunk;
                memcpy(&chunk, y[i].qs + 4 * k, 4);
                _mm256_storeu_si256((__m256i *)(pattern + 32 * ((size_t)i * (QK_K / 4) + k)), _mm256_set1_epi32(chunk));
            }
        }
        return;
    }
    // Q8_0 weights are taken as w + 128, Q4_0's nibbles and Q5_0's five bits as they are (q, not q − 8 or q − 16):
    // the sums start at −128, −8 or −16 · Σ a.
    const int shift = type == KEEL_QUANT_Q8_0 ? -128 : type == KEEL_QUANT_Q4_0 ? -8 : -16;
    const block_q8_0 *y = a;
    for (int b = 0; b < n / QK8_0; b++) {
        scales[b] = _cvtsh_ss(y[b].d);
        corrections[b] = shift * keel_q8_0_sum(&y[b]);
        for (int k = 0; k < QK8_0 / 4; k++) {
            int32_t chunk;
            memcpy(&chunk, y[b].qs + 4 * k, 4);
            _mm256_storeu_si256((__m256i *)(pattern + 32 * ((size_t)b * 8 + k)), _mm256_set1_epi32(chunk));
        }
    }
}

AVX512 void keel_quant_groups_avx512(keel_quant_type type, int n, int groups, const void *weights, size_t group_bytes,
                              int count, const void *activations, size_t activation_row_bytes, float *out,
                              size_t out_stride) {
    const int blocks = n / keel_quant_block_values(type);
    // Blocks per range: four rows' broadcast activations within 24 KiB (768 values a row).
    const int range = 768 / keel_quant_block_values(type) > 1 ? 768 / keel_quant_block_values(type) : 1;
    const size_t pattern_bytes = 8 * (size_t)n;
    // Tiles of four activation rows (eight ran slower), then single rows.
    uint8_t *pattern = keel_scratch(aligned_alloc(64, 4 * pattern_bytes), 4 * pattern_bytes);
    float *scales = keel_scratch(malloc(sizeof(float) * 4 * (size_t)blocks), sizeof(float) * 4 * (size_t)blocks);
    int32_t *corrections = keel_scratch(malloc(sizeof(int32_t) * 4 * (size_t)blocks), sizeof(int32_t) * 4 * (size_t)blocks);
    expanded_row rows[4];
    for (int t = 0; t < count;) {
        const int take = count - t >= 4 ? 4 : 1;
        for (int k = 0; k < take; k++) {
            const char *a = (const char *)activations + (size_t)(t + k) * activation_row_bytes;
            expand(type, n, a, pattern + k * pattern_bytes, scales + k * blocks, corrections + k * blocks);
            rows[k] = (expanded_row){pattern + k * pattern_bytes, scales + k * blocks, corrections + k * blocks,
                                     (const block_q8_K *)a};
        }
        float *target = out + t * out_stride;
        // A tile's blocks in ranges whose broadcast activations (32 bytes per 4 values, for each of its rows) stay
        // in L1 while every group takes them: four rows of 2,048 values would otherwise be read from L2 for each
        // group. One row (a generation step) fits L1 whole, and its weights stream from memory best in one pass.
        const int step = take == 4 ? range : blocks;
        for (int first = 0; first < blocks; first += step) {
            const int last = first + step < blocks ? first + step : blocks;
            if (take == 4) groups_rows(type, first, last, first > 0, groups, weights, group_bytes, rows, target, out_stride, 4);
            else groups_rows(type, first, last, first > 0, groups, weights, group_bytes, rows, target, out_stride, 1);
        }
        t += take;
    }
    free(pattern);
    free(scales);
    free(corrections);
}
