// Integer-product kernels for quantized weights (GGUF's Q8_0 ... Q6_K, repacked at load).
//
// Arithmetic (the same on every path and for every batch size, so outputs are independent of
// batch composition, and the AVX2 and portable paths give the same bits):
//   - each activation row is quantized per block of 32 to int8: d = amax / 127, q = rint(x · 127 / amax),
//     dsum = d · Σq (banyan_quantize_rows);
//   - per output element and weight sub-block j (16 or 32 elements; activation block b = the 32 that
//     hold it), isum = Σ w_int · q is an exact integer, then, in sub-block order,
//         acc = fma((float)isum, scale_j · d_b, acc)
//         acc = fma(min_j, dsum_b, acc)           (formats with a minimum)
//     where the weight's value is scale_j · w_int + min_j exactly as ggml dequantizes it.
// Integer sums are exact whatever their order, so vector paths only have to keep the float steps.
#include "CBanyanKernels.h"
#include <math.h>
#include <string.h>

// ---- Activations ------------------------------------------------------------------------------

void banyan_quantize_rows(const float *x, long rows, long k, long ldx, int8_t *q, float *d, float *dsum, int32_t *sum16) {
    long nb = k / 32;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        for (long b = 0; b < nb; b++) {
            const float *xb = xr + b * 32;
            float amax = 0;
            for (int i = 0; i < 32; i++) { float a = fabsf(xb[i]); amax = a > amax ? a : amax; }
            float db = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            int8_t *qb = q + r * k + b * 32;
            int half[2] = {0, 0};
            for (int i = 0; i < 32; i++) {
                float v = rintf(xb[i] * id);      // |v| <= 127: x · (127 / amax) rounds to at most 127
                qb[i] = (int8_t)v;
                half[i / 16] += qb[i];
            }
            d[r * nb + b] = db;
            dsum[r * nb + b] = db * (float)(half[0] + half[1]);
            sum16[r * 2 * nb + 2 * b] = half[0];
            sum16[r * 2 * nb + 2 * b + 1] = half[1];
        }
    }
}

// ---- Packed weights ---------------------------------------------------------------------------

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: normalise
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7F800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Scales and minimums of sub-block j of column group g, for its 8 columns.
static inline void group_scales(const banyan_qweight *w, long g, long j, float sc[8], float mn[8]) {
    const uint8_t *s = (const uint8_t *)w->scales + g * w->scale_group_bytes;
    switch (w->scale_format) {
    case BANYAN_QS_F16: {
        const uint16_t *h = (const uint16_t *)(s + j * 16);
        for (int c = 0; c < 8; c++) { sc[c] = half_to_float(h[c]); mn[c] = 0; }
        break;
    }
    case BANYAN_QS_F16_MIN: {
        const uint16_t *h = (const uint16_t *)(s + j * 48);
        const float *m = (const float *)(s + j * 48 + 16);
        for (int c = 0; c < 8; c++) { sc[c] = half_to_float(h[c]); mn[c] = m[c]; }
        break;
    }
    case BANYAN_QS_K: {  // per 256: 8 d (f16), 8 dmin (f16), [8 sub][8] scale u8, [8 sub][8] min u8
        const uint8_t *sb = s + (j / 8) * 160;
        const uint16_t *dd = (const uint16_t *)sb, *dm = (const uint16_t *)(sb + 16);
        const uint8_t *scs = sb + 32 + (j % 8) * 8, *mns = sb + 96 + (j % 8) * 8;
        for (int c = 0; c < 8; c++) {
            sc[c] = half_to_float(dd[c]) * (float)scs[c];
            mn[c] = -(half_to_float(dm[c]) * (float)mns[c]);
        }
        break;
    }
    case BANYAN_QS_K6: {  // per 256: 8 d (f16), [16 sub][8] scale i8
        const uint8_t *sb = s + (j / 16) * 144;
        const uint16_t *dd = (const uint16_t *)sb;
        const int8_t *scs = (const int8_t *)(sb + 16 + (j % 16) * 8);
        for (int c = 0; c < 8; c++) { sc[c] = half_to_float(dd[c]) * (float)scs[c]; mn[c] = 0; }
        break;
    }
    }
}

