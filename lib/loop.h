/*
 * Parallel loops, the order-preserving map and reduce (threads).
 *
 * The public calls live in wsched.h.  What is shared here is the check of a
 * ws_map, so that the thread and the process versions of the map reject the
 * same bad input the same way.
 */
#ifndef WS_LOOP_H
#define WS_LOOP_H

#include <wsched.h>

/*
 * 0 when m describes a map both versions can run, else EINVAL: m or m->fn
 * NULL, a zero in_size or out_size, in or out NULL while n > 0, or
 * n * in_size, n * out_size or (with status) n * sizeof(int) overflowing
 * size_t.  Fields only the process version reads (ctx_size, timeout_s) are
 * left to it.
 */
int ws__loop_map_check(const ws_map *m);

#endif /* WS_LOOP_H */
