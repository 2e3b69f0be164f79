// Dot products of a quantized weight row with a quantized activation row: the scalar reference, the choice of
// engine, and the row loop. The reference is ggml's generic code for Q8_0, Q4_0, Q4_1 and Q5_0 (block after block); for
// Q4_K it adds each super-block's scaled sums in turn (ggml's generic code keeps eight lane sums instead; every
// llama.cpp SIMD path has an order of its own). The SIMD engines (quant_dot_x86.c) compute the same integer sums and
// the same float operations in the same order, so all engines give the same bits — the interleaved kernels too,
// whose lanes are eight rows each taking its own steps in this order.
#include "keel_quant.h"

#include <cpuid.h>
#include <pthread.h>
#include <string.h>

#include "quant_blocks.h"
#include "quant_dot_x86.h"

/// F16 · F16: each product is exact in fp32; element i goes into lane i mod 32, and the lanes are added as four
/// vectors of eight, ((0 + 1) + (2 + 3)), then halved three times (j + j+4, j + j+2, 0 + 1) — the order of the
/// SIMD code, which keeps four eight-lane accumulators.
static float dot_f16(int n, const uint16_t *x, const uint16_t *y) {
    float lanes[32] = {0};
    for (int i = 0; i < n; i += 32)
        for (int j = 0; j < 32; j++) lanes[j] += keel_fp16_to_fp32(x[i + j]) * keel_fp16_to_fp32(y[i + j]);
    float s[8], h4[4];
    for (int j = 0; j < 8; j++) s[j] = (lanes[j] + lanes[8 + j]) + (lanes[16 + j] + lanes[24 + j]);
    for (int j = 0; j < 4; j++) h4[j] = s[j] + s[j + 4];
    return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

static float dot_q8_0(int n, const block_q8_0 *x, const block_q8_0 *y) {
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_0; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += sumi * (keel_fp16_to_fp32(x[ib].d) * keel_fp16_to_fp32(y[ib].d));
    }
    return sumf;
}

static float dot_q4_0(int n, const block_q4_0 *x, const block_q8_0 *y) {
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_0; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            sumi += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + QK8_0 / 2];
        }
        sumf += sumi * keel_fp16_to_fp32(x[ib].d) * keel_fp16_to_fp32(y[ib].d);
    }
    return sumf;
}

static float dot_q5_0(int n, const block_q5_0 *x, const block_q8_0 *y) {
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_0; ib++) {
        uint32_t qh;
        memcpy(&qh, x[ib].qh, sizeof(qh));
        int sumi = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            const int low = (int)((x[ib].qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - 16;
            const int high = (int)((x[ib].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += low * y[ib].qs[j] + high * y[ib].qs[j + QK8_0 / 2];
        }
        sumf += sumi * (keel_fp16_to_fp32(x[ib].d) * keel_fp16_to_fp32(y[ib].d));
    }
    return sumf;
}

static float dot_q4_1(int n, const block_q4_1 *x, const block_q8_1 *y) {
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_1; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            sumi0 += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
            sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + QK8_1 / 2];
        }
        int sumi = sumi0 + sumi1;
        sumf += (keel_fp16_to_fp32(x[ib].d) * keel_fp16_to_fp32(y[ib].d)) * sumi
              + keel_fp16_to_fp32(x[ib].m) * keel_fp16_to_fp32(y[ib].s);
    }
    return sumf;
}

/// `sumf` plus one Q4_K·Q8_K super-block, given the integer sum of its scaled products `isum` (Σ scale_j ·
/// Σ q4·q8 over its eight sub-blocks).
static float q4_K_block_sum(float sumf, const void *weight_block, const void *activation_block, int32_t isum) {
    const block_q4_K *x = weight_block;
    const block_q8_K *y = activation_block;
    uint8_t scales[8], mins[8];
    keel_q4_K_scales_mins(x->scales, scales, mins);
    int32_t msum = 0;
    for (int j = 0; j < QK_K / 16; j++) msum += y->bsums[j] * mins[j / 2];
    return keel_q4_K_add(sumf, keel_fp16_to_fp32(x->d), keel_fp16_to_fp32(x->dmin), y->d, isum, msum);
}

