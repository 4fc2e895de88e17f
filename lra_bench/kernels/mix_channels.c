/* The LST heads' elementwise mixing in the general core's channels-first layout, forward and
   backward, built on first use by lra_bench.kernels (plain C with OpenMP where the compiler
   has it).

   The core (lra_bench/attention/lst_core.py) keeps the spectra of the projected queries
   (scale folded in), keys and values as (B, 3, H, Dh, L) real values (L coefficients per
   channel, packed DCT pairs included). Per sequence b, head h and coefficient j, over the
   head's Dh channels d:
     A = q * k;  O = A * v / (sum_d |A| + eps)   (normalised; else O = A * v)
   The forward writes O (B, H, Dh, L) and the normaliser (B, H, L). Heads flagged in `cplx`
   (NULL: none) hold complex spectra instead, L / 2 (re, im) pairs (the half spectra of
   MixedSpectralAttention's Fourier heads), and mix as O = q * conj(k) * v, never normalised;
   their backward, with g = dL/dRe O + i dL/dIm O, is dL/dq = g * k * conj(v),
   dL/dk = conj(g) * q * v, dL/dv = g * conj(q) * k. The backward takes
   g = dL/dO (B, H, Dh, L) and writes dL/dq to t (B, H, Dh, L), dL/dk over the values' slot
   and dL/dv over g: the buffers the core's inverse transforms then read, so its memory use
   does not change. In torch these are eight to ten passes over the spectra each way, with
   temporaries; here one, a block of coefficients at a time, each block's Dh channels in
   cache between the sum over channels and the outputs.

   Work is split into (b, h, block) units taken from an OpenMP loop (torch's own runtime
   inside a torch process); each unit is independent, so results do not depend on threads. */
#include <stddef.h>
#include <string.h>

#define BLOCK 256 /* coefficients per unit: 3 x Dh x 256 values stay in L2 */
#define ABS(x) ((x) < 0 ? -(x) : (x))

/* The loop over units (b, h, block of coefficients j0 .. j0 + w - 1) from OpenMP, `slot` the
   values of one of q, k, v per sequence; the body (the macro's arguments) handles one unit. */
#define FOR_UNITS(...)                                                                                        \
    const long blocks = (len + BLOCK - 1) / BLOCK, units = batch * heads * blocks;                            \
    const long slot = heads * dh * len;                                                                       \
    _Pragma("omp parallel for num_threads(threads) schedule(static)") for (long u = 0; u < units; u++) {      \
        const long b = u / (heads * blocks), h = u / blocks % heads, j0 = u % blocks * BLOCK;                 \
        const long w = len - j0 < BLOCK ? len - j0 : BLOCK;                                                   \
        __VA_ARGS__                                                                                           \
    }

