/*
 * Bounded MPMC FIFO queue.
 *
 * Algorithm.  A ring of `capacity` slots, each with a stamp, and two
 * counters, head and tail: D. Vyukov's bounded MPMC queue (1024cores.net,
 * 2010).  A put claims the position at the tail with a CAS once the slot
 * there is free, stores its item and publishes it by writing the slot's
 * stamp; a get claims the position at the head once the slot there is
 * published, reads the item and frees the slot for the next lap by writing
 * the stamp again.  As in crossbeam's ArrayQueue, a position is a lap and an
 * index, `lap | index`, so that any capacity works without a division: the
 * index counts 0..capacity-1 in the low bits, below `mark` (the power of two
 * above capacity), and the lap advances by `one_lap` (2 * mark) when the
 * index wraps.  The bit `mark` itself is set in the tail by ws_queue_close,
 * so that a put and a close are ordered by the tail's one modification
 * order: a CAS that claimed a position came before the close and its item
 * will be gettable; any later CAS fails against the mark.
 *
 * Stamps.  A slot's stamp is the lap of the next position that will use it,
 * plus 1 while it holds that position's item:
 *     stamp == lap(p)              free: a put at position p may claim it;
 *     stamp == lap(p) + 1          holds p's item: a get at p may claim it;
 *     stamp == lap(p) + one_lap    p's item taken: free for the next lap.
 * Zeroed memory is therefore an empty queue at lap 0 (calloc hands out
 * untouched pages, so a large queue costs memory only as it fills), and
 * stamps of one slot only grow, so comparing them (as signed differences,
 * which survive the 64-bit wrap) tells a stale head or tail from a full or
 * empty slot.
 *
 * Invariants.  head <= tail <= head + capacity, counting positions; the
 * items at positions [head, tail) are in the queue, those whose stamps are
 * published ready to get; each position is claimed by exactly one put and
 * one get (the CAS), so every item is delivered once; gets claim positions
 * in order, so items leave in the order their puts claimed positions, which
 * for puts from one thread is program order (FIFO per producer).
 *
 * Sleeping.  When a put finds the queue full (or a get empty) it spins
 * briefly (about 80 us, 16 pauses before the first retry, doubling), then
 * registers in the `waiters` count of its side and sleeps on
 * that side's futex word `event`, re-checking the queue before every sleep.
 * A put that publishes an item (or a get that frees a slot) calls
 * queue_wake for the other side, which does nothing unless that side has
 * waiters.  Then it wakes one sleeper, unless a wake is already `pending`:
 * one sent that no waiter has yet answered by re-checking.  So a burst of
 * puts costs one system call, not one each, while the woken thread is on
 * its way.  The steps, every one seq_cst so that all lie in the single
 * total order S of seq_cst operations:
 *     sleeper (queue_wait)             waker (queue_try_* + queue_wake)
 *     W1 waiters += 1                  K1 store the slot's stamp
 *     W2 e = load event                K2 load waiters; stop if 0
 *     W3 pending = 0                   K3 load pending, then exchange it
 *     W4 re-check: load the stamp         with 1; stop if either gave 1
 *     W5 futex_wait(event, e)          K4 event += 1; futex_wake(1)
 *
 * Claim: after every K1 that a registered sleeper's re-check missed, some
 * registered thread re-checks after K1.  If sleeper Y's W4 missed K1, then
 * W4 < K1 in S, so W1 < K2 and the waker sees Y registered.  If K3 gave 0,
 * the waker's K4 follows Y's W2, so Y's futex_wait returns at once or the
 * kernel wakes one sleeper, which then re-checks after K1.  If K3 read 1,
 * no W3 lies between the exchange that set it and K3 (K3 would have read
 * 0), so Y's W3 precedes that exchange and its K4, whose wake therefore
 * reaches Y or another sleeper, or finds Y's event stale; either way a
 * thread passes W3 after K3, and its re-check comes after K1.
 *
 * One re-check finds one item.  A sleeper that succeeds therefore passes
 * the wake on (queue_pass_on) when more remains for its side: this covers
 * the suppressed wakes above and a wake that reached a thread which found
 * the slot it needs still claimed by an unfinished call (EBUSY) and slept
 * again.  ws_queue_close sets the mark and then bumps and wakes both sides
 * unconditionally; the argument with the tail load of the re-check as W4
 * covers it.  As a second line of defence (glibc BZ 25847 is a lost
 * wake-up in a condition variable; ours is hand-made), every sleep is
 * bounded by WS__QUEUE_RECHECK_S, after which the thread re-checks.
 *
 * Callers.  Any thread, worker or not, may call put, get, size and close on
 * the same queue concurrently; destroy must come after every other call has
 * returned.  A blocked call sleeps only its own thread.
 *
 * Progress.  A put or get that finds room or an item completes in a bounded
 * number of its own steps unless other threads keep winning the CAS (a CAS
 * fails only because another operation succeeded).  The queue is not
 * lock-free in the strict sense: a thread preempted between its claim and
 * its stamp store holds up gets (or puts) of that one slot, which then wait
 * as on an empty (or full) queue until it runs again.
 */
