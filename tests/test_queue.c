/*
 * Tests of the bounded MPMC queue: FIFO order, capacity, timeouts, close,
 * bad input, and many producers and consumers counting every item.
 * WSCHED_TEST_SCALE (default 1) multiplies the item counts.
 */
#define _GNU_SOURCE

#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wsched.h>

#include "queue.h"

/*
 * Every ck_assert reports its location to the parent process (a write to a
 * pipe) even when it passes; loops that run millions of times check with
 * CHECK instead, which costs nothing until it fails the test the same way.
 */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            ck_abort_msg(__VA_ARGS__);                                         \
    } while (0)

/*
 * test_queue_large_capacity asks for the largest queue, which may not fit
 * in memory: the sanitizers' allocators must then return NULL, as malloc
 * does, instead of ending the program.  The runtimes call these hooks;
 * settings in ASAN_OPTIONS or TSAN_OPTIONS still come on top.  Visible,
 * although the build hides symbols by default, so the runtimes find them.
 */
#define SANITIZER_HOOK __attribute__((visibility("default")))
SANITIZER_HOOK const char *__asan_default_options(void);
SANITIZER_HOOK const char *__tsan_default_options(void);

SANITIZER_HOOK const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

SANITIZER_HOOK const char *
__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* Items moved by the 4:4 stress test at scale 1. */
#define MPMC_ITEMS 10000000UL

static double
scale(void)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    double v = s ? strtod(s, NULL) : 1.0;
    return v > 0 ? v : 1.0;
}

static unsigned long
scaled(unsigned long n)
{
    double v = (double)n * scale();
    return v < 1 ? 1 : (unsigned long)v;
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Pins the calling thread to the i-th CPU it may use (modulo their count). */
static void
pin_self(unsigned i)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return;
    int n = CPU_COUNT(&allowed);
    if (n <= 0)
        return;
    int want = (int)(i % (unsigned)n);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        if (want-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
    }
}

static void *
item_of(uintptr_t v)
{
    return (void *)v;
}

/* Waits (without a time limit: Check's timeout bounds it) until the queue
 * has the given numbers of registered sleepers. */
