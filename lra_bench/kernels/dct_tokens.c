/* Orthonormal DCT-II and its inverse along the token axis of token-major activations, built
   on first use by lra_bench.kernels (plain C, OpenMP where the compiler has it; no torch
   headers).

   The LST layers' fast path (lra_bench/attention/lst_tokens.py) transforms the layer's input
   tokens x (B, n, D) once and projects their spectra, instead of projecting and transforming
   3 x D channels; for that it needs the transform along n of token-major data, where torch's
   FFTs are slow (a column FFT copies or strides badly). Here every butterfly works on whole
   vectors of channels, so the transform along n vectorises across channels with no shuffles:

   - Channels d and d + D/2 of a sequence are the real and imaginary parts of one complex
     signal; one complex FFT of length n gives both real FFTs (the usual two-for-one).
   - DCT-II by Makhoul's algorithm (IEEE TASSP 1980): the input is read in Makhoul order (even
     samples, then odd samples reversed) while it is copied in, the FFT runs, and a post-pass
     separates the two real spectra and rotates them into DCT coefficients, written to the
     output rows k. The inverse runs the same steps backwards.
   - The FFT is a mixed-radix (4, 2, 3, 5) Stockham transform (self-sorting, so no bit
     reversal) on a tile of TILE complex columns held in a per-thread buffer of n rows, which
     stays in a core's cache while all stages run: n = 2^a 3^b 5^c (1024, 2000, 4000, 4096).
   - Copy-in applies mask weights and the DST input signs; copy-out applies the DST output
     signs, an output bias and mask weights; the forward can also sum each input column
     (the output bias's gradient), so none of these costs a pass of its own.

   Tiles are independent (a sequence and TILE channel pairs); threads take them from an
   OpenMP loop. Inside a torch process the OpenMP runtime is torch's own (its libgomp is
   already loaded under the same soname), so the kernel runs on torch's worker threads, which
   are still spinning from the last product, instead of competing with them for the cores.

   Layouts (in elements): forward input (b, t, c) at src + b*s0 + t*s1 + c, output (k, b, c)
   at dst + k*d0 + b*d1 + c; inverse input (k, b, c) at src + k*s0 + b*s1 + c, output
   (b, t, c) at dst + b*d0 + t*d1 + c. Channels are contiguous; D must be even.

   The same FFT also serves the general LST core (lra_bench/transforms/spectral.py), whose
   signals are contiguous rows: the `dct_rows` entries (below) gather 2 x LANES rows into a
   tile, a cache line per row at a time, and write the core's packed coefficients straight
   into place. torch's FFTs there cost an rFFT, a twiddle pass and, with `out=`, a copy. */
#ifndef DCT_TOKENS_TEMPLATE
#define DCT_TOKENS_TEMPLATE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

typedef struct {
    long n;
    int nst;           /* FFT stages */
    const int *radix;  /* radix of each stage */
    const void *tw;    /* per stage, for j < Ns (the product of earlier radices), r = 1..R-1:
                          cos, sin of -2 pi r j / (Ns R) */
    const void *dtw;   /* for k <= n/2: forward (s_k cos(pi k / 2n) / 2, s_k sin / 2); then, for the
                          inverse, (cos / (s_k n), sin / (s_k n)) */
    const void *src;
    long s0, s1;
    void *dst;
    long d0, d1, B, D;
    const long *perm;    /* Makhoul order: position j holds token perm[j] */
    const void *weight;  /* (B, n) per-token weights (a padding mask), natural order, or NULL */
    const void *bias;    /* (D,) added to the inverse's outputs before the weights, or NULL */
    void *colsum;        /* (B, D): the forward's weighted input summed over tokens, or NULL */
    int sine;            /* DST-II: inputs (forward) or outputs (inverse) at Makhoul positions >= ceil(n/2) negated */
    double nyquist;      /* rows layout: the factor on the Nyquist pair, or (fourier) on the interior bins */
    int fourier;         /* rows layout: the unitary DFT's half spectrum instead, 2: of rows in Makhoul
                            order (see the rows entry) */
} job_t;

/* float: 16 lanes (one AVX-512 register, two AVX ones); double: 8; scalar tiles for the rest */
typedef float vf16 __attribute__((vector_size(64)));
typedef double vd8 __attribute__((vector_size(64)));

