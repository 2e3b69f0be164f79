// fp32 rows times a vector, for generation from an fp32 model: a token's step reads every weight once, so this is
// memory-bound. One row at a time, as one stream per thread (four rows at once, four streams, ran no faster than
// OpenBLAS's sgemv, which ran at 0.8× llama.cpp's speed on the same weights; one stream ran at its speed). Every
// engine adds element i of a row into lane i mod 32, multiplies and adds without contraction, and adds the lanes in
// one fixed tree, so all give the same bits.
#include "keel_quant.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx2,avx512f")))

/// The 32 lanes added as four vectors of eight, ((0 + 1) + (2 + 3)), then halved three times (j + j+4, j + j+2,
/// 0 + 1) — the F16 dot product's tree.
static float lanes_total(const float lanes[32]) {
    float s[8], h4[4];
    for (int j = 0; j < 8; j++) s[j] = (lanes[j] + lanes[8 + j]) + (lanes[16 + j] + lanes[24 + j]);
    for (int j = 0; j < 4; j++) h4[j] = s[j] + s[j + 4];
    return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

/// The elements past the last whole 32 (lane i mod 32 as ever), then the tree.
static float finish(float lanes[32], int n, const float *w, const float *x) {
    for (int i = n / 32 * 32; i < n; i++) lanes[i % 32] += w[i] * x[i];
    return lanes_total(lanes);
}

static void matvec_scalar(int rows, int n, const float *w, size_t ldw, const float *x, float *out) {
    for (int r = 0; r < rows; r++, w += ldw) {
        float lanes[32] = {0};
        for (int i = 0; i + 32 <= n; i += 32)
            for (int j = 0; j < 32; j++) lanes[j] += w[i + j] * x[i + j];
        out[r] = finish(lanes, n, w, x);
    }
}

AVX2 static void matvec_avx2(int rows, int n, const float *w, size_t ldw, const float *x, float *out) {
    for (int r = 0; r < rows; r++, w += ldw) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int i = 0; i + 32 <= n; i += 32)
            for (int q = 0; q < 4; q++)
                acc[q] = _mm256_add_ps(acc[q], _mm256_mul_ps(_mm256_loadu_ps(w + i + 8 * q), _mm256_loadu_ps(x + i + 8 * q)));
        float lanes[32];
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(lanes + 8 * q, acc[q]);
        out[r] = finish(lanes, n, w, x);
    }
}

AVX512 static void matvec_avx512(int rows, int n, const float *w, size_t ldw, const float *x, float *out) {
    for (int r = 0; r < rows; r++, w += ldw) {
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        for (int i = 0; i + 32 <= n; i += 32) {
            acc0 = _mm512_add_ps(acc0, _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i)));
            acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16)));
        }
        float lanes[32];
        _mm512_storeu_ps(lanes, acc0);
        _mm512_storeu_ps(lanes + 16, acc1);
        out[r] = finish(lanes, n, w, x);
    }
}

void keel_f32_matvec(keel_qdot_engine engine, int rows, int n, const float *w, size_t ldw, const float *x, float *out) {
    if (engine != KEEL_QDOT_SCALAR && keel_qdot_engine_available(engine)) {
        // AVX512-VNNI implies AVX-512F; the other engines have AVX2.
        if (engine == KEEL_QDOT_AVX512_VNNI) matvec_avx512(rows, n, w, ldw, x, out);
        else matvec_avx2(rows, n, w, ldw, x, out);
        return;
    }
    matvec_scalar(rows, n, w, ldw, x, out);
}
