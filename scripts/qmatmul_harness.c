// One-column-group-kernel harness for the integer-product kernels (quant.c), outside SwiftPM:
// random packed weights of one format, one quantized activation row set; checks that the AVX2 path
// gives the portable path's bits, then times banyan_qmatmul_avx2 on THREADS threads (the column
// groups split evenly) and, beside it, a plain 32-byte read of the same weight bytes.
//
//   S=Sources/CBanyanKernels
//   clang -O3 -mavx2 -I$S/include -I$S scripts/qmatmul_harness.c -o /tmp/qmh -lm -lpthread
//   /tmp/qmh FORMAT K N ITERS [ROWS] [THREADS]      FORMAT 0 = P8 (Q8_0), 1 = P4 (Q4_K), 2 = P6 (Q6_K)
//   /tmp/qmh 2 2048 256 300          # one core, 2048×256 in L2
//   /tmp/qmh 0 2048 32000 5 1 2      # 2 threads, 65 MB of Q8_0 from DRAM
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "../Sources/CBanyanKernels/quant.c"

typedef struct { const banyan_qweight *w; const int8_t *xq; const float *xd, *xds; const int16_t *xs16;
                 long rows, g0, g1, n; float *out; int iters; const __m256i *bytes; long vectors; long sink; } job;

static void *kernel(void *p) {
    job *j = p;
    for (int it = 0; it < j->iters; it++)
        banyan_qmatmul_avx2(j->w, j->xq, j->xd, j->xds, j->xs16, j->rows, j->g0, j->g1, j->out, j->n);
    return 0;
}

T256 static void *plain_read(void *p) {
    job *j = p;
    __m256i acc = _mm256_setzero_si256();
    for (int it = 0; it < j->iters; it++)
        for (long i = 0; i < j->vectors; i++) acc = _mm256_add_epi8(acc, _mm256_load_si256(j->bytes + i));
    j->sink = _mm256_extract_epi64(acc, 0);
    return 0;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

// Best of 5 rounds of `iters` calls of fn on T threads; seconds per call.
static double best_time(void *(*fn)(void *), job *jobs, int T) {
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        pthread_t th[64];
        double t0 = now();
        for (int t = 0; t < T; t++) pthread_create(&th[t], 0, fn, &jobs[t]);
        for (int t = 0; t < T; t++) pthread_join(th[t], 0);
        double s = (now() - t0) / jobs[0].iters;
        if (s < best) best = s;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s FORMAT K N ITERS [ROWS] [THREADS]\n", argv[0]); return 2; }
    int fmt = atoi(argv[1]), iters = atoi(argv[4]);
    long k = atol(argv[2]), n = atol(argv[3]), rows = argc > 5 ? atol(argv[5]) : 1;
    int T = argc > 6 ? atoi(argv[6]) : 1;
    if (k % 256 || n % 8 || T < 1 || T > 64 || fmt < 0 || fmt > 2) { fprintf(stderr, "K a multiple of 256, N of 8, 1..64 threads\n"); return 2; }
    banyan_qweight w = {.format = fmt, .k = k, .n = n};
    long gb, sgb;   // weight and scale bytes per column group
    if (fmt == BANYAN_Q_P8) { w.scale_format = BANYAN_QS_F16; w.sub_block = 32; w.int16_sums = 1; gb = k * 8; sgb = k / 32 * 16; }
    else if (fmt == BANYAN_Q_P4) { w.scale_format = BANYAN_QS_K; w.sub_block = 32; w.int16_sums = 8; gb = k * 4; sgb = k / 256 * 160; }
    else { w.scale_format = BANYAN_QS_K6; w.sub_block = 16; gb = k * 6; sgb = k / 256 * 144; }
    w.scale_group_bytes = sgb;
    long groups = n / 8;
    int8_t *wt = aligned_alloc(64, groups * gb);
    uint8_t *sc = aligned_alloc(64, groups * sgb);
    srand(1);
    for (long i = 0; i < groups * gb; i++) wt[i] = (int8_t)rand();
    for (long i = 0; i < groups * sgb; i++) sc[i] = rand() & 0x3f;   // small f16 halves: no NaN scales
    w.weights = wt; w.scales = sc;
    float *x = malloc(rows * k * 4), *out = malloc(rows * n * 4), *ref = malloc(rows * n * 4);
    for (long i = 0; i < rows * k; i++) x[i] = (rand() % 2001 - 1000) * 1e-3f;
    int8_t *xq = malloc(rows * k);
    float *xd = malloc(rows * k / 32 * 4), *xds = malloc(rows * k / 32 * 4);
    int16_t *xs16 = malloc(rows * k / 16 * 2);
    banyan_quantize_rows(x, rows, k, k, xq, xd, xds, xs16);
    banyan_qmatmul_portable(&w, xq, xd, xds, xs16, rows, 0, groups, ref, n);
    banyan_qmatmul_avx2(&w, xq, xd, xds, xs16, rows, 0, groups, out, n);
    if (memcmp(out, ref, rows * n * 4)) { printf("MISMATCH: AVX2 and portable bits differ\n"); return 1; }

    job jobs[64];
    long vectors = groups * gb / 32;
    for (int t = 0; t < T; t++)
        jobs[t] = (job){&w, xq, xd, xds, xs16, rows, groups * t / T, groups * (t + 1) / T, n, out, iters,
                        (const __m256i *)wt + vectors * t / T, vectors * (t + 1) / T - vectors * t / T, 0};
    double s = best_time(kernel, jobs, T), r = best_time(plain_read, jobs, T);
    printf("format %d, %ldx%ld, %ld rows, %d threads: %.3f ms, %.1f GB/s, %.2f Gweights/s (plain read of the weights: %.1f GB/s)\n",
           fmt, k, n, rows, T, s * 1e3, groups * (gb + sgb) / s / 1e9, (double)k * n / s / 1e9, groups * gb / r / 1e9);
    return 0;
}
