// Block-quantized weights in llama.cpp's formats (bit-compatible with ggml's reference code), and dot products
// of a quantized weight row with a quantized activation row.
//
// Each format stores a row of k values (k a multiple of the block length) as k / block_values blocks of
// block_bytes bytes, laid out as ggml lays them out, little-endian:
//   Q8_0: 32 values in 34 bytes — fp16 scale d, 32 int8 q; x = d·q.
//   Q4_0: 32 values in 18 bytes — fp16 d, 16 bytes of nibbles (value j low, j + 16 high); x = d·(q − 8).
//   Q4_1: 32 values in 20 bytes — fp16 d, fp16 m, 16 bytes of nibbles; x = d·q + m.
//   Q5_0: 32 values in 22 bytes — fp16 d, 4 bytes of fifth bits (value j's is bit j), 16 bytes of nibbles (as
//         Q4_0); x = d·(q − 16). Llama.cpp's Q4_K files hold it where rows are not whole Q4_K blocks.
//   Q4_K: 256 values in 144 bytes — fp16 d, fp16 dmin, 12 bytes of eight 6-bit scales and mins, 128 bytes of
//         nibbles (per 64 values: 32 bytes, value l low, l + 32 high); x = d·scale_j·q − dmin·min_j.
//   Q8_1: 32 values in 36 bytes — fp16 d, fp16 s = d·Σq, 32 int8 q (activations paired with Q4_1).
//   Q8_K: 256 values in 292 bytes — fp32 d, 256 int8 q, 16 int16 sums of 16 (activations paired with Q4_K).
//   F16:  IEEE binary16 values, taken 32 (64 bytes) at a time here; activations paired with it are F16 too.
//   Q5_1, Q5_K, Q6_K: read (dequantized) only, as llama.cpp's _K_M and Q5 files hold them; see ggml-common.h.
// The type numbers are ggml's (and GGUF's).
#ifndef KEEL_QUANT_H
#define KEEL_QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    KEEL_QUANT_F16 = 1,
    KEEL_QUANT_Q4_0 = 2,
    KEEL_QUANT_Q4_1 = 3,
    KEEL_QUANT_Q5_0 = 6,
    KEEL_QUANT_Q5_1 = 7,  // read only (dequantized), as Q5_K and Q6_K
    KEEL_QUANT_Q8_0 = 8,
    KEEL_QUANT_Q8_1 = 9,
    KEEL_QUANT_Q4_K = 12,
    KEEL_QUANT_Q5_K = 13,
    KEEL_QUANT_Q6_K = 14,
    KEEL_QUANT_Q8_K = 15,
} keel_quant_type;

/// Values per block (32 or 256), and bytes per block.
int keel_quant_block_values(keel_quant_type type);
size_t keel_quant_block_bytes(keel_quant_type type);

/// IEEE binary16 from fp32 (round to nearest even; NaN becomes 0x7E00 with its sign), and back (exact).
uint16_t keel_fp32_to_fp16(float value);
float keel_fp16_to_fp32(uint16_t bits);

/// Quantizes k values (a multiple of the block length) as ggml's reference quantizer does, operation for
/// operation, so that the bytes equal those of llama.cpp built without floating-point contraction.
void keel_quantize_row(keel_quant_type type, const float *x, void *y, int64_t k);

/// The k values a row of F16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K or Q6_K blocks stands for, as ggml's
/// dequantizers compute them.
void keel_dequantize_row(keel_quant_type type, const void *x, float *y, int64_t k);

/// The format a weight type's dot products take their activations in: Q8_0 for Q8_0, Q4_0 and Q5_0, Q8_1 for Q4_1,
/// Q8_K for Q4_K, F16 for F16 (as ggml takes them).
keel_quant_type keel_quant_activation_type(keel_quant_type weight_type);

/// The instructions a dot product runs on.
typedef enum {
    KEEL_QDOT_SCALAR = 0,  // plain C, ggml's generic code: the reference
    KEEL_QDOT_AVX2 = 1,    // AVX2 byte products (maddubs)
    KEEL_QDOT_AVX_VNNI = 2, // VEX AVX-VNNI dpbusd on 256-bit registers
    KEEL_QDOT_AVX512_VNNI = 3, // AVX512-VNNI dpbusd on 256-bit registers (AVX512-VL)
} keel_qdot_engine;

/// The fastest engine this CPU (and its operating system) runs.
keel_qdot_engine keel_qdot_best_engine(void);
/// Whether this CPU runs `engine`.
int keel_qdot_engine_available(keel_qdot_engine engine);

/// The dot product of n values: a weight row of `weight_type` with an activation row in its activation type.
/// Every engine gives the same bits as the scalar reference: the integer sums are exact, and the scaled sums are
/// added in the reference's order. (F16: the products of two halves are exact in fp32; element i is added into
/// lane i mod 32, and the 32 lanes are added in a fixed tree.)
float keel_quant_dot(keel_qdot_engine engine, keel_quant_type weight_type, int n, const void *weights,
                     const void *activations);

/// rows × count dot products: `rows` weight rows of n values, `row_bytes` apart, with `count` activation rows,
/// `activation_row_bytes` apart; activation row t with weight row r goes to out[t · out_stride + r].
void keel_quant_matmul(keel_qdot_engine engine, keel_quant_type weight_type, int n, int rows, const void *weights,
                       size_t row_bytes, int count, const void *activations, size_t activation_row_bytes, float *out,
                       size_t out_stride);

/// out[r] = Σ_i w[r · ldw + i] · x[i] for r < rows: fp32 rows times a vector (generation from an fp32 model).
/// Element i of a row is added into lane i mod 32 and the lanes in a fixed tree, so every engine gives the
/// scalar code's bits.
void keel_f32_matvec(keel_qdot_engine engine, int rows, int n, const float *w, size_t ldw, const float *x, float *out);

/// `rows` F16 weight rows (n halves each, n a multiple of 32, row after row) times `count` activation rows of n
/// floats (halves converted: the F16 activation format's values) into out[t · out_stride + r], each equal to its
/// `keel_quant_dot` to the bit; returns 0, writing nothing, on an engine without the kernel (AVX-512 only).
int keel_f16_matmul(keel_qdot_engine engine, int n, int rows, const uint16_t *w, int count, const float *x, float *out,
                    size_t out_stride);

/// Weight rows interleaved eight at a time (quant_interleave.c describes the layout) for Q8_0, Q4_0, Q5_0 and Q4_K: bytes
/// of one group of eight rows of n values, or 0 for a format without the layout.
size_t keel_quant_group_bytes(keel_quant_type type, int64_t n);

/// Eight rows of n values (ggml's bytes, `row_bytes` apart) into one interleaved group, and back.
void keel_quant_interleave(keel_quant_type type, int64_t n, const void *rows, size_t row_bytes, void *group);
void keel_quant_deinterleave(keel_quant_type type, int64_t n, const void *group, void *rows, size_t row_bytes);

/// `groups` interleaved groups (8 · groups weight rows) × `count` activation rows (`activation_row_bytes` apart):
/// activation row t with weight row r goes to out[t · out_stride + r], each equal to the scalar reference's
/// `keel_quant_dot` of the two rows, to the bit, on every engine.
void keel_quant_matmul_groups(keel_qdot_engine engine, keel_quant_type type, int n, int groups, const void *weights,
                              int count, const void *activations, size_t activation_row_bytes, float *out,
                              size_t out_stride);

#endif
