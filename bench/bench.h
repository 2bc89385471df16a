/*
 * Helpers shared by the benchmarks: a monotonic clock, medians, the run
 * count, and the parallel-capacity probe.  Header-only so that the C and the
 * C++ (oneTBB) benchmarks use the same code.
 *
 * Output convention: each benchmark prints one machine-readable line per
 * measurement,
 *     BENCH <bench> <impl> workers=<n> median=<value> <unit> runs=<k>
 * and then a human table with medians and ratios.
 */
#ifndef WS_BENCH_H
#define WS_BENCH_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double
bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1]; sorts v. */
static inline double
bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Runs per measurement: BENCH_RUNS, default 5, at least 1. */
static inline int
bench_runs(void)
{
    const char *s = getenv("BENCH_RUNS");
    int n = s ? atoi(s) : 5;
    return n < 1 ? 1 : n;
}

/*
 * Parallel capacity: how many cores' worth of work two threads get right
 * now.  Two threads spin on private work and are timed against one thread
 * doing the same amount; 2.0 means two full cores, 1.0 means the host gave
 * the two vCPUs one core between them.  Taken as a median of a few short
 * probes so that it describes the same seconds as the figures beside it.
 */
/* Spins on *arg iterations and leaves the result there, so that the work
 * cannot be optimised away and each thread writes only its own word. */
static void *
bench_spin(void *arg)
{
    uint64_t *io = (uint64_t *)arg, n = *io, x = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    *(volatile uint64_t *)io = x;
    return NULL;
}

static inline double
bench_capacity_once(uint64_t iters)
{
    /*
     * Called through a volatile pointer on every thread, so that the
     * single-thread run is the same code the spawned thread runs and is
     * not inlined into something gcc can shorten.
     */
    void *(*volatile spin)(void *) = bench_spin;
    pthread_t t;
    uint64_t a = iters, b = iters, c = iters;
    double t0 = bench_now();
    spin(&a);
    double one = bench_now() - t0;
    t0 = bench_now();
    pthread_create(&t, NULL, spin, &b);
    spin(&c);
    pthread_join(t, NULL);
    double two = bench_now() - t0;
    return 2.0 * one / two;
}

static inline double
bench_capacity(void)
{
    double v[5];
    for (int i = 0; i < 5; i++)
        v[i] = bench_capacity_once(20000000);
    return bench_median(v, 5);
}

#endif /* WS_BENCH_H */
