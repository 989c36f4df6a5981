// Block attention kernels for x86-64 (AVX-512 and AVX2): the per-block partial softmax and
// log-sum-exp merge of BlockKernel in BanyanAttention, for every query of one (task, KV head).
//
// What batch invariance and hydragen == baseline rest on: a query's arithmetic depends only on
// its own q, the block and its valid count. Queries are processed in groups of 8/4/2/1 (AVX-512)
// or 2/1 (AVX2) that share each loaded K and V vector, but every operation is per query lane-wise:
//   s[j]  = fma chain over d ascending, from 0      (one lane per key j)
//   mask j >= valid to -inf, blockMax = max (exact, any order)
//   p[j]  = exp(s[j] - blockMax)                      (exp_ps: elementwise, same constants)
//   blockSum = ((p0..15 + p16..31) then 8, 4, 2, 1 tree)
//   newMax = max(m, blockMax), alpha = exp(m - newMax), beta = exp(blockMax - newMax)
//   l = l*alpha + blockSum*beta;  O = O*alpha, then O = fma(p[j]*beta, V[j], O) for j < valid
// The AVX2 path uses the same sums in the same order, so both paths give the same bits.
//
// K and V are stored as float32, bf16 or f16 (`kvtype`, BANYAN_W_*) and widened to float32 in
// registers as they are loaded (bf16: zero-extend and shift left 16; f16: vcvtph2ps), both exact:
// all the arithmetic above is float32 on the widened values, whatever the storage type.
#include "CBanyanKernels.h"
#include <stdlib.h>
#include <string.h>

// Every product and sum below is written out; no contraction into FMAs the code did not ask for.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include "x86.h"


enum { BLOCK = 32 };

// Flattened query f of a call: task row f / G, query head kvHead·G + f % G; its (row, head) index
// into runningMax/Sum (q and out rows are that times headDim).
static inline long query_slot(const int32_t *rows, long f, long H, long G, long kvHead) {
    return (long)rows[f / G] * H + kvHead * G + f % G;
}

// ================================ AVX-512 ===================================================

// Port of `simdExp` (Elementwise.swift): Cephes range reduction, degree-6 polynomial; 0 below -87.3.
T512 INLINE __m512 exp512(__m512 x) {
    __m512 c = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.442695040888963f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_add_ps(c, _mm512_mul_ps(n, _mm512_set1_ps(-0.693359375f)));
    r = _mm512_add_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, r2), r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(under, y, _mm512_setzero_ps());
}

