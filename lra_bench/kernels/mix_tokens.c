/* The LST heads' elementwise mixing on token-major spectra, forward and backward, built on
   first use by lra_bench.kernels (plain C with OpenMP where the compiler has it).

   Row r of qkv holds one frequency of one sequence: the (3, H, Dh) spectra of the projected
   queries (already scaled), keys and values, without their bias. The bias enters as
   tm[r] * bias (tm: the coefficients of the padding mask, bias: the 3 H Dh projection
   biases), added here on the fly, so it costs no pass of its own. Per head, with q, k, v
   the head's Dh values of row r:
     A = q * k;  O = A * v / (sum_d |A| + eps)   (normalised; else O = A * v)
   The forward writes O (rows of H Dh) and the normaliser (rows of H). The backward takes
   dL/dO, writes dL/dq, dL/dk, dL/dv over q, k, v in place, and sums tm[r] times them into
   the biases' gradient. In torch these are eight to ten passes over the spectra each way,
   with temporaries; here one, with each head's values in L1 between its reduction and its
   outputs.

   Each thread keeps 3 H Dh + 3 Dh values on its stack (the row with its bias, the outputs
   before they overwrite the inputs; arrays the compiler knows alias nothing, so it
   vectorises the loops: heap buffers measured slower); the Python side keeps that under
   16384 values (128 KiB in float64). Threads (OpenMP: torch's own runtime inside a torch
   process) take fixed blocks of rows, and the bias gradient's per-thread partial sums are
   added in thread order, so results depend on the thread count only, not on timing. */
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ABS(x) ((x) < 0 ? -(x) : (x))

#ifdef _OPENMP
#define THREAD_ID omp_get_thread_num()
#define THREAD_COUNT omp_get_num_threads()
#else
#define THREAD_ID 0
#define THREAD_COUNT 1
#endif

