// Weight rows interleaved eight at a time, so that a matrix-vector product computes eight rows' block sums in the
// eight 32-bit lanes of one vector: no horizontal sums per row, eight rows' scales converted by one instruction, and
// each activation block read once for eight rows (llama.cpp repacks Q4_0 and Q4_K likewise on x86). A group holds,
// block by block, the eight rows' blocks of that column range:
//   Q8_0 (272 bytes a block): the eight fp16 scales, then the quants in 4-byte chunks — chunk c of rows 0…7
//        (32 bytes), for c = 0…7.
//   Q4_0 (144 bytes a block): the eight fp16 scales, then the nibble bytes in 4-byte chunks, c = 0…3 (chunk c's
//        low nibbles are values 4c…4c+3, its high ones 16+4c…).
//   Q5_0 (176 bytes a block): the eight fp16 scales, the eight rows' fifth bits (4 bytes a row, rearranged: bit j
//        of byte k is value 4j + k's, so that chunk c's bits for its bytes are one shift and mask away), then the
//        nibble bytes in chunks as Q4_0's.
//   Q4_K (1184 bytes a super-block): eight fp16 d, eight fp16 dmin, the 6-bit scales unpacked as bytes [sub-block
//        j][row] (64), the mins likewise (64), then the nibble bytes in 4-byte chunks, c = 0…31.
// The layout is lossless: every row's ggml bytes come back out (Q4_K's packing of scales uses all 96 bits).
#include "keel_quant.h"

#include <stdlib.h>
#include <string.h>

#include "quant_blocks.h"
#include "quant_dot_x86.h"

/// Bytes of one block of eight rows in the interleaved layout, or 0 for a format without one.
static size_t group_block_bytes(keel_quant_type type) {
    switch (type) {
    case KEEL_QUANT_Q8_0: return 8 * sizeof(block_q8_0);
    case KEEL_QUANT_Q4_0: return 8 * sizeof(block_q4_0);
    case KEEL_QUANT_Q5_0: return 8 * sizeof(block_q5_0);
    case KEEL_QUANT_Q4_K: return 8 * (4 + 16 + QK_K / 2);
    default: return 0;
    }
}

size_t keel_quant_group_bytes(keel_quant_type type, int64_t n) {
    return group_block_bytes(type) * (size_t)(n / keel_quant_block_values(type));
}

/// Moves `bytes` bytes of eight rows' quants (each `row_quants` apart in `rows`) into 4-byte chunks, or back.
static void chunk_quants(uint8_t *chunks, uint8_t *const rows[8], int bytes, int to_chunks) {
    for (int c = 0; c < bytes / 4; c++) {
        for (int r = 0; r < 8; r++) {
            if (to_chunks) memcpy(chunks + 32 * c + 4 * r, rows[r] + 4 * c, 4);
            else memcpy(rows[r] + 4 * c, chunks + 32 * c + 4 * r, 4);
        }
    }
}

/// A Q5_0 block's fifth bits (bit v of `bits` is value v's) rearranged so that bit j of byte k is value 4j + k's,
/// and back.
static uint32_t fifths_to_group(uint32_t bits) {
    uint32_t moved = 0;
    for (int v = 0; v < 32; v++) moved |= ((bits >> v) & 1u) << (8 * (v % 4) + v / 4);
    return moved;
}

static uint32_t fifths_from_group(uint32_t moved) {
    uint32_t bits = 0;
    for (int v = 0; v < 32; v++) bits |= ((moved >> (8 * (v % 4) + v / 4)) & 1u) << v;
    return bits;
}

