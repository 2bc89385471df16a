/*
 * wsched: run work in parallel on every core of a machine.
 *
 * Fork-join tasks on work-stealing worker threads, an executor with
 * futures, parallel loops and an order-preserving map, bounded MPMC
 * queues, and a multi-process mode with crash isolation.
 *
 * Conventions: every call that can fail returns 0 or a positive errno value
 * (never -1, never errno).  Handles are opaque.  Timeouts are relative
 * seconds: WS_FOREVER (any negative value) waits forever, 0 polls.  Bad
 * input gets EINVAL and changes nothing.  The man pages are the contract.
 */
#ifndef WSCHED_H
#define WSCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define WS_API __attribute__((visibility("default")))
#else
#define WS_API
#endif

#define WS_VERSION_MAJOR 0
#define WS_VERSION_MINOR 1
#define WS_VERSION_PATCH 0

#define WS_FOREVER (-1.0)

/* ------------------------------------------------------------------ */
/* Version                                                            */
/* ------------------------------------------------------------------ */

/* (major << 16) | (minor << 8) | patch of the library in use. */
WS_API unsigned ws_version(void);

/* ------------------------------------------------------------------ */
/* Pools: one worker thread per core, pinned with hwloc               */
/* ------------------------------------------------------------------ */

enum { WS_BIND_CORE = 0, WS_BIND_PU, WS_BIND_NONE };

typedef struct ws_pool ws_pool;

typedef struct ws_pool_opts {
    unsigned    workers; /* 0: one per core allowed to the process */
    int         bind;    /* WS_BIND_CORE (default), WS_BIND_PU, WS_BIND_NONE */
    const char *cpus;    /* NULL: all allowed; else a list such as "0-3,8" */
} ws_pool_opts;          /* zero-initialised = defaults */

WS_API int      ws_pool_create(ws_pool **pool, const ws_pool_opts *opts);
WS_API int      ws_pool_destroy(ws_pool *pool);
WS_API unsigned ws_pool_size(const ws_pool *pool);
/* 0..size-1 on a worker thread of any pool, -1 elsewhere. */
WS_API int      ws_worker_index(void);

/* Per-worker counters since the pool was created. */
typedef struct ws_stats {
    uint64_t tasks;         /* tasks run by this worker */
    uint64_t spawns;        /* tasks this worker put on its deque */
    uint64_t steals;        /* tasks taken from other workers */
    uint64_t failed_steals; /* steal attempts that found nothing */
    uint64_t sleeps;        /* times the worker went to sleep */
} ws_stats;

WS_API int ws_pool_stats(const ws_pool *pool, unsigned worker, ws_stats *out);

/* ------------------------------------------------------------------ */
/* Fork-join                                                          */
/* ------------------------------------------------------------------ */

typedef void (*ws_task_fn)(void *arg);

/* Lives on the caller's stack; spawning into it allocates nothing. */
typedef struct ws_group {
    uint64_t opaque[8];
} ws_group;

/* pool NULL: the pool of the calling worker. */
WS_API void ws_group_init(ws_group *g, ws_pool *pool);
WS_API int  ws_spawn(ws_group *g, ws_task_fn fn, void *arg);
/* Waits for every task of g; a worker runs other tasks meanwhile. */
WS_API int  ws_sync(ws_group *g);
/* Runs fn(arg) on a worker of pool and waits for it. */
WS_API int  ws_run(ws_pool *pool, ws_task_fn fn, void *arg);
/*
 * Runs a(a_arg) and b(b_arg), possibly in parallel, and returns when both
 * are done: one call for the spawn-call-sync pattern.  On a thread that is
 * not a worker, runs them one after the other.
 */
WS_API int  ws_join(ws_task_fn a, void *a_arg, ws_task_fn b, void *b_arg);

/* ------------------------------------------------------------------ */
/* Executor and futures                                               */
/* ------------------------------------------------------------------ */

typedef void *(*ws_fn)(void *arg);
typedef struct ws_future ws_future;

