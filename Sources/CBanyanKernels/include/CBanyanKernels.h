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
/// count (never on the other queries); both paths give the same bits.
void banyan_attention_block_avx512(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                   const float *q, const void *keys, const void *values, int kvtype,
                                   float *out, float *runningMax, float *runningSum,
                                   long headCount, long headDim, long groupSize, long kvHead);
void banyan_attention_block_avx2(const int32_t *rows, const int32_t *validCounts, long rowCount,
                                 const float *q, const void *keys, const void *values, int kvtype,
                                 float *out, float *runningMax, float *runningSum,
                                 long headCount, long headDim, long groupSize, long kvHead);

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
