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
//     where the weight's value is scale_j · w_int + min_j exactly as ggml dequantizes it;
//   - P6 (Q6_K: int8 scales sc_j per 16 of a float d per 256, value d · sc_j · (q − 32)) sums both 16s of
//     an activation block in integers first: i = Σ_j sc_j · (Σ q · x − 32 · Σx_j), exact (|i| < 2^24),
//     then acc = fma((float)i, d · d_b, acc), one float step per 32.
// Integer sums are exact whatever their order, so vector paths only have to keep the float steps.
#include "CBanyanKernels.h"
#include <math.h>
#include <string.h>

// ---- Activations ------------------------------------------------------------------------------

void banyan_quantize_rows(const float *x, long rows, long k, long ldx, int8_t *q, float *d, float *dsum, int16_t *sum16) {
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
            sum16[r * 2 * nb + 2 * b] = (int16_t)half[0];       // |Σ| ≤ 16 · 127
            sum16[r * 2 * nb + 2 * b + 1] = (int16_t)half[1];
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
    default:  // K6 is P6's alone (qmatmul_p6_portable)
        for (int c = 0; c < 8; c++) { sc[c] = 0; mn[c] = 0; }
        break;
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

// P6, element by element: Σ_j sc_j · Σ (q − 32) · x is the same integer as the AVX2 path's
// Σ_j sc_j · Σ q · x − 32 · Σ_j sc_j · Σx_j, so the same bits follow.
static void qmatmul_p6_portable(const banyan_qweight *w, const int8_t *xq, const float *xd,
                                long rows, long g0, long g1, float *out, long ldo) {
    long K = w->k, nb = K / 32;
    for (long g = g0; g < g1; g++) {
        const uint8_t *wg = (const uint8_t *)w->weights + g * group_weight_bytes(w);
        const uint8_t *sg = (const uint8_t *)w->scales + g * w->scale_group_bytes;
        for (long r = 0; r < rows; r++) {
            float acc[8] = {0};
            for (long b = 0; b < nb; b++) {
                const uint8_t *sb = sg + (b / 8) * 144;
                const int8_t *scs = (const int8_t *)(sb + 16 + (b % 8) * 16);
                float db = xd[r * nb + b];
                for (int c = 0; c < 8; c++) {
                    int32_t total = 0;
                    for (int h = 0; h < 2; h++) {
                        const uint8_t *v = wg + (2 * b + h) * 96 + c * 4;
                        const int8_t *x = xq + r * K + (2 * b + h) * 16;
                        int32_t s = 0;
                        for (int i = 0; i < 4; i++) {
                            for (int t = 0; t < 3; t++) s += ((int32_t)(v[t * 32 + i] & 63) - 32) * x[4 * t + i];
                            int32_t q3 = (v[i] >> 6) | (v[32 + i] >> 6) << 2 | (v[64 + i] >> 6) << 4;
                            s += (q3 - 32) * x[12 + i];
                        }
                        total += scs[c * 2 + h] * s;
                    }
                    acc[c] = fmaf((float)total, half_to_float(((const uint16_t *)sb)[c]) * db, acc[c]);
                }
            }
            for (int c = 0; c < 8 && g * 8 + c < w->n; c++) out[r * ldo + g * 8 + c] = acc[c];
        }
    }
}

void banyan_qmatmul_portable(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                             const int16_t *xs16, long rows, long g0, long g1, float *out, long ldo) {
    (void)xs16;  // the portable path subtracts P6's offset per element
    if (w->format == BANYAN_Q_P6) { qmatmul_p6_portable(w, xq, xd, rows, g0, g1, out, ldo); return; }
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

// banyan_quantize_rows, 8 lanes at a time, with its bits: |x| maxima (max is exact, so any order; a NaN
// lane is skipped as the scalar comparison skips it), the same division and product, rint = round to
// nearest even, integer sums.
T256 void banyan_quantize_rows_avx2(const float *x, long rows, long k, long ldx, int8_t *q, float *d, float *dsum, int16_t *sum16) {
    long nb = k / 32;
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        for (long b = 0; b < nb; b++) {
            const float *xb = xr + b * 32;
            __m256 v[4], m = _mm256_setzero_ps();
            for (int i = 0; i < 4; i++) {
                v[i] = _mm256_loadu_ps(xb + 8 * i);
                m = _mm256_max_ps(_mm256_and_ps(v[i], magnitude), m);   // (a > m) ? a : m, as the scalar loop
            }
            __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
            m4 = _mm_max_ps(_mm_movehl_ps(m4, m4), m4);
            m4 = _mm_max_ss(_mm_movehdup_ps(m4), m4);
            float amax = _mm_cvtss_f32(m4);
            float db = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            __m256i n[4];
            for (int i = 0; i < 4; i++)
                n[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], _mm256_set1_ps(id)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
            _mm256_storeu_si256((__m256i *)(q + r * k + b * 32), _mm256_permutevar8x32_epi32(bytes, order));
            __m256i s01 = _mm256_add_epi32(n[0], n[1]), s23 = _mm256_add_epi32(n[2], n[3]);
            __m256i h = _mm256_hadd_epi32(s01, s23);          // [s01 pairs, s23 pairs] per 128-bit half
            h = _mm256_hadd_epi32(h, h);
            int32_t h0 = _mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 4);
            int32_t h1 = _mm256_extract_epi32(h, 1) + _mm256_extract_epi32(h, 5);
            d[r * nb + b] = db;
            dsum[r * nb + b] = db * (float)(h0 + h1);
            sum16[r * 2 * nb + 2 * b] = (int16_t)h0;
            sum16[r * 2 * nb + 2 * b + 1] = (int16_t)h1;
        }
    }
}

