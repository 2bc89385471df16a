/*
 * Pool life cycle and submission from threads that are not workers.
 *
 * Threads that are not workers hand tasks over through the injection queue,
 * a ring under a mutex (they pay a lock; workers never do on their own
 * path), and block on the pool's ext_seq futex word while they wait.
 *
 * Every task that is not covered by a ws_sync of a running task is a root
 * and counted in outstanding: injected tasks and detached submissions.  The
 * pool is finished when destruction has begun and outstanding is zero, so
 * ws_pool_destroy runs everything that was submitted before it returns.
 * stopping is set under the injection lock, so no injection slips in after
 * the workers may have decided to leave.
 *
 * fork(): the child has none of the workers.  An atfork handler bumps
 * ws__fork_gen and clears the forking thread's worker pointer, and every
 * call on a pool from an older generation answers ECHILD (destroy frees the
 * child's copy of the memory).
 */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "stats.h"
#include "worker.h"

enum { MAX_WORKERS = 1024, DEQUE_CAPACITY = 1024, INJ_CAPACITY = 64 };

unsigned ws__fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
fork_child(void)
{
    ws__fork_gen++;
    ws__self = NULL;
}

static void
fork_register(void)
{
    pthread_atfork(NULL, NULL, fork_child);
}

int
ws_worker_index(void)
{
    ws__worker *w = ws__self;
    return w != NULL ? (int)w->index : -1;
}

unsigned
ws_pool_size(const ws_pool *pool)
{
    return pool != NULL ? pool->n : 0;
}

/* Environment defaults: 0, or EINVAL for a malformed value. */
static int
env_options(unsigned *workers, int *bind, const char **cpus)
{
    const char *s;

    if (*workers == 0 && (s = getenv("WSCHED_WORKERS")) != NULL) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (*s < '0' || *s > '9' || *end != '\0' || v == 0 ||
            v > MAX_WORKERS)
            return EINVAL;
        *workers = (unsigned)v;
    }
    if (*bind == WS_BIND_CORE && (s = getenv("WSCHED_BIND")) != NULL) {
        if (strcmp(s, "core") == 0)
            *bind = WS_BIND_CORE;
        else if (strcmp(s, "pu") == 0)
            *bind = WS_BIND_PU;
        else if (strcmp(s, "none") == 0)
            *bind = WS_BIND_NONE;
        else
            return EINVAL;
    }
    if (*cpus == NULL && (s = getenv("WSCHED_CPUS")) != NULL)
        *cpus = s;
    return 0;
}

static void
pool_free(ws_pool *pool)
{
    if (pool->workers != NULL) {
        for (unsigned i = 0; i < pool->n; i++) {
            if (pool->workers[i] == NULL)
                continue;
            if (pool->workers[i]->dq.obuf != NULL)
                ws__deque_destroy(&pool->workers[i]->dq);
            free(pool->workers[i]);
        }
        free(pool->workers);
    }
    free(pool->inj);
    ws__plan_destroy(pool->plan);
    free(pool);
}

/* Stops and joins the first n workers. */
static void
pool_stop(ws_pool *pool, unsigned n)
{
    pthread_mutex_lock(&pool->inj_lock);
    /*
     * seq_cst: read by workers with acquire in worker.c:pool_finished and
     * by ws__pool_root_done; under the lock, so no injection follows it.
     */
    atomic_store_explicit(&pool->stopping, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&pool->inj_lock);
    /*
     * Wake everyone: the workers see stopping (and outstanding == 0 once
     * the last root finishes, whose decrement wakes them again).
     */
    atomic_fetch_add_explicit(&pool->epoch, 1, memory_order_seq_cst);
    ws__futex_wake(&pool->epoch, INT_MAX);
    for (unsigned i = 0; i < n; i++)
        pthread_join(pool->workers[i]->thread, NULL);
}

