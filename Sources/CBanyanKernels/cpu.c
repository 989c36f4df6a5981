#include "CBanyanKernels.h"

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

// Bit 0: avx2+fma+f16c, bit 1: avx512 f/bw/vl, bit 2: avx512_bf16. Computed once (idempotent,
// so a benign race between first callers only repeats the same work).
static int feature_bits(void) {
    static volatile int cached = -1;
    if (cached >= 0) return cached;
    int bits = 0;
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, 0) >= 7 && __get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
        unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
        int ymm_ok = (xcr0 & 0x6) == 0x6;             // SSE + AVX state
        int zmm_ok = ymm_ok && (xcr0 & 0xE0) == 0xE0; // opmask + zmm hi256 + hi16 zmm
        __cpuid_count(7, 0, a, b, c, d);
        int avx2 = (b >> 5) & 1, f512 = (b >> 16) & 1, bw512 = (b >> 30) & 1, vl512 = (b >> 31) & 1;
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        int bf16 = (a1 >> 5) & 1;
        if (avx && avx2 && fma && f16c && ymm_ok) bits |= 1;
        if ((bits & 1) && f512 && bw512 && vl512 && zmm_ok) bits |= 2;
        if ((bits & 2) && bf16) bits |= 4;
        (void)b1; (void)c1; (void)d1;
    }
    cached = bits;
    return bits;
}
int banyan_cpu_has_avx2(void) { return feature_bits() & 1; }
int banyan_cpu_has_avx512(void) { return (feature_bits() >> 1) & 1; }
int banyan_cpu_has_avx512bf16(void) { return (feature_bits() >> 2) & 1; }
int banyan_cpu_is_amd(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    // "AuthenticAMD" in EBX, EDX, ECX order.
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
}
#else
int banyan_cpu_has_avx2(void) { return 0; }
int banyan_cpu_has_avx512(void) { return 0; }
int banyan_cpu_has_avx512bf16(void) { return 0; }
int banyan_cpu_is_amd(void) { return 0; }
#endif
