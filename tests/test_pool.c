/*
 * Pools: the placement plan and victim order on hwloc synthetic topologies,
 * options and environment variables, worker indices, counters, the
 * WSCHED_STATS report, and idle CPU use.
 *
 * Synthetic machines (HWLOC_SYNTHETIC, set inside each test: every test runs
 * in its own process) describe machines larger than this one; binding on
 * them does nothing, so the tests check the plan.  The tests that look at
 * real binding only compare the process's own affinity with what workers
 * get, so they hold on any host.
 *
 * The program is linked with --wrap=pthread_create so that a test can make
 * the n-th thread creation fail.
 */
#define _GNU_SOURCE
#include <check.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <wsched.h>

#include "pool.h"
#include "topo.h"
#include "worker.h"

#define SYN_L3 "pack:2 l3:2 core:4 pu:2"
/* hwloc 2 needs PUs as the last level; one per core, as "pack:4 core:16". */
#define SYN_PACK4 "pack:4 core:16 pu:1"

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

/* Threads of this process, from /proc/self/task. */
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

static double
cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Moves every thread of the process, as taskset -a does. */
static void
set_process_affinity(const cpu_set_t *set)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            ck_assert_int_eq(
                sched_setaffinity(atoi(e->d_name), sizeof *set, set), 0);
    closedir(d);
}

static void
synthetic(const char *desc)
{
    ck_assert_int_eq(setenv("HWLOC_SYNTHETIC", desc, 1), 0);
}