#include "queue.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch.h"
#include "futex.h"

/*
 * Spin rounds with exponential back-off before a blocking call sleeps.  The
 * back-off starts at 16 pauses, not 1: a get that re-polls the head at once
 * pulls the slot's line away from the putter after every item, and with two
 * cores each item then cost two line transfers (1:1 fell to 0.7x the
 * textbook queue on an idle machine); a longer first wait lets the other
 * side fill or empty a few slots of the line first.
 */
#define QUEUE_SPIN_ROUNDS 8
/* ... then give the processor away this many times before sleeping. */
#define QUEUE_YIELDS 1

#define QUEUE_MAGIC 0x77737175u /* "wsqu" */

struct queue_slot {
    _Atomic(uint64_t) stamp; /* lap, plus 1 while holding an item */
    void *item;              /* written before, read after the stamp */
};

/* One side's sleepers: getters wait for items, putters for room. */
struct queue_sleep {
    atomic_uint waiters; /* threads registered to sleep on event */
    atomic_uint event;   /* futex word, bumped by every wake */
    atomic_uint pending; /* 1: a wake is out and nobody re-checked since */
};

struct ws_queue {
    /* Read-only after creation: shared by every thread, never written. */
    WS_ALIGNED struct queue_slot *slots;
    uint64_t mark;    /* closed bit of the tail; above every index */
    uint64_t one_lap; /* 2 * mark: position step when the index wraps */
    size_t capacity;
    unsigned magic;

    /* Claimed by puts (CAS); the mark set by close. */
    WS_ALIGNED _Atomic(uint64_t) tail;
    /* Claimed by gets (CAS). */
    WS_ALIGNED _Atomic(uint64_t) head;

    /*
     * Written only by threads that go to sleep and by their wakers; read
     * by every put (getters) or get (putters).
     */
    WS_ALIGNED struct queue_sleep getters;
    WS_ALIGNED struct queue_sleep putters;
};

_Static_assert(sizeof(struct ws_queue) == 5 * WS_CACHELINE,
               "one cache line per group of fields");

typedef int (*queue_try_fn)(ws_queue *q, void *arg);

static inline uint64_t
queue_lap(const ws_queue *q, uint64_t pos)
{
    return pos & ~(q->one_lap - 1);
}

static inline struct queue_slot *
queue_slot(const ws_queue *q, uint64_t pos)
{
    return &q->slots[pos & (q->mark - 1)];
}

/* The position after pos (which carries no mark). */
static inline uint64_t
queue_next(const ws_queue *q, uint64_t pos)
{
    uint64_t index = pos & (q->mark - 1);
    return index + 1 < q->capacity ? pos + 1 : queue_lap(q, pos) + q->one_lap;
}

static WS_NOINLINE void
queue_wake_one(struct queue_sleep *s)
{
    /*
     * seq_cst: K3 of the proof; reading 1 puts every later re-check
     * (queue.c:queue_wait's W3, W4) after our K1.  The load spares the
     * cache line a write while a wake is out.
     */
    if (atomic_load_explicit(&s->pending, memory_order_seq_cst) != 0 ||
        atomic_exchange_explicit(&s->pending, 1, memory_order_seq_cst) != 0)
        return;
    /* seq_cst: K4; follows queue.c:queue_wait's W2 in S. */
    atomic_fetch_add_explicit(&s->event, 1, memory_order_seq_cst);
    ws__futex_wake(&s->event, 1);
}