// 16 elements of a K/V tile starting at element i, widened to float32; lanes outside `m` are 0.
T512 INLINE __m512 load512(const int KT, const void *p, long i, __mmask16 m) {
    if (KT == BANYAN_W_F32) return _mm512_maskz_loadu_ps(m, (const float *)p + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i);
    if (KT == BANYAN_W_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

T512 INLINE __mmask16 lanes_below(long n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// O[i][d0..d0+16*C) for the NQ queries: O*alpha, then the unmasked FMA chain for j < vmin
// and a per-query merge-masked one for vmin <= j < vmax (skipped lanes keep their bits).
T512 INLINE void pv512(const int KT, const int NQ, const int C, float *const *op, const float *alpha,
                       const float (*p)[BLOCK], const int *valid, int vmin, int vmax,
                       const void *values, long D, long d0, __mmask16 tail) {
    __m512 acc[8][2];
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < C; c++) {
            __mmask16 m = c == C - 1 ? tail : (__mmask16)0xFFFF;
            acc[i][c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, op[i] + d0 + 16 * c), _mm512_set1_ps(alpha[i]));
        }
    for (int j = 0; j < vmin; j++) {
        __m512 v[2];
        for (int c = 0; c < C; c++)
            v[c] = load512(KT, values, j * D + d0 + 16 * c, c == C - 1 ? tail : (__mmask16)0xFFFF);
        for (int i = 0; i < NQ; i++) {
            __m512 pj = _mm512_set1_ps(p[i][j]);
            for (int c = 0; c < C; c++) acc[i][c] = _mm512_fmadd_ps(pj, v[c], acc[i][c]);
        }
    }
    for (int j = vmin; j < vmax; j++) {
        __m512 v[2];
        for (int c = 0; c < C; c++)
            v[c] = load512(KT, values, j * D + d0 + 16 * c, c == C - 1 ? tail : (__mmask16)0xFFFF);
        for (int i = 0; i < NQ; i++) {
            __m512 pj = _mm512_set1_ps(p[i][j]);
            __mmask16 live = j < valid[i] ? (__mmask16)0xFFFF : (__mmask16)0;
            for (int c = 0; c < C; c++) acc[i][c] = _mm512_mask3_fmadd_ps(pj, v[c], acc[i][c], live);
        }
    }
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(op[i] + d0 + 16 * c, c == C - 1 ? tail : (__mmask16)0xFFFF, acc[i][c]);
}

// One group of NQ queries against one block. qp/op: the queries' q and out rows; at: their
// (row, head) index into runningMax/Sum.
T512 INLINE void group512(const int KT, const int NQ, const float *const *qp, float *const *op, const long *at,
                          const int *valid, const void *keys, const void *values,
                          float *runningMax, float *runningSum, long D) {
    // The queries' q rows side by side: in MHA they are whole rows (headCount·headDim floats)
    // apart, and 8 streams with a 4 KiB-multiple stride thrash one L1 set.
    float qb[NQ][D];
    for (int i = 0; i < NQ; i++) memcpy(qb[i], qp[i], (size_t)D * sizeof(float));
    __m512 sa[8], sb[8];
    for (int i = 0; i < NQ; i++) sa[i] = sb[i] = _mm512_setzero_ps();
    for (long d = 0; d < D; d++) {
        __m512 ka = load512(KT, keys, d * BLOCK, 0xFFFF), kb = load512(KT, keys, d * BLOCK + 16, 0xFFFF);
        for (int i = 0; i < NQ; i++) {
            __m512 a = _mm512_set1_ps(qb[i][d]);
            sa[i] = _mm512_fmadd_ps(a, ka, sa[i]);
            sb[i] = _mm512_fmadd_ps(a, kb, sb[i]);
        }
    }
    float p[8][BLOCK] __attribute__((aligned(64)));
    float blockSum[8];
    float shift[16] __attribute__((aligned(64))) = {0};  // [m - newMax for each query | blockMax - newMax]
    int vmin = BLOCK, vmax = 0;
    __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    for (int i = 0; i < NQ; i++) {
        __m512 xa = _mm512_mask_mov_ps(ninf, lanes_below(valid[i]), sa[i]);
        __m512 xb = _mm512_mask_mov_ps(ninf, lanes_below(valid[i] - 16), sb[i]);
        float mx = _mm512_reduce_max_ps(_mm512_max_ps(xa, xb));
        __m512 vm = _mm512_set1_ps(mx);
        __m512 pa = exp512(_mm512_sub_ps(xa, vm)), pb = exp512(_mm512_sub_ps(xb, vm));
        blockSum[i] = reduce16(_mm512_add_ps(pa, pb));
        _mm512_store_ps(p[i], pa);
        _mm512_store_ps(p[i] + 16, pb);
        float old = runningMax[at[i]], newMax = old > mx ? old : mx;
        runningMax[at[i]] = newMax;
        shift[i] = old - newMax;  // -inf on the first block: alpha = 0
        shift[8 + i] = mx - newMax;
        vmin = valid[i] < vmin ? valid[i] : vmin;
        vmax = valid[i] > vmax ? valid[i] : vmax;
    }
    float scale[16] __attribute__((aligned(64)));
    _mm512_store_ps(scale, exp512(_mm512_load_ps(shift)));
    for (int i = 0; i < NQ; i++) {
        float alpha = scale[i], beta = scale[8 + i];
        float la = runningSum[at[i]] * alpha, lb = blockSum[i] * beta;
        runningSum[at[i]] = la + lb;
        __m512 vb = _mm512_set1_ps(beta);
        _mm512_store_ps(p[i], _mm512_mul_ps(_mm512_load_ps(p[i]), vb));
        _mm512_store_ps(p[i] + 16, _mm512_mul_ps(_mm512_load_ps(p[i] + 16), vb));
    }
    long d = 0;
    for (; d + 32 <= D; d += 32) pv512(KT, NQ, 2, op, scale, p, valid, vmin, vmax, values, D, d, 0xFFFF);
    for (; d < D; d += 16) pv512(KT, NQ, 1, op, scale, p, valid, vmin, vmax, values, D, d, lanes_below(D - d));
}

// One function per (storage type, group width), so both are constants inside.
#define GROUP512(KT, NQ, NAME)                                                                       \
    T512 static void NAME(const float *const *qp, float *const *op, const long *at, const int *valid, \
                          const void *k, const void *v, float *m, float *l, long D) {                \
        group512(KT, NQ, qp, op, at, valid, k, v, m, l, D);                                           \
    }
GROUP512(BANYAN_W_F32, 8, group512_f32_8)  GROUP512(BANYAN_W_F32, 4, group512_f32_4)
GROUP512(BANYAN_W_F32, 2, group512_f32_2)  GROUP512(BANYAN_W_F32, 1, group512_f32_1)
GROUP512(BANYAN_W_BF16, 8, group512_bf16_8) GROUP512(BANYAN_W_BF16, 4, group512_bf16_4)
GROUP512(BANYAN_W_BF16, 2, group512_bf16_2) GROUP512(BANYAN_W_BF16, 1, group512_bf16_1)
GROUP512(BANYAN_W_F16, 8, group512_f16_8)  GROUP512(BANYAN_W_F16, 4, group512_f16_4)
GROUP512(BANYAN_W_F16, 2, group512_f16_2)  GROUP512(BANYAN_W_F16, 1, group512_f16_1)

// ================================ AVX2 ======================================================

// exp256 on N vectors at once, op by op side by side: the same lane-wise operations whatever N (so
// the same bits), with N independent chains in flight instead of one.
T256 INLINE void exp256n(__m256 *x, const int N) {
    __m256 c[4], n[4], r[4], p[4];
    for (int k = 0; k < N; k++) c[k] = _mm256_min_ps(_mm256_max_ps(x[k], _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    for (int k = 0; k < N; k++)
        n[k] = _mm256_round_ps(_mm256_mul_ps(c[k], _mm256_set1_ps(1.442695040888963f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    for (int k = 0; k < N; k++) r[k] = _mm256_add_ps(c[k], _mm256_mul_ps(n[k], _mm256_set1_ps(-0.693359375f)));
    for (int k = 0; k < N; k++) r[k] = _mm256_add_ps(r[k], _mm256_mul_ps(n[k], _mm256_set1_ps(2.12194440e-4f)));
    for (int k = 0; k < N; k++) p[k] = _mm256_set1_ps(1.9875691500e-4f);
    static const float poly[5] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
    for (int t = 0; t < 5; t++)
        for (int k = 0; k < N; k++) p[k] = _mm256_add_ps(_mm256_mul_ps(p[k], r[k]), _mm256_set1_ps(poly[t]));
    for (int k = 0; k < N; k++) {
        __m256 r2 = _mm256_mul_ps(r[k], r[k]);
        __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p[k], r2), r[k]), _mm256_set1_ps(1.0f));
        __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n[k]), _mm256_set1_epi32(127)), 23);
        y = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
        __m256 under = _mm256_cmp_ps(x[k], _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
        x[k] = _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
    }
}

// Port of `simdExp` (Elementwise.swift), as exp512: Cephes range reduction, degree-6 polynomial; 0 below -87.3.
T256 INLINE __m256 exp256(__m256 x) {
    exp256n(&x, 1);
    return x;
}

T256 INLINE float max8(__m256 v) {
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    __m128 m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
    return _mm_cvtss_f32(m1);
}

T256 INLINE __m256i lanes_below8(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 8 elements of a K/V tile starting at element i, widened to float32. n < 8 loads only the first
// n (the rest 0); 16-bit types have no masked load in AVX2, so they go through a zeroed copy.
T256 INLINE __m256 load256(const int KT, const void *p, long i, long n) {
    if (KT == BANYAN_W_F32) {
        if (n >= 8) return _mm256_loadu_ps((const float *)p + i);
        return _mm256_maskload_ps((const float *)p + i, lanes_below8(n));
    }
    __m128i h;
    if (n >= 8) {
        h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    } else {
        uint16_t t[8] = {0};
        memcpy(t, (const uint16_t *)p + i, (size_t)(n > 0 ? n : 0) * sizeof(uint16_t));
        h = _mm_loadu_si128((const __m128i *)t);
    }
    if (KT == BANYAN_W_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

// pv512 with 8-float chunks (C per pass, the last masked by `tail`); a query skips j >= its valid.
T256 INLINE void pv256(const int KT, const int NQ, const int C, float *const *op, const float *alpha,
                       const float (*p)[BLOCK], const int *valid, int vmax,
                       const void *values, long D, long d0, __m256i tail, long tailCount) {
    __m256i full = _mm256_set1_epi32(-1);
    __m256 acc[2][4];
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < C; c++) {
            __m256i m = c == C - 1 ? tail : full;
            acc[i][c] = _mm256_mul_ps(_mm256_maskload_ps(op[i] + d0 + 8 * c, m), _mm256_set1_ps(alpha[i]));
        }
    for (int j = 0; j < vmax; j++) {
        __m256 v[4];
        for (int c = 0; c < C; c++) v[c] = load256(KT, values, j * D + d0 + 8 * c, c == C - 1 ? tailCount : 8);
        for (int i = 0; i < NQ; i++) {
            if (j >= valid[i]) continue;  // skipped, not multiplied by 0: the bits stay as alone
            __m256 pj = _mm256_set1_ps(p[i][j]);
            for (int c = 0; c < C; c++) acc[i][c] = _mm256_fmadd_ps(pj, v[c], acc[i][c]);
        }
    }
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < C; c++) _mm256_maskstore_ps(op[i] + d0 + 8 * c, c == C - 1 ? tail : full, acc[i][c]);
}

// The softmax half of a block for n <= 8 queries whose raw scores sit in S[i][0..32) (i < n): mask
// j >= valid to -inf, block max, p = exp(s - max), blockSum in reduce16's order, the running
// max/sum merge; S is overwritten with p * beta and alpha[i] receives each query's O rescale.
// Written in passes over all n queries (max, then every exp, then the sums) so the exp chains of
// different queries are independent work in flight together rather than one latency chain each.
T256 INLINE void softmax256(int n, float *S, const int *valid, const long *at,
                            float *runningMax, float *runningSum, float *alpha) {
    float mx[8], blockSum[8], shift[16] __attribute__((aligned(32))) = {0};
    __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    for (int i = 0; i < n; i++) {
        float *p = S + i * BLOCK;
        __m256 x[4];
        for (int c = 0; c < 4; c++) x[c] = _mm256_loadu_ps(p + 8 * c);
        if (valid[i] < BLOCK)  // a full block's mask keeps every lane: skipping it changes no bits
            for (int c = 0; c < 4; c++) {
                x[c] = _mm256_blendv_ps(ninf, x[c], _mm256_castsi256_ps(lanes_below8(valid[i] - 8 * c)));
                _mm256_storeu_ps(p + 8 * c, x[c]);
            }
        mx[i] = max8(_mm256_max_ps(_mm256_max_ps(x[0], x[1]), _mm256_max_ps(x[2], x[3])));
    }
    for (int i = 0; i < n; i++) {
        __m256 e[4], vm = _mm256_set1_ps(mx[i]);
        for (int c = 0; c < 4; c++) e[c] = _mm256_sub_ps(_mm256_loadu_ps(S + i * BLOCK + 8 * c), vm);
        exp256n(e, 4);
        for (int c = 0; c < 4; c++) _mm256_storeu_ps(S + i * BLOCK + 8 * c, e[c]);
    }
    for (int i = 0; i < n; i++) {
        float *p = S + i * BLOCK;
        // (lanes 0..15 + lanes 16..31), then 8 + 8: reduce16's order.
        __m256 lo = _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 16));
        __m256 hi = _mm256_add_ps(_mm256_loadu_ps(p + 8), _mm256_loadu_ps(p + 24));
        blockSum[i] = reduce8(_mm256_add_ps(lo, hi));
        float old = runningMax[at[i]], newMax = old > mx[i] ? old : mx[i];
        runningMax[at[i]] = newMax;
        shift[i] = old - newMax;  // -inf on the first block: alpha = 0
        shift[8 + i] = mx[i] - newMax;
    }
    // exp256 is lane-wise, so which lane a query's shift sits in changes no bits.
    float scale[16] __attribute__((aligned(32)));
    _mm256_store_ps(scale, exp256(_mm256_load_ps(shift)));
    _mm256_store_ps(scale + 8, exp256(_mm256_load_ps(shift + 8)));
    for (int i = 0; i < n; i++) {
        float a = scale[i], beta = scale[8 + i];
        float la = runningSum[at[i]] * a, lb = blockSum[i] * beta;
        runningSum[at[i]] = la + lb;
        alpha[i] = a;
        __m256 vb = _mm256_set1_ps(beta);
        float *p = S + i * BLOCK;
        for (int c = 0; c < 4; c++) _mm256_storeu_ps(p + 8 * c, _mm256_mul_ps(_mm256_loadu_ps(p + 8 * c), vb));
    }
}

