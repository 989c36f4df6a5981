// Exact-precision matmul kernels for x86-64 (AVX-512 and AVX2). Each function carries its own
// target attribute so the file builds for baseline x86-64; Swift picks a path from CPUID.
//
// Reduction order (what batch invariance rests on): every output element is ONE vector
// accumulator chain acc = fma(x[k..k+L], w[k..k+L], acc) over k in steps of L (16 lanes for
// AVX-512, 8 for AVX2), the last step zero-padded, followed by a fixed tree reduction.
// Tiles of any shape (MR rows x NR weight rows), K blocks (the vector accumulator is spilled
// to memory exactly, never reduced early), packed copies of x and column ranges all run that
// same sequence.
#include "CBanyanKernels.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include "x86.h"

#ifndef GEMV_NR
#define GEMV_NR 8
#endif

enum { MR512 = 8, NR512 = 3, MR256 = 4, NR256 = 3, NR_GEMV = GEMV_NR, MR_MAX = 8 };

// Per-thread scratch for spilled accumulators; grows, lives as long as the thread.
static _Thread_local float *scratch = NULL;
static _Thread_local size_t scratch_floats = 0;

static float *scratch_for(size_t floats) {
    if (floats > scratch_floats) {
        free(scratch);
        size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
        scratch = aligned_alloc(64, bytes);
        scratch_floats = scratch ? floats : 0;
    }
    return scratch;
}

// Rows in a K block for M > 1: the x tile (MR rows x KC floats) stays in L1 while the W
// block streams past it. Any multiple of the lane count gives the same bits.
static long k_block(long k, long lanes_times_32) {
    return k <= 768 ? k : lanes_times_32;
}

// ================================ AVX-512 ===================================================

