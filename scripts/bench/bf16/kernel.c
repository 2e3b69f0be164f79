// One bf16 product on one thread, split into its parts (pack A, pack B, the block kernel), against OpenBLAS's
// single-threaded sgemm on the same fp32 operands: the best of 5 runs of each. Built by kernel.sh from the
// repository's own bfloat16_gemm.c (included, so its static kernels are timed as they are).
// Usage: kernel M N K ENGINE [TRANSPOSED_A [TRANSPOSED_B]]   (ENGINE: avx512, amx, avx2, portable, avx512f)
#include "../../../Sources/CBFloat16/bfloat16_gemm.c"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s M N K avx512|amx|avx2|portable|avx512f [TRANSPOSED_A [TRANSPOSED_B]]\n", argv[0]); return 64; }
    int m = atoi(argv[1]), n = atoi(argv[2]), k = atoi(argv[3]);
    const char *names[] = {"none", "avx512", "amx", "portable", "avx2", "avx512f"};
    keel_bf16_engine engine = KEEL_BF16_NONE;
    for (int e = 1; e < 6; e++) if (strcmp(argv[4], names[e]) == 0) engine = (keel_bf16_engine)e;
    if (engine == KEEL_BF16_NONE) { fprintf(stderr, "unknown engine %s\n", argv[4]); return 64; }
    int ta = argc > 5 ? atoi(argv[5]) : 0, tb = argc > 6 ? atoi(argv[6]) : 0;
    float *a = malloc(4L * m * k), *b = malloc(4L * k * n), *c = malloc(4L * m * n);
    srand(1);
    for (long i = 0; i < (long)m * k; i++) a[i] = rand() / (float)RAND_MAX - 0.5f;
    for (long i = 0; i < (long)k * n; i++) b[i] = rand() / (float)RAND_MAX - 0.5f;
    uint16_t *pa = aligned_alloc(64, 2 * keel_bf16_packed_count(m, k) + 64), *pb = aligned_alloc(64, 2 * keel_bf16_packed_count(n, k) + 64);
    int row_blocks = (m + 31) / 32, column_blocks = (n + 31) / 32;
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int run = 0; run < 5; run++) {
        double t0 = now();
        keel_bf16_pack_a(engine, ta, m, k, a, ta ? m : k, pa, 0, row_blocks);
        double t1 = now();
        keel_bf16_pack_b(engine, tb, k, n, b, tb ? k : n, pb, 0, column_blocks);
        double t2 = now();
        keel_bf16_gemm_blocks(engine, m, n, k, pa, pb, 1, 0, c, n, 0, row_blocks * column_blocks);
        double t3 = now();
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1, a, ta ? m : k,
                    b, tb ? k : n, 0, c, n);
        double t4 = now(), times[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
        for (int i = 0; i < 4; i++) if (times[i] < best[i]) best[i] = times[i];
    }
    double flops = 2.0 * m * n * k;
    printf("%d×%d×%d %s: pack A %.2f ms, pack B %.2f ms, blocks %.2f ms (%.1f GFLOP/s), with packing %.1f GFLOP/s | "
           "OpenBLAS sgemm %.2f ms (%.1f GFLOP/s)\n", m, n, k, argv[4], best[0] * 1e3, best[1] * 1e3, best[2] * 1e3,
           flops / best[2] / 1e9, flops / (best[0] + best[1] + best[2]) / 1e9, best[3] * 1e3, flops / best[3] / 1e9);
    return 0;
}