/* future NULL: detached. */
WS_API int  ws_submit(ws_pool *pool, ws_fn fn, void *arg, ws_future **future);
WS_API int  ws_future_wait(ws_future *f, double timeout_s);
WS_API int  ws_future_get(ws_future *f, void **result);
WS_API int  ws_future_cancel(ws_future *f);
WS_API bool ws_future_done(const ws_future *f);
WS_API void ws_future_release(ws_future *f);
WS_API int  ws_wait_any(ws_future *const fs[], size_t n, double timeout_s,
                        size_t *index);
WS_API int  ws_wait_all(ws_future *const fs[], size_t n, double timeout_s);

/* Calls cb(f, arg) once when f is done (now, if it already is). */
typedef void (*ws_future_cb)(ws_future *f, void *arg);
WS_API int  ws_future_then(ws_future *f, ws_future_cb cb, void *arg);

/* Completion queue: futures in the order they finish (as_completed). */
typedef struct ws_completion ws_completion;
WS_API int  ws_completion_create(ws_completion **c);
WS_API int  ws_completion_add(ws_completion *c, ws_future *f);
WS_API int  ws_completion_next(ws_completion *c, double timeout_s,
                               ws_future **f);
WS_API int  ws_completion_destroy(ws_completion *c);

/* ------------------------------------------------------------------ */
/* Parallel loops, map and reduce                                     */
/* ------------------------------------------------------------------ */

typedef void (*ws_range_fn)(size_t begin, size_t end, void *ctx);

/* grain 0: automatic (adaptive splitting). */
WS_API int ws_parallel_for(ws_pool *pool, size_t begin, size_t end,
                           size_t grain, ws_range_fn body, void *ctx);

typedef int (*ws_map_fn)(const void *in, void *out, void *ctx);

typedef struct ws_map {
    ws_map_fn   fn;
    const void *in;
    size_t      in_size;  /* n items of in_size bytes */
    void       *out;
    size_t      out_size; /* n results, in input order */
    size_t      n;
    void       *ctx;
    size_t      ctx_size; /* processes: ctx_size bytes copied to workers */
    size_t      chunk;    /* items per chunk; 0: automatic */
    int        *status;   /* optional: per-item 0 or error */
    double      timeout_s; /* processes: per-item limit; 0: none */
} ws_map;

WS_API int ws_parallel_map(ws_pool *pool, const ws_map *m);

/* Folds [begin, end) into acc, which starts as a copy of the identity. */
typedef void (*ws_reduce_fn)(size_t begin, size_t end, void *acc, void *ctx);
/* acc = acc (+) other; must be associative. */
typedef void (*ws_combine_fn)(void *acc, const void *other, void *ctx);

typedef struct ws_reduce {
    size_t        begin, end;
    size_t        grain;    /* 0: automatic */
    ws_reduce_fn  body;
    ws_combine_fn combine;
    void         *ctx;
    const void   *identity; /* size bytes */
    void         *result;   /* size bytes, written on success */
    size_t        size;
} ws_reduce;

WS_API int ws_parallel_reduce(ws_pool *pool, const ws_reduce *r);

/* ------------------------------------------------------------------ */
/* Bounded MPMC queue                                                 */
/* ------------------------------------------------------------------ */

typedef struct ws_queue ws_queue;

WS_API int    ws_queue_create(ws_queue **q, size_t capacity);
WS_API int    ws_queue_put(ws_queue *q, void *item, double timeout_s);
WS_API int    ws_queue_get(ws_queue *q, void **item, double timeout_s);
WS_API int    ws_queue_close(ws_queue *q);
WS_API size_t ws_queue_size(const ws_queue *q);
WS_API int    ws_queue_destroy(ws_queue *q);

/* ------------------------------------------------------------------ */
/* Multi-process mode                                                 */
/* ------------------------------------------------------------------ */

typedef struct ws_procpool ws_procpool;

/* processes 0: one per core. */
WS_API int   ws_procpool_create(ws_procpool **pp, unsigned processes);
WS_API int   ws_procpool_map(ws_procpool *pp, const ws_map *m);
WS_API int   ws_procpool_destroy(ws_procpool *pp);
WS_API void *ws_shm_alloc(ws_procpool *pp, size_t size);
WS_API void  ws_shm_free(ws_procpool *pp, void *p);

#ifdef __cplusplus
}
#endif

#endif /* WSCHED_H */
