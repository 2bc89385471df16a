/*
 * Work-stealing deque: Chase-Lev with a private part.
 *
 * Algorithm.  Chase and Lev, "Dynamic circular work-stealing deque" (SPAA
 * 2005), with the C11 memory orders of Lê, Pop, Cohen and Zappa Nardelli,
 * "Correct and efficient work-stealing for weak memory models" (PPoPP 2013),
 * and the private/shared split of Lace (van Dijk and van de Pol, 2014), which
 * spares the owner the StoreLoad fence on the common path.
 *
 * Indices are signed 64-bit and only grow (no reset, so no ABA and no
 * underflow on an empty deque); a slot is slots[index & mask].  The tasks
 * live in [top, bottom):
 *
 *     top            split                bottom
 *      | shared tasks  |   private tasks    |
 *
 * - [split, bottom) is private: only the owner reads or writes it, so push
 *   and pop there are plain index updates and relaxed slot stores, with no
 *   fence and no read-modify-write.
 * - [top, split) is shared: thieves take from top with a CAS; the owner
 *   takes from split exactly as Chase-Lev's take() takes from bottom (split
 *   plays the role of Chase-Lev's bottom for everyone but the owner).
 * - share() moves split up, publishing private tasks with a release store,
 *   as Chase-Lev's push publishes one.  The owner shares when a thief has
 *   asked (req), so tasks become stealable as soon as someone is idle.
 *
 * Invariants: top <= split + 1 transiently, top <= split otherwise;
 * split <= bottom; bottom - top <= capacity.  Each task is returned exactly
 * once: a shared task's index passes top by exactly one successful CAS, or
 * is taken by the owner below the top it read after its fence.
 *
 * Growth: when the array is full the owner copies [top, bottom) into an
 * array twice as large and publishes it with a release store.  Old arrays
 * stay allocated until the deque is destroyed, so a thief that loaded an old
 * array reads valid (unchanged) slots; its CAS on top decides whether the
 * task it read is its own.  The published errata are handled: push writes
 * into the array it just grew (the owner keeps its own pointer); steal loads
 * the array with acquire, after split; a thief reads the slot before its
 * CAS; indices are signed and never masked except to address a slot.
 *
 * Who calls what: push, pop, share and bottom only on the owner's thread;
 * steal and stealable on any thread.  Steal is lock-free (a failed CAS means
 * another thief or the owner made progress); owner operations are wait-free
 * except growth, which allocates.
 *
 * ThreadSanitizer does not model standalone fences: every store of split is
 * a release store (a plain store on x86, the same code as the paper's
 * release fence plus relaxed store) so the happens-before edges that carry
 * task arguments are visible to it without the fences.
 */
#include "deque.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static ws__deque_buf *
buf_new(int64_t capacity)
{
    ws__deque_buf *a =
        calloc(1, sizeof *a + (size_t)capacity * sizeof(ws__slot));
    if (a != NULL)
        a->mask = capacity - 1;
    return a;
}

/* Refreshes the owner's fast-path fields after obuf, otop or share_all. */
static void
owner_cache(ws__deque *d)
{
    d->oslots = d->obuf->slots;
    d->omask = d->obuf->mask;
    d->olimit = d->share_all ? INT64_MIN : d->otop + d->omask + 1;
}

void
ws__deque_share_all(ws__deque *d, bool on)
{
    d->share_all = on;
    owner_cache(d);
}

int
ws__deque_init(ws__deque *d, int64_t capacity)
{
    if (capacity < 2 || (capacity & (capacity - 1)) != 0)
        return EINVAL;
    ws__deque_buf *a = buf_new(capacity);
    if (a == NULL)
        return ENOMEM;
    atomic_init(&d->top, 0);
    atomic_init(&d->split, 0);
    atomic_init(&d->buf, a);
    atomic_init(&d->req, 0);
    d->bottom = 0;
    d->osplit = 0;
    d->otop = 0;
    d->obuf = a;
    d->share_all = 0;
    owner_cache(d);
    return 0;
}

