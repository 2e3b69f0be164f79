// The x86 SIMD dot products (quant_dot_x86.c) and the pieces of the reference they share, private to the C code.
#ifndef KEEL_QUANT_DOT_X86_H
#define KEEL_QUANT_DOT_X86_H

#include "keel_quant.h"
#include "quant_blocks.h"

#include <stdio.h>
#include <stdlib.h>

/// The dot product on `engine` (AVX2, AVX-VNNI or AVX512-VNNI), which the caller knows the CPU runs.
float keel_quant_dot_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *weights, const void *activations);

/// The dot products of one weight row with eight activation rows (`activation_row_bytes` apart) into `out`, each
/// equal to its `keel_quant_dot_x86` to the bit; returns 0, writing nothing, for a format without such a kernel.
int keel_quant_dot8_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *weights, const void *activations,
                        size_t activation_row_bytes, float out[8]);

/// One interleaved group of eight weight rows (Q8_0, Q4_0, Q5_0 or Q4_K) times `count` (1 or 4) activation rows, `stride`
/// bytes apart, on AVX2 or AVX-VNNI: row t's eight products go to out[t · out_stride + 0…7], each equal to its weight
/// row's `keel_quant_dot` to the bit. `sums`: Q4_0 and Q5_0 only, 8 or 16 · Σ of each activation block's quants, n / 32 a row.
void keel_quant_group_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *group, int count,
                          const void *activations, size_t stride, const int32_t *sums, float *out, size_t out_stride);

/// `groups` interleaved groups (`group_bytes` apart) times `count` activation rows on 512-bit registers
/// (quant_groups_avx512.c; the AVX512-VNNI engine, which the caller knows the CPU runs): activation row t with the
/// group's row r goes to out[t · out_stride + 8 · group + r], each equal to `keel_quant_dot` to the bit.
void keel_quant_groups_avx512(keel_quant_type type, int n, int groups, const void *weights, size_t group_bytes,
                              int count, const void *activations, size_t activation_row_bytes, float *out,
                              size_t out_stride);

/// Scratch memory for a product, or the process stops with a message naming it (a product has no way to fail,
/// and a crash on a null pointer would name nothing).
static inline void *keel_scratch(void *memory, size_t bytes) {
    if (!memory) {
        fprintf(stderr, "keel: out of memory for %zu bytes of scratch in a quantized product\n", bytes);
        abort();
    }
    return memory;
}

/// Σ of a Q8_0 activation block's quants (the correction for weights taken unsigned: Q4_0's nibbles, Q8_0 + 128).
static inline int32_t keel_q8_0_sum(const block_q8_0 *y) {
    int32_t sum = 0;
    for (int j = 0; j < QK8_0; j++) sum += y->qs[j];
    return sum;
}

/// `sumf` plus one Q4_K·Q8_K super-block: its weight scales `dx`, `dmin` (from fp16), the activation's scale `dy`,
/// the integer sum of its scaled products `isum` and of its mins against the activation's sums `msum` — the float
/// steps of the reference, shared by every engine so that they add in one order.
static inline float keel_q4_K_add(float sumf, float dx, float dmin, float dy, int32_t isum, int32_t msum) {
    const float d = dx * dy, m = dmin * dy;
    sumf += d * (float)isum;
    sumf -= m * (float)msum;
    return sumf;
}

/// A Q4_K block's eight 6-bit scales and mins, unpacked from its 12 bytes (inline: once per super-block in every
/// dot product).
static inline void keel_q4_K_scales_mins(const uint8_t *packed, uint8_t scales[8], uint8_t mins[8]) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = packed[j] & 63;
            mins[j] = packed[j + 4] & 63;
        } else {
            scales[j] = (uint8_t)((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4));
            mins[j] = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
        }
    }
}

#endif
