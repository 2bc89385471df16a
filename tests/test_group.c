/*
 * Fork-join: ws_group_init, ws_spawn, ws_sync and ws_run on pools of 1 to 8
 * workers (more threads than cores), from workers and from other threads;
 * pool life cycles, destruction while work is pending, fork(), memory
 * exhaustion, and every call with bad input.
 *
 * Every result is counted exactly: each task bumps its own slot, and a
 * slot that is not 1 afterwards is a task lost or run twice.  Checks are
 * made on the test's main thread; tasks only record what they saw.
 *
 * The program is linked with --wrap for malloc, calloc, realloc,
 * aligned_alloc and posix_memalign.  The convenience library is static, so
 * its own allocations go through the wrappers below: they count the calls
 * made on worker threads (a spawn must make none) and fail them on demand
 * (the thread that asks decides, so other threads are never disturbed).
 */
#define _GNU_SOURCE
#include <check.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wsched.h>

#include "pool.h"
#include "worker.h"

/* ------------------------------------------------------------------ */
/* Allocation wrappers                                                */
/* ------------------------------------------------------------------ */

void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
void *__real_aligned_alloc(size_t, size_t);
int __real_posix_memalign(void **, size_t, size_t);
void *__wrap_malloc(size_t);
void *__wrap_calloc(size_t, size_t);
void *__wrap_realloc(void *, size_t);
void *__wrap_aligned_alloc(size_t, size_t);
int __wrap_posix_memalign(void **, size_t, size_t);

static atomic_ulong worker_allocs;      /* calls made on worker threads */
static _Thread_local long fail_in = -1; /* calls let through, then one fails */
static _Thread_local bool fail_all;     /* every call fails */

static bool
alloc_fails(void)
{
    if (ws_worker_index() >= 0)
        atomic_fetch_add_explicit(&worker_allocs, 1, memory_order_relaxed);
    if (fail_all)
        return true;
    return fail_in >= 0 && fail_in-- == 0;
}

void *
__wrap_malloc(size_t n)
{
    return alloc_fails() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t m)
{
    return alloc_fails() ? NULL : __real_calloc(n, m);
}

void *
__wrap_realloc(void *p, size_t n)
{
    return alloc_fails() ? NULL : __real_realloc(p, n);
}

void *
__wrap_aligned_alloc(size_t a, size_t n)
{
    return alloc_fails() ? NULL : __real_aligned_alloc(a, n);
}

int
__wrap_posix_memalign(void **p, size_t a, size_t n)
{
    return alloc_fails() ? ENOMEM : __real_posix_memalign(p, a, n);
}

/*
 * ThreadSanitizer cannot follow threads started in the child of a
 * multi-threaded fork (it stops the child, or loses track of thread ids
 * with die_after_fork=0), so under it the fork tests skip the new pool in
 * the child; the calls on the parent's pool are checked all the same.
 */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static double
test_scale(void)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    double v = s != NULL ? strtod(s, NULL) : 1.0;
    return v > 0 ? v : 1.0;
}

static unsigned long
scaled(unsigned long n)
{
    double v = (double)n * test_scale();
    return v < 1 ? 1 : (unsigned long)v;
}

static int
thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The k-th CPU of the process's set, round-robin. */
static int
nth_cpu(int k)
{
    cpu_set_t set;
    int n;

    ck_assert_int_eq(sched_getaffinity(0, sizeof set, &set), 0);
    n = CPU_COUNT(&set);
    k %= n;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set) && k-- == 0)
            return c;
    return 0;
}

/* Pins the calling thread, so that threads sharing a CPU interleave. */
static void
pin_thread(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static double
thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Pools of more than two workers do not pin: the machine is small. */
static ws_pool *
pool_new(unsigned workers)
{
    ws_pool_opts o = {.workers = workers,
                      .bind = workers > 2 ? WS_BIND_NONE : WS_BIND_CORE};
    ws_pool *p = NULL;
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(ws_pool_size(p), workers);
    return p;
}

static void
destroy(ws_pool *p)
{
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}

/*
 * Roots the pool still counts once it is quiet.  A root is uncounted just
 * after its group sees it finish, so give the worker a moment; a leaked
 * count would stay (and make ws_pool_destroy wait forever).
 */
static long
outstanding_when_quiet(ws_pool *p)
{
    long n = 0;
    for (int i = 0; i < 5000; i++) {
        n = (long)ws__pool_outstanding(p);
        if (n == 0)
            break;
        sleep_ms(1);
    }
    return n;
}

/* Each slot must have been bumped exactly once. */
static void
check_once(const unsigned char *slot, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(slot[i] == 1, "%s: task %zu ran %d times", what, i,
                      slot[i]);
}

static void
bump(void *arg)
{
    (*(unsigned char *)arg)++;
}

/* A task long enough for thieves to take some of its siblings. */
static void
bump_slow(void *arg)
{
    for (volatile int i = 0; i < 2000; i++)
        ;
    (*(unsigned char *)arg)++;
}

static void
nothing(void *arg)
{
    (void)arg;
}

static atomic_int ran_count;

static void
count_run(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&ran_count, 1, memory_order_relaxed);
}

/* fib(n): spawns fib(n - 1), calls fib(n - 2), syncs. */
struct fib {
    int n;
    long r;
};

static void
fib_task(void *arg)
{
    struct fib *f = arg;
    if (f->n < 2) {
        f->r = f->n;
        return;
    }
    struct fib a = {f->n - 1, 0}, b = {f->n - 2, 0};
    ws_group g;
    ws_group_init(&g, NULL);
    ws_spawn(&g, fib_task, &a);
    fib_task(&b);
    ws_sync(&g);
    f->r = a.r + b.r;
}

static long
fib_seq(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long t = a + b;
        a = b;
        b = t;
    }
    return a;
}

static long
run_fib(ws_pool *p, int n)
{
    struct fib f = {n, -1};
    ck_assert_int_eq(ws_run(p, fib_task, &f), 0);
    return f.r;
}

/* nqueens(n): a task per queen placed. */
struct nq {
    int n, row;
    uint32_t cols, d1, d2;
    long count;
};