T256 INLINE void group256(const int KT, const int NQ, const float *const *qp, float *const *op, const long *at,
                          const int *valid, const void *keys, const void *values,
                          float *runningMax, float *runningSum, long D) {
    float qb[NQ][D];  // as in group512
    for (int i = 0; i < NQ; i++) memcpy(qb[i], qp[i], (size_t)D * sizeof(float));
    __m256 s[2][4];
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < 4; c++) s[i][c] = _mm256_setzero_ps();
    for (long d = 0; d < D; d++) {
        __m256 k[4];
        for (int c = 0; c < 4; c++) k[c] = load256(KT, keys, d * BLOCK + 8 * c, 8);
        for (int i = 0; i < NQ; i++) {
            __m256 a = _mm256_set1_ps(qb[i][d]);
            for (int c = 0; c < 4; c++) s[i][c] = _mm256_fmadd_ps(a, k[c], s[i][c]);
        }
    }
    float p[2][BLOCK] __attribute__((aligned(32)));
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < 4; c++) _mm256_store_ps(p[i] + 8 * c, s[i][c]);
    float scale[8];
    softmax256(NQ, p[0], valid, at, runningMax, runningSum, scale);
    int vmax = 0;
    for (int i = 0; i < NQ; i++) vmax = valid[i] > vmax ? valid[i] : vmax;
    __m256i full = _mm256_set1_epi32(-1);
    long d = 0;
    for (; d + 32 <= D; d += 32) pv256(KT, NQ, 4, op, scale, p, valid, vmax, values, D, d, full, 8);
    for (; d < D; d += 8) pv256(KT, NQ, 1, op, scale, p, valid, vmax, values, D, d, lanes_below8(D - d), D - d);
}

