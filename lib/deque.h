/*
 * Work-stealing deque of task records: Chase-Lev with a private part
 * (see deque.c for the algorithm and the memory orders).
 *
 * The owner pushes and pops at the bottom; thieves steal from the top.
 */
#ifndef WS_DEQUE_H
#define WS_DEQUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch.h"

/* A task record, stored inline in the deque's array. */
typedef struct ws__task {
    void (*fn)(void *);
    void *arg;
    uintptr_t grp; /* group pointer | tag bits, or 0 */
    uintptr_t aux; /* read only when a tag in grp says so */
} ws__task;

/*
 * One array slot: each word is read and written with relaxed atomics.
 * Padded to a power of two so that addressing a slot is a shift.
 */
typedef struct ws__slot {
    atomic_uintptr_t fn, arg, grp, aux;
} ws__slot;

typedef struct ws__deque_buf {
    int64_t mask;               /* capacity - 1; capacity a power of two */
    struct ws__deque_buf *prev; /* retired arrays, freed with the deque */
    ws__slot slots[];
} ws__deque_buf;

typedef struct ws__deque {
    /* Written by thieves (CAS) and, for the last shared task, the owner. */
    WS_ALIGNED _Atomic int64_t top;
    /* Written by the owner, read by thieves. */
    WS_ALIGNED _Atomic int64_t split;
    _Atomic(ws__deque_buf *) buf;
    /* Set by thieves that found nothing shared, cleared by the owner. */
    WS_ALIGNED atomic_int req;
    /* Owner only. */
    WS_ALIGNED int64_t bottom; /* next free index */
    int64_t osplit;            /* the owner's copy of split */
    int64_t olimit;            /* push takes the slow path from here */
    ws__slot *oslots;          /* obuf->slots */
    int64_t omask;             /* obuf->mask */
    int64_t otop;              /* a lower bound of top */
    ws__deque_buf *obuf;       /* the owner's copy of buf */
    int share_all;             /* share every push (tests) */
} ws__deque;

enum { WS_STEAL_OK = 0, WS_STEAL_EMPTY, WS_STEAL_ABORT };

/* init allocates the first array: 0 or ENOMEM.  capacity: a power of two. */
int  ws__deque_init(ws__deque *d, int64_t capacity);
void ws__deque_destroy(ws__deque *d);

/*
 * Owner: ws__deque_push (below) is false only when the array is full and
 * cannot grow (ENOMEM); ws__deque_pop (below) takes the newest task and is
 * false when the deque is empty.
 */
/* Owner: makes part of the private tasks stealable; true if it did. */
bool ws__deque_share(ws__deque *d);
/* Owner: makes every private task stealable; true if there was one. */
bool ws__deque_share_every(ws__deque *d);
/*
 * Owner: the tag word of the newest task, 0 when the deque is empty (a
 * thief may still take that task before the owner pops it).
 */
static inline uintptr_t
ws__deque_newest_grp(const ws__deque *d)
{
    if (d->bottom <= d->otop)
        return 0;
    return atomic_load_explicit(&d->oslots[(d->bottom - 1) & d->omask].grp,
                                memory_order_relaxed);
}
/* Owner: share every push at once, as a plain Chase-Lev deque (tests). */
void ws__deque_share_all(ws__deque *d, bool on);
/* Thief: WS_STEAL_OK with *t, WS_STEAL_EMPTY, or WS_STEAL_ABORT (lost race). */
int  ws__deque_steal(ws__deque *d, ws__task *t);
/* Anyone: whether a thief could find a task now (a hint). */
bool ws__deque_stealable(ws__deque *d);

/* Owner: the index the next push uses (for group bases). */
static inline int64_t
ws__deque_bottom(const ws__deque *d)
{
    return d->bottom;
}

/*
 * The owner's fast paths, inline so that spawn and sync pay no call for
 * them.  Private tasks [osplit, bottom) are touched by the owner alone:
 * plain indices, relaxed slot words, no fence.
 */
bool ws__deque_push_slow(ws__deque *d, const ws__task *t);
bool ws__deque_pop_shared(ws__deque *d, ws__task *t);

/* Owner: whether index b (== bottom) can be pushed without the slow path. */
static inline bool
ws__deque_fits(const ws__deque *d, int64_t b)
{
    return b < d->olimit;
}

/*
 * Owner: writes the task at index b == bottom, when ws__deque_fits.  The
 * aux word is left as it was: callers that need it use ws__deque_push_task.
 */
static inline void
ws__deque_put(ws__deque *d, int64_t b, void (*fn)(void *), void *arg,
              uintptr_t grp)
{
    ws__slot *s = &d->oslots[b & d->omask];
    atomic_store_explicit(&s->fn, (uintptr_t)fn, memory_order_relaxed);
    atomic_store_explicit(&s->arg, (uintptr_t)arg, memory_order_relaxed);
    atomic_store_explicit(&s->grp, grp, memory_order_relaxed);
    d->bottom = b + 1;
}

static inline bool
ws__deque_push(ws__deque *d, void (*fn)(void *), void *arg,
                    uintptr_t grp)
{
    int64_t b = d->bottom;

    if (WS_UNLIKELY(!ws__deque_fits(d, b))) {
        ws__task t = {fn, arg, grp, 0};
        return ws__deque_push_slow(d, &t);
    }
    ws__deque_put(d, b, fn, arg, grp);
    return true;
}

static inline bool
ws__deque_pop(ws__deque *d, ws__task *t)
{
    int64_t b = d->bottom;

    if (WS_LIKELY(b > d->osplit)) {
        ws__slot *s = &d->oslots[--b & d->omask];
        t->fn = (void (*)(void *))atomic_load_explicit(&s->fn,
                                                       memory_order_relaxed);
        t->arg = (void *)atomic_load_explicit(&s->arg, memory_order_relaxed);
        t->grp = atomic_load_explicit(&s->grp, memory_order_relaxed);
        t->aux = atomic_load_explicit(&s->aux, memory_order_relaxed);
        d->bottom = b;
        return true;
    }
    return ws__deque_pop_shared(d, t);
}

/* Owner: ws__deque_push with the aux word too. */
static inline bool
ws__deque_push_task(ws__deque *d, const ws__task *t)
{
    int64_t b = d->bottom;

    if (WS_UNLIKELY(!ws__deque_fits(d, b)))
        return ws__deque_push_slow(d, t);
    atomic_store_explicit(&d->oslots[b & d->omask].aux, t->aux,
                          memory_order_relaxed);
    ws__deque_put(d, b, t->fn, t->arg, t->grp);
    return true;
}

/* Owner: whether a thief asked for work since the last share. */
static inline bool
ws__deque_requested(ws__deque *d)
{
    return atomic_load_explicit(&d->req, memory_order_relaxed) != 0;
}

#endif /* WS_DEQUE_H */
