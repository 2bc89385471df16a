/*
 * Tests of multi-process pools (lib/procpool.c): exact results for maps of
 * every shape, functions that are not thread-safe, crashes of every kind
 * on chosen items, per-item timeouts, the pool after each failure, leaks
 * over many pools, orphans when the caller dies, and bad input.
 */
#define _GNU_SOURCE
#include <config.h>

#include "procpool.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned
scale(void)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    int v = s ? atoi(s) : 1;
    return v < 1 ? 1u : (unsigned)v;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

static ws_procpool *
make_pool(unsigned n)
{
    ws_procpool *pp = NULL;
    ck_assert_int_eq(ws_procpool_create(&pp, n), 0);
    ck_assert_ptr_nonnull(pp);
    return pp;
}

/* x * x + 1, wrapping around rather than overflowing. */
static long
sq1(long x)
{
    return (long)((unsigned long)x * (unsigned long)x + 1);
}

/* x -> x * x + 1 on longs. */
static int
fn_square(const void *in, void *out, void *ctx)
{
    long x;
    (void)ctx;
    memcpy(&x, in, sizeof x);
    x = sq1(x);
    memcpy(out, &x, sizeof x);
    return 0;
}

static long *
iota(size_t n)
{
    long *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (long)i;
    return v;
}

/* Maps fn_square over n items and checks every result and status. */
static void
check_squares(ws_procpool *pp, size_t n, size_t chunk)
{
    long *in = iota(n), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(status);
    memset(status, 0x55, n * sizeof *status);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_square,
                                                   .in = in,
                                                   .in_size = sizeof(long),
                                                   .out = out,
                                                   .out_size = sizeof(long),
                                                   .n = n,
                                                   .chunk = chunk,
                                                   .status = status}),
                     0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != (long)i * (long)i + 1 || status[i] != 0;
    ck_assert_uint_eq(bad, 0);
    free(in);
    free(out);
    free(status);
}

/* ------------------------------------------------------------------ */
/* basic                                                              */
/* ------------------------------------------------------------------ */

static int
fn_never(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    abort();
}

START_TEST(test_procpool_map_empty)
{
    ws_procpool *pp = make_pool(2);
    int st = 7;
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_never,
                                                   .in_size = 1,
                                                   .out_size = 1,
                                                   .status = &st}),
                     0);
    ck_assert_int_eq(st, 7);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_default_size)
{
    /* One worker per core of the machine's allowed set. */
    ws_procpool *pp = make_pool(0);
    unsigned n = ws__procpool_size(pp);
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    check_squares(pp, 10000, 0);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_map_one)
{
    ws_procpool *pp = make_pool(2);
    check_squares(pp, 1, 0);
    long in = -12, out = 0;
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_square,
                                                   .in = &in,
                                                   .in_size = sizeof in,
                                                   .out = &out,
                                                   .out_size = sizeof out,
                                                   .n = 1}),
                     0);
    ck_assert_int_eq(out, 145);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

static const unsigned procs[] = {1, 2, 4};

