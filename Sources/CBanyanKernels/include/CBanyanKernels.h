#ifndef CBANYAN_KERNELS_H
#define CBANYAN_KERNELS_H
#include <stddef.h>
#include <stdint.h>

// ---- CPU features -------------------------------------------------------------------------

/// Runtime CPU feature bits (CPUID + XGETBV on x86-64; 0 elsewhere).
int banyan_cpu_has_avx512bf16(void);
/// AVX-512 F+BW+VL (+FMA) usable: CPU support and OS-enabled zmm/opmask state.
int banyan_cpu_has_avx512(void);
/// AVX2 + FMA + F16C usable: CPU support and OS-enabled ymm state.
int banyan_cpu_has_avx2(void);
/// 1 when CPUID's vendor is AMD (x86-64 only).
int banyan_cpu_is_amd(void);

// ---- Matmul ---------------------------------------------------------------------------------

/// Weight element type codes (match `DType` in Swift).
enum { BANYAN_W_F32 = 0, BANYAN_W_F16 = 1, BANYAN_W_BF16 = 2 };

/// Exact matmul over output columns [n0, n1): out[m, n] = sum_k x[m, k] * W[n, k].
/// x: [rows, k] float32 row-major; w: [n, k] row-major in `wtype`; out: [rows, ldo].
/// Every element is one 16-lane FMA chain over k in steps of 16 (the last step zero-padded),
/// then a fixed tree reduction, so its bits depend on neither rows, tiling nor n0/n1.
void banyan_matmul_avx512(const float *x, long rows, long k, const void *w, int wtype,
                          long n0, long n1, float *out, long ldo);
/// Same contract with an 8-lane AVX2 FMA chain (bits differ from the AVX-512 path).
void banyan_matmul_avx2(const float *x, long rows, long k, const void *w, int wtype,
                        long n0, long n1, float *out, long ldo);
/// "Fast" precision: x rounded to bf16 (nearest even), bf16 weights, vdpbf16ps accumulation
/// (one 16-lane chain of pair-dot-products per element, k in steps of 32, fixed tree reduction).
/// Requires avx512bf16 and bf16 weights.
void banyan_matmul_fast_bf16(const float *x, long rows, long k, const uint16_t *w,
                             long n0, long n1, float *out, long ldo);

// ---- Quantized weights (quant.c) -------------------------------------------------------------

/// Packed weight formats: P8 holds one int8 per weight (|w| <= 128); P4 one 4-bit unsigned value,
/// two per byte. Column group g covers output columns 8g..8g+7 (the last zero-padded); within it,
/// sub-block j is S/4 (P8) or 4 (P4, S = 32) chunks of 32 bytes: [8 columns][4 bytes], byte i of
/// column c holding element 4t+i (P8) or elements 8t+i (low nibble) and 8t+4+i (high nibble) (P4).
/// P6 (Q6_K): per sub-block of 16 elements, three chunks of 32 bytes [8 columns][4 bytes]: byte i of
/// column c in chunk t holds element 4t+i in bits 0..5 and bits 2t, 2t+1 of element 12+i in bits 6..7;
/// values unsigned 0..63, the element being q − 32 (scales K6, sub-blocks of 16).
enum { BANYAN_Q_P8 = 0, BANYAN_Q_P4 = 1, BANYAN_Q_P6 = 2 };
/// Scale formats, per column group: F16: [sub][8] f16 scales (16 bytes each). F16_MIN: [sub]{[8] f16
/// scales, [8] f32 minimums} (48 bytes each). K (sub-blocks of 32 in 256):
/// per 256 {[8] f16 d, [8] f16 dmin, [8 sub][8] u8 scale, [8 sub][8] u8 min}: scale d·sc, min −dmin·m.
/// K6 (sub-blocks of 16 in 256): per 256 {[8] f16 d, [8 blocks of 32][8 columns][2 subs] i8 scale}:
/// scale d·sc.
enum { BANYAN_QS_F16 = 0, BANYAN_QS_F16_MIN = 1, BANYAN_QS_K = 2, BANYAN_QS_K6 = 3 };

