// keel_f16_matmul alone on one thread, in GFLOP/s (best of 40), for the two row widths of the 75M model's MLP with a
// 128-token prompt: 2,048 weight rows of 768 values (the up projection: the four-by-four tile) and 768 rows of 2,048
// values (the down projection: the two-by-three tile) — against the machine's multiply-add peak.
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

static void measure(int n, int rows, int count) {
    uint16_t *w = malloc(sizeof(uint16_t) * (size_t)n * rows);
    float *x = malloc(sizeof(float) * (size_t)n * count), *out = malloc(sizeof(float) * (size_t)rows * count);
    for (size_t i = 0; i < (size_t)n * rows; i++) w[i] = keel_fp32_to_fp16((float)(i % 13) / 13);
    for (size_t i = 0; i < (size_t)n * count; i++) x[i] = (float)(i % 7) / 7;
    double best = 1e9;
    for (int round = 0; round < 40; round++) {
        const double start = now();
        keel_f16_matmul(KEEL_QDOT_AVX512_VNNI, n, rows, w, count, x, out, rows);
        const double elapsed = now() - start;
        if (elapsed < best) best = elapsed;
    }
    printf("%d rows of %d values by %d: %.1f GFLOP/s on one thread\n", rows, n, count, 2.0 * n * rows * count / best / 1e9);
    free(w), free(x), free(out);
}

int main(void) {
    uint16_t w[32] = {0};
    float x[32] = {0}, out[1];
    if (!keel_f16_matmul(KEEL_QDOT_AVX512_VNNI, 32, 1, w, 1, x, out, 1)) {
        printf("no AVX-512 here: keel_f16_matmul does not run\n");
        return 0;
    }
    measure(768, 2048, 128);
    measure(2048, 768, 128);
    return 0;
}
