/*
 * Map throughput (items/s): ws_parallel_map against sequential C, OpenMP
 * parallel for with schedule(static) and schedule(dynamic), and oneTBB
 * parallel_for (bench/map_tbb, run as a child), for tiny items (10^7
 * doubles squared) and heavy ones (10^4 items of about 100 us of spinning).
 * Every implementation calls the same item function through a pointer, as a
 * map must.  For tiny items three more lines show the loop with the square
 * inlined (sequential, OpenMP static, ws_parallel_for), i.e. the scheduling
 * cost without the per-item call.
 *
 * Runs are interleaved: each round measures every implementation once, the
 * parallel-capacity probes included, so that the medians describe the same
 * seconds of a host that time-slices its vCPUs.  The heavy target uses the
 * capacity measured with the heavy item itself (item_capacity); bench.h's
 * probe is printed beside it.
 *
 * Environment: BENCH_RUNS (rounds, default 5), BENCH_MAP_TINY and
 * BENCH_MAP_HEAVY (item counts), BENCH_MAP_SPIN_US (µs per heavy item,
 * default 100), BENCH_MAP_TBB (the oneTBB program; default map_tbb beside
 * this one).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <wsched.h>

#include "bench.h"
#include "map_items.h"

static map_item_fn volatile tiny_fn = map_square;
static map_item_fn volatile heavy_fn = map_spin;
static volatile uint64_t spin_sink; /* keeps calibration runs alive */

struct work {
    map_item_fn          fn;
    const unsigned char *in;
    unsigned char       *out;
    size_t               in_size, out_size, n;
    void                *ctx;
    unsigned             workers;
    ws_pool             *pool;
};

typedef double (*impl_fn)(const struct work *w);

static double
seq_run(const struct work *w)
{
    map_item_fn fn = w->fn;
    double t0 = bench_now();

    for (size_t i = 0; i < w->n; i++)
        fn(w->in + i * w->in_size, w->out + i * w->out_size, w->ctx);
    return bench_now() - t0;
}

static double
wsched_run(const struct work *w)
{
    ws_map m = {.fn = w->fn,
                .in = w->in,
                .in_size = w->in_size,
                .out = w->out,
                .out_size = w->out_size,
                .n = w->n,
                .ctx = w->ctx};
    double t0 = bench_now();
    int rc = ws_parallel_map(w->pool, &m);

    if (rc != 0) {
        fprintf(stderr, "bench/map: ws_parallel_map: %s\n", strerror(rc));
        exit(1);
    }
    return bench_now() - t0;
}

static double
seq_inline_run(const struct work *w)
{
    const double *in = (const double *)w->in;
    double *out = (double *)w->out;
    double t0 = bench_now();

    for (size_t i = 0; i < w->n; i++)
        out[i] = in[i] * in[i];
    return bench_now() - t0;
}

static void
square_range(size_t b, size_t e, void *ctx)
{
    const struct work *w = ctx;
    const double *in = (const double *)w->in;
    double *out = (double *)w->out;

    for (size_t i = b; i < e; i++)
        out[i] = in[i] * in[i];
}

static double
wsched_for_inline_run(const struct work *w)
{
    double t0 = bench_now();
    int rc = ws_parallel_for(w->pool, 0, w->n, 0, square_range, (void *)w);

    if (rc != 0) {
        fprintf(stderr, "bench/map: ws_parallel_for: %s\n", strerror(rc));
        exit(1);
    }
    return bench_now() - t0;
}

#ifdef _OPENMP
static double
omp_static_run(const struct work *w)
{
    map_item_fn fn = w->fn;
    double t0 = bench_now();

#pragma omp parallel for schedule(static) num_threads(w->workers)
    for (size_t i = 0; i < w->n; i++)
        fn(w->in + i * w->in_size, w->out + i * w->out_size, w->ctx);
    return bench_now() - t0;
}

static double
omp_dynamic_run(const struct work *w)
{
    map_item_fn fn = w->fn;
    double t0 = bench_now();

#pragma omp parallel for schedule(dynamic) num_threads(w->workers)
    for (size_t i = 0; i < w->n; i++)
        fn(w->in + i * w->in_size, w->out + i * w->out_size, w->ctx);
    return bench_now() - t0;
}

