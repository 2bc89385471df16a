/*
 * The pool object: workers, the injection queue for threads that are not
 * workers, the sleep event count, and the life-cycle state.
 */
#ifndef WS_POOL_H
#define WS_POOL_H

#include <wsched.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "deque.h"
#include "topo.h"

struct ws__worker;

struct ws_pool {
    unsigned n;                  /* workers */
    struct ws__worker **workers; /* each on its own cache lines */
    ws__plan *plan;
    unsigned gen;                /* ws__fork_gen when created */
    int print_stats;             /* WSCHED_STATS */

    /*
     * Injection queue: tasks from threads that are not workers.  On lines
     * of their own: submitters write them for every task, and idle workers
     * read the fields above all the time.
     */
    WS_ALIGNED atomic_uint inj_word; /* the lock (pool.c:inj_lock) */
    ws__task *inj;               /* ring of inj_cap records (a power of 2) */
    size_t inj_cap, inj_len;
    atomic_size_t inj_head;      /* index of the oldest */
    _Atomic uint64_t inj_roots;  /* injected so far (written under lock) */
    WS_ALIGNED atomic_int inj_nonempty; /* inj_len != 0, without the lock */

    /* Sleeping workers: an event count on epoch. */
    WS_ALIGNED atomic_uint epoch;
    atomic_int sleepers;

    /* Set once destruction has begun. */
    WS_ALIGNED atomic_int stopping;

    /* Threads that are not workers, blocked in ws_sync or ws_run. */
    WS_ALIGNED atomic_uint ext_seq;
    atomic_int ext_waiters;
    /* Threads that are not workers, blocked in ws_wait_any or _all. */
    WS_ALIGNED atomic_uint fut_seq;
    atomic_int fut_waiters;
};

/* Incremented in a child process after fork(): pools of the parent. */
extern unsigned ws__fork_gen WS_HIDDEN;

/*
 * Queues a task from a thread that is not a worker of pool and counts it
 * as a root: 0, EPIPE (destruction has begun) or ENOMEM.
 */
int  ws__pool_inject(ws_pool *pool, const ws__task *t) WS_HIDDEN;
/*
 * A worker takes the oldest injected task into *t, and a batch of the next
 * ones onto its own deque: false when there is none.
 */
bool ws__pool_take_injected(ws_pool *pool, struct ws__worker *self,
                            ws__task *t) WS_HIDDEN;
/* Wakes one sleeping worker if there is one (after publishing work). */
void ws__pool_notify(ws_pool *pool) WS_HIDDEN;
/* A root task finished on worker self. */
void ws__pool_root_done(struct ws__worker *self) WS_HIDDEN;
/*
 * Roots not yet finished (see pool.c); exact only when no root is being
 * submitted or finished, never 0 while one is unfinished.
 */
int64_t ws__pool_outstanding(ws_pool *pool) WS_HIDDEN;
/* Wakes threads that are not workers blocked on this pool. */
void ws__pool_wake_external(ws_pool *pool) WS_HIDDEN;
/*
 * Blocks a thread that is not a worker until done(arg) is true: 0, or
 * ETIMEDOUT after timeout_s seconds (negative: no limit).  Whoever makes
 * done true calls ws__pool_wake_external afterwards.
 */
int  ws__pool_wait_external(ws_pool *pool, bool (*done)(void *), void *arg,
                            double timeout_s) WS_HIDDEN;
/* The same for waits on several futures, woken by future completions. */
void ws__pool_wake_futures(ws_pool *pool) WS_HIDDEN;
int  ws__pool_wait_futures(ws_pool *pool, bool (*done)(void *), void *arg,
                           double timeout_s) WS_HIDDEN;

#endif /* WS_POOL_H */
