/*
 * Single-producer single-consumer ring of variable-length records, shared
 * between two processes.
 *
 * Algorithm: the classic bounded SPSC ring (Lamport; the head and tail
 * discipline of ck_ring's ck_ring_enqueue_spsc and Linux's kfifo) over a
 * byte buffer.  head and tail count bytes and only grow (64 bits do not
 * wrap), the buffer index is the count masked by the power-of-two capacity.
 * Each record is a 16-byte header (payload length, caller's tag, a free
 * word) and its payload, padded to 16 bytes.  A record never wraps: when
 * it does not fit before the end of the buffer, the producer fills the
 * rest with a pad record and starts again at offset 0.
 *
 * Orders: the producer writes a record, then stores head with release;
 * the consumer loads head with acquire before it reads the record.  The
 * consumer reads the record, then stores tail with release; the producer
 * loads tail with acquire before it writes over released bytes.  Each side
 * caches the other's counter and reloads it only when the cached value
 * says the ring is empty or full.  Optionally (ws__ring_set_batch) each
 * side publishes its counter only every few KiB, and at every notify and
 * wait: a consumer that keeps up with its producer then does not pull the
 * head line across for every record, which matters for small records.
 *
 * Sleeping: a side that finds nothing to do polls for a while, then sleeps
 * on a futex word of the other side's line (cons_sleep or prod_sleep).
 * The sleeper exchanges the word to 1 and rechecks the counter; the waker,
 * after publishing, exchanges it to 0 and wakes only if it was 1.  The two
 * exchanges are read-modify-writes of one word, so one of them reads the
 * other: either the waker sees 1 and wakes, or the sleeper's exchange
 * (acquire) reads the waker's (release) and its recheck sees what the
 * waker published.  No wake-up is lost, and a side that never sleeps costs
 * the other side no system call.  Callers bound every sleep with a
 * timeout anyway: the other side is a process that may die.
 *
 * Trust: either side may be a process that scribbles on shared memory.
 * Nothing read from the ring is used before it is copied once and
 * checked: a counter that moves backwards or beyond the capacity, or a
 * header that overruns the published bytes or the end of the buffer, is
 * EPROTO and the caller treats the other side as failed.
 *
 * Who calls what: one producer process calls reserve, commit, notify and
 * wait_space; one consumer process calls peek, release, notify_space and
 * wait_data.  Each end is used by one thread at a time.  Progress: every
 * operation is wait-free except the waits, which block.
 */
#include <config.h>

#include "ring.h"

#include "shm.h"

#include <errno.h>
#include <string.h>

#define REC_HDR ((uint64_t)sizeof(struct ws__ring_rec))

_Static_assert(sizeof(struct ws__ring_rec) == WS__RING_ALIGN,
               "a record header is one alignment unit");

uint64_t
ws__ring_cap(uint64_t min_bytes)
{
    uint64_t cap = 256;
    while (cap < min_bytes && cap < (UINT64_C(1) << 40))
        cap <<= 1;
    return cap;
}

uint32_t
ws__ring_max_payload(uint64_t cap)
{
    /*
     * A record of at most half the buffer always fits in an empty ring,
     * whatever the offset: the pad before it is shorter than the record.
     */
    uint64_t m = cap / 2 - REC_HDR;
    return m > UINT32_MAX - WS__RING_ALIGN ? UINT32_MAX - WS__RING_ALIGN
                                           : (uint32_t)m;
}

uint64_t
ws__ring_rec_size(uint32_t len)
{
    return REC_HDR + (((uint64_t)len + WS__RING_ALIGN - 1) &
                      ~(uint64_t)(WS__RING_ALIGN - 1));
}

void
ws__ring_init_shared(struct ws__ring_shared *sh)
{
    atomic_store_explicit(&sh->head, 0, memory_order_relaxed);
    atomic_store_explicit(&sh->tail, 0, memory_order_relaxed);
    atomic_store_explicit(&sh->cons_sleep, 0, memory_order_relaxed);
    atomic_store_explicit(&sh->prod_sleep, 0, memory_order_relaxed);
}

void
ws__ring_end_init(struct ws__ring_end *e, struct ws__ring_shared *sh,
                  void *data, uint64_t cap, unsigned spin)
{
    WS_ASSERT(cap >= 256 && (cap & (cap - 1)) == 0);
    memset(e, 0, sizeof *e);
    e->sh = sh;
    e->data = data;
    e->cap = cap;
    e->spin = spin;
}

void
ws__ring_set_batch(struct ws__ring_end *e, uint64_t batch)
{
    e->batch = batch < e->cap / 4 ? batch : e->cap / 4;
}