#define GROUP256(KT, NQ, NAME)                                                                       \
    T256 static void NAME(const float *const *qp, float *const *op, const long *at, const int *valid, \
                          const void *k, const void *v, float *m, float *l, long D) {                \
        group256(KT, NQ, qp, op, at, valid, k, v, m, l, D);                                           \
    }
GROUP256(BANYAN_W_F32, 2, group256_f32_2)   GROUP256(BANYAN_W_F32, 1, group256_f32_1)
GROUP256(BANYAN_W_BF16, 2, group256_bf16_2) GROUP256(BANYAN_W_BF16, 1, group256_bf16_1)
GROUP256(BANYAN_W_F16, 2, group256_f16_2)   GROUP256(BANYAN_W_F16, 1, group256_f16_1)

// ---- GEMM-shaped tiles (AVX2): many queries against one block ----------------------------
// For a block read by several queries (Hydragen's shared prefix: every sequence x every query head
// of the KV head; also one sequence's GQA group), the two products run as register-blocked GEMM
// tiles of 6 queries x 16 lanes (12 accumulators): scores S = Q K^T for a chunk of queries, the
// per-query softmax above, then O = O*alpha + P V. K and V are either read in place and widened in
// registers (f16: one vcvtph2ps beside every 12 FMAs, on other ports) or widened to float32 once
// into scratch first (f32, and bf16 read by many queries: its two-op widening then costs more in
// the tiles than the copy; see tile_plan). Every score and output element is still its own FMA
// chain in the order of the header comment (s over d ascending; O over j ascending, skipping
// j >= valid), so the bits equal group256's whichever path a block takes. TILE_MAX_HEAD_DIM bounds
// the tiles' stack scratch (K, V, q rows, scores: ~90 KiB at 256), which may run on a caller's
// thread with a small stack.
enum { TQ = 6, TCHUNK = 48, TILE_MAX_HEAD_DIM = 256 };