static void
await_sleepers(ws_queue *q, unsigned getters, unsigned putters)
{
    unsigned g, p;
    for (;;) {
        ws__queue_sleepers(q, &g, &p);
        if (g == getters && p == putters)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ---------------------------------------------------------------- */
/* basic                                                            */
/* ---------------------------------------------------------------- */

START_TEST(test_queue_fifo)
{
    ws_queue *q;
    ck_assert_int_eq(ws_queue_create(&q, 100), 0);
    ck_assert_uint_eq(ws_queue_size(q), 0);
    for (uintptr_t i = 1; i <= 100; i++) {
        ck_assert_int_eq(ws_queue_put(q, item_of(i), 0), 0);
        ck_assert_uint_eq(ws_queue_size(q), i);
    }
    for (uintptr_t i = 1; i <= 100; i++) {
        void *v = NULL;
        ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
        ck_assert_ptr_eq(v, item_of(i));
        ck_assert_uint_eq(ws_queue_size(q), 100 - i);
    }
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_capacity)
{
    /* 3 is not a power of two: the index wraps before the mark bit. */
    ws_queue *q;
    void *v = item_of(99);
    ck_assert_int_eq(ws_queue_create(&q, 3), 0);
    for (uintptr_t i = 0; i < 3; i++)
        ck_assert_int_eq(ws_queue_put(q, item_of(i), 0), 0);
    ck_assert_uint_eq(ws_queue_size(q), 3);
    ck_assert_int_eq(ws_queue_put(q, item_of(3), 0), ETIMEDOUT);
    ck_assert_uint_eq(ws_queue_size(q), 3);
    for (uintptr_t i = 0; i < 3; i++) {
        ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
        ck_assert_ptr_eq(v, item_of(i));
    }
    v = item_of(99);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), ETIMEDOUT);
    ck_assert_ptr_eq(v, item_of(99));
    ck_assert_uint_eq(ws_queue_size(q), 0);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_capacity_one)
{
    ws_queue *q;
    void *v;
    ck_assert_int_eq(ws_queue_create(&q, 1), 0);
    for (uintptr_t i = 0; i < 1000; i++) {
        ck_assert_int_eq(ws_queue_put(q, item_of(i), 0), 0);
        ck_assert_int_eq(ws_queue_put(q, item_of(i), 0), ETIMEDOUT);
        ck_assert_uint_eq(ws_queue_size(q), 1);
        ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
        ck_assert_ptr_eq(v, item_of(i));
        ck_assert_int_eq(ws_queue_get(q, &v, 0), ETIMEDOUT);
        ck_assert_uint_eq(ws_queue_size(q), 0);
    }
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

/* Puts and gets in uneven bursts so that head and tail wrap many laps at
 * every offset; the queue must behave as a reference FIFO. */
static void
check_against_model(ws_queue *q, size_t cap, unsigned rounds)
{
    uintptr_t next_put = 0, next_get = 0;
    unsigned seed = 12345;
    for (unsigned r = 0; r < rounds; r++) {
        seed = seed * 1103515245u + 12345u;
        size_t burst = (seed >> 16) % (cap + 2);
        for (size_t i = 0; i < burst; i++) {
            int e = ws_queue_put(q, item_of(next_put), 0);
            if (next_put - next_get < cap) {
                CHECK(e == 0, "put %lu: %d", (unsigned long)next_put, e);
                next_put++;
            } else {
                CHECK(e == ETIMEDOUT, "put on full: %d", e);
            }
            CHECK(ws_queue_size(q) == next_put - next_get, "size after put");
        }
        seed = seed * 1103515245u + 12345u;
        burst = (seed >> 16) % (cap + 2);
        for (size_t i = 0; i < burst; i++) {
            void *v = NULL;
            int e = ws_queue_get(q, &v, 0);
            if (next_get < next_put) {
                CHECK(e == 0, "get %lu: %d", (unsigned long)next_get, e);
                CHECK(v == item_of(next_get), "got %p, want %lu", v,
                      (unsigned long)next_get);
                next_get++;
            } else {
                CHECK(e == ETIMEDOUT, "get on empty: %d", e);
            }
            CHECK(ws_queue_size(q) == next_put - next_get, "size after get");
        }
    }
}

START_TEST(test_queue_wraparound)
{
    static const size_t caps[] = {1, 2, 3, 5, 7, 8, 64, 100};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        ws_queue *q;
        ck_assert_int_eq(ws_queue_create(&q, caps[i]), 0);
        check_against_model(q, caps[i], 2000);
        ck_assert_int_eq(ws_queue_destroy(q), 0);
    }
}
END_TEST

START_TEST(test_queue_position_wrap)
{
    /* Start two laps before the 64-bit positions wrap to zero. */
    static const size_t caps[] = {1, 3, 8, 100};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        ws_queue *q;
        ck_assert_int_eq(ws__queue_create_at(&q, caps[i], UINT64_MAX - 1), 0);
        check_against_model(q, caps[i], 200);
        ck_assert_int_eq(ws_queue_destroy(q), 0);
    }
}
END_TEST