static void
nq_task(void *arg)
{
    struct nq *q = arg;
    struct nq kids[32];
    int k = 0;
    ws_group g;

    if (q->row == q->n) {
        q->count = 1;
        return;
    }
    ws_group_init(&g, NULL);
    for (int c = 0; c < q->n; c++) {
        uint32_t col = 1u << c, a = 1u << (q->row + c),
                 b = 1u << (q->row - c + q->n - 1);
        if ((q->cols & col) || (q->d1 & a) || (q->d2 & b))
            continue;
        kids[k] = (struct nq){q->n, q->row + 1, q->cols | col, q->d1 | a,
                              q->d2 | b, 0};
        ws_spawn(&g, nq_task, &kids[k]);
        k++;
    }
    ws_sync(&g);
    q->count = 0;
    for (int i = 0; i < k; i++)
        q->count += kids[i].count;
}

/* ------------------------------------------------------------------ */
/* basic                                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_group_fib)
{
    static const int n[] = {1, 2, 4, 8};
    unsigned long runs = scaled(2);

    for (int i = 0; i < 4; i++) {
        ws_pool *p = pool_new(n[i]);
        for (unsigned long r = 0; r < runs; r++) {
            ck_assert_int_eq(run_fib(p, 0), 0);
            ck_assert_int_eq(run_fib(p, 1), 1);
            ck_assert_int_eq(run_fib(p, 2), 1);
            ck_assert_int_eq(run_fib(p, 26), fib_seq(26));
        }
        destroy(p);
    }
}
END_TEST

START_TEST(test_group_nqueens)
{
    static const int n[] = {1, 2, 4, 8};
    static const long solutions[] = {1, 1, 0, 0, 2, 10, 4, 40, 92, 352, 724};
    unsigned long runs = scaled(1);

    for (int i = 0; i < 4; i++) {
        ws_pool *p = pool_new(n[i]);
        for (unsigned long r = 0; r < runs; r++)
            for (int size = 1; size <= 10; size++) {
                struct nq q = {size, 0, 0, 0, 0, -1};
                ck_assert_int_eq(ws_run(p, nq_task, &q), 0);
                ck_assert_msg(q.count == solutions[size],
                              "nqueens(%d) = %ld with %d workers", size,
                              q.count, n[i]);
            }
        destroy(p);
    }
}
END_TEST

/* A group is reusable after ws_sync, on a worker and outside. */
struct reuse {
    unsigned char slot[50][40];
    int rc;
};

static void
reuse_task(void *arg)
{
    struct reuse *r = arg;
    ws_group g;

    ws_group_init(&g, NULL);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 40; i++)
            r->rc |= ws_spawn(&g, bump_slow, &r->slot[round][i]);
        r->rc |= ws_sync(&g);
        /* The group is complete: nothing of this round is left to run. */
        for (int i = 0; i < 40; i++)
            if (r->slot[round][i] != 1)
                r->rc |= 0x100;
    }
    /* Syncing again with nothing spawned returns at once. */
    r->rc |= ws_sync(&g);
}

START_TEST(test_group_reuse)
{
    static struct reuse r;
    ws_pool *p = pool_new(4);
    ws_group g;

    memset(&r, 0, sizeof r);
    ck_assert_int_eq(ws_run(p, reuse_task, &r), 0);
    ck_assert_int_eq(r.rc, 0);
    check_once(&r.slot[0][0], sizeof r.slot, "in a task");

    memset(&r, 0, sizeof r);
    ws_group_init(&g, p);
    ck_assert_int_eq(ws_sync(&g), 0);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 40; i++)
            ck_assert_int_eq(ws_spawn(&g, bump, &r.slot[round][i]), 0);
        ck_assert_int_eq(ws_sync(&g), 0);
        check_once(r.slot[round], 40, "outside");
    }
    destroy(p);
}
END_TEST

/* ws_run on one of the pool's own workers calls fn inline. */
struct inline_run {
    ws_pool *pool;
    pthread_t outer, inner;
    int outer_index, inner_index, rc;
};

static void
inline_inner(void *arg)
{
    struct inline_run *r = arg;
    r->inner = pthread_self();
    r->inner_index = ws_worker_index();
}

static void
inline_outer(void *arg)
{
    struct inline_run *r = arg;
    r->outer = pthread_self();
    r->outer_index = ws_worker_index();
    r->rc = ws_run(r->pool, inline_inner, r);
}

START_TEST(test_group_run_inline)
{
    struct inline_run r = {.rc = -1, .outer_index = -5, .inner_index = -6};

    r.pool = pool_new(4);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(ws_run(r.pool, inline_outer, &r), 0);
        ck_assert_int_eq(r.rc, 0);
        ck_assert(pthread_equal(r.outer, r.inner));
        ck_assert_int_eq(r.outer_index, r.inner_index);
        ck_assert_int_ge(r.outer_index, 0);
    }
    destroy(r.pool);
}
END_TEST

/* Groups that are not nested: synced in the order they were begun. */
enum { NN = 300 };
struct nonnested {
    unsigned char a[NN], b[NN], c[NN], d[NN];
    int rc;
};

static int
count_not_once(const unsigned char *s, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += s[i] != 1;
    return bad;
}

static void
nonnested_task(void *arg)
{
    struct nonnested *t = arg;
    ws_group g1, g2;

    /* Interleaved: spawn into g1, into g2, sync g1, sync g2. */
    ws_group_init(&g1, NULL);
    ws_group_init(&g2, NULL);
    for (int i = 0; i < NN; i++) {
        t->rc |= ws_spawn(&g1, bump_slow, &t->a[i]);
        t->rc |= ws_spawn(&g2, bump_slow, &t->b[i]);
    }
    t->rc |= ws_sync(&g1);
    if (count_not_once(t->a, NN))
        t->rc |= 0x100;
    t->rc |= ws_sync(&g2);
    if (count_not_once(t->b, NN))
        t->rc |= 0x200;

    /* g2 begun above g1's tasks, g1 spawns above g2's: g2 synced first. */
    ws_group_init(&g1, NULL);
    for (int i = 0; i < NN / 2; i++)
        t->rc |= ws_spawn(&g1, bump_slow, &t->c[i]);
    ws_group_init(&g2, NULL);
    for (int i = 0; i < NN; i++)
        t->rc |= ws_spawn(&g2, bump_slow, &t->d[i]);
    for (int i = NN / 2; i < NN; i++)
        t->rc |= ws_spawn(&g1, bump_slow, &t->c[i]);
    t->rc |= ws_sync(&g2);
    if (count_not_once(t->d, NN))
        t->rc |= 0x400;
    t->rc |= ws_sync(&g1);
    if (count_not_once(t->c, NN))
        t->rc |= 0x800;
}

/* g2 begun, then g1's sync takes the deque below g2's start. */
struct below {
    unsigned char a[NN], b[NN];
    int rc;
};

