/*
 * Worker threads: the loop that pops, steals and sleeps, the running of
 * one task with its completion accounting, and the help-while-waiting loop
 * used by ws_sync and future waits.
 */
#ifndef WS_WORKER_H
#define WS_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch.h"
#include "deque.h"
#include "pool.h"

/*
 * Per-worker counters: written by the worker (relaxed), read by anyone.
 * Tasks a worker pops from its own deque are not counted one by one (that
 * path is the hot one): they are spawns less what thieves took, so
 * tasks = spawns - stolen + other, exact once the pool is quiet.
 */
typedef struct ws__counters {
    _Atomic uint64_t other;  /* tasks run that came from elsewhere */
    _Atomic uint64_t spawns; /* tasks pushed on the own deque */
    _Atomic uint64_t stolen; /* of those, taken by thieves (their RMW) */
    _Atomic uint64_t steals, failed_steals, sleeps;
} ws__counters;

typedef struct ws__worker {
    ws__deque dq; /* first: its lines are laid out in deque.h */

    /* Owner only. */
    WS_ALIGNED ws_pool *pool;
    unsigned index;
    unsigned nvictims, nlevels;
    const unsigned *victims, *levels;
    uint64_t rng;
    pthread_t thread;
    ws__counters stats;
    /*
     * Roots this worker submitted and roots it finished (pool.c): written
     * by the worker alone, read by anyone.
     */
    _Atomic uint64_t roots_in, roots_done;

    /* A worker blocked in a wait sleeps on wake_seq when sleeping != 0. */
    WS_ALIGNED atomic_uint wake_seq;
    atomic_int sleeping;
} ws__worker;

/* The worker running on this thread, NULL elsewhere. */
extern __thread ws__worker *ws__self
    __attribute__((tls_model("initial-exec"))) WS_HIDDEN;

/* Task record tags, in the low bits of ws__task.grp. */
enum {
    WS_TAG_EXTRA = 1, /* spawned by a thread other than the group's owner */
    WS_TAG_ROOT = 2,  /* a root: counted in ws__pool_outstanding */
    WS_TAG_CALL = 4,  /* no group: run ((void *(*)(void *))aux)(arg) */
    WS_TAG_MASK = 7
};

/*
 * Group state behind ws_group's opaque storage.  The four counters come
 * first and fill 16 bytes, so that a group, or a join's record, sets them
 * with one or two plain stores while nobody else can see it yet.
 */
typedef struct ws__grp {
    uint32_t local;    /* owner: its tasks not yet finished by itself */
    atomic_uint done;  /* the owner's tasks finished by thieves */
    atomic_int thief;  /* 1 + index of the latest thief, 0: none */
    atomic_uint extra; /* tasks spawned by other threads, unfinished */
    ws__worker *owner; /* WS_NO_OWNER: the group belongs to no worker */
    int64_t base;      /* owner's deque bottom when the group began */
    ws_pool *pool;
    uint64_t magic; /* 64 bits: no padding left to write */
} ws__grp;

/* The owner of groups begun outside the pool's workers: never a worker. */
#define WS_NO_OWNER ((ws__worker *)(uintptr_t)WS_TAG_MASK)

#define WS_GROUP_MAGIC 0x57534750u /* "WSGP" */

void *ws__worker_main(void *arg) WS_HIDDEN;
/* Runs a task that was not popped by its group's owner, then accounts. */
void ws__worker_run_other(ws__worker *self, const ws__task *t) WS_HIDDEN;
/* Accounting for the tags of a task (any tag other than 0). */
void ws__worker_complete(ws__worker *self, uintptr_t grp) WS_HIDDEN;
/* Runs a task with tags and accounts for it. */
void ws__worker_run_tagged(ws__worker *self, const ws__task *t) WS_HIDDEN;
/* Owner: shares deque tasks with thieves that asked, waking a sleeper. */
void ws__worker_share(ws__worker *self) WS_HIDDEN;
/*
 * Runs other tasks until done(arg) is true: the owner's deque above base,
 * then tasks stolen from *thief_hint's worker (leapfrogging), then anyone's,
 * sleeping briefly when there is nothing.  timeout_s as in the API: returns
 * 0 or ETIMEDOUT.
 */
int ws__worker_help(ws__worker *self, int64_t base, atomic_int *thief_hint,
                    bool (*done)(void *), void *arg,
                    double timeout_s) WS_HIDDEN;
/* Wakes a worker blocked in ws__worker_help, if it sleeps. */
void ws__worker_wake(ws__worker *w) WS_HIDDEN;

/* Counter increment by the owning worker: no read-modify-write needed. */
static inline void
ws__count(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* The same, publishing what the worker did before (callers name the pair). */
static inline void
ws__count_release(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* Runs a task popped from the calling worker's own deque. */
static inline void
ws__worker_run_own(ws__worker *self, const ws__task *t)
{
    uintptr_t g = t->grp;
    if (WS_LIKELY((g & WS_TAG_MASK) == 0)) {
        /* Before the call: the owner alone reads local, after it. */
        if (g != 0)
            ((ws__grp *)g)->local--;
        t->fn(t->arg);
    } else {
        ws__worker_run_tagged(self, t);
    }
}

#endif /* WS_WORKER_H */
