/*
 * The measuring loop shared by the fork-join benchmarks (fib, nqueens, UTS)
 * in every version: sequential C, wsched, OpenMP tasks and oneTBB.  Header
 * only, so that the C and the C++ programs measure the same way.
 *
 * Every program takes the same options:
 *     -w N   every worker: measure with 1 worker and with N (0: the
 *            version's default, the default pool size for wsched)
 *     -r N   timed runs per case (default bench_runs(): BENCH_RUNS or 5)
 *     -n N   problem size (fib and nqueens)
 *     -s     wsched only: print the default pool size and exit
 * and prints one line per case,
 *     BENCH <bench> <impl> workers=<n> median=<ms> ms runs=<k>
 * and, for each case with two or more workers, the parallel capacity of the
 * machine during those runs (the median of bench_capacity() taken in every
 * round, just before the first such case),
 *     BENCH <bench> <impl>-capacity workers=<n> median=<c> cores runs=<k>
 * bench/fj.sh runs every program and builds the table from these lines.
 *
 * The cases of a program run interleaved, one run of each per round, so
 * that a change of load on this shared, time-sliced machine falls on all
 * of them alike and their ratios stay meaningful.  Every run's result is
 * checked; a wrong one prints FAIL on stderr and the program exits 1.
 */
#ifndef WS_BENCH_FJ_H
#define WS_BENCH_FJ_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define FJ_MAX_RUNS 1000

struct fj_opts {
    unsigned workers;
    int runs;
    int n;
    int size_only;
};

static inline void
fj_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [-w workers] [-r runs] [-n size] [-s]\n", prog);
    exit(2);
}

static inline int
fj_atoi(const char *s, const char *prog)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000)
        fj_usage(prog);
    return (int)v;
}

/* Parses argv into o; n_default is the problem size when -n is absent. */
static inline void
fj_parse(int argc, char **argv, struct fj_opts *o, int n_default)
{
    int c;

    o->workers = 0;
    o->runs = bench_runs();
    o->n = n_default;
    o->size_only = 0;
    while ((c = getopt(argc, argv, "w:r:n:s")) != -1) {
        switch (c) {
        case 'w':
            o->workers = (unsigned)fj_atoi(optarg, argv[0]);
            break;
        case 'r':
            o->runs = fj_atoi(optarg, argv[0]);
            break;
        case 'n':
            o->n = fj_atoi(optarg, argv[0]);
            break;
        case 's':
            o->size_only = 1;
            break;
        default:
            fj_usage(argv[0]);
        }
    }
    if (optind != argc)
        fj_usage(argv[0]);
    if (o->runs < 1)
        o->runs = 1;
    if (o->runs > FJ_MAX_RUNS)
        o->runs = FJ_MAX_RUNS;
}

/* One run of a benchmark: returns 0 when the result is right, else prints
 * what was wrong and returns nonzero. */
typedef int (*fj_body)(void *ctx);

/* A measured case: an implementation with a worker count. */
struct fj_case {
    const char *impl;
    unsigned workers;
    fj_body body;
    void *ctx;
};

/* Prints a failure and exits: a benchmark with a wrong answer measures
 * nothing. */
static inline void
fj_fail(const char *bench, const char *impl, const char *what)
{
    fprintf(stderr, "FAIL %s %s: %s\n", bench, impl, what);
    fflush(stdout);
    exit(1);
}

/* Times one run of case c and checks its result. */
static inline double
fj_time(const char *bench, const struct fj_case *c)
{
    double t0 = bench_now();
    int bad = c->body(c->ctx);
    double t = bench_now() - t0;

    if (bad)
        fj_fail(bench, c->impl, "wrong result");
    return t;
}

/*
 * Runs each of the n cases once as a warm-up, then `runs` rounds of one
 * timed run of each, and prints their BENCH lines.  Every round, the
 * warm-up included, probes the capacity before its first case with two or
 * more workers.  A warm-up that
 * took more than FJ_LONG_RUN seconds counts as the first timed run of its
 * case: one-time start-up costs (threads, stacks, arenas) are then lost in
 * it, and it spares the slow peers a whole extra run.
 */
#define FJ_LONG_RUN 1.0
#define FJ_MAX_CASES 8

static inline void
fj_measure(const char *bench, const struct fj_case *c, int n, int runs)
{
    static double t[FJ_MAX_CASES][FJ_MAX_RUNS], cap[FJ_MAX_RUNS + 1];
    int done[FJ_MAX_CASES], ncap = 0;

    if (n > FJ_MAX_CASES)
        fj_fail(bench, c[0].impl, "too many cases");
    for (int r = -1; r < runs; r++) {
        int probed = 0;

        for (int k = 0; k < n; k++) {
            double w;

            if (r < 0)
                done[k] = 0;
            else if (done[k] >= runs)
                continue;
            if (c[k].workers >= 2 && !probed) {
                cap[ncap++] = bench_capacity();
                probed = 1;
            }
            w = fj_time(bench, &c[k]);
            if (r >= 0 || w > FJ_LONG_RUN)
                t[k][done[k]++] = w;
        }
    }
    for (int k = 0; k < n; k++)
        printf("BENCH %s %s workers=%u median=%.3f ms runs=%d\n", bench,
               c[k].impl, c[k].workers, bench_median(t[k], runs) * 1e3, runs);
    if (ncap > 0) {
        double capacity = bench_median(cap, ncap);

        for (int k = 0; k < n; k++)
            if (c[k].workers >= 2)
                printf("BENCH %s %s-capacity workers=%u median=%.2f cores "
                       "runs=%d\n",
                       bench, c[k].impl, c[k].workers, capacity, ncap);
    }
    fflush(stdout);
}

#endif /* WS_BENCH_FJ_H */