T512 INLINE __m512 w16(int wt, const void *w, long i) {
    if (wt == BANYAN_W_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (wt == BANYAN_W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

T512 INLINE __m512 w16_masked(int wt, const void *w, long i, __mmask16 m) {
    if (wt == BANYAN_W_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (wt == BANYAN_W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline size_t wsize(int wt) { return wt == BANYAN_W_F32 ? 4 : 2; }

// One MR x NR tile over kc columns of k. acc: spilled accumulators, [NR][MR_MAX][16].
T512 INLINE void tile512(int wt, int MR, int NR, const float *x, long ldx, const char *w, long ldw,
                         long kc, float *acc, int first, int last, float *out, long ldo) {
    __m512 a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc + (j * MR_MAX + i) * 16);
    long kk = 0;
    for (; kk + 16 <= kc; kk += 16) {
        __m512 wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = w16(wt, w + j * ldw * wsize(wt), kk);
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * ldx + kk);
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    if (kk < kc) {
        __mmask16 m = (__mmask16)((1u << (kc - kk)) - 1);
        __m512 wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = w16_masked(wt, w + j * ldw * wsize(wt), kk, m);
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + kk);
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (last) out[i * ldo + j] = reduce16(a[i][j]);
            else _mm512_store_ps(acc + (j * MR_MAX + i) * 16, a[i][j]);
        }
}

#define TILE_ARGS x, ldx, w, ldw, kc, acc, first, last, out, ldo
#define CASES_MR(T, WT, NR)                                                                       \
    case 1 * 16 + NR: T(WT, 1, NR, TILE_ARGS); break;                                             \
    case 2 * 16 + NR: T(WT, 2, NR, TILE_ARGS); break;                                             \
    case 3 * 16 + NR: T(WT, 3, NR, TILE_ARGS); break;                                             \
    case 4 * 16 + NR: T(WT, 4, NR, TILE_ARGS); break;                                             \
    case 5 * 16 + NR: T(WT, 5, NR, TILE_ARGS); break;                                             \
    case 6 * 16 + NR: T(WT, 6, NR, TILE_ARGS); break;                                             \
    case 7 * 16 + NR: T(WT, 7, NR, TILE_ARGS); break;                                             \
    case 8 * 16 + NR: T(WT, 8, NR, TILE_ARGS); break;

#define DEFINE_TILE_DISPATCH(NAME, T, TARGET, WT)                                                 \
    TARGET static void NAME(int mr, int nr, const float *x, long ldx, const char *w, long ldw,    \
                            long kc, float *acc, int first, int last, float *out, long ldo) {     \
        switch (mr * 16 + nr) {                                                                   \
            CASES_MR(T, WT, 1)                                                                    \
            CASES_MR(T, WT, 2)                                                                    \
            CASES_MR(T, WT, 3)                                                                    \
            case 1 * 16 + 4: T(WT, 1, 4, TILE_ARGS); break;                                       \
            case 1 * 16 + 5: T(WT, 1, 5, TILE_ARGS); break;                                       \
            case 1 * 16 + 6: T(WT, 1, 6, TILE_ARGS); break;                                       \
            case 1 * 16 + 7: T(WT, 1, 7, TILE_ARGS); break;                                       \
            case 1 * 16 + 8: T(WT, 1, 8, TILE_ARGS); break;                                       \
            default: abort();                                                                     \
        }                                                                                         \
    }

DEFINE_TILE_DISPATCH(tiles512_f32, tile512, T512, BANYAN_W_F32)
DEFINE_TILE_DISPATCH(tiles512_f16, tile512, T512, BANYAN_W_F16)
DEFINE_TILE_DISPATCH(tiles512_bf16, tile512, T512, BANYAN_W_BF16)

// Packed-x variant for M > 1: the x tile is copied to [kc/16][MR][16] (zero-padded), so its
// rows never alias in L1 however large K's stride, and the next W panel is prefetched while this
// one computes. Same FMA sequence per element as tile512 (padded lanes add x 0 * w 0).
T512 INLINE void tile512p(int wt, int MR, int NR, const float *xp, const char *w, long ldw, long kc,
                          const char *wnext, float *acc, int first, int last, float *out, long ldo) {
    size_t es = wsize(wt);
    __m512 a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc + (j * MR_MAX + i) * 16);
    long kk = 0;
    for (; kk + 16 <= kc; kk += 16) {
        if (((kk * (long)es) & 63) == 0)  // once per cache line of W
            for (int j = 0; j < NR; j++) _mm_prefetch(wnext + (j * ldw + kk) * es, _MM_HINT_T0);
        __m512 wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = w16(wt, w + j * ldw * es, kk);
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_load_ps(xp + i * 16);
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
        xp += MR * 16;
    }
    if (kk < kc) {
        __mmask16 m = (__mmask16)((1u << (kc - kk)) - 1);
        __m512 wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = w16_masked(wt, w + j * ldw * es, kk, m);
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_load_ps(xp + i * 16);
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (last) out[i * ldo + j] = reduce16(a[i][j]);
            else _mm512_store_ps(acc + (j * MR_MAX + i) * 16, a[i][j]);
        }
}

#define PTILE_ARGS xp, w, ldw, kc, wnext, acc, first, last, out, ldo
#define PCASES_MR(WT, NR)                                                                         \
    case 1 * 16 + NR: tile512p(WT, 1, NR, PTILE_ARGS); break;                                     \
    case 2 * 16 + NR: tile512p(WT, 2, NR, PTILE_ARGS); break;                                     \
    case 3 * 16 + NR: tile512p(WT, 3, NR, PTILE_ARGS); break;                                     \
    case 4 * 16 + NR: tile512p(WT, 4, NR, PTILE_ARGS); break;                                     \
    case 5 * 16 + NR: tile512p(WT, 5, NR, PTILE_ARGS); break;                                     \
    case 6 * 16 + NR: tile512p(WT, 6, NR, PTILE_ARGS); break;                                     \
    case 7 * 16 + NR: tile512p(WT, 7, NR, PTILE_ARGS); break;                                     \
    case 8 * 16 + NR: tile512p(WT, 8, NR, PTILE_ARGS); break;
#define DEFINE_PTILE_DISPATCH(NAME, WT)                                                           \
    T512 static void NAME(int mr, int nr, const float *xp, const char *w, long ldw, long kc,      \
                          const char *wnext, float *acc, int first, int last, float *out, long ldo) { \
        switch (mr * 16 + nr) {                                                                   \
            PCASES_MR(WT, 1)                                                                      \
            PCASES_MR(WT, 2)                                                                      \
            PCASES_MR(WT, 3)                                                                      \
            default: abort();                                                                     \
        }                                                                                         \
    }
DEFINE_PTILE_DISPATCH(ptiles512_f32, BANYAN_W_F32)
DEFINE_PTILE_DISPATCH(ptiles512_f16, BANYAN_W_F16)
DEFINE_PTILE_DISPATCH(ptiles512_bf16, BANYAN_W_BF16)
typedef void (*ptile_fn)(int, int, const float *, const char *, long, long, const char *, float *, int,
                         int, float *, long);

// x tile [mr rows, kc] -> [kc/16][mr][16], the last 16-step zero-padded.
T512 static void pack_x512(const float *x, long ldx, int mr, long kc, float *xp) {
    for (long kk = 0; kk < kc; kk += 16) {
        __mmask16 m = (__mmask16)(kc - kk >= 16 ? 0xFFFF : (1u << (kc - kk)) - 1);
        for (int i = 0; i < mr; i++, xp += 16) _mm512_store_ps(xp, _mm512_maskz_loadu_ps(m, x + i * ldx + kk));
    }
}

static _Thread_local float *xpack = NULL;
static _Thread_local size_t xpack_floats = 0;

static void drive512p(ptile_fn tiles, const float *x, long rows, long k, const char *w, int wt,
                      long n0, long n1, float *out, long ldo) {
    size_t es = wsize(wt);
    long kcb = k_block(k, 16 * 32);
    size_t xfl = (size_t)MR512 * ((kcb + 15) / 16 * 16);
    if (xfl > xpack_floats) {
        free(xpack);
        xpack = aligned_alloc(64, xfl * 4);
        if (!xpack) abort();
        xpack_floats = xfl;
    }
    float *acc = NULL;
    if (kcb < k) {
        acc = scratch_for((size_t)(n1 - n0 + NR512) * MR_MAX * 16);
        if (!acc) abort();
    }
    for (long m = 0; m < rows; m += MR512) {
        int mr = (int)(rows - m < MR512 ? rows - m : MR512);
        for (long kb = 0; kb < k; kb += kcb) {
            long kc = k - kb < kcb ? k - kb : kcb;
            int first = kb == 0, last = kb + kc == k;
            pack_x512(x + m * k + kb, k, mr, kc, xpack);
            for (long n = n0; n < n1; n += NR512) {
                int r = (int)(n1 - n < NR512 ? n1 - n : NR512);
                const char *wt0 = w + (n * k + kb) * es;
                tiles(mr, r, xpack, wt0, k, kc, wt0 + NR512 * k * es,
                      acc ? acc + (n - n0) * MR_MAX * 16 : NULL, first, last, out + m * ldo + n, ldo);
            }
        }
    }
}

typedef void (*tile_fn)(int, int, const float *, long, const char *, long, long, float *, int, int,
                        float *, long);

// Shared blocking driver: GEMV streams each weight row once with NR_GEMV chains; M > 1 walks
// MR-row tiles, K blocks that keep the x tile in L1, and NR-row weight panels.
static void drive(tile_fn tiles, int lanes, int mr_max, int nr, const float *x, long rows, long k,
                  const void *wv, int wt, long n0, long n1, float *out, long ldo) {
    const char *w = wv;
    size_t es = wsize(wt);
    if (rows == 1) {
        for (long n = n0; n < n1; n += NR_GEMV) {
            int r = (int)(n1 - n < NR_GEMV ? n1 - n : NR_GEMV);
            tiles(1, r, x, k, w + n * k * es, k, k, NULL, 1, 1, out + n, ldo);
        }
        return;
    }
    long kcb = k_block(k, lanes * 32);
    float *acc = NULL;
    if (kcb < k) {
        acc = scratch_for((size_t)(n1 - n0 + nr) * MR_MAX * 16);
        if (!acc) abort();
    }
    for (long m = 0; m < rows; m += mr_max) {
        int mr = (int)(rows - m < mr_max ? rows - m : mr_max);
        for (long kb = 0; kb < k; kb += kcb) {
            long kc = k - kb < kcb ? k - kb : kcb;
            int first = kb == 0, last = kb + kc == k;
            for (long n = n0; n < n1; n += nr) {
                int r = (int)(n1 - n < nr ? n1 - n : nr);
                tiles(mr, r, x + m * k + kb, k, w + (n * k + kb) * es, k, kc,
                      acc ? acc + (n - n0) * MR_MAX * 16 : NULL, first, last, out + m * ldo + n, ldo);
            }
        }
    }
}

void banyan_matmul_avx512(const float *x, long rows, long k, const void *w, int wtype, long n0,
                          long n1, float *out, long ldo) {
    // Packing x pays off while W streams from L3 and few row tiles reuse it (decode batches);
    // for M > 64 (prefill) the unpacked driver measured as fast or faster (-3..-10% packed at K = 5632).
    if (rows > 1 && rows <= 64) {
        ptile_fn p = wtype == BANYAN_W_F32 ? ptiles512_f32 : wtype == BANYAN_W_F16 ? ptiles512_f16 : ptiles512_bf16;
        drive512p(p, x, rows, k, w, wtype, n0, n1, out, ldo);
        return;
    }
    tile_fn t = wtype == BANYAN_W_F32 ? tiles512_f32 : wtype == BANYAN_W_F16 ? tiles512_f16 : tiles512_bf16;
    drive(t, 16, MR512, NR512, x, rows, k, w, wtype, n0, n1, out, ldo);
}

// ============================ AVX-512 BF16 ("fast") =========================================
// x is rounded to bf16 (nearest even) on the fly; per element one 16-lane vdpbf16ps chain over
// k in steps of 32 (last step zero-padded), then reduce16. Same tiling/blocking as above.

#define TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))

TBF16 INLINE void tile_fast(int wt, int MR, int NR, const float *x, long ldx, const char *w, long ldw,
                            long kc, float *acc, int first, int last, float *out, long ldo) {
    (void)wt;
    const uint16_t *wb = (const uint16_t *)w;
    __m512 a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc + (j * MR_MAX + i) * 16);
    long kk = 0;
    for (; kk + 32 <= kc; kk += 32) {
        __m512bh wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = (__m512bh)_mm512_loadu_si512(wb + j * ldw + kk);
        for (int i = 0; i < MR; i++) {
            const float *xr = x + i * ldx + kk;
            __m512bh xv = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xr + 16), _mm512_loadu_ps(xr));
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_dpbf16_ps(a[i][j], xv, wv[j]);
        }
    }
    if (kk < kc) {
        long r = kc - kk;
        __mmask32 m = (__mmask32)((1ull << r) - 1);
        __mmask16 lo = (__mmask16)(r >= 16 ? 0xFFFF : (1u << r) - 1);
        __mmask16 hi = (__mmask16)(r <= 16 ? 0 : (1u << (r - 16)) - 1);
        __m512bh wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, wb + j * ldw + kk);
        for (int i = 0; i < MR; i++) {
            const float *xr = x + i * ldx + kk;
            __m512bh xv = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xr + 16), _mm512_maskz_loadu_ps(lo, xr));
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_dpbf16_ps(a[i][j], xv, wv[j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (last) out[i * ldo + j] = reduce16(a[i][j]);
            else _mm512_store_ps(acc + (j * MR_MAX + i) * 16, a[i][j]);
        }
}