T256 INLINE __m256 half8(const uint16_t *h) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)); }

// The same values as group_scales, 8 lanes at once (products in the same order: IEEE, so equal bits).
T256 INLINE void group_scales8(const banyan_qweight *w, const int SF, long g, long j, __m256 *sc, __m256 *mn) {
    const uint8_t *s = (const uint8_t *)w->scales + g * w->scale_group_bytes;
    switch (SF) {
    case BANYAN_QS_F16:
        *sc = half8((const uint16_t *)(s + j * 16)); *mn = _mm256_setzero_ps();
        break;
    case BANYAN_QS_F16_MIN:
        *sc = half8((const uint16_t *)(s + j * 48)); *mn = _mm256_loadu_ps((const float *)(s + j * 48 + 16));
        break;
    default: {  // BANYAN_QS_K (K6 is P6's alone: tile_p6_avx2)
        const uint8_t *sb = s + (j / 8) * 160;
        __m256 d = half8((const uint16_t *)sb), dm = half8((const uint16_t *)(sb + 16));
        __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 32 + (j % 8) * 8))));
        __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 96 + (j % 8) * 8))));
        *sc = _mm256_mul_ps(d, a);
        *mn = _mm256_xor_ps(_mm256_mul_ps(dm, m), _mm256_set1_ps(-0.0f));
        break;
    }
    }
}

// Decode streams each weight once from memory: every kernel step asks for every line of its
// bytes PREFETCH ahead (the groups of a task are contiguous, so this runs on into the next group).
// Measured on Zen 3, 2 threads, a 65 MB Q8_0 matrix: 25 → 31 GB/s; prefetching only half the lines
// was slower than none.
T256 INLINE void prefetch_ahead(const void *at, const long bytes) {
    for (long o = 0; o < bytes; o += 64) _mm_prefetch((const char *)at + PREFETCH + o, _MM_HINT_T0);
}

T256 INLINE __m256i bcast4(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return _mm256_set1_epi32(v); }