START_TEST(test_procpool_map_million)
{
    ws_procpool *pp = make_pool(procs[_i]);
    ck_assert_uint_eq(ws__procpool_size(pp), procs[_i]);
    check_squares(pp, 1000000, 0);
    check_squares(pp, 1000, 0);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_chunk_sizes)
{
    ws_procpool *pp = make_pool(3);
    check_squares(pp, 10007, 1);
    check_squares(pp, 10007, 3);
    check_squares(pp, 10007, 4096);
    check_squares(pp, 10007, (size_t)1 << 40);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* Items of in_size bytes map to out_size bytes; sizes are in ctx. */
struct odd {
    size_t in_size, out_size;
};

static unsigned char
odd_in(size_t i, size_t j)
{
    return (unsigned char)(i * 7 + j * 13 + (i >> 8));
}

static unsigned char
odd_out(unsigned sum, size_t j)
{
    return (unsigned char)(sum * 31 + j);
}

static int
fn_odd(const void *in, void *out, void *ctx)
{
    const struct odd *o = ctx;
    const unsigned char *a = in;
    unsigned sum = 0;
    for (size_t j = 0; j < o->in_size; j++)
        sum += a[j];
    for (size_t j = 0; j < o->out_size; j++)
        ((unsigned char *)out)[j] = odd_out(sum, j);
    return 0;
}

static void
check_odd(ws_procpool *pp, size_t n, size_t isz, size_t osz)
{
    unsigned char *in = malloc(n * isz), *out = malloc(n * osz);
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < isz; j++)
            in[i * isz + j] = odd_in(i, j);
    struct odd o = {isz, osz};
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_odd,
                                                   .in = in,
                                                   .in_size = isz,
                                                   .out = out,
                                                   .out_size = osz,
                                                   .n = n,
                                                   .ctx = &o,
                                                   .ctx_size = sizeof o}),
                     0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned sum = 0;
        for (size_t j = 0; j < isz; j++)
            sum += odd_in(i, j);
        for (size_t j = 0; j < osz; j++)
            bad += out[i * osz + j] != odd_out(sum, j);
    }
    ck_assert_uint_eq(bad, 0);
    free(in);
    free(out);
}

START_TEST(test_procpool_odd_sizes)
{
    ws_procpool *pp = make_pool(procs[_i]);
    check_odd(pp, 100003, 1, 1);
    check_odd(pp, 30011, 3, 5);
    check_odd(pp, 20011, 13, 7);
    check_odd(pp, 5003, 1001, 3);
    check_odd(pp, 5003, 5, 999);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_big_items)
{
    /* Items too big for a ring travel one at a time through the heap. */
    ws_procpool *pp = make_pool(2);
    check_odd(pp, 13, 300001, 17);
    check_odd(pp, 13, 9, 200003);
    check_odd(pp, 7, 150001, 150003);
    check_squares(pp, 1000, 0);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* Not thread-safe: a static buffer shared by all calls in a process. */
static int
fn_static(const void *in, void *out, void *ctx)
{
    static char buf[64];
    long x;
    (void)ctx;
    memcpy(&x, in, sizeof x);
    snprintf(buf, sizeof buf, "%ld", x);
    for (int i = 0; i < 20; i++)
        sched_yield();
    long y = strtol(buf, NULL, 10) * 3;
    memcpy(out, &y, sizeof y);
    return 0;
}

START_TEST(test_procpool_static_buffer)
{
    ws_procpool *pp = make_pool(4);
    size_t n = 20000;
    long *in = iota(n), *out = calloc(n, sizeof *out);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_static,
                                                   .in = in,
                                                   .in_size = sizeof(long),
                                                   .out = out,
                                                   .out_size = sizeof(long),
                                                   .n = n,
                                                   .chunk = 7}),
                     0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != 3 * (long)i;
    ck_assert_uint_eq(bad, 0);
    free(in);
    free(out);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* ctx: add, and a counter each worker bumps in its own copy. */
struct addctx {
    long add;
    long calls;
};

static int
fn_add(const void *in, void *out, void *ctx)
{
    struct addctx *c = ctx;
    long x;
    memcpy(&x, in, sizeof x);
    x += c->add;
    c->calls++;
    memcpy(out, &x, sizeof x);
    return 0;
}

START_TEST(test_procpool_ctx)
{
    ws_procpool *pp = make_pool(2);
    size_t n = 5000;
    long *in = iota(n), *out = calloc(n, sizeof *out);
    for (long add = 1; add <= 3; add++) {
        /* Copied once per map: each map sees its own value. */
        struct addctx c = {.add = add * 1000};
        ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_add,
                                                       .in = in,
                                                       .in_size = 8,
                                                       .out = out,
                                                       .out_size = 8,
                                                       .n = n,
                                                       .ctx = &c,
                                                       .ctx_size = sizeof c}),
                         0);
        ck_assert_int_eq(c.calls, 0);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += out[i] != (long)i + add * 1000;
        ck_assert_uint_eq(bad, 0);
    }
    /* ctx_size 0: the pointer is passed as is; shared memory is shared. */
    struct addctx *sc = ws_shm_alloc(pp, sizeof *sc);
    ck_assert_ptr_nonnull(sc);
    sc->add = -7;
    sc->calls = 0;
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_add,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = 1,
                                                   .ctx = sc}),
                     0);
    ck_assert_int_eq(out[0], -7);
    ck_assert_int_eq(sc->calls, 1);
    ws_shm_free(pp, sc);
    free(in);
    free(out);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* out = table[in], the table in shared memory reached through ctx. */
