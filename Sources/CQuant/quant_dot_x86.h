// The x86 SIMD dot products (quant_dot_x86.c) and the pieces of the reference they share, private to the C code.
#ifndef KEEL_QUANT_DOT_X86_H
#define KEEL_QUANT_DOT_X86_H

#include "keel_quant.h"

/// The dot product on `engine` (AVX2, AVX-VNNI or AVX512-VNNI), which the caller knows the CPU runs.
float keel_quant_dot_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *weights, const void *activations);

/// The dot products of one weight row with eight activation rows (`activation_row_bytes` apart) into `out`, each
/// equal to its `keel_quant_dot_x86` to the bit; returns 0, writing nothing, for a format without such a kernel.
int keel_quant_dot8_x86(keel_qdot_engine engine, keel_quant_type type, int n, const void *weights, const void *activations,
                        size_t activation_row_bytes, float out[8]);

/// A Q4_K block's eight 6-bit scales and mins, unpacked from its 12 bytes.
void keel_q4_K_scales_mins(const uint8_t *packed, uint8_t scales[8], uint8_t mins[8]);

/// `sumf` plus one Q4_K·Q8_K super-block, given the integer sum of its scaled products `isum` (Σ scale_j ·
/// Σ q4·q8 over its eight sub-blocks): the float steps of the reference, in its order.
float keel_q4_K_block_sum(float sumf, const void *weight_block, const void *activation_block, int32_t isum);

#endif
