// Shared pieces of the x86-64 kernels: per-function target attributes (so the files build for
// baseline x86-64 and each path is chosen at run time) and the fixed reduction trees that every
// kernel's batch-invariance argument relies on.
#ifndef BANYAN_X86_H
#define BANYAN_X86_H
#if defined(__x86_64__)
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T256 __attribute__((target("avx2,fma,f16c")))

// Fixed tree: 8 -> 4 (i + i+4) -> 2 (i + i+2) -> 1 (0 + 1).
T256 INLINE float reduce8(__m256 s8) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
}

// Fixed tree: 16 -> 8 (i + i+8), then reduce8's.
T512 INLINE float reduce16(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return reduce8(_mm256_add_ps(lo, hi));
}

#endif
#endif