static double
omp_static_inline_run(const struct work *w)
{
    const double *in = (const double *)w->in;
    double *out = (double *)w->out;
    double t0 = bench_now();

#pragma omp parallel for schedule(static) num_threads(w->workers)
    for (size_t i = 0; i < w->n; i++)
        out[i] = in[i] * in[i];
    return bench_now() - t0;
}
#endif

/* One implementation of one workload: its samples, in seconds per run. */
struct impl {
    const char *name;
    impl_fn     run; /* NULL: the oneTBB child */
    bool        tiny, heavy, inline_body;
    double      t_tiny[64], t_heavy[64];
    int         k_tiny, k_heavy;
};

static struct impl impls[] = {
    {"seq", seq_run, true, true, false, {0}, {0}, 0, 0},
#ifdef _OPENMP
    {"omp_static", omp_static_run, true, true, false, {0}, {0}, 0, 0},
    {"omp_dynamic", omp_dynamic_run, true, true, false, {0}, {0}, 0, 0},
#endif
    {"tbb", NULL, true, true, false, {0}, {0}, 0, 0},
    {"wsched", wsched_run, true, true, false, {0}, {0}, 0, 0},
    {"seq_inline", seq_inline_run, true, false, true, {0}, {0}, 0, 0},
#ifdef _OPENMP
    {"omp_static_inline", omp_static_inline_run, true, false, true, {0}, {0},
     0, 0},
#endif
    {"wsched_for_inline", wsched_for_inline_run, true, false, true, {0}, {0},
     0, 0},
};
#define NIMPLS (int)(sizeof impls / sizeof impls[0])

static size_t
env_size(const char *name, size_t def)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 10) : def;
}

static uint64_t
calibrate_spin(double us)
{
    uint64_t rounds = 1000000, x = 1, y;
    double best = 1e9;

    for (int k = 0; k < 5; k++) {
        double t0 = bench_now();
        heavy_fn(&x, &y, &rounds);
        double dt = bench_now() - t0;
        spin_sink = y;
        if (dt < best)
            best = dt;
    }
    return (uint64_t)(rounds * us * 1e-6 / best) + 1;
}

/*
 * The capacity probe of bench.h, measured with the heavy item itself: one
 * thread runs a batch of spins, then two threads run one batch each.  The
 * item is called through heavy_fn, which the compiler cannot see through,
 * so neither measurement can be folded or moved across the clock reads.
 */
struct cap_arg {
    uint64_t seed, out, rounds;
};

static void *
cap_spin(void *p)
{
    struct cap_arg *a = p;

    heavy_fn(&a->seed, &a->out, &a->rounds);
    return NULL;
}

static double
item_capacity(uint64_t spin)
{
    double v[5];

    for (int k = 0; k < 5; k++) {
        struct cap_arg a = {1, 0, spin * 200}, b = a, c = a;
        pthread_t t;
        double t0 = bench_now();
        cap_spin(&a);
        double one = bench_now() - t0;
        t0 = bench_now();
        pthread_create(&t, NULL, cap_spin, &b);
        cap_spin(&c);
        pthread_join(t, NULL);
        v[k] = 2.0 * one / (bench_now() - t0);
        spin_sink = a.out + b.out + c.out;
    }
    return bench_median(v, 5);
}

/* Path of map_tbb: BENCH_MAP_TBB, else beside argv[0]; NULL if absent. */
static const char *
tbb_path(const char *argv0)
{
    static char path[PATH_MAX];
    const char *env = getenv("BENCH_MAP_TBB");
    const char *slash = strrchr(argv0, '/');

    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else if (slash)
        snprintf(path, sizeof path, "%.*s/map_tbb", (int)(slash - argv0),
                 argv0);
    else
        snprintf(path, sizeof path, "./map_tbb");
    return access(path, X_OK) == 0 ? path : NULL;
}