START_TEST(test_queue_null_item)
{
    ws_queue *q;
    void *v = item_of(1);
    ck_assert_int_eq(ws_queue_create(&q, 2), 0);
    ck_assert_int_eq(ws_queue_put(q, NULL, 0), 0);
    ck_assert_uint_eq(ws_queue_size(q), 1);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_close_drain)
{
    ws_queue *q;
    void *v;
    ck_assert_int_eq(ws_queue_create(&q, 4), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(2), WS_FOREVER), 0);
    ck_assert_int_eq(ws_queue_close(q), 0);
    ck_assert_int_eq(ws_queue_close(q), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(3), 0), EPIPE);
    ck_assert_int_eq(ws_queue_put(q, item_of(3), WS_FOREVER), EPIPE);
    ck_assert_uint_eq(ws_queue_size(q), 2);
    ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), 0);
    ck_assert_ptr_eq(v, item_of(1));
    ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
    ck_assert_ptr_eq(v, item_of(2));
    v = item_of(7);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), EPIPE);
    ck_assert_int_eq(ws_queue_get(q, &v, 0.01), EPIPE);
    ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), EPIPE);
    ck_assert_ptr_eq(v, item_of(7));
    ck_assert_uint_eq(ws_queue_size(q), 0);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_close_full)
{
    /* A full closed queue answers EPIPE to puts, not ETIMEDOUT. */
    ws_queue *q;
    void *v;
    ck_assert_int_eq(ws_queue_create(&q, 2), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(2), 0), 0);
    ck_assert_int_eq(ws_queue_close(q), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(3), 0), EPIPE);
    ck_assert_int_eq(ws_queue_put(q, item_of(3), 0.01), EPIPE);
    ck_assert_uint_eq(ws_queue_size(q), 2);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
    ck_assert_ptr_eq(v, item_of(1));
    ck_assert_int_eq(ws_queue_put(q, item_of(3), 0), EPIPE);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
    ck_assert_ptr_eq(v, item_of(2));
    ck_assert_int_eq(ws_queue_get(q, &v, 0), EPIPE);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_destroy_nonempty)
{
    ws_queue *q;
    ck_assert_int_eq(ws_queue_create(&q, 8), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), 0);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_large_capacity)
{
    /* The largest capacity is accepted; its slots are touched only when
     * used, but the address space may still be too small: ENOMEM. */
    ws_queue *q = NULL;
    int e = ws_queue_create(&q, WS__QUEUE_CAPACITY_MAX);
    ck_assert(e == 0 || e == ENOMEM);
    if (e == ENOMEM) {
        ck_assert_ptr_null(q);
        return;
    }
    void *v;
    ck_assert_int_eq(ws_queue_put(q, item_of(5), 0), 0);
    ck_assert_uint_eq(ws_queue_size(q), 1);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
    ck_assert_ptr_eq(v, item_of(5));
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

/* ---------------------------------------------------------------- */
/* errors                                                           */
/* ---------------------------------------------------------------- */

START_TEST(test_queue_create_einval)
{
    ws_queue *q = (ws_queue *)item_of(0x1234);
    ck_assert_int_eq(ws_queue_create(NULL, 8), EINVAL);
    ck_assert_int_eq(ws_queue_create(&q, 0), EINVAL);
    ck_assert_int_eq(ws_queue_create(&q, WS__QUEUE_CAPACITY_MAX + 1), EINVAL);
    ck_assert_int_eq(ws_queue_create(&q, SIZE_MAX), EINVAL);
    ck_assert_ptr_eq(q, item_of(0x1234));
}
END_TEST

START_TEST(test_queue_put_einval)
{
    ws_queue *q;
    ck_assert_int_eq(ws_queue_put(NULL, item_of(1), 0), EINVAL);
    ck_assert_int_eq(ws_queue_put(NULL, item_of(1), WS_FOREVER), EINVAL);
    ck_assert_int_eq(ws_queue_create(&q, 2), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), NAN), EINVAL);
    ck_assert_uint_eq(ws_queue_size(q), 0);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_get_einval)
{
    ws_queue *q;
    void *v = item_of(42);
    ck_assert_int_eq(ws_queue_get(NULL, &v, 0), EINVAL);
    ck_assert_int_eq(ws_queue_get(NULL, &v, WS_FOREVER), EINVAL);
    ck_assert_int_eq(ws_queue_create(&q, 2), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), 0);
    ck_assert_int_eq(ws_queue_get(q, NULL, 0), EINVAL);
    ck_assert_int_eq(ws_queue_get(q, NULL, WS_FOREVER), EINVAL);
    ck_assert_int_eq(ws_queue_get(q, &v, NAN), EINVAL);
    ck_assert_ptr_eq(v, item_of(42));
    ck_assert_uint_eq(ws_queue_size(q), 1);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), 0);
    ck_assert_ptr_eq(v, item_of(1));
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_null_handle)
{
    ck_assert_int_eq(ws_queue_close(NULL), EINVAL);
    ck_assert_int_eq(ws_queue_destroy(NULL), EINVAL);
    ck_assert_uint_eq(ws_queue_size(NULL), 0);
}
END_TEST

