/*
 * Pool life cycle and submission from threads that are not workers.
 *
 * Threads that are not workers hand tasks over through the injection queue,
 * a ring under a short spinning lock (they pay a lock; workers never do on
 * their own path), and block on the pool's ext_seq futex word while they
 * wait.  A submission costs a submitter no shared write beyond the lock's
 * line and the record: workers poll a flag that changes only when the
 * queue empties or fills, a submission wakes a sleeper only when it makes
 * the queue non-empty, and a worker takes a batch at a time (its fair
 * share, as Go's scheduler does), keeps the first and puts the rest on its
 * deque, stealable at once.
 *
 * Every task that is not covered by a ws_sync of a running task is a root:
 * injected tasks and detached submissions.  The pool is finished when
 * destruction has begun and no root is outstanding, so
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

enum {
    MAX_WORKERS = 1024,
    DEQUE_CAPACITY = 1024,
    INJ_CAPACITY = 64,
    INJ_BATCH = 32 /* injected tasks a worker takes at once, at most */
};

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

/*
 * The injection lock: a futex word, 0 free, 1 held, 2 held with sleepers
 * (Drepper, "Futexes Are Tricky", mutex 2), that spins a while before it
 * sleeps.  It is held for a copy of a few task records, so a submitter
 * that finds a worker taking a batch waits nanoseconds: sleeping in the
 * kernel there (as a plain pthread mutex does) would cost both sides a
 * system call.
 */
enum { INJ_LOCK_SPIN = 1000 };