/// Block b of a group to or from the eight rows' blocks b (`blocks[r]`): the one copy both directions share.
static void move_block(keel_quant_type type, uint8_t *group_block, uint8_t *const blocks[8], int to_group) {
    uint8_t *quants[8];
    uint16_t *halves = (uint16_t *)group_block;
    switch (type) {
    case KEEL_QUANT_Q8_0:
    case KEEL_QUANT_Q4_0: {
        const int quant_bytes = type == KEEL_QUANT_Q8_0 ? QK8_0 : QK4_0 / 2;
        for (int r = 0; r < 8; r++) {
            // Both blocks start with their fp16 scale.
            if (to_group) memcpy(&halves[r], blocks[r], 2);
            else memcpy(blocks[r], &halves[r], 2);
            quants[r] = blocks[r] + 2;
        }
        chunk_quants(group_block + 16, quants, quant_bytes, to_group);
        break;
    }
    case KEEL_QUANT_Q5_0: {
        uint32_t *fifths = (uint32_t *)(group_block + 16);
        for (int r = 0; r < 8; r++) {
            block_q5_0 *x = (block_q5_0 *)blocks[r];
            uint32_t bits;
            if (to_group) {
                memcpy(&halves[r], &x->d, 2);
                memcpy(&bits, x->qh, 4);
                bits = fifths_to_group(bits);
                memcpy(&fifths[r], &bits, 4);
            } else {
                memcpy(&x->d, &halves[r], 2);
                memcpy(&bits, &fifths[r], 4);
                bits = fifths_from_group(bits);
                memcpy(x->qh, &bits, 4);
            }
            quants[r] = x->qs;
        }
        chunk_quants(group_block + 48, quants, 16, to_group);
        break;
    }
    case KEEL_QUANT_Q4_K: {
        uint8_t *scales = group_block + 32, *mins = group_block + 96;
        for (int r = 0; r < 8; r++) {
            block_q4_K *x = (block_q4_K *)blocks[r];
            uint8_t s[8], m[8];
            if (to_group) {
                memcpy(&halves[r], &x->d, 2);
                memcpy(&halves[8 + r], &x->dmin, 2);
                keel_q4_K_scales_mins(x->scales, s, m);
                for (int j = 0; j < 8; j++) {
                    scales[8 * j + r] = s[j];
                    mins[8 * j + r] = m[j];
                }
            } else {
                memcpy(&x->d, &halves[r], 2);
                memcpy(&x->dmin, &halves[8 + r], 2);
                for (int j = 0; j < 8; j++) {
                    s[j] = scales[8 * j + r];
                    m[j] = mins[8 * j + r];
                }
                // ggml's packing (the inverse of keel_q4_K_scales_mins): six bits of each, the top two of
                // scales and mins 4…7 in the top bits of bytes 0…7.
                for (int j = 0; j < 4; j++) {
                    x->scales[j] = (uint8_t)(s[j] | ((s[j + 4] >> 4) << 6));
                    x->scales[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
                    x->scales[j + 8] = (uint8_t)((s[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
                }
            }
            quants[r] = x->qs;
        }
        chunk_quants(group_block + 160, quants, QK_K / 2, to_group);
        break;
    }
    default: break;
    }
}

void keel_quant_interleave(keel_quant_type type, int64_t n, const void *rows, size_t row_bytes, void *group) {
    const size_t block_bytes = keel_quant_block_bytes(type), group_block = group_block_bytes(type);
    for (int64_t b = 0; b < n / keel_quant_block_values(type); b++) {
        uint8_t *blocks[8];
        for (int r = 0; r < 8; r++) blocks[r] = (uint8_t *)rows + r * row_bytes + b * block_bytes;
        move_block(type, (uint8_t *)group + b * group_block, blocks, 1);
    }
}

void keel_quant_deinterleave(keel_quant_type type, int64_t n, const void *group, void *rows, size_t row_bytes) {
    const size_t block_bytes = keel_quant_block_bytes(type), group_block = group_block_bytes(type);
    for (int64_t b = 0; b < n / keel_quant_block_values(type); b++) {
        uint8_t *blocks[8];
        for (int r = 0; r < 8; r++) blocks[r] = (uint8_t *)rows + r * row_bytes + b * block_bytes;
        move_block(type, (uint8_t *)group + b * group_block, blocks, 0);
    }
}

void keel_quant_matmul_groups(keel_qdot_engine engine, keel_quant_type type, int n, int groups, const void *weights,
                              int count, const void *activations, size_t activation_row_bytes, float *out,
                              size_t out_stride) {
    const size_t group_bytes = keel_quant_group_bytes(type, n), row_bytes = keel_quant_block_bytes(type) *
                                                                             (size_t)(n / keel_quant_block_values(type));
    const char *group = weights;
    if (engine == KEEL_QDOT_AVX512_VNNI && keel_qdot_engine_available(engine)) {
        keel_quant_groups_avx512(type, n, groups, weights, group_bytes, count, activations, activation_row_bytes, out,
                                 out_stride);
        return;
    }
    if (engine != KEEL_QDOT_SCALAR && keel_qdot_engine_available(engine)) {
        // Q4_0's nibbles and Q5_0's five bits are taken unsigned: Σ (q − 8)·a = Σ q·a − 8 · Σ a (16 for Q5_0),
        // with Σ a per activation block once.
        int32_t *sums = NULL;
        if (type == KEEL_QUANT_Q4_0 || type == KEEL_QUANT_Q5_0) {
            const int32_t shift = type == KEEL_QUANT_Q4_0 ? 8 : 16;
            const int blocks = n / QK8_0;
            sums = keel_scratch(malloc(sizeof(int32_t) * (size_t)blocks * (size_t)count), sizeof(int32_t) * (size_t)blocks * (size_t)count);
            for (int t = 0; t < count; t++) {
                const block_q8_0 *y = (const block_q8_0 *)((const char *)activations + t * activation_row_bytes);
                for (int b = 0; b < blocks; b++) sums[t * blocks + b] = shift * keel_q8_0_sum(&y[b]);
            }
        }
        for (int g = 0; g < groups; g++, group += group_bytes) {
            // The group's bytes stay in cache while every activation row takes them, four at a time.
            for (int t = 0; t < count;) {
                const int take = count - t >= 4 ? 4 : 1;
                keel_quant_group_x86(engine, type, n, group, take, (const char *)activations + t * activation_row_bytes,
                                     activation_row_bytes, sums ? sums + t * (n / QK8_0) : NULL, out + t * out_stride + 8 * g,
                                     out_stride);
                t += take;
            }
        }
        free(sums);
        return;
    }
    // The reference: each row's ggml bytes back, and its scalar dot products.
    uint8_t *rows = keel_scratch(malloc(8 * row_bytes), 8 * row_bytes);
    for (int g = 0; g < groups; g++, group += group_bytes) {
        keel_quant_deinterleave(type, n, group, rows, row_bytes);
        for (int r = 0; r < 8; r++) {
            for (int t = 0; t < count; t++) {
                out[t * out_stride + 8 * g + r] = keel_quant_dot(KEEL_QDOT_SCALAR, type, n, rows + r * row_bytes,
                                                                 (const char *)activations + t * activation_row_bytes);
            }
        }
    }
    free(rows);
}