#define REAL float
#define VEC vf16
#define LANES 16
#define SUF f32v
#include __FILE__
#define REAL float
#define VEC float
#define LANES 1
#define SUF f32s
#include __FILE__
#define REAL double
#define VEC vd8
#define LANES 8
#define SUF f64v
#include __FILE__
#define REAL double
#define VEC double
#define LANES 1
#define SUF f64s
#include __FILE__

/* A thread's tile buffer of at least `bytes` (a multiple of 64), kept for the thread's next
   call: the threads are torch's OpenMP pool, which lives as long as the process, and a
   buffer of about a MiB allocated and freed on every call faulted in fresh pages on some
   calls and not others. NULL when it cannot be allocated. */
static void *tile_buffer(size_t bytes) {
    static _Thread_local void *buf;
    static _Thread_local size_t size;
    if (size < bytes) {
        free(buf);
        buf = aligned_alloc(64, bytes);
        size = buf == NULL ? 0 : bytes;
    }
    return buf;
}

/* The entries' common frame: `units` independent tiles from an OpenMP loop, each thread with
   its own `bytes` of tile buffer (`buf`, `tile_buffer`); BODY handles tile u. Returns from the
   entry: 0, or 1 when a buffer could not be allocated. */
#define RUN_TILES(REAL, units, bytes, BODY)                                                              \
    do {                                                                                                 \
        int failed = 0;                                                                                  \
        if ((units) == 0) return 0; /* nothing to transform */                                           \
        if (threads > (units)) threads = (int)(units);                                                   \
        if (threads < 1) threads = 1;                                                                    \
        _Pragma("omp parallel num_threads(threads) reduction(| : failed)") {                             \
            REAL *buf = tile_buffer(bytes);                                                              \
            failed |= buf == NULL;                                                                       \
            _Pragma("omp for schedule(dynamic, 1)") for (long u = 0; u < (units); u++) {                 \
                if (buf == NULL) continue;                                                               \
                BODY                                                                                     \
            }                                                                                            \
        }                                                                                                \
        return failed;                                                                                   \
    } while (0)

#define DEFINE_ENTRY(REAL, VSUF, SSUF, LANES, NAME)                                                        \
    int NAME(long n, int nst, const int *radix, const REAL *tw, const REAL *dtw, const REAL *src, long s0,  \
             long s1, REAL *dst, long d0, long d1, long B, long D, const long *perm, const REAL *weight,     \
             const REAL *bias, REAL *colsum, int sine, int inverse, int threads) {                          \
        if (D % 2 || n < 1) return 2;                                                                      \
        job_t job = {n, nst, radix, tw, dtw, src, s0, s1, dst, d0, d1, B, D, perm, weight, bias, colsum,     \
                     sine};                                                                                \
        long half = D / 2, full = half / LANES, per = full + half % LANES, units = B * per;                 \
        size_t bytes = ((size_t)n * 4 * LANES * sizeof(REAL) + 63) / 64 * 64;                               \
        RUN_TILES(REAL, units, bytes, {                                                                    \
            long b = u / per;                                                                              \
            long r = u % per;                                                                              \
            if (r < full) {                                                                                \
                if (inverse) inverse_tile_##VSUF(&job, b, r * LANES, buf);                                 \
                else forward_tile_##VSUF(&job, b, r * LANES, buf);                                         \
            } else {                                                                                       \
                if (inverse) inverse_tile_##SSUF(&job, b, full * LANES + r - full, buf);                   \
                else forward_tile_##SSUF(&job, b, full * LANES + r - full, buf);                           \
            }                                                                                              \
        });                                                                                                \
    }

/* Returns 0, 1 when a buffer could not be allocated (the output is then incomplete), 2 for
   an odd D or n < 1. threads: at most this many (the OpenMP runtime may give fewer). */
DEFINE_ENTRY(float, f32v, f32s, 16, dct_tokens_f32)
DEFINE_ENTRY(double, f64v, f64s, 8, dct_tokens_f64)

