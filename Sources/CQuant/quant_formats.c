// ggml's block formats: sizes, fp16 conversion, the reference quantizers and the dequantizers. The arithmetic
// follows ggml-quants.c operation for operation (this file is built without floating-point contraction), so
// the bytes equal llama.cpp's reference output; names of blocks and fields are ggml's.
#include "keel_quant.h"

#include <immintrin.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant_blocks.h"

int keel_quant_block_values(keel_quant_type type) {
    switch (type) {
    case KEEL_QUANT_Q4_K: case KEEL_QUANT_Q8_K: case KEEL_QUANT_Q5_K: case KEEL_QUANT_Q6_K: return QK_K;
    default: return 32;
    }
}


size_t keel_quant_block_bytes(keel_quant_type type) {
    switch (type) {
    case KEEL_QUANT_F16: return 32 * sizeof(uint16_t);
    case KEEL_QUANT_Q4_0: return sizeof(block_q4_0);
    case KEEL_QUANT_Q4_1: return sizeof(block_q4_1);
    case KEEL_QUANT_Q8_0: return sizeof(block_q8_0);
    case KEEL_QUANT_Q8_1: return sizeof(block_q8_1);
    case KEEL_QUANT_Q4_K: return sizeof(block_q4_K);
    case KEEL_QUANT_Q8_K: return sizeof(block_q8_K);
    case KEEL_QUANT_Q5_0: return sizeof(block_q5_0);
    case KEEL_QUANT_Q5_1: return sizeof(block_q5_1);
    case KEEL_QUANT_Q5_K: return sizeof(block_q5_K);
    case KEEL_QUANT_Q6_K: return sizeof(block_q6_K);
    }
    return 0;
}

static inline float from_bits(uint32_t w) { float f; memcpy(&f, &w, 4); return f; }
static inline uint32_t to_bits(float f) { uint32_t w; memcpy(&w, &f, 4); return w; }

// Maratyszcza's FP16 conversions, as ggml uses them.
float keel_fp16_to_fp32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t result = sign | (two_w < (1u << 27) ? to_bits(denormalized) : to_bits(normalized));
    return from_bits(result);
}

uint16_t keel_fp32_to_fp16(float f) {
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : exp_bits + mantissa_bits));
}

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/// Round half to even, as ggml's nearest_int (valid for |x| ≤ 4194303).
static inline int nearest_int(float value) {
    float shifted = value + 12582912.f;
    int bits;
    memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/// roundf (half away from zero) for |value| < 2^31, exactly, in operations a compiler vectorizes on any x86-64 (roundf
/// itself is a library call there, a tenth of a prompt's time when activations went through it): the value truncated
/// by conversion, the fraction it dropped (exact), and one step away from zero when that is at least a half.
static inline float round_away(float value) {
    const float truncated = (float)(int32_t)value, fraction = value - truncated;
    return truncated + (fabsf(fraction) >= 0.5f ? (value < 0 ? -1.0f : 1.0f) : 0.0f);
}

/// The scale of a block of 32 values quantized to signed bytes, the largest magnitude over 127.
static inline float byte_scale(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = MAX(amax, fabsf(x[j]));
    return amax / 127;
}

static void quantize_q8_0(const float *x, block_q8_0 *y, int64_t k) {
    for (int64_t i = 0; i < k / QK8_0; i++, x += QK8_0) {
        const float d = byte_scale(x);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = keel_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)round_away(x[j] * id);
    }
}

static void quantize_q8_1(const float *x, block_q8_1 *y, int64_t k) {
    for (int64_t i = 0; i < k / QK8_1; i++, x += QK8_1) {
        const float d = byte_scale(x);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = keel_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            y[i].qs[j] = (int8_t)round_away(x[j] * id);
            y[i].qs[QK8_1 / 2 + j] = (int8_t)round_away(x[QK8_1 / 2 + j] * id);
            sum += y[i].qs[j] + y[i].qs[QK8_1 / 2 + j];
        }
        y[i].s = keel_fp32_to_fp16(sum * d);
    }
}