START_TEST(test_queue_put_etimedout)
{
    ws_queue *q;
    ck_assert_int_eq(ws_queue_create(&q, 1), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), 0);
    double t0 = now();
    ck_assert_int_eq(ws_queue_put(q, item_of(2), 0.05), ETIMEDOUT);
    ck_assert_double_ge(now() - t0, 0.045);
    /* Longer than one re-check slice: the slices add up. */
    t0 = now();
    ck_assert_int_eq(ws_queue_put(q, item_of(2), 0.25), ETIMEDOUT);
    ck_assert_double_ge(now() - t0, 0.245);
    ck_assert_uint_eq(ws_queue_size(q), 1);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_get_etimedout)
{
    ws_queue *q;
    void *v = item_of(3);
    ck_assert_int_eq(ws_queue_create(&q, 4), 0);
    double t0 = now();
    ck_assert_int_eq(ws_queue_get(q, &v, 0.05), ETIMEDOUT);
    ck_assert_double_ge(now() - t0, 0.045);
    t0 = now();
    ck_assert_int_eq(ws_queue_get(q, &v, 0.25), ETIMEDOUT);
    ck_assert_double_ge(now() - t0, 0.245);
    ck_assert_ptr_eq(v, item_of(3));
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_put_epipe)
{
    ws_queue *q;
    ck_assert_int_eq(ws_queue_create(&q, 4), 0);
    ck_assert_int_eq(ws_queue_close(q), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), EPIPE);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0.01), EPIPE);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), WS_FOREVER), EPIPE);
    ck_assert_uint_eq(ws_queue_size(q), 0);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_get_epipe)
{
    ws_queue *q;
    void *v = item_of(5);
    ck_assert_int_eq(ws_queue_create(&q, 4), 0);
    ck_assert_int_eq(ws_queue_close(q), 0);
    ck_assert_int_eq(ws_queue_get(q, &v, 0), EPIPE);
    ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), EPIPE);
    ck_assert_ptr_eq(v, item_of(5));
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

/* ---------------------------------------------------------------- */
/* concurrency                                                      */
/* ---------------------------------------------------------------- */

struct blocked {
    ws_queue *q;
    unsigned index;
    int result;
    void *item;
};

static void *
blocked_put(void *arg)
{
    struct blocked *b = arg;
    pin_self(b->index);
    b->result = ws_queue_put(b->q, item_of(100 + b->index), WS_FOREVER);
    return NULL;
}

static void *
blocked_get(void *arg)
{
    struct blocked *b = arg;
    pin_self(b->index);
    b->result = ws_queue_get(b->q, &b->item, WS_FOREVER);
    return NULL;
}

START_TEST(test_queue_close_wakes_putters)
{
    enum { N = 5 };
    ws_queue *q;
    pthread_t t[N];
    struct blocked b[N];
    ck_assert_int_eq(ws_queue_create(&q, 2), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(1), 0), 0);
    ck_assert_int_eq(ws_queue_put(q, item_of(2), 0), 0);
    for (unsigned i = 0; i < N; i++) {
        b[i] = (struct blocked){.q = q, .index = i, .result = -1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, blocked_put, &b[i]), 0);
    }
    await_sleepers(q, 0, N);
    ck_assert_int_eq(ws_queue_close(q), 0);
    for (unsigned i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(b[i].result, EPIPE);
    }
    void *v;
    ck_assert_uint_eq(ws_queue_size(q), 2);
    ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), 0);
    ck_assert_ptr_eq(v, item_of(1));
    ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), 0);
    ck_assert_ptr_eq(v, item_of(2));
    ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), EPIPE);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_close_wakes_getters)
{
    enum { N = 5 };
    ws_queue *q;
    pthread_t t[N];
    struct blocked b[N];
    ck_assert_int_eq(ws_queue_create(&q, 2), 0);
    for (unsigned i = 0; i < N; i++) {
        b[i] = (struct blocked){.q = q, .index = i, .result = -1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, blocked_get, &b[i]), 0);
    }
    await_sleepers(q, N, 0);
    ck_assert_int_eq(ws_queue_close(q), 0);
    for (unsigned i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(b[i].result, EPIPE);
    }
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

START_TEST(test_queue_wake_blocked)
{
    /* Sleeping getters each receive one of the items put later, and
     * sleeping putters each get their item in once room is made. */
    enum { N = 6 };
    ws_queue *q;
    pthread_t t[N];
    struct blocked b[N];
    ck_assert_int_eq(ws_queue_create(&q, 3), 0);
    for (unsigned i = 0; i < N; i++) {
        b[i] = (struct blocked){.q = q, .index = i, .result = -1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, blocked_get, &b[i]), 0);
    }
    await_sleepers(q, N, 0);
    for (uintptr_t i = 0; i < N; i++)
        ck_assert_int_eq(ws_queue_put(q, item_of(1000 + i), WS_FOREVER), 0);
    unsigned seen = 0;
    for (unsigned i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(b[i].result, 0);
        uintptr_t v = (uintptr_t)b[i].item - 1000;
        ck_assert_uint_lt(v, N);
        ck_assert_uint_eq(seen & (1u << v), 0);
        seen |= 1u << v;
    }

    for (uintptr_t i = 0; i < 3; i++)
        ck_assert_int_eq(ws_queue_put(q, item_of(i), 0), 0);
    for (unsigned i = 0; i < N; i++) {
        b[i] = (struct blocked){.q = q, .index = i, .result = -1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, blocked_put, &b[i]), 0);
    }
    await_sleepers(q, 0, N);
    seen = 0;
    for (unsigned i = 0; i < N + 3; i++) {
        void *v;
        ck_assert_int_eq(ws_queue_get(q, &v, WS_FOREVER), 0);
        uintptr_t x = (uintptr_t)v;
        if (i < 3) {
            ck_assert_uint_eq(x, i);
        } else {
            ck_assert_uint_ge(x, 100);
            ck_assert_uint_lt(x, 100 + N);
            ck_assert_uint_eq(seen & (1u << (x - 100)), 0);
            seen |= 1u << (x - 100);
        }
    }
    for (unsigned i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(b[i].result, 0);
    }
    ck_assert_uint_eq(ws_queue_size(q), 0);
    ck_assert_int_eq(ws_queue_destroy(q), 0);
}
END_TEST