/* The rows layout: outer x inner real rows of n samples, already in Makhoul order, row
   (o, i) at src + o*s0 + i*s1 (samples contiguous); coefficients in the general LST core's
   packed form (lra_bench/transforms/spectral.py, FastDCT2): n/2 + 1 (re, im) pairs per row,
   pair k = (X[k], -X[n-k]), pair 0 = (X[0], 0), and for even n the Nyquist pair
   (X[n/2], -X[n/2]), times `nyquist`. The inverse reads pair 0's real part, the other pairs
   as (X[k], -X[n-k]), and the Nyquist coefficient as nyquist * (re - im) / 2 (its average),
   as torch's irFFT of the packed spectrum does. A tile is 2 x LANES rows (a row each for
   the real and imaginary parts of a lane), gathered into the tile buffer and scattered back;
   the last tile may be partial. With `fourier` 1, rows in natural order and the unitary DFT's
   half spectrum instead (torch.fft.rfft / irfft with norm="ortho"; the inverse reads only
   the real parts of bins 0 and n/2), the interior bins 0 < k < n/2 times `nyquist` (2 and
   1/2 make the adjoints); with `fourier` 2 the same spectrum of rows in Makhoul order (the
   forward reads them, and the inverse writes them, in that order). Same return codes (2:
   n < 1). */
#define DEFINE_ROWS(REAL, VSUF, LANES, NAME)                                                               \
    int NAME(long n, int nst, const int *radix, const REAL *tw, const REAL *dtw, const REAL *src, long s0,  \
             long s1, REAL *dst, long d0, long d1, long outer, long inner, double nyquist, int fourier,     \
             int inverse, int threads) {                                                                   \
        if (n < 1) return 2;                                                                               \
        job_t job = {n, nst, radix, tw, dtw, src, s0, s1, dst, d0, d1, outer, inner, NULL, NULL, NULL, NULL, \
                     0, nyquist, fourier};                                                                 \
        long units = (outer * inner + 2 * LANES - 1) / (2 * LANES);                                        \
        size_t bytes = ((size_t)(n * 4 + 8) * LANES * sizeof(REAL) + 63) / 64 * 64;                        \
        RUN_TILES(REAL, units, bytes, {                                                                    \
            if (inverse) inverse_rows_##VSUF(&job, u * 2 * LANES, buf);                                    \
            else forward_rows_##VSUF(&job, u * 2 * LANES, buf);                                            \
        });                                                                                                \
    }

DEFINE_ROWS(float, f32v, 16, dct_rows_f32)
DEFINE_ROWS(double, f64v, 8, dct_rows_f64)

#else /* the template: tile functions for one REAL, VEC (LANES lanes) and suffix SUF */

#define F(name) CAT(name, SUF)
#define CV F(cv)
typedef struct {
    VEC re, im;
} CV;