int
ws_pool_create(ws_pool **out, const ws_pool_opts *opts)
{
    unsigned workers = opts != NULL ? opts->workers : 0;
    int bind = opts != NULL ? opts->bind : WS_BIND_CORE;
    const char *cpus = opts != NULL ? opts->cpus : NULL;
    int err;

    if (out == NULL || workers > MAX_WORKERS ||
        (bind != WS_BIND_CORE && bind != WS_BIND_PU && bind != WS_BIND_NONE))
        return EINVAL;
    if ((err = env_options(&workers, &bind, &cpus)) != 0)
        return err;
    pthread_once(&fork_once, fork_register);

    ws_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return ENOMEM;
    if ((err = ws__plan_create(&pool->plan, workers, bind, cpus)) != 0) {
        free(pool);
        return err;
    }
    pool->n = ws__plan_workers(pool->plan);
    pool->gen = ws__fork_gen;
    const char *st = getenv("WSCHED_STATS");
    pool->print_stats = st != NULL && st[0] != '\0' && strcmp(st, "0") != 0;
    pthread_mutex_init(&pool->inj_lock, NULL);
    pool->inj_cap = INJ_CAPACITY;
    pool->inj = malloc(sizeof *pool->inj * pool->inj_cap);
    pool->workers = calloc(pool->n, sizeof *pool->workers);
    if (pool->inj == NULL || pool->workers == NULL)
        goto nomem;
    for (unsigned i = 0; i < pool->n; i++) {
        ws__worker *w = aligned_alloc(WS_CACHELINE, sizeof *w);
        if (w == NULL)
            goto nomem;
        memset(w, 0, sizeof *w);
        pool->workers[i] = w;
        if (ws__deque_init(&w->dq, DEQUE_CAPACITY) != 0)
            goto nomem;
        w->pool = pool;
        w->index = i;
        w->victims = ws__plan_victims(pool->plan, i, &w->nvictims);
        w->levels = ws__plan_levels(pool->plan, i, &w->nlevels);
        w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    }

    /* Workers take no asynchronous signals: those belong to the program. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    unsigned started = 0;
    for (; started < pool->n; started++) {
        ws__worker *w = pool->workers[started];
        if (pthread_create(&w->thread, NULL, ws__worker_main, w) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < pool->n) {
        pool_stop(pool, started);
        pthread_mutex_destroy(&pool->inj_lock);
        pool_free(pool);
        return EAGAIN;
    }
    *out = pool;
    return 0;
nomem:
    pthread_mutex_destroy(&pool->inj_lock);
    pool_free(pool);
    return ENOMEM;
}

int
ws_pool_destroy(ws_pool *pool)
{
    if (pool == NULL)
        return EINVAL;
    if (pool->gen != ws__fork_gen) {
        /* A forked child's copy: no threads to join, no lock to trust. */
        pool_free(pool);
        return 0;
    }
    ws__worker *self = ws__self;
    if (self != NULL && self->pool == pool)
        return EDEADLK;
    pool_stop(pool, pool->n);
    if (pool->print_stats)
        ws__stats_report(pool);
    pthread_mutex_destroy(&pool->inj_lock);
    pool_free(pool);
    return 0;
}

void
ws__pool_notify(ws_pool *pool)
{
    /*
     * seq_cst fence: the work the caller published (a release store of a
     * deque split, or the injection under its lock) is ordered before the
     * load of sleepers; pairs with the seq_cst increment of sleepers in
     * worker.c:idle_sleep.
     */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&pool->sleepers, memory_order_relaxed) > 0) {
        /*
         * seq_cst: the bump a sleeper's futex_wait compares against the
         * key it read with seq_cst in worker.c:idle_sleep.
         */
        atomic_fetch_add_explicit(&pool->epoch, 1, memory_order_seq_cst);
        ws__futex_wake(&pool->epoch, 1);
    }
}