void
ws__deque_destroy(ws__deque *d)
{
    ws__deque_buf *a = d->obuf;
    while (a != NULL) {
        ws__deque_buf *prev = a->prev;
        free(a);
        a = prev;
    }
    d->obuf = NULL;
}

static void
slot_write(ws__deque_buf *a, int64_t i, const ws__task *t)
{
    ws__slot *s = &a->slots[i & a->mask];
    atomic_store_explicit(&s->fn, (uintptr_t)t->fn, memory_order_relaxed);
    atomic_store_explicit(&s->arg, (uintptr_t)t->arg, memory_order_relaxed);
    atomic_store_explicit(&s->grp, t->grp, memory_order_relaxed);
    atomic_store_explicit(&s->aux, t->aux, memory_order_relaxed);
}

static void
slot_read(ws__deque_buf *a, int64_t i, ws__task *t)
{
    ws__slot *s = &a->slots[i & a->mask];
    t->fn = (void (*)(void *))atomic_load_explicit(&s->fn,
                                                   memory_order_relaxed);
    t->arg = (void *)atomic_load_explicit(&s->arg, memory_order_relaxed);
    t->grp = atomic_load_explicit(&s->grp, memory_order_relaxed);
    t->aux = atomic_load_explicit(&s->aux, memory_order_relaxed);
}

/* Owner: copies [top, bottom) into an array twice the size. */
static bool
grow(ws__deque *d, int64_t top)
{
    ws__deque_buf *old = d->obuf;
    int64_t cap = (old->mask + 1) * 2;
    ws__deque_buf *a = buf_new(cap);

    if (a == NULL)
        return false;
    for (int64_t i = top; i < d->bottom; i++) {
        ws__task t;
        slot_read(old, i, &t);
        slot_write(a, i, &t);
    }
    a->prev = old;
    d->obuf = a;
    owner_cache(d);
    /*
     * Release: publishes the copied slots to a thief that loads buf with
     * acquire in deque.c:ws__deque_steal after reading a split that covers
     * them.
     */
    atomic_store_explicit(&d->buf, a, memory_order_release);
    return true;
}

bool
ws__deque_push_slow(ws__deque *d, const ws__task *t)
{
    int64_t b = d->bottom;

    if (b - d->otop > d->obuf->mask) {
        /*
         * Acquire: a thief read slot (top & mask) before its CAS on top in
         * deque.c:ws__deque_steal; seeing that CAS's result orders its read
         * before our overwrite of the slot.
         */
        d->otop = atomic_load_explicit(&d->top, memory_order_acquire);
        owner_cache(d);
        if (b - d->otop > d->obuf->mask && !grow(d, d->otop))
            return false;
    }
    slot_write(d->obuf, b, t);
    d->bottom = b + 1;
    if (d->share_all) {
        d->osplit = b + 1;
        /*
         * Release: publishes the slot just written; pairs with the acquire
         * load of split in deque.c:ws__deque_steal.
         */
        atomic_store_explicit(&d->split, b + 1, memory_order_release);
    }
    return true;
}

/* Owner: shares the private tasks below s (all when s == bottom). */
static bool
share_below(ws__deque *d, int64_t s)
{
    atomic_store_explicit(&d->req, 0, memory_order_relaxed);
    if (d->bottom == d->osplit)
        return false;
    d->osplit = s;
    /*
     * Release: publishes the slots of the newly shared tasks (and what
     * their arguments point to); pairs with the acquire load of split in
     * deque.c:ws__deque_steal.
     */
    atomic_store_explicit(&d->split, s, memory_order_release);
    return true;
}

bool
ws__deque_share_every(ws__deque *d)
{
    return share_below(d, d->bottom);
}