static void
ring_publish_head(struct ws__ring_end *p)
{
    p->shown = p->pos;
    /*
     * Release: publishes the records (and pads) below pos; pairs with
     * the acquire load of head in ring.c:ws__ring_peek.
     */
    atomic_store_explicit(&p->sh->head, p->pos, memory_order_release);
}

static void
ring_publish_tail(struct ws__ring_end *c)
{
    c->shown = c->pos;
    /*
     * Release: our reads of the records below pos are done before the
     * producer may write over them; pairs with the acquire load of tail
     * in ring.c:ring_room.
     */
    atomic_store_explicit(&c->sh->tail, c->pos, memory_order_release);
}

/* Producer. */

/*
 * Room for a record of total bytes at p->pos, after a pad of *pad bytes
 * if it would cross the end.  Reloads tail only when the cached one says
 * there is no room.
 */
static int
ring_room(struct ws__ring_end *p, uint64_t total, uint64_t *pad)
{
    uint64_t off = p->pos & (p->cap - 1);
    *pad = p->cap - off < total ? p->cap - off : 0;
    uint64_t end = p->pos + *pad + total;
    if (end - p->limit <= p->cap)
        return 0;
    /*
     * Acquire: pairs with the release store of tail in
     * ring.c:ws__ring_release, so the consumer is done reading the bytes
     * it released before they are written over.
     */
    uint64_t t = atomic_load_explicit(&p->sh->tail, memory_order_acquire);
    if (t < p->limit || t > p->pos || t % WS__RING_ALIGN != 0)
        return EPROTO;
    p->limit = t;
    return end - t <= p->cap ? 0 : EAGAIN;
}

int
ws__ring_reserve(struct ws__ring_end *p, uint32_t len, void **payload)
{
    if (len > ws__ring_max_payload(p->cap))
        return EMSGSIZE;
    uint64_t total = ws__ring_rec_size(len), pad;
    int err = ring_room(p, total, &pad);
    if (err != 0)
        return err;
    if (pad != 0) {
        struct ws__ring_rec r = {.len = (uint32_t)(pad - REC_HDR),
                                 .tag = WS__RING_PAD};
        memcpy(p->data + (p->pos & (p->cap - 1)), &r, sizeof r);
        p->pos += pad;
    }
    p->rlen = len;
    *payload = p->data + (p->pos & (p->cap - 1)) + REC_HDR;
    return 0;
}

void
ws__ring_commit(struct ws__ring_end *p, uint32_t tag, uint64_t user)
{
    struct ws__ring_rec r = {.len = p->rlen, .tag = tag, .user = user};
    memcpy(p->data + (p->pos & (p->cap - 1)), &r, sizeof r);
    p->pos += ws__ring_rec_size(p->rlen);
    p->rlen = 0;
    if (p->pos - p->shown > p->batch)
        ring_publish_head(p);
}

void
ws__ring_notify(struct ws__ring_end *p)
{
    if (p->pos != p->shown)
        ring_publish_head(p);
    /*
     * Acq_rel read-modify-write of cons_sleep: pairs with the exchange in
     * ring.c:ws__ring_wait_data.  If the consumer's exchange came first we
     * read 1 and wake it; otherwise its exchange reads ours and, through
     * this release, sees the head we stored before.
     */
    if (atomic_exchange_explicit(&p->sh->cons_sleep, 0, memory_order_acq_rel) !=
        0)
        ws__shm_wake(&p->sh->cons_sleep, 1);
}

int
ws__ring_wait_space(struct ws__ring_end *p, uint32_t len, double timeout_s)
{
    if (len > ws__ring_max_payload(p->cap))
        return EMSGSIZE;
    uint64_t total = ws__ring_rec_size(len), pad;
    for (unsigned i = 0; i <= p->spin; i++) {
        int err = ring_room(p, total, &pad);
        if (err != EAGAIN)
            return err;
        ws_cpu_relax();
    }
    uint64_t deadline = timeout_s < 0
                            ? UINT64_MAX
                            : ws__shm_now_ns() + (uint64_t)(timeout_s * 1e9);
    for (;;) {
        /* The consumer may be asleep with records we have not told it of. */
        ws__ring_notify(p);
        /*
         * Acq_rel: pairs with the exchange in ring.c:ws__ring_notify_space,
         * as in ws__ring_wait_data; ring_room's acquire load of tail then
         * sees any release that exchange published.
         */
        atomic_exchange_explicit(&p->sh->prod_sleep, 1, memory_order_acq_rel);
        int err = ring_room(p, total, &pad);
        if (err != EAGAIN) {
            atomic_store_explicit(&p->sh->prod_sleep, 0, memory_order_relaxed);
            return err;
        }
        uint64_t now = ws__shm_now_ns();
        if (now >= deadline) {
            atomic_store_explicit(&p->sh->prod_sleep, 0, memory_order_relaxed);
            return ETIMEDOUT;
        }
        double left =
            deadline == UINT64_MAX ? -1.0 : (double)(deadline - now) * 1e-9;
        ws__shm_wait(&p->sh->prod_sleep, 1, left);
    }
}