static int
fn_lookup(const void *in, void *out, void *ctx)
{
    const long *table = *(long *const *)ctx;
    long x;
    memcpy(&x, in, sizeof x);
    memcpy(out, &table[x], sizeof(long));
    return 0;
}

START_TEST(test_procpool_shm_in_place)
{
    ws_procpool *pp = make_pool(2);
    check_squares(pp, 100, 0);
    /* Allocated after the workers exist, and larger than the first heap:
     * they must map it before they use it. */
    size_t n = 3000000;
    long *table = ws_shm_alloc(pp, n * sizeof *table);
    ck_assert_ptr_nonnull(table);
    for (size_t i = 0; i < n; i++)
        table[i] = (long)i * 3;
    size_t m = 100000;
    long *in = ws_shm_alloc(pp, m * sizeof *in);
    long *out = ws_shm_alloc(pp, m * sizeof *out);
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < m; i++)
        in[i] = (long)((i * 7919) % n);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_lookup,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = m,
                                                   .ctx = &table,
                                                   .ctx_size = sizeof table}),
                     0);
    size_t bad = 0;
    for (size_t i = 0; i < m; i++)
        bad += out[i] != 3 * in[i];
    ck_assert_uint_eq(bad, 0);
    /* In place in, copied out; copied in, in place out. */
    long *priv = calloc(m, sizeof *priv);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_square,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = priv,
                                                   .out_size = 8,
                                                   .n = m}),
                     0);
    for (size_t i = 0; i < m; i++)
        bad += priv[i] != sq1(in[i]);
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_square,
                                                   .in = priv,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = m}),
                     0);
    for (size_t i = 0; i < m; i++)
        bad += out[i] != sq1(priv[i]);
    ck_assert_uint_eq(bad, 0);
    free(priv);
    ws_shm_free(pp, in);
    ws_shm_free(pp, out);
    ws_shm_free(pp, table);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* Fails with EDOM on multiples of 1000 plus 7, without writing out. */
static int
fn_picky(const void *in, void *out, void *ctx)
{
    long x;
    (void)ctx;
    memcpy(&x, in, sizeof x);
    if (x % 1000 == 7)
        return x % 2000 == 7 ? EDOM : ERANGE;
    return fn_square(in, out, ctx);
}

START_TEST(test_procpool_fn_errors)
{
    ws_procpool *pp = make_pool(2);
    size_t n = 100000;
    long *in = iota(n), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    for (size_t i = 0; i < n; i++)
        out[i] = -1;
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_picky,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = n,
                                                   .status = status}),
                     EDOM);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 7)
            bad += status[i] != (i % 2000 == 7 ? EDOM : ERANGE) || out[i] != -1;
        else
            bad += status[i] != 0 || out[i] != (long)(i * i + 1);
    }
    ck_assert_uint_eq(bad, 0);
    /* Without a status array the call still says an item failed. */
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_picky,
                                                   .in = in + 1000,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = 10}),
                     ERANGE);
    free(in);
    free(out);
    free(status);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

static void *
map_thread(void *arg)
{
    ws_procpool *pp = arg;
    for (int r = 0; r < 3; r++)
        check_squares(pp, 20000 + (size_t)r * 1001, (size_t)r * 5);
    return NULL;
}