static void
below_task(void *arg)
{
    struct below *t = arg;
    ws_group g1, g2;

    ws_group_init(&g1, NULL);
    for (int i = 0; i < NN; i++)
        t->rc |= ws_spawn(&g1, bump, &t->a[i]);
    ws_group_init(&g2, NULL);
    t->rc |= ws_sync(&g1);
    for (int i = 0; i < NN; i++)
        t->rc |= ws_spawn(&g2, bump_slow, &t->b[i]);
    t->rc |= ws_sync(&g2);
    if (count_not_once(t->a, NN) || count_not_once(t->b, NN))
        t->rc |= 0x100;
}

START_TEST(test_group_nonnested)
{
    static struct nonnested t;
    static struct below u;
    unsigned long runs = scaled(20);

    for (unsigned n = 1; n <= 4; n *= 2) {
        ws_pool *p = pool_new(n);
        for (unsigned long r = 0; r < runs; r++) {
            memset(&t, 0, sizeof t);
            ck_assert_int_eq(ws_run(p, nonnested_task, &t), 0);
            ck_assert_int_eq(t.rc, 0);
            check_once(t.a, NN, "a");
            check_once(t.b, NN, "b");
            check_once(t.c, NN, "c");
            check_once(t.d, NN, "d");
            memset(&u, 0, sizeof u);
            ck_assert_int_eq(ws_run(p, below_task, &u), 0);
            ck_assert_int_eq(u.rc, 0);
            check_once(u.a, NN, "below a");
            check_once(u.b, NN, "below b");
        }
        destroy(p);
    }
}
END_TEST

/*
 * Tasks handed their parent's group spawn more into it: a complete ternary
 * tree whose every node is spawned into the one group of the root, which
 * alone syncs.  Nodes live in one array (node i's children are 3i+1..3i+3),
 * since a node returns before its children run.
 */
enum { HANDED_NODES = (6561 - 1) / 2 }; /* depth 7: (3^8 - 1) / 2 */
struct handed {
    ws_group *g;
    unsigned char slot[HANDED_NODES];
    atomic_int rc;
};
struct handed_node {
    struct handed *h;
    unsigned i;
};
static struct handed_node handed_nodes[HANDED_NODES];

static void
handed_task(void *arg)
{
    struct handed_node *n = arg;
    struct handed *h = n->h;

    bump_slow(&h->slot[n->i]);
    for (unsigned k = 1; k <= 3; k++) {
        unsigned c = 3 * n->i + k;
        if (c >= HANDED_NODES)
            break;
        if (ws_spawn(h->g, handed_task, &handed_nodes[c]) != 0)
            atomic_fetch_add_explicit(&h->rc, 1, memory_order_relaxed);
    }
}

static void
handed_root(void *arg)
{
    struct handed *h = arg;
    ws_group g;

    ws_group_init(&g, NULL);
    h->g = &g;
    if (ws_spawn(&g, handed_task, &handed_nodes[0]) != 0 || ws_sync(&g) != 0)
        atomic_fetch_add_explicit(&h->rc, 1, memory_order_relaxed);
}

START_TEST(test_group_handed)
{
    static struct handed h;
    unsigned long runs = scaled(10);

    for (unsigned i = 0; i < HANDED_NODES; i++)
        handed_nodes[i] = (struct handed_node){&h, i};
    for (unsigned n = 1; n <= 8; n *= 2) {
        ws_pool *p = pool_new(n);
        for (unsigned long r = 0; r < runs; r++) {
            /* The group begun in a task, owned by a worker. */
            memset(h.slot, 0, sizeof h.slot);
            atomic_store(&h.rc, 0);
            ck_assert_int_eq(ws_run(p, handed_root, &h), 0);
            ck_assert_int_eq(atomic_load(&h.rc), 0);
            check_once(h.slot, HANDED_NODES, "worker group");

            /* The group begun by this thread: workers spawn into it. */
            ws_group g;
            memset(h.slot, 0, sizeof h.slot);
            ws_group_init(&g, p);
            h.g = &g;
            ck_assert_int_eq(ws_spawn(&g, handed_task, &handed_nodes[0]), 0);
            ck_assert_int_eq(ws_sync(&g), 0);
            ck_assert_int_eq(atomic_load(&h.rc), 0);
            check_once(h.slot, HANDED_NODES, "external group");
        }
        destroy(p);
    }
}
END_TEST

/* Threads that are not workers spawn into a group a task owns. */
enum { INTO_THREADS = 3, INTO_EACH = 500 };
struct into {
    ws_group *g;
    unsigned char ext[INTO_THREADS][INTO_EACH];
    unsigned char own[INTO_EACH];
    int rc[INTO_THREADS];
    int root_rc;
};
struct into_arg {
    struct into *t;
    int k;
};

static void *
into_thread(void *arg)
{
    struct into_arg *a = arg;
    for (int i = 0; i < INTO_EACH; i++)
        a->t->rc[a->k] |= ws_spawn(a->t->g, bump_slow, &a->t->ext[a->k][i]);
    return NULL;
}

static void
into_root(void *arg)
{
    struct into *t = arg;
    struct into_arg a[INTO_THREADS];
    pthread_t th[INTO_THREADS];
    ws_group g;

    ws_group_init(&g, NULL);
    t->g = &g;
    for (int k = 0; k < INTO_THREADS; k++) {
        a[k] = (struct into_arg){t, k};
        t->root_rc |= pthread_create(&th[k], NULL, into_thread, &a[k]);
    }
    for (int i = 0; i < INTO_EACH; i++)
        t->root_rc |= ws_spawn(&g, bump_slow, &t->own[i]);
    for (int k = 0; k < INTO_THREADS; k++)
        pthread_join(th[k], NULL);
    t->root_rc |= ws_sync(&g);
}

