// The machine's read bandwidth from memory, as decode sees it: THREADS threads (default 2, as the llama.cpp
// comparisons run) each summing its own part of a 1 GiB array that no cache holds, best of 5 passes, in GB/s.
// Decode reads every weight once a token, so tokens/s × weight bytes cannot exceed this for weights no cache holds.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { BYTES = 1 << 30, PASSES = 5 };

typedef struct {
    double *data;
    size_t count;
    double sum;
} part;

static void *touch(void *argument) {
    part *p = argument;
    for (size_t i = 0; i < p->count; i++) p->data[i] = (double)(i & 7);
    return NULL;
}

static void *read_part(void *argument) {
    part *p = argument;
    // Eight independent sums, so the loads, not the adds' latency, set the pace.
    double s[8] = {0};
    for (size_t i = 0; i + 8 <= p->count; i += 8)
        for (int k = 0; k < 8; k++) s[k] += p->data[i + k];
    p->sum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void run(int threads, double *data, size_t count, void *(*body)(void *), double *checksum) {
    pthread_t id[64];
    part parts[64];
    for (int t = 0; t < threads; t++) {
        parts[t] = (part){data + count / threads * t, count / threads, 0};
        pthread_create(&id[t], NULL, body, &parts[t]);
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(id[t], NULL);
        *checksum += parts[t].sum;
    }
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "usage: memory_bandwidth [THREADS 1-64]\n");
        return 64;
    }
    const size_t count = BYTES / sizeof(double);
    double *data = aligned_alloc(64, BYTES), checksum = 0;
    if (!data) {
        fprintf(stderr, "cannot allocate 1 GiB\n");
        return 1;
    }
    run(threads, data, count, touch, &checksum); // each thread's pages placed by that thread, as it will read them
    double best = 1e9;
    for (int pass = 0; pass < PASSES; pass++) {
        const double start = now();
        run(threads, data, count, read_part, &checksum);
        const double elapsed = now() - start;
        if (elapsed < best) best = elapsed;
    }
    printf("%d thread%s: %.1f GB/s read (best of %d passes over 1 GiB; checksum %.0f)\n", threads, threads == 1 ? "" : "s",
           BYTES / best / 1e9, PASSES, checksum);
    free(data);
    return 0;
}