START_TEST(test_procpool_threads_share_pool)
{
    /* Maps from several threads at once run one after another. */
    ws_procpool *pp = make_pool(2);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, map_thread, pp), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* crashes and timeouts                                               */
/* ------------------------------------------------------------------ */

enum { HOW_SEGV, HOW_ABORT, HOW_EXIT, HOW_HANG, HOW_KILLME };

struct crash {
    int how;
    int n;
    long items[8];
    int *null_ptr;     /* NULL, unknown to the compiler */
    _Atomic int *pids; /* HOW_KILLME: shared, one per item */
};

static int
fn_crash(const void *in, void *out, void *ctx)
{
    const struct crash *c = ctx;
    long x;
    memcpy(&x, in, sizeof x);
    for (int k = 0; k < c->n; k++) {
        if (c->items[k] != x)
            continue;
        switch (c->how) {
        case HOW_SEGV:
            *c->null_ptr = 1;
            break;
        case HOW_ABORT:
            abort();
        case HOW_EXIT:
            _exit(3);
        case HOW_HANG:
            for (;;)
                pause();
        case HOW_KILLME:
            atomic_store(&c->pids[k], (int)getpid());
            for (;;)
                pause();
        }
    }
    return fn_square(in, out, ctx);
}

/* Kills, from outside, each process that announces itself in pids. */
struct killer {
    _Atomic int *pids;
    int n;
};

static void *
killer(void *arg)
{
    struct killer *k = arg;
    int done = 0;
    while (done < k->n) {
        for (int i = 0; i < k->n; i++) {
            int pid = atomic_exchange(&k->pids[i], 0);
            if (pid > 0) {
                kill(pid, SIGKILL);
                done++;
            }
        }
        usleep(1000);
    }
    return NULL;
}

/* Maps over n items where the chosen ones fail by how; checks that
 * exactly those fail with code, and that the pool still works. */
static void
check_crash(unsigned procs_n, int how, size_t n, const long *items, int nitems,
            double timeout_s, int code)
{
    ws_procpool *pp = make_pool(procs_n);
    struct crash c = {.how = how, .n = nitems};
    memcpy(c.items, items, (size_t)nitems * sizeof *items);
    pthread_t kt;
    struct killer k = {.n = nitems};
    if (how == HOW_KILLME) {
        c.pids = ws_shm_alloc(pp, sizeof(int) * 8);
        ck_assert_ptr_nonnull(c.pids);
        for (int i = 0; i < 8; i++)
            atomic_store(&c.pids[i], 0);
        k.pids = c.pids;
        ck_assert_int_eq(pthread_create(&kt, NULL, killer, &k), 0);
    }
    long *in = iota(n), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    for (size_t i = 0; i < n; i++)
        out[i] = -1;
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_crash,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = n,
                                                   .ctx = &c,
                                                   .ctx_size = sizeof c,
                                                   .status = status,
                                                   .timeout_s = timeout_s}),
                     code);
    if (how == HOW_KILLME)
        pthread_join(kt, NULL);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int chosen = 0;
        for (int j = 0; j < nitems; j++)
            chosen |= items[j] == (long)i;
        if (chosen)
            bad += status[i] != code || out[i] != -1;
        else
            bad += status[i] != 0 || out[i] != (long)(i * i + 1);
    }
    ck_assert_uint_eq(bad, 0);
    /* Every slot has a live worker again, and they work. */
    for (unsigned i = 0; i < procs_n; i++)
        ck_assert_int_gt(ws__procpool_worker_pid(pp, i), 0);
    check_squares(pp, 100000, 0);
    free(in);
    free(out);
    free(status);
    if (c.pids != NULL)
        ws_shm_free(pp, c.pids);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}

static const long chosen[] = {0, 17, 4999, 5000, 9999};

START_TEST(test_procpool_crash_segv)
{
    check_crash(2, HOW_SEGV, 10000, chosen, 5, 0, EOWNERDEAD);
}
END_TEST

START_TEST(test_procpool_crash_abort)
{
    check_crash(2, HOW_ABORT, 10000, chosen, 5, 0, EOWNERDEAD);
}
END_TEST

