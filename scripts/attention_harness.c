// Block-attention harness for the AVX2 kernel (attention_x86.c), outside SwiftPM: one KV head, NQ
// queries (NQ / G rows × G query heads) against BLOCKS consecutive full blocks, called as Attention.run
// calls it (the next block passed for prefetch). Prints a hash of the outputs and running sums (equal
// hashes = equal bits between two builds) and the best GFLOP/s (4 · NQ · 32 · D per block) of REPS.
//
//   S=Sources/CBanyanKernels
//   clang -O3 -I$S/include -I$S -DKERNEL='"../Sources/CBanyanKernels/attention_x86.c"' \
//         scripts/attention_harness.c -o /tmp/ah
//   /tmp/ah D NQ G KVTYPE REPS BLOCKS        KVTYPE 0 = f32, 1 = f16, 2 = bf16 (BANYAN_W_*)
//
// Environment: HEADS (query heads per row, default G: q/out rows HEADS·D apart, as in a model);
// STRIDE (bytes between consecutive blocks of the head, as the pool lays them out: 16 KV heads ×
// K and V tiles; V then sits 16 tiles after K); FLUSH (walk 96 MiB before each repetition, so K/V
// come from memory); NOPF (pass no next block).
//
// An A/B of two kernel versions: build each with -DKERNEL pointing at its copy of attention_x86.c
// (e.g. `git show REV:Sources/CBanyanKernels/attention_x86.c > /tmp/old.c`, then
// -I$S -DKERNEL='"/tmp/old.c"') and alternate the runs. The issue 16 numbers in docs/BENCHMARKS.md:
//   FLUSH=1 STRIDE=262144 HEADS=16 /tmp/ah 128 32 1 1 40 128     # sheared shape, f16, 32 queries
//   FLUSH=1 STRIDE=131072 HEADS=32 /tmp/ah 64 8 8 1 40 128       # one sequence's GQA group of 8
//   STRIDE=131072 HEADS=9 /tmp/ah 64 3 3 1 400 16                # cached: 16 blocks stay in L2/L3
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include KERNEL

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s D NQ G KVTYPE [REPS] [BLOCKS]\n", argv[0]);
        return 2;
    }
    long D = atol(argv[1]), nq = atol(argv[2]), G = atol(argv[3]);
    int kt = atoi(argv[4]), reps = argc > 5 ? atoi(argv[5]) : 7;
    long blocks = argc > 6 ? atol(argv[6]) : 128;
    long rowCount = nq / G, H = getenv("HEADS") ? atol(getenv("HEADS")) : G;
    size_t esz = kt == BANYAN_W_F32 ? 4 : 2, tile = 32 * D * esz;
    long stride = getenv("STRIDE") ? atol(getenv("STRIDE")) : (long)tile;
    long vOffset = getenv("STRIDE") ? 16 * (long)tile : blocks * (long)tile;
    size_t bytes = blocks * stride + vOffset;
    char *K = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096), *V = K + vOffset;
    // Small values, so scores stay in range whatever the type.
    if (kt == BANYAN_W_F32) for (size_t i = 0; i < bytes / 4; i++) ((float *)K)[i] = (rand() % 100) / 100.f;
    else for (size_t i = 0; i < bytes; i++) K[i] = rand() & 0x3f;
    float *q = malloc(rowCount * H * D * 4), *out = malloc(rowCount * H * D * 4);
    float *m = malloc(rowCount * H * 4), *l = malloc(rowCount * H * 4);
    for (long i = 0; i < rowCount * H * D; i++) q[i] = (rand() % 100) / 1000.f;
    int32_t *rows = malloc(rowCount * 4), *valid = malloc(rowCount * 4);
    for (long i = 0; i < rowCount; i++) { rows[i] = (int32_t)i; valid[i] = 32; }
    char *flush = getenv("FLUSH") ? malloc(96 << 20) : NULL;
    int prefetch = getenv("NOPF") == NULL;
    double best = 1e9;
    for (int rep = 0; rep < reps; rep++) {
        for (long i = 0; i < rowCount * H; i++) { m[i] = -__builtin_inff(); l[i] = 0; }
        memset(out, 0, rowCount * H * D * 4);
        if (flush) for (long i = 0; i < (96 << 20); i += 64) flush[i]++;
        double t0 = now();
        for (long b = 0; b < blocks; b++) {
            int next = prefetch && b + 1 < blocks;
            banyan_attention_block_avx2(rows, valid, rowCount, q, K + b * stride, V + b * stride, kt, out, m, l, H, D, G, 0,
                                        next ? K + (b + 1) * stride : NULL, next ? V + (b + 1) * stride : NULL);
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    unsigned long hash = 1469598103934665603ul;  // FNV-1a over the output and running-sum bits
    for (long i = 0; i < rowCount * H * D; i++) { uint32_t u; memcpy(&u, out + i, 4); hash = (hash ^ u) * 1099511628211ul; }
    for (long i = 0; i < rowCount * H; i++) { uint32_t u; memcpy(&u, l + i, 4); hash = (hash ^ u) * 1099511628211ul; }
    printf("hash %016lx D=%ld queries=%ld G=%ld kvtype=%d: %.1f GFLOP/s (1 core)\n", hash, D, nq, G, kt,
           4.0 * nq * 32 * blocks * D / best / 1e9);
    return 0;
}