/* One round of the oneTBB child: appends one sample per workload. */
static void
tbb_round(const char *path, struct impl *t, unsigned workers, size_t tiny_n,
          size_t heavy_n, uint64_t spin)
{
    char cmd[PATH_MAX + 128], line[256], bench[64];
    FILE *p;
    double v;

    snprintf(cmd, sizeof cmd, "'%s' %u %zu %zu %llu 1", path, workers, tiny_n,
             heavy_n, (unsigned long long)spin);
    if ((p = popen(cmd, "r")) == NULL)
        return;
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "BENCH %63s tbb workers=%*u median=%lf", bench,
                   &v) != 2 ||
            v <= 0)
            continue;
        if (strcmp(bench, "map_tiny") == 0 && t->k_tiny < 64)
            t->t_tiny[t->k_tiny++] = (double)tiny_n / v;
        else if (strcmp(bench, "map_heavy") == 0 && t->k_heavy < 64)
            t->t_heavy[t->k_heavy++] = (double)heavy_n / v;
    }
    if (pclose(p) != 0)
        fprintf(stderr, "bench/map: %s failed\n", path);
}

static void
verify_tiny(const char *name, const double *in, const double *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] != in[i] * in[i]) {
            fprintf(stderr, "bench/map: %s: wrong result at %zu\n", name, i);
            exit(1);
        }
}

static void
verify_heavy(const char *name, const uint64_t *ref, const uint64_t *out,
             size_t n)
{
    if (memcmp(ref, out, n * sizeof *out) != 0) {
        fprintf(stderr, "bench/map: %s: wrong heavy result\n", name);
        exit(1);
    }
}

/* Median of the k samples in v (copied: v keeps its order). */
static double
median_of(const double *v, int k)
{
    double c[64];

    memcpy(c, v, (size_t)k * sizeof *c);
    return bench_median(c, k);
}