static inline void
queue_wake(struct queue_sleep *s)
{
    /*
     * seq_cst: K2 of the proof; follows the stamp store K1 of
     * queue_try_put or queue_try_get in S and sees queue.c:queue_wait's
     * registration W1 whenever W1's re-check missed K1.
     */
    if (WS_UNLIKELY(atomic_load_explicit(&s->waiters, memory_order_seq_cst)))
        queue_wake_one(s);
}

static void
queue_wake_all(struct queue_sleep *s)
{
    /* seq_cst: as K4; follows ws_queue_close's mark in S. */
    atomic_fetch_add_explicit(&s->event, 1, memory_order_seq_cst);
    ws__futex_wake(&s->event, INT_MAX);
}

/*
 * One attempt at a put: 0, EPIPE (closed), EAGAIN (full) or EBUSY (the slot
 * at the tail is still being emptied by a get that has claimed it).
 */
static int
queue_try_put(ws_queue *q, void *item)
{
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    for (;;) {
        if (WS_UNLIKELY(t & q->mark))
            return EPIPE;
        uint64_t lap = queue_lap(q, t);
        struct queue_slot *s = queue_slot(q, t);
        /*
         * seq_cst: acquires queue.c:queue_try_get's store that freed the
         * slot, so that get's read of the old item comes before our write
         * of the new one; seq_cst as W4 of the proof, pairing with that
         * store as K1 when this call re-checks before sleeping.
         */
        uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_seq_cst);
        if (stamp == lap) {
            /*
             * relaxed: the CAS only hands out the position; the item is
             * published by the stamp store below.
             */
            if (atomic_compare_exchange_weak_explicit(
                    &q->tail, &t, queue_next(q, t), memory_order_relaxed,
                    memory_order_relaxed)) {
                s->item = item;
                /*
                 * seq_cst: releases the item to queue.c:queue_try_get's
                 * stamp load; K1 of the proof before queue_wake's load K2.
                 */
                atomic_store_explicit(&s->stamp, lap + 1, memory_order_seq_cst);
                queue_wake(&q->getters);
                return 0;
            }
        } else if ((int64_t)(stamp - lap) < 0) {
            /*
             * The slot still holds the item of the previous lap: full, or
             * a get has claimed it and not yet freed it.  seq_cst: the
             * head and tail re-read after the stamp, in S; the tail is W4
             * for ws_queue_close's mark.
             */
            uint64_t h = atomic_load_explicit(&q->head, memory_order_seq_cst);
            uint64_t t2 = atomic_load_explicit(&q->tail, memory_order_seq_cst);
            if (t2 != t) {
                t = t2;
                continue;
            }
            return h + q->one_lap == t ? EAGAIN : EBUSY;
        } else {
            /* Another put filled this position: our tail is stale. */
            t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        }
    }
}

/*
 * One attempt at a get: 0, EPIPE (closed and empty), EAGAIN (empty) or
 * EBUSY (a put has claimed the slot at the head and not yet published it).
 */
static int
queue_try_get(ws_queue *q, void **item)
{
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    for (;;) {
        uint64_t lap = queue_lap(q, h);
        struct queue_slot *s = queue_slot(q, h);
        /*
         * seq_cst: acquires the item from queue.c:queue_try_put's stamp
         * store; seq_cst as W4 of the proof, pairing with that store as
         * K1 when this call re-checks before sleeping.
         */
        uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_seq_cst);
        if (stamp == lap + 1) {
            /* relaxed: the CAS only hands out the position. */
            if (atomic_compare_exchange_weak_explicit(
                    &q->head, &h, queue_next(q, h), memory_order_relaxed,
                    memory_order_relaxed)) {
                *item = s->item;
                /*
                 * seq_cst: releases the slot (and our read of the item)
                 * to queue.c:queue_try_put's stamp load; K1 of the proof
                 * before queue_wake's load K2.
                 */
                atomic_store_explicit(&s->stamp, lap + q->one_lap,
                                      memory_order_seq_cst);
                queue_wake(&q->putters);
                return 0;
            }
        } else if ((int64_t)(stamp - (lap + 1)) < 0) {
            /*
             * Nothing published at the head.  Stamps only grow, so no get
             * has taken position h and h is the current head.  seq_cst:
             * the tail read after the stamp, in S; W4 for ws_queue_close's
             * mark.
             */
            uint64_t t = atomic_load_explicit(&q->tail, memory_order_seq_cst);
            if ((t & ~q->mark) == h)
                return t & q->mark ? EPIPE : EAGAIN;
            return EBUSY;
        } else {
            /* Another get took this position: our head is stale. */
            h = atomic_load_explicit(&q->head, memory_order_relaxed);
        }
    }
}