/* Consumer. */

int
ws__ring_peek(struct ws__ring_end *c, struct ws__ring_msg *m)
{
    for (;;) {
        uint64_t pos = c->pos;
        if (pos == c->limit) {
            /*
             * Acquire: pairs with the release store of head in
             * ring.c:ws__ring_commit; the records below it are complete.
             */
            uint64_t h =
                atomic_load_explicit(&c->sh->head, memory_order_acquire);
            if (h == pos)
                return EAGAIN;
            if (h < pos || h - pos > c->cap || h % WS__RING_ALIGN != 0)
                return EPROTO;
            c->limit = h;
        }
        uint64_t avail = c->limit - pos;
        uint64_t off = pos & (c->cap - 1);
        struct ws__ring_rec r;
        memcpy(&r, c->data + off, sizeof r);
        uint64_t total = ws__ring_rec_size(r.len);
        if (total > avail || total > c->cap - off)
            return EPROTO;
        if (r.tag == WS__RING_PAD) {
            if (total != c->cap - off)
                return EPROTO;
            c->pos = pos + total;
            continue;
        }
        m->payload = c->data + off + REC_HDR;
        m->len = r.len;
        m->tag = r.tag;
        m->user = r.user;
        c->next = pos + total;
        return 0;
    }
}

void
ws__ring_release(struct ws__ring_end *c)
{
    WS_ASSERT(c->next > c->pos);
    c->pos = c->next;
    if (c->pos - c->shown > c->batch)
        ring_publish_tail(c);
}

void
ws__ring_notify_space(struct ws__ring_end *c)
{
    if (c->pos != c->shown)
        ring_publish_tail(c);
    /*
     * Acq_rel read-modify-write of prod_sleep: pairs with the exchange in
     * ring.c:ws__ring_wait_space (the argument of ws__ring_notify).
     */
    if (atomic_exchange_explicit(&c->sh->prod_sleep, 0, memory_order_acq_rel) !=
        0)
        ws__shm_wake(&c->sh->prod_sleep, 1);
}

int
ws__ring_readable(struct ws__ring_end *c)
{
    if (c->pos != c->limit)
        return 1;
    /* Acquire: pairs with ring.c:ws__ring_commit, as in ws__ring_peek. */
    return atomic_load_explicit(&c->sh->head, memory_order_acquire) != c->pos;
}

int
ws__ring_wait_data(struct ws__ring_end *c, double timeout_s)
{
    for (unsigned i = 0; i <= c->spin; i++) {
        if (ws__ring_readable(c))
            return 0;
        ws_cpu_relax();
    }
    uint64_t deadline = timeout_s < 0
                            ? UINT64_MAX
                            : ws__shm_now_ns() + (uint64_t)(timeout_s * 1e9);
    for (;;) {
        /* The producer may be asleep waiting for the room we released. */
        ws__ring_notify_space(c);
        /*
         * Acq_rel read-modify-write of cons_sleep: pairs with the exchange
         * in ring.c:ws__ring_notify (see there).
         */
        atomic_exchange_explicit(&c->sh->cons_sleep, 1, memory_order_acq_rel);
        if (ws__ring_readable(c)) {
            atomic_store_explicit(&c->sh->cons_sleep, 0, memory_order_relaxed);
            return 0;
        }
        uint64_t now = ws__shm_now_ns();
        if (now >= deadline) {
            atomic_store_explicit(&c->sh->cons_sleep, 0, memory_order_relaxed);
            return ETIMEDOUT;
        }
        double left =
            deadline == UINT64_MAX ? -1.0 : (double)(deadline - now) * 1e-9;
        ws__shm_wait(&c->sh->cons_sleep, 1, left);
    }
}

void *
ws__ring_next_payload(const struct ws__ring_end *c, uint32_t len)
{
    uint64_t off = c->pos & (c->cap - 1);
    if (c->cap - off < ws__ring_rec_size(len))
        off = 0;
    return c->data + off + REC_HDR;
}
