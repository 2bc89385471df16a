/*
 * Worker threads.
 *
 * A worker pops its own deque, then takes injected tasks, then steals:
 * victims are tried level by level, closest cache first (topo.c plans the
 * levels), starting at a random victim within each level.  A thief that
 * finds a victim with more stealable work wakes one more sleeper, so wake
 * ups spread without waking everyone for every task.
 *
 * Idle workers spin for a bounded number of steal rounds, then sleep on the
 * pool's event count (pool->epoch, a futex word):
 *
 *     sleeper                              producer
 *     sleepers += 1          (seq_cst)     publish work (release)
 *     key = epoch            (seq_cst)     fence           (seq_cst)
 *     if work visible: don't sleep         if sleepers > 0:
 *     futex_wait(epoch, key)                   epoch += 1; futex_wake(1)
 *
 * Either the producer sees the sleeper, or the sleeper sees the work; a
 * bump of epoch between the sleeper's read of key and its wait makes the
 * wait return at once.  Private deque tasks are not visible to sleepers: a
 * thief that found a victim's shared part empty set the victim's request
 * flag, and the victim shares and notifies at its next push or pop.  Sleeps
 * are bounded (1 ms while the pool has work, 1 s when it has none) so that
 * a victim busy in one long task delays a steal by at most that much.
 *
 * Waits inside tasks (ws_sync on a stolen child, future waits) never block
 * the worker idle: ws__worker_help runs the worker's own tasks, steals back
 * from the thief of the awaited work (leapfrogging), then from anyone, and
 * only then sleeps briefly on its own wake_seq word, which the completing
 * thief bumps.  Taking unrelated work nests it on this stack; that is not
 * bounded, because the awaited work may be queued where only a waiting
 * worker will ever take it (an injected task of a group this worker owns,
 * a future queued behind the waiter), and a bound would deadlock there.
 */
#define _GNU_SOURCE
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <time.h>

#include "futex.h"

__thread ws__worker *ws__self __attribute__((tls_model("initial-exec")));

/*
 * Idle workers spin a few tens of microseconds, then sleep.  They do not
 * call sched_yield in between: on a machine with more runnable threads
 * than cores (another pool, the program's own threads), each yield hands
 * an idle worker a time slice taken from a thread with real work.
 */
enum {
    SPIN_PAUSE = 64,   /* steal rounds with a pause between them */
    STEAL_RETRY = 4,   /* attempts on a victim whose CAS we lost */
};

static inline uint64_t
rng_next(ws__worker *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
ws__worker_wake(ws__worker *w)
{
    /*
     * seq_cst fence: orders the caller's completion store (a seq_cst RMW)
     * before this load of sleeping; pairs with the fence in
     * worker.c:ws__worker_help between its store of sleeping and its check.
     */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->sleeping, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&w->wake_seq, 1, memory_order_relaxed);
        ws__futex_wake(&w->wake_seq, 1);
    }
}

void
ws__worker_complete(ws__worker *self, uintptr_t tagged)
{
    ws__grp *g = (ws__grp *)(tagged & ~(uintptr_t)WS_TAG_MASK);

    if (tagged & WS_TAG_EXTRA) {
        /* Read before the decrement: the group may vanish right after. */
        ws__worker *owner = g->owner;
        ws_pool *pool = g->pool;
        /*
         * seq_cst (and release): publishes the task's effects to the
         * waiter's acquire load of extra in group.c, and takes part in the
         * sleep handshake of ws__worker_wake / ws__pool_wake_external.
         */
        if (atomic_fetch_sub_explicit(&g->extra, 1, memory_order_seq_cst) ==
            1) {
            if (owner != WS_NO_OWNER)
                ws__worker_wake(owner);
            else
                ws__pool_wake_external(pool);
        }
    }
    if (tagged & WS_TAG_ROOT)
        ws__pool_root_done(self);
}

void
ws__worker_run_tagged(ws__worker *self, const ws__task *t)
{
    if (t->grp & WS_TAG_CALL)
        ((void *(*)(void *))t->aux)(t->arg);
    else
        t->fn(t->arg);
    ws__worker_complete(self, t->grp);
}

