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
   (b, t, c) at dst + b*d0 + t*d1 + c. Channels are contiguous; D must be even. */
#ifndef DCT_TOKENS_TEMPLATE
#define DCT_TOKENS_TEMPLATE
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

#define DEFINE_ENTRY(REAL, VSUF, SSUF, LANES, NAME)                                                        \
    int NAME(long n, int nst, const int *radix, const REAL *tw, const REAL *dtw, const REAL *src, long s0,  \
             long s1, REAL *dst, long d0, long d1, long B, long D, const long *perm, const REAL *weight,     \
             const REAL *bias, REAL *colsum, int sine, int inverse, int threads) {                          \
        if (D % 2 || n < 1) return 2;                                                                      \
        job_t job = {n, nst, radix, tw, dtw, src, s0, s1, dst, d0, d1, B, D, perm, weight, bias, colsum,     \
                     sine};                                                                                \
        long half = D / 2, full = half / LANES, per = full + half % LANES, units = B * per;                 \
        size_t bytes = ((size_t)n * 4 * LANES * sizeof(REAL) + 63) / 64 * 64;                               \
        int failed = 0;                                                                                    \
        if (units == 0) return 0; /* no sequences or no channels */                                        \
        if (threads > units) threads = (int)units;                                                         \
        if (threads < 1) threads = 1;                                                                      \
        _Pragma("omp parallel num_threads(threads) reduction(| : failed)") {                               \
            REAL *buf = aligned_alloc(64, bytes);                                                          \
            failed |= buf == NULL;                                                                         \
            _Pragma("omp for schedule(dynamic, 1)") for (long u = 0; u < units; u++) {                     \
                if (buf == NULL) continue;                                                                 \
                long b = u / per, r = u % per;                                                             \
                if (r < full) {                                                                            \
                    if (inverse) inverse_tile_##VSUF(&job, b, r * LANES, buf);                             \
                    else forward_tile_##VSUF(&job, b, r * LANES, buf);                                     \
                } else {                                                                                   \
                    if (inverse) inverse_tile_##SSUF(&job, b, full * LANES + r - full, buf);               \
                    else forward_tile_##SSUF(&job, b, full * LANES + r - full, buf);                       \
                }                                                                                          \
            }                                                                                              \
            free(buf);                                                                                     \
        }                                                                                                  \
        return failed;                                                                                     \
    }

/* Returns 0, 1 when a buffer could not be allocated (the output is then incomplete), 2 for
   an odd D or n < 1. threads: at most this many (the OpenMP runtime may give fewer). */
DEFINE_ENTRY(float, f32v, f32s, 16, dct_tokens_f32)
DEFINE_ENTRY(double, f64v, f64s, 8, dct_tokens_f64)

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

/* the forward DFT of size R (2, 3, 4 or 5) of v[0..R-1], in place */
static inline void F(dft)(CV *v, int R) {
    if (R == 4) {
        CV a0 = v[0], a1 = v[1], a2 = v[2], a3 = v[3];
        VEC t0r = a0.re + a2.re, t0i = a0.im + a2.im, t1r = a0.re - a2.re, t1i = a0.im - a2.im;
        VEC t2r = a1.re + a3.re, t2i = a1.im + a3.im;
        VEC t3r = a1.im - a3.im, t3i = a3.re - a1.re; /* (a1 - a3) * -i */
        v[0].re = t0r + t2r, v[0].im = t0i + t2i;
        v[2].re = t0r - t2r, v[2].im = t0i - t2i;
        v[1].re = t1r + t3r, v[1].im = t1i + t3i;
        v[3].re = t1r - t3r, v[3].im = t1i - t3i;
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
        /* Y[k] = A[k] + i B[k] for the real FFTs A, B of the two channels; the DCT coefficient
           X[k] = s_k Re(e^(-i pi k / 2n) A[k]), with A[k] = (Y[k] + conj Y[n-k]) / 2 and
           B[k] = (Y[k] - conj Y[n-k]) / 2i; a = s_k cos / 2, e = s_k sin / 2 */
        const long k2 = k ? n - k : 0;
        const VEC p = F(ld)(BRE(y, k)), q = F(ld)(BIM(y, k)), P = F(ld)(BRE(y, k2)), Q = F(ld)(BIM(y, k2));
        const REAL a = dtw[2 * k], e = dtw[2 * k + 1];
        REAL *o = dst + k * J->d0;
        F(st)(o, (p + P) * a + (q - Q) * e);
        F(st)(o + half, (q + Q) * a + (P - p) * e);
        if (k2 != k) { /* row n - k: the same terms with cos and sin exchanged */
            REAL *o2 = dst + k2 * J->d0;
            F(st)(o2, (P + p) * e + (Q - q) * a);
            F(st)(o2 + half, (Q + q) * e + (p - P) * a);
        }
    }
}

/* the inverse (DCT-III) of the same channel pairs */
static void F(inverse_tile)(const job_t *J, long b, long c0, REAL *buf) {
    const long n = J->n, half = J->D / 2, first_neg = (n + 1) / 2;
    const REAL *src = (const REAL *)J->src + b * J->s1 + c0, *dtw = (const REAL *)J->dtw + 2 * (n / 2 + 1);
    REAL *bufb = buf + n * 2 * LANES;
    /* V_A[k] = (X_A[k] - i X_A[n-k]) e^(i pi k / 2n) / s_k (X[n] = 0), likewise V_B; the FFT
       then runs on conj(V_A + i V_B) / n, so that conj of its result is the inverse DFT */
    for (long k = 0; k <= n / 2; k++) {
        const long k2 = k ? n - k : 0;
        const REAL c = dtw[2 * k], e = dtw[2 * k + 1];
        const REAL *s = src + k * J->s0;
        const VEC xa = F(ld)(s), xb = F(ld)(s + half);
        if (k == 0) {
            F(st)(BRE(buf, 0), xa * c);
            F(st)(BIM(buf, 0), -(xb * c));
            continue;
        }
        const REAL *s2 = src + k2 * J->s0;
        const VEC xa2 = F(ld)(s2), xb2 = F(ld)(s2 + half);
        const VEC ar = xa * c + xa2 * e, ai = xa * e - xa2 * c, br = xb * c + xb2 * e, bi = xb * e - xb2 * c;
        F(st)(BRE(buf, k), ar - bi);
        F(st)(BIM(buf, k), -(ai + br));
        if (k2 != k) { /* V_A[n-k] = conj V_A[k], likewise V_B */
            F(st)(BRE(buf, k2), ar + bi);
            F(st)(BIM(buf, k2), ai - br);
        }
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

#undef F
#undef CV
#undef BRE
#undef BIM
#undef REAL
#undef VEC
#undef LANES
#undef SUF
#endif