// S[i][k0..k0+16) for NQ queries (q rows NQ x D, contiguous), K block [D][32] of type KT.
T256 INLINE void qk_tile(const int KT, const int NQ, const float *qt, const void *kf, long D, int k0, float *S) {
    __m256 a[TQ][2];
    for (int i = 0; i < NQ; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
    for (long d = 0; d < D; d++) {
        __m256 k0v = load256(KT, kf, d * BLOCK + k0, 8), k1v = load256(KT, kf, d * BLOCK + k0 + 8, 8);
        for (int i = 0; i < NQ; i++) {
            __m256 b = _mm256_broadcast_ss(qt + i * D + d);
            a[i][0] = _mm256_fmadd_ps(b, k0v, a[i][0]);
            a[i][1] = _mm256_fmadd_ps(b, k1v, a[i][1]);
        }
    }
    for (int i = 0; i < NQ; i++) {
        _mm256_storeu_ps(S + i * BLOCK + k0, a[i][0]);
        _mm256_storeu_ps(S + i * BLOCK + k0 + 8, a[i][1]);
    }
}

// O[i][d0..d0+8C) = O*alpha[i], then fma(P[i][j], V[j], O) for j < valid[i] ascending (C = 1 or 2);
// V block [32][D] of type KT.
T256 INLINE void pv_tile(const int KT, const int NQ, const int C, float *const *op, const float *alpha, const float *P,
                         const int *valid, int vmin, int vmax, const void *vf, long D, long d0) {
    __m256 a[TQ][2];
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < C; c++) a[i][c] = _mm256_mul_ps(_mm256_loadu_ps(op[i] + d0 + 8 * c), _mm256_set1_ps(alpha[i]));
    for (int j = 0; j < vmin; j++) {
        __m256 v[2];
        for (int c = 0; c < C; c++) v[c] = load256(KT, vf, j * D + d0 + 8 * c, 8);
        for (int i = 0; i < NQ; i++) {
            __m256 pj = _mm256_broadcast_ss(P + i * BLOCK + j);
            for (int c = 0; c < C; c++) a[i][c] = _mm256_fmadd_ps(pj, v[c], a[i][c]);
        }
    }
    for (int j = vmin; j < vmax; j++) {
        __m256 v[2];
        for (int c = 0; c < C; c++) v[c] = load256(KT, vf, j * D + d0 + 8 * c, 8);
        for (int i = 0; i < NQ; i++) {
            if (j >= valid[i]) continue;  // skipped, not multiplied by 0, as in pv256
            __m256 pj = _mm256_broadcast_ss(P + i * BLOCK + j);
            for (int c = 0; c < C; c++) a[i][c] = _mm256_fmadd_ps(pj, v[c], a[i][c]);
        }
    }
    for (int i = 0; i < NQ; i++)
        for (int c = 0; c < C; c++) _mm256_storeu_ps(op[i] + d0 + 8 * c, a[i][c]);
}