static int
queue_try_put_fn(ws_queue *q, void *arg)
{
    return queue_try_put(q, arg);
}

static int
queue_try_get_fn(ws_queue *q, void *arg)
{
    return queue_try_get(q, arg);
}

static double
queue_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * A wake reaches one sleeper, and that sleeper may find the slot it needs
 * still claimed by a thread that has not finished (EBUSY) and sleep again,
 * while the item (or room) the wake announced sits in the next slot.  So a
 * sleeper that succeeds passes the wake on when more remains for its side:
 * each announced item or room is then taken or announced again.
 */
static void
queue_pass_on(ws_queue *q, struct queue_sleep *s)
{
    size_t n = ws_queue_size(q);
    if (s == &q->getters ? n > 0 : n < q->capacity)
        queue_wake(s);
}

/*
 * The slow path of put and get, after an attempt answered r (EAGAIN or
 * EBUSY): spin briefly, as the other side is probably running and about to
 * make room or an item, then sleep on s until try succeeds, the queue is
 * closed or the time runs out.
 */
static WS_NOINLINE int
queue_wait(ws_queue *q, struct queue_sleep *s, queue_try_fn try, void *arg,
           double timeout_s, int r)
{
    /* A poll spins only to let a claimed slot be finished. */
    if (timeout_s == 0 && r == EAGAIN)
        return ETIMEDOUT;
    double start = queue_now();
    for (unsigned i = 0; i < QUEUE_SPIN_ROUNDS; i++) {
        for (unsigned k = 0; k < 16u << i; k++)
            ws_cpu_relax();
        r = try(q, arg);
        if (r == 0 || r == EPIPE)
            return r;
        if (timeout_s == 0 && r == EAGAIN)
            return ETIMEDOUT;
    }
    if (timeout_s == 0)
        return ETIMEDOUT;
    for (unsigned i = 0; i < QUEUE_YIELDS; i++) {
        sched_yield();
        r = try(q, arg);
        if (r == 0 || r == EPIPE)
            return r;
    }

    bool forever = timeout_s < 0 || isinf(timeout_s);
    double deadline = start + timeout_s;
    /* seq_cst: W1 of the proof; queue.c:queue_wake's load K2 sees it. */
    atomic_fetch_add_explicit(&s->waiters, 1, memory_order_seq_cst);
    for (;;) {
        /* seq_cst: W2; precedes W3, W4 and any waker's K4 that follows. */
        unsigned e = atomic_load_explicit(&s->event, memory_order_seq_cst);
        /* seq_cst: W3; a waker's K3 that reads 0 from here on pairs with
         * the re-check W4 below. */
        atomic_store_explicit(&s->pending, 0, memory_order_seq_cst);
        r = try(q, arg);
        if (r == 0 || r == EPIPE)
            break;
        double slice = WS__QUEUE_RECHECK_S;
        if (!forever) {
            double left = deadline - queue_now();
            if (left <= 0) {
                r = ETIMEDOUT;
                break;
            }
            if (left < slice)
                slice = left;
        }
        ws__futex_wait(&s->event, e, slice);
    }
    atomic_fetch_sub_explicit(&s->waiters, 1, memory_order_relaxed);
    if (r == 0)
        queue_pass_on(q, s);
    return r;
}

int
ws__queue_create_at(ws_queue **qp, size_t capacity, uint64_t laps)
{
    if (qp == NULL || capacity == 0 || capacity > WS__QUEUE_CAPACITY_MAX)
        return EINVAL;
    ws_queue *q = aligned_alloc(WS_CACHELINE, sizeof *q);
    if (q == NULL)
        return ENOMEM;
    memset(q, 0, sizeof *q);
    q->slots = calloc(capacity, sizeof q->slots[0]);
    if (q->slots == NULL) {
        free(q);
        return ENOMEM;
    }
    uint64_t mark = 1;
    while (mark <= capacity)
        mark <<= 1;
    q->mark = mark;
    q->one_lap = 2 * mark;
    q->capacity = capacity;
    q->magic = QUEUE_MAGIC;
    uint64_t start = laps * q->one_lap;
    if (start != 0) {
        for (size_t i = 0; i < capacity; i++)
            atomic_init(&q->slots[i].stamp, start);
    }
    atomic_init(&q->tail, start);
    atomic_init(&q->head, start);
    atomic_init(&q->getters.waiters, 0);
    atomic_init(&q->getters.event, 0);
    atomic_init(&q->getters.pending, 0);
    atomic_init(&q->putters.waiters, 0);
    atomic_init(&q->putters.event, 0);
    atomic_init(&q->putters.pending, 0);
    *qp = q;
    return 0;
}