void
ws__worker_run_other(ws__worker *self, const ws__task *t)
{
    uintptr_t tagged = t->grp;

    ws__count(&self->stats.other);
    if ((tagged & WS_TAG_MASK) != 0 || tagged == 0) {
        if (tagged != 0)
            ws__worker_run_tagged(self, t);
        else
            t->fn(t->arg);
        return;
    }
    /* A stolen task of its owner's group: the owner may leapfrog to us. */
    ws__grp *g = (ws__grp *)tagged;
    ws__worker *owner = g->owner;
    atomic_store_explicit(&g->thief, (int)self->index + 1,
                          memory_order_relaxed);
    t->fn(t->arg);
    /*
     * seq_cst (and release): publishes the task's effects to the owner's
     * acquire load of done in group.c; the group may vanish right after,
     * so the owner was read before.
     */
    atomic_fetch_add_explicit(&g->done, 1, memory_order_seq_cst);
    ws__worker_wake(owner);
}

void
ws__worker_share(ws__worker *self)
{
    if (ws__deque_share(&self->dq))
        ws__pool_notify(self->pool);
}

/* One pass over the victims, closest level first. */
static bool
steal_round(ws__worker *self, ws__task *t)
{
    ws_pool *pool = self->pool;
    unsigned lo = 0;

    for (unsigned l = 0; l < self->nlevels; l++) {
        unsigned hi = self->levels[l], n = hi - lo;
        unsigned start = (unsigned)(rng_next(self) % n);
        for (unsigned i = 0; i < n; i++) {
            ws__worker *v = pool->workers[self->victims[lo + (start + i) % n]];
            for (int k = 0; k < STEAL_RETRY; k++) {
                int r = ws__deque_steal(&v->dq, t);
                if (r == WS_STEAL_OK) {
                    ws__count(&self->stats.steals);
                    atomic_fetch_add_explicit(&v->stats.stolen, 1,
                                              memory_order_relaxed);
                    if (ws__deque_stealable(&v->dq))
                        ws__pool_notify(pool);
                    return true;
                }
                if (r == WS_STEAL_EMPTY)
                    break;
            }
            ws__count(&self->stats.failed_steals);
        }
        lo = hi;
    }
    return false;
}

static bool
find_work(ws__worker *self, ws__task *t)
{
    ws_pool *pool = self->pool;

    if (atomic_load_explicit(&pool->inj_nonempty, memory_order_relaxed) != 0 &&
        ws__pool_take_injected(pool, self, t))
        return true;
    return steal_round(self, t);
}

static bool
work_visible(ws_pool *pool)
{
    if (atomic_load_explicit(&pool->inj_nonempty, memory_order_relaxed) != 0)
        return true;
    for (unsigned i = 0; i < pool->n; i++)
        if (ws__deque_stealable(&pool->workers[i]->dq))
            return true;
    return false;
}

/*
 * Acquire: stopping pairs with its seq_cst store in pool.c:pool_stop (so
 * every injection's count is visible), and ws__pool_outstanding loads with
 * acquire, so a worker leaves only after the last root's effects.
 */
static bool
pool_finished(ws_pool *pool)
{
    return atomic_load_explicit(&pool->stopping, memory_order_acquire) &&
           ws__pool_outstanding(pool) == 0;
}

static void
idle_sleep(ws__worker *self)
{
    ws_pool *pool = self->pool;

    ws__count(&self->stats.sleeps);
    /*
     * seq_cst: the sleeper's half of the event-count handshake described
     * in the opening comment; pairs with the fence in
     * pool.c:ws__pool_notify.
     */
    atomic_fetch_add_explicit(&pool->sleepers, 1, memory_order_seq_cst);
    unsigned key = atomic_load_explicit(&pool->epoch, memory_order_seq_cst);
    if (!work_visible(pool) && !pool_finished(pool)) {
        bool busy = ws__pool_outstanding(pool) > 0;
        ws__futex_wait(&pool->epoch, key, busy ? 0.001 : 1.0);
    }
    atomic_fetch_sub_explicit(&pool->sleepers, 1, memory_order_relaxed);
}