/// A repacked quantized weight matrix [n, k]; value of element = scale_j · w + min_j.
typedef struct {
    int format;              // BANYAN_Q_P8 / BANYAN_Q_P4 / BANYAN_Q_P6
    int scale_format;        // BANYAN_QS_*
    long sub_block;          // 32, or 16 (K6)
    int int16_sums;          // P8: chunk products summed in int16 before widening (1, 2, 4 or 8)
    long k, n;               // input features (multiple of 32, of 256 for K/K6), output features
    const int8_t *weights;   // group g at g · k · 8 (P8), g · k · 4 (P4) or g · k · 6 (P6) bytes
    const void *scales;      // group g at g · scale_group_bytes
    long scale_group_bytes;
} banyan_qweight;

/// Quantizes rows of x ([rows, ldx] float32, k a multiple of 32) per block of 32: q [rows, k] int8,
/// d and dsum [rows, k / 32] (d = amax / 127, dsum = d · Σq), sum16 [rows, k / 16] (Σq per 16, for P6).
void banyan_quantize_rows(const float *x, long rows, long k, long ldx, int8_t *q, float *d, float *dsum, int16_t *sum16);
/// The same with AVX2, the same bits.
void banyan_quantize_rows_avx2(const float *x, long rows, long k, long ldx, int8_t *q, float *d, float *dsum, int16_t *sum16);
/// out[r, 8g + c] for column groups [g0, g1) and every row (see quant.c for the arithmetic; the
/// AVX2 path gives the portable path's bits).
void banyan_qmatmul_portable(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                             const int16_t *xs16, long rows, long g0, long g1, float *out, long ldo);
void banyan_qmatmul_avx2(const banyan_qweight *w, const int8_t *xq, const float *xd, const float *xds,
                         const int16_t *xs16, long rows, long g0, long g1, float *out, long ldo);

// ---- Peak probes ----------------------------------------------------------------------------

/// Instruction kinds for `banyan_peak_probe`: float32 FMA (AVX-512, else AVX2) and vdpbf16ps.
enum { BANYAN_PEAK_F32 = 0, BANYAN_PEAK_BF16 = 1 };
/// Runs `iterations` rounds of independent register-only accumulator chains on the calling thread
/// and returns the FLOPs done (0 when the CPU lacks the instructions): the core's arithmetic roof.
double banyan_peak_probe(int kind, long iterations);

// ---- Attention ------------------------------------------------------------------------------

/// One KV block (32 tokens) for every query of one (task, KV head): partial softmax of each
/// query over the block's first validCounts[t] keys, merged into its running max/sum and out.
/// rows/validCounts: [rowCount] (task rows; each gives groupSize queries, heads kvHead*G..+G).
/// q, out: [rows, headCount, headDim]; runningMax/Sum: [rows, headCount];
/// keys: [headDim, 32]; values: [32, headDim], both of `kvtype` (BANYAN_W_F32/F16/BF16), widened
/// exactly to float32 as loaded. A query's bits depend only on its own q, the block and its valid
/// count (never on the other queries); both paths give the same bits. nextKeys/nextValues (may be
/// NULL): the block the caller will pass next; the AVX2 tile path fetches it into cache while this
/// one computes, the AVX-512 kernel ignores it.
void banyan_attention_block_avx512(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                   const float *q, const void *keys, const void *values, int kvtype,
                                   float *out, float *runningMax, float *runningSum,
                                   long headCount, long headDim, long groupSize, long kvHead,
                                   const void *nextKeys, const void *nextValues);
void banyan_attention_block_avx2(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                 const float *q, const void *keys, const void *values, int kvtype,
                                 float *out, float *runningMax, float *runningSum,
                                 long headCount, long headDim, long groupSize, long kvHead,
                                 const void *nextKeys, const void *nextValues);

// ---- Thread pool ---------------------------------------------------------------------------

typedef struct banyan_pool banyan_pool;
typedef void (*banyan_task_fn)(void *context, long index);

/// Creates a pool of `threads - 1` persistent workers (the caller is the last thread).
banyan_pool *banyan_pool_create(int threads);
/// Joins and frees the workers. No call may be in flight.
void banyan_pool_destroy(banyan_pool *pool);
/// Runs fn(context, i) for i in [0, count) over the workers and the caller; returns when all
/// are done. A call from inside a task, or while another thread's call is running, runs serially.
void banyan_pool_run(banyan_pool *pool, long count, banyan_task_fn fn,
                     void *context);

#endif
