// Dot products on x86 SIMD: AVX2 (maddubs + madd), AVX-VNNI and AVX512-VNNI (dpbusd on 256-bit registers). Each
// computes every block's integer sum exactly — unsigned 8-bit × signed 8-bit products summed in 32 bits (a signed
// weight's sign moved onto the activation first) — and then the reference's float steps, block by block in its
// order, so the result is the reference's to the bit. Each function names its instruction set, so the library
// loads on any x86-64 and keel_qdot_best_engine picks at run time.
#include "quant_dot_x86.h"

#include <immintrin.h>
#include <string.h>

#include "quant_blocks.h"

#define AVX2 __attribute__((target("avx2,f16c")))
#define AVX_VNNI __attribute__((target("avx2,f16c,avxvnni")))
#define AVX512_VNNI __attribute__((target("avx2,f16c,avx512f,avx512vl,avx512vnni")))

/// An fp16 scale as fp32, by the F16C instruction (exact, as the reference's conversion is; the software one cost
/// more than a block's products).
#define HALF(bits) _cvtsh_ss(bits)

/// The eight lane totals of v[0…7], as one vector (block b's sum in lane b).
AVX2 static inline __m256i totals8(const __m256i v[8]) {
    __m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

AVX2 static inline int32_t total(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/// Eight fp16 values as fp32 (F16C: exact). Built in a register: eight narrow stores read back as one wide load
/// would stall on store forwarding.
AVX2 static inline __m256 halves8(const uint16_t bits[8]) {
    return _mm256_cvtph_ps(_mm_setr_epi16((short)bits[0], (short)bits[1], (short)bits[2], (short)bits[3], (short)bits[4],
                                          (short)bits[5], (short)bits[6], (short)bits[7]));
}

/// 32 nibbles from 16 bytes: the low nibbles first, then the high ones (the order of a Q4_0 or Q4_1 block's values).
AVX2 static inline __m256i nibbles32(const uint8_t *bytes) {
    __m128i packed = _mm_loadu_si128((const __m128i *)bytes);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/// A Q5_0 block's 32 values unsigned (0…31): its nibbles (low ones first, as `nibbles32`) with bit j of `qh` as
/// value j's fifth bit, each bit spread to a byte by comparing against a mask with every other bit set (ggml's
/// bytes_from_bits_32).
AVX2 static inline __m256i fives32(const block_q5_0 *block) {
    uint32_t bits;
    memcpy(&bits, block->qh, sizeof(bits));
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0x0000000000000000));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                                          _mm256_set1_epi64x(-1));
    return _mm256_or_si256(nibbles32(block->qs), _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

/// F16 · F16 as the reference adds it: four eight-lane accumulators (lane i mod 32), products exact, no contraction.
AVX2 static float dot_f16_avx2(int n, const uint16_t *x, const uint16_t *y) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int i = 0; i < n; i += 32) {
        for (int k = 0; k < 4; k++) {
            const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8 * k)));
            const __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + 8 * k)));
            acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(a, b));
        }
    }
    const __m256 s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}