static float dot_q4_K(int n, const block_q4_K *x, const block_q8_K *y) {
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t scales[8], mins[8];
        keel_q4_K_scales_mins(x[i].scales, scales, mins);
        int32_t isum = 0;
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < QK_K / 64; j++, q4 += 32, q8 += 64) {
            int32_t low = 0, high = 0;
            for (int l = 0; l < 32; l++) {
                low += (q4[l] & 0xF) * q8[l];
                high += (q4[l] >> 4) * q8[l + 32];
            }
            isum += scales[2 * j] * low + scales[2 * j + 1] * high;
        }
        sumf = q4_K_block_sum(sumf, &x[i], &y[i], isum);
    }
    return sumf;
}

static keel_qdot_engine best = KEEL_QDOT_SCALAR;
static int available[4] = {1, 0, 0, 0};
static pthread_once_t detection = PTHREAD_ONCE_INIT;

static void detect(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return; // no OSXSAVE
    if (!((ecx >> 29) & 1)) return;                                             // no F16C, which every SIMD engine uses
    unsigned xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if ((xcr0_low & 0x6) != 0x6) return; // the OS does not save ymm state
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return;
    int avx2 = (ebx >> 5) & 1;
    int avx512 = ((ebx >> 16) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1) && (xcr0_low & 0xE6) == 0xE6;
    int avx512_vnni = avx512 && ((ecx >> 11) & 1);
    __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx);
    int avx_vnni = avx2 && ((eax >> 4) & 1);
    available[KEEL_QDOT_AVX2] = avx2;
    available[KEEL_QDOT_AVX_VNNI] = avx_vnni;
    available[KEEL_QDOT_AVX512_VNNI] = avx512_vnni;
    best = avx512_vnni ? KEEL_QDOT_AVX512_VNNI : avx_vnni ? KEEL_QDOT_AVX_VNNI : avx2 ? KEEL_QDOT_AVX2 : KEEL_QDOT_SCALAR;
}

keel_qdot_engine keel_qdot_best_engine(void) {
    pthread_once(&detection, detect);
    return best;
}

int keel_qdot_engine_available(keel_qdot_engine engine) {
    pthread_once(&detection, detect);
    return engine >= 0 && engine <= 3 && available[engine];
}

float keel_quant_dot(keel_qdot_engine engine, keel_quant_type type, int n, const void *w, const void *a) {
    if (engine != KEEL_QDOT_SCALAR && keel_qdot_engine_available(engine)) return keel_quant_dot_x86(engine, type, n, w, a);
    switch (type) {
    case KEEL_QUANT_F16: return dot_f16(n, w, a);
    case KEEL_QUANT_Q8_0: return dot_q8_0(n, w, a);
    case KEEL_QUANT_Q4_0: return dot_q4_0(n, w, a);
    case KEEL_QUANT_Q4_1: return dot_q4_1(n, w, a);
    case KEEL_QUANT_Q5_0: return dot_q5_0(n, w, a);
    case KEEL_QUANT_Q4_K: return dot_q4_K(n, w, a);
    default: return 0;
    }
}

void keel_quant_matmul(keel_qdot_engine engine, keel_quant_type type, int n, int rows, const void *weights,
                       size_t row_bytes, int count, const void *activations, size_t activation_row_bytes, float *out,
                       size_t out_stride) {
    const char *row = weights;
    const int simd = engine != KEEL_QDOT_SCALAR && keel_qdot_engine_available(engine);
    for (int r = 0; r < rows; r++, row += row_bytes) {
        // Each weight row once, against every activation row while it is in cache: eight at a time where the
        // engine has a kernel for it (one unpacking of the weights, eight independent float chains), then one by one.
        const char *activation = activations;
        int t = 0;
        float eight[8];
        for (; simd && t + 8 <= count; t += 8, activation += 8 * activation_row_bytes) {
            if (!keel_quant_dot8_x86(engine, type, n, row, activation, activation_row_bytes, eight)) break;
            for (int k = 0; k < 8; k++) out[(size_t)(t + k) * out_stride + r] = eight[k];
        }
        for (; t < count; t++, activation += activation_row_bytes)
            out[(size_t)t * out_stride + r] = keel_quant_dot(engine, type, n, row, activation);
    }
}
