// The bf16 products of one GPT-2 124M layer (and, with an argument, of the output head), timed for two
// builds of bfloat16_gemm.c linked side by side (symbols prefixed v0_ and v1_), alternating between them in
// one process so that the host's slow and fast phases hit both alike. Two threads, split as Keel splits
// them: packing by blocks of both operands, then output blocks. Prints the best time of 15 per version.
#include "bfloat16_gemm.h"
#include "gpt2_layer.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DECLARE(v)                                                                                                  \
    void v##_pack_a(keel_bf16_engine, int, int, int, const float *, int, uint16_t *, int, int);                    \
    void v##_pack_b(keel_bf16_engine, int, int, int, const float *, int, uint16_t *, int, int);                    \
    void v##_blocks(keel_bf16_engine, int, int, int, const uint16_t *, const uint16_t *, float, float, float *,   \
                    int, int, int);                                                                                 \
    keel_bf16_engine v##_engine(void);
DECLARE(v0)
DECLARE(v1)

static product current;
static int version;
static float *a, *b, *c;
static uint16_t *packed_a, *packed_b;
static keel_bf16_engine engine;
static pthread_barrier_t barrier;
static double pack_time[2], block_time[2];

static void *work(void *argument) {
    int t = (int)(long)argument;
    product p = current;
    int row_blocks = (p.m + 31) / 32, column_blocks = (p.n + 31) / 32, all = row_blocks + column_blocks;
    int lda = p.transposed_a ? p.m : p.k, ldb = p.transposed_b ? p.k : p.n;
    pthread_barrier_wait(&barrier);
    double start = now();
    int low = all * t / 2, high = all * (t + 1) / 2;
    int a_low = low < row_blocks ? low : row_blocks, a_high = high < row_blocks ? high : row_blocks;
    int b_low = (low > row_blocks ? low : row_blocks) - row_blocks, b_high = (high > row_blocks ? high : row_blocks) - row_blocks;
    if (a_high > a_low) (version ? v1_pack_a : v0_pack_a)(engine, p.transposed_a, p.m, p.k, a, lda, packed_a, a_low, a_high);
    if (b_high > b_low) (version ? v1_pack_b : v0_pack_b)(engine, p.transposed_b, p.k, p.n, b, ldb, packed_b, b_low, b_high);
    pthread_barrier_wait(&barrier);
    double packed = now();
    int blocks = row_blocks * column_blocks;
    (version ? v1_blocks : v0_blocks)(engine, p.m, p.n, p.k, packed_a, packed_b, 1, 0, c, p.n, blocks * t / 2,
                                       blocks * (t + 1) / 2);
    pthread_barrier_wait(&barrier);
    pack_time[t] = packed - start;
    block_time[t] = now() - packed;
    return NULL;
}

int main(int argc, char **argv) {
    engine = v1_engine();
    // KEEL_BF16_ENGINE names another engine, as it does for keel (the CPU must have it).
    const char *names[] = {"none", "avx512", "amx", "portable", "avx2", "avx512f"}, *chosen = getenv("KEEL_BF16_ENGINE");
    int known = !chosen || !*chosen;
    for (int e = 1; chosen && e < 6; e++)
        if (strcmp(chosen, names[e]) == 0) engine = (keel_bf16_engine)e, known = 1;
    if (!known) {
        // blas multiplies with the fp32 library: no kernel of its own to tune here.
        fprintf(stderr, "KEEL_BF16_ENGINE=%s: not an engine with a kernel (amx, avx512, avx512f, avx2, portable)\n", chosen);
        return 1;
    }
    if (engine == KEEL_BF16_NONE) { fprintf(stderr, "no bf16 engine on this CPU\n"); return 1; }
    printf("engine: %s\n", names[engine]);
    product head[] = {
        {0, 1, 1024, 50304, 768, "head forward"}, {0, 0, 1024, 768, 50304, "head dInput"},
        {1, 0, 50304, 768, 1024, "head dWeight"},
    };
    int use_head = argc > 1 && argv[1][0] == 'h';
    const product *products = use_head ? head : gpt2_layer;
    int count = use_head ? 3 : 12;
    size_t floats = 50304L * 1024, elements = 50304L * 1088;
    a = malloc(floats * 4), b = malloc(floats * 4), c = malloc(floats * 4);
    for (size_t i = 0; i < floats; i++) a[i] = (float)(i % 1013) * 1e-3f, b[i] = (float)(i % 997) * 2e-3f, c[i] = 0;
    packed_a = aligned_alloc(64, elements * 2), packed_b = aligned_alloc(64, elements * 2);
    pthread_barrier_init(&barrier, NULL, 3);
    double total_pack[2] = {0, 0}, total_blocks[2] = {0, 0}, flops = 0;
    printf("%-16s %21s %21s\n", "product", "v0 pack / blocks ms", "v1 pack / blocks ms");
    for (int z = 0; z < count; z++) {
        current = products[z];
        double best_pack[2] = {1e9, 1e9}, best_blocks[2] = {1e9, 1e9};
        for (int round = 0; round < 30; round++) {
            version = round & 1;
            pthread_t threads[2];
            for (long t = 0; t < 2; t++) pthread_create(&threads[t], NULL, work, (void *)t);
            for (int i = 0; i < 3; i++) pthread_barrier_wait(&barrier);
            for (int t = 0; t < 2; t++) pthread_join(threads[t], NULL);
            double p = pack_time[0] > pack_time[1] ? pack_time[0] : pack_time[1];
            double k = block_time[0] > block_time[1] ? block_time[0] : block_time[1];
            if (p < best_pack[version]) best_pack[version] = p;
            if (k < best_blocks[version]) best_blocks[version] = k;
        }
        printf("%-16s %10.2f / %8.2f %10.2f / %8.2f\n", current.name, best_pack[0] * 1e3, best_blocks[0] * 1e3,
               best_pack[1] * 1e3, best_blocks[1] * 1e3);
        for (int v = 0; v < 2; v++) total_pack[v] += best_pack[v], total_blocks[v] += best_blocks[v];
        flops += 2.0 * current.m * current.n * current.k;
    }
    for (int v = 0; v < 2; v++)
        printf("v%d: pack %.1f ms, blocks %.1f ms, %.0f GFLOP/s\n", v, total_pack[v] * 1e3, total_blocks[v] * 1e3,
               flops / (total_pack[v] + total_blocks[v]) / 1e9);
    printf("v0 / v1 time: %.2f\n", (total_pack[0] + total_blocks[0]) / (total_pack[1] + total_blocks[1]));
    return 0;
}