// The kernels, once per engine: DOT(u, s) is the eight 32-bit sums of four products each of unsigned bytes u and
// signed bytes s.
#define KERNELS(NAME, TARGET, DOT)                                                                                  \
    TARGET static inline __m256i signed_dot_##NAME(__m256i x, __m256i y) {                                          \
        return DOT(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));                                                 \
    }                                                                                                               \
                                                                                                                    \
    TARGET static float dot_q8_0_##NAME(int n, const block_q8_0 *x, const block_q8_0 *y) {                          \
        const int nb = n / QK8_0;                                                                                   \
        float sumf = 0;                                                                                             \
        int ib = 0;                                                                                                 \
        for (; ib + 8 <= nb; ib += 8) {                                                                             \
            __m256i v[8];                                                                                           \
            for (int b = 0; b < 8; b++) {                                                                           \
                v[b] = signed_dot_##NAME(_mm256_loadu_si256((const __m256i *)x[ib + b].qs),                         \
                                         _mm256_loadu_si256((const __m256i *)y[ib + b].qs));                        \
            }                                                                                                       \
            int32_t sums[8];                                                                                        \
            _mm256_storeu_si256((__m256i *)sums, totals8(v));                                                       \
            for (int b = 0; b < 8; b++)                                                                             \
                sumf += sums[b] * (HALF(x[ib + b].d) * HALF(y[ib + b].d));               \
        }                                                                                                           \
        for (; ib < nb; ib++) {                                                                                     \
            int32_t sumi = total(signed_dot_##NAME(_mm256_loadu_si256((const __m256i *)x[ib].qs),                  \
                                                   _mm256_loadu_si256((const __m256i *)y[ib].qs)));                 \
            sumf += sumi * (HALF(x[ib].d) * HALF(y[ib].d));                               \
        }                                                                                                           \
        return sumf;                                                                                                \
    }                                                                                                               \
                                                                                                                    \
    /* Eight blocks' integer sums Σ (u − offset)·a, u[b] block b's weights taken unsigned (Q4_0's nibbles, offset */\
    /* 8; Q5_0's five bits, 16), computed as Σ u·a − Σ offset·a: the same integers. Block b's sum to sums[b].      */\
    TARGET static inline void offset_sums8_##NAME(const __m256i u[8], const block_q8_0 *y, __m256i offset,          \
                                                  int32_t sums[8]) {                                                \
        __m256i v[8];                                                                                               \
        for (int b = 0; b < 8; b++) {                                                                               \
            const __m256i a = _mm256_loadu_si256((const __m256i *)y[b].qs);                                         \
            v[b] = _mm256_sub_epi32(DOT(u[b], a), DOT(offset, a));                                                  \
        }                                                                                                           \
        _mm256_storeu_si256((__m256i *)sums, totals8(v));                                                           \
    }                                                                                                               \
                                                                                                                    \
    TARGET static float dot_q4_0_##NAME(int n, const block_q4_0 *x, const block_q8_0 *y) {                          \
        const int nb = n / QK8_0;                                                                                   \
        const __m256i eight = _mm256_set1_epi8(8);                                                                  \
        float sumf = 0;                                                                                             \
        int ib = 0;                                                                                                 \
        for (; ib + 8 <= nb; ib += 8) {                                                                             \
            __m256i u[8];                                                                                           \
            int32_t sums[8];                                                                                        \
            for (int b = 0; b < 8; b++) u[b] = nibbles32(x[ib + b].qs);                                             \
            offset_sums8_##NAME(u, y + ib, eight, sums);                                                            \
            for (int b = 0; b < 8; b++) sumf += sums[b] * HALF(x[ib + b].d) * HALF(y[ib + b].d);                    \
        }                                                                                                           \
        for (; ib < nb; ib++) {                                                                                     \
            int32_t sumi = total(signed_dot_##NAME(_mm256_sub_epi8(nibbles32(x[ib].qs), eight),                     \
                                                   _mm256_loadu_si256((const __m256i *)y[ib].qs)));                 \
            sumf += sumi * HALF(x[ib].d) * HALF(y[ib].d);                                                           \
        }                                                                                                           \
        return sumf;                                                                                                \
    }                                                                                                               \
                                                                                                                    \
    TARGET static float dot_q5_0_##NAME(int n, const block_q5_0 *x, const block_q8_0 *y) {                          \
        const int nb = n / QK8_0;                                                                                   \
        const __m256i sixteen = _mm256_set1_epi8(16);                                                               \
        float sumf = 0;                                                                                             \
        int ib = 0;                                                                                                 \
        for (; ib + 8 <= nb; ib += 8) {                                                                             \
            __m256i u[8];                                                                                           \
            int32_t sums[8];                                                                                        \
            for (int b = 0; b < 8; b++) u[b] = fives32(&x[ib + b]);                                                 \
            offset_sums8_##NAME(u, y + ib, sixteen, sums);                                                          \
            for (int b = 0; b < 8; b++) sumf += sums[b] * (HALF(x[ib + b].d) * HALF(y[ib + b].d));                  \
        }                                                                                                           \
        for (; ib < nb; ib++) {                                                                                     \
            int32_t sumi = total(signed_dot_##NAME(_mm256_sub_epi8(fives32(&x[ib]), sixteen),                       \
                                                   _mm256_loadu_si256((const __m256i *)y[ib].qs)));                 \
            sumf += sumi * (HALF(x[ib].d) * HALF(y[ib].d));                                                         \
        }                                                                                                           \
        return sumf;                                                                                                \
    }                                                                                                               \
                                                                                                                    \
    TARGET static float dot_q4_1_##NAME(int n, const block_q4_1 *x, const block_q8_1 *y) {                          \
        const int nb = n / QK8_1;                                                                                   \
        float sumf = 0;                                                                                             \
        int ib = 0;                                                                                                 \
        for (; ib + 8 <= nb; ib += 8) {                                                                             \
            __m256i v[8];                                                                                           \
            for (int b = 0; b < 8; b++)                                                                             \
                v[b] = DOT(nibbles32(x[ib + b].qs), _mm256_loadu_si256((const __m256i *)y[ib + b].qs));             \
            int32_t sums[8];                                                                                        \
            _mm256_storeu_si256((__m256i *)sums, totals8(v));                                                       \
            for (int b = 0; b < 8; b++)                                                                             \
                sumf += (HALF(x[ib + b].d) * HALF(y[ib + b].d)) * sums[b]                \
                      + HALF(x[ib + b].m) * HALF(y[ib + b].s);                            \
        }                                                                                                           \
        for (; ib < nb; ib++) {                                                                                     \
            int32_t sumi = total(DOT(nibbles32(x[ib].qs), _mm256_loadu_si256((const __m256i *)y[ib].qs)));         \
            sumf += (HALF(x[ib].d) * HALF(y[ib].d)) * sumi                                \
                  + HALF(x[ib].m) * HALF(y[ib].s);                                        \
        }                                                                                                           \
        return sumf;                                                                                                \
    }                                                                                                               \
                                                                                                                    \
    /* Per super-block: the eight sub-blocks' byte products as eight lane sums, reduced at once and scaled by  */ \
    /* their 6-bit scales in one vector multiply; the mins against the activation's sums of 16 in one madd;      */ \
    /* then the reference's float steps.                                                                         */ \
    TARGET static float dot_q4_K_##NAME(int n, const block_q4_K *x, const block_q8_K *y) {                          \
        const __m256i low_nibbles = _mm256_set1_epi8(0x0F);                                                         \
        float sumf = 0;                                                                                             \
        for (int i = 0; i < n / QK_K; i++) {                                                                        \
            uint8_t scales[8], mins[8];                                                                             \
            keel_q4_K_scales_mins(x[i].scales, scales, mins);                                                       \
            __m256i v[8];                                                                                           \
            for (int j = 0; j < QK_K / 64; j++) {                                                                   \
                __m256i q4 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));                              \
                v[2 * j] = DOT(_mm256_and_si256(q4, low_nibbles),                                                   \
                               _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * j)));                            \
                v[2 * j + 1] = DOT(_mm256_and_si256(_mm256_srli_epi16(q4, 4), low_nibbles),                         \
                                   _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * j + 32)));                   \
            }                                                                                                       \
            const __m256i scale = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scales));                  \
            const int32_t isum = total(_mm256_mullo_epi32(totals8(v), scale));                                     \
            /* Σ bsums[j] · mins[j / 2]: each min against two sums of 16. */                                        \
            const __m128i m8 = _mm_loadl_epi64((const __m128i *)mins);                                             \
            const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));                                   \
            const int32_t msum = total(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), m16));   \
            sumf = keel_q4_K_add(sumf, HALF(x[i].d), HALF(x[i].dmin), y[i].d, isum, msum);                         \
        }                                                                                                           \
        return sumf;                                                                                                \
    }                                                                                                               \
                                                                                                                    \
    /* Eight activation rows against one weight row: lane t of the float vectors is row t's running sum, which */ \
    /* takes the reference's float steps block by block (no contraction), so each lane is row t's single dot    */ \
    /* product to the bit; the weight block is unpacked and its scales converted once for the eight rows.       */ \
    /* Signed weight bytes w (block ib of a row) against block ib of eight activation rows: the eight integer */    \
    /* sums, row t in lane t, and the rows' scales as fp32 in `dy`.                                           */    \
    TARGET static inline __m256i sums8_##NAME(__m256i w, const char *a, size_t stride, int ib, __m256 *dy) {        \
        __m256i v[8];                                                                                               \
        uint16_t d[8];                                                                                              \
        for (int t = 0; t < 8; t++) {                                                                               \
            const block_q8_0 *y = (const block_q8_0 *)(a + t * stride) + ib;                                        \
            v[t] = signed_dot_##NAME(w, _mm256_loadu_si256((const __m256i *)y->qs));                                \
            d[t] = y->d;                                                                                            \
        }                                                                                                           \
        *dy = halves8(d);                                                                                           \
        return totals8(v);                                                                                          \
    }                                                                                                               \
                                                                                                                    \
    TARGET static void dot8_q8_0_##NAME(int n, const block_q8_0 *x, const char *a, size_t stride, float out[8]) {   \
        __m256 acc = _mm256_setzero_ps(), dy;                                                                       \
        for (int ib = 0; ib < n / QK8_0; ib++) {                                                                    \
            const __m256i sums = sums8_##NAME(_mm256_loadu_si256((const __m256i *)x[ib].qs), a, stride, ib, &dy);   \
            const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(HALF(x[ib].d)), dy);                                  \
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sums), scale));                               \
        }                                                                                                           \
        _mm256_storeu_ps(out, acc);                                                                                 \
    }                                                                                                               \
                                                                                                                    \
    TARGET static void dot8_q4_0_##NAME(int n, const block_q4_0 *x, const char *a, size_t stride, float out[8]) {   \
        const __m256i eight = _mm256_set1_epi8(8);                                                                  \
        __m256 acc = _mm256_setzero_ps(), dy;                                                                       \
        for (int ib = 0; ib < n / QK8_0; ib++) {                                                                    \
            const __m256i sums = sums8_##NAME(_mm256_sub_epi8(nibbles32(x[ib].qs), eight), a, stride, ib, &dy);     \
            const __m256 scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(HALF(x[ib].d)));           \
            acc = _mm256_add_ps(acc, _mm256_mul_ps(scaled, dy));                                                    \
        }                                                                                                           \
        _mm256_storeu_ps(out, acc);                                                                                 \
    }                                                                                                               \
                                                                                                                    \
    TARGET static void dot8_q5_0_##NAME(int n, const block_q5_0 *x, const char *a, size_t stride, float out[8]) {   \
        const __m256i sixteen = _mm256_set1_epi8(16);                                                               \
        __m256 acc = _mm256_setzero_ps(), dy;                                                                       \
        for (int ib = 0; ib < n / QK8_0; ib++) {                                                                    \
            const __m256i sums = sums8_##NAME(_mm256_sub_epi8(fives32(&x[ib]), sixteen), a, stride, ib, &dy);       \
            const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(HALF(x[ib].d)), dy);                                  \
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sums), scale));                               \
        }                                                                                                           \
        _mm256_storeu_ps(out, acc);                                                                                 \
    }                                                                                                               \
                                                                                                                    \
    TARGET static void dot8_q4_1_##NAME(int n, const block_q4_1 *x, const char *a, size_t stride, float out[8]) {   \
        __m256 acc = _mm256_setzero_ps();                                                                           \
        for (int ib = 0; ib < n / QK8_1; ib++) {                                                                    \
            const __m256i w = nibbles32(x[ib].qs);                                                                  \
            __m256i v[8];                                                                                           \
            uint16_t dy[8], sy[8];                                                                                  \
            for (int t = 0; t < 8; t++) {                                                                           \
                const block_q8_1 *y = (const block_q8_1 *)(a + t * stride) + ib;                                  \
                v[t] = DOT(w, _mm256_loadu_si256((const __m256i *)y->qs));                                         \
                dy[t] = y->d;                                                                                       \
                sy[t] = y->s;                                                                                       \
            }                                                                                                       \
            const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(HALF(x[ib].d)), halves8(dy));                         \
            const __m256 minimum = _mm256_mul_ps(_mm256_set1_ps(HALF(x[ib].m)), halves8(sy));                       \
            acc = _mm256_add_ps(acc, _mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(totals8(v))), minimum)); \
        }                                                                                                           \
        _mm256_storeu_ps(out, acc);                                                                                 \
    }                                                                                                               \
                                                                                                                    \
    static int dot8_##NAME(keel_quant_type type, int n, const void *w, const char *a, size_t stride, float out[8]) { \
        switch (type) {                                                                                             \
        case KEEL_QUANT_Q8_0: dot8_q8_0_##NAME(n, w, a, stride, out); return 1;                                     \
        case KEEL_QUANT_Q4_0: dot8_q4_0_##NAME(n, w, a, stride, out); return 1;                                     \
        case KEEL_QUANT_Q4_1: dot8_q4_1_##NAME(n, w, a, stride, out); return 1;                                     \
        case KEEL_QUANT_Q5_0: dot8_q5_0_##NAME(n, w, a, stride, out); return 1;                                     \
        default: return 0;                                                                                          \
        }                                                                                                           \
    }                                                                                                               \
                                                                                                                    \
    static float dot_##NAME(keel_quant_type type, int n, const void *w, const void *a) {                            \
        switch (type) {                                                                                             \
        case KEEL_QUANT_F16: return dot_f16_avx2(n, w, a);                                                          \
        case KEEL_QUANT_Q8_0: return dot_q8_0_##NAME(n, w, a);                                                      \
        case KEEL_QUANT_Q4_0: return dot_q4_0_##NAME(n, w, a);                                                      \
        case KEEL_QUANT_Q4_1: return dot_q4_1_##NAME(n, w, a);                                                      \
        case KEEL_QUANT_Q5_0: return dot_q5_0_##NAME(n, w, a);                                                      \
        case KEEL_QUANT_Q4_K: return dot_q4_K_##NAME(n, w, a);                                                      \
        default: return 0;                                                                                          \
        }                                                                                                           \
    }