bool
ws__deque_share(ws__deque *d)
{
    /* The older half of the private tasks, at least one. */
    return share_below(d, d->osplit + (d->bottom - d->osplit + 1) / 2);
}

/*
 * Owner: the private part is empty, so take the newest shared task, as
 * Chase-Lev's take() does.
 */
bool
ws__deque_pop_shared(ws__deque *d, ws__task *t)
{
    int64_t s = d->osplit - 1;

    if (s < d->otop)
        return false; /* top only grows: nothing shared is left */
    /*
     * Release store, then a seq_cst fence, then a load of top: the
     * Dekker-style handshake with deque.c:ws__deque_steal, whose load of
     * top, seq_cst fence and load of split mirror it.  Either the thief
     * sees the lowered split and backs off, or we see its raised top.  The
     * release order carries nothing here; it keeps every store of split a
     * release for ThreadSanitizer (see the opening comment).
     */
    atomic_store_explicit(&d->split, s, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t top = atomic_load_explicit(&d->top, memory_order_relaxed);

    if (top < s) {
        /* More than one shared task: the newest is ours without a CAS. */
        slot_read(d->obuf, s, t);
        d->osplit = d->bottom = s;
        return true;
    }
    bool ok = false;
    if (top == s) {
        /* The last shared task: race the thieves for it on top. */
        slot_read(d->obuf, s, t);
        /*
         * seq_cst: a total order with the thieves' CAS on top in
         * deque.c:ws__deque_steal; exactly one of us moves top past s.
         */
        ok = atomic_compare_exchange_strong_explicit(
            &d->top, &top, s + 1, memory_order_seq_cst,
            memory_order_relaxed);
    }
    /* Empty now: top == s + 1 whoever won.  Restore split = bottom. */
    atomic_store_explicit(&d->split, s + 1, memory_order_release);
    d->osplit = d->bottom = s + 1;
    d->otop = s + 1;
    owner_cache(d);
    return ok;
}

int
ws__deque_steal(ws__deque *d, ws__task *t)
{
    /*
     * Acquire: pairs with the seq_cst CAS of other thieves and of the
     * owner (deque.c:ws__deque_pop_shared), so slot reads are not ordered
     * before the steals that freed the index.
     */
    int64_t top = atomic_load_explicit(&d->top, memory_order_acquire);
    /* seq_cst fence: pairs with the fence in deque.c:ws__deque_pop_shared. */
    atomic_thread_fence(memory_order_seq_cst);
    /*
     * Acquire: pairs with the release stores of split in
     * deque.c:ws__deque_share, ws__deque_push_slow and
     * ws__deque_pop_shared; makes the shared slots and the task arguments
     * they point to visible.
     */
    int64_t split = atomic_load_explicit(&d->split, memory_order_acquire);

    if (top >= split) {
        if (atomic_load_explicit(&d->req, memory_order_relaxed) == 0)
            atomic_store_explicit(&d->req, 1, memory_order_relaxed);
        return WS_STEAL_EMPTY;
    }
    /*
     * Acquire: pairs with the release store in deque.c:grow, so the
     * array we read holds the slot at top (loaded after split: see the
     * opening comment).
     */
    ws__deque_buf *a = atomic_load_explicit(&d->buf, memory_order_acquire);
    slot_read(a, top, t); /* before the CAS: afterwards the slot may be reused */
    /*
     * seq_cst: a total order with the other thieves' CAS and the owner's
     * in deque.c:ws__deque_pop_shared.
     */
    if (!atomic_compare_exchange_strong_explicit(&d->top, &top, top + 1,
                                                 memory_order_seq_cst,
                                                 memory_order_relaxed))
        return WS_STEAL_ABORT;
    return WS_STEAL_OK;
}

bool
ws__deque_stealable(ws__deque *d)
{
    int64_t top = atomic_load_explicit(&d->top, memory_order_relaxed);
    int64_t split = atomic_load_explicit(&d->split, memory_order_relaxed);
    return top < split;
}