#define DEFINE_MIX(REAL, SUFFIX)                                                                              \
    int mix_channels_forward_##SUFFIX(const REAL *c, long batch, long heads, long dh, long len, REAL *out,     \
                                      REAL *norm, REAL eps, int normalize, const unsigned char *cplx,         \
                                      int threads) {                                                          \
        FOR_UNITS(                                                                                            \
            const REAL *q = c + b * 3 * slot + h * dh * len + j0, *k = q + slot, *v = k + slot;               \
            REAL *o = out + (b * heads + h) * dh * len + j0;                                                  \
            if (cplx != NULL && cplx[h]) {                                                                    \
                for (long d = 0; d < dh; d++) {                                                               \
                    REAL r[BLOCK];                                                                            \
                    const REAL *qd = q + d * len, *kd = k + d * len, *vd = v + d * len;                       \
                    for (long j = 0; j < w; j += 2) {                                                         \
                        const REAL ar = qd[j] * kd[j] + qd[j + 1] * kd[j + 1];                                \
                        const REAL ai = qd[j + 1] * kd[j] - qd[j] * kd[j + 1];                                \
                        r[j] = ar * vd[j] - ai * vd[j + 1], r[j + 1] = ar * vd[j + 1] + ai * vd[j];           \
                    }                                                                                         \
                    memcpy(o + d * len, r, w * sizeof(REAL));                                                 \
                }                                                                                             \
                continue;                                                                                     \
            }                                                                                                 \
            REAL inv[BLOCK];                                                                                  \
            for (long j = 0; j < w; j++) inv[j] = normalize ? 0 : 1;                                          \
            if (normalize) {                                                                                  \
                for (long d = 0; d < dh; d++)                                                                 \
                    for (long j = 0; j < w; j++) inv[j] += ABS(q[d * len + j] * k[d * len + j]);              \
                REAL *nm = norm + (b * heads + h) * len + j0;                                                 \
                for (long j = 0; j < w; j++) {                                                                \
                    nm[j] = inv[j] + eps;                                                                     \
                    inv[j] = 1 / nm[j];                                                                       \
                }                                                                                             \
            }                                                                                                 \
            for (long d = 0; d < dh; d++) {                                                                   \
                REAL r[BLOCK]; /* local first: the stores then alias no input */                              \
                for (long j = 0; j < w; j++) r[j] = q[d * len + j] * k[d * len + j] * v[d * len + j] * inv[j]; \
                memcpy(o + d * len, r, w * sizeof(REAL));                                                     \
            })                                                                                                \
        return 0;                                                                                             \
    }                                                                                                         \
                                                                                                              \
    int mix_channels_backward_##SUFFIX(REAL *c, REAL *g, REAL *t, const REAL *norm, long batch, long heads,   \
                                       long dh, long len, int normalize, const unsigned char *cplx,           \
                                       int threads) {                                                         \
        FOR_UNITS(                                                                                            \
            const long at = (b * heads + h) * dh * len + j0;                                                  \
            const REAL *q = c + b * 3 * slot + h * dh * len + j0, *k = q + slot;                              \
            REAL *v = (REAL *)k + slot, *gg = g + at, *dq = t + at;                                           \
            if (cplx != NULL && cplx[h]) {                                                                    \
                for (long d = 0; d < dh; d++) {                                                               \
                    REAL rq[BLOCK], rk[BLOCK], rv[BLOCK];                                                     \
                    const long i0 = d * len;                                                                  \
                    for (long j = 0; j < w; j += 2) {                                                         \
                        const long i = i0 + j;                                                                \
                        const REAL qr = q[i], qi = q[i + 1], kr = k[i], ki = k[i + 1];                        \
                        const REAL vr = v[i], vi = v[i + 1], gr = gg[i], gi = gg[i + 1];                      \
                        const REAL kvr = kr * vr + ki * vi, kvi = ki * vr - kr * vi;   /* k conj(v) */        \
                        const REAL qvr = qr * vr - qi * vi, qvi = qr * vi + qi * vr;   /* q v */              \
                        const REAL qkr = qr * kr + qi * ki, qki = qr * ki - qi * kr;   /* conj(q) k */        \
                        rq[j] = gr * kvr - gi * kvi, rq[j + 1] = gr * kvi + gi * kvr;                         \
                        rk[j] = gr * qvr + gi * qvi, rk[j + 1] = gr * qvi - gi * qvr;                         \
                        rv[j] = gr * qkr - gi * qki, rv[j + 1] = gr * qki + gi * qkr;                         \
                    }                                                                                         \
                    memcpy(dq + i0, rq, w * sizeof(REAL));                                                    \
                    memcpy(v + i0, rk, w * sizeof(REAL));                                                     \
                    memcpy(gg + i0, rv, w * sizeof(REAL));                                                    \
                }                                                                                             \
                continue;                                                                                     \
            }                                                                                                 \
            REAL inv[BLOCK], cc[BLOCK];                                                                       \
            for (long j = 0; j < w; j++) inv[j] = 1, cc[j] = 0;                                               \
            if (normalize) {                                                                                  \
                /* gn = dL/dO / norm; dL/dv = gn A; dL/dA = gn v - sign(A) sum_d(gn A v) / norm */             \
                const REAL *nm = norm + (b * heads + h) * len + j0;                                           \
                for (long d = 0; d < dh; d++)                                                                 \
                    for (long j = 0; j < w; j++)                                                              \
                        cc[j] += gg[d * len + j] * q[d * len + j] * k[d * len + j] * v[d * len + j];          \
                for (long j = 0; j < w; j++) {                                                                \
                    inv[j] = 1 / nm[j];                                                                       \
                    cc[j] *= inv[j] * inv[j];                                                                 \
                }                                                                                             \
            }                                                                                                 \
            for (long d = 0; d < dh; d++) {                                                                   \
                REAL rq[BLOCK], rk[BLOCK], rv[BLOCK]; /* local first: the stores then alias no input */       \
                for (long j = 0; j < w; j++) {                                                                \
                    const long i = d * len + j;                                                               \
                    const REAL a = q[i] * k[i], gn = gg[i] * inv[j];                                          \
                    const REAL da = gn * v[i] - (a > 0 ? cc[j] : a < 0 ? -cc[j] : 0);                         \
                    rv[j] = gn * a;                                                                           \
                    rq[j] = da * k[i];                                                                        \
                    rk[j] = da * q[i];                                                                        \
                }                                                                                             \
                memcpy(dq + d * len, rq, w * sizeof(REAL));                                                   \
                memcpy(v + d * len, rk, w * sizeof(REAL));                                                    \
                memcpy(gg + d * len, rv, w * sizeof(REAL));                                                   \
            })                                                                                                \
        return 0;                                                                                             \
    }

DEFINE_MIX(float, f32)
DEFINE_MIX(double, f64)
