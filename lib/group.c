/*
 * Fork-join: ws_group, ws_spawn, ws_sync, ws_run.
 *
 * Help-first, work-first costs: a spawn by the group's owner pushes a task
 * record {fn, arg, group} on the owner's own deque (no allocation, no
 * fence), and ws_sync pops the owner's deque down to where the group began
 * and calls each task directly.  Only a stolen task costs atomics: the
 * thief bumps the group's done count when it finishes, and the owner waits
 * until done equals the number of its tasks it did not run itself.
 *
 * Accounting (ws__grp in worker.h):
 *   local  owner only: tasks the owner spawned and has not run itself;
 *   done   thieves: the owner's tasks they finished (release);
 *   extra  tasks spawned into the group by other threads (external threads,
 *          or tasks that were handed the group), counted up at spawn and
 *          down at completion.
 * The group is complete when done == local and extra == 0.  A thief reads
 * everything it needs from the group before its final update, because the
 * group lives on the owner's stack and disappears once the owner sees it.
 *
 * ws_sync pops everything above the group's base, tasks of groups spawned
 * later included: running them early is harmless (their own sync then finds
 * nothing to do), and it keeps syncs correct when groups are not nested.
 */
#include <wsched.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "pool.h"
#include "worker.h"

_Static_assert(sizeof(ws__grp) <= sizeof(ws_group),
               "ws_group storage too small");
_Static_assert(_Alignof(ws__grp) <= _Alignof(ws_group),
               "ws_group storage misaligned");

void
ws_group_init(ws_group *gp, ws_pool *pool)
{
    ws__grp *g = (ws__grp *)gp;
    ws__worker *self = ws__self;

    if (g == NULL)
        return;
    /*
     * Whole-struct stores: the group is not visible to anyone yet, so the
     * counters need no atomic stores and the compiler may merge them.
     */
    if (WS_LIKELY(self != NULL && (pool == NULL || pool == self->pool))) {
        *g = (ws__grp){.owner = self,
                       .base = self->dq.bottom,
                       .pool = self->pool,
                       .magic = WS_GROUP_MAGIC};
        return;
    }
    *g = (ws__grp){.owner = WS_NO_OWNER,
                   .pool = pool,
                   .magic = pool != NULL ? WS_GROUP_MAGIC : 0};
}

static bool
group_complete(void *arg)
{
    ws__grp *g = arg;
    /*
     * Acquire: pairs with the seq_cst completion RMWs in
     * worker.c:ws__worker_run_other (done) and ws__worker_complete (extra),
     * so the tasks' effects are visible once the counts match.
     */
    return atomic_load_explicit(&g->done, memory_order_acquire) == g->local &&
           atomic_load_explicit(&g->extra, memory_order_acquire) == 0;
}

static bool
extra_complete(void *arg)
{
    ws__grp *g = arg;
    /* Acquire: as in group_complete. */
    return atomic_load_explicit(&g->extra, memory_order_acquire) == 0;
}

static WS_NOINLINE int
spawn_slow(ws__grp *g, ws_task_fn fn, void *arg)
{
    if (g == NULL || fn == NULL || g->magic != WS_GROUP_MAGIC)
        return EINVAL;
    ws_pool *pool = g->pool;
    if (pool->gen != ws__fork_gen)
        return ECHILD;
    ws__worker *self = ws__self;
    /* Counted before the task is visible, so the count never dips to 0. */
    atomic_fetch_add_explicit(&g->extra, 1, memory_order_relaxed);
    if (self != NULL && self->pool == pool) {
        /* A worker of the pool that does not own the group. */
        if (!ws__deque_push(&self->dq, fn, arg,
                            (uintptr_t)g | WS_TAG_EXTRA)) {
            ws__task t = {fn, arg, (uintptr_t)g | WS_TAG_EXTRA, 0};
            ws__worker_run_other(self, &t);
            return 0;
        }
        ws__count(&self->stats.spawns);
        if (ws__deque_requested(&self->dq))
            ws__worker_share(self);
        return 0;
    }
    ws__task t = {fn, arg, (uintptr_t)g | WS_TAG_EXTRA | WS_TAG_ROOT, 0};
    int err = ws__pool_inject(pool, &t);
    if (err != 0)
        atomic_fetch_sub_explicit(&g->extra, 1, memory_order_relaxed);
    return err;
}

