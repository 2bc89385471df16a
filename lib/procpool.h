/*
 * Multi-process pools: worker processes forked by a fork server, fed
 * through shared-memory rings.  Internal calls for tests and benchmarks.
 */
#ifndef WS_PROCPOOL_H
#define WS_PROCPOOL_H

#include <wsched.h>

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

/* Most worker processes one pool may have. */
#define WS__PROCPOOL_MAX 1024u

/* Number of worker slots of pp. */
unsigned ws__procpool_size(const ws_procpool *pp);
/* Pid of the worker in slot i, or -1 if the slot has none right now. */
pid_t ws__procpool_worker_pid(const ws_procpool *pp, unsigned i);
/* Pid of the fork server, or -1. */
pid_t ws__procpool_server_pid(const ws_procpool *pp);
/* Chunks taken back from workers that had not started them, so far. */
uint64_t ws__procpool_stolen(const ws_procpool *pp);
/* The head counter of slot i's result ring, in shared memory: tests
 * scribble on it to play a worker that corrupts its channel. */
_Atomic uint64_t *ws__procpool_result_head(const ws_procpool *pp, unsigned i);

#endif /* WS_PROCPOOL_H */