START_TEST(test_procpool_crash_exit)
{
    check_crash(4, HOW_EXIT, 10000, chosen, 5, 0, EOWNERDEAD);
}
END_TEST

START_TEST(test_procpool_crash_sigkill)
{
    check_crash(2, HOW_KILLME, 10000, chosen, 5, 0, EOWNERDEAD);
}
END_TEST

START_TEST(test_procpool_crash_one_process)
{
    /* The only worker dies, twice in a row on adjacent items. */
    static const long adj[] = {10, 11, 999};
    check_crash(1, HOW_EXIT, 1000, adj, 3, 0, EOWNERDEAD);
}
END_TEST

START_TEST(test_procpool_timeout)
{
    static const long hang[] = {3, 2500};
    check_crash(2, HOW_HANG, 5000, hang, 2, 0.2, ETIMEDOUT);
}
END_TEST

/* Sleeps 2 ms per item: well inside a generous timeout. */
static int
fn_nap(const void *in, void *out, void *ctx)
{
    usleep(2000);
    return fn_square(in, out, ctx);
}

START_TEST(test_procpool_timeout_spares_slow_items)
{
    ws_procpool *pp = make_pool(2);
    size_t n = 300;
    long *in = iota(n), *out = calloc(n, sizeof *out);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_nap,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = n,
                                                   .timeout_s = 30}),
                     0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != (long)(i * i + 1);
    ck_assert_uint_eq(bad, 0);
    free(in);
    free(out);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* On item 500, corrupts the worker's result ring, then hangs. */
static int
fn_scribble(const void *in, void *out, void *ctx)
{
    _Atomic uint64_t *head = *(_Atomic uint64_t *const *)ctx;
    long x;
    memcpy(&x, in, sizeof x);
    if (x == 500) {
        atomic_store(head, UINT64_C(0x123456789));
        for (;;)
            pause();
    }
    return fn_square(in, out, ctx);
}

START_TEST(test_procpool_corrupt_channel)
{
    /* A worker that writes nonsense into its channel is killed and
     * replaced; the item it ran fails with EPROTO, nothing else. */
    ws_procpool *pp = make_pool(1);
    _Atomic uint64_t *head = ws__procpool_result_head(pp, 0);
    size_t n = 3000;
    long *in = iota(n), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    for (size_t i = 0; i < n; i++)
        out[i] = -1;
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_scribble,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = n,
                                                   .ctx = &head,
                                                   .ctx_size = sizeof head,
                                                   .status = status}),
                     EPROTO);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 500)
            bad += status[i] != EPROTO || out[i] != -1;
        else
            bad += status[i] != 0 || out[i] != (long)(i * i + 1);
    }
    ck_assert_uint_eq(bad, 0);
    check_squares(pp, 10000, 0);
    free(in);
    free(out);
    free(status);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* Item 0 stops its own worker; the others nap 1 ms. */
static int
fn_stop_first(const void *in, void *out, void *ctx)
{
    long x;
    memcpy(&x, in, sizeof x);
    if (x == 0)
        raise(SIGSTOP);
    else
        usleep(1000);
    return fn_square(in, out, ctx);
}

static void *
resume_when_stolen(void *arg)
{
    ws_procpool *pp = arg;
    double t0 = now_s();
    while (ws__procpool_stolen(pp) == 0 && now_s() - t0 < 60)
        usleep(1000);
    /* Wake whichever worker stopped itself. */
    for (unsigned i = 0; i < ws__procpool_size(pp); i++) {
        pid_t pid = ws__procpool_worker_pid(pp, i);
        if (pid > 0)
            kill(pid, SIGCONT);
    }
    return NULL;
}

