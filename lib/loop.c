/*
 * Parallel loops, the order-preserving map and reduce, on the public
 * fork-join calls (ws_group_init, ws_spawn, ws_sync, ws_run).
 *
 * Shape.  A loop runs as a tree of pieces.  A piece that splits spawns its
 * right half into a group of its own and goes on with its left half in the
 * same task, then syncs: the spawned half waits on the worker's deque for a
 * thief, and ws_sync runs it inline when nobody came.  One group per split
 * keeps each stack frame small (one group, one child record) and the stack
 * depth at most the number of halvings, which is below the bit width of
 * size_t.  The root runs through ws_run: inline when the caller is already a
 * worker of the pool (nested loops split in place), else on a worker while
 * the caller waits.
 *
 * Explicit grain.  The range is cut at multiples of grain from its begin and
 * split by halving the number of chunks, so body sees exactly
 * [begin + k * grain, min(end, begin + (k + 1) * grain)), each chunk a task
 * of its own, like OpenMP's schedule(dynamic, grain).
 *
 * Grain 0 splits adaptively, in two ways that both react to stealing.
 * - A split budget, as in Rayon's adaptive splitter and TBB's
 *   auto_partitioner: the root gets one split per worker (P), each split
 *   halves the budget of both halves, so about P pieces exist at first.  A
 *   piece that starts on another worker than the one that spawned it (as
 *   ws_worker_index tells) was stolen, which means some worker ran out of
 *   work: it earns a fresh budget of P.
 * - Splitting on demand inside a leaf, after lazy binary splitting
 *   (Tzannes, Caragea, Barua and Vishkin, PPoPP 2010).  A leaf runs in
 *   slices sized to take about LOOP_SLICE_NS each; between two slices, when
 *   the piece this task spawned last has already started (a thief took it,
 *   since the task runs its own pieces only at sync) or the task spawned
 *   none, nothing of this task is left for the next thief, so the leaf
 *   spawns the right half of what remains.  A leaf costs O(log n) spawns at
 *   most, a busy worker always offers work, and a heavy loop ends with the
 *   workers at most about one item apart.
 * While the half it spawned last waits, the leaf polls between slices with
 * an empty spawn, so that the deque shares the halves it holds privately
 * with thieves that asked (see loop_poll).
 * The slice starts at one item and doubles while a slice takes less than
 * half of LOOP_SLICE_NS (halves when it takes more than twice as long); the
 * size found is shared by the pieces of the loop through a relaxed hint.  A
 * loop of trivial iterations thus calls body on ranges long enough to
 * vectorise and amortise the clock read, and a loop of heavy iterations
 * offers work after every item.
 *
 * Reduce.  Each piece folds into an accumulator: the root into the result
 * (or a private copy when result overlaps identity), a spawned half into
 * storage in its spawner's frame (inline up to LOOP_SMALL_ACC bytes, else
 * malloc), initialised from identity by the worker that runs it.  After the
 * sync the spawner combines its accumulator with the half's, which lies
 * right of everything the spawner folded, so pieces combine left to right
 * and an associative, non-commutative combine gives the sequential answer.
 * When malloc fails the piece simply does not split.
 *
 * Memory order.  Everything a piece reads or writes is published to it by
 * ws_spawn and back to its spawner by ws_sync (and to the caller by
 * ws_run), which the fork-join core orders.  The two atomics here are
 * heuristics and use relaxed operations only: the started flag of a piece
 * (written by whoever runs it, read by its spawner's leaf) and the slice
 * hint.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wsched.h>

#include "arch.h"
#include "loop.h"

/* Target duration of one slice of an adaptive leaf, in nanoseconds. */
#define LOOP_SLICE_NS 20000u

/* Reduce accumulators up to this size live in the spawner's stack frame. */
#define LOOP_SMALL_ACC 64

/* One loop, for, map or reduce; lives in the caller's frame. */
struct loop {
    ws_pool      *pool;
    ws_range_fn   body;    /* for and map */
    ws_reduce_fn  fold;    /* reduce */
    ws_combine_fn combine; /* reduce */
    void         *ctx;
    const void   *identity; /* reduce */
    void         *acc;      /* reduce: the root's accumulator */
    size_t        size;     /* reduce: accumulator bytes, else 0 */
    size_t        begin, end;
    size_t        grain; /* 0: adaptive */
    unsigned      workers;
    /* Written by every piece that resizes its slices: its own line. */
    WS_ALIGNED atomic_size_t slice;
};

/* A spawned right half; lives in the spawner's frame until its sync. */
struct piece {
    struct loop *l;
    size_t       begin, end;
    unsigned     budget; /* adaptive: splits left */
    int          owner;  /* ws_worker_index() of the spawner */
    atomic_int   started;
    void        *acc; /* reduce: small, or malloc'd */
    alignas(max_align_t) unsigned char small[LOOP_SMALL_ACC];
};