static void quantize_q4_0(const float *x, block_q4_0 *y, int64_t k) {
    for (int64_t i = 0; i < k / QK4_0; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f; // the value of largest magnitude, the first of equals
        for (int j = 0; j < QK4_0; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = keel_fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const uint8_t low = MIN(15, (int8_t)(x[j] * id + 8.5f));
            const uint8_t high = MIN(15, (int8_t)(x[QK4_0 / 2 + j] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(low | (high << 4));
        }
    }
}

static void quantize_q5_0(const float *x, block_q5_0 *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 32) {
        float amax = 0.0f, max = 0.0f; // the value of largest magnitude, the first of equals
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = keel_fp32_to_fp16(d);
        uint32_t qh = 0; // each value's fifth bit: value j's is bit j
        for (int j = 0; j < 16; j++) {
            const uint8_t low = MIN(31, (int8_t)(x[j] * id + 16.5f));
            const uint8_t high = MIN(31, (int8_t)(x[16 + j] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((low & 0x0F) | ((high & 0x0F) << 4));
            qh |= (uint32_t)((low & 0x10u) >> 4) << j;
            qh |= (uint32_t)((high & 0x10u) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

static void quantize_q4_1(const float *x, block_q4_1 *y, int64_t k) {
    for (int64_t i = 0; i < k / QK4_1; i++, x += QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = keel_fp32_to_fp16(d);
        y[i].m = keel_fp32_to_fp16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const uint8_t low = MIN(15, (int8_t)((x[j] - min) * id + 0.5f));
            const uint8_t high = MIN(15, (int8_t)((x[QK4_1 / 2 + j] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(low | (high << 4));
        }
    }
}

/// ggml's make_qkx2_quants: a scale and a min for n values with levels 0…nmax, searched over nstep + 1 scales
/// for the least weighted error; the levels in L, −min in *the_min.
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/// Sub-block j's 6-bit scale and min from a Q4_K block's 12 packed bytes.
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static void quantize_q4_K(const float *x, block_q4_K *y, int64_t k) {
    uint8_t L[QK_K], Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = MIN(63, ls);
            lm = MIN(63, lm);
            if (j < 4) {
                y[i].scales[j] = ls;
                y[i].scales[j + 4] = lm;
            } else {
                y[i].scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                y[i].scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[i].d = keel_fp32_to_fp16(max_scale / 63.f);
        y[i].dmin = keel_fp32_to_fp16(max_min / 63.f);
        uint8_t sc, m;
        for (int j = 0; j < QK_K / 32; j++) {
            scale_min_k4(j, y[i].scales, &sc, &m);
            const float d = keel_fp16_to_fp32(y[i].d) * sc;
            if (!d) continue;
            const float dm = keel_fp16_to_fp32(y[i].dmin) * m;
            for (int ii = 0; ii < 32; ii++) {
                int l = nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (uint8_t)MAX(0, MIN(15, l));
            }
        }
        uint8_t *q = y[i].qs;
        for (int j = 0; j < QK_K; j += 64, q += 32) {
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        }
    }
}

static void quantize_q8_K(const float *x, block_q8_K *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, QK_K);
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)MIN(127, v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void keel_quantize_row(keel_quant_type type, const float *x, void *y, int64_t k) {
    switch (type) {
    case KEEL_QUANT_F16:
        for (int64_t i = 0; i < k; i++) ((uint16_t *)y)[i] = keel_fp32_to_fp16(x[i]);
        break;
    case KEEL_QUANT_Q8_0: quantize_q8_0(x, y, k); break;
    case KEEL_QUANT_Q8_1: quantize_q8_1(x, y, k); break;
    case KEEL_QUANT_Q4_0: quantize_q4_0(x, y, k); break;
    case KEEL_QUANT_Q4_1: quantize_q4_1(x, y, k); break;
    case KEEL_QUANT_Q4_K: quantize_q4_K(x, y, k); break;
    case KEEL_QUANT_Q8_K: quantize_q8_K(x, y, k); break;
    case KEEL_QUANT_Q5_0: quantize_q5_0(x, y, k); break;
    case KEEL_QUANT_Q5_1: case KEEL_QUANT_Q5_K: case KEEL_QUANT_Q6_K:
        abort(); // read-only formats: no caller writes them, and a row left unwritten must not pass for one
    }
}

/// Halves to floats eight at a time by F16C (exact, as the software conversion is; a prompt converts every F16
/// weight, and one at a time that took a seventh of its time).
__attribute__((target("avx2,f16c"))) static void halves_to_floats(const uint16_t *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < k; i++) y[i] = keel_fp16_to_fp32(x[i]);
}

void keel_dequantize_row(keel_quant_type type, const void *blocks, float *y, int64_t k) {
    switch (type) {
    case KEEL_QUANT_F16:
        // Every SIMD engine implies F16C (keel_qdot_best_engine checks it).
        if (keel_qdot_engine_available(KEEL_QDOT_AVX2)) {
            halves_to_floats(blocks, y, k);
            break;
        }
        for (int64_t i = 0; i < k; i++) y[i] = keel_fp16_to_fp32(((const uint16_t *)blocks)[i]);
        break;
    case KEEL_QUANT_Q8_0: {
        const block_q8_0 *x = blocks;
        for (int64_t i = 0; i < k / QK8_0; i++) {
            const float d = keel_fp16_to_fp32(x[i].d);
            for (int j = 0; j < QK8_0; j++) y[i * QK8_0 + j] = x[i].qs[j] * d;
        }
        break;
    }
    case KEEL_QUANT_Q4_0: {
        const block_q4_0 *x = blocks;
        for (int64_t i = 0; i < k / QK4_0; i++) {
            const float d = keel_fp16_to_fp32(x[i].d);
            for (int j = 0; j < QK4_0 / 2; j++) {
                y[i * QK4_0 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
                y[i * QK4_0 + j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
            }
        }
        break;
    }
    case KEEL_QUANT_Q4_1: {
        const block_q4_1 *x = blocks;
        for (int64_t i = 0; i < k / QK4_1; i++) {
            const float d = keel_fp16_to_fp32(x[i].d), m = keel_fp16_to_fp32(x[i].m);
            for (int j = 0; j < QK4_1 / 2; j++) {
                y[i * QK4_1 + j] = (x[i].qs[j] & 0x0F) * d + m;
                y[i * QK4_1 + j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
            }
        }
        break;
    }
    case KEEL_QUANT_Q4_K: {
        const block_q4_K *x = blocks;
        for (int64_t i = 0; i < k / QK_K; i++) {
            const uint8_t *q = x[i].qs;
            const float d = keel_fp16_to_fp32(x[i].d), min = keel_fp16_to_fp32(x[i].dmin);
            uint8_t sc, m;
            for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
                scale_min_k4(is, x[i].scales, &sc, &m);
                const float d1 = d * sc, m1 = min * m;
                scale_min_k4(is + 1, x[i].scales, &sc, &m);
                const float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            }
        }
        break;
    }
    case KEEL_QUANT_Q5_0: {
        const block_q5_0 *x = blocks;
        for (int64_t i = 0; i < k / 32; i++) {
            const float d = keel_fp16_to_fp32(x[i].d);
            uint32_t qh;
            memcpy(&qh, x[i].qh, sizeof(qh));
            for (int j = 0; j < 16; j++) {
                const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10, xh_1 = ((qh >> (j + 12))) & 0x10;
                y[i * 32 + j] = (((x[i].qs[j] & 0x0F) | xh_0) - 16) * d;
                y[i * 32 + j + 16] = (((x[i].qs[j] >> 4) | xh_1) - 16) * d;
            }
        }
        break;
    }
    case KEEL_QUANT_Q5_1: {
        const block_q5_1 *x = blocks;
        for (int64_t i = 0; i < k / 32; i++) {
            const float d = keel_fp16_to_fp32(x[i].d), m = keel_fp16_to_fp32(x[i].m);
            uint32_t qh;
            memcpy(&qh, x[i].qh, sizeof(qh));
            for (int j = 0; j < 16; j++) {
                const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10, xh_1 = ((qh >> (j + 12))) & 0x10;
                y[i * 32 + j] = ((x[i].qs[j] & 0x0F) | xh_0) * d + m;
                y[i * 32 + j + 16] = ((x[i].qs[j] >> 4) | xh_1) * d + m;
            }
        }
        break;
    }
    case KEEL_QUANT_Q5_K: {
        const block_q5_K *x = blocks;
        for (int64_t i = 0; i < k / QK_K; i++) {
            const uint8_t *ql = x[i].qs, *qh = x[i].qh;
            const float d = keel_fp16_to_fp32(x[i].d), min = keel_fp16_to_fp32(x[i].dmin);
            uint8_t sc, m, u1 = 1, u2 = 2;
            for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
                scale_min_k4(is, x[i].scales, &sc, &m);
                const float d1 = d * sc, m1 = min * m;
                scale_min_k4(is + 1, x[i].scales, &sc, &m);
                const float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            }
        }
        break;
    }
    case KEEL_QUANT_Q6_K: {
        const block_q6_K *x = blocks;
        for (int64_t i = 0; i < k / QK_K; i++) {
            const float d = keel_fp16_to_fp32(x[i].d);
            const uint8_t *ql = x[i].ql, *qh = x[i].qh;
            const int8_t *sc = x[i].scales;
            for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
                for (int l = 0; l < 32; l++) {
                    const int is = l / 16;
                    const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l + 0] = d * sc[is + 0] * q1;
                    y[l + 32] = d * sc[is + 2] * q2;
                    y[l + 64] = d * sc[is + 4] * q3;
                    y[l + 96] = d * sc[is + 6] * q4;
                }
            }
        }
        break;
    }
    case KEEL_QUANT_Q8_1:
    case KEEL_QUANT_Q8_K:
        break; // activation formats: never dequantized
    }
}

keel_quant_type keel_quant_activation_type(keel_quant_type weight_type) {
    switch (weight_type) {
    case KEEL_QUANT_Q4_1: return KEEL_QUANT_Q8_1;
    case KEEL_QUANT_Q4_K: return KEEL_QUANT_Q8_K;
    case KEEL_QUANT_F16: return KEEL_QUANT_F16;
    default: return KEEL_QUANT_Q8_0;
    }
}