/* The owner's spawn when the deque must grow, or the group's base moves. */
static WS_NOINLINE int
spawn_edge(ws__worker *self, ws__grp *g, ws_task_fn fn, void *arg)
{
    ws__deque *d = &self->dq;

    if (d->bottom < g->base)
        g->base = d->bottom;
    if (!ws__deque_push(d, fn, arg, (uintptr_t)g)) {
        /* The deque is full and cannot grow: run the task now. */
        ws__count(&self->stats.other);
        fn(arg);
        return 0;
    }
    g->local++;
    ws__count(&self->stats.spawns);
    if (ws__deque_requested(d))
        ws__worker_share(self);
    return 0;
}

static WS_NOINLINE int
spawn_share(ws__worker *self)
{
    ws__worker_share(self);
    return 0;
}

int
ws_spawn(ws_group *gp, ws_task_fn fn, void *arg)
{
    ws__grp *g = (ws__grp *)gp;
    ws__worker *self = ws__self;

    /* Groups begun elsewhere have WS_NO_OWNER; zeroed ones NULL. */
    if (WS_LIKELY(g != NULL && g->owner == self && self != NULL &&
                  fn != NULL)) {
        ws__deque *d = &self->dq;
        int64_t b = d->bottom;
        if (WS_UNLIKELY(b < g->base || !ws__deque_fits(d, b)))
            return spawn_edge(self, g, fn, arg);
        ws__deque_put(d, b, fn, arg, (uintptr_t)g);
        g->local++;
        ws__count(&self->stats.spawns);
        if (WS_UNLIKELY(ws__deque_requested(d)))
            return spawn_share(self);
        return 0;
    }
    return spawn_slow(g, fn, arg);
}

static WS_NOINLINE int
sync_slow(ws__grp *g)
{
    if (g == NULL || g->magic != WS_GROUP_MAGIC)
        return EINVAL;
    ws_pool *pool = g->pool;
    if (pool->gen != ws__fork_gen)
        return ECHILD;
    ws__worker *self = ws__self;
    if (g->owner != WS_NO_OWNER) {
        if (g->owner != self)
            return EINVAL; /* only the thread that began the group syncs */
        int err = ws__worker_help(self, g->base, &g->thief, group_complete, g,
                                  WS_FOREVER);
        g->local = 0;
        atomic_store_explicit(&g->done, 0, memory_order_relaxed);
        atomic_store_explicit(&g->thief, 0, memory_order_relaxed);
        return err;
    }
    if (self != NULL && self->pool == pool)
        return ws__worker_help(self, self->dq.bottom, NULL, extra_complete, g,
                               WS_FOREVER);
    return ws__pool_wait_external(pool, extra_complete, g, WS_FOREVER);
}

/*
 * The general loop of ws_sync: tasks shared or tagged, or a thief asking.
 * Then waits for the tasks that were stolen.
 */
static WS_NOINLINE int
sync_loop(ws__worker *self, ws__grp *g)
{
    ws__deque *d = &self->dq;
    ws__task t;

    while (d->bottom > g->base && ws__deque_pop(d, &t)) {
        if (ws__deque_requested(d))
            ws__worker_share(self);
        ws__worker_run_own(self, &t);
    }
    /* Acquire: as in ws_sync, pairs with worker.c:ws__worker_complete. */
    if (g->local == 0 &&
        atomic_load_explicit(&g->extra, memory_order_acquire) == 0)
        return 0;
    return sync_slow(g);
}

int
ws_sync(ws_group *gp)
{
    ws__grp *g = (ws__grp *)gp;
    ws__worker *self = ws__self;

    if (WS_UNLIKELY(g == NULL || g->owner != self || self == NULL))
        return sync_slow(g);
    /*
     * The owner's private tasks above the group's base, popped and called
     * one by one; local is counted down before the call (the owner alone
     * reads it, after the call).
     */
    ws__deque *d = &self->dq;
    int64_t b;
    while ((b = d->bottom) > g->base) {
        if (WS_UNLIKELY(b <= d->osplit || ws__deque_requested(d)))
            return sync_loop(self, g);
        ws__slot *s = &d->oslots[--b & d->omask];
        ws_task_fn fn =
            (ws_task_fn)atomic_load_explicit(&s->fn, memory_order_relaxed);
        void *arg = (void *)atomic_load_explicit(&s->arg, memory_order_relaxed);
        uintptr_t grp = atomic_load_explicit(&s->grp, memory_order_relaxed);
        if (WS_UNLIKELY((grp & WS_TAG_MASK) != 0))
            return sync_loop(self, g);
        d->bottom = b;
        if (grp != 0)
            ((ws__grp *)grp)->local--;
        fn(arg);
    }
    /*
     * Acquire: pairs with the seq_cst decrement of extra in
     * worker.c:ws__worker_complete (tasks spawned by other threads).
     */
    if (WS_LIKELY(g->local == 0 &&
                  atomic_load_explicit(&g->extra, memory_order_acquire) == 0))
        return 0;
    return sync_slow(g);
}