static ws__plan *
plan_new(unsigned workers, int bind, const char *cpus)
{
    ws__plan *p = NULL;
    ck_assert_int_eq(ws__plan_create(&p, workers, bind, cpus), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

/*
 * Level k of worker w's victims, as a bit set of worker indices (the plan
 * orders a level by rotation; stealing randomises within it).
 */
typedef struct {
    uint64_t bits[16]; /* up to 1024 workers */
    unsigned n;
} wset;

static void
wset_add(wset *s, unsigned w)
{
    ck_assert_uint_lt(w, 1024);
    ck_assert_msg(!(s->bits[w / 64] >> (w % 64) & 1),
                  "worker %u listed twice", w);
    s->bits[w / 64] |= 1ull << (w % 64);
    s->n++;
}

static bool
wset_has(const wset *s, unsigned w)
{
    return s->bits[w / 64] >> (w % 64) & 1;
}

static unsigned
level_count(const ws__plan *p, unsigned w)
{
    unsigned nl;
    ws__plan_levels(p, w, &nl);
    return nl;
}

static wset
level_set(const ws__plan *p, unsigned w, unsigned k)
{
    unsigned n, nl;
    const unsigned *v = ws__plan_victims(p, w, &n);
    const unsigned *lv = ws__plan_levels(p, w, &nl);
    wset s = {{0}, 0};

    ck_assert_uint_lt(k, nl);
    ck_assert_uint_le(lv[nl - 1], n);
    unsigned lo = k == 0 ? 0 : lv[k - 1];
    ck_assert_uint_lt(lo, lv[k]);
    for (unsigned i = lo; i < lv[k]; i++) {
        ck_assert_uint_lt(v[i], ws__plan_workers(p));
        ck_assert_uint_ne(v[i], w);
        wset_add(&s, v[i]);
    }
    return s;
}

/* Every worker but w appears exactly once among w's victims. */
static void
check_victims_complete(const ws__plan *p, unsigned w)
{
    unsigned n, nl;
    const unsigned *v = ws__plan_victims(p, w, &n);
    const unsigned *lv = ws__plan_levels(p, w, &nl);
    wset s = {{0}, 0};

    ck_assert_uint_eq(n, ws__plan_workers(p) - 1);
    ck_assert_uint_eq(nl > 0 ? lv[nl - 1] : 0, n);
    for (unsigned i = 0; i < n; i++) {
        ck_assert_uint_ne(v[i], w);
        wset_add(&s, v[i]);
    }
}

/* Level k of worker w is exactly { v != w : same(w, v) }. */
static void
check_level(const ws__plan *p, unsigned w, unsigned k,
            bool (*member)(unsigned w, unsigned v))
{
    wset s = level_set(p, w, k);
    unsigned expect = 0;

    for (unsigned v = 0; v < ws__plan_workers(p); v++) {
        if (v == w || !member(w, v))
            continue;
        expect++;
        ck_assert_msg(wset_has(&s, v), "worker %u: level %u lacks %u", w, k,
                      v);
    }
    ck_assert_msg(s.n == expect, "worker %u: level %u has %u, expected %u",
                  w, k, s.n, expect);
}

/* Runs fn once on every worker of pool, all of them at the same time. */
struct each {
    pthread_barrier_t barrier;
    void (*fn)(struct each *, int index);
    void *ctx;
};

static void
each_task(void *arg)
{
    struct each *e = arg;
    /* Every worker holds one of these until all have one: n distinct. */
    pthread_barrier_wait(&e->barrier);
    e->fn(e, ws_worker_index());
}

static void
run_on_each_worker(ws_pool *pool, void (*fn)(struct each *, int), void *ctx)
{
    unsigned n = ws_pool_size(pool);
    struct each e = {.fn = fn, .ctx = ctx};
    ws_group g;

    ck_assert_int_eq(pthread_barrier_init(&e.barrier, NULL, n), 0);
    ws_group_init(&g, pool);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(ws_spawn(&g, each_task, &e), 0);
    ck_assert_int_eq(ws_sync(&g), 0);
    pthread_barrier_destroy(&e.barrier);
}

static ws_pool *
pool_new(unsigned workers, int bind)
{
    ws_pool_opts o = {.workers = workers, .bind = bind};
    ws_pool *p = NULL;
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* pthread_create that fails with EAGAIN on the fail_thread-th call. */
int __real_pthread_create(pthread_t *, const pthread_attr_t *,
                          void *(*)(void *), void *);
int __wrap_pthread_create(pthread_t *, const pthread_attr_t *,
                          void *(*)(void *), void *);
static _Thread_local int fail_thread = -1;

int
__wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                      void *(*fn)(void *), void *arg)
{
    if (fail_thread >= 0 && fail_thread-- == 0)
        return EAGAIN;
    return __real_pthread_create(t, a, fn, arg);
}

/* ------------------------------------------------------------------ */
/* Placement plan and victim order (synthetic machines)               */
/* ------------------------------------------------------------------ */

/* SYN_L3, one worker per core: core c is worker c. */
static bool
same_l3(unsigned w, unsigned v)
{
    return w / 4 == v / 4;
}

static bool
same_pack_other_l3(unsigned w, unsigned v)
{
    return w / 8 == v / 8 && w / 4 != v / 4;
}

static bool
other_pack(unsigned w, unsigned v)
{
    return w / 8 != v / 8;
}

START_TEST(test_pool_plan_default)
{
    synthetic(SYN_L3);
    ws__plan *p = plan_new(0, WS_BIND_CORE, NULL);

    ck_assert_uint_eq(ws__plan_workers(p), 16);
    ck_assert_uint_eq(ws__plan_cores(p), 16);

    /* Worker 0: its L3, the other L3 of its package, the other package. */
    ck_assert_uint_eq(level_count(p, 0), 3);
    wset l0 = level_set(p, 0, 0), l1 = level_set(p, 0, 1),
         l2 = level_set(p, 0, 2);
    ck_assert_uint_eq(l0.n, 3);
    for (unsigned v = 1; v <= 3; v++)
        ck_assert(wset_has(&l0, v));
    ck_assert_uint_eq(l1.n, 4);
    for (unsigned v = 4; v <= 7; v++)
        ck_assert(wset_has(&l1, v));
    ck_assert_uint_eq(l2.n, 8);
    for (unsigned v = 8; v <= 15; v++)
        ck_assert(wset_has(&l2, v));

    for (unsigned w = 0; w < 16; w++) {
        /* Core w has PUs 2w and 2w + 1: the plan names the lowest. */
        ck_assert_int_eq(ws__plan_place(p, w), (int)(2 * w));
        check_victims_complete(p, w);
        ck_assert_uint_eq(level_count(p, w), 3);
        check_level(p, w, 0, same_l3);
        check_level(p, w, 1, same_pack_other_l3);
        check_level(p, w, 2, other_pack);
        /* Binding on a synthetic machine does nothing, and succeeds. */
        ck_assert_int_eq(ws__plan_bind(p, w), 0);
    }
    ws__plan_destroy(p);
}
END_TEST

/* SYN_L3 with PU binding, 32 workers: w < 16 on core w, w >= 16 beside. */
static unsigned
pu_core(unsigned w)
{
    return w % 16;
}

static bool
pu_same_core(unsigned w, unsigned v)
{
    return pu_core(w) == pu_core(v);
}

static bool
pu_same_l3(unsigned w, unsigned v)
{
    return pu_core(w) != pu_core(v) && pu_core(w) / 4 == pu_core(v) / 4;
}

static bool
pu_same_pack(unsigned w, unsigned v)
{
    return pu_core(w) / 4 != pu_core(v) / 4 && pu_core(w) / 8 == pu_core(v) / 8;
}

static bool
pu_other_pack(unsigned w, unsigned v)
{
    return pu_core(w) / 8 != pu_core(v) / 8;
}

START_TEST(test_pool_plan_pu)
{
    synthetic(SYN_L3);
    ws__plan *p = plan_new(32, WS_BIND_PU, NULL);

    ck_assert_uint_eq(ws__plan_workers(p), 32);
    ck_assert_uint_eq(ws__plan_cores(p), 16);
    for (unsigned w = 0; w < 32; w++) {
        /* Spread over cores first: the first PUs, then the second ones. */
        int expect = w < 16 ? (int)(2 * w) : (int)(2 * (w - 16) + 1);
        ck_assert_int_eq(ws__plan_place(p, w), expect);
        check_victims_complete(p, w);
        ck_assert_uint_eq(level_count(p, w), 4);
        /* The two workers of one core are each other's first level. */
        wset l0 = level_set(p, w, 0);
        ck_assert_uint_eq(l0.n, 1);
        ck_assert(wset_has(&l0, w ^ 16));
        check_level(p, w, 0, pu_same_core);
        check_level(p, w, 1, pu_same_l3);
        check_level(p, w, 2, pu_same_pack);
        check_level(p, w, 3, pu_other_pack);
    }
    ws__plan_destroy(p);

    /* The default count is still one per core, each on its own core. */
    p = plan_new(0, WS_BIND_PU, NULL);
    ck_assert_uint_eq(ws__plan_workers(p), 16);
    for (unsigned w = 0; w < 16; w++)
        ck_assert_int_eq(ws__plan_place(p, w), (int)(2 * w));
    ws__plan_destroy(p);

    /* Fewer workers than cores: still one core each. */
    p = plan_new(5, WS_BIND_PU, NULL);
    for (unsigned w = 0; w < 5; w++)
        ck_assert_int_eq(ws__plan_place(p, w), (int)(2 * w));
    ws__plan_destroy(p);
}
END_TEST

static bool
same_pack16(unsigned w, unsigned v)
{
    return w / 16 == v / 16;
}

static bool
other_pack16(unsigned w, unsigned v)
{
    return w / 16 != v / 16;
}

START_TEST(test_pool_plan_pack4)
{
    synthetic(SYN_PACK4);
    ws__plan *p = plan_new(0, WS_BIND_CORE, NULL);

    ck_assert_uint_eq(ws__plan_workers(p), 64);
    ck_assert_uint_eq(ws__plan_cores(p), 64);
    wset l0 = level_set(p, 0, 0);
    ck_assert_uint_eq(l0.n, 15);
    for (unsigned v = 1; v < 16; v++)
        ck_assert(wset_has(&l0, v));
    for (unsigned w = 0; w < 64; w++) {
        ck_assert_int_eq(ws__plan_place(p, w), (int)w);
        check_victims_complete(p, w);
        ck_assert_uint_eq(level_count(p, w), 2);
        check_level(p, w, 0, same_pack16);
        check_level(p, w, 1, other_pack16);
    }
    ws__plan_destroy(p);
}
END_TEST

/* More workers than cores: round-robin, core sharers closest. */
START_TEST(test_pool_plan_oversubscribed)
{
    synthetic(SYN_L3);
    ws__plan *p = plan_new(40, WS_BIND_CORE, NULL);

    ck_assert_uint_eq(ws__plan_workers(p), 40);
    for (unsigned w = 0; w < 40; w++) {
        ck_assert_int_eq(ws__plan_place(p, w), (int)(2 * (w % 16)));
        check_victims_complete(p, w);
        /* The workers sharing w's core come first. */
        wset l0 = level_set(p, w, 0);
        unsigned sharers = 0;
        for (unsigned v = w % 16; v < 40; v += 16)
            if (v != w) {
                sharers++;
                ck_assert(wset_has(&l0, v));
            }
        ck_assert_uint_eq(l0.n, sharers);
    }
    ws__plan_destroy(p);
}
END_TEST

START_TEST(test_pool_plan_none)
{
    synthetic(SYN_L3);
    ws__plan *p = plan_new(0, WS_BIND_NONE, NULL);

    /* Unbound workers still count cores and know their neighbours. */
    ck_assert_uint_eq(ws__plan_workers(p), 16);
    for (unsigned w = 0; w < 16; w++) {
        ck_assert_int_eq(ws__plan_place(p, w), (int)(2 * w));
        ck_assert_int_eq(ws__plan_bind(p, w), 0);
        check_level(p, w, 0, same_l3);
    }
    ws__plan_destroy(p);
}
END_TEST

START_TEST(test_pool_plan_cpus)
{
    synthetic(SYN_L3);
    /* PUs 0-3 are cores 0 and 1, PU 8 is core 4 (other L3). */
    ws__plan *p = plan_new(0, WS_BIND_CORE, "0-3,8");
    ck_assert_uint_eq(ws__plan_workers(p), 3);
    ck_assert_uint_eq(ws__plan_cores(p), 3);
    ck_assert_int_eq(ws__plan_place(p, 0), 0);
    ck_assert_int_eq(ws__plan_place(p, 1), 2);
    ck_assert_int_eq(ws__plan_place(p, 2), 8);
    wset l0 = level_set(p, 0, 0);
    ck_assert_uint_eq(l0.n, 1);
    ck_assert(wset_has(&l0, 1));
    ck_assert_uint_eq(level_count(p, 2), 1);
    ws__plan_destroy(p);

    /* PU binding uses only listed PUs: PU 9 of core 4 is not one. */
    p = plan_new(5, WS_BIND_PU, "0-3,8");
    int expect[5] = {0, 2, 8, 1, 3};
    for (unsigned w = 0; w < 5; w++)
        ck_assert_int_eq(ws__plan_place(p, w), expect[w]);
    ws__plan_destroy(p);

    /* Half a core still counts as that core; the place is inside the list. */
    p = plan_new(0, WS_BIND_CORE, "1,5");
    ck_assert_uint_eq(ws__plan_workers(p), 2);
    ck_assert_int_eq(ws__plan_place(p, 0), 1);
    ck_assert_int_eq(ws__plan_place(p, 1), 5);
    ws__plan_destroy(p);

    /* A list reaching past the machine keeps what exists. */
    p = plan_new(0, WS_BIND_CORE, "30-4000");
    ck_assert_uint_eq(ws__plan_workers(p), 1);
    ck_assert_int_eq(ws__plan_place(p, 0), 30);
    ws__plan_destroy(p);
}
END_TEST

START_TEST(test_pool_plan_cpus_einval)
{
    static const char *bad[] = {"",    "a",     "3-1", "1,",  ",1",
                                "1-",  "-1",    "1,,2", " 1",  "1 ",
                                "0x3", "1-2-3", "99999999999999999999",
                                /* well formed, but no CPU of the machine */
                                "1000", "64-100"};
    synthetic(SYN_L3);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws__plan *p = (ws__plan *)&bad[i];
        ck_assert_msg(ws__plan_create(&p, 0, WS_BIND_CORE, bad[i]) == EINVAL,
                      "cpus \"%s\" accepted", bad[i]);
        ck_assert_ptr_eq(p, (ws__plan *)&bad[i]);
        ws_pool_opts o = {.cpus = bad[i]};
        ws_pool *pool = (ws_pool *)&bad[i];
        ck_assert_int_eq(ws_pool_create(&pool, &o), EINVAL);
        ck_assert_ptr_eq(pool, (ws_pool *)&bad[i]);
    }
    ck_assert_int_eq(ws__plan_check_list("0-3,8"), 0);
    ck_assert_int_eq(ws__plan_check_list(NULL), EINVAL);
}
END_TEST

START_TEST(test_pool_plan_bind_einval)
{
    ws__plan *p = NULL;

    synthetic(SYN_L3);
    ck_assert_int_eq(ws__plan_create(&p, 0, 3, NULL), EINVAL);
    ck_assert_int_eq(ws__plan_create(&p, 0, -1, NULL), EINVAL);
    ck_assert_ptr_null(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Pools: options, environment, indices                               */
/* ------------------------------------------------------------------ */

START_TEST(test_pool_create_defaults)
{
    ws_pool *p;
    ws_pool_opts zero = {0};

    /* NULL and all-zero options mean the same: one worker per core. */
    synthetic(SYN_L3);
    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    ck_assert_uint_eq(ws_pool_size(p), 16);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    ck_assert_int_eq(ws_pool_create(&p, &zero), 0);
    ck_assert_uint_eq(ws_pool_size(p), 16);
    for (unsigned w = 0; w < 16; w++)
        ck_assert_int_eq(ws__plan_place(p->plan, w), (int)(2 * w));
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* The real machine: as many workers as the plan counts cores. */
    unsetenv("HWLOC_SYNTHETIC");
    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    ck_assert_uint_ge(ws_pool_size(p), 1);
    ck_assert_uint_eq(ws_pool_size(p), ws__plan_cores(p->plan));
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    ck_assert_uint_eq(ws_pool_size(NULL), 0);
}
END_TEST

START_TEST(test_pool_opts_workers)
{
    ws_pool *p;

    /* More workers than cores is allowed (blocking work). */
    p = pool_new(3, WS_BIND_NONE);
    ck_assert_uint_eq(ws_pool_size(p), 3);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    p = pool_new(64, WS_BIND_NONE);
    ck_assert_uint_eq(ws_pool_size(p), 64);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    p = pool_new(1, WS_BIND_CORE);
    ck_assert_uint_eq(ws_pool_size(p), 1);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_pool_opts_cpus)
{
    ws_pool_opts o = {.cpus = "0-3,8"};
    ws_pool *p;

    synthetic(SYN_L3);
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 3);
    ck_assert_int_eq(ws__plan_place(p->plan, 2), 8);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    o.workers = 5;
    o.bind = WS_BIND_PU;
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 5);
    ck_assert_int_eq(ws__plan_place(p->plan, 3), 1);
    ck_assert_int_eq(ws__plan_place(p->plan, 4), 3);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_pool_env_workers)
{
    ws_pool_opts o = {.bind = WS_BIND_NONE};
    ws_pool *p;

    ck_assert_int_eq(setenv("WSCHED_WORKERS", "3", 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 3);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    ck_assert_uint_eq(ws_pool_size(p), 3);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* An option that is set wins over the environment. */
    o.workers = 2;
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 2);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_pool_env_bind)
{
    ws_pool_opts o = {.workers = 32};
    ws_pool *p;

    /* On SYN_L3 worker 16 shares core 0 under PU binding, else core 0. */
    synthetic(SYN_L3);
    ck_assert_int_eq(setenv("WSCHED_BIND", "pu", 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_int_eq(ws__plan_place(p->plan, 16), 1);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    ck_assert_int_eq(setenv("WSCHED_BIND", "core", 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_int_eq(ws__plan_place(p->plan, 16), 0);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* An option that is set wins over the environment. */
    ck_assert_int_eq(setenv("WSCHED_BIND", "none", 1), 0);
    o.bind = WS_BIND_PU;
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_int_eq(ws__plan_place(p->plan, 16), 1);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

/* Each worker's own affinity, as seen from inside a task. */
struct affinity {
    ws_pool *pool;
    cpu_set_t set[64];
    int seen[64];
};

static void
record_affinity(struct each *e, int index)
{
    struct affinity *a = e->ctx;
    if (index < 0 || index >= 64)
        return;
    a->seen[index]++;
    sched_getaffinity(0, sizeof a->set[index], &a->set[index]);
}

/*
 * Real binding: a pinned worker runs inside the CPUs of its place and
 * never outside the process's; an unbound one keeps the process's set.
 */
START_TEST(test_pool_env_bind_real)
{
    static struct affinity a;
    cpu_set_t proc;
    ws_pool *p;

    ck_assert_int_eq(sched_getaffinity(0, sizeof proc, &proc), 0);

    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    unsigned n = ws_pool_size(p);
    ck_assert_uint_le(n, 64);
    memset(&a, 0, sizeof a);
    run_on_each_worker(p, record_affinity, &a);
    for (unsigned w = 0; w < n; w++) {
        cpu_set_t out;
        ck_assert_int_eq(a.seen[w], 1);
        ck_assert(CPU_ISSET(ws__plan_place(p->plan, w), &a.set[w]));
        CPU_AND(&out, &a.set[w], &proc);
        ck_assert(CPU_EQUAL(&out, &a.set[w]));
        /* With two cores or more, a core is less than the whole set. */
        if (ws__plan_cores(p->plan) > 1)
            ck_assert_int_lt(CPU_COUNT(&a.set[w]), CPU_COUNT(&proc));
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    ck_assert_int_eq(setenv("WSCHED_BIND", "none", 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    memset(&a, 0, sizeof a);
    run_on_each_worker(p, record_affinity, &a);
    for (unsigned w = 0; w < ws_pool_size(p); w++) {
        ck_assert_int_eq(a.seen[w], 1);
        ck_assert(CPU_EQUAL(&a.set[w], &proc));
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_pool_env_cpus)
{
    ws_pool *p;
    ws_pool_opts o = {0};

    synthetic(SYN_L3);
    ck_assert_int_eq(setenv("WSCHED_CPUS", "0-3,8", 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    ck_assert_uint_eq(ws_pool_size(p), 3);
    ck_assert_int_eq(ws__plan_place(p->plan, 0), 0);
    ck_assert_int_eq(ws__plan_place(p->plan, 1), 2);
    ck_assert_int_eq(ws__plan_place(p->plan, 2), 8);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* An option that is set wins over the environment. */
    o.cpus = "4-5";
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 1);
    ck_assert_int_eq(ws__plan_place(p->plan, 0), 4);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

static void
record_cpu(void *arg)
{
    *(int *)arg = sched_getcpu();
}

/*
 * The process's own affinity (taskset) narrows the machine: on one CPU the
 * default pool has one worker, on that CPU, and other CPUs are refused.
 */
START_TEST(test_pool_affinity)
{
    cpu_set_t proc, one;
    int c0 = -1;
    char other[16];
    ws_pool *p;

    ck_assert_int_eq(sched_getaffinity(0, sizeof proc, &proc), 0);
    for (int c = 0; c < CPU_SETSIZE && c0 < 0; c++)
        if (CPU_ISSET(c, &proc))
            c0 = c;
    ck_assert_int_ge(c0, 0);
    CPU_ZERO(&one);
    CPU_SET(c0, &one);
    set_process_affinity(&one);

    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    ck_assert_uint_eq(ws_pool_size(p), 1);
    ck_assert_int_eq(ws__plan_place(p->plan, 0), c0);
    int cpu = -1;
    ck_assert_int_eq(ws_run(p, record_cpu, &cpu), 0);
    ck_assert_int_eq(cpu, c0);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* Even with more workers, none leaves the allowed CPU. */
    ws_pool_opts o = {.workers = 3};
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    for (unsigned w = 0; w < 3; w++)
        ck_assert_int_eq(ws__plan_place(p->plan, w), c0);
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* Another CPU is outside the process's set, whether it exists or not. */
    int threads = thread_count();
    snprintf(other, sizeof other, "%d", c0 + 1);
    ws_pool *keep = (ws_pool *)&o;
    p = keep;
    o.workers = 0;
    o.cpus = other;
    ck_assert_int_eq(ws_pool_create(&p, &o), EINVAL);
    ck_assert_ptr_eq(p, keep);
    ck_assert_int_eq(setenv("WSCHED_CPUS", other, 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, NULL), EINVAL);
    ck_assert_ptr_eq(p, keep);
    ck_assert_int_eq(thread_count(), threads);
}
END_TEST

static void
record_index(struct each *e, int index)
{
    int *seen = e->ctx;
    if (index >= 0 && index < 64)
        seen[index]++;
    else
        seen[64]++;
}

static void *
index_thread(void *arg)
{
    *(int *)arg = ws_worker_index();
    return NULL;
}

START_TEST(test_pool_worker_index)
{
    int seen[65];
    int outside = 0;
    pthread_t t;

    ck_assert_int_eq(ws_worker_index(), -1);
    for (unsigned n = 1; n <= 8; n *= 2) {
        ws_pool *p = pool_new(n, WS_BIND_NONE);
        ck_assert_uint_eq(ws_pool_size(p), n);
        memset(seen, 0, sizeof seen);
        run_on_each_worker(p, record_index, seen);
        for (unsigned w = 0; w < n; w++)
            ck_assert_msg(seen[w] == 1, "%u workers: index %u seen %d times",
                          n, w, seen[w]);
        ck_assert_int_eq(seen[64], 0);
        /* Still -1 outside, in the main thread and in any other. */
        ck_assert_int_eq(ws_worker_index(), -1);
        outside = 0;
        ck_assert_int_eq(pthread_create(&t, NULL, index_thread, &outside),
                         0);
        pthread_join(t, NULL);
        ck_assert_int_eq(outside, -1);
        ck_assert_int_eq(ws_pool_destroy(p), 0);
    }
}
END_TEST

/* A worker of one pool using another: its index there is its own pool's. */
struct two {
    ws_pool *a, *b;
    int in_a, in_b;
    pthread_t ta, tb;
};

static void
in_b(void *arg)
{
    struct two *t = arg;
    t->in_b = ws_worker_index();
    t->tb = pthread_self();
}

static void
in_a(void *arg)
{
    struct two *t = arg;
    t->in_a = ws_worker_index();
    t->ta = pthread_self();
    if (ws_run(t->b, in_b, t) != 0)
        t->in_b = -2;
}

START_TEST(test_pool_two_pools)
{
    struct two t = {.in_a = -5, .in_b = -5};

    t.a = pool_new(2, WS_BIND_NONE);
    t.b = pool_new(3, WS_BIND_NONE);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(ws_run(t.a, in_a, &t), 0);
        ck_assert_int_ge(t.in_a, 0);
        ck_assert_int_lt(t.in_a, 2);
        ck_assert_int_ge(t.in_b, 0);
        ck_assert_int_lt(t.in_b, 3);
        ck_assert(!pthread_equal(t.ta, t.tb));
    }
    ck_assert_int_eq(ws_pool_destroy(t.b), 0);
    ck_assert_int_eq(ws_pool_destroy(t.a), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Bad options and environment values                                 */
/* ------------------------------------------------------------------ */

static void
expect_create_einval(const ws_pool_opts *o, const char *what)
{
    ws_pool *sentinel = (ws_pool *)&sentinel, *p = sentinel;
    int threads = thread_count();

    ck_assert_msg(ws_pool_create(&p, o) == EINVAL, "%s accepted", what);
    ck_assert_msg(p == sentinel, "%s: output changed", what);
    ck_assert_msg(thread_count() == threads, "%s: threads left", what);
}

START_TEST(test_pool_create_einval)
{
    ws_pool_opts o;

    ck_assert_int_eq(ws_pool_create(NULL, NULL), EINVAL);
    o = (ws_pool_opts){.workers = 1025};
    expect_create_einval(&o, "workers 1025");
    o = (ws_pool_opts){.workers = UINT32_MAX};
    expect_create_einval(&o, "workers UINT_MAX");
    o = (ws_pool_opts){.bind = 3};
    expect_create_einval(&o, "bind 3");
    o = (ws_pool_opts){.bind = -1};
    expect_create_einval(&o, "bind -1");
    o = (ws_pool_opts){.cpus = ""};
    expect_create_einval(&o, "cpus \"\"");
    o = (ws_pool_opts){.cpus = "3-1"};
    expect_create_einval(&o, "cpus 3-1");
    o = (ws_pool_opts){.cpus = "1,"};
    expect_create_einval(&o, "cpus 1,");
    o = (ws_pool_opts){.cpus = "a"};
    expect_create_einval(&o, "cpus a");
    o = (ws_pool_opts){.cpus = "60000"};
    expect_create_einval(&o, "cpus 60000");
    /* A bad option is refused even when the environment would be good. */
    ck_assert_int_eq(setenv("WSCHED_BIND", "core", 1), 0);
    o = (ws_pool_opts){.bind = 7};
    expect_create_einval(&o, "bind 7 with WSCHED_BIND");
}
END_TEST

START_TEST(test_pool_env_einval)
{
    static const char *workers[] = {"", "0", "-1", "x", "3x", " 3", "+3",
                                    "1025", "99999999999999999999", "0x4"};
    static const char *binds[] = {"", "CORE", "cores", "pu ", "numa", "1"};
    static const char *cpus[] = {"", "a", "3-1", "1,", "60000"};

    for (size_t i = 0; i < sizeof workers / sizeof workers[0]; i++) {
        ck_assert_int_eq(setenv("WSCHED_WORKERS", workers[i], 1), 0);
        expect_create_einval(NULL, workers[i]);
    }
    unsetenv("WSCHED_WORKERS");
    for (size_t i = 0; i < sizeof binds / sizeof binds[0]; i++) {
        ck_assert_int_eq(setenv("WSCHED_BIND", binds[i], 1), 0);
        expect_create_einval(NULL, binds[i]);
    }
    unsetenv("WSCHED_BIND");
    for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; i++) {
        ck_assert_int_eq(setenv("WSCHED_CPUS", cpus[i], 1), 0);
        expect_create_einval(NULL, cpus[i]);
    }
    unsetenv("WSCHED_CPUS");

    /* A variable whose option is set is not read at all. */
    ws_pool_opts o = {.workers = 2, .bind = WS_BIND_NONE, .cpus = NULL};
    ws_pool *p;
    ck_assert_int_eq(setenv("WSCHED_WORKERS", "junk", 1), 0);
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 2);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_pool_create_eagain)
{
    ws_pool_opts o = {.workers = 4, .bind = WS_BIND_NONE};
    ws_pool *p;
    int threads;

    /* Threads a sanitizer's runtime starts with the first one count too. */
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    threads = thread_count();
    for (int k = 0; k < 4; k++) {
        ws_pool *sentinel = (ws_pool *)&o, *p = sentinel;
        fail_thread = k;
        ck_assert_int_eq(ws_pool_create(&p, &o), EAGAIN);
        fail_thread = -1;
        ck_assert_ptr_eq(p, sentinel);
        /* The workers already started were joined: nothing is left. */
        ck_assert_int_eq(thread_count(), threads);
    }
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 4);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_pool_stats_einval)
{
    ws_stats s, keep;
    ws_pool *p = pool_new(2, WS_BIND_NONE);

    memset(&s, 0xa5, sizeof s);
    keep = s;
    ck_assert_int_eq(ws_pool_stats(NULL, 0, &s), EINVAL);
    ck_assert_int_eq(ws_pool_stats(p, 2, &s), EINVAL);
    ck_assert_int_eq(ws_pool_stats(p, UINT32_MAX, &s), EINVAL);
    ck_assert_mem_eq(&s, &keep, sizeof s);
    ck_assert_int_eq(ws_pool_stats(p, 0, NULL), EINVAL);
    ck_assert_int_eq(ws_pool_stats(p, 1, &s), 0);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Counters and the WSCHED_STATS report                               */
/* ------------------------------------------------------------------ */

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

/* Spawns made by fib_task(n): one per call with n >= 2. */
static uint64_t
fib_spawns(int n)
{
    uint64_t s[64] = {0};
    for (int i = 2; i <= n; i++)
        s[i] = 1 + s[i - 1] + s[i - 2];
    return s[n];
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

START_TEST(test_pool_stats_counts)
{
    const unsigned n = 4;
    ws_pool *p = pool_new(n, WS_BIND_NONE);
    ws_stats s;
    uint64_t tasks = 0, spawns = 0, steals = 0;
    unsigned long runs = scaled(3);
    const int depth = 22;

    for (unsigned w = 0; w < n; w++) {
        ck_assert_int_eq(ws_pool_stats(p, w, &s), 0);
        ck_assert_uint_eq(s.tasks, 0);
        ck_assert_uint_eq(s.spawns, 0);
        ck_assert_uint_eq(s.steals, 0);
    }
    for (unsigned long i = 0; i < runs; i++) {
        struct fib f = {depth, 0};
        ck_assert_int_eq(ws_run(p, fib_task, &f), 0);
        ck_assert_int_eq(f.r, fib_seq(depth));
    }
    /* Quiet now: every counted task finished before ws_run returned. */
    sleep_ms(20);
    for (unsigned w = 0; w < n; w++) {
        ck_assert_int_eq(ws_pool_stats(p, w, &s), 0);
        tasks += s.tasks;
        spawns += s.spawns;
        steals += s.steals;
    }
    ck_assert_uint_eq(spawns, runs * fib_spawns(depth));
    /* Every spawned task ran once, and so did each root. */
    ck_assert_uint_eq(tasks, spawns + runs);
    ck_assert_uint_le(steals, spawns);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

static void
nothing(void *arg)
{
    (void)arg;
}

/* Counters read while the pool runs: never going back, never torn. */
struct watch {
    ws_pool *pool;
    atomic_int stop;
    int bad, reads;
};

static void *
watch_thread(void *arg)
{
    struct watch *wt = arg;
    unsigned n = ws_pool_size(wt->pool);
    ws_stats last[8] = {{0}}, s;

    /* At least one pass, however late this thread gets to run. */
    do {
        for (unsigned w = 0; w < n; w++) {
            if (ws_pool_stats(wt->pool, w, &s) != 0)
                wt->bad++;
            if (s.spawns < last[w].spawns || s.steals < last[w].steals ||
                s.failed_steals < last[w].failed_steals ||
                s.sleeps < last[w].sleeps)
                wt->bad++;
            last[w] = s;
            wt->reads++;
        }
        sched_yield();
    } while (!atomic_load(&wt->stop));
    return NULL;
}

START_TEST(test_pool_stats_concurrent)
{
    struct watch wt = {.pool = pool_new(4, WS_BIND_NONE)};
    unsigned long runs = scaled(10);
    pthread_t t;

    ck_assert_int_eq(pthread_create(&t, NULL, watch_thread, &wt), 0);
    for (unsigned long i = 0; i < runs; i++) {
        struct fib f = {20, 0};
        ck_assert_int_eq(ws_run(wt.pool, fib_task, &f), 0);
        ck_assert_int_eq(f.r, fib_seq(20));
    }
    atomic_store(&wt.stop, 1);
    pthread_join(t, NULL);
    ck_assert_int_eq(wt.bad, 0);
    ck_assert_int_gt(wt.reads, 0);
    ck_assert_int_eq(ws_pool_destroy(wt.pool), 0);
}
END_TEST


/* Runs a pool with WSCHED_STATS as given; returns what went to stderr. */
static char *
stats_output(const char *value, unsigned workers)
{
    static char buf[65536];
    FILE *f = tmpfile();
    int saved = dup(2);
    ws_pool *p;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(saved, 0);
    if (value != NULL)
        ck_assert_int_eq(setenv("WSCHED_STATS", value, 1), 0);
    else
        unsetenv("WSCHED_STATS");
    fflush(stderr);
    ck_assert_int_ge(dup2(fileno(f), 2), 0);
    p = pool_new(workers, WS_BIND_NONE);
    struct fib fb = {15, 0};
    int rc = ws_run(p, fib_task, &fb);
    rc |= ws_run(p, nothing, NULL);
    rc |= ws_pool_destroy(p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(rc, 0);
    rewind(f);
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

START_TEST(test_pool_stats_report)
{
    const unsigned n = 5;
    char *out = stats_output("1", n);
    unsigned lines = 0, workers = 0;
    bool seen[5] = {false};

    for (char *l = out, *e; *l != '\0'; l = e + 1) {
        e = strchr(l, '\n');
        ck_assert_msg(e != NULL, "unterminated line: %s", l);
        *e = '\0';
        lines++;
        unsigned i;
        unsigned long long t, sp, st, fs, sl;
        if (sscanf(l,
                   "wsched: worker %u: tasks %llu spawns %llu steals %llu "
                   "failed_steals %llu sleeps %llu",
                   &i, &t, &sp, &st, &fs, &sl) == 6) {
            ck_assert_uint_lt(i, n);
            ck_assert(!seen[i]);
            seen[i] = true;
            workers++;
        }
    }
    ck_assert_uint_eq(workers, n);
    /* One line per worker, and at most a total line besides. */
    ck_assert_uint_le(lines, n + 1);

    ck_assert_str_eq(stats_output(NULL, n), "");
    ck_assert_str_eq(stats_output("0", n), "");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Idle pools                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_pool_idle_cpu)
{
    ws_pool *p = pool_new(4, WS_BIND_NONE);
    struct fib f = {20, 0};

    ck_assert_int_eq(ws_run(p, fib_task, &f), 0);
    ck_assert_int_eq(f.r, fib_seq(20));
    /* Let the workers finish their spinning, then measure a second. */
    sleep_ms(200);
    ws_stats before[4], after;
    for (unsigned w = 0; w < 4; w++)
        ck_assert_int_eq(ws_pool_stats(p, w, &before[w]), 0);
    double t0 = cpu_seconds();
    sleep_ms(1000);
    double used = cpu_seconds() - t0;
    ck_assert_msg(used < 0.030, "idle pool used %.1f ms of CPU in 1 s",
                  used * 1e3);
    /* Every worker slept; none ran anything meanwhile. */
    for (unsigned w = 0; w < 4; w++) {
        ck_assert_int_eq(ws_pool_stats(p, w, &after), 0);
        ck_assert_uint_gt(after.sleeps, 0);
        ck_assert_uint_eq(after.tasks, before[w].tasks);
        ck_assert_uint_eq(after.spawns, before[w].spawns);
    }

    /* Work arriving at the sleeping pool is picked up. */
    f = (struct fib){21, 0};
    ck_assert_int_eq(ws_run(p, fib_task, &f), 0);
    ck_assert_int_eq(f.r, fib_seq(21));
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

static Suite *
pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc;

    tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pool_plan_default);
    tcase_add_test(tc, test_pool_plan_pu);
    tcase_add_test(tc, test_pool_plan_pack4);
    tcase_add_test(tc, test_pool_plan_oversubscribed);
    tcase_add_test(tc, test_pool_plan_none);
    tcase_add_test(tc, test_pool_plan_cpus);
    tcase_add_test(tc, test_pool_create_defaults);
    tcase_add_test(tc, test_pool_opts_workers);
    tcase_add_test(tc, test_pool_opts_cpus);
    tcase_add_test(tc, test_pool_env_workers);
    tcase_add_test(tc, test_pool_env_bind);
    tcase_add_test(tc, test_pool_env_bind_real);
    tcase_add_test(tc, test_pool_env_cpus);
    tcase_add_test(tc, test_pool_affinity);
    tcase_add_test(tc, test_pool_worker_index);
    tcase_add_test(tc, test_pool_stats_counts);
    tcase_add_test(tc, test_pool_stats_report);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pool_plan_cpus_einval);
    tcase_add_test(tc, test_pool_plan_bind_einval);
    tcase_add_test(tc, test_pool_create_einval);
    tcase_add_test(tc, test_pool_env_einval);
    tcase_add_test(tc, test_pool_create_eagain);
    tcase_add_test(tc, test_pool_stats_einval);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pool_two_pools);
    tcase_add_test(tc, test_pool_stats_concurrent);
    tcase_add_test(tc, test_pool_idle_cpu);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
