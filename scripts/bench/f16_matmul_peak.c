// keel_f16_matmul alone on one thread: 768-value rows, 2,048 weight rows, 128 activation rows (a prompt through one
// of the 75M model's MLP products), best of ten, in GFLOP/s — against the machine's multiply-add peak.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "keel_quant.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const int n = 768, rows = 2048, count = 128;
    uint16_t *w = malloc(sizeof(uint16_t) * (size_t)n * rows);
    float *x = malloc(sizeof(float) * (size_t)n * count), *out = malloc(sizeof(float) * (size_t)rows * count);
    for (size_t i = 0; i < (size_t)n * rows; i++) w[i] = keel_fp32_to_fp16((float)(i % 13) / 13);
    for (size_t i = 0; i < (size_t)n * count; i++) x[i] = (float)(i % 7) / 7;
    if (!keel_f16_matmul(KEEL_QDOT_AVX512_VNNI, n, rows, w, count, x, out, rows)) {
        printf("no AVX-512 here: keel_f16_matmul does not run\n");
        return 0;
    }
    double best = 1e9;
    for (int round = 0; round < 10; round++) {
        const double start = now();
        keel_f16_matmul(KEEL_QDOT_AVX512_VNNI, n, rows, w, count, x, out, rows);
        const double elapsed = now() - start;
        if (elapsed < best) best = elapsed;
    }
    printf("%.1f GFLOP/s on one thread\n", 2.0 * n * rows * count / best / 1e9);
    return 0;
}