// One tile of NQ queries: both score halves, or every output column chunk (D % 8 == 0).
T256 INLINE void qk_rows(const int KT, const int NQ, const float *qt, const void *kf, long D, float *S) {
    qk_tile(KT, NQ, qt, kf, D, 0, S);
    qk_tile(KT, NQ, qt, kf, D, 16, S);
}
T256 INLINE void pv_rows(const int KT, const int NQ, float *const *op, const float *alpha, const float *P, const int *valid,
                         const void *vf, long D) {
    int vmin = BLOCK, vmax = 0;
    for (int i = 0; i < NQ; i++) {
        vmin = valid[i] < vmin ? valid[i] : vmin;
        vmax = valid[i] > vmax ? valid[i] : vmax;
    }
    long d = 0;
    for (; d + 16 <= D; d += 16) pv_tile(KT, NQ, 2, op, alpha, P, valid, vmin, vmax, vf, D, d);
    if (d < D) pv_tile(KT, NQ, 1, op, alpha, P, valid, vmin, vmax, vf, D, d);
}

// Constant NQ inside each call (the tiles' register arrays), dispatched once per tile.
#define BY_NQ(n, CALL)                                                                  \
    switch (n) {                                                                        \
    case 6: CALL(6); break; case 5: CALL(5); break; case 4: CALL(4); break;             \
    case 3: CALL(3); break; case 2: CALL(2); break; default: CALL(1); break;            \
    }

// Widens n (a multiple of 8) stored K/V elements to float32: exact, the same as load256's.
T256 INLINE void widen256(const int KT, const void *src, float *dst, long n) {
    for (long i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, load256(KT, src, i, 8));
}

