// What the blas engine's rounding costs its products: the 12 products of one GPT-2 124M layer at 1,024 tokens, on
// two threads split as Keel's `gemm` splits them (64-row or 64-column blocks of C, one single-threaded library call
// each), on fp32 operands and on operands first rounded by `keel_bf16_round_rows` (both operands, their rows split
// between the threads, as the blas engine rounds them). Alternated in one process; prints the best of 15 each.
#include "bfloat16_gemm.h"
#include "gpt2_layer.h"
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static product current;
static int rounding;
static float *a, *b, *c, *rounded_a, *rounded_b;
static pthread_barrier_t barrier;

static void *work(void *argument) {
    int t = (int)(long)argument;
    product p = current;
    int a_rows = p.transposed_a ? p.k : p.m, a_columns = p.transposed_a ? p.m : p.k;
    int b_rows = p.transposed_b ? p.n : p.k, b_columns = p.transposed_b ? p.k : p.n;
    const float *x = a, *y = b;
    int lda = a_columns, ldb = b_columns;
    if (rounding) {
        int low = a_rows * t / 2, high = a_rows * (t + 1) / 2;
        keel_bf16_round_rows(KEEL_BF16_AVX2, high - low, a_columns, a + (size_t)low * lda, lda, rounded_a + (size_t)low * lda, lda);
        low = b_rows * t / 2, high = b_rows * (t + 1) / 2;
        keel_bf16_round_rows(KEEL_BF16_AVX2, high - low, b_columns, b + (size_t)low * ldb, ldb, rounded_b + (size_t)low * ldb, ldb);
        pthread_barrier_wait(&barrier);
        x = rounded_a, y = rounded_b;
    }
    int split_rows = p.m >= p.n, total = split_rows ? p.m : p.n, blocks = (total + 63) / 64;
    for (int block = blocks * t / 2; block < blocks * (t + 1) / 2; block++) {
        int start = block * 64, width = total - start < 64 ? total - start : 64;
        enum CBLAS_TRANSPOSE ta = p.transposed_a ? CblasTrans : CblasNoTrans, tb = p.transposed_b ? CblasTrans : CblasNoTrans;
        if (split_rows)
            cblas_sgemm(CblasRowMajor, ta, tb, width, p.n, p.k, 1, p.transposed_a ? x + start : x + (size_t)start * lda, lda, y,
                        ldb, 0, c + (size_t)start * p.n, p.n);
        else
            cblas_sgemm(CblasRowMajor, ta, tb, p.m, width, p.k, 1, x, lda, p.transposed_b ? y + (size_t)start * ldb : y + start,
                        ldb, 0, c + start, p.n);
    }
    return NULL;
}

int main(void) {
    openblas_set_num_threads(1);
    size_t floats = 3072L * 3072;
    a = malloc(floats * 4), b = malloc(floats * 4), c = malloc(floats * 4);
    rounded_a = malloc(floats * 4), rounded_b = malloc(floats * 4);
    for (size_t i = 0; i < floats; i++)
        a[i] = (float)(i % 1013) * 1e-3f, b[i] = (float)(i % 997) * 2e-3f, c[i] = rounded_a[i] = rounded_b[i] = 0;
    pthread_barrier_init(&barrier, NULL, 2);
    double total[2] = {0, 0};
    printf("%-16s %10s %17s\n", "product", "fp32 ms", "rounded + fp32 ms");
    for (int z = 0; z < 12; z++) {
        current = gpt2_layer[z];
        double best[2] = {1e9, 1e9};
        for (int round = 0; round < 30; round++) {
            rounding = round & 1;
            double start = now();
            pthread_t other;
            pthread_create(&other, NULL, work, (void *)1L);
            work((void *)0L);
            pthread_join(other, NULL);
            double time = now() - start;
            if (time < best[rounding]) best[rounding] = time;
        }
        printf("%-16s %10.2f %17.2f\n", current.name, best[0] * 1e3, best[1] * 1e3);
        total[0] += best[0], total[1] += best[1];
    }
    printf("layer: fp32 %.1f ms, rounded + fp32 %.1f ms (%.3f×)\n", total[0] * 1e3, total[1] * 1e3, total[1] / total[0]);
    return 0;
}