void *
ws__worker_main(void *arg)
{
    ws__worker *self = arg;
    ws_pool *pool = self->pool;
    unsigned fails = 0;

    ws__self = self;
    ws__plan_bind(pool->plan, self->index);
    for (;;) {
        ws__task t;
        if (ws__deque_pop(&self->dq, &t)) {
            if (ws__deque_requested(&self->dq))
                ws__worker_share(self);
            ws__worker_run_own(self, &t);
            fails = 0;
            continue;
        }
        if (find_work(self, &t)) {
            ws__worker_run_other(self, &t);
            fails = 0;
            continue;
        }
        if (atomic_load_explicit(&pool->stopping, memory_order_relaxed)) {
            /*
             * seq_cst fence: after our own last count, before reading the
             * others'; pairs with this same fence in the other workers, so
             * of two that finish the last two roots at once, at least one
             * sees both counts and wakes the rest.
             */
            atomic_thread_fence(memory_order_seq_cst);
            if (pool_finished(pool)) {
                atomic_fetch_add_explicit(&pool->epoch, 1,
                                          memory_order_seq_cst);
                ws__futex_wake(&pool->epoch, INT_MAX);
                break;
            }
        }
        fails++;
        if (fails < SPIN_PAUSE) {
            for (int i = 0; i < 16; i++)
                ws_cpu_relax();
        } else {
            idle_sleep(self);
            fails = SPIN_PAUSE; /* after a sleep, one round, then sleep */
        }
    }
    ws__self = NULL;
    return NULL;
}

int
ws__worker_help(ws__worker *self, int64_t base, atomic_int *thief_hint,
                bool (*done)(void *), void *arg, double timeout_s)
{
    ws_pool *pool = self->pool;
    double deadline = timeout_s >= 0 ? now() + timeout_s : 0;
    unsigned fails = 0;

    for (;;) {
        ws__task t;
        if (done(arg))
            return 0;
        if (self->dq.bottom > base && ws__deque_pop(&self->dq, &t)) {
            if (ws__deque_requested(&self->dq))
                ws__worker_share(self);
            ws__worker_run_own(self, &t);
            fails = 0;
            continue;
        }
        /*
         * A root task below base (an injected task taken in a batch, or a
         * detached submission) came before anything still in the injection
         * queue: run it first, so that injected tasks start in order.
         */
        if ((ws__deque_newest_grp(&self->dq) & WS_TAG_ROOT) &&
            ws__deque_pop(&self->dq, &t)) {
            ws__worker_run_own(self, &t);
            fails = 0;
            continue;
        }
        int th = thief_hint != NULL
                     ? atomic_load_explicit(thief_hint, memory_order_relaxed)
                     : 0;
        bool got = false;
        if (th > 0 && (unsigned)th - 1 != self->index) {
            ws__deque *v = &pool->workers[th - 1]->dq;
            for (int k = 0; k < STEAL_RETRY && !got; k++) {
                int r = ws__deque_steal(v, &t);
                got = r == WS_STEAL_OK;
                if (r == WS_STEAL_EMPTY)
                    break;
            }
            if (got) {
                ws__count(&self->stats.steals);
                atomic_fetch_add_explicit(&pool->workers[th - 1]->stats.stolen,
                                          1, memory_order_relaxed);
            }
        }
        if (!got)
            got = find_work(self, &t);
        if (got) {
            ws__worker_run_other(self, &t);
            fails = 0;
            continue;
        }
        /*
         * Tasks below base belong to frames further out (or are injected
         * tasks this worker took in a batch), and what we wait for may be
         * among them.  Thieves may take them: share when asked.  When no
         * thief can (one worker), or none did for a while, run them here.
         */
        if (ws__deque_requested(&self->dq))
            ws__worker_share(self);
        if ((pool->n == 1 || fails >= SPIN_PAUSE) &&
            ws__deque_pop(&self->dq, &t)) {
            ws__worker_run_own(self, &t);
            fails = 0;
            continue;
        }
        double left = 0;
        if (timeout_s >= 0 && (left = deadline - now()) <= 0)
            return done(arg) ? 0 : ETIMEDOUT;
        fails++;
        if (fails < SPIN_PAUSE) {
            for (int i = 0; i < 16; i++)
                ws_cpu_relax();
            continue;
        }
        unsigned key = atomic_load_explicit(&self->wake_seq,
                                            memory_order_relaxed);
        atomic_store_explicit(&self->sleeping, 1, memory_order_relaxed);
        /*
         * seq_cst fence: our store of sleeping before the check of done;
         * pairs with the fence in worker.c:ws__worker_wake, which the
         * completer runs after its completion RMW.
         */
        atomic_thread_fence(memory_order_seq_cst);
        if (!done(arg)) {
            double nap = 0.001;
            if (timeout_s >= 0 && left < nap)
                nap = left;
            ws__count(&self->stats.sleeps);
            ws__futex_wait(&self->wake_seq, key, nap);
        }
        atomic_store_explicit(&self->sleeping, 0, memory_order_relaxed);
        fails = SPIN_PAUSE;
    }
}