#define DEFINE_MIX(REAL, SUFFIX)                                                                               \
    /* q, k, v of row r with the bias added, into qb, kb, vb (3 H Dh values) */                               \
    static inline const REAL *row_##SUFFIX(const REAL *qkv, long r, long g3, const REAL *tm, const REAL *bias, \
                                            REAL *scratch) {                                                  \
        const REAL *row = qkv + r * g3;                                                                       \
        if (!bias || tm[r] == 0) return row;                                                                  \
        const REAL t = tm[r];                                                                                 \
        for (long c = 0; c < g3; c++) scratch[c] = row[c] + t * bias[c];                                      \
        return scratch;                                                                                       \
    }                                                                                                         \
                                                                                                              \
    int mix_forward_##SUFFIX(const REAL *qkv, long rows, long heads, long dh, const REAL *tm, const REAL *bias, \
                             REAL *out, REAL *norm, REAL eps, int normalize, int threads) {                   \
        const long g = heads * dh;                                                                            \
        _Pragma("omp parallel num_threads(threads)") {                                                        \
            REAL scratch[3 * g], res[dh];                                                                     \
            const long t = THREAD_ID, nt = THREAD_COUNT;                                                      \
            for (long r = rows * t / nt; r < rows * (t + 1) / nt; r++) {                                      \
                const REAL *q = row_##SUFFIX(qkv, r, 3 * g, tm, bias, scratch), *k = q + g, *v = k + g;       \
                REAL *o = out + r * g;                                                                        \
                for (long h = 0; h < heads; h++) {                                                            \
                    const REAL *qh = q + h * dh, *kh = k + h * dh, *vh = v + h * dh;                          \
                    REAL inv = 1;                                                                             \
                    if (normalize) {                                                                          \
                        REAL s = 0;                                                                           \
                        _Pragma("omp simd reduction(+ : s)") for (long d = 0; d < dh; d++) s +=               \
                            ABS(qh[d] * kh[d]);                                                               \
                        s += eps;                                                                             \
                        norm[r * heads + h] = s;                                                              \
                        inv = 1 / s;                                                                          \
                    }                                                                                         \
                    /* into a local array first: the compiler then knows the stores alias no input */         \
                    for (long d = 0; d < dh; d++) res[d] = qh[d] * kh[d] * vh[d] * inv;                       \
                    memcpy(o + h * dh, res, dh * sizeof(REAL));                                               \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
        return 0;                                                                                             \
    }                                                                                                         \
                                                                                                              \
    /* partial: (threads, 3 H Dh) zeros, scratch for the bias gradient, which goes to d_bias */              \
    int mix_backward_##SUFFIX(REAL *qkv, const REAL *grad, const REAL *norm, long rows, long heads, long dh,   \
                              const REAL *tm, const REAL *bias, REAL *partial, REAL *d_bias, int normalize,   \
                              int threads) {                                                                  \
        const long g = heads * dh, g3 = 3 * g;                                                                \
        int used = 1;                                                                                         \
        _Pragma("omp parallel num_threads(threads)") {                                                        \
            REAL scratch[g3], rq[dh], rk[dh], rv[dh];                                                         \
            const long t = THREAD_ID, nt = THREAD_COUNT;                                                      \
            if (t == 0) used = (int)nt;                                                                       \
            REAL *acc = bias ? partial + t * g3 : NULL;                                                       \
            for (long r = rows * t / nt; r < rows * (t + 1) / nt; r++) {                                      \
                const REAL *in = row_##SUFFIX(qkv, r, g3, tm, bias, scratch);                                 \
                REAL *out = qkv + r * g3;                                                                     \
                const REAL *go = grad + r * g;                                                                \
                for (long h = 0; h < heads; h++) {                                                            \
                    const REAL *qh = in + h * dh, *kh = qh + g, *vh = kh + g, *gh = go + h * dh;               \
                    REAL *dq = out + h * dh, *dk = dq + g, *dv = dk + g;                                      \
                    REAL inv = 1, c = 0;                                                                      \
                    if (normalize) {                                                                          \
                        /* gn = dL/dO / norm; dL/dv = gn A; dL/dA = gn v - sign(A) sum_d(gn A v) / norm */     \
                        inv = 1 / norm[r * heads + h];                                                        \
                        REAL s = 0;                                                                           \
                        _Pragma("omp simd reduction(+ : s)") for (long d = 0; d < dh; d++) s +=               \
                            gh[d] * qh[d] * kh[d] * vh[d];                                                    \
                        c = s * inv * inv;                                                                    \
                    }                                                                                         \
                    /* into local arrays first (the outputs overwrite the inputs) */                       \
                    for (long d = 0; d < dh; d++) {                                                           \
                        const REAL qd = qh[d], kd = kh[d], a = qd * kd, gn = gh[d] * inv;                     \
                        const REAL da = gn * vh[d] - (a > 0 ? c : a < 0 ? -c : 0);                            \
                        rv[d] = gn * a;                                                                       \
                        rq[d] = da * kd;                                                                      \
                        rk[d] = da * qd;                                                                      \
                    }                                                                                         \
                    memcpy(dq, rq, dh * sizeof(REAL));                                                        \
                    memcpy(dk, rk, dh * sizeof(REAL));                                                        \
                    memcpy(dv, rv, dh * sizeof(REAL));                                                        \
                }                                                                                             \
                if (acc && tm[r] != 0) {                                                                      \
                    const REAL w = tm[r];                                                                     \
                    for (long c3 = 0; c3 < g3; c3++) acc[c3] += w * out[c3];                                  \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
        if (bias) {                                                                                           \
            memcpy(d_bias, partial, g3 * sizeof(REAL));                                                       \
            for (long t = 1; t < used; t++)                                                                   \
                for (long c3 = 0; c3 < g3; c3++) d_bias[c3] += partial[t * g3 + c3];                          \
        }                                                                                                     \
        return 0;                                                                                             \
    }

DEFINE_MIX(float, f32)
DEFINE_MIX(double, f64)