START_TEST(test_group_external_into_worker_group)
{
    static struct into t;
    unsigned long runs = scaled(5);
    ws_pool *p = pool_new(4);

    for (unsigned long r = 0; r < runs; r++) {
        memset(&t, 0, sizeof t);
        ck_assert_int_eq(ws_run(p, into_root, &t), 0);
        ck_assert_int_eq(t.root_rc, 0);
        for (int k = 0; k < INTO_THREADS; k++) {
            ck_assert_int_eq(t.rc[k], 0);
            check_once(t.ext[k], INTO_EACH, "external");
        }
        check_once(t.own, INTO_EACH, "own");
    }
    destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* concurrency                                                        */
/* ------------------------------------------------------------------ */

/*
 * Four threads spawn at once, each into a group of its own and all into
 * one shared group that the main thread began and syncs after joining
 * them.  They are pinned round-robin, so on a small machine two of them
 * share each CPU.
 */
enum { EXT_THREADS = 4 };
struct ext {
    ws_pool *pool;
    ws_group *shared;
    unsigned char *own, *shr;
    size_t n;
    int cpu, rc;
};

static void *
ext_thread(void *arg)
{
    struct ext *e = arg;
    ws_group g;

    pin_thread(e->cpu);
    ws_group_init(&g, e->pool);
    for (size_t i = 0; i < e->n; i++) {
        e->rc |= ws_spawn(&g, bump, &e->own[i]);
        e->rc |= ws_spawn(e->shared, bump, &e->shr[i]);
        if (i % 1000 == 999)
            e->rc |= ws_sync(&g);
    }
    e->rc |= ws_sync(&g);
    return NULL;
}

START_TEST(test_group_external_threads)
{
    size_t n = scaled(20000);
    unsigned char *own = calloc(EXT_THREADS, n), *shr = calloc(EXT_THREADS, n);
    struct ext e[EXT_THREADS];
    pthread_t t[EXT_THREADS];
    ws_pool *p = pool_new(4);
    ws_group shared;

    ck_assert_ptr_nonnull(own);
    ck_assert_ptr_nonnull(shr);
    ws_group_init(&shared, p);
    for (int k = 0; k < EXT_THREADS; k++) {
        e[k] = (struct ext){p, &shared, own + k * n, shr + k * n, n,
                            nth_cpu(k), 0};
        ck_assert_int_eq(pthread_create(&t[k], NULL, ext_thread, &e[k]), 0);
    }
    for (int k = 0; k < EXT_THREADS; k++) {
        pthread_join(t[k], NULL);
        ck_assert_int_eq(e[k].rc, 0);
    }
    /* Each thread synced its own group before it ended. */
    check_once(own, EXT_THREADS * n, "own groups");
    ck_assert_int_eq(ws_sync(&shared), 0);
    check_once(shr, EXT_THREADS * n, "shared group");
    destroy(p);
    free(own);
    free(shr);
}
END_TEST

START_TEST(test_group_pool_cycles)
{
    unsigned long cycles = scaled(100);
    int threads = -1;

    for (unsigned long i = 0; i < cycles; i++) {
        unsigned n = 1 + i % 4;
        ws_pool *p = pool_new(n);
        ck_assert_int_eq(run_fib(p, 12 + (int)(i % 5)),
                         fib_seq(12 + (int)(i % 5)));
        destroy(p);
        /* Every worker was joined (after the first, which may start
         * threads of a sanitizer's runtime). */
        if (threads < 0)
            threads = thread_count();
        ck_assert_int_eq(thread_count(), threads);
    }
}
END_TEST

/* ws_pool_destroy runs everything spawned from outside, never synced. */
enum { SLOW_KIDS = 4 };
struct slow {
    unsigned char self, kids[SLOW_KIDS];
    int rc;
};

static void
slow_task(void *arg)
{
    struct slow *s = arg;
    ws_group g;

    sleep_ms(1);
    ws_group_init(&g, NULL);
    for (int i = 0; i < SLOW_KIDS; i++)
        s->rc |= ws_spawn(&g, bump_slow, &s->kids[i]);
    s->rc |= ws_sync(&g);
    s->self++;
}

START_TEST(test_group_destroy_runs_all)
{
    size_t n = scaled(400);
    struct slow *s = calloc(n, sizeof *s);
    ws_group g[2];

    ck_assert_ptr_nonnull(s);
    for (int round = 0; round < 2; round++) {
        ws_pool *p = pool_new(round == 0 ? 2 : 4);
        memset(s, 0, n * sizeof *s);
        ws_group_init(&g[0], p);
        ws_group_init(&g[1], p);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(ws_spawn(&g[i % 2], slow_task, &s[i]), 0);
        destroy(p);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(s[i].rc, 0);
            ck_assert_msg(s[i].self == 1, "task %zu ran %d times", i,
                          s[i].self);
            check_once(s[i].kids, SLOW_KIDS, "children");
        }
    }
    free(s);
}
END_TEST

/* A thread that is not a worker blocks in ws_sync; it does not spin. */
static void
sleeper(void *arg)
{
    sleep_ms(*(long *)arg);
}

START_TEST(test_group_sync_blocks)
{
    ws_pool *p = pool_new(2);
    long ms = 400;
    ws_group g;

    ws_group_init(&g, p);
    ck_assert_int_eq(ws_spawn(&g, sleeper, &ms), 0);
    double t0 = thread_cpu_seconds();
    ck_assert_int_eq(ws_sync(&g), 0);
    double used = thread_cpu_seconds() - t0;
    ck_assert_msg(used < 0.030, "ws_sync used %.1f ms of CPU waiting",
                  used * 1e3);

    t0 = thread_cpu_seconds();
    ck_assert_int_eq(ws_run(p, sleeper, &ms), 0);
    used = thread_cpu_seconds() - t0;
    ck_assert_msg(used < 0.030, "ws_run used %.1f ms of CPU waiting",
                  used * 1e3);
    destroy(p);
}
END_TEST

/*
 * fork(): the child gets ECHILD from every call on the parent's pool except
 * ws_pool_destroy, which frees its copy; a new pool works there.  Codes
 * name the first check that failed.
 */
static int
child_checks(ws_pool *parent, ws_group *pending)
{
    struct fib f = {10, -1};
    ws_stats s;
    ws_group g;
    ws_pool *p;
    ws_pool_opts o = {.workers = 2, .bind = WS_BIND_NONE};

    if (ws_worker_index() != -1)
        return 10;
    if (ws_run(parent, fib_task, &f) != ECHILD || f.r != -1)
        return 11;
    ws_group_init(&g, parent);
    if (ws_spawn(&g, fib_task, &f) != ECHILD)
        return 12;
    if (ws_sync(&g) != ECHILD)
        return 13;
    if (pending != NULL && ws_sync(pending) != ECHILD)
        return 14;
    if (pending != NULL && ws_spawn(pending, nothing, NULL) != ECHILD)
        return 15;
    if (ws_pool_stats(parent, 0, &s) != ECHILD)
        return 16;
    /* Outside any worker, pool NULL leaves a group unusable. */
    ws_group_init(&g, NULL);
    if (ws_spawn(&g, nothing, NULL) != EINVAL)
        return 17;
    if (ws_pool_destroy(parent) != 0)
        return 18;
    if (UNDER_TSAN)
        return 0;
    if (ws_pool_create(&p, &o) != 0)
        return 19;
    f = (struct fib){20, -1};
    if (ws_run(p, fib_task, &f) != 0 || f.r != fib_seq(20))
        return 20;
    if (ws_pool_destroy(p) != 0)
        return 21;
    return 0;
}