START_TEST(test_procpool_stalled_worker)
{
    /*
     * A worker that stops (as one the host does not run) while it holds
     * queued chunks: the others run everything else, then take its
     * unstarted chunks back; only the item it is in waits for it.
     */
    ws_procpool *pp = make_pool(3);
    size_t n = 200;
    long *in = iota(n), *out = calloc(n, sizeof *out);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, resume_when_stolen, pp), 0);
    ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_stop_first,
                                                   .in = in,
                                                   .in_size = 8,
                                                   .out = out,
                                                   .out_size = 8,
                                                   .n = n,
                                                   .chunk = 1}),
                     0);
    pthread_join(t, NULL);
    ck_assert_uint_ge(ws__procpool_stolen(pp), 1);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != (long)(i * i + 1);
    ck_assert_uint_eq(bad, 0);
    check_squares(pp, 10000, 0);
    free(in);
    free(out);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_worker_killed_idle)
{
    /* Killed between maps: the next map replaces it and runs. */
    ws_procpool *pp = make_pool(3);
    check_squares(pp, 1000, 0);
    for (unsigned i = 0; i < 3; i++) {
        pid_t pid = ws__procpool_worker_pid(pp, i);
        ck_assert_int_gt(pid, 0);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
    }
    usleep(50000);
    check_squares(pp, 100000, 0);
    for (unsigned i = 0; i < 3; i++)
        ck_assert_int_gt(ws__procpool_worker_pid(pp, i), 0);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_server_killed)
{
    /* Without its fork server a pool cannot replace workers; its workers
     * die with it.  Maps then fail with ECHILD, and destroy still cleans
     * up. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    ws_procpool *pp = make_pool(2);
    check_squares(pp, 1000, 0);
    pid_t s = ws__procpool_server_pid(pp);
    pid_t w0 = ws__procpool_worker_pid(pp, 0);
    pid_t w1 = ws__procpool_worker_pid(pp, 1);
    ck_assert_int_gt(s, 0);
    ck_assert_int_eq(kill(s, SIGKILL), 0);
    /* Wait until the workers are gone too (reaping the orphans). */
    while (!gone(w0) || !gone(w1)) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        usleep(1000);
    }
    size_t n = 1000;
    long *in = iota(n), *out = calloc(n, sizeof *out);
    int r = ws_procpool_map(pp, &(ws_map){.fn = fn_square,
                                          .in = in,
                                          .in_size = 8,
                                          .out = out,
                                          .out_size = 8,
                                          .n = n});
    ck_assert_int_eq(r, ECHILD);
    ck_assert_int_eq(ws__procpool_server_pid(pp), -1);
    free(in);
    free(out);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}
END_TEST

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_procpool_create_einval)
{
    ws_procpool *pp = (ws_procpool *)(uintptr_t)1;
    ck_assert_int_eq(ws_procpool_create(NULL, 1), EINVAL);
    ck_assert_int_eq(ws_procpool_create(&pp, WS__PROCPOOL_MAX + 1), EINVAL);
    ck_assert_ptr_eq(pp, (ws_procpool *)(uintptr_t)1);
    ck_assert_int_eq(ws_procpool_destroy(NULL), EINVAL);
    ck_assert_ptr_null(ws_shm_alloc(NULL, 10));
    ws_shm_free(NULL, NULL);
}
END_TEST

START_TEST(test_procpool_map_einval)
{
    ws_procpool *pp = make_pool(1);
    long in[4] = {1, 2, 3, 4}, out[4] = {0};
    int status[4] = {9, 9, 9, 9};
    struct addctx c = {0};
    const ws_map good = {.fn = fn_square,
                         .in = in,
                         .in_size = 8,
                         .out = out,
                         .out_size = 8,
                         .n = 4,
                         .status = status};
    ws_map m;
    ck_assert_int_eq(ws_procpool_map(NULL, &good), EINVAL);
    ck_assert_int_eq(ws_procpool_map(pp, NULL), EINVAL);
    m = good;
    m.fn = NULL;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.in_size = 0;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.out_size = 0;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.in = NULL;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.out = NULL;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.n = SIZE_MAX / 4;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.ctx_size = 8;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.timeout_s = NAN;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    m = good;
    m.n = 0;
    m.fn = NULL;
    ck_assert_int_eq(ws_procpool_map(pp, &m), EINVAL);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(out[i], 0);
        ck_assert_int_eq(status[i], 9);
    }
    /* Negative timeouts mean no limit, like WS_FOREVER elsewhere. */
    m = good;
    m.timeout_s = WS_FOREVER;
    m.ctx = &c;
    m.ctx_size = sizeof c;
    ck_assert_int_eq(ws_procpool_map(pp, &m), 0);
    ck_assert_int_eq(out[3], 17);
    ck_assert_ptr_null(ws_shm_alloc(pp, 0));
    ws_shm_free(pp, NULL);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