/*
 * Producers and consumers.  Item = producer << 40 | sequence number + 1.
 * Every consumer checks that each producer's items reach it in increasing
 * order (FIFO per producer); a shared bitmap catches an item delivered
 * twice, and the totals catch one lost.
 */
#define SEQ_BITS 40

struct mpmc {
    ws_queue *q;
    unsigned producers, consumers;
    unsigned long per_producer;
    double timeout_s;        /* for every put and get; retried on ETIMEDOUT */
    bool close_early;        /* main closes the queue while traffic flows */
    _Atomic(uint64_t) *seen; /* one bit per item */
    atomic_ulong put_ok, got, timeouts;
    atomic_uint producers_left;
};

struct mpmc_thread {
    struct mpmc *m;
    unsigned index;
    unsigned long count;
    bool fifo_ok;
};

static void *
mpmc_producer(void *arg)
{
    struct mpmc_thread *th = arg;
    struct mpmc *m = th->m;
    pin_self(th->index);
    for (unsigned long i = 0; i < m->per_producer; i++) {
        uintptr_t v = ((uintptr_t)th->index << SEQ_BITS) | (i + 1);
        int e;
        while ((e = ws_queue_put(m->q, item_of(v), m->timeout_s)) == ETIMEDOUT)
            atomic_fetch_add_explicit(&m->timeouts, 1, memory_order_relaxed);
        if (e == EPIPE && m->close_early)
            break;
        CHECK(e == 0, "put: %d", e);
        th->count++;
    }
    atomic_fetch_add_explicit(&m->put_ok, th->count, memory_order_relaxed);
    /* The last producer out closes, unless main does. */
    if (atomic_fetch_sub_explicit(&m->producers_left, 1,
                                  memory_order_relaxed) == 1 &&
        !m->close_early)
        CHECK(ws_queue_close(m->q) == 0, "close");
    return NULL;
}

static void *
mpmc_consumer(void *arg)
{
    struct mpmc_thread *th = arg;
    struct mpmc *m = th->m;
    uint64_t *last = calloc(m->producers, sizeof *last);
    CHECK(last != NULL, "calloc");
    pin_self(m->producers + th->index);
    th->fifo_ok = true;
    for (;;) {
        void *v;
        int e = ws_queue_get(m->q, &v, m->timeout_s);
        if (e == ETIMEDOUT) {
            atomic_fetch_add_explicit(&m->timeouts, 1, memory_order_relaxed);
            continue;
        }
        if (e == EPIPE)
            break;
        CHECK(e == 0, "get: %d", e);
        uintptr_t x = (uintptr_t)v;
        unsigned p = (unsigned)(x >> SEQ_BITS);
        uint64_t seq = x & (((uint64_t)1 << SEQ_BITS) - 1);
        CHECK(p < m->producers && seq >= 1 && seq <= m->per_producer,
              "got an item never put: %p", v);
        if (seq <= last[p])
            th->fifo_ok = false;
        last[p] = seq;
        uint64_t bit = (uint64_t)p * m->per_producer + (seq - 1);
        uint64_t old = atomic_fetch_or_explicit(&m->seen[bit / 64],
                                                (uint64_t)1 << (bit % 64),
                                                memory_order_relaxed);
        CHECK(!(old & ((uint64_t)1 << (bit % 64))),
              "item %u:%llu delivered twice", p, (unsigned long long)seq);
        th->count++;
    }
    atomic_fetch_add_explicit(&m->got, th->count, memory_order_relaxed);
    free(last);
    return NULL;
}