/*
 * Returns once every worker of p has run a task, all at the same time: the
 * workers have finished starting.  A fork while a thread is starting can
 * copy a lock of AddressSanitizer's allocator held (its runtime allocates
 * in thread start and, unlike glibc's malloc, does not lock around fork),
 * and the child's first allocation of that size then waits forever.
 */
static void
meet_task(void *arg)
{
    pthread_barrier_wait(arg);
}

static void
all_workers_started(ws_pool *p)
{
    unsigned n = ws_pool_size(p);
    pthread_barrier_t b;
    ws_group g;

    ck_assert_int_eq(pthread_barrier_init(&b, NULL, n), 0);
    ws_group_init(&g, p);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(ws_spawn(&g, meet_task, &b), 0);
    ck_assert_int_eq(ws_sync(&g), 0);
    pthread_barrier_destroy(&b);
}

/* Waits for pid at most 60 s: its exit status, or -1 if it hung. */
static int
wait_child(pid_t pid)
{
    for (int i = 0; i < 6000; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 && errno != EINTR)
            return -2;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

START_TEST(test_group_fork_child)
{
    ws_pool *p = pool_new(4);
    long ms = 300;
    ws_group pending;

    ck_assert_int_eq(run_fib(p, 20), fib_seq(20));
    all_workers_started(p);
    /* Work in flight at the fork: the child must not wait for it. */
    ws_group_init(&pending, p);
    ck_assert_int_eq(ws_spawn(&pending, sleeper, &ms), 0);
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            _exit(child_checks(p, &pending));
        int st = wait_child(pid);
        ck_assert_msg(st == 0, "child: %d (-1: hung)", st);
    }
    /* The parent's pool is unaffected. */
    ck_assert_int_eq(ws_sync(&pending), 0);
    ck_assert_int_eq(run_fib(p, 22), fib_seq(22));
    destroy(p);
}
END_TEST

struct fork_in_task {
    ws_pool *pool;
    int status;
};

static void
fork_task(void *arg)
{
    struct fork_in_task *t = arg;
    struct fib f = {15, -1};

    /* Keep the other workers busy meanwhile. */
    ws_group g;
    ws_group_init(&g, NULL);
    ws_spawn(&g, fib_task, &f);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_checks(t->pool, NULL));
    t->status = pid < 0 ? -3 : wait_child(pid);
    ws_sync(&g);
    if (f.r != fib_seq(15))
        t->status = -4;
}

START_TEST(test_group_fork_in_task)
{
    struct fork_in_task t = {.status = -5};

    t.pool = pool_new(4);
    all_workers_started(t.pool);
    for (int i = 0; i < 3; i++) {
        t.status = -5;
        ck_assert_int_eq(ws_run(t.pool, fork_task, &t), 0);
        ck_assert_msg(t.status == 0, "child: %d (-1: hung)", t.status);
        ck_assert_int_eq(run_fib(t.pool, 22), fib_seq(22));
    }
    destroy(t.pool);
}
END_TEST

/*
 * Waits nested deeper than a worker's help depth, on work from outside.
 * Tasks t[0..n) are queued from this thread; each begins a group, has this
 * thread spawn one task into it (queued behind the t[] still waiting),
 * and syncs.  The lone worker, waiting in t[k], takes t[k + 1] from the
 * queue, so the waits nest n deep, and the innermost finds its own task
 * behind everything else in the injection queue.  Every wait must still
 * end: the group's task can run nowhere but on this worker.
 */
enum { DEEP = 40 };
struct deep {
    _Atomic(ws_group *) g[DEEP];
    atomic_int ack[DEEP];
    unsigned char mine[DEEP], self[DEEP];
    int rc[DEEP];
};
struct deep_arg {
    struct deep *d;
    int k;
};

static void
deep_task(void *arg)
{
    struct deep_arg *a = arg;
    struct deep *d = a->d;
    ws_group g;

    ws_group_init(&g, NULL);
    atomic_store(&d->g[a->k], &g);
    while (!atomic_load(&d->ack[a->k]))
        sched_yield();
    d->rc[a->k] = ws_sync(&g);
    d->self[a->k]++;
}