static inline int has_min(const banyan_qweight *w) {
    return w->scale_format == BANYAN_QS_F16_MIN || w->scale_format == BANYAN_QS_K;
}

// Integer dot product of sub-block j of column c (0..7 in its group) with activation bytes xq.
static inline int32_t isum_portable(const banyan_qweight *w, const int8_t *wg, long j, int c, const int8_t *xq) {
    int32_t s = 0;
    long S = w->sub_block;
    if (w->format == BANYAN_Q_P8) {
        const int8_t *ws = wg + j * S * 8;          // S/4 chunks of [8 columns][4 bytes]
        for (long t = 0; t < S / 4; t++)
            for (int i = 0; i < 4; i++) s += (int32_t)ws[t * 32 + c * 4 + i] * xq[t * 4 + i];
    } else if (w->format == BANYAN_Q_P6) {           // half p of a 32-block: chunks 2p, 2p+1
        const uint8_t *b32 = (const uint8_t *)wg + (j / 2) * 192;
        long p = j % 2;
        for (long u = 0; u < 2; u++)
            for (int i = 0; i < 4; i++) {
                uint8_t v = b32[(2 * p + u) * 32 + c * 4 + i], h = b32[128 + p * 32 + c * 4 + i];
                int32_t lo = (int32_t)((v & 15) | ((h >> (4 * u)) & 3) << 4) - 32;
                int32_t hi = (int32_t)((v >> 4) | ((h >> (4 * u + 2)) & 3) << 4) - 32;
                s += lo * xq[u * 8 + i] + hi * xq[u * 8 + 4 + i];
            }
    } else {                                          // P4: 4 chunks of [8 columns][4 bytes], 2 nibbles each
        const uint8_t *ws = (const uint8_t *)wg + j * 128;
        for (long t = 0; t < 4; t++)
            for (int i = 0; i < 4; i++) {
                uint8_t v = ws[t * 32 + c * 4 + i];
                s += (int32_t)(v & 15) * xq[t * 8 + i] + (int32_t)(v >> 4) * xq[t * 8 + 4 + i];
            }
    }
    return s;
}

static inline long group_weight_bytes(const banyan_qweight *w) {
    return w->format == BANYAN_Q_P8 ? w->k * 8 : w->format == BANYAN_Q_P6 ? w->k * 6 : w->k * 4;
}

void banyan_qmatmul_portable(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                             const int32_t *xs16, long rows, long g0, long g1, float *out, long ldo) {
    (void)xs16;  // the portable path subtracts P6's offset per element
    long S = w->sub_block, nsub = w->k / S, nb = w->k / 32;
    int minimum = has_min(w);
    for (long g = g0; g < g1; g++) {
        const int8_t *wg = w->weights + g * group_weight_bytes(w);
        for (long r = 0; r < rows; r++) {
            float acc[8] = {0};
            for (long j = 0; j < nsub; j++) {
                float sc[8], mn[8];
                group_scales(w, g, j, sc, mn);
                long b = j * S / 32;
                float d = xd[r * nb + b], ds = xds[r * nb + b];
                const int8_t *xs = xq + r * w->k + j * S;
                for (int c = 0; c < 8; c++) {
                    float t = sc[c] * d;
                    acc[c] = fmaf((float)isum_portable(w, wg, j, c, xs), t, acc[c]);
                    if (minimum) acc[c] = fmaf(mn[c], ds, acc[c]);
                }
            }
            for (int c = 0; c < 8 && g * 8 + c < w->n; c++) out[r * ldo + g * 8 + c] = acc[c];
        }
    }
}

// ---- AVX2 ---------------------------------------------------------------------------------------

#if defined(__x86_64__)
#include "x86.h"

#ifndef PREFETCH
#define PREFETCH 2048
#endif

T256 INLINE __m256 half8(const uint16_t *h) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)); }