static void loop_range(struct loop *l, size_t b, size_t e, unsigned budget,
                       void *acc, struct piece *last);

static inline uint64_t
loop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void
loop_call(struct loop *l, size_t b, size_t e, void *acc)
{
    if (l->size)
        l->fold(b, e, acc, l->ctx);
    else
        l->body(b, e, l->ctx);
}

static void
piece_run(void *arg)
{
    struct piece *p = arg;
    struct loop *l = p->l;
    unsigned budget = p->budget;

    atomic_store_explicit(&p->started, 1, memory_order_relaxed);
    if (l->grain == 0 && ws_worker_index() != p->owner && budget < l->workers)
        budget = l->workers;
    if (l->size)
        memcpy(p->acc, l->identity, l->size);
    loop_range(l, p->begin, p->end, budget, p->acc, NULL);
}

/*
 * Spawns [mid, e) and runs [b, mid) in this task, then syncs and, for a
 * reduce, combines.  False (nothing done) when the half's accumulator
 * cannot be allocated.
 */
static bool
loop_split(struct loop *l, size_t b, size_t mid, size_t e, unsigned budget,
           void *acc)
{
    struct piece half;
    ws_group g;

    half.l = l;
    half.begin = mid;
    half.end = e;
    half.budget = budget;
    half.owner = ws_worker_index();
    atomic_init(&half.started, 0);
    half.acc = NULL;
    if (l->size) {
        half.acc = l->size <= sizeof half.small ? half.small : malloc(l->size);
        if (half.acc == NULL)
            return false;
    }
    ws_group_init(&g, l->pool);
    if (ws_spawn(&g, piece_run, &half) != 0)
        piece_run(&half);
    loop_range(l, b, mid, budget, acc, &half);
    ws_sync(&g);
    if (l->size) {
        l->combine(acc, half.acc, l->ctx);
        if (half.acc != half.small)
            free(half.acc);
    }
    return true;
}

static void
loop_nop(void *arg)
{
    (void)arg;
}

/*
 * Lets waiting thieves in.  The deque keeps the newest tasks private and
 * shares them when a thief has asked, at the owner's next spawn or pop; a
 * leaf that runs for long does neither, so the halves it spawned would stay
 * out of reach.  An empty spawn and sync between slices serves the request
 * for a few nanoseconds.
 */
static void
loop_poll(struct loop *l)
{
    ws_group g;

    ws_group_init(&g, l->pool);
    if (ws_spawn(&g, loop_nop, NULL) == 0)
        ws_sync(&g);
}

/* Adaptive leaf: slices of about LOOP_SLICE_NS, split on demand. */
static void
loop_leaf(struct loop *l, size_t b, size_t e, void *acc, struct piece *last)
{
    size_t slice = atomic_load_explicit(&l->slice, memory_order_relaxed);
    size_t old = slice;
    uint64_t t0 = loop_now();

    for (;;) {
        size_t n = e - b < slice ? e - b : slice;
        loop_call(l, b, b + n, acc);
        b += n;
        if (b == e)
            break;

        uint64_t t1 = loop_now(), dt = t1 - t0;
        t0 = t1;
        if (dt < LOOP_SLICE_NS / 2 && n == slice && slice <= SIZE_MAX / 4)
            slice *= 2;
        else if (dt > 2 * LOOP_SLICE_NS && slice > 1)
            slice /= 2;
        if (slice != old) {
            atomic_store_explicit(&l->slice, slice, memory_order_relaxed);
            old = slice;
        }

        if (l->workers < 2)
            continue;
        if (last != NULL &&
            !atomic_load_explicit(&last->started, memory_order_relaxed))
            loop_poll(l);
        else if (e - b >= 2 * slice &&
                 loop_split(l, b, b + (e - b) / 2, e, 0, acc))
            return;
    }
}

/* Runs [b, e), b < e, folding into acc for a reduce. */
static void
loop_range(struct loop *l, size_t b, size_t e, unsigned budget, void *acc,
           struct piece *last)
{
    if (l->grain) {
        size_t chunks = (e - b - 1) / l->grain + 1;
        if (chunks > 1 &&
            loop_split(l, b, b + chunks / 2 * l->grain, e, 0, acc))
            return;
        /* One chunk, or no memory to split: chunk by chunk, in order. */
        while (b < e) {
            size_t n = e - b < l->grain ? e - b : l->grain;
            loop_call(l, b, b + n, acc);
            b += n;
        }
        return;
    }
    if (budget > 0 && e - b >= 2 &&
        loop_split(l, b, b + (e - b) / 2, e, budget / 2, acc))
        return;
    loop_leaf(l, b, e, acc, last);
}