int
ws_queue_create(ws_queue **q, size_t capacity)
{
    return ws__queue_create_at(q, capacity, 0);
}

int
ws_queue_put(ws_queue *q, void *item, double timeout_s)
{
    if (WS_UNLIKELY(q == NULL || isnan(timeout_s)))
        return EINVAL;
    WS_ASSERT(q->magic == QUEUE_MAGIC);
    int r = queue_try_put(q, item);
    if (WS_LIKELY(r == 0) || r == EPIPE)
        return r;
    return queue_wait(q, &q->putters, queue_try_put_fn, item, timeout_s, r);
}

int
ws_queue_get(ws_queue *q, void **item, double timeout_s)
{
    if (WS_UNLIKELY(q == NULL || item == NULL || isnan(timeout_s)))
        return EINVAL;
    WS_ASSERT(q->magic == QUEUE_MAGIC);
    int r = queue_try_get(q, item);
    if (WS_LIKELY(r == 0) || r == EPIPE)
        return r;
    return queue_wait(q, &q->getters, queue_try_get_fn, item, timeout_s, r);
}

int
ws_queue_close(ws_queue *q)
{
    if (q == NULL)
        return EINVAL;
    WS_ASSERT(q->magic == QUEUE_MAGIC);
    /*
     * seq_cst: the mark enters the tail's modification order after every
     * claimed position, and precedes the wakes in S, so a sleeper whose
     * re-check (W4, the tail load in queue_try_put or queue_try_get) missed
     * it reads the event before queue_wake_all's bump.
     */
    atomic_fetch_or_explicit(&q->tail, q->mark, memory_order_seq_cst);
    queue_wake_all(&q->getters);
    queue_wake_all(&q->putters);
    return 0;
}

size_t
ws_queue_size(const ws_queue *q)
{
    if (q == NULL)
        return 0;
    WS_ASSERT(q->magic == QUEUE_MAGIC);
    /*
     * A snapshot: the head read between two equal reads of the tail gives
     * both at one point of S.  seq_cst for that ordering; under heavy
     * traffic give up after a few tries and clamp.
     */
    uint64_t t, h;
    for (int tries = 0;; tries++) {
        t = atomic_load_explicit(&q->tail, memory_order_seq_cst);
        h = atomic_load_explicit(&q->head, memory_order_seq_cst);
        if (atomic_load_explicit(&q->tail, memory_order_seq_cst) == t ||
            tries == 16)
            break;
    }
    t &= ~q->mark;
    uint64_t hi = h & (q->mark - 1), ti = t & (q->mark - 1);
    uint64_t hl = queue_lap(q, h), tl = queue_lap(q, t);
    if (tl == hl)
        return ti > hi ? (size_t)(ti - hi) : 0;
    if (tl == hl + q->one_lap) {
        uint64_t n = q->capacity - hi + ti;
        return n < q->capacity ? (size_t)n : q->capacity;
    }
    return (int64_t)(tl - hl) < 0 ? 0 : q->capacity;
}

int
ws_queue_destroy(ws_queue *q)
{
    if (q == NULL)
        return EINVAL;
    WS_ASSERT(q->magic == QUEUE_MAGIC);
    WS_ASSERT(atomic_load_explicit(&q->getters.waiters, memory_order_relaxed) ==
              0);
    WS_ASSERT(atomic_load_explicit(&q->putters.waiters, memory_order_relaxed) ==
              0);
    q->magic = 0;
    free(q->slots);
    free(q);
    return 0;
}

void
ws__queue_sleepers(const ws_queue *q, unsigned *getters, unsigned *putters)
{
    *getters = atomic_load_explicit(&q->getters.waiters, memory_order_relaxed);
    *putters = atomic_load_explicit(&q->putters.waiters, memory_order_relaxed);
}