static void
pause_between(void)
{
    /* Let spinning OpenMP threads and idle workers go to sleep. */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int
main(int argc, char **argv)
{
    size_t tiny_n = env_size("BENCH_MAP_TINY", 10000000);
    size_t heavy_n = env_size("BENCH_MAP_HEAVY", 10000);
    double spin_us = (double)env_size("BENCH_MAP_SPIN_US", 100);
    int runs = bench_runs();
    const char *tbb = tbb_path(argv[0]);
    double caps[64], icaps[64];
    ws_pool *pool;
    int rc;

    (void)argc;
    if (runs > 64)
        runs = 64;
    if ((rc = ws_pool_create(&pool, NULL)) != 0) {
        fprintf(stderr, "bench/map: ws_pool_create: %s\n", strerror(rc));
        return 1;
    }
    unsigned workers = ws_pool_size(pool);
    uint64_t spin = calibrate_spin(spin_us);

    double *tin = malloc(tiny_n * sizeof *tin);
    double *tout = malloc(tiny_n * sizeof *tout);
    uint64_t *hin = malloc(heavy_n * sizeof *hin);
    uint64_t *hout = malloc(heavy_n * sizeof *hout);
    uint64_t *href = malloc(heavy_n * sizeof *href);
    if (!tin || !tout || !hin || !hout || !href) {
        fprintf(stderr, "bench/map: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < tiny_n; i++)
        tin[i] = (double)i * 0.25 - 1e5;
    memset(tout, 0, tiny_n * sizeof *tout);
    for (size_t i = 0; i < heavy_n; i++)
        hin[i] = i + 1;

    struct work tiny = {tiny_fn,         (const unsigned char *)tin,
                        (unsigned char *)tout, sizeof *tin,
                        sizeof *tout,    tiny_n,
                        NULL,            workers,
                        pool};
    struct work heavy = {heavy_fn,        (const unsigned char *)hin,
                         (unsigned char *)hout, sizeof *hin,
                         sizeof *hout,    heavy_n,
                         &spin,           workers,
                         pool};

    /* The reference for heavy items, and a warm-up of every tiny run. */
    heavy.out = (unsigned char *)href;
    seq_run(&heavy);
    heavy.out = (unsigned char *)hout;
    for (int k = 0; k < NIMPLS; k++)
        if (impls[k].run)
            impls[k].run(&tiny);

    printf("map: %u workers, tiny %zu items, heavy %zu items of %.0f us "
           "(%llu rounds), %d rounds%s\n",
           workers, tiny_n, heavy_n, spin_us, (unsigned long long)spin, runs,
           tbb ? "" : " (no map_tbb: oneTBB skipped)");
    fflush(stdout);

    for (int r = 0; r < runs; r++) {
        caps[r] = bench_capacity();
        icaps[r] = item_capacity(spin);
        for (int k = 0; k < NIMPLS; k++) {
            struct impl *im = &impls[k];
            if (im->run == NULL) {
                if (tbb)
                    tbb_round(tbb, im, workers, tiny_n, heavy_n, spin);
                continue;
            }
            memset(tout, 0, tiny_n * sizeof *tout);
            pause_between();
            im->t_tiny[im->k_tiny++] = im->run(&tiny);
            verify_tiny(im->name, tin, tout, tiny_n);
            if (im->heavy) {
                memset(hout, 0, heavy_n * sizeof *hout);
                pause_between();
                im->t_heavy[im->k_heavy++] = im->run(&heavy);
                verify_heavy(im->name, href, hout, heavy_n);
            }
        }
    }

    double cap = median_of(icaps, runs), probe = median_of(caps, runs);
    double t_seq_heavy = median_of(impls[0].t_heavy, impls[0].k_heavy);
    double t_ref_tiny = 0, t_ws_tiny = 0, t_ws_heavy = 0;
    const char *ref_name = "omp_static";

    printf("BENCH map_capacity probe workers=%u median=%.3f cores runs=%d\n",
           workers, probe, runs);
    printf("BENCH map_capacity item_probe workers=%u median=%.3f cores "
           "runs=%d\n",
           workers, cap, runs);
    for (int k = 0; k < NIMPLS; k++) {
        struct impl *im = &impls[k];
        unsigned w = im->run == seq_run || im->run == seq_inline_run
                         ? 1
                         : workers;
        if (im->k_tiny)
            printf("BENCH map_tiny %s workers=%u median=%.6g items/s "
                   "runs=%d\n",
                   im->name, w,
                   tiny_n / median_of(im->t_tiny, im->k_tiny), im->k_tiny);
        if (im->k_heavy)
            printf("BENCH map_heavy %s workers=%u median=%.6g items/s "
                   "runs=%d\n",
                   im->name, w,
                   heavy_n / median_of(im->t_heavy, im->k_heavy),
                   im->k_heavy);
        if (strcmp(im->name, ref_name) == 0)
            t_ref_tiny = median_of(im->t_tiny, im->k_tiny);
        if (strcmp(im->name, "wsched") == 0) {
            t_ws_tiny = median_of(im->t_tiny, im->k_tiny);
            t_ws_heavy = median_of(im->t_heavy, im->k_heavy);
        }
    }

    printf("\nmap throughput, %u workers, capacity %.2f cores with the heavy "
           "item (bench.h probe %.2f), medians of %d rounds\n",
           workers, cap, probe, runs);
    printf("%-18s %12s %9s %12s %8s %9s\n", "impl", "tiny it/s", "t/omp_st",
           "heavy it/s", "speedup", "sp/cap");
    for (int k = 0; k < NIMPLS; k++) {
        struct impl *im = &impls[k];
        if (!im->k_tiny && !im->k_heavy)
            continue;
        double tt = im->k_tiny ? median_of(im->t_tiny, im->k_tiny) : 0;
        printf("%-18s %12.4g ", im->name, tt > 0 ? tiny_n / tt : 0);
        if (t_ref_tiny > 0 && tt > 0)
            printf("%9.2f ", tt / t_ref_tiny);
        else
            printf("%9s ", "-");
        if (im->k_heavy) {
            double th = median_of(im->t_heavy, im->k_heavy);
            printf("%12.4g %8.2f %9.2f\n", heavy_n / th, t_seq_heavy / th,
                   t_seq_heavy / th / cap);
        } else {
            printf("%12s %8s %9s\n", "-", "-", "-");
        }
    }
    if (t_ref_tiny > 0)
        printf("target: tiny wsched/omp_static time %.2f (<= 1.20: %s)\n",
               t_ws_tiny / t_ref_tiny,
               t_ws_tiny <= 1.2 * t_ref_tiny ? "met" : "missed");
    printf("target: heavy wsched speedup/capacity %.2f (>= 0.95: %s)\n",
           t_seq_heavy / t_ws_heavy / cap,
           t_seq_heavy / t_ws_heavy >= 0.95 * cap ? "met" : "missed");

    ws_pool_destroy(pool);
    free(tin);
    free(tout);
    free(hin);
    free(hout);
    free(href);
    return 0;
}