static void
loop_root(void *arg)
{
    struct loop *l = arg;

    if (l->size)
        memcpy(l->acc, l->identity, l->size);
    loop_range(l, l->begin, l->end, l->workers > 1 ? l->workers : 0, l->acc,
               NULL);
}

static void
loop_init(struct loop *l, ws_pool *pool, size_t begin, size_t end,
          size_t grain, void *ctx)
{
    memset(l, 0, sizeof *l);
    l->pool = pool;
    l->ctx = ctx;
    l->begin = begin;
    l->end = end;
    l->grain = grain;
    l->workers = ws_pool_size(pool);
    atomic_init(&l->slice, 1);
}

int
ws_parallel_for(ws_pool *pool, size_t begin, size_t end, size_t grain,
                ws_range_fn body, void *ctx)
{
    struct loop l;

    if (pool == NULL || body == NULL || begin > end)
        return EINVAL;
    if (begin == end)
        return 0;
    loop_init(&l, pool, begin, end, grain, ctx);
    l.body = body;
    return ws_run(pool, loop_root, &l);
}

/* A map is a loop over item indices whose body applies fn to each. */
struct map_run {
    ws_map_fn            fn;
    const unsigned char *in;
    unsigned char       *out;
    size_t               in_size, out_size;
    void                *ctx;
    int                 *status;
    /* The lowest failing index (SIZE_MAX: none) and its code. */
    pthread_mutex_t      lock;
    size_t               fail;
    int                  fail_rc;
};

static void
map_fail(struct map_run *mr, size_t i, int rc)
{
    pthread_mutex_lock(&mr->lock);
    if (i < mr->fail) {
        mr->fail = i;
        mr->fail_rc = rc;
    }
    pthread_mutex_unlock(&mr->lock);
}

static void
map_range(size_t b, size_t e, void *arg)
{
    struct map_run *mr = arg;

    for (size_t i = b; i < e; i++) {
        int rc = mr->fn(mr->in + i * mr->in_size, mr->out + i * mr->out_size,
                        mr->ctx);
        if (mr->status)
            mr->status[i] = rc;
        if (WS_UNLIKELY(rc != 0))
            map_fail(mr, i, rc);
    }
}

int
ws__loop_map_check(const ws_map *m)
{
    if (m == NULL || m->fn == NULL || m->in_size == 0 || m->out_size == 0)
        return EINVAL;
    if (m->n > 0 && (m->in == NULL || m->out == NULL))
        return EINVAL;
    if (m->n > SIZE_MAX / m->in_size || m->n > SIZE_MAX / m->out_size)
        return EINVAL;
    if (m->status != NULL && m->n > SIZE_MAX / sizeof(int))
        return EINVAL;
    return 0;
}

int
ws_parallel_map(ws_pool *pool, const ws_map *m)
{
    struct map_run mr;
    struct loop l;
    int rc;

    if (pool == NULL)
        return EINVAL;
    if ((rc = ws__loop_map_check(m)) != 0)
        return rc;
    if (m->n == 0)
        return 0;

    mr.fn = m->fn;
    mr.in = m->in;
    mr.out = m->out;
    mr.in_size = m->in_size;
    mr.out_size = m->out_size;
    mr.ctx = m->ctx;
    mr.status = m->status;
    mr.fail = SIZE_MAX;
    mr.fail_rc = 0;
    mr.lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;

    loop_init(&l, pool, 0, m->n, m->chunk, &mr);
    l.body = map_range;
    rc = ws_run(pool, loop_root, &l);
    return rc != 0 ? rc : mr.fail_rc;
}

static bool
reduce_overlap(const void *a, const void *b, size_t size)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + size && y < x + size;
}

int
ws_parallel_reduce(ws_pool *pool, const ws_reduce *r)
{
    alignas(max_align_t) unsigned char small[LOOP_SMALL_ACC];
    struct loop l;
    void *acc;
    int rc;

    if (pool == NULL || r == NULL || r->body == NULL || r->combine == NULL ||
        r->identity == NULL || r->result == NULL || r->size == 0 ||
        r->begin > r->end)
        return EINVAL;
    if (r->begin == r->end) {
        memmove(r->result, r->identity, r->size);
        return 0;
    }

    /* The root folds straight into result unless identity lies there. */
    acc = r->result;
    if (reduce_overlap(r->identity, r->result, r->size)) {
        acc = r->size <= sizeof small ? small : malloc(r->size);
        if (acc == NULL)
            return ENOMEM;
    }

    loop_init(&l, pool, r->begin, r->end, r->grain, r->ctx);
    l.fold = r->body;
    l.combine = r->combine;
    l.identity = r->identity;
    l.size = r->size;
    l.acc = acc;
    rc = ws_run(pool, loop_root, &l);
    if (acc != r->result) {
        if (rc == 0)
            memcpy(r->result, acc, r->size);
        if (acc != small)
            free(acc);
    }
    return rc;
}