DEFINE_TILE_DISPATCH(tiles_fast, tile_fast, TBF16, BANYAN_W_BF16)

// Packed variant for M > 1: each x tile is rounded to bf16 once ([kc/32][MR][32], zero-padded)
// instead of once per weight panel, which left the conversions, not the dot products, as the
// bottleneck. Rounding (cvtne2ps, nearest even) and every accumulator's chain are the same as
// tile_fast's, so M = 1 and M > 1 give the same bits.
TBF16 static void pack_x_bf16(const float *x, long ldx, int mr, long kc, uint16_t *xp) {
    for (long kk = 0; kk < kc; kk += 32) {
        long r = kc - kk;
        __mmask16 lo = (__mmask16)(r >= 16 ? 0xFFFF : (1u << r) - 1);
        __mmask16 hi = (__mmask16)(r >= 32 ? 0xFFFF : r <= 16 ? 0 : (1u << (r - 16)) - 1);
        for (int i = 0; i < mr; i++, xp += 32) {
            const float *xr = x + i * ldx + kk;
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xr + 16), _mm512_maskz_loadu_ps(lo, xr));
            _mm512_store_si512((void *)xp, (__m512i)v);
        }
    }
}

TBF16 INLINE void tile_fastp(int MR, int NR, const uint16_t *xp, const uint16_t *wb, long ldw, long kc,
                             const uint16_t *wnext, float *acc, int first, int last, float *out, long ldo) {
    __m512 a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc + (j * MR_MAX + i) * 16);
    long kk = 0;
    for (; kk + 32 <= kc; kk += 32) {  // 32 bf16 = one cache line of each W row
        for (int j = 0; j < NR; j++) _mm_prefetch((const char *)(wnext + j * ldw + kk), _MM_HINT_T0);
        __m512bh wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = (__m512bh)_mm512_loadu_si512(wb + j * ldw + kk);
        for (int i = 0; i < MR; i++) {
            __m512bh xv = (__m512bh)_mm512_load_si512((const void *)(xp + i * 32));
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_dpbf16_ps(a[i][j], xv, wv[j]);
        }
        xp += MR * 32;
    }
    if (kk < kc) {
        __mmask32 m = (__mmask32)((1ull << (kc - kk)) - 1);
        __m512bh wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, wb + j * ldw + kk);
        for (int i = 0; i < MR; i++) {
            __m512bh xv = (__m512bh)_mm512_load_si512((const void *)(xp + i * 32));
            for (int j = 0; j < NR; j++) a[i][j] = _mm512_dpbf16_ps(a[i][j], xv, wv[j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (last) out[i * ldo + j] = reduce16(a[i][j]);
            else _mm512_store_ps(acc + (j * MR_MAX + i) * 16, a[i][j]);
        }
}

#define FPTILE_ARGS xp, w, ldw, kc, wnext, acc, first, last, out, ldo
#define FPCASES_MR(NR)                                                                            \
    case 1 * 16 + NR: tile_fastp(1, NR, FPTILE_ARGS); break;                                      \
    case 2 * 16 + NR: tile_fastp(2, NR, FPTILE_ARGS); break;                                      \
    case 3 * 16 + NR: tile_fastp(3, NR, FPTILE_ARGS); break;                                      \
    case 4 * 16 + NR: tile_fastp(4, NR, FPTILE_ARGS); break;                                      \
    case 5 * 16 + NR: tile_fastp(5, NR, FPTILE_ARGS); break;                                      \
    case 6 * 16 + NR: tile_fastp(6, NR, FPTILE_ARGS); break;                                      \
    case 7 * 16 + NR: tile_fastp(7, NR, FPTILE_ARGS); break;                                      \
    case 8 * 16 + NR: tile_fastp(8, NR, FPTILE_ARGS); break;
TBF16 static void ptiles_fast(int mr, int nr, const uint16_t *xp, const uint16_t *w, long ldw, long kc,
                              const uint16_t *wnext, float *acc, int first, int last, float *out, long ldo) {
    switch (mr * 16 + nr) {
        FPCASES_MR(1)
        FPCASES_MR(2)
        FPCASES_MR(3)
        default: abort();
    }
}

static _Thread_local uint16_t *xpack16 = NULL;
static _Thread_local size_t xpack16_count = 0;

#ifndef FAST_KC
#define FAST_KC 1024
#endif

void banyan_matmul_fast_bf16(const float *x, long rows, long k, const uint16_t *w, long n0, long n1,
                             float *out, long ldo) {
    if (rows == 1) {
        drive(tiles_fast, 16, MR512, NR512, x, rows, k, w, BANYAN_W_BF16, n0, n1, out, ldo);
        return;
    }
    long kcb = k <= FAST_KC + FAST_KC / 2 ? k : FAST_KC;  // a multiple of 32: any gives the same bits
    size_t xn = (size_t)MR512 * ((kcb + 31) / 32 * 32);
    if (xn > xpack16_count) {
        free(xpack16);
        xpack16 = aligned_alloc(64, xn * 2);
        if (!xpack16) abort();
        xpack16_count = xn;
    }
    float *acc = NULL;
    if (kcb < k) {
        acc = scratch_for((size_t)(n1 - n0 + NR512) * MR_MAX * 16);
        if (!acc) abort();
    }
    for (long m = 0; m < rows; m += MR512) {
        int mr = (int)(rows - m < MR512 ? rows - m : MR512);
        for (long kb = 0; kb < k; kb += kcb) {
            long kc = k - kb < kcb ? k - kb : kcb;
            int first = kb == 0, last = kb + kc == k;
            pack_x_bf16(x + m * k + kb, k, mr, kc, xpack16);
            for (long n = n0; n < n1; n += NR512) {
                int r = (int)(n1 - n < NR512 ? n1 - n : NR512);
                const uint16_t *wt0 = w + n * k + kb;
                ptiles_fast(mr, r, xpack16, wt0, k, kc, wt0 + NR512 * k,
                            acc ? acc + (n - n0) * MR_MAX * 16 : NULL, first, last, out + m * ldo + n, ldo);
            }
        }
    }
}

// ================================ AVX2 ======================================================

T256 INLINE __m256 w8_at(int wt, const void *w, long i) {
    if (wt == BANYAN_W_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (wt == BANYAN_W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Zero-padded tail of n < 8 elements (copied through a stack buffer: AVX2 has no 16-bit masks).
T256 INLINE __m256 w8_tail(int wt, const void *w, long i, int n) {
    if (wt == BANYAN_W_F32) {
        float b[8] = {0};
        memcpy(b, (const float *)w + i, (size_t)n * 4);
        return _mm256_loadu_ps(b);
    }
    uint16_t b[8] = {0};
    memcpy(b, (const uint16_t *)w + i, (size_t)n * 2);
    return w8_at(wt, b, 0);
}

T256 INLINE __m256 x8_tail(const float *x, int n) {
    float b[8] = {0};
    memcpy(b, x, (size_t)n * 4);
    return _mm256_loadu_ps(b);
}

T256 INLINE void tile256(int wt, int MR, int NR, const float *x, long ldx, const char *w, long ldw,
                         long kc, float *acc, int first, int last, float *out, long ldo) {
    __m256 a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            a[i][j] = first ? _mm256_setzero_ps() : _mm256_load_ps(acc + (j * MR_MAX + i) * 16);
    long kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
        __m256 wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = w8_at(wt, w + j * ldw * wsize(wt), kk);
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * ldx + kk);
            for (int j = 0; j < NR; j++) a[i][j] = _mm256_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    if (kk < kc) {
        int n = (int)(kc - kk);
        __m256 wv[NR];
        for (int j = 0; j < NR; j++) wv[j] = w8_tail(wt, w + j * ldw * wsize(wt), kk, n);
        for (int i = 0; i < MR; i++) {
            __m256 xv = x8_tail(x + i * ldx + kk, n);
            for (int j = 0; j < NR; j++) a[i][j] = _mm256_fmadd_ps(xv, wv[j], a[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (last) out[i * ldo + j] = reduce8(a[i][j]);
            else _mm256_store_ps(acc + (j * MR_MAX + i) * 16, a[i][j]);
        }
}

DEFINE_TILE_DISPATCH(tiles256_f32, tile256, T256, BANYAN_W_F32)
DEFINE_TILE_DISPATCH(tiles256_f16, tile256, T256, BANYAN_W_F16)
DEFINE_TILE_DISPATCH(tiles256_bf16, tile256, T256, BANYAN_W_BF16)

void banyan_matmul_avx2(const float *x, long rows, long k, const void *w, int wtype, long n0,
                        long n1, float *out, long ldo) {
    tile_fn t = wtype == BANYAN_W_F32 ? tiles256_f32 : wtype == BANYAN_W_F16 ? tiles256_f16 : tiles256_bf16;
    drive(t, 8, MR256, NR256, x, rows, k, w, wtype, n0, n1, out, ldo);
}

#else // !__x86_64__: never selected (Swift checks the feature bits), defined for linking.
void banyan_matmul_avx512(const float *x, long rows, long k, const void *w, int wtype, long n0,
                          long n1, float *out, long ldo) { abort(); }
void banyan_matmul_avx2(const float *x, long rows, long k, const void *w, int wtype, long n0,
                        long n1, float *out, long ldo) { abort(); }
void banyan_matmul_fast_bf16(const float *x, long rows, long k, const uint16_t *w, long n0, long n1,
                             float *out, long ldo) { abort(); }
#endif
