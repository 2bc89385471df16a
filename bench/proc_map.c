/*
 * Map throughput of the multi-process mode against a sequential loop and
 * Python's process pools on the same work, two workers:
 *
 *   tiny:  10^6 longs, x * x + 1 (the cost is all in moving items);
 *   heavy: items of about 100 microseconds of spinning each.
 *
 * wsched processes copy items through the rings ("procs"), or use
 * buffers from ws_shm_alloc in place ("procs_shm"); "threads" is
 * ws_parallel_map on a ws_pool of as many threads.  The Python figures
 * come from bench/proc_py.py, run with $PYTHON3 when it is set.  Each
 * figure is the median of BENCH_RUNS runs (default 5), items per second.
 *
 *   proc_map [tiny_n heavy_n heavy_us]
 */
#include <wsched.h>

#include "bench.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS 2

struct heavy_ctx {
    uint64_t iters;
};

static uint64_t
spin(uint64_t n, uint64_t x)
{
    x |= 1;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static int
tiny_fn(const void *in, void *out, void *ctx)
{
    long x;
    (void)ctx;
    memcpy(&x, in, sizeof x);
    x = x * x + 1;
    memcpy(out, &x, sizeof x);
    return 0;
}

static int
heavy_fn(const void *in, void *out, void *ctx)
{
    const struct heavy_ctx *c = ctx;
    long x;
    memcpy(&x, in, sizeof x);
    x = (long)(spin(c->iters, (uint64_t)x) & 0xffff) + x;
    memcpy(out, &x, sizeof x);
    return 0;
}

/* The same calls a worker makes, in one loop: the sequential baseline. */
static int
seq_map(const ws_map *m)
{
    const unsigned char *in = m->in;
    unsigned char *out = m->out;
    for (size_t i = 0; i < m->n; i++)
        m->fn(in + i * m->in_size, out + i * m->out_size, m->ctx);
    return 0;
}

struct result {
    char bench[32];
    char impl[32];
    double rate;
};

static struct result results[64];
static int nresults;

static void
record(const char *bench, const char *impl, double rate, int runs)
{
    printf("BENCH %s %s workers=%d median=%.0f items/s runs=%d\n", bench, impl,
           strcmp(impl, "seq") == 0 ? 1 : WORKERS, rate, runs);
    fflush(stdout);
    if (nresults < 64) {
        struct result *r = &results[nresults++];
        snprintf(r->bench, sizeof r->bench, "%s", bench);
        snprintf(r->impl, sizeof r->impl, "%s", impl);
        r->rate = rate;
    }
}

static double
lookup(const char *bench, const char *impl)
{
    for (int i = 0; i < nresults; i++)
        if (strcmp(results[i].bench, bench) == 0 &&
            strcmp(results[i].impl, impl) == 0)
            return results[i].rate;
    return 0;
}

/* What runs a map: a process pool, a thread pool, or neither (seq). */
struct impl {
    const char *name;
    ws_procpool *pp;
    ws_pool *pool;
    const ws_map *m;
};

static int
run_map(const struct impl *im)
{
    if (im->pp != NULL)
        return ws_procpool_map(im->pp, im->m);
    if (im->pool != NULL)
        return ws_parallel_map(im->pool, im->m);
    return seq_map(im->m);
}

/*
 * Times each implementation bench_runs() times, interleaved run by run,
 * so that all of them see the same moments of a shared host.
 */
static void
measure(const char *bench, const struct impl *im, int nim)
{
    int runs = bench_runs();
    double t[8][64];
    if (runs > 64)
        runs = 64;
    for (int r = -1; r < runs; r++) {
        for (int k = 0; k < nim; k++) {
            /* Run -1 is untimed: pages touched, workers awake. */
            double t0 = bench_now();
            int err = run_map(&im[k]);
            if (err != 0) {
                fprintf(stderr, "proc_map: %s %s: %s\n", bench, im[k].name,
                        strerror(err));
                exit(1);
            }
            if (r >= 0)
                t[k][r] = bench_now() - t0;
        }
    }
    for (int k = 0; k < nim; k++)
        record(bench, im[k].name, (double)im[k].m->n / bench_median(t[k], runs),
               runs);
}

static void
python(int tiny_n, int heavy_n, int heavy_us)
{
    const char *py = getenv("PYTHON3");
    const char *src = getenv("srcdir");
    if (py == NULL || *py == '\0') {
        printf("# PYTHON3 not set: no Python baselines\n");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/bench/proc_py.py' map %d %d %d", py,
             src && *src ? src : ".", tiny_n, heavy_n, heavy_us);
    FILE *f = popen(cmd, "r");
    if (f == NULL) {
        printf("# cannot run %s\n", cmd);
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        char bench[32], impl[32];
        int w, runs;
        double v;
        if (sscanf(line,
                   "BENCH %31s %31s workers=%d median=%lf items/s "
                   "runs=%d",
                   bench, impl, &w, &v, &runs) == 5)
            record(bench, impl, v, runs);
        else
            fputs(line, stdout);
    }
    if (pclose(f) != 0)
        printf("# %s failed\n", cmd);
}

static void
table(const char *bench, const char *title, double capacity)
{
    static const char *const impls[] = {
        "seq",       "threads",         "procs",
        "procs_shm", "py_pool_default", "py_pool_1000",
        "py_ppe_1",  "py_ppe_1000",
    };
    double seq = lookup(bench, "seq"), thr = lookup(bench, "threads");
    double best_py = 0;
    for (size_t i = 4; i < sizeof impls / sizeof impls[0]; i++)
        if (lookup(bench, impls[i]) > best_py)
            best_py = lookup(bench, impls[i]);
    printf("\n%s\n", title);
    printf("  %-16s %14s %9s %9s %11s %11s\n", "impl", "items/s", "vs seq",
           "vs ideal", "vs threads", "vs best py");
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++) {
        double v = lookup(bench, impls[i]);
        if (v == 0)
            continue;
        printf("  %-16s %14.0f %8.2fx", impls[i], v, seq ? v / seq : 0);
        /* ideal: the sequential rate times the cores we actually got */
        if (i >= 1 && i <= 3)
            printf(" %8.0f%%", seq ? 100 * v / (seq * capacity) : 0);
        else
            printf(" %9s", "");
        if (i >= 2 && i <= 3 && thr > 0)
            printf(" %10.0f%%", 100 * v / thr);
        else
            printf(" %11s", "");
        if (best_py > 0)
            printf(" %10.1fx", v / best_py);
        printf("\n");
    }
}