// One tile: MR activation rows x one column group (8 outputs), over all of k, for packed format FMT
// (P4 or P8, sub-blocks of 32) with scale format SF and PAIRS int16 sums (0: the weight's own). All
// are constants at each call site, so the row loops unroll and no format test is left in the loop
// (measured: the tests and a variable prefetch loop cost Q4_K decode ~20%).
T256 INLINE void tile_avx2(const banyan_qweight *w, long g, const int8_t *xq, const float *xd, const float *xds,
                           long r0, const int MR, float *out, long ldo, const int FMT, const int SF, const int PAIRS) {
    const long S = 32, nsub = w->k / S, nb = w->k / 32, K = w->k;
    const int minimum = SF == BANYAN_QS_F16_MIN || SF == BANYAN_QS_K, pairs = PAIRS ? PAIRS : w->int16_sums;
    const int8_t *wg = w->weights + g * group_weight_bytes(w);
    const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(15);
    __m256 acc[4];
    for (int m = 0; m < MR; m++) acc[m] = _mm256_setzero_ps();
    for (long j = 0; j < nsub; j++) {
        __m256i isum[4];
        const int8_t *xs[4];
        for (int m = 0; m < MR; m++) { isum[m] = _mm256_setzero_si256(); xs[m] = xq + (r0 + m) * K + j * S; }
        const long step = FMT == BANYAN_Q_P4 ? 128 : S * 8;
        prefetch_ahead(wg + j * step, step);
        if (FMT == BANYAN_Q_P4) {
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
        group_scales8(w, SF, g, j, &sc, &mn);
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

// P6: one tile of MR rows × one column group. Per 16: the three chunks give four 32-byte vectors of
// 6-bit values (A, B, C from bits 0..5, D gathered from the three top-bit pairs): 11 operations, where
// P4 nibbles plus separate top bits took 21. Both 16s of a 32-block are summed in int32 with their
// int8 scales as madd factors (|Σ| ≤ 2 · 2 · 63 · 127 · 128 per lane), P6's −32 offset taken off once
// as 32 · Σ_j sc_j · Σx_j (one madd of the scale pairs with the activation's two 16-sums).
T256 INLINE void tile_p6_avx2(const banyan_qweight *w, long g, const int8_t *xq, const float *xd, const int16_t *xs16,
                              long r0, const int MR, float *out, long ldo) {
    const long K = w->k, nb = K / 32;
    const uint8_t *wg = (const uint8_t *)w->weights + g * group_weight_bytes(w);
    const uint8_t *sg = (const uint8_t *)w->scales + g * w->scale_group_bytes;
    const __m256i low6 = _mm256_set1_epi8(0x3F), top2 = _mm256_set1_epi8((char)0xC0);
    // Column c's scale pair (sc_{2b}, sc_{2b+1}) sits in int16 lanes 2c, 2c+1; madd wants each 16's
    // scale in both lanes of its column: bytes (0,1,0,1) resp. (2,3,2,3) of every 4.
    const __m256i first = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                                           0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i second = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15,
                                            2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    __m256 acc[4], d = _mm256_setzero_ps();
    for (int m = 0; m < MR; m++) acc[m] = _mm256_setzero_ps();
    for (long b = 0; b < nb; b++) {
        const uint8_t *sb = sg + (b / 8) * 144;
        if (b % 8 == 0) d = half8((const uint16_t *)sb);
        prefetch_ahead(wg + b * 192, 192);
        __m256i pair = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(sb + 16 + (b % 8) * 16)));
        __m256i scale[2] = {_mm256_shuffle_epi8(pair, first), _mm256_shuffle_epi8(pair, second)};
        __m256i isum[4];
        for (int m = 0; m < MR; m++) isum[m] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i *v = (const __m256i *)(wg + (2 * b + h) * 96);
            __m256i v0 = _mm256_loadu_si256(v), v1 = _mm256_loadu_si256(v + 1), v2 = _mm256_loadu_si256(v + 2);
            __m256i a = _mm256_and_si256(v0, low6), bb = _mm256_and_si256(v1, low6), c = _mm256_and_si256(v2, low6);
            // Top pairs at bits 6..7 → D's bits 0..1, 2..3, 4..5 (16-bit shifts: the masked bytes carry nothing across).
            __m256i top = _mm256_or_si256(_mm256_and_si256(v2, top2),
                          _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(v1, top2), 2),
                                          _mm256_srli_epi16(_mm256_and_si256(v0, top2), 4)));
            __m256i dd = _mm256_srli_epi16(top, 2);
            for (int m = 0; m < MR; m++) {
                const int8_t *x = xq + (r0 + m) * K + (2 * b + h) * 16;
                // Two u8·s8 pair products per int16 sum: |Σ| ≤ 2 · 2 · 63 · 127 = 32004.
                __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(a, bcast4(x)), _mm256_maddubs_epi16(bb, bcast4(x + 4)));
                __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(c, bcast4(x + 8)), _mm256_maddubs_epi16(dd, bcast4(x + 12)));
                isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(_mm256_madd_epi16(s01, scale[h]), _mm256_madd_epi16(s23, scale[h])));
            }
        }
        for (int m = 0; m < MR; m++) {
            int32_t sums;  // the activation's two 16-sums, as the int16 pair madd wants
            memcpy(&sums, xs16 + (r0 + m) * (K / 16) + 2 * b, 4);
            __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(pair, _mm256_set1_epi32(sums)), 5);
            __m256 t = _mm256_mul_ps(d, _mm256_set1_ps(xd[(r0 + m) * nb + b]));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[m], offset)), t, acc[m]);
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
                              const int16_t *xs16, long rows, long g0, long g1, float *out, long ldo) {
    // One specialised copy of the loops per (format, scale format, int16 sums) a ggml type packs to.
#define TILES(TILE_CALL) \
    for (long g = g0; g < g1; g++) { \
        long r = 0; \
        for (; r + 4 <= rows; r += 4) { const int MR = 4; TILE_CALL; } \
        switch (rows - r) { \
        case 3: { const int MR = 3; TILE_CALL; break; } \
        case 2: { const int MR = 2; TILE_CALL; break; } \
        case 1: { const int MR = 1; TILE_CALL; break; } \
        default: break; \
        } \
    }
#define PACKED(FMT, SF, PAIRS) TILES(tile_avx2(w, g, xq, xd, xds, r, MR, out, ldo, FMT, SF, PAIRS))
    const int sf = w->scale_format;
    if (w->format == BANYAN_Q_P6) { TILES(tile_p6_avx2(w, g, xq, xd, xs16, r, MR, out, ldo)) }
    else if (w->format == BANYAN_Q_P4) {
        if (sf == BANYAN_QS_K) { PACKED(BANYAN_Q_P4, BANYAN_QS_K, 8) }                    // Q4_K
        else { PACKED(BANYAN_Q_P4, BANYAN_QS_F16_MIN, 8) }                                // Q4_0, Q4_1
    } else if (w->int16_sums == 1 && sf == BANYAN_QS_F16) { PACKED(BANYAN_Q_P8, BANYAN_QS_F16, 1) }  // Q8_0
    else if (sf == BANYAN_QS_F16) { PACKED(BANYAN_Q_P8, BANYAN_QS_F16, 0) }               // Q5_0
    else if (sf == BANYAN_QS_F16_MIN) { PACKED(BANYAN_Q_P8, BANYAN_QS_F16_MIN, 0) }       // Q5_1
    else { PACKED(BANYAN_Q_P8, BANYAN_QS_K, 0) }                                          // Q5_K
#undef PACKED
#undef TILES
}
#else
void banyan_quantize_rows_avx2(const float *x, long rows, long k, long ldx, int8_t *q, float *d, float *dsum, int16_t *sum16) {
    banyan_quantize_rows(x, rows, k, ldx, q, d, dsum, sum16);
}
void banyan_qmatmul_avx2(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                         const int16_t *xs16, long rows, long g0, long g1, float *out, long ldo) {
    banyan_qmatmul_portable(w, xq, xd, xds, xs16, rows, g0, g1, out, ldo);
}
#endif
