/*
 * Counters.  Each worker increments its own with relaxed load-and-store
 * (no read-modify-write on the hot path); readers get a recent value.
 */
#include "stats.h"

#include <errno.h>
#include <stdio.h>

#include "pool.h"
#include "worker.h"

static void
read_counters(const ws__worker *w, ws_stats *out)
{
    const ws__counters *c = &w->stats;
    uint64_t stolen = atomic_load_explicit(&c->stolen, memory_order_relaxed);
    out->spawns = atomic_load_explicit(&c->spawns, memory_order_relaxed);
    out->tasks = atomic_load_explicit(&c->other, memory_order_relaxed) +
                 out->spawns - stolen;
    out->steals = atomic_load_explicit(&c->steals, memory_order_relaxed);
    out->failed_steals =
        atomic_load_explicit(&c->failed_steals, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&c->sleeps, memory_order_relaxed);
}

int
ws_pool_stats(const ws_pool *pool, unsigned worker, ws_stats *out)
{
    if (pool == NULL || out == NULL || worker >= pool->n)
        return EINVAL;
    if (pool->gen != ws__fork_gen)
        return ECHILD;
    read_counters(pool->workers[worker], out);
    return 0;
}

void
ws__stats_report(const ws_pool *pool)
{
    ws_stats sum = {0};

    for (unsigned i = 0; i < pool->n; i++) {
        ws_stats s;
        read_counters(pool->workers[i], &s);
        fprintf(stderr,
                "wsched: worker %u: tasks %llu spawns %llu steals %llu "
                "failed_steals %llu sleeps %llu\n",
                i, (unsigned long long)s.tasks, (unsigned long long)s.spawns,
                (unsigned long long)s.steals,
                (unsigned long long)s.failed_steals,
                (unsigned long long)s.sleeps);
        sum.tasks += s.tasks;
        sum.spawns += s.spawns;
        sum.steals += s.steals;
        sum.failed_steals += s.failed_steals;
        sum.sleeps += s.sleeps;
    }
    fprintf(stderr,
            "wsched: total: tasks %llu spawns %llu steals %llu "
            "failed_steals %llu sleeps %llu\n",
            (unsigned long long)sum.tasks, (unsigned long long)sum.spawns,
            (unsigned long long)sum.steals,
            (unsigned long long)sum.failed_steals,
            (unsigned long long)sum.sleeps);
}