// The same values as group_scales, 8 lanes at once (products in the same order: IEEE, so equal bits).
T256 INLINE void group_scales8(const banyan_qweight *w, long g, long j, __m256 *sc, __m256 *mn) {
    const uint8_t *s = (const uint8_t *)w->scales + g * w->scale_group_bytes;
    switch (w->scale_format) {
    case BANYAN_QS_F16:
        *sc = half8((const uint16_t *)(s + j * 16)); *mn = _mm256_setzero_ps();
        break;
    case BANYAN_QS_F16_MIN:
        *sc = half8((const uint16_t *)(s + j * 48)); *mn = _mm256_loadu_ps((const float *)(s + j * 48 + 16));
        break;
    case BANYAN_QS_K: {
        const uint8_t *sb = s + (j / 8) * 160;
        __m256 d = half8((const uint16_t *)sb), dm = half8((const uint16_t *)(sb + 16));
        __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 32 + (j % 8) * 8))));
        __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 96 + (j % 8) * 8))));
        *sc = _mm256_mul_ps(d, a);
        *mn = _mm256_xor_ps(_mm256_mul_ps(dm, m), _mm256_set1_ps(-0.0f));
        break;
    }
    default: {  // BANYAN_QS_K6
        const uint8_t *sb = s + (j / 16) * 144;
        __m256 d = half8((const uint16_t *)sb);
        __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 16 + (j % 16) * 8))));
        *sc = _mm256_mul_ps(d, a); *mn = _mm256_setzero_ps();
        break;
    }
    }
}

T256 INLINE __m256i bcast4(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return _mm256_set1_epi32(v); }