AVX2 static inline __m256i bytes_maddubs(__m256i u, __m256i s) {
    // Pairs of products fit 16 bits: |u| ≤ 127 and |s| ≤ 127 (quantized activations never reach −128).
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
AVX_VNNI static inline __m256i bytes_avx_vnni(__m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}
AVX512_VNNI static inline __m256i bytes_avx512_vnni(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

KERNELS(avx2, AVX2, bytes_maddubs)
KERNELS(avx_vnni, AVX_VNNI, bytes_avx_vnni)
KERNELS(avx512_vnni, AVX512_VNNI, bytes_avx512_vnni)

/// Four bytes as one 32-bit lane value (for broadcasting an activation chunk to eight rows' lanes).
static inline int32_t chunk4(const int8_t *bytes) {
    int32_t value;
    memcpy(&value, bytes, 4);
    return value;
}

// The interleaved kernels (quant_interleave.c lays the groups out), once per engine: lane r of every vector is
// weight row r. ACC(acc, u, s) adds to acc the eight 32-bit sums of four products each of unsigned bytes u and
// signed bytes s; an activation chunk of four bytes is broadcast to the eight lanes, so one vector instruction
// takes eight rows' chunks and no row needs a horizontal sum. The float steps are each row's reference steps,
// in lanes. Each kernel takes T activation rows (`stride` bytes apart; results `out_stride` floats apart) against
// the group at once — T = 4 for a prompt, so that each weight chunk is loaded and unpacked once for four rows and
// four independent sums hide the instructions' latency; T = 1 for a generation step. T is a constant where the
// kernels are inlined, so each T compiles to its own loop.
#define GROUP_KERNELS(NAME, TARGET, ACC)                                                                            \
    TARGET static inline __attribute__((always_inline)) void group_q8_0_##NAME(                                    \
        int n, const uint8_t *g, const char *a, size_t stride, float *out, size_t out_stride, const int T) {        \
        __m256 acc[4];                                                                                              \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                                   \
        for (int b = 0; b < n / QK8_0; b++, g += 8 * sizeof(block_q8_0)) {                                         \
            __m256i s[4];                                                                                           \
            for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();                                              \
            for (int c = 0; c < 8; c++) {                                                                           \
                /* Signed weights: their signs moved onto the activations, as in signed_dot. */                      \
                const __m256i w = _mm256_loadu_si256((const __m256i *)(g + 16 + 32 * c));                          \
                const __m256i u = _mm256_sign_epi8(w, w);                                                           \
                for (int t = 0; t < T; t++) {                                                                       \
                    const block_q8_0 *y = (const block_q8_0 *)(a + t * stride) + b;                                \
                    s[t] = ACC(s[t], u, _mm256_sign_epi8(_mm256_set1_epi32(chunk4(y->qs + 4 * c)), w));            \
                }                                                                                                   \
            }                                                                                                       \
            const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));                                \
            for (int t = 0; t < T; t++) {                                                                           \
                const block_q8_0 *y = (const block_q8_0 *)(a + t * stride) + b;                                    \
                const __m256 scale = _mm256_mul_ps(dx, _mm256_set1_ps(HALF(y->d)));                                 \
                acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(s[t]), scale));                     \
            }                                                                                                       \
        }                                                                                                           \
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);                                 \
    }                                                                                                               \
                                                                                                                    \
    /* Q4_0 (FIVE = 0) and Q5_0 (FIVE = 1): the nibbles, with Q5_0's fifth bits put in (the group's rearranged */   \
    /* bits: chunk c's low values have theirs at bit c of each byte, its high ones at bit 4 + c), taken unsigned; */\
    /* `sums` holds 8 or 16 · Σ a to take away. Then each format's reference float steps.                      */   \
    TARGET static inline __attribute__((always_inline)) void group_offset_##NAME(                                   \
        int n, const uint8_t *g, const char *a, size_t stride, const int32_t *sums, float *out, size_t out_stride,  \
        const int T, const int FIVE) {                                                                              \
        const __m256i low = _mm256_set1_epi8(0x0F), fifth = _mm256_set1_epi8(0x10);                                 \
        const int blocks = n / QK8_0, quants = FIVE ? 48 : 16;                                                      \
        const size_t group_block = FIVE ? 8 * sizeof(block_q5_0) : 8 * sizeof(block_q4_0);                          \
        __m256 acc[4];                                                                                              \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                                   \
        for (int b = 0; b < blocks; b++, g += group_block) {                                                        \
            const __m256i bits = FIVE ? _mm256_loadu_si256((const __m256i *)(g + 16)) : _mm256_setzero_si256();     \
            __m256i s[4];                                                                                           \
            for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();                                              \
            for (int c = 0; c < 4; c++) {                                                                           \
                const __m256i q = _mm256_loadu_si256((const __m256i *)(g + quants + 32 * c));                       \
                __m256i lo = _mm256_and_si256(q, low), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);         \
                if (FIVE) {                                                                                         \
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi32(bits, 4 - c), fifth));              \
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srli_epi32(bits, c), fifth));                  \
                }                                                                                                   \
                for (int t = 0; t < T; t++) {                                                                       \
                    const block_q8_0 *y = (const block_q8_0 *)(a + t * stride) + b;                                 \
                    s[t] = ACC(s[t], lo, _mm256_set1_epi32(chunk4(y->qs + 4 * c)));                                 \
                    s[t] = ACC(s[t], hi, _mm256_set1_epi32(chunk4(y->qs + 16 + 4 * c)));                            \
                }                                                                                                   \
            }                                                                                                       \
            const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));                                 \
            for (int t = 0; t < T; t++) {                                                                           \
                const block_q8_0 *y = (const block_q8_0 *)(a + t * stride) + b;                                     \
                const __m256 exact = _mm256_cvtepi32_ps(_mm256_sub_epi32(s[t], _mm256_set1_epi32(sums[t * blocks + b])));\
                const __m256 dy = _mm256_set1_ps(HALF(y->d));                                                       \
                /* Q4_0: (sumi · dx) · dy; Q5_0: sumi · (dx · dy), as ggml's generic code. */                       \
                const __m256 product = FIVE ? _mm256_mul_ps(exact, _mm256_mul_ps(dx, dy))                           \
                                            : _mm256_mul_ps(_mm256_mul_ps(exact, dx), dy);                          \
                acc[t] = _mm256_add_ps(acc[t], product);                                                            \
            }                                                                                                       \
        }                                                                                                           \
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);                                 \
    }                                                                                                               \
                                                                                                                    \
    TARGET static inline __attribute__((always_inline)) void group_q4_K_##NAME(                                    \
        int n, const uint8_t *g, const char *a, size_t stride, float *out, size_t out_stride, const int T) {        \
        const __m256i low = _mm256_set1_epi8(0x0F);                                                                 \
        __m256 acc[4];                                                                                              \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                                   \
        for (int i = 0; i < n / QK_K; i++, g += 8 * (4 + 16 + QK_K / 2)) {                                         \
            const uint8_t *scales = g + 32, *mins = g + 96, *qs = g + 160;                                          \
            __m256i isum[4];                                                                                        \
            for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();                                           \
            for (int j = 0; j < QK_K / 64; j++) {                                                                   \
                __m256i lo[4], hi[4];                                                                               \
                for (int t = 0; t < T; t++) lo[t] = hi[t] = _mm256_setzero_si256();                                 \
                for (int c = 0; c < 8; c++) {                                                                       \
                    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (8 * j + c)));                \
                    const __m256i ql = _mm256_and_si256(q, low), qh = _mm256_and_si256(_mm256_srli_epi16(q, 4), low); \
                    for (int t = 0; t < T; t++) {                                                                   \
                        const block_q8_K *y = (const block_q8_K *)(a + t * stride) + i;                            \
                        lo[t] = ACC(lo[t], ql, _mm256_set1_epi32(chunk4(y->qs + 64 * j + 4 * c)));                 \
                        hi[t] = ACC(hi[t], qh, _mm256_set1_epi32(chunk4(y->qs + 64 * j + 32 + 4 * c)));            \
                    }                                                                                               \
                }                                                                                                   \
                const __m256i s0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(scales + 16 * j)));     \
                const __m256i s1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(scales + 16 * j + 8))); \
                for (int t = 0; t < T; t++)                                                                         \
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_mullo_epi32(lo[t], s0),             \
                                                                         _mm256_mullo_epi32(hi[t], s1)));           \
            }                                                                                                       \
            const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));                                \
            const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));                       \
            for (int t = 0; t < T; t++) {                                                                           \
                const block_q8_K *y = (const block_q8_K *)(a + t * stride) + i;                                    \
                __m256i msum = _mm256_setzero_si256();                                                              \
                for (int j = 0; j < 8; j++) {                                                                       \
                    const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mins + 8 * j)));     \
                    msum = _mm256_add_epi32(msum, _mm256_mullo_epi32(m, _mm256_set1_epi32(y->bsums[2 * j] + y->bsums[2 * j + 1]))); \
                }                                                                                                   \
                /* keel_q4_K_add's steps in lanes: d = dx·dy, m = dmin·dy; sumf += d·isum; sumf −= m·msum. */        \
                const __m256 dy = _mm256_set1_ps(y->d);                                                             \
                const __m256 d = _mm256_mul_ps(dx, dy), m = _mm256_mul_ps(dmin, dy);                                \
                acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])));                      \
                acc[t] = _mm256_sub_ps(acc[t], _mm256_mul_ps(m, _mm256_cvtepi32_ps(msum)));                         \
            }                                                                                                       \
        }                                                                                                           \
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);                                 \
    }                                                                                                               \
                                                                                                                    \
    TARGET static void group_##NAME(keel_quant_type type, int n, const void *g, int count, const char *a,           \
                                    size_t stride, const int32_t *sums, float *out, size_t out_stride) {            \
        switch (type) {                                                                                             \
        case KEEL_QUANT_Q8_0:                                                                                       \
            if (count == 4) group_q8_0_##NAME(n, g, a, stride, out, out_stride, 4);                                 \
            else group_q8_0_##NAME(n, g, a, stride, out, out_stride, 1);                                            \
            break;                                                                                                  \
        case KEEL_QUANT_Q4_0:                                                                                       \
            if (count == 4) group_offset_##NAME(n, g, a, stride, sums, out, out_stride, 4, 0);                      \
            else group_offset_##NAME(n, g, a, stride, sums, out, out_stride, 1, 0);                                 \
            break;                                                                                                  \
        case KEEL_QUANT_Q5_0:                                                                                       \
            if (count == 4) group_offset_##NAME(n, g, a, stride, sums, out, out_stride, 4, 1);                      \
            else group_offset_##NAME(n, g, a, stride, sums, out, out_stride, 1, 1);                                 \
            break;                                                                                                  \
        case KEEL_QUANT_Q4_K:                                                                                       \
            if (count == 4) group_q4_K_##NAME(n, g, a, stride, out, out_stride, 4);                                 \
            else group_q4_K_##NAME(n, g, a, stride, out, out_stride, 1);                                            \
            break;                                                                                                  \
        default: break;                                                                                             \
        }                                                                                                           \
    }

