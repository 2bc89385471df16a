/*
 * Executor and futures: ws_submit, waits, cancel, callbacks and the
 * completion queue.
 *
 * A future is shared by the submitter and the task: it starts with two
 * references and the last release frees it.  Its state moves once from
 * PENDING to RUNNING (the task claimed it) or to CANCELLED (ws_future_cancel
 * claimed it), and from RUNNING to DONE.  A cancelled task stays queued and,
 * when a worker reaches it, only drops its reference.
 *
 * Completion publishes the result with a seq_cst store of state, then fires
 * the callback (at most one, registered with a CAS on cb_state, so it runs
 * exactly once whoever comes second), then wakes waiters: threads that are
 * not workers through the pool's ext_seq, and the worker that announced
 * itself in waiter.  A worker that waits runs other tasks meanwhile
 * (worker.c:ws__worker_help), so nested submit-and-wait never deadlocks.
 *
 * Detached submissions (no future) carry the function in the task record
 * itself (WS_TAG_CALL) and allocate nothing.
 */
#include <wsched.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "futex.h"
#include "pool.h"
#include "worker.h"

enum { PENDING, RUNNING, DONE, CANCELLED };
/*
 * Callback slot: NONE -> BUSY (a registrar writes cb) -> SET; completion
 * moves NONE -> FIRED (done, slot still free), BUSY -> FIRED_BUSY (the
 * registrar runs its callback itself) and SET -> USED (completion runs it).
 * A registrar that finds FIRED takes it to USED and runs its callback.
 * Every other state answers EBUSY: a future has one callback.
 */
enum { CB_NONE, CB_BUSY, CB_SET, CB_FIRED, CB_FIRED_BUSY, CB_USED };

struct ws_future {
    atomic_uint state;        /* also the futex word of blocked waiters */
    atomic_int sleepers;      /* threads blocked on state */
    atomic_int refs;
    ws_fn fn;
    void *arg;
    void *result;
    ws_pool *pool;
    _Atomic(ws__worker *) waiter; /* a worker blocked on this future */
    atomic_int cb_state;
    ws_future_cb cb;
    void *cb_arg;
    ws_future *next;         /* in a completion queue's done list */
    ws_future *pprev, *pnext; /* in its list of futures not yet arrived */
};

struct ws_completion {
    unsigned gen;             /* ws__fork_gen at creation */
    pthread_mutex_t lock;
    ws_future *head, *tail; /* done, not yet returned */
    ws_future *waiting;     /* added, not yet arrived (pprev/pnext) */
    size_t pending;         /* added, not yet returned */
    atomic_uint seq;        /* bumped on each arrival */
    atomic_int waiters;     /* threads sleeping on seq */
};

static bool
future_done(void *arg)
{
    ws_future *f = arg;
    /* Acquire: pairs with the seq_cst store of state in complete(). */
    return atomic_load_explicit(&f->state, memory_order_acquire) >= DONE;
}

bool
ws_future_done(const ws_future *f)
{
    return f != NULL && future_done((void *)f);
}

void
ws_future_release(ws_future *f)
{
    if (f == NULL)
        return;
    /*
     * acq_rel: the last owner sees every other owner's last use (the
     * task's result store, a waiter's reads) before it frees.
     */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}