static inline VEC F(ld)(const REAL *p) {
    VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void F(st)(REAL *p, VEC v) { memcpy(p, &v, sizeof v); }

/* a buffer row: LANES real parts, then LANES imaginary parts */
#define BRE(buf, i) ((buf) + (long)(i) * 2 * LANES)
#define BIM(buf, i) ((buf) + (long)(i) * 2 * LANES + LANES)

static inline CV F(cmul)(CV a, REAL wr, REAL wi) {
    CV r = {a.re * wr - a.im * wi, a.re * wi + a.im * wr};
    return r;
}

/* the DFT of 4 of v[0..3], in place */
static inline __attribute__((always_inline)) void F(dft4)(CV *v) {
    CV a0 = v[0], a1 = v[1], a2 = v[2], a3 = v[3];
    VEC t0r = a0.re + a2.re, t0i = a0.im + a2.im, t1r = a0.re - a2.re, t1i = a0.im - a2.im;
    VEC t2r = a1.re + a3.re, t2i = a1.im + a3.im;
    VEC t3r = a1.im - a3.im, t3i = a3.re - a1.re; /* (a1 - a3) * -i */
    v[0].re = t0r + t2r, v[0].im = t0i + t2i;
    v[2].re = t0r - t2r, v[2].im = t0i - t2i;
    v[1].re = t1r + t3r, v[1].im = t1i + t3i;
    v[3].re = t1r - t3r, v[3].im = t1i - t3i;
}

/* the forward DFT of size R (2, 3, 4 or 5) of v[0..R-1], in place */
static inline __attribute__((always_inline)) void F(dft)(CV *v, int R) {
    if (R == 4) {
        F(dft4)(v);
    } else if (R == 2) {
        CV a = v[0], b = v[1];
        v[0].re = a.re + b.re, v[0].im = a.im + b.im;
        v[1].re = a.re - b.re, v[1].im = a.im - b.im;
    } else if (R == 3) {
        const REAL h = (REAL)0.86602540378443864676; /* sin(2 pi / 3) */
        CV a0 = v[0], a1 = v[1], a2 = v[2];
        VEC tr = a1.re + a2.re, ti = a1.im + a2.im, ur = (a1.re - a2.re) * h, ui = (a1.im - a2.im) * h;
        VEC mr = a0.re - tr * (REAL)0.5, mi = a0.im - ti * (REAL)0.5;
        v[0].re = a0.re + tr, v[0].im = a0.im + ti;
        v[1].re = mr + ui, v[1].im = mi - ur; /* m - i u */
        v[2].re = mr - ui, v[2].im = mi + ur; /* m + i u */
    } else { /* R == 5 */
        const REAL c1 = (REAL)0.30901699437494742410, c2 = (REAL)-0.80901699437494742410;
        const REAL s1 = (REAL)0.95105651629515357212, s2 = (REAL)0.58778525229247312917;
        CV a0 = v[0], a1 = v[1], a2 = v[2], a3 = v[3], a4 = v[4];
        VEC t1r = a1.re + a4.re, t1i = a1.im + a4.im, t2r = a2.re + a3.re, t2i = a2.im + a3.im;
        VEC u1r = a1.re - a4.re, u1i = a1.im - a4.im, u2r = a2.re - a3.re, u2i = a2.im - a3.im;
        VEC m1r = a0.re + t1r * c1 + t2r * c2, m1i = a0.im + t1i * c1 + t2i * c2;
        VEC m2r = a0.re + t1r * c2 + t2r * c1, m2i = a0.im + t1i * c2 + t2i * c1;
        VEC n1r = u1r * s1 + u2r * s2, n1i = u1i * s1 + u2i * s2; /* y1 = m1 - i n1, y4 = m1 + i n1 */
        VEC n2r = u1r * s2 - u2r * s1, n2i = u1i * s2 - u2i * s1; /* y2 = m2 - i n2, y3 = m2 + i n2 */
        v[0].re = a0.re + t1r + t2r, v[0].im = a0.im + t1i + t2i;
        v[1].re = m1r + n1i, v[1].im = m1i - n1r;
        v[4].re = m1r - n1i, v[4].im = m1i + n1r;
        v[2].re = m2r + n2i, v[2].im = m2i - n2r;
        v[3].re = m2r - n2i, v[3].im = m2i + n2r;
    }
}

/* One Stockham stage of radix R (a constant where it is inlined, so that the R values stay in
   registers and the DFT's branches fold away): d0 -> d1, for ns, the product of the earlier
   stages' radices, and tw, this stage's twiddles. The loop runs over blocks of ns
   butterflies, so no index needs a division. */
static inline __attribute__((always_inline)) void F(stage)(const REAL *restrict d0, REAL *restrict d1, long n,
                                                           long ns, const REAL *tw, const int R) {
    const long m = n / R;
    for (long j0 = 0; j0 < m; j0 += ns) {
        const long out0 = j0 * R;
        for (long jn = 0; jn < ns; jn++) {
            const long j = j0 + jn;
            const REAL *w = tw + 2 * (R - 1) * jn;
            CV v[5];
            for (int r = 0; r < R; r++) {
                v[r].re = F(ld)(BRE(d0, j + r * m));
                v[r].im = F(ld)(BIM(d0, j + r * m));
            }
            if (jn)
                for (int r = 1; r < R; r++) v[r] = F(cmul)(v[r], w[2 * r - 2], w[2 * r - 1]);
            F(dft)(v, R);
            const long out = out0 + jn;
            for (int r = 0; r < R; r++) {
                F(st)(BRE(d1, out + r * ns), v[r].re);
                F(st)(BIM(d1, out + r * ns), v[r].im);
            }
        }
    }
}

/* The Stockham FFT of the n rows in d0 (d1: scratch of the same size); returns the buffer
   holding the result, in natural order. */
static REAL *F(fft)(const job_t *J, REAL *d0, REAL *d1) {
    const long n = J->n;
    const REAL *tw = J->tw;
    long ns = 1; /* product of the earlier stages' radices */
    for (int s = 0; s < J->nst; s++) {
        const int R = J->radix[s];
        switch (R) {
        case 4: F(stage)(d0, d1, n, ns, tw, 4); break;
        case 2: F(stage)(d0, d1, n, ns, tw, 2); break;
        case 3: F(stage)(d0, d1, n, ns, tw, 3); break;
        default: F(stage)(d0, d1, n, ns, tw, 5); break;
        }
        tw += 2 * (R - 1) * ns;
        ns *= R;
        REAL *t = d0;
        d0 = d1, d1 = t;
    }
    return d0;
}

/* The forward's post-pass at k <= n/2 (k2 = n - k, or 0 for k = 0), shared by the tile and
   rows layouts: from the FFT y of two real signals A and B (Y[k] = A[k] + i B[k]) the DCT-II
   coefficients x = (X_A[k], X_B[k], X_A[n-k], X_B[n-k]), X[k] = s_k Re(e^(-i pi k / 2n) A[k]),
   with A[k] = (Y[k] + conj Y[n-k]) / 2 and B[k] = (Y[k] - conj Y[n-k]) / 2i; a = s_k cos / 2,
   e = s_k sin / 2 (the entries n - k are the same terms with cos and sin exchanged) */
static inline __attribute__((always_inline)) void F(dct_coeffs)(const REAL *y, long k, long k2, REAL a, REAL e,
                                                                VEC *x) {
    const VEC p = F(ld)(BRE(y, k)), q = F(ld)(BIM(y, k)), P = F(ld)(BRE(y, k2)), Q = F(ld)(BIM(y, k2));
    x[0] = (p + P) * a + (q - Q) * e;
    x[1] = (q + Q) * a + (P - p) * e;
    x[2] = (P + p) * e + (Q - q) * a;
    x[3] = (Q + q) * e + (p - P) * a;
}

/* The inverse's FFT input at rows k and k2 = n - k (row k alone where k2 == k): conj of
   (V_A + i V_B) for the full spectra V_A, V_B of two real signals, given V_A[k] = ar + i ai
   and V_B[k] = br + i bi (V[n-k] = conj V[k]), so that conj of the forward FFT's result is
   the inverse DFT; shared by the tile and rows layouts */
static inline __attribute__((always_inline)) void F(put_spectra)(REAL *buf, long k, long k2, VEC ar, VEC ai, VEC br,
                                                                 VEC bi) {
    F(st)(BRE(buf, k), ar - bi);
    F(st)(BIM(buf, k), -(ai + br));
    if (k2 != k) {
        F(st)(BRE(buf, k2), ar + bi);
        F(st)(BIM(buf, k2), ai - br);
    }
}

/* `put_spectra` for the DCT-III: V[k] = (X[k] - i X[n-k]) e^(i pi k / 2n) / s_k / n from the
   coefficients xa = X_A[k], xb = X_B[k], xa2 = X_A[n-k], xb2 = X_B[n-k] (0 for k = 0);
   c = cos / (s_k n), e = sin / (s_k n) */
static inline __attribute__((always_inline)) void F(dct_spectra)(REAL *buf, long k, long k2, VEC xa, VEC xb, VEC xa2,
                                                                 VEC xb2, REAL c, REAL e) {
    F(put_spectra)(buf, k, k2, xa * c + xa2 * e, xa * e - xa2 * c, xb * c + xb2 * e, xb * e - xb2 * c);
}

/* DCT-II of sequence b's channel pairs (c0 + i, half + c0 + i), i < LANES */
static void F(forward_tile)(const job_t *J, long b, long c0, REAL *buf) {
    const long n = J->n, half = J->D / 2, first_neg = (n + 1) / 2;
    const REAL *src = (const REAL *)J->src + b * J->s0 + c0, *weight = J->weight;
    REAL *bufb = buf + n * 2 * LANES;
    VEC sum_re = {0}, sum_im = {0};
    for (long j = 0; j < n; j++) {
        const long t = J->perm[j];
        const REAL *s = src + t * J->s1;
        VEC re = F(ld)(s), im = F(ld)(s + half);
        if (weight) {
            const REAL w = weight[b * n + t];
            re *= w, im *= w;
        }
        sum_re += re, sum_im += im;
        if (J->sine && j >= first_neg) re = -re, im = -im;
        F(st)(BRE(buf, j), re);
        F(st)(BIM(buf, j), im);
    }
    if (J->colsum) {
        REAL *cs = (REAL *)J->colsum + b * J->D + c0;
        F(st)(cs, sum_re);
        F(st)(cs + half, sum_im);
    }
    const REAL *y = F(fft)(J, buf, bufb), *dtw = J->dtw;
    REAL *dst = (REAL *)J->dst + b * J->d1 + c0;
    for (long k = 0; k <= n / 2; k++) {
        const long k2 = k ? n - k : 0;
        VEC x[4];
        F(dct_coeffs)(y, k, k2, dtw[2 * k], dtw[2 * k + 1], x);
        REAL *o = dst + k * J->d0;
        F(st)(o, x[0]);
        F(st)(o + half, x[1]);
        if (k2 != k) { /* row n - k */
            REAL *o2 = dst + k2 * J->d0;
            F(st)(o2, x[2]);
            F(st)(o2 + half, x[3]);
        }
    }
}

/* the inverse (DCT-III) of the same channel pairs */
static void F(inverse_tile)(const job_t *J, long b, long c0, REAL *buf) {
    const long n = J->n, half = J->D / 2, first_neg = (n + 1) / 2;
    const REAL *src = (const REAL *)J->src + b * J->s1 + c0, *dtw = (const REAL *)J->dtw + 2 * (n / 2 + 1);
    REAL *bufb = buf + n * 2 * LANES;
    const VEC zero = {0};
    for (long k = 0; k <= n / 2; k++) {
        const long k2 = k ? n - k : 0;
        const REAL *s = src + k * J->s0, *s2 = src + k2 * J->s0;
        const VEC xa = F(ld)(s), xb = F(ld)(s + half);
        const VEC xa2 = k ? F(ld)(s2) : zero, xb2 = k ? F(ld)(s2 + half) : zero; /* X[n] = 0 */
        F(dct_spectra)(buf, k, k2, xa, xb, xa2, xb2, dtw[2 * k], dtw[2 * k + 1]);
    }
    const REAL *y = F(fft)(J, buf, bufb), *weight = J->weight, *bias = J->bias;
    REAL *dst = (REAL *)J->dst + b * J->d0 + c0;
    VEC bias_re = {0}, bias_im = {0};
    if (bias) bias_re = F(ld)(bias + c0), bias_im = F(ld)(bias + half + c0);
    for (long j = 0; j < n; j++) {
        const long t = J->perm[j];
        VEC re = F(ld)(BRE(y, j)), im = -F(ld)(BIM(y, j));
        if (J->sine && j >= first_neg) re = -re, im = -im;
        if (bias) re += bias_re, im += bias_im;
        if (weight) {
            const REAL w = weight[b * n + t];
            re *= w, im *= w;
        }
        REAL *o = dst + t * J->d1;
        F(st)(o, re);
        F(st)(o + half, im);
    }
}

/* rows layout: lane l < 2 LANES of a tile is row r0 + l; its values sit at offset l of each
   buffer row (the real parts' LANES, then the imaginary parts') */
static inline const REAL *F(row_in)(const job_t *J, long r) {
    return (const REAL *)J->src + r / J->D * J->s0 + r % J->D * J->s1;
}

static inline REAL *F(row_out)(const job_t *J, long r) {
    return (REAL *)J->dst + r / J->D * J->d0 + r % J->D * J->d1;
}

/* packed pairs staged per k as 4 LANES values: lane group A's re, A's im, B's re, B's im;
   row l's re and im offsets in a staged k */
#define SRE(l) ((l) < LANES ? (l) : LANES + (l))
#define SIM(l) ((l) < LANES ? LANES + (l) : 2 * LANES + (l))

/* Moving a tile between its rows and the buffer is a transposition: rows are read and
   written a cache line (CL values) at a time, through a small block in L1, so that no row's
   line is touched twice (rows a power of two apart share an L1 set). */
#define CL (64 / (long)sizeof(REAL))

/* the buffer record of a row's value t: t itself, or with `makhoul` (count values in
   Makhoul order, read into natural order) the sample that Makhoul position t holds */
static inline long F(record)(long t, long count, int makhoul) {
    return !makhoul ? t : t < (count + 1) / 2 ? 2 * t : 2 * (count - 1 - t) + 1;
}

/* buffer record t (t < count, records `stride` values apart; see `record`) gets, for each row
   l < live, the row's `width` values at t * width: with width 1 (samples) at offset l, with
   width 2 ((re, im) pairs) at offsets SRE(l) and SIM(l) */
static inline __attribute__((always_inline)) void F(gather)(const REAL *const *in, int live, int width, long count,
                                                            REAL *buf, long stride, int makhoul) {
    REAL blk[2 * LANES][CL];
    const long per = CL / width; /* records per line */
    long t0 = 0;
    for (; t0 + per <= count; t0 += per) {
        for (int l = 0; l < live; l++) memcpy(blk[l], in[l] + t0 * width, sizeof blk[l]);
        for (long t = 0; t < per; t++) {
            REAL *rec = buf + F(record)(t0 + t, count, makhoul) * stride;
            if (width == 1)
                for (int l = 0; l < live; l++) rec[l] = blk[l][t];
            else
                for (int l = 0; l < live; l++) rec[SRE(l)] = blk[l][2 * t], rec[SIM(l)] = blk[l][2 * t + 1];
        }
    }
    for (; t0 < count; t0++) {
        REAL *rec = buf + F(record)(t0, count, makhoul) * stride;
        if (width == 1)
            for (int l = 0; l < live; l++) rec[l] = in[l][t0];
        else
            for (int l = 0; l < live; l++) rec[SRE(l)] = in[l][2 * t0], rec[SIM(l)] = in[l][2 * t0 + 1];
    }
}

/* the forward's staged pairs (count records of 4 LANES values) out to the rows */
static void F(scatter)(REAL *const *out, int live, const REAL *st, long count) {
    REAL blk[CL];
    const long per = CL / 2;
    long k0 = 0;
    for (; k0 + per <= count; k0 += per)
        for (int l = 0; l < live; l++) {
            for (long k = 0; k < per; k++) {
                const REAL *sk = st + (k0 + k) * 4 * LANES;
                blk[2 * k] = sk[SRE(l)], blk[2 * k + 1] = sk[SIM(l)];
            }
            memcpy(out[l] + 2 * k0, blk, sizeof blk);
        }
    for (; k0 < count; k0++) {
        const REAL *sk = st + k0 * 4 * LANES;
        for (int l = 0; l < live; l++) out[l][2 * k0] = sk[SRE(l)], out[l][2 * k0 + 1] = sk[SIM(l)];
    }
}

/* the inverse's n samples out of the FFT result y (with `makhoul`, written in Makhoul order:
   see `record`): lane l < LANES is the real part, the rest the imaginary part negated (the
   conjugation of the inverse) */
static inline __attribute__((always_inline)) void F(put)(REAL *const *out, int live, const REAL *y, long n,
                                                         int makhoul) {
    REAL blk[CL];
    long j0 = 0;
    for (; j0 + CL <= n; j0 += CL)
        for (int l = 0; l < live; l++) {
            for (long j = 0; j < CL; j++) blk[j] = y[F(record)(j0 + j, n, makhoul) * 2 * LANES + l];
            if (l >= LANES)
                for (long j = 0; j < CL; j++) blk[j] = -blk[j];
            memcpy(out[l] + j0, blk, sizeof blk);
        }
    for (; j0 < n; j0++) {
        const REAL *yj = y + F(record)(j0, n, makhoul) * 2 * LANES;
        for (int l = 0; l < live; l++) out[l][j0] = l < LANES ? yj[l] : -yj[l];
    }
}

/* packed DCT-II coefficients of rows r0 .. r0 + 2 LANES - 1 */
static __attribute__((unused)) void F(forward_rows)(const job_t *J, long r0, REAL *buf) {
    const long n = J->n, h = n / 2, rows = J->B * J->D;
    REAL *bufb = buf + n * 2 * LANES;
    const REAL *in[2 * LANES];
    int live = 0;
    for (; live < 2 * LANES && r0 + live < rows; live++) in[live] = F(row_in)(J, r0 + live);
    if (live < 2 * LANES) memset(buf, 0, (size_t)n * 2 * LANES * sizeof(REAL));
    if (J->fourier == 2) /* inlined with a constant `makhoul`, so the plain copy keeps its loops */
        F(gather)(in, live, 1, n, buf, 2 * LANES, 1);
    else
        F(gather)(in, live, 1, n, buf, 2 * LANES, 0);
    const REAL *y = F(fft)(J, buf, bufb), *dtw = J->dtw;
    REAL *st = y == buf ? bufb : buf;
    const REAL f = (REAL)J->nyquist, fs = (REAL)(0.5 / sqrt((double)n));
    const VEC zero = {0};
    for (long k = 0; k <= h; k++) {
        const long k2 = k ? n - k : 0;
        VEC xa, ya, xb, yb;
        if (J->fourier) { /* A[k] = (Y[k] + conj Y[n-k]) / 2, B[k] = (Y[k] - conj Y[n-k]) / 2i */
            const VEC p = F(ld)(BRE(y, k)), q = F(ld)(BIM(y, k)), P = F(ld)(BRE(y, k2)), Q = F(ld)(BIM(y, k2));
            const REAL g = (k == 0 || k2 == k ? 1 : f) * fs;
            xa = (p + P) * g, ya = (q - Q) * g, xb = (q + Q) * g, yb = (P - p) * g;
        } else { /* pair k = (X[k], -X[n-k]) */
            VEC x[4];
            F(dct_coeffs)(y, k, k2, dtw[2 * k], dtw[2 * k + 1], x);
            xa = x[0], xb = x[1], ya = -x[2], yb = -x[3];
            if (k == 0) {
                ya = zero, yb = zero;
            } else if (k2 == k) { /* the Nyquist coefficient, twice */
                xa *= f, xb *= f;
                ya = -xa, yb = -xb;
            }
        }
        REAL *o = st + k * 4 * LANES;
        F(st)(o, xa);
        F(st)(o + LANES, ya);
        F(st)(o + 2 * LANES, xb);
        F(st)(o + 3 * LANES, yb);
    }
    REAL *out[2 * LANES];
    for (int l = 0; l < live; l++) out[l] = F(row_out)(J, r0 + l);
    F(scatter)(out, live, st, h + 1);
}

/* the inverse: rows r0 .. r0 + 2 LANES - 1 from their packed coefficients */
static __attribute__((unused)) void F(inverse_rows)(const job_t *J, long r0, REAL *buf) {
    const long n = J->n, h = n / 2, rows = J->B * J->D;
    REAL *bufb = buf + n * 2 * LANES, *st = bufb;
    const REAL *dtw = (const REAL *)J->dtw + 2 * (n / 2 + 1);
    const REAL f = (REAL)J->nyquist / 2;
    const REAL *in[2 * LANES];
    int live = 0;
    for (; live < 2 * LANES && r0 + live < rows; live++) in[live] = F(row_in)(J, r0 + live);
    if (live < 2 * LANES) memset(st, 0, (size_t)(h + 1) * 4 * LANES * sizeof(REAL));
    F(gather)(in, live, 2, h + 1, st, 4 * LANES, 0);
    const VEC zero = {0};
    const REAL root = (REAL)(1 / sqrt((double)n)), inner = (REAL)J->nyquist * root;
    for (long k = 0; k <= h; k++) {
        const long k2 = k ? n - k : 0;
        const REAL *s = st + k * 4 * LANES;
        if (J->fourier) { /* V = the pairs (the full spectra's first half) */
            const int edge = k == 0 || k2 == k; /* DC and Nyquist: real parts only */
            const REAL g = edge ? root : inner;
            const VEC ai = edge ? zero : F(ld)(s + LANES) * g, bi = edge ? zero : F(ld)(s + 3 * LANES) * g;
            F(put_spectra)(buf, k, k2, F(ld)(s) * g, ai, F(ld)(s + 2 * LANES) * g, bi);
            continue;
        }
        /* as inverse_tile, with X[k] and X[n-k] read from the pairs (X[k], -X[n-k]) */
        VEC xa = F(ld)(s), xb = F(ld)(s + 2 * LANES), xa2 = zero, xb2 = zero; /* X[n] = 0 */
        if (k2 == k && k) { /* Nyquist: the pair's average */
            xa = (xa - F(ld)(s + LANES)) * f, xb = (xb - F(ld)(s + 3 * LANES)) * f;
            xa2 = xa, xb2 = xb;
        } else if (k) {
            xa2 = -F(ld)(s + LANES), xb2 = -F(ld)(s + 3 * LANES);
        }
        F(dct_spectra)(buf, k, k2, xa, xb, xa2, xb2, dtw[2 * k], dtw[2 * k + 1]);
    }
    const REAL *y = F(fft)(J, buf, bufb);
    REAL *out[2 * LANES];
    for (int l = 0; l < live; l++) out[l] = F(row_out)(J, r0 + l);
    if (J->fourier == 2)
        F(put)(out, live, y, n, 1);
    else
        F(put)(out, live, y, n, 0);
}

#undef SRE
#undef SIM
#undef CL
#undef F
#undef CV
#undef BRE
#undef BIM
#undef REAL
#undef VEC
#undef LANES
#undef SUF
#endif