int
ws__pool_inject(ws_pool *pool, const ws__task *t)
{
    pthread_mutex_lock(&pool->inj_lock);
    if (atomic_load_explicit(&pool->stopping, memory_order_relaxed)) {
        pthread_mutex_unlock(&pool->inj_lock);
        return EPIPE;
    }
    if (pool->inj_len == pool->inj_cap) {
        size_t cap = pool->inj_cap * 2;
        ws__task *a = malloc(sizeof *a * cap);
        if (a == NULL) {
            pthread_mutex_unlock(&pool->inj_lock);
            return ENOMEM;
        }
        for (size_t i = 0; i < pool->inj_len; i++)
            a[i] = pool->inj[(pool->inj_head + i) % pool->inj_cap];
        free(pool->inj);
        pool->inj = a;
        pool->inj_cap = cap;
        pool->inj_head = 0;
    }
    pool->inj[(pool->inj_head + pool->inj_len++) % pool->inj_cap] = *t;
    atomic_fetch_add_explicit(&pool->outstanding, 1, memory_order_relaxed);
    atomic_store_explicit(&pool->inj_count, pool->inj_len,
                          memory_order_relaxed);
    pthread_mutex_unlock(&pool->inj_lock);
    ws__pool_notify(pool);
    return 0;
}

bool
ws__pool_take_injected(ws_pool *pool, ws__task *t)
{
    bool got = false;

    pthread_mutex_lock(&pool->inj_lock);
    if (pool->inj_len > 0) {
        *t = pool->inj[pool->inj_head];
        pool->inj_head = (pool->inj_head + 1) % pool->inj_cap;
        pool->inj_len--;
        atomic_store_explicit(&pool->inj_count, pool->inj_len,
                              memory_order_relaxed);
        got = true;
    }
    pthread_mutex_unlock(&pool->inj_lock);
    return got;
}

void
ws__pool_root_done(ws_pool *pool)
{
    /*
     * acq_rel: the last root's effects happen before destroy's workers
     * leave (their acquire load in worker.c:pool_finished).
     */
    if (atomic_fetch_sub_explicit(&pool->outstanding, 1,
                                  memory_order_acq_rel) == 1 &&
        atomic_load_explicit(&pool->stopping, memory_order_acquire)) {
        atomic_fetch_add_explicit(&pool->epoch, 1, memory_order_seq_cst);
        ws__futex_wake(&pool->epoch, INT_MAX);
    }
}

/*
 * An event count for threads that are not workers: whoever makes a wait's
 * condition true calls wake, which costs a load when nobody sleeps.
 */
static void
ext_wake(atomic_uint *seq, atomic_int *waiters)
{
    /*
     * seq_cst fence: the caller's completion RMW before the load of
     * waiters; pairs with the seq_cst increment in pool.c:ext_wait.
     */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(waiters, memory_order_relaxed) > 0) {
        atomic_fetch_add_explicit(seq, 1, memory_order_relaxed);
        ws__futex_wake(seq, INT_MAX);
    }
}

void
ws__pool_wake_external(ws_pool *pool)
{
    ext_wake(&pool->ext_seq, &pool->ext_waiters);
}

void
ws__pool_wake_futures(ws_pool *pool)
{
    ext_wake(&pool->fut_seq, &pool->fut_waiters);
}

static int
ext_wait(atomic_uint *seq, atomic_int *waiters, bool (*done)(void *),
         void *arg, double timeout_s)
{
    struct timespec ts;
    double deadline = 0;

    if (timeout_s >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + timeout_s;
    }
    while (!done(arg)) {
        double nap = 0.1; /* bounded: re-check even without a wake */
        if (timeout_s >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            nap = deadline - ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
            if (nap <= 0)
                return done(arg) ? 0 : ETIMEDOUT;
            if (nap > 0.1)
                nap = 0.1;
        }
        /*
         * seq_cst: announce the waiter before reading the key and checking
         * again; pairs with the fence in pool.c:ext_wake.
         */
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        unsigned key = atomic_load_explicit(seq, memory_order_seq_cst);
        if (!done(arg))
            ws__futex_wait(seq, key, nap);
        atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
    }
    return 0;
}

int
ws__pool_wait_external(ws_pool *pool, bool (*done)(void *), void *arg,
                       double timeout_s)
{
    return ext_wait(&pool->ext_seq, &pool->ext_waiters, done, arg, timeout_s);
}

int
ws__pool_wait_futures(ws_pool *pool, bool (*done)(void *), void *arg,
                      double timeout_s)
{
    return ext_wait(&pool->fut_seq, &pool->fut_waiters, done, arg, timeout_s);
}
