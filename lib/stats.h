/* Per-worker counters: the WSCHED_STATS report and ws_pool_stats. */
#ifndef WS_STATS_H
#define WS_STATS_H

#include <wsched.h>

#include "arch.h"

/* Prints one line per worker to stderr. */
void ws__stats_report(const ws_pool *pool) WS_HIDDEN;

#endif /* WS_STATS_H */