AVX2 static inline __m256i acc_maddubs(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, bytes_maddubs(u, s));
}
AVX_VNNI static inline __m256i acc_avx_vnni(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(acc, u, s);
}

// (AVX512-VNNI runs the groups on 512-bit registers: quant_groups_avx512.c.)
GROUP_KERNELS(avx2, AVX2, acc_maddubs)
GROUP_KERNELS(avx_vnni, AVX_VNNI, acc_avx_vnni)

void keel_quant_group_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *group, int count,
                          const void *a, size_t stride, const int32_t *sums, float *out, size_t out_stride) {
    switch (engine) {
    case KEEL_QDOT_AVX2: group_avx2(type, n, group, count, a, stride, sums, out, out_stride); break;
    case KEEL_QDOT_AVX_VNNI: group_avx_vnni(type, n, group, count, a, stride, sums, out, out_stride); break;
    default: break;
    }
}

float keel_quant_dot_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *w, const void *a) {
    switch (engine) {
    case KEEL_QDOT_AVX2: return dot_avx2(type, n, w, a);
    case KEEL_QDOT_AVX_VNNI: return dot_avx_vnni(type, n, w, a);
    case KEEL_QDOT_AVX512_VNNI: return dot_avx512_vnni(type, n, w, a);
    default: return 0;
    }
}

int keel_quant_dot8_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *w, const void *a,
                        size_t activation_row_bytes, float out[8]) {
    switch (engine) {
    case KEEL_QDOT_AVX2: return dot8_avx2(type, n, w, a, activation_row_bytes, out);
    case KEEL_QDOT_AVX_VNNI: return dot8_avx_vnni(type, n, w, a, activation_row_bytes, out);
    case KEEL_QDOT_AVX512_VNNI: return dot8_avx512_vnni(type, n, w, a, activation_row_bytes, out);
    default: return 0;
    }
}