// One tile: MR activation rows x one column group (8 outputs), over all of k. MR is a constant
// at each call site, so the row loops unroll.
T256 INLINE void tile_avx2(const banyan_qweight *w, long g, const int8_t *xq, const float *xd, const float *xds,
                           const int32_t *xs16, long r0, const int MR, float *out, long ldo) {
    const long S = w->sub_block, nsub = w->k / S, nb = w->k / 32, K = w->k;
    const int minimum = has_min(w), pairs = w->int16_sums;
    const int8_t *wg = w->weights + g * group_weight_bytes(w);
    const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(15);
    __m256 acc[4];
    for (int m = 0; m < MR; m++) acc[m] = _mm256_setzero_ps();
    for (long j = 0; j < nsub; j++) {
        __m256i isum[4];
        const int8_t *xs[4];
        for (int m = 0; m < MR; m++) { isum[m] = _mm256_setzero_si256(); xs[m] = xq + (r0 + m) * K + j * S; }
        // Decode streams each weight once from memory: ask for the bytes PREFETCH ahead early
        // (the groups of a task are contiguous, so this runs on into the next group).
        if (w->format == BANYAN_Q_P4 || w->format == BANYAN_Q_P6) {  // measured: helps the 4-bit stream, slows the 8-bit one (tinyllama, Zen 3)
            const char *ahead = (const char *)(wg + (w->format == BANYAN_Q_P4 ? j * 128 : (j / 2) * 192 + (j % 2) * 96)) + PREFETCH;
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
        }
        if (w->format == BANYAN_Q_P4) {
            // 8 u8·s8 pair products summed in int16: |Σ| <= 8 · 2 · 15 · 127 = 30480, no saturation.
            const __m256i *ws = (const __m256i *)(wg + j * 128);
            __m256i s16[4];
            for (int m = 0; m < MR; m++) s16[m] = _mm256_setzero_si256();
            for (int t = 0; t < 4; t++) {
                __m256i v = _mm256_loadu_si256(ws + t);
                __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
                for (int m = 0; m < MR; m++) {
                    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(xs[m] + t * 8)),
                                                 _mm256_maddubs_epi16(hi, bcast4(xs[m] + t * 8 + 4)));
                    s16[m] = _mm256_add_epi16(s16[m], p);
                }
            }
            for (int m = 0; m < MR; m++) isum[m] = _mm256_madd_epi16(s16[m], ones);
        } else if (w->format == BANYAN_Q_P6) {
            // Unsigned 6-bit values q (the element is q − 32): two u8·s8 pair products per int16 sum,
            // |Σ| ≤ 2 · 2 · 63 · 127 = 32004; then Σ(q − 32)·x = Σq·x − 32·Σx with Σx per 16 given.
            const uint8_t *b32 = (const uint8_t *)wg + (j / 2) * 192;
            const int p = (int)(j % 2);
            const __m256i three = _mm256_set1_epi8(3);
            __m256i h = _mm256_loadu_si256((const __m256i *)(b32 + 128 + p * 32));
            for (int u = 0; u < 2; u++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(b32 + (2 * p + u) * 32));
                __m256i hl = _mm256_and_si256(_mm256_srli_epi16(h, 4 * u), three);
                __m256i hh = _mm256_and_si256(_mm256_srli_epi16(h, 4 * u + 2), three);
                __m256i lo = _mm256_or_si256(_mm256_and_si256(v, low4), _mm256_slli_epi16(hl, 4));
                __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), _mm256_slli_epi16(hh, 4));
                for (int m = 0; m < MR; m++) {
                    __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(xs[m] + u * 8)),
                                                   _mm256_maddubs_epi16(hi, bcast4(xs[m] + u * 8 + 4)));
                    isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(s16, ones));
                }
            }
            for (int m = 0; m < MR; m++)
                isum[m] = _mm256_sub_epi32(isum[m], _mm256_set1_epi32(32 * xs16[(r0 + m) * (K / 16) + j]));
        } else {
            // |w| · sign(x, w): u8 · s8 with |w| <= 128, |x| <= 127, so each pair sum fits int16;
            // `pairs` of them are summed in int16 where the format's range allows (see packing).
            const __m256i *ws = (const __m256i *)(wg + j * S * 8);
            const int chunks = (int)(S / 4);
            if (pairs == 1) {  // Q8_0: every pair sum widened at once (no int16 accumulator to add into)
                for (int t = 0; t < chunks; t++) {
                    __m256i v = _mm256_loadu_si256(ws + t), a = _mm256_abs_epi8(v);
                    for (int m = 0; m < MR; m++)
                        isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(
                            _mm256_maddubs_epi16(a, _mm256_sign_epi8(bcast4(xs[m] + t * 4), v)), ones));
                }
            } else for (int t0 = 0; t0 < chunks; t0 += pairs) {
                __m256i s16[4];
                for (int m = 0; m < MR; m++) s16[m] = _mm256_setzero_si256();
                for (int t = t0; t < t0 + pairs; t++) {
                    __m256i v = _mm256_loadu_si256(ws + t), a = _mm256_abs_epi8(v);
                    for (int m = 0; m < MR; m++)
                        s16[m] = _mm256_add_epi16(s16[m], _mm256_maddubs_epi16(a, _mm256_sign_epi8(bcast4(xs[m] + t * 4), v)));
                }
                for (int m = 0; m < MR; m++) isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(s16[m], ones));
            }
        }
        __m256 sc, mn;
        group_scales8(w, g, j, &sc, &mn);
        long b = j * S / 32;
        for (int m = 0; m < MR; m++) {
            __m256 t = _mm256_mul_ps(sc, _mm256_set1_ps(xd[(r0 + m) * nb + b]));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[m]), t, acc[m]);
            if (minimum) acc[m] = _mm256_fmadd_ps(mn, _mm256_set1_ps(xds[(r0 + m) * nb + b]), acc[m]);
        }
    }
    long valid = w->n - g * 8;
    for (int m = 0; m < MR; m++) {
        float *o = out + (r0 + m) * ldo + g * 8;
        if (valid >= 8) _mm256_storeu_ps(o, acc[m]);
        else { float tmp[8]; _mm256_storeu_ps(tmp, acc[m]); for (long c = 0; c < valid; c++) o[c] = tmp[c]; }
    }
}

T256 void banyan_qmatmul_avx2(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                              const int32_t *xs16, long rows, long g0, long g1, float *out, long ldo) {
    for (long g = g0; g < g1; g++) {
        long r = 0;
        for (; r + 4 <= rows; r += 4) tile_avx2(w, g, xq, xd, xds, xs16, r, 4, out, ldo);
        switch (rows - r) {
        case 3: tile_avx2(w, g, xq, xd, xds, xs16, r, 3, out, ldo); break;
        case 2: tile_avx2(w, g, xq, xd, xds, xs16, r, 2, out, ldo); break;
        case 1: tile_avx2(w, g, xq, xd, xds, xs16, r, 1, out, ldo); break;
        default: break;
        }
    }
}
#else
void banyan_qmatmul_avx2(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                         const int32_t *xs16, long rows, long g0, long g1, float *out, long ldo) {
    banyan_qmatmul_portable(w, xq, xd, xds, xs16, rows, g0, g1, out, ldo);
}
#endif