struct run_call {
    ws_task_fn fn;
    void *arg;
};

static void
run_task(void *arg)
{
    struct run_call *c = arg;
    c->fn(c->arg);
}

int
ws_run(ws_pool *pool, ws_task_fn fn, void *arg)
{
    if (pool == NULL || fn == NULL)
        return EINVAL;
    if (pool->gen != ws__fork_gen)
        return ECHILD;
    ws__worker *self = ws__self;
    if (self != NULL && self->pool == pool) {
        fn(arg);
        return 0;
    }
    ws_group g;
    struct run_call c = {fn, arg};
    ws_group_init(&g, pool);
    int err = ws_spawn(&g, run_task, &c);
    if (err != 0)
        return err;
    return ws_sync(&g);
}

/*
 * ws_join keeps its group in its own frame, so only the fields a thief or
 * a slow path reads are written, and the child it pushed is popped back
 * and called without a loop when nobody stole it.
 */
static WS_NOINLINE int
join_slow(ws__worker *self, ws__grp *g, int64_t base)
{
    ws__deque *d = &self->dq;
    ws__task t;

    while (d->bottom > base && ws__deque_pop(d, &t)) {
        if (ws__deque_requested(d))
            ws__worker_share(self);
        ws__worker_run_own(self, &t);
    }
    /* Acquire: as in ws_sync, pairs with worker.c:ws__worker_complete. */
    if (g->local != 0 ||
        atomic_load_explicit(&g->extra, memory_order_acquire) != 0)
        ws__worker_help(self, base, &g->thief, group_complete, g,
                        WS_FOREVER);
    return 0;
}

/* The deque must grow first: the general spawn path does that. */
static WS_NOINLINE int
join_grow(ws_task_fn a, void *a_arg, ws_task_fn b, void *b_arg)
{
    ws_group g;
    ws_group_init(&g, NULL);
    ws_spawn(&g, a, a_arg);
    b(b_arg);
    return ws_sync(&g);
}

static WS_NOINLINE int
join_share(ws__worker *self, ws__grp *g, int64_t base, ws_task_fn b,
           void *b_arg)
{
    ws__worker_share(self);
    b(b_arg);
    return join_slow(self, g, base);
}

int
ws_join(ws_task_fn a, void *a_arg, ws_task_fn b, void *b_arg)
{
    ws__worker *self = ws__self;

    if (WS_UNLIKELY(a == NULL || b == NULL))
        return EINVAL;
    if (WS_UNLIKELY(self == NULL)) {
        b(b_arg);
        a(a_arg);
        return 0;
    }
    ws__deque *d = &self->dq;
    int64_t base = d->bottom;
    if (WS_UNLIKELY(!ws__deque_fits(d, base)))
        return join_grow(a, a_arg, b, b_arg);
    /*
     * Only what a thief or join_slow reads: the counters, with one 16-byte
     * copy (nobody can see g yet), and the owner.
     */
    static const ws__grp join_begin = {.local = 1};
    ws__grp g;
    memcpy(&g, &join_begin, offsetof(ws__grp, owner));
    g.owner = self;
    ws__deque_put(d, base, a, a_arg, (uintptr_t)&g);
    ws__count(&self->stats.spawns);
    if (WS_UNLIKELY(ws__deque_requested(d)))
        return join_share(self, &g, base, b, b_arg);
    b(b_arg);
    /*
     * Not run by a sync inside b (local still 1), not shared or stolen
     * (base is in the private part): the task at base is a; call it
     * directly.
     */
    if (WS_LIKELY(g.local == 1 && d->bottom - 1 == base &&
                  base >= d->osplit)) {
        ws__slot *sl = &d->oslots[base & d->omask];
        ws_task_fn fn = (ws_task_fn)atomic_load_explicit(
            &sl->fn, memory_order_relaxed);
        void *arg = (void *)atomic_load_explicit(&sl->arg,
                                                 memory_order_relaxed);
        d->bottom = base;
        fn(arg);
        return 0;
    }
    return join_slow(self, &g, base);
}