int
main(int argc, char **argv)
{
    int tiny_n = 1000000, heavy_n = 2000, heavy_us = 100;
    if (argc == 4) {
        tiny_n = atoi(argv[1]);
        heavy_n = atoi(argv[2]);
        heavy_us = atoi(argv[3]);
    }
    if (tiny_n < 1 || heavy_n < 1 || heavy_us < 1) {
        fprintf(stderr, "usage: proc_map [tiny_n heavy_n heavy_us]\n");
        return 2;
    }

    /* Calibrate the heavy item before any fork or thread. */
    double rate[3];
    uint64_t sink = 0;
    for (int i = 0; i < 3; i++) {
        double t0 = bench_now();
        sink += spin(5000000, (uint64_t)i + sink);
        rate[i] = 5000000 / (bench_now() - t0);
    }
    if (sink == 42)
        printf("#\n");
    struct heavy_ctx hc = {
        .iters = (uint64_t)(bench_median(rate, 3) * heavy_us * 1e-6)};

    /* Processes first: the pool must exist before the program has
     * threads (bench_capacity starts some). */
    ws_procpool *pp;
    int err = ws_procpool_create(&pp, WORKERS);
    if (err != 0) {
        fprintf(stderr, "proc_map: ws_procpool_create: %s\n", strerror(err));
        return 1;
    }

    long *in = malloc((size_t)tiny_n * sizeof *in);
    long *out = malloc((size_t)tiny_n * sizeof *out);
    long *sin = ws_shm_alloc(pp, (size_t)tiny_n * sizeof *sin);
    long *sout = ws_shm_alloc(pp, (size_t)tiny_n * sizeof *sout);
    if (!in || !out || !sin || !sout) {
        fprintf(stderr, "proc_map: out of memory\n");
        return 1;
    }
    for (int i = 0; i < tiny_n; i++)
        in[i] = sin[i] = i;

    ws_map tiny = {.fn = tiny_fn,
                   .in = in,
                   .in_size = sizeof(long),
                   .out = out,
                   .out_size = sizeof(long),
                   .n = (size_t)tiny_n};
    ws_map tiny_shm = tiny;
    tiny_shm.in = sin;
    tiny_shm.out = sout;
    ws_map heavy = {.fn = heavy_fn,
                    .in = in,
                    .in_size = sizeof(long),
                    .out = out,
                    .out_size = sizeof(long),
                    .n = (size_t)(heavy_n < tiny_n ? heavy_n : tiny_n),
                    .ctx = &hc,
                    .ctx_size = sizeof hc};

    /* Threads after the process pool: its workers never see them. */
    ws_pool *pool;
    err = ws_pool_create(&pool, &(ws_pool_opts){.workers = WORKERS});
    if (err != 0) {
        fprintf(stderr, "proc_map: ws_pool_create: %s\n", strerror(err));
        return 1;
    }

    double cap0 = bench_capacity();
    const struct impl tiny_impls[] = {
        {"seq", NULL, NULL, &tiny},
        {"threads", NULL, pool, &tiny},
        {"procs", pp, NULL, &tiny},
        {"procs_shm", pp, NULL, &tiny_shm},
    };
    measure("map_tiny", tiny_impls, 4);
    for (int i = 0; i < tiny_n; i++)
        if (out[i] != (long)i * i + 1 || sout[i] != (long)i * i + 1) {
            fprintf(stderr, "proc_map: wrong result at %d\n", i);
            return 1;
        }
    const struct impl heavy_impls[] = {
        {"seq", NULL, NULL, &heavy},
        {"threads", NULL, pool, &heavy},
        {"procs", pp, NULL, &heavy},
    };
    measure("map_heavy", heavy_impls, 3);
    double cap1 = bench_capacity();
    double capacity = (cap0 + cap1) / 2;

    python(tiny_n, (int)heavy.n, heavy_us);

    printf("\n# proc_map: %d workers; parallel capacity %.2f before, "
           "%.2f after (2.00 = two full cores)\n",
           WORKERS, cap0, cap1);
    printf("# heavy item: %llu spin iterations (~%d us)\n",
           (unsigned long long)hc.iters, heavy_us);
    table("map_tiny", "map of tiny items (x*x+1 on longs)", capacity);
    table("map_heavy", "map of heavy items (~100 us of spinning each)",
          capacity);
    printf("\n# targets: tiny procs >= 50x best Python; heavy procs within "
           "5%% of threads\n");

    ws_shm_free(pp, sin);
    ws_shm_free(pp, sout);
    free(in);
    free(out);
    ws_pool_destroy(pool);
    return ws_procpool_destroy(pp) == 0 ? 0 : 1;
}
