/*
 * Pool set-up and the scheduler's own counters for the wsched versions of
 * the fork-join benchmarks.
 */
#ifndef WS_BENCH_FJ_WS_H
#define WS_BENCH_FJ_WS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsched.h>

#include "fj.h"

/* Creates a pool of `workers` workers (0: the default size), or fails. */
static inline ws_pool *
fj_ws_pool(unsigned workers, const char *bench)
{
    ws_pool_opts po;
    ws_pool *pool;
    int err;

    memset(&po, 0, sizeof po);
    po.workers = workers;
    err = ws_pool_create(&pool, &po);
    if (err != 0) {
        fprintf(stderr, "FAIL %s wsched: ws_pool_create: %s\n", bench,
                strerror(err));
        exit(1);
    }
    return pool;
}

/*
 * The two pools of a wsched benchmark: one worker, and every worker (-w;
 * 0: the default size).  With -s, prints the default size and exits.
 */
static inline void
fj_ws_pools(const struct fj_opts *o, const char *bench, ws_pool **one,
            ws_pool **all)
{
    *all = fj_ws_pool(o->workers, bench);
    if (o->size_only) {
        printf("%u\n", ws_pool_size(*all));
        ws_pool_destroy(*all);
        exit(0);
    }
    *one = fj_ws_pool(1, bench);
}

/*
 * A sequential case timed on the one-worker pool's worker, so that Ts and
 * T1 are taken on the same core: the pool pins its worker, and on a
 * virtual machine one core can run much slower than the other for seconds
 * at a time.  The call through ws_run adds microseconds to runs of
 * milliseconds.
 */
struct fj_on_worker {
    ws_pool *pool;
    fj_body body;
    void *ctx;
    int bad;
};

static inline void
fj_on_worker_task(void *arg)
{
    struct fj_on_worker *o = (struct fj_on_worker *)arg;

    o->bad = o->body(o->ctx);
}

static inline int
fj_on_worker_run(void *arg)
{
    struct fj_on_worker *o = (struct fj_on_worker *)arg;

    if (ws_run(o->pool, fj_on_worker_task, o) != 0)
        fj_fail("seq", "wsched", "ws_run failed");
    return o->bad;
}

/*
 * Prints the pool's counters per run, summed over its workers, after
 * `calls` runs: a check that the benchmark spawned what it should, and how
 * much stealing and sleeping went on.
 */
static inline void
fj_ws_report(const ws_pool *pool, const char *bench, long calls)
{
    ws_stats s, sum;
    unsigned n = ws_pool_size(pool);

    memset(&sum, 0, sizeof sum);
    for (unsigned w = 0; w < n; w++) {
        if (ws_pool_stats(pool, w, &s) != 0)
            return;
        sum.tasks += s.tasks;
        sum.spawns += s.spawns;
        sum.steals += s.steals;
        sum.failed_steals += s.failed_steals;
        sum.sleeps += s.sleeps;
    }
    if (calls < 1)
        calls = 1;
    printf("INFO %s wsched workers=%u per-run: tasks=%.0f spawns=%.0f "
           "steals=%.1f failed_steals=%.1f sleeps=%.1f\n",
           bench, n, (double)sum.tasks / calls, (double)sum.spawns / calls,
           (double)sum.steals / calls, (double)sum.failed_steals / calls,
           (double)sum.sleeps / calls);
    fflush(stdout);
}

#endif /* WS_BENCH_FJ_WS_H */