static void
run_mpmc(size_t capacity, unsigned producers, unsigned consumers,
         unsigned long total, double timeout_s, bool close_early)
{
    struct mpmc m = {
        .producers = producers,
        .consumers = consumers,
        .per_producer = total / producers ? total / producers : 1,
        .timeout_s = timeout_s,
        .close_early = close_early,
    };
    unsigned long items = m.per_producer * producers;
    size_t words = (items + 63) / 64;
    m.seen = calloc(words, sizeof m.seen[0]);
    ck_assert_ptr_nonnull(m.seen);
    atomic_init(&m.put_ok, 0);
    atomic_init(&m.got, 0);
    atomic_init(&m.timeouts, 0);
    atomic_init(&m.producers_left, producers);
    ck_assert_int_eq(ws_queue_create(&m.q, capacity), 0);

    unsigned n = producers + consumers;
    pthread_t *t = calloc(n, sizeof *t);
    struct mpmc_thread *th = calloc(n, sizeof *th);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(th);
    for (unsigned i = 0; i < n; i++) {
        th[i].m = &m;
        th[i].index = i < producers ? i : i - producers;
        ck_assert_int_eq(
            pthread_create(&t[i], NULL,
                           i < producers ? mpmc_producer : mpmc_consumer,
                           &th[i]),
            0);
    }
    if (close_early) {
        /* Close once traffic flows. */
        struct timespec ts = {0, 100000};
        while (ws_queue_size(m.q) == 0)
            nanosleep(&ts, NULL);
        ts.tv_nsec = 2000000;
        nanosleep(&ts, NULL);
        ck_assert_int_eq(ws_queue_close(m.q), 0);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(t[i], NULL);

    unsigned long put_ok = atomic_load(&m.put_ok);
    unsigned long got = atomic_load(&m.got);
    if (!close_early)
        ck_assert_uint_eq(put_ok, items);
    ck_assert_uint_eq(got, put_ok);
    ck_assert_uint_eq(ws_queue_size(m.q), 0);
    for (unsigned i = producers; i < n; i++)
        ck_assert_msg(th[i].fifo_ok,
                      "consumer %u saw a producer's items "
                      "out of order",
                      i - producers);
    /* Each producer's successful puts are its first `count` items. */
    for (unsigned p = 0; p < producers; p++) {
        for (unsigned long s = 0; s < m.per_producer; s++) {
            uint64_t bit = (uint64_t)p * m.per_producer + s;
            bool got_it = m.seen[bit / 64] & ((uint64_t)1 << (bit % 64));
            CHECK(got_it == (s < th[p].count), "item %u:%lu %s", p, s + 1,
                  got_it ? "delivered but never put" : "lost");
        }
    }
    ck_assert_int_eq(ws_queue_destroy(m.q), 0);
    free(th);
    free(t);
    free(m.seen);
}

START_TEST(test_queue_mpmc_small)
{
    run_mpmc(8, 4, 4, scaled(200000), WS_FOREVER, false);
}
END_TEST

START_TEST(test_queue_mpmc_capacity_one)
{
    run_mpmc(1, 4, 4, scaled(50000), WS_FOREVER, false);
}
END_TEST

START_TEST(test_queue_mpmc_unbalanced)
{
    /* One producer feeding many consumers, and the reverse. */
    run_mpmc(16, 1, 6, scaled(100000), WS_FOREVER, false);
    run_mpmc(16, 6, 1, scaled(100000), WS_FOREVER, false);
}
END_TEST

START_TEST(test_queue_mpmc_timeouts)
{
    /* Short timeouts: threads keep registering to sleep and giving up. */
    run_mpmc(4, 3, 3, scaled(30000), 0.0005, false);
    run_mpmc(4, 3, 3, scaled(10000), 0, false);
}
END_TEST

START_TEST(test_queue_close_under_traffic)
{
    /* Every put that returned 0 is gotten exactly once, even though the
     * close lands in the middle of the traffic. */
    for (int i = 0; i < 20; i++)
        run_mpmc(i % 2 ? 4 : 64, 4, 4, 400000, WS_FOREVER, true);
}
END_TEST

/* Pool tasks and an outside thread share a queue: consumers and one
 * producer run as tasks on the workers and block there, the main thread
 * produces too. */
#define POOL_ITEMS 20000

static void *
pool_consumer(void *arg)
{
    ws_queue *q = arg;
    void *v;
    uintptr_t sum = 0;
    while (ws_queue_get(q, &v, WS_FOREVER) == 0)
        sum += (uintptr_t)v;
    return (void *)sum;
}

static void *
pool_producer(void *arg)
{
    ws_queue *q = arg;
    for (uintptr_t i = 1; i <= POOL_ITEMS; i++)
        if (ws_queue_put(q, item_of(i), WS_FOREVER) != 0)
            return item_of(1);
    return NULL;
}

START_TEST(test_queue_pool_tasks)
{
    ws_pool *pool;
    ws_queue *q;
    ws_future *c[2], *p;
    void *r;
    ws_pool_opts opts = {.workers = 3, .bind = WS_BIND_NONE};
    ck_assert_int_eq(ws_pool_create(&pool, &opts), 0);
    ck_assert_int_eq(ws_queue_create(&q, 16), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(ws_submit(pool, pool_consumer, q, &c[i]), 0);
    ck_assert_int_eq(ws_submit(pool, pool_producer, q, &p), 0);
    for (uintptr_t i = POOL_ITEMS + 1; i <= 2 * POOL_ITEMS; i++)
        ck_assert_int_eq(ws_queue_put(q, item_of(i), WS_FOREVER), 0);
    ck_assert_int_eq(ws_future_get(p, &r), 0);
    ck_assert_ptr_null(r);
    ws_future_release(p);
    ck_assert_int_eq(ws_queue_close(q), 0);
    uintptr_t sum = 0;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(ws_future_get(c[i], &r), 0);
        sum += (uintptr_t)r;
        ws_future_release(c[i]);
    }
    ck_assert_uint_eq(sum, (uintptr_t)POOL_ITEMS * (2 * POOL_ITEMS + 1));
    ck_assert_int_eq(ws_queue_destroy(q), 0);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------- */
/* stress                                                           */
/* ---------------------------------------------------------------- */

START_TEST(test_queue_stress_mpmc)
{
    run_mpmc(1024, 4, 4, scaled(MPMC_ITEMS), WS_FOREVER, false);
}
END_TEST

START_TEST(test_queue_stress_mpmc_small)
{
    run_mpmc(2, 4, 4, scaled(MPMC_ITEMS / 4), WS_FOREVER, false);
}
END_TEST

static Suite *
queue_suite(void)
{
    Suite *s = suite_create("queue");
    int slow = (int)(300 * (scale() > 1 ? scale() : 1));

    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, test_queue_fifo);
    tcase_add_test(tc, test_queue_capacity);
    tcase_add_test(tc, test_queue_capacity_one);
    tcase_add_test(tc, test_queue_wraparound);
    tcase_add_test(tc, test_queue_position_wrap);
    tcase_add_test(tc, test_queue_null_item);
    tcase_add_test(tc, test_queue_close_drain);
    tcase_add_test(tc, test_queue_close_full);
    tcase_add_test(tc, test_queue_destroy_nonempty);
    tcase_add_test(tc, test_queue_large_capacity);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_queue_create_einval);
    tcase_add_test(tc, test_queue_put_einval);
    tcase_add_test(tc, test_queue_get_einval);
    tcase_add_test(tc, test_queue_null_handle);
    tcase_add_test(tc, test_queue_put_etimedout);
    tcase_add_test(tc, test_queue_get_etimedout);
    tcase_add_test(tc, test_queue_put_epipe);
    tcase_add_test(tc, test_queue_get_epipe);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_test(tc, test_queue_close_wakes_putters);
    tcase_add_test(tc, test_queue_close_wakes_getters);
    tcase_add_test(tc, test_queue_wake_blocked);
    tcase_add_test(tc, test_queue_mpmc_small);
    tcase_add_test(tc, test_queue_mpmc_capacity_one);
    tcase_add_test(tc, test_queue_mpmc_unbalanced);
    tcase_add_test(tc, test_queue_mpmc_timeouts);
    tcase_add_test(tc, test_queue_close_under_traffic);
    tcase_add_test(tc, test_queue_pool_tasks);
    tcase_set_timeout(tc, slow);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc, test_queue_stress_mpmc);
    tcase_add_test(tc, test_queue_stress_mpmc_small);
    tcase_set_timeout(tc, slow);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(queue_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