static void
inj_lock(ws_pool *pool)
{
    unsigned c = 0;

    /* Acquire: pairs with the release exchange in inj_unlock. */
    if (atomic_compare_exchange_strong_explicit(&pool->inj_word, &c, 1,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        return;
    for (int i = 0; i < INJ_LOCK_SPIN; i++) {
        ws_cpu_relax();
        c = 0;
        if (atomic_load_explicit(&pool->inj_word, memory_order_relaxed) ==
                0 &&
            atomic_compare_exchange_weak_explicit(&pool->inj_word, &c, 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return;
    }
    /* Acquire: as above.  Taking it as 2 makes our unlock wake others. */
    while (atomic_exchange_explicit(&pool->inj_word, 2,
                                    memory_order_acquire) != 0)
        ws__futex_wait(&pool->inj_word, 2, -1);
}

static void
inj_unlock(ws_pool *pool)
{
    /* Release: pairs with the acquire CAS and exchange in inj_lock. */
    if (atomic_exchange_explicit(&pool->inj_word, 0, memory_order_release) ==
        2)
        ws__futex_wake(&pool->inj_word, 1);
}

/* Stops and joins the first n workers. */
static void
pool_stop(ws_pool *pool, unsigned n)
{
    inj_lock(pool);
    /*
     * seq_cst: read by workers with acquire in worker.c:pool_finished;
     * under the lock, so no injection follows it, and every injection's
     * count is visible to whoever sees it.
     */
    atomic_store_explicit(&pool->stopping, 1, memory_order_seq_cst);
    inj_unlock(pool);
    /*
     * Wake everyone: the workers see stopping (and no root outstanding
     * once the last one finishes, which wakes them again).
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
        pool_free(pool);
        return EAGAIN;
    }
    *out = pool;
    return 0;
nomem:
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
    inj_lock(pool);
    if (atomic_load_explicit(&pool->stopping, memory_order_relaxed)) {
        inj_unlock(pool);
        return EPIPE;
    }
    size_t head = atomic_load_explicit(&pool->inj_head, memory_order_relaxed);
    if (pool->inj_len == pool->inj_cap) {
        size_t cap = pool->inj_cap * 2;
        ws__task *a = malloc(sizeof *a * cap);
        if (a == NULL) {
            inj_unlock(pool);
            return ENOMEM;
        }
        for (size_t i = 0; i < pool->inj_len; i++)
            a[i] = pool->inj[(head + i) & (pool->inj_cap - 1)];
        free(pool->inj);
        /* Atomic stores: read without the lock for prefetches. */
        __atomic_store_n(&pool->inj, a, __ATOMIC_RELAXED);
        __atomic_store_n(&pool->inj_cap, cap, __ATOMIC_RELAXED);
        head = 0;
        atomic_store_explicit(&pool->inj_head, head, memory_order_relaxed);
    }
    bool was_empty = pool->inj_len == 0;
    pool->inj[(head + pool->inj_len++) & (pool->inj_cap - 1)] = *t;
    ws__count(&pool->inj_roots); /* written under the lock alone */
    /*
     * inj_nonempty changes only when the queue becomes empty or non-empty,
     * so a steady stream of submissions does not write the line that idle
     * workers poll.
     */
    if (was_empty)
        atomic_store_explicit(&pool->inj_nonempty, 1, memory_order_relaxed);
    inj_unlock(pool);
    /*
     * A queue that was not empty already has a worker on its way: the one
     * notified when it became non-empty, or the one that took a batch and
     * left some behind (ws__pool_take_injected notifies again then).
     */
    if (was_empty)
        ws__pool_notify(pool);
    return 0;
}

bool
ws__pool_take_injected(ws_pool *pool, ws__worker *self, ws__task *t)
{
    ws__task batch[INJ_BATCH];
    size_t k = 0, left;

    /*
     * The records were just written by a submitter on another core: start
     * moving their lines here before taking the lock, so that the copy
     * under it does not wait for them (a stale address is harmless to a
     * prefetch).
     */
    ws__task *ring = __atomic_load_n(&pool->inj, __ATOMIC_RELAXED);
    size_t mask = __atomic_load_n(&pool->inj_cap, __ATOMIC_RELAXED) - 1;
    size_t head = atomic_load_explicit(&pool->inj_head, memory_order_relaxed);
    for (size_t i = 0; i < INJ_BATCH; i += 2)
        __builtin_prefetch(&ring[(head + i) & mask]);

    inj_lock(pool);
    if (pool->inj_len == 0) {
        inj_unlock(pool);
        return false;
    }
    /*
     * A fair share, as Go's scheduler takes from its global queue, rounded
     * down: with no more tasks than workers each takes one, so that tasks
     * submitted to idle workers start at once, side by side.
     */
    size_t want = pool->inj_len / pool->n;
    if (want == 0)
        want = 1;
    if (want > INJ_BATCH)
        want = INJ_BATCH;
    head = atomic_load_explicit(&pool->inj_head, memory_order_relaxed);
    for (; k < want; k++)
        batch[k] = pool->inj[(head + k) & (pool->inj_cap - 1)];
    atomic_store_explicit(&pool->inj_head, (head + k) & (pool->inj_cap - 1),
                          memory_order_relaxed);
    pool->inj_len -= k;
    left = pool->inj_len;
    if (left == 0)
        atomic_store_explicit(&pool->inj_nonempty, 0, memory_order_relaxed);
    inj_unlock(pool);
    if (left > 0)
        ws__pool_notify(pool);

    /*
     * The first is run now; the rest go on the deque newest first, so that
     * pops take them oldest first.  They are all made stealable at once:
     * the first may run long, and the others must not wait for it while
     * workers are idle.  A task the deque has no room for is run here.
     */
    *t = batch[0];
    for (size_t i = k; i-- > 1;) {
        if (ws__deque_push_task(&self->dq, &batch[i]))
            ws__count(&self->stats.spawns);
        else
            ws__worker_run_other(self, &batch[i]);
    }
    if (k > 1 && ws__deque_share_every(&self->dq))
        ws__pool_notify(pool);
    return true;
}

/*
 * Roots are counted without a shared read-modify-write per task: injected
 * ones in inj_roots (under the injection lock), and per worker the roots
 * it submitted and the roots it finished.  The sum of finished roots is
 * read first: every root counted there was counted as submitted before it
 * ran, so the later reads of the submitted counts include it, and an
 * unfinished root makes the difference positive (its oldest unfinished
 * ancestor was submitted before one of the counted finishes, or injected).
 */
int64_t
ws__pool_outstanding(ws_pool *pool)
{
    uint64_t in, done = 0;

    for (unsigned i = 0; i < pool->n; i++)
        /*
         * Acquire: pairs with the release increment in ws__pool_root_done,
         * so the submissions counted before each finish are visible below.
         */
        done += atomic_load_explicit(&pool->workers[i]->roots_done,
                                     memory_order_acquire);
    /* Relaxed: ordered by the acquire loads above (and of stopping). */
    in = atomic_load_explicit(&pool->inj_roots, memory_order_relaxed);
    for (unsigned i = 0; i < pool->n; i++)
        in += atomic_load_explicit(&pool->workers[i]->roots_in,
                                   memory_order_relaxed);
    return (int64_t)(in - done);
}

void
ws__pool_root_done(ws__worker *self)
{
    /*
     * Release: the root's effects happen before destroy's workers leave
     * (the acquire loads in ws__pool_outstanding).  The worker that finds
     * the pool finished wakes the others (worker.c:ws__worker_main).
     */
    ws__count_release(&self->roots_done);
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
