// One core's fp32 multiply-add peak: a loop of 12 independent vfmadd231ps chains (enough to hide the latency on
// every x86-64 core measured here), 256-bit and, where the CPU has AVX-512F, 512-bit; the best of 3 runs of each.
// The ceiling that sgemm kernels (OpenBLAS's, Keel's bf16 engines) are compared against.
// Usage: clang -O2 -o fma_peak fma_peak.c && ./fma_peak   (scripts/bench/fma_peak.sh does this)
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)
#define OPERANDS                                                                                                    \
    [a0] "+v"(a[0]), [a1] "+v"(a[1]), [a2] "+v"(a[2]), [a3] "+v"(a[3]), [a4] "+v"(a[4]), [a5] "+v"(a[5]),        \
        [a6] "+v"(a[6]), [a7] "+v"(a[7]), [a8] "+v"(a[8]), [a9] "+v"(a[9]), [a10] "+v"(a[10]), [a11] "+v"(a[11])

enum { ITERATIONS = 30000000 };

// GFLOP/s of `ITERATIONS` × 12 FMAs on LANES-float vectors of TYPE (the best of 3 runs), as function NAME.
#define PEAK(NAME, TARGET, TYPE, SET1, LANES)                                                                       \
    __attribute__((target(TARGET))) static double NAME(void) {                                                      \
        TYPE a[12], x = SET1(0.999f), y = SET1(1e-6f);                                                               \
        for (int i = 0; i < 12; i++) a[i] = SET1((float)i);                                                          \
        double best = 1e9;                                                                                           \
        for (int run = 0; run < 3; run++) {                                                                          \
            double start = now();                                                                                    \
            for (long i = 0; i < ITERATIONS; i++) __asm__ volatile(CHAINS(FMA) : OPERANDS : [x] "v"(x), [y] "v"(y)); \
            double elapsed = now() - start;                                                                          \
            if (elapsed < best) best = elapsed;                                                                      \
        }                                                                                                            \
        return ITERATIONS * 12.0 * LANES * 2 / best / 1e9;                                                           \
    }
#define FMA(k) "vfmadd231ps %[x], %[y], %[a" #k "]\n\t"
PEAK(ymm_peak, "avx2,fma", __m256, _mm256_set1_ps, 8)
PEAK(zmm_peak, "avx512f", __m512, _mm512_set1_ps, 16)

int main(void) {
    printf("256-bit FMA: %.1f GFLOP/s on one thread\n", ymm_peak());
    if (__builtin_cpu_supports("avx512f")) printf("512-bit FMA: %.1f GFLOP/s on one thread\n", zmm_peak());
    else printf("512-bit FMA: no AVX-512F on this CPU\n");
    return 0;
}
