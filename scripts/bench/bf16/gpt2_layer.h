// What the bf16 benchmark harnesses share: the 12 matrix products of one GPT-2 124M layer at 1,024 tokens (B 4 × T
// 256), as (transposed A, transposed B, m, n, k), and a monotonic clock.
#ifndef KEEL_BENCH_GPT2_LAYER_H
#define KEEL_BENCH_GPT2_LAYER_H
#include <time.h>

typedef struct { int transposed_a, transposed_b, m, n, k; const char *name; } product;

static const product gpt2_layer[12] = {
    {0, 0, 1024, 2304, 768, "forward qkv"},   {0, 0, 1024, 768, 768, "forward proj"},
    {0, 0, 1024, 3072, 768, "forward fc"},    {0, 0, 1024, 768, 3072, "forward fcproj"},
    {0, 1, 1024, 768, 2304, "dInput qkv"},    {0, 1, 1024, 768, 768, "dInput proj"},
    {0, 1, 1024, 768, 3072, "dInput fc"},     {0, 1, 1024, 3072, 768, "dInput fcproj"},
    {1, 0, 768, 2304, 1024, "dWeight qkv"},   {1, 0, 768, 768, 1024, "dWeight proj"},
    {1, 0, 768, 3072, 1024, "dWeight fc"},    {1, 0, 3072, 768, 1024, "dWeight fcproj"},
};

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
#endif
