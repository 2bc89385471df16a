/*
 * Bounded MPMC queue: limits and hooks for the module test.  The public
 * calls are declared in wsched.h.
 */
#ifndef WS_QUEUE_H
#define WS_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <wsched.h>

/* The largest capacity ws_queue_create accepts; larger gets EINVAL. */
#if SIZE_MAX > 0xffffffffu
#define WS__QUEUE_CAPACITY_MAX ((size_t)1 << 32)
#else
#define WS__QUEUE_CAPACITY_MAX ((size_t)1 << 26)
#endif

/* A blocked put or get re-checks at least this often (seconds). */
#define WS__QUEUE_RECHECK_S 0.1

/*
 * As ws_queue_create, with head and tail starting at the given lap count
 * instead of 0, so that a test reaches the 64-bit wrap of the positions.
 */
int ws__queue_create_at(ws_queue **q, size_t capacity, uint64_t laps);

/*
 * Threads now registered to sleep in get (waiting for an item) and in put
 * (waiting for room).  A registered thread has found the queue empty or
 * full and sleeps unless a change reaches it first.
 */
void ws__queue_sleepers(const ws_queue *q, unsigned *getters,
                        unsigned *putters);

#endif /* WS_QUEUE_H */