// WIDEN: K and V are widened into scratch first and the tiles read float32; else read in place.
T256 INLINE void tiles256(const int KT, const int WIDEN, const int32_t *rows, const int32_t *validCounts, long rowCount,
                          const float *q, const void *keys, const void *values, float *out,
                          float *runningMax, float *runningSum, long H, long D, long G, long kvHead,
                          const void *nextKeys, const void *nextValues) {
    const int TK = WIDEN ? BANYAN_W_F32 : KT;  // what the tiles read
    float kbuf[WIDEN ? BLOCK * D : 1], vbuf[WIDEN ? BLOCK * D : 1];
    const void *kf = keys, *vf = values;
    if (WIDEN) {
        widen256(KT, keys, kbuf, BLOCK * D);
        widen256(KT, values, vbuf, BLOCK * D);
        kf = kbuf, vf = vbuf;
    }
    // Chunks of at most 48 queries (24 KiB of q rows at D = 128: q and the block's K, or the scores,
    // V and the out rows, stay near L1); chunks and tiles are split evenly, so no tile
    // is left with one or two queries (too few accumulators to cover the FMA latency).
    long total = rowCount * G, maxChunk = 6144 / D;
    maxChunk = maxChunk < TQ ? TQ : maxChunk > TCHUNK ? TCHUNK : maxChunk;
    long chunks = (total + maxChunk - 1) / maxChunk;
    float qt[maxChunk * D], S[maxChunk * BLOCK], alpha[maxChunk];
    for (long c = 0; c < chunks; c++) {
        long f0 = c * total / chunks;
        int n = (int)((c + 1) * total / chunks - f0);
        // The chunk's q rows side by side (see group512 on strided streams), and their places.
        float *op[TCHUNK];
        long at[TCHUNK];
        int valid[TCHUNK];
        for (int i = 0; i < n; i++) {
            at[i] = query_slot(rows, f0 + i, H, G, kvHead);
            for (long d = 0; d < D; d += 8) _mm256_storeu_ps(qt + i * D + d, _mm256_loadu_ps(q + at[i] * D + d));
            op[i] = out + at[i] * D;
            valid[i] = validCounts[(f0 + i) / G];
        }
        int tiles = (n + TQ - 1) / TQ;
        // The next block's K and V go to L2 a share after each of the first chunk's score tiles, so
        // widening it later does not wait on memory (measured: spreading the prefetches into the
        // tile loops instead costs more in the loop than it saves).
        long lines = c == 0 && nextKeys ? BLOCK * D * (KT == BANYAN_W_F32 ? 4 : 2) / 64 : 0;
        for (int t = 0; t < tiles; t++) {
            int i = t * n / tiles, m = (t + 1) * n / tiles - i;
#define QK(NQ) qk_rows(TK, NQ, qt + i * D, kf, D, S + i * BLOCK)
            BY_NQ(m, QK)
#undef QK
            for (long x = t * lines / tiles; x < (t + 1) * lines / tiles; x++) {
                _mm_prefetch((const char *)nextKeys + 64 * x, _MM_HINT_T1);
                _mm_prefetch((const char *)nextValues + 64 * x, _MM_HINT_T1);
            }
        }
        for (int i = 0; i < n; i += 8)
            softmax256(n - i < 8 ? n - i : 8, S + i * BLOCK, valid + i, at + i, runningMax, runningSum, alpha + i);
        for (int t = 0; t < tiles; t++) {
            int i = t * n / tiles, m = (t + 1) * n / tiles - i;
#define PV(NQ) pv_rows(TK, NQ, op + i, alpha + i, S + i * BLOCK, valid + i, vf, D)
            BY_NQ(m, PV)
#undef PV
        }
    }
}

#define TILES256(KT, WIDEN, NAME)                                                                           \
    T256 static void NAME(const int32_t *rows, const int32_t *validCounts, long rowCount, const float *q,   \
                          const void *k, const void *v, float *out, float *m, float *l, long H, long D,     \
                          long G, long kvHead, const void *nk, const void *nv) {                            \
        tiles256(KT, WIDEN, rows, validCounts, rowCount, q, k, v, out, m, l, H, D, G, kvHead, nk, nv);      \
    }
TILES256(BANYAN_W_F32, 1, tiles256_f32) TILES256(BANYAN_W_BF16, 1, tiles256_bf16_widened)
TILES256(BANYAN_W_BF16, 0, tiles256_bf16) TILES256(BANYAN_W_F16, 0, tiles256_f16)

typedef void (*tiles_fn)(const int32_t *, const int32_t *, long, const float *, const void *, const void *,
                         float *, float *, float *, long, long, long, long, const void *, const void *);

// Which tiles a block read by `queries` queries takes, or NULL for the query pairs. Measured on Zen 3
// (one core, KV streamed from memory, D = 64 and 128; the kernels give the same bits, so this is
// speed only): below 3 queries the pairs are as fast (1 query: latency-bound either way); f16 in place
// beats the pairs from 3 queries (+13-30% at 4-12) and the widened tiles everywhere (+0-8%); bf16 in
// place beats the pairs by 15-38% at 4-12 queries but loses 2-3% to the widened tiles from ~64; f32
// read in place measured no faster than copied, and its tiles beat the pairs only from ~16.
// (scripts/attention_harness.c reproduces these.)
static tiles_fn tile_plan(int kvtype, long queries, long headDim) {
    if (headDim % 8 != 0 || headDim > TILE_MAX_HEAD_DIM || queries < 3) return NULL;
    switch (kvtype) {
    case BANYAN_W_F16: return tiles256_f16;
    case BANYAN_W_BF16: return queries < 32 ? tiles256_bf16 : tiles256_bf16_widened;
    default: return queries < 16 ? NULL : tiles256_f32;
    }
}

