// Register-only throughput probes: many independent accumulator chains and no memory traffic, so
// the result is the core's instruction roof (what a perfect kernel could reach), the figure the
// benchmarks put beside the kernels' own rates.
#include "CBanyanKernels.h"

#if defined(__x86_64__)
#include "x86.h"

#define CHAINS 12

T512 static double probe_fma512(long iterations) {
    __m512 a[CHAINS];
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps(0.001f * (float)c);
    __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.0001f);
    for (long i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) a[c] = _mm512_fmadd_ps(a[c], x, y);
        __asm__ volatile("" : "+v"(x));  // keeps the loop from being folded
    }
    __m512 s = a[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, a[c]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 32.0 * CHAINS * (double)iterations;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static double probe_dpbf16(long iterations) {
    __m512 a[CHAINS];
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps(0.001f * (float)c);
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3F80), y = (__m512bh)_mm512_set1_epi16(0x3A83);
    for (long i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) a[c] = _mm512_dpbf16_ps(a[c], x, y);
        __asm__ volatile("" : "+v"(x));
    }
    __m512 s = a[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, a[c]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 64.0 * CHAINS * (double)iterations;  // 32 multiply-adds per instruction
}

T256 static double probe_fma256(long iterations) {
    __m256 a[CHAINS];
    for (int c = 0; c < CHAINS; c++) a[c] = _mm256_set1_ps(0.001f * (float)c);
    __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.0001f);
    for (long i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) a[c] = _mm256_fmadd_ps(a[c], x, y);
        __asm__ volatile("" : "+v"(x));
    }
    __m256 s = a[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, a[c]);
    volatile float sink = reduce8(s);
    (void)sink;
    return 16.0 * CHAINS * (double)iterations;
}

double banyan_peak_probe(int kind, long iterations) {
    switch (kind) {
    case BANYAN_PEAK_F32:
        if (banyan_cpu_has_avx512()) return probe_fma512(iterations);
        if (banyan_cpu_has_avx2()) return probe_fma256(iterations);
        return 0;
    case BANYAN_PEAK_BF16:
        return banyan_cpu_has_avx512bf16() ? probe_dpbf16(iterations) : 0;
    default:
        return 0;
    }
}
#else
double banyan_peak_probe(int kind, long iterations) { (void)kind; (void)iterations; return 0; }
#endif
