/*
 * Single-producer single-consumer ring of variable-length records in
 * shared memory, between two processes.  See ring.c for the algorithm.
 */
#ifndef WS_RING_H
#define WS_RING_H

#include "arch.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The shared part: counters and sleep flags only, never pointers; the
 * buffer lies elsewhere in the region.  The producer's line and the
 * consumer's line are apart so that neither side's stores invalidate the
 * other's hot line.
 */
struct ws__ring_shared {
    /* Written by the producer. */
    WS_ALIGNED _Atomic uint64_t head; /* bytes published, only grows */
    _Atomic uint32_t cons_sleep;      /* 1: the consumer sleeps (futex) */
    /* Written by the consumer. */
    WS_ALIGNED _Atomic uint64_t tail; /* bytes released, only grows */
    _Atomic uint32_t prod_sleep;      /* 1: the producer sleeps (futex) */
};

_Static_assert(sizeof(struct ws__ring_shared) == 2 * WS_CACHELINE,
               "ring counters take one cache line per side");

/* Every record starts with this header, 16-byte aligned. */
struct ws__ring_rec {
    uint32_t len;  /* payload bytes that follow */
    uint32_t tag;  /* the caller's record type; WS__RING_PAD is reserved */
    uint64_t user; /* free for the caller */
};

#define WS__RING_ALIGN 16u
#define WS__RING_PAD UINT32_C(0xffffffff)

/* A record as the consumer sees it, header fields copied once. */
struct ws__ring_msg {
    void *payload;
    uint32_t len;
    uint32_t tag;
    uint64_t user;
};

/* One end of a ring, in the private memory of the process that uses it. */
struct ws__ring_end {
    struct ws__ring_shared *sh;
    unsigned char *data;
    uint64_t cap;   /* buffer bytes, a power of two */
    uint64_t pos;   /* producer: next record; consumer: next to read */
    uint64_t limit; /* producer: last tail seen; consumer: last head seen */
    uint64_t next;  /* consumer: pos after the record peeked, if any */
    uint64_t shown; /* producer: head published; consumer: tail */
    uint64_t batch; /* publish once this many bytes are pending */
    uint32_t rlen;  /* producer: payload bytes reserved, 0: none */
    unsigned spin;  /* polls before a wait sleeps */
};

/* Bytes of buffer needed for cap (rounded up to a power of two >= 256). */
uint64_t ws__ring_cap(uint64_t min_bytes);
/* Largest payload a ring of cap bytes takes in one record. */
uint32_t ws__ring_max_payload(uint64_t cap);
/* Bytes a record of len payload bytes occupies (header and padding). */
uint64_t ws__ring_rec_size(uint32_t len);

/* Zeroes the shared counters; before either end uses them. */
void ws__ring_init_shared(struct ws__ring_shared *sh);
void ws__ring_end_init(struct ws__ring_end *e, struct ws__ring_shared *sh,
                       void *data, uint64_t cap, unsigned spin);
/*
 * Publishes head (producer) or tail (consumer) only once batch bytes of
 * records are pending, instead of after every record; notify,
 * notify_space and the waits publish what is pending.  0 (the default)
 * publishes every record.  Small records between busy processes go
 * several times faster in batches of a few KiB.
 */
void ws__ring_set_batch(struct ws__ring_end *e, uint64_t batch);

/*
 * Producer.  reserve: room for a record of len payload bytes; *payload
 * points to it.  0, EAGAIN (no room now), EMSGSIZE (never fits) or
 * EPROTO (the consumer's tail is impossible).  Never blocks.
 */
int ws__ring_reserve(struct ws__ring_end *p, uint32_t len, void **payload);
/* Commits the reserved record: publishes it, or queues it (batch). */
void ws__ring_commit(struct ws__ring_end *p, uint32_t tag, uint64_t user);
/* Publishes queued records and wakes the consumer if it sleeps; call
 * after a batch of commits. */
void ws__ring_notify(struct ws__ring_end *p);
/*
 * Waits until a record of len bytes would fit: polls, then sleeps for at
 * most timeout_s (negative: no limit).  0, ETIMEDOUT, EMSGSIZE or EPROTO.
 */
int ws__ring_wait_space(struct ws__ring_end *p, uint32_t len, double timeout_s);

/*
 * Consumer.  peek: the next record, validated against the ring (the
 * producer is not trusted).  0, EAGAIN (empty) or EPROTO (a header or
 * counter the producer could not have written honestly).  The record
 * stays in the ring until ws__ring_release.
 */
int ws__ring_peek(struct ws__ring_end *c, struct ws__ring_msg *m);
/* Frees the record peeked last (the room is published per batch). */
void ws__ring_release(struct ws__ring_end *c);
/* Publishes freed room and wakes the producer if it sleeps; call after a
 * batch of releases. */
void ws__ring_notify_space(struct ws__ring_end *c);
/* Nonzero if a record is published and not yet released; never blocks. */
int ws__ring_readable(struct ws__ring_end *c);
/*
 * Waits until a record is published: polls, then sleeps for at most
 * timeout_s (negative: no limit).  0 or ETIMEDOUT.
 */
int ws__ring_wait_data(struct ws__ring_end *c, double timeout_s);

/*
 * Where the payload of the next record of len bytes will be, for a
 * consumer that has read everything published: what a producer writes
 * into a reserved record before committing it.
 */
void *ws__ring_next_payload(const struct ws__ring_end *c, uint32_t len);

#endif /* WS_RING_H */