START_TEST(test_procpool_other_process_einval)
{
    /* A fork of the caller holds a copy of the handle, not the pool. */
    ws_procpool *pp = make_pool(1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        long in = 1, out = 0;
        int ok = ws_procpool_map(pp, &(ws_map){.fn = fn_square,
                                               .in = &in,
                                               .in_size = 8,
                                               .out = &out,
                                               .out_size = 8,
                                               .n = 1}) == EINVAL &&
                 ws_shm_alloc(pp, 8) == NULL &&
                 ws_procpool_destroy(pp) == EINVAL;
        _exit(ok ? 0 : 1);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    check_squares(pp, 1000, 0);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* stress                                                             */
/* ------------------------------------------------------------------ */

static int
count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

START_TEST(test_procpool_cycles)
{
    int fds = count_dir("/proc/self/fd");
    int shm = count_dir("/dev/shm");
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
    for (unsigned r = 0; r < 15 * scale(); r++) {
        ws_procpool *pp = make_pool(1 + r % 3);
        if (r % 2 == 0)
            check_squares(pp, 1000, 0);
        if (r % 3 == 0) {
            void *p = ws_shm_alloc(pp, (size_t)4 << 20);
            ck_assert_ptr_nonnull(p);
            if (r % 2 == 0)
                ws_shm_free(pp, p);
        }
        ck_assert_int_eq(ws_procpool_destroy(pp), 0);
        ck_assert_int_eq(count_dir("/proc/self/fd"), fds);
        ck_assert_int_eq(count_dir("/dev/shm"), shm);
        /* No child of ours is left, not even a zombie. */
        errno = 0;
        ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
        ck_assert_int_eq(errno, ECHILD);
    }
}
END_TEST

/* Sleeps for a long time per item. */
static int
fn_long(const void *in, void *out, void *ctx)
{
    sleep(100);
    return fn_square(in, out, ctx);
}

START_TEST(test_procpool_parent_killed)
{
    /*
     * The caller dies (SIGKILL) while its workers run items, and while
     * idle: the fork server and the workers must go on their own.  As a
     * subreaper we inherit the orphans and can see them go.
     */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    for (int busy = 0; busy < 2; busy++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t g = fork();
        ck_assert_int_ge(g, 0);
        if (g == 0) {
            ws_procpool *pp;
            if (ws_procpool_create(&pp, 3) != 0)
                _exit(1);
            pid_t pids[4] = {
                ws__procpool_server_pid(pp), ws__procpool_worker_pid(pp, 0),
                ws__procpool_worker_pid(pp, 1), ws__procpool_worker_pid(pp, 2)};
            if (write(fds[1], pids, sizeof pids) != sizeof pids)
                _exit(1);
            long in[6] = {0}, out[6];
            if (busy)
                ws_procpool_map(pp, &(ws_map){.fn = fn_long,
                                              .in = in,
                                              .in_size = 8,
                                              .out = out,
                                              .out_size = 8,
                                              .n = 6,
                                              .chunk = 1});
            for (;;)
                pause();
        }
        pid_t pids[4];
        ck_assert_int_eq(read(fds[0], pids, sizeof pids), sizeof pids);
        close(fds[0]);
        close(fds[1]);
        for (int i = 0; i < 4; i++)
            ck_assert_int_gt(pids[i], 0);
        usleep(200000);
        ck_assert_int_eq(kill(g, SIGKILL), 0);
        ck_assert_int_eq(waitpid(g, NULL, 0), g);
        /* The mechanism is immediate (a pidfd and PDEATHSIG); the bound
         * here only keeps a broken build from hanging. */
        double t0 = now_s();
        int all = 0;
        while (!all && now_s() - t0 < 20) {
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
            all = 1;
            for (int i = 0; i < 4; i++)
                all &= gone(pids[i]);
            if (!all)
                usleep(2000);
        }
        ck_assert(all);
    }
}
END_TEST

START_TEST(test_procpool_crash_storm)
{
    /* Many deaths of all kinds in one big map, more workers than cores. */
    ws_procpool *pp = make_pool(4);
    size_t n = 200000 * scale();
    long *in = iota(n), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);
    for (int round = 0; round < 2; round++) {
        struct crash c = {.how = round == 0 ? HOW_EXIT : HOW_ABORT, .n = 8};
        for (int k = 0; k < 8; k++)
            c.items[k] = (long)((k * 2654435761u + (unsigned)round) % n);
        ck_assert_int_eq(ws_procpool_map(pp, &(ws_map){.fn = fn_crash,
                                                       .in = in,
                                                       .in_size = 8,
                                                       .out = out,
                                                       .out_size = 8,
                                                       .n = n,
                                                       .ctx = &c,
                                                       .ctx_size = sizeof c,
                                                       .status = status}),
                         EOWNERDEAD);
        size_t failed = 0, bad = 0;
        for (size_t i = 0; i < n; i++) {
            int chosen = 0;
            for (int k = 0; k < 8; k++)
                chosen |= c.items[k] == (long)i;
            failed += status[i] != 0;
            bad += status[i] != (chosen ? EOWNERDEAD : 0);
            if (!chosen)
                bad += out[i] != (long)(i * i + 1);
        }
        ck_assert_uint_eq(bad, 0);
        ck_assert_uint_eq(failed, 8);
    }
    free(in);
    free(out);
    free(status);
    ck_assert_int_eq(ws_procpool_destroy(pp), 0);
}
END_TEST

static Suite *
procpool_suite(void)
{
    Suite *s = suite_create("procpool");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_procpool_map_empty);
    tcase_add_test(tc, test_procpool_map_one);
    tcase_add_test(tc, test_procpool_default_size);
    tcase_add_loop_test(tc, test_procpool_map_million, 0, 3);
    tcase_add_test(tc, test_procpool_chunk_sizes);
    tcase_add_loop_test(tc, test_procpool_odd_sizes, 0, 3);
    tcase_add_test(tc, test_procpool_big_items);
    tcase_add_test(tc, test_procpool_static_buffer);
    tcase_add_test(tc, test_procpool_ctx);
    tcase_add_test(tc, test_procpool_shm_in_place);
    tcase_add_test(tc, test_procpool_fn_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_procpool_create_einval);
    tcase_add_test(tc, test_procpool_map_einval);
    tcase_add_test(tc, test_procpool_other_process_einval);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_procpool_threads_share_pool);
    tcase_add_test(tc, test_procpool_crash_segv);
    tcase_add_test(tc, test_procpool_crash_abort);
    tcase_add_test(tc, test_procpool_crash_exit);
    tcase_add_test(tc, test_procpool_crash_sigkill);
    tcase_add_test(tc, test_procpool_crash_one_process);
    tcase_add_test(tc, test_procpool_timeout);
    tcase_add_test(tc, test_procpool_timeout_spares_slow_items);
    tcase_add_test(tc, test_procpool_corrupt_channel);
    tcase_add_test(tc, test_procpool_stalled_worker);
    tcase_add_test(tc, test_procpool_worker_killed_idle);
    tcase_add_test(tc, test_procpool_server_killed);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_procpool_cycles);
    tcase_add_test(tc, test_procpool_parent_killed);
    tcase_add_test(tc, test_procpool_crash_storm);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(procpool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