// ================================ Driver ====================================================

typedef void (*group_fn)(const float *const *, float *const *, const long *, const int *,
                         const void *, const void *, float *, float *, long);

// Flattened queries (see query_slot) in groups of the largest width in `widths` that fits what
// is left.
static void drive(const group_fn *fns, const int *widths, const int32_t *rows,
                  const int32_t *validCounts, long rowCount, const float *q, const void *keys,
                  const void *values, float *out, float *runningMax, float *runningSum, long H,
                  long D, long G, long kvHead) {
    long total = rowCount * G;
    for (long f = 0; f < total;) {
        int w = 0;
        while (widths[w] > total - f) w++;
        int n = widths[w];
        const float *qp[8];
        float *op[8];
        long at[8];
        int valid[8];
        for (int i = 0; i < n; i++) {
            at[i] = query_slot(rows, f + i, H, G, kvHead);
            qp[i] = q + at[i] * D;
            op[i] = out + at[i] * D;
            valid[i] = validCounts[(f + i) / G];
        }
        fns[w](qp, op, at, valid, keys, values, runningMax, runningSum, D);
        f += n;
    }
}

void banyan_attention_block_avx512(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                   const float *q, const void *keys, const void *values, int kvtype,
                                   float *out, float *runningMax, float *runningSum,
                                   long headCount, long headDim, long groupSize, long kvHead,
                                   const void *nextKeys, const void *nextValues) {
    static const group_fn f32[] = {group512_f32_8, group512_f32_4, group512_f32_2, group512_f32_1};
    static const group_fn bf16[] = {group512_bf16_8, group512_bf16_4, group512_bf16_2, group512_bf16_1};
    static const group_fn f16[] = {group512_f16_8, group512_f16_4, group512_f16_2, group512_f16_1};
    static const int widths[] = {8, 4, 2, 1};
    const group_fn *fns = kvtype == BANYAN_W_BF16 ? bf16 : kvtype == BANYAN_W_F16 ? f16 : f32;
    drive(fns, widths, rows, validCounts, rowCount, q, keys, values, out, runningMax, runningSum,
          headCount, headDim, groupSize, kvHead);
}

void banyan_attention_block_avx2(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                 const float *q, const void *keys, const void *values, int kvtype,
                                 float *out, float *runningMax, float *runningSum,
                                 long headCount, long headDim, long groupSize, long kvHead,
                                 const void *nextKeys, const void *nextValues) {
    static const group_fn f32[] = {group256_f32_2, group256_f32_1};
    static const group_fn bf16[] = {group256_bf16_2, group256_bf16_1};
    static const group_fn f16[] = {group256_f16_2, group256_f16_1};
    static const int widths[] = {2, 1};
    // Blocks read by several queries (a shared prefix, one sequence's GQA group) go through the
    // GEMM-shaped tiles; a block read by one or two (MHA decode without sharing, a sequence's own
    // tail) keeps the query pairs. All give the same bits.
    tiles_fn tiles = tile_plan(kvtype, rowCount * groupSize, headDim);
    if (tiles) {
        tiles(rows, validCounts, rowCount, q, keys, values, out, runningMax, runningSum, headCount, headDim,
              groupSize, kvHead, nextKeys, nextValues);
        return;
    }
    const group_fn *fns = kvtype == BANYAN_W_BF16 ? bf16 : kvtype == BANYAN_W_F16 ? f16 : f32;
    drive(fns, widths, rows, validCounts, rowCount, q, keys, values, out, runningMax, runningSum,
          headCount, headDim, groupSize, kvHead);
}

#else // !__x86_64__: never selected (Swift checks the feature bits), defined for linking.
void banyan_attention_block_avx512(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                   const float *q, const void *keys, const void *values, int kvtype,
                                   float *out, float *runningMax, float *runningSum,
                                   long headCount, long headDim, long groupSize, long kvHead,
                                   const void *nextKeys, const void *nextValues) { abort(); }
void banyan_attention_block_avx2(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                 const float *q, const void *keys, const void *values, int kvtype,
                                 float *out, float *runningMax, float *runningSum,
                                 long headCount, long headDim, long groupSize, long kvHead,
                                 const void *nextKeys, const void *nextValues) { abort(); }
#endif