static void
complete(ws_future *f, int state)
{
    /*
     * seq_cst: publishes result (release) to waiters' acquire loads in
     * future_done, and orders this store before the load of waiter below
     * against the waiter's seq_cst store of waiter in wait_on (Dekker).
     */
    atomic_store_explicit(&f->state, state, memory_order_seq_cst);
    int cb = atomic_load_explicit(&f->cb_state, memory_order_acquire);
    for (;;) {
        int next = cb == CB_SET ? CB_USED
                   : cb == CB_BUSY ? CB_FIRED_BUSY
                                   : CB_FIRED;
        /*
         * acq_rel: pairs with the CAS BUSY -> SET in ws_future_then, so
         * cb and cb_arg are visible when we take SET to USED.
         */
        if (atomic_compare_exchange_weak_explicit(&f->cb_state, &cb, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    if (cb == CB_SET)
        f->cb(f, f->cb_arg);
    /*
     * seq_cst: after the seq_cst store of state; pairs with the seq_cst
     * increment of sleepers in block_on (Dekker: one sees the other).
     */
    if (atomic_load_explicit(&f->sleepers, memory_order_seq_cst) > 0)
        ws__futex_wake(&f->state, INT_MAX);
    ws__pool_wake_futures(f->pool); /* ws_wait_any, ws_wait_all */
    ws__worker *w = atomic_load_explicit(&f->waiter, memory_order_seq_cst);
    if (w != NULL)
        ws__worker_wake(w);
}

static void
future_run(void *arg)
{
    ws_future *f = arg;
    unsigned expected = PENDING;

    /* acq_rel: a cancel that lost to us sees RUNNING; pairs with cancel. */
    if (atomic_compare_exchange_strong_explicit(&f->state, &expected, RUNNING,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        f->result = f->fn(f->arg);
        complete(f, DONE);
    }
    ws_future_release(f);
}

int
ws_submit(ws_pool *pool, ws_fn fn, void *arg, ws_future **out)
{
    if (pool == NULL || fn == NULL)
        return EINVAL;
    if (pool->gen != ws__fork_gen)
        return ECHILD;

    ws__task t = {0, arg, WS_TAG_ROOT, 0};
    ws_future *f = NULL;
    if (out != NULL) {
        f = malloc(sizeof *f);
        if (f == NULL)
            return ENOMEM;
        atomic_init(&f->state, PENDING);
        atomic_init(&f->sleepers, 0);
        atomic_init(&f->refs, 2);
        f->fn = fn;
        f->arg = arg;
        f->result = NULL;
        f->pool = pool;
        atomic_init(&f->waiter, NULL);
        atomic_init(&f->cb_state, CB_NONE);
        f->cb = NULL;
        f->cb_arg = NULL;
        f->next = NULL;
        t.fn = future_run;
        t.arg = f;
    } else {
        t.grp |= WS_TAG_CALL;
        t.aux = (uintptr_t)fn;
    }

    ws__worker *self = ws__self;
    if (self != NULL && self->pool == pool) {
        /* Part of the work in flight: counted before it can finish. */
        ws__count(&self->roots_in);
        if (!ws__deque_push_task(&self->dq, &t)) {
            ws__worker_run_tagged(self, &t); /* no memory to grow: run it */
        } else {
            ws__count(&self->stats.spawns);
            if (ws__deque_requested(&self->dq))
                ws__worker_share(self);
        }
    } else {
        int err = ws__pool_inject(pool, &t);
        if (err != 0) {
            free(f);
            return err;
        }
    }
    if (out != NULL)
        *out = f;
    return 0;
}

/*
 * A thread that is not a worker blocks on one future's own state word, so
 * that completions of other futures do not wake it.
 */
static int
block_on(ws_future *f, double timeout_s)
{
    struct timespec ts;
    double deadline = 0;

    if (timeout_s >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + timeout_s;
    }
    /* seq_cst: announce before the re-check; pairs with complete(). */
    atomic_fetch_add_explicit(&f->sleepers, 1, memory_order_seq_cst);
    int err = 0;
    for (;;) {
        unsigned st = atomic_load_explicit(&f->state, memory_order_seq_cst);
        if (st >= DONE)
            break;
        double nap = 0.1; /* bounded: re-check even without a wake */
        if (timeout_s >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double left =
                deadline - ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
            if (left <= 0) {
                err = ETIMEDOUT;
                break;
            }
            if (left < nap)
                nap = left;
        }
        ws__futex_wait(&f->state, st, nap);
    }
    atomic_fetch_sub_explicit(&f->sleepers, 1, memory_order_relaxed);
    /* Acquire: the result, if done (pairs with the store in complete()). */
    if (err != 0 && future_done(f))
        err = 0;
    return err;
}

/* Waits until done(arg) on pool's terms: helping on a worker, else blocking. */
static int
wait_on(ws_pool *pool, ws_future *announce, bool (*done)(void *), void *arg,
        double timeout_s)
{
    if (done(arg))
        return 0;
    if (timeout_s == 0)
        return ETIMEDOUT;
    if (pool->gen != ws__fork_gen)
        return ECHILD;
    ws__worker *self = ws__self;
    if (self != NULL && self->pool == pool) {
        if (announce != NULL)
            /* seq_cst: the waiter's half of the Dekker pair in complete(). */
            atomic_store_explicit(&announce->waiter, self,
                                  memory_order_seq_cst);
        /* Any task of this worker may run here: none waits on this frame. */
        return ws__worker_help(self, INT64_MIN, NULL, done, arg,
                               timeout_s < 0 ? WS_FOREVER : timeout_s);
    }
    if (announce != NULL)
        return block_on(announce, timeout_s < 0 ? WS_FOREVER : timeout_s);
    return ws__pool_wait_futures(pool, done, arg,
                                 timeout_s < 0 ? WS_FOREVER : timeout_s);
}

int
ws_future_wait(ws_future *f, double timeout_s)
{
    if (f == NULL)
        return EINVAL;
    return wait_on(f->pool, f, future_done, f, timeout_s);
}

int
ws_future_get(ws_future *f, void **result)
{
    if (f == NULL)
        return EINVAL;
    int err = wait_on(f->pool, f, future_done, f, WS_FOREVER);
    if (err != 0)
        return err;
    if (atomic_load_explicit(&f->state, memory_order_acquire) == CANCELLED)
        return ECANCELED;
    if (result != NULL)
        *result = f->result;
    return 0;
}

int
ws_future_cancel(ws_future *f)
{
    if (f == NULL)
        return EINVAL;
    unsigned expected = PENDING;
    /* acq_rel: pairs with the CAS in future_run; one of the two wins. */
    if (atomic_compare_exchange_strong_explicit(&f->state, &expected,
                                                CANCELLED,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        complete(f, CANCELLED);
        return 0;
    }
    return expected == CANCELLED ? 0 : EBUSY;
}

int
ws_future_then(ws_future *f, ws_future_cb cb, void *arg)
{
    if (f == NULL || cb == NULL)
        return EINVAL;
    int st = CB_NONE;
    /* Acquire on failure: FIRED means the result is visible. */
    if (!atomic_compare_exchange_strong_explicit(&f->cb_state, &st, CB_BUSY,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        /* Done already, and the slot unused: take it and run cb here. */
        if (st == CB_FIRED &&
            atomic_compare_exchange_strong_explicit(
                &f->cb_state, &st, CB_USED, memory_order_acquire,
                memory_order_acquire)) {
            cb(f, arg);
            return 0;
        }
        return EBUSY; /* another callback has the slot */
    }
    f->cb = cb;
    f->cb_arg = arg;
    st = CB_BUSY;
    /* acq_rel: publishes cb and cb_arg to the CAS in complete(). */
    if (!atomic_compare_exchange_strong_explicit(&f->cb_state, &st, CB_SET,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        /* Completed while we wrote cb (FIRED_BUSY): the call is ours. */
        atomic_store_explicit(&f->cb_state, CB_USED, memory_order_relaxed);
        cb(f, arg);
    }
    return 0;
}

/* ---- waiting for several ---- */

struct many {
    ws_future *const *fs;
    size_t n;
    size_t index;
};

static bool
any_done(void *arg)
{
    struct many *m = arg;
    for (size_t i = 0; i < m->n; i++)
        if (future_done(m->fs[i])) {
            m->index = i;
            return true;
        }
    return false;
}

static bool
all_done(void *arg)
{
    struct many *m = arg;
    for (; m->index < m->n; m->index++)
        if (!future_done(m->fs[m->index]))
            return false;
    return true;
}

static int
check_many(ws_future *const fs[], size_t n)
{
    if (n > 0 && fs == NULL)
        return EINVAL;
    for (size_t i = 0; i < n; i++)
        if (fs[i] == NULL)
            return EINVAL;
    return 0;
}

int
ws_wait_any(ws_future *const fs[], size_t n, double timeout_s, size_t *index)
{
    if (n == 0 || index == NULL || check_many(fs, n) != 0)
        return EINVAL;
    struct many m = {fs, n, 0};
    int err = wait_on(fs[0]->pool, NULL, any_done, &m, timeout_s);
    if (err == 0)
        *index = m.index;
    return err;
}

int
ws_wait_all(ws_future *const fs[], size_t n, double timeout_s)
{
    if (check_many(fs, n) != 0)
        return EINVAL;
    if (n == 0)
        return 0;
    struct many m = {fs, n, 0};
    return wait_on(fs[0]->pool, NULL, all_done, &m, timeout_s);
}

/* ---- completion queue ---- */

int
ws_completion_create(ws_completion **out)
{
    if (out == NULL)
        return EINVAL;
    ws_completion *c = calloc(1, sizeof *c);
    if (c == NULL)
        return ENOMEM;
    c->gen = ws__fork_gen;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->seq, 0);
    atomic_init(&c->waiters, 0);
    *out = c;
    return 0;
}

static void
waiting_unlink(ws_completion *c, ws_future *f)
{
    if (f->pprev != NULL)
        f->pprev->pnext = f->pnext;
    else
        c->waiting = f->pnext;
    if (f->pnext != NULL)
        f->pnext->pprev = f->pprev;
}

static void
completion_arrive(ws_future *f, void *arg)
{
    ws_completion *c = arg;

    pthread_mutex_lock(&c->lock);
    waiting_unlink(c, f);
    f->next = NULL;
    if (c->tail != NULL)
        c->tail->next = f;
    else
        c->head = f;
    c->tail = f;
    atomic_fetch_add_explicit(&c->seq, 1, memory_order_relaxed);
    /*
     * seq_cst fence: the arrival before the load of waiters; pairs with
     * the seq_cst increment of waiters in ws_completion_next.  Still under
     * the lock, so ws_completion_destroy cannot free c under our feet.
     */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&c->waiters, memory_order_relaxed) > 0)
        ws__futex_wake(&c->seq, INT_MAX);
    pthread_mutex_unlock(&c->lock);
}

int
ws_completion_add(ws_completion *c, ws_future *f)
{
    if (c == NULL || f == NULL)
        return EINVAL;
    if (c->gen != ws__fork_gen)
        return ECHILD;
    pthread_mutex_lock(&c->lock);
    c->pending++;
    f->pprev = NULL;
    f->pnext = c->waiting;
    if (c->waiting != NULL)
        c->waiting->pprev = f;
    c->waiting = f;
    pthread_mutex_unlock(&c->lock);
    int err = ws_future_then(f, completion_arrive, c);
    if (err != 0) {
        pthread_mutex_lock(&c->lock);
        c->pending--;
        waiting_unlink(c, f);
        pthread_mutex_unlock(&c->lock);
    }
    return err;
}

static bool
completion_ready(void *arg)
{
    ws_completion *c = arg;
    pthread_mutex_lock(&c->lock);
    bool ready = c->head != NULL;
    pthread_mutex_unlock(&c->lock);
    return ready;
}

int
ws_completion_next(ws_completion *c, double timeout_s, ws_future **out)
{
    if (c == NULL || out == NULL)
        return EINVAL;
    if (c->gen != ws__fork_gen)
        return ECHILD; /* its futures complete in the parent */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double start = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        ws_future *f = c->head;
        if (f != NULL) {
            c->head = f->next;
            if (c->head == NULL)
                c->tail = NULL;
            c->pending--;
            pthread_mutex_unlock(&c->lock);
            *out = f;
            return 0;
        }
        size_t pending = c->pending;
        pthread_mutex_unlock(&c->lock);
        if (pending == 0)
            return EPIPE; /* every future added has been returned */
        double left = -1;
        if (timeout_s >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            left = timeout_s -
                   ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - start);
            if (left <= 0)
                return ETIMEDOUT;
        }
        ws__worker *self = ws__self;
        if (self != NULL) {
            /* A worker runs other tasks while it waits. */
            int err = ws__worker_help(self, INT64_MIN, NULL, completion_ready,
                                      c, left);
            if (err != 0)
                return err;
            continue;
        }
        /* seq_cst: announce before the re-check; pairs with the fence above. */
        atomic_fetch_add_explicit(&c->waiters, 1, memory_order_seq_cst);
        unsigned key = atomic_load_explicit(&c->seq, memory_order_seq_cst);
        if (!completion_ready(c))
            ws__futex_wait(&c->seq, key, left < 0 || left > 0.1 ? 0.1 : left);
        atomic_fetch_sub_explicit(&c->waiters, 1, memory_order_relaxed);
    }
}

int
ws_completion_destroy(ws_completion *c)
{
    if (c == NULL)
        return EINVAL;
    if (c->gen != ws__fork_gen) {
        free(c); /* the child's copy: its lock may be held by a parent thread */
        return 0;
    }
    /*
     * Futures added and not arrived: EBUSY if one is not done; if all are
     * done, their callbacks are under way and arrive in moments.  They are
     * alive: the caller keeps each until ws_completion_next returns it.
     */
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool busy = false;
        for (ws_future *f = c->waiting; f != NULL && !busy; f = f->pnext)
            busy = !future_done(f);
        bool empty = c->waiting == NULL;
        pthread_mutex_unlock(&c->lock);
        if (busy)
            return EBUSY;
        if (empty)
            break;
        sched_yield();
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
    return 0;
}
