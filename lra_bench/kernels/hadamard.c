/* Orthonormal fast Walsh-Hadamard transform (Sylvester order) of contiguous rows, built on
   first use by lra_bench.kernels (plain C with OpenMP, or POSIX threads where the compiler
   has no OpenMP; no torch headers).

   A row of n = 2^k values is transformed in place in a core's L1/L2 cache, so it costs
   about one pass over memory. The first four butterfly stages (H_16 on each block of 16)
   run in registers with vector shuffles where the compiler offers them; the others are
   radix-4 and radix-2 butterflies between contiguous runs, which compilers vectorise.
   float64 rows (for tests) take the plain loops.

   Rows are addressed in two levels, so that views such as one slot of a (B, 3, ...) buffer,
   or the first n values of longer rows, need no copy: row i * inner + j starts at
   i * outer_stride + j * row_stride, in src and dst alike (each with its own strides).
   src and dst may be the same memory (in place). */
#include <math.h>
#include <pthread.h>
#include <string.h>

#define MAX_THREADS 256
/* Values per thread, at least. With POSIX threads, starting them (and competing with the
   OpenMP workers torch leaves spinning after its own operations) costs more than it saves
   below 2^20: in the LST layers at n = 4096 on 2 cores, calls of 128-384 rows ran faster on
   one thread. OpenMP's threads are torch's own, already running: 2^16 is enough there. */
#ifdef _OPENMP
#define MIN_PER_THREAD (1L << 16)
#else
#define MIN_PER_THREAD (1L << 20)
#endif

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define WHT_SHUFFLE 1
#endif
#endif

#define DEFINE_STAGES(REAL, SUFFIX)                                                                       \
    /* butterflies of spans h = first, 2 first, ..., n / 2, in place */                                  \
    static void stages_##SUFFIX(REAL *x, long n, long first) {                                           \
        long h = first;                                                                                   \
        for (; 4 * h <= n; h *= 4)                                                                        \
            for (long i = 0; i < n; i += 4 * h) {                                                         \
                REAL *restrict p0 = x + i, *restrict p1 = p0 + h, *restrict p2 = p1 + h,                  \
                               *restrict p3 = p2 + h;                                                     \
                for (long j = 0; j < h; j++) {                                                            \
                    REAL a = p0[j], b = p1[j], c = p2[j], d = p3[j];                                      \
                    REAL s1 = a + b, d1 = a - b, s2 = c + d, d2 = c - d;                                  \
                    p0[j] = s1 + s2;                                                                      \
                    p2[j] = s1 - s2;                                                                      \
                    p1[j] = d1 + d2;                                                                      \
                    p3[j] = d1 - d2;                                                                      \
                }                                                                                         \
            }                                                                                             \
        for (; h < n; h *= 2)                                                                             \
            for (long i = 0; i < n; i += 2 * h) {                                                         \
                REAL *restrict p = x + i, *restrict q = x + i + h;                                        \
                for (long j = 0; j < h; j++) {                                                            \
                    REAL a = p[j], b = q[j];                                                              \
                    p[j] = a + b;                                                                         \
                    q[j] = a - b;                                                                         \
                }                                                                                         \
            }                                                                                             \
    }                                                                                                     \
    /* the plain way: scale into dst, then every stage */                                                 \
    static void row_plain_##SUFFIX(const REAL *src, REAL *dst, long n, REAL scale) {                     \
        for (long j = 0; j < n; j++) dst[j] = src[j] * scale;                                             \
        stages_##SUFFIX(dst, n, 1);                                                                       \
    }

DEFINE_STAGES(float, f32)
DEFINE_STAGES(double, f64)

#ifdef WHT_SHUFFLE
typedef float v16f __attribute__((vector_size(64)));

/* scale * H_16 on each block of 16 values, src -> dst */
static void blocks16_f32(const float *src, float *dst, long n, float scale) {
    const v16f s1 = {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
    const v16f s2 = {1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1};
    const v16f s4 = {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1};
    const v16f s8 = {1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};
    for (long i = 0; i < n; i += 16) {
        v16f v;
        memcpy(&v, src + i, sizeof v);
        v = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14) + s1 * v;
        v = __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13) + s2 * v;
        v = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11) + s4 * v;
        v = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7) + s8 * v;
        v *= scale;
        memcpy(dst + i, &v, sizeof v);
    }
}
#endif

static void row_f32(const float *src, float *dst, long n, float scale) {
#ifdef WHT_SHUFFLE
    if (n >= 16) {
        blocks16_f32(src, dst, n, scale);
        stages_f32(dst, n, 16);
        return;
    }
#endif
    row_plain_f32(src, dst, n, scale);
}

static void row_f64(const double *src, double *dst, long n, double scale) { row_plain_f64(src, dst, n, scale); }

typedef struct {
    const void *src;
    void *dst;
    long inner, n, src_outer, src_row, dst_outer, dst_row, first, last;
    int dbl;
} range;

static void *run_range(void *p) {
    const range *r = p;
    for (long i = r->first; i < r->last; i++) {
        long src_at = i / r->inner * r->src_outer + i % r->inner * r->src_row;
        long dst_at = i / r->inner * r->dst_outer + i % r->inner * r->dst_row;
        if (r->dbl)
            row_f64((const double *)r->src + src_at, (double *)r->dst + dst_at, r->n, 1 / sqrt((double)r->n));
        else
            row_f32((const float *)r->src + src_at, (float *)r->dst + dst_at, r->n, (float)(1 / sqrt((double)r->n)));
    }
    return NULL;
}

/* outer * inner rows of n values, src -> dst; returns 1 if threads could not be started
   (the work is then done on this thread), else 0. With OpenMP the threads are the runtime's:
   in a torch process torch's own libgomp (the same soname), whose workers are still spinning
   from torch's last operation, so they take the work at once instead of competing with it. */
static int run(const void *src, void *dst, long outer, long inner, long n, const long *strides, int threads,
               int dbl) {
    long rows = outer * inner;
    long most = rows * n / MIN_PER_THREAD;
    if (threads > most) threads = (int)(most > 0 ? most : 1);
    if (threads > rows) threads = (int)rows;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    range ranges[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        range r = {src, dst, inner, n, strides[0], strides[1], strides[2], strides[3],
                   rows * i / threads, rows * (i + 1) / threads, dbl};
        ranges[i] = r;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int i = 0; i < threads; i++) run_range(&ranges[i]);
    return 0;
#else
    pthread_t ids[MAX_THREADS];
    int started = 0, status = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&ids[i], NULL, run_range, &ranges[i]) != 0) {
            status = 1;
            for (int j = i; j < threads; j++) run_range(&ranges[j]);
            break;
        }
        started = i;
    }
    run_range(&ranges[0]);
    for (int i = 1; i <= started; i++) pthread_join(ids[i], NULL);
    return status;
#endif
}

/* strides: src outer, src row, dst outer, dst row (in values) */
int wht_f32(const float *src, float *dst, long outer, long inner, long n, long src_outer, long src_row,
            long dst_outer, long dst_row, int threads) {
    const long strides[4] = {src_outer, src_row, dst_outer, dst_row};
    return run(src, dst, outer, inner, n, strides, threads, 0);
}

int wht_f64(const double *src, double *dst, long outer, long inner, long n, long src_outer, long src_row,
            long dst_outer, long dst_row, int threads) {
    const long strides[4] = {src_outer, src_row, dst_outer, dst_row};
    return run(src, dst, outer, inner, n, strides, threads, 1);
}