START_TEST(test_group_sync_deep_injected)
{
    static struct deep d;
    struct deep_arg a[DEEP];
    ws_pool *p = pool_new(1);
    ws_group root;

    memset(&d, 0, sizeof d);
    ws_group_init(&root, p);
    for (int k = 0; k < DEEP; k++) {
        a[k] = (struct deep_arg){&d, k};
        ck_assert_int_eq(ws_spawn(&root, deep_task, &a[k]), 0);
    }
    for (int k = 0; k < DEEP; k++) {
        ws_group *g;
        /* A task that never starts means the worker waits forever. */
        for (int ms = 0; (g = atomic_load(&d.g[k])) == NULL; ms++) {
            ck_assert_msg(ms < 20000,
                          "task %d of %d never started: the worker waits "
                          "forever %d deep for work in the queue",
                          k, DEEP, k - 1);
            sleep_ms(1);
        }
        ck_assert_int_eq(ws_spawn(g, bump, &d.mine[k]), 0);
        atomic_store(&d.ack[k], 1);
    }
    ck_assert_int_eq(ws_sync(&root), 0);
    for (int k = 0; k < DEEP; k++)
        ck_assert_int_eq(d.rc[k], 0);
    check_once(d.mine, DEEP, "spawned from outside");
    check_once(d.self, DEEP, "nested");
    destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* stress                                                             */
/* ------------------------------------------------------------------ */

struct many {
    unsigned char *slot;
    size_t n;
    int rc;
};

static void
many_task(void *arg)
{
    struct many *m = arg;
    ws_group g;

    ws_group_init(&g, NULL);
    for (size_t i = 0; i < m->n; i++)
        m->rc |= ws_spawn(&g, bump, &m->slot[i]);
    m->rc |= ws_sync(&g);
}

START_TEST(test_group_million_children)
{
    struct many m = {NULL, scaled(1000000), 0};
    ws_pool *p = pool_new(4);

    m.slot = calloc(m.n, 1);
    ck_assert_ptr_nonnull(m.slot);
    ck_assert_int_eq(ws_run(p, many_task, &m), 0);
    ck_assert_int_eq(m.rc, 0);
    check_once(m.slot, m.n, "child");
    destroy(p);
    free(m.slot);
}
END_TEST

/*
 * Deep recursion with many children per level: each level leaves its
 * leaves on the deque while the next level runs, so the deque grows well
 * past its first array.
 */
enum { COMB_DEPTH = 60, COMB_FAN = 100 };
struct comb {
    unsigned char *slot;
    int level;
    atomic_int rc;
};
struct comb_arg {
    struct comb *c;
    int level;
};

static void
comb_task(void *arg)
{
    struct comb_arg *a = arg;
    struct comb *c = a->c;
    struct comb_arg next = {c, a->level + 1};
    ws_group g;
    int rc = 0;

    if (a->level == COMB_DEPTH)
        return;
    ws_group_init(&g, NULL);
    for (int i = 0; i < COMB_FAN; i++)
        rc |= ws_spawn(&g, bump_slow, &c->slot[a->level * COMB_FAN + i]);
    rc |= ws_spawn(&g, comb_task, &next);
    rc |= ws_sync(&g);
    if (rc != 0)
        atomic_fetch_or(&c->rc, rc | 0x100);
}

START_TEST(test_group_deque_growth)
{
    static unsigned char slot[COMB_DEPTH * COMB_FAN];
    struct comb c = {slot, 0, 0};
    unsigned long runs = scaled(10);

    for (unsigned n = 1; n <= 4; n *= 2) {
        ws_pool *p = pool_new(n);
        for (unsigned long r = 0; r < runs; r++) {
            struct comb_arg a = {&c, 0};
            memset(slot, 0, sizeof slot);
            ck_assert_int_eq(ws_run(p, comb_task, &a), 0);
            ck_assert_int_eq(atomic_load(&c.rc), 0);
            check_once(slot, sizeof slot, "leaf");
        }
        destroy(p);
    }
}
END_TEST

/* A spawn allocates nothing: worker threads make no allocation at all. */
static void
alloc_once(void *arg)
{
    void *volatile p = malloc(16); /* kept: gcc drops malloc + free */

    (void)arg;
    free(p);
}

START_TEST(test_group_spawn_no_alloc)
{
    unsigned long runs = scaled(3);

    for (unsigned n = 1; n <= 4; n *= 2) {
        ws_pool *p = pool_new(n);
        /* The counter sees worker allocations at all. */
        atomic_store(&worker_allocs, 0);
        ck_assert_int_eq(ws_run(p, alloc_once, NULL), 0);
        unsigned long allocs = atomic_load(&worker_allocs);
        ck_assert_uint_eq(allocs, 1);

        /* Warm: fib's depth (about n) stays far below 1024 tasks. */
        ck_assert_int_eq(run_fib(p, 20), fib_seq(20));
        atomic_store(&worker_allocs, 0);
        for (unsigned long r = 0; r < runs; r++)
            ck_assert_int_eq(run_fib(p, 25), fib_seq(25));
        allocs = atomic_load(&worker_allocs);
        ck_assert_msg(allocs == 0, "%lu allocations on workers", allocs);
        destroy(p);
    }
}
END_TEST

/* Out of memory while creating a pool: ENOMEM, nothing left behind. */
START_TEST(test_group_pool_create_enomem)
{
    ws_pool_opts o = {.workers = 3, .bind = WS_BIND_NONE};
    int threads, failures = 0;

    /* Threads a sanitizer's runtime starts with the first one count too. */
    destroy(pool_new(1));
    threads = thread_count();

    for (long k = 0; k < 1000; k++) {
        ws_pool *sentinel = (ws_pool *)&o, *p = sentinel;
        fail_in = k;
        int rc = ws_pool_create(&p, &o);
        bool hit = fail_in < 0;
        fail_in = -1;
        if (rc == 0) {
            ck_assert(!hit);
            ck_assert_int_eq(run_fib(p, 15), fib_seq(15));
            destroy(p);
            break;
        }
        ck_assert_msg(rc == ENOMEM, "allocation %ld failed: %d", k, rc);
        ck_assert_ptr_eq(p, sentinel);
        ck_assert_int_eq(thread_count(), threads);
        failures++;
    }
    /* The pool, its plan, workers and deques allocate: several points. */
    ck_assert_int_ge(failures, 5);
}
END_TEST

/*
 * Out of memory in a spawn from outside: the injection queue cannot grow.
 * The spawn gets ENOMEM, its task never runs, and the group and the pool
 * stay usable.
 */
struct gate {
    atomic_int started, release;
};

static void
gate_task(void *arg)
{
    struct gate *g = arg;
    atomic_fetch_add(&g->started, 1);
    while (!atomic_load(&g->release))
        sleep_ms(1);
}

START_TEST(test_group_spawn_enomem_external)
{
    enum { MAX = 100000 };
    static unsigned char slot[MAX];
    struct gate gate = {0, 0};
    ws_pool *p = pool_new(2);
    ws_group gates, g;
    int rc = 0, ok = 0;

    memset(slot, 0, sizeof slot);
    ws_group_init(&gates, p);
    ws_group_init(&g, p);
    /* Hold both workers so that injected tasks pile up. */
    ck_assert_int_eq(ws_spawn(&gates, gate_task, &gate), 0);
    ck_assert_int_eq(ws_spawn(&gates, gate_task, &gate), 0);
    while (atomic_load(&gate.started) < 2)
        sleep_ms(1);
    fail_all = true;
    while (ok < MAX - 1 && (rc = ws_spawn(&g, bump, &slot[ok])) == 0)
        ok++;
    int run_rc = ws_run(p, bump, &slot[MAX - 1]);
    fail_all = false;
    ck_assert_int_eq(rc, ENOMEM);
    ck_assert_int_eq(run_rc, ENOMEM);
    /* The same group takes more once memory is back. */
    ck_assert_int_eq(ws_spawn(&g, bump, &slot[ok + 1]), 0);
    atomic_store(&gate.release, 1);
    ck_assert_int_eq(ws_sync(&g), 0);
    ck_assert_int_eq(ws_sync(&gates), 0);
    check_once(slot, (size_t)ok, "spawned");
    ck_assert_int_eq(slot[ok], 0);
    ck_assert_int_eq(slot[ok + 1], 1);
    ck_assert_int_eq(slot[MAX - 1], 0);
    /* No root is counted for the refused tasks: destroy does not wait. */
    ck_assert_int_eq(outstanding_when_quiet(p), 0);
    destroy(p);
}
END_TEST

/* Out of memory when a worker's deque must grow: the task runs inline. */
enum { INLINE_N = 5000 };
struct inline_spawn {
    unsigned char slot[INLINE_N];
    int rc;
};

static void
inline_task(void *arg)
{
    struct inline_spawn *s = arg;
    ws_group g;

    ws_group_init(&g, NULL);
    fail_all = true; /* this worker's allocations only */
    for (int i = 0; i < INLINE_N; i++)
        s->rc |= ws_spawn(&g, bump, &s->slot[i]);
    fail_all = false;
    s->rc |= ws_sync(&g);
}

START_TEST(test_group_spawn_enomem_inline)
{
    static struct inline_spawn s;

    for (unsigned n = 1; n <= 4; n *= 2) {
        ws_pool *p = pool_new(n);
        for (int r = 0; r < 5; r++) {
            memset(&s, 0, sizeof s);
            ck_assert_int_eq(ws_run(p, inline_task, &s), 0);
            ck_assert_int_eq(s.rc, 0);
            check_once(s.slot, INLINE_N, "spawned");
        }
        destroy(p);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_group_create_einval)
{
    ws_pool_opts o = {.workers = 2};
    int threads = thread_count();

    ck_assert_int_eq(ws_pool_create(NULL, NULL), EINVAL);
    ck_assert_int_eq(ws_pool_create(NULL, &o), EINVAL);
    ck_assert_int_eq(thread_count(), threads);
    ck_assert_int_eq(ws_pool_destroy(NULL), EINVAL);
    ck_assert_uint_eq(ws_pool_size(NULL), 0);
}
END_TEST

struct deadlk {
    ws_pool *pool;
    int rc;
};

static void
deadlk_task(void *arg)
{
    struct deadlk *d = arg;
    d->rc = ws_pool_destroy(d->pool);
}

static void
deadlk_nested(void *arg)
{
    struct deadlk *d = arg;
    struct fib f = {12, -1};
    ws_group g;

    /* Deeper inside: a child task of the pool's own. */
    ws_group_init(&g, NULL);
    ws_spawn(&g, deadlk_task, d);
    fib_task(&f);
    ws_sync(&g);
}

START_TEST(test_group_destroy_edeadlk)
{
    struct deadlk d = {.rc = -1};

    d.pool = pool_new(4);
    ck_assert_int_eq(ws_run(d.pool, deadlk_task, &d), 0);
    ck_assert_int_eq(d.rc, EDEADLK);
    d.rc = -1;
    ck_assert_int_eq(ws_run(d.pool, deadlk_nested, &d), 0);
    ck_assert_int_eq(d.rc, EDEADLK);
    /* Nothing changed: the pool keeps working. */
    ck_assert_uint_eq(ws_pool_size(d.pool), 4);
    ck_assert_int_eq(run_fib(d.pool, 20), fib_seq(20));
    destroy(d.pool);
}
END_TEST

/* Bad groups from a worker: every call gets EINVAL and nothing runs. */
struct bad_in_task {
    int rc[8];
};

static void
bad_in_task(void *arg)
{
    struct bad_in_task *b = arg;
    ws_group zero, g;

    memset(&zero, 0, sizeof zero);
    b->rc[0] = ws_spawn(&zero, count_run, NULL);
    b->rc[1] = ws_sync(&zero);
    b->rc[2] = ws_spawn(NULL, count_run, NULL);
    b->rc[3] = ws_sync(NULL);
    ws_group_init(&g, NULL);
    b->rc[4] = ws_spawn(&g, NULL, NULL);
    b->rc[5] = ws_sync(&g); /* valid and empty */
    b->rc[6] = ws_spawn(&g, count_run, NULL);
    b->rc[7] = ws_sync(&g);
}

static void *
bad_external(void *arg)
{
    int *rc = arg;
    ws_group zero;

    memset(&zero, 0, sizeof zero);
    rc[0] = ws_spawn(&zero, count_run, NULL);
    rc[1] = ws_sync(&zero);
    return NULL;
}

START_TEST(test_group_spawn_einval)
{
    ws_pool *p = pool_new(2);
    struct bad_in_task b;
    ws_group zero, unbound, g;
    int ext[2] = {-1, -1};
    pthread_t t;

    atomic_store(&ran_count, 0);
    memset(&b, 0xff, sizeof b);
    ck_assert_int_eq(ws_run(p, bad_in_task, &b), 0);
    ck_assert_int_eq(b.rc[0], EINVAL);
    ck_assert_int_eq(b.rc[1], EINVAL);
    ck_assert_int_eq(b.rc[2], EINVAL);
    ck_assert_int_eq(b.rc[3], EINVAL);
    ck_assert_int_eq(b.rc[4], EINVAL);
    ck_assert_int_eq(b.rc[5], 0);
    ck_assert_int_eq(b.rc[6], 0);
    ck_assert_int_eq(b.rc[7], 0);
    ck_assert_int_eq(atomic_load(&ran_count), 1);

    /* From this thread: zeroed, NULL, and pool NULL outside a worker. */
    memset(&zero, 0, sizeof zero);
    ck_assert_int_eq(ws_spawn(&zero, count_run, NULL), EINVAL);
    ck_assert_int_eq(ws_sync(&zero), EINVAL);
    ck_assert_int_eq(ws_spawn(NULL, count_run, NULL), EINVAL);
    ck_assert_int_eq(ws_sync(NULL), EINVAL);
    ws_group_init(&unbound, NULL);
    ck_assert_int_eq(ws_spawn(&unbound, count_run, NULL), EINVAL);
    ck_assert_int_eq(ws_sync(&unbound), EINVAL);
    ws_group_init(&g, p);
    ck_assert_int_eq(ws_spawn(&g, NULL, NULL), EINVAL);
    ck_assert_int_eq(ws_sync(&g), 0);
    ws_group_init(NULL, p); /* does nothing */

    /* And from another thread that is not a worker. */
    ck_assert_int_eq(pthread_create(&t, NULL, bad_external, ext), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(ext[0], EINVAL);
    ck_assert_int_eq(ext[1], EINVAL);

    /* Nothing ran, nothing is counted as pending. */
    ck_assert_int_eq(atomic_load(&ran_count), 1);
    ck_assert_int_eq(outstanding_when_quiet(p), 0);
    ck_assert_int_eq(run_fib(p, 18), fib_seq(18));
    destroy(p);
}
END_TEST

/* ws_sync by a thread other than the one that began the group. */
struct foreign {
    ws_pool *other;
    ws_group *g;
    unsigned char slot[200];
    int ext_rc, worker_rc, own_rc;
};

static void *
foreign_thread(void *arg)
{
    struct foreign *f = arg;
    f->ext_rc = ws_sync(f->g);
    return NULL;
}

static void
foreign_worker(void *arg)
{
    struct foreign *f = arg;
    f->worker_rc = ws_sync(f->g);
}

static void
foreign_root(void *arg)
{
    struct foreign *f = arg;
    pthread_t t;
    ws_group g;

    ws_group_init(&g, NULL);
    f->g = &g;
    for (int i = 0; i < 200; i++)
        f->own_rc |= ws_spawn(&g, bump_slow, &f->slot[i]);
    if (pthread_create(&t, NULL, foreign_thread, f) == 0)
        pthread_join(t, NULL);
    f->own_rc |= ws_run(f->other, foreign_worker, f);
    f->own_rc |= ws_sync(&g);
}

START_TEST(test_group_sync_not_owner)
{
    static struct foreign f;
    ws_pool *p = pool_new(4);

    memset(&f, 0, sizeof f);
    f.other = pool_new(2);
    f.ext_rc = f.worker_rc = -1;
    ck_assert_int_eq(ws_run(p, foreign_root, &f), 0);
    ck_assert_int_eq(f.ext_rc, EINVAL);
    ck_assert_int_eq(f.worker_rc, EINVAL);
    ck_assert_int_eq(f.own_rc, 0);
    check_once(f.slot, 200, "task");
    destroy(f.other);
    destroy(p);
}
END_TEST

START_TEST(test_group_run_einval)
{
    ws_pool *p = pool_new(2);

    atomic_store(&ran_count, 0);
    ck_assert_int_eq(ws_run(NULL, count_run, NULL), EINVAL);
    ck_assert_int_eq(ws_run(p, NULL, NULL), EINVAL);
    ck_assert_int_eq(ws_run(NULL, NULL, NULL), EINVAL);
    ck_assert_int_eq(atomic_load(&ran_count), 0);
    ck_assert_int_eq(outstanding_when_quiet(p), 0);
    ck_assert_int_eq(ws_run(p, count_run, NULL), 0);
    ck_assert_int_eq(atomic_load(&ran_count), 1);
    destroy(p);
}
END_TEST

/*
 * Submission from outside once destruction has begun: EPIPE, and the task
 * never runs.  A task holds the pool open while another thread destroys
 * it; tasks that workers spawn meanwhile still run.
 */
struct closing {
    ws_pool *pool;
    atomic_int started, release;
    unsigned char kids[64], inline_run;
    int rc, destroy_rc;
};

static void
closing_task(void *arg)
{
    struct closing *c = arg;
    ws_group g;

    atomic_store(&c->started, 1);
    while (!atomic_load(&c->release))
        sleep_ms(1);
    /* Destruction has begun: a worker's spawns still run. */
    ws_group_init(&g, NULL);
    for (int i = 0; i < 64; i++)
        c->rc |= ws_spawn(&g, bump_slow, &c->kids[i]);
    c->rc |= ws_sync(&g);
    c->rc |= ws_run(c->pool, bump, &c->inline_run);
}

static void *
destroyer(void *arg)
{
    struct closing *c = arg;
    c->destroy_rc = ws_pool_destroy(c->pool);
    return NULL;
}

START_TEST(test_group_spawn_epipe)
{
    static struct closing c;
    unsigned char late[4] = {0};
    ws_group g, before;
    pthread_t t;

    memset(&c, 0, sizeof c);
    c.destroy_rc = -1;
    c.pool = pool_new(2);
    ws_group_init(&g, c.pool);
    ws_group_init(&before, c.pool);
    ck_assert_int_eq(ws_spawn(&g, closing_task, &c), 0);
    while (!atomic_load(&c.started))
        sleep_ms(1);
    ck_assert_int_eq(pthread_create(&t, NULL, destroyer, &c), 0);
    while (!atomic_load_explicit(&c.pool->stopping, memory_order_relaxed))
        sleep_ms(1);

    ck_assert_int_eq(ws_spawn(&before, bump, &late[0]), EPIPE);
    ck_assert_int_eq(ws_spawn(&g, bump, &late[1]), EPIPE);
    ck_assert_int_eq(ws_run(c.pool, bump, &late[2]), EPIPE);
    ws_group after;
    ws_group_init(&after, c.pool);
    ck_assert_int_eq(ws_spawn(&after, bump, &late[3]), EPIPE);
    /* A group with nothing pending syncs at once. */
    ck_assert_int_eq(ws_sync(&before), 0);
    ck_assert_int_eq(ws_sync(&after), 0);

    atomic_store(&c.release, 1);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.destroy_rc, 0);
    ck_assert_int_eq(c.rc, 0);
    check_once(c.kids, 64, "spawned during destroy");
    ck_assert_int_eq(c.inline_run, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(late[i] == 0, "refused task %d ran", i);
}
END_TEST

static Suite *
group_suite(void)
{
    Suite *s = suite_create("group");
    TCase *tc;

    tc = tcase_create("basic");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_group_fib);
    tcase_add_test(tc, test_group_nqueens);
    tcase_add_test(tc, test_group_reuse);
    tcase_add_test(tc, test_group_run_inline);
    tcase_add_test(tc, test_group_nonnested);
    tcase_add_test(tc, test_group_handed);
    tcase_add_test(tc, test_group_external_into_worker_group);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_group_create_einval);
    tcase_add_test(tc, test_group_destroy_edeadlk);
    tcase_add_test(tc, test_group_spawn_einval);
    tcase_add_test(tc, test_group_sync_not_owner);
    tcase_add_test(tc, test_group_run_einval);
    tcase_add_test(tc, test_group_spawn_epipe);
    tcase_add_test(tc, test_group_pool_create_enomem);
    tcase_add_test(tc, test_group_spawn_enomem_external);
    tcase_add_test(tc, test_group_spawn_enomem_inline);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_group_external_threads);
    tcase_add_test(tc, test_group_pool_cycles);
    tcase_add_test(tc, test_group_destroy_runs_all);
    tcase_add_test(tc, test_group_sync_blocks);
    tcase_add_test(tc, test_group_fork_child);
    tcase_add_test(tc, test_group_fork_in_task);
    tcase_add_test(tc, test_group_sync_deep_injected);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_group_million_children);
    tcase_add_test(tc, test_group_deque_growth);
    tcase_add_test(tc, test_group_spawn_no_alloc);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(group_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
