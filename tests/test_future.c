/*
 * Executor tests: ws_submit and futures, waits with timeouts, cancel,
 * callbacks and completion queues.
 *
 * The suite calls only the public API.  Every count is exact: each task
 * records that it ran, and each result is compared with the value its
 * task computes.  Concurrency cases use more threads than cores (external
 * submitters, cancellers and waiters beside the workers).  Times are
 * checked only from below, with generous upper bounds where the point of
 * the test is that work overlaps (ten sleepers on ten workers).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wsched.h>

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static long
scale(long n)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    double f = s != NULL ? atof(s) : 1.0;
    long v = (long)((double)n * (f > 0 ? f : 1.0));
    return v > 0 ? v : 1;
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void
pin(int i)
{
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_ZERO(&set);
    CPU_SET((int)(i % (n > 0 ? n : 1)), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Unbound workers: the tests never depend on the host's placement. */
static ws_pool *
pool_new(unsigned workers)
{
    ws_pool *p = NULL;
    ws_pool_opts o = {.workers = workers, .bind = WS_BIND_NONE};
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void
destroy(ws_pool *p)
{
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}

/* The value task i computes: distinct, never 0. */
static uintptr_t
value_of(uintptr_t i)
{
    return i * 2654435761u + 1;
}

static void *
compute(void *arg)
{
    return (void *)value_of((uintptr_t)arg);
}

static void *
nothing(void *arg)
{
    return arg;
}

static void *
count(void *arg)
{
    atomic_fetch_add_explicit((atomic_long *)arg, 1, memory_order_relaxed);
    return NULL;
}

static void *
sleeper(void *arg)
{
    sleep_s((double)(uintptr_t)arg * 1e-3); /* milliseconds */
    return arg;
}

/*
 * A gate holds tasks on their worker until the test opens it, so that a
 * future is certainly pending or certainly running.
 */
struct gate {
    atomic_int open;
    atomic_int started;
};

static void *
gate_task(void *arg)
{
    struct gate *g = arg;
    atomic_fetch_add_explicit(&g->started, 1, memory_order_seq_cst);
    while (!atomic_load_explicit(&g->open, memory_order_acquire))
        sleep_s(0.0005);
    return arg;
}

static void
gate_open(struct gate *g)
{
    atomic_store_explicit(&g->open, 1, memory_order_release);
}

/* Waits until n gate tasks run on their workers. */
static void
gate_started(struct gate *g, int n)
{
    while (atomic_load_explicit(&g->started, memory_order_seq_cst) < n)
        sleep_s(0.0005);
}

/* Submits a gate task that occupies a worker until the gate opens. */
static ws_future *
submit_gate(ws_pool *p, struct gate *g)
{
    ws_future *f = NULL;
    ck_assert_int_eq(ws_submit(p, gate_task, g, &f), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void *
get_value(ws_future *f)
{
    void *r = NULL;
    ck_assert_int_eq(ws_future_get(f, &r), 0);
    return r;
}

/*
 * ThreadSanitizer cannot follow threads started in the child of a
 * multi-threaded fork; the fork test makes no pool in the child under it.
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
/* basic: submit, wait, get, cancel, release                          */
/* ------------------------------------------------------------------ */

START_TEST(test_future_submit_get)
{
    ws_pool *p = pool_new(2);
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(p, compute, (void *)7, &f), 0);
    ck_assert_ptr_eq(get_value(f), (void *)value_of(7));
    ck_assert(ws_future_done(f));
    /* A done future answers again, and result may be NULL. */
    ck_assert_ptr_eq(get_value(f), (void *)value_of(7));
    ck_assert_int_eq(ws_future_get(f, NULL), 0);
    ck_assert_int_eq(ws_future_wait(f, 0), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

START_TEST(test_future_wait_poll)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_future *f = submit_gate(p, &g);

    gate_started(&g, 1);
    ck_assert(!ws_future_done(f));
    ck_assert_int_eq(ws_future_wait(f, 0), ETIMEDOUT);
    ck_assert_int_eq(ws_future_cancel(f), EBUSY); /* it runs */
    gate_open(&g);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ck_assert(ws_future_done(f));
    ck_assert_int_eq(ws_future_wait(f, 0), 0);
    ck_assert_ptr_eq(get_value(f), &g);
    ck_assert_int_eq(ws_future_cancel(f), EBUSY); /* it ran */
    ws_future_release(f);
    destroy(p);
}
END_TEST

/* Any negative timeout waits forever, as WS_FOREVER does. */
START_TEST(test_future_wait_negative)
{
    ws_pool *p = pool_new(2);
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(p, sleeper, (void *)50, &f), 0);
    ck_assert_int_eq(ws_future_wait(f, -5.0), 0);
    ck_assert(ws_future_done(f));
    ws_future_release(f);
    destroy(p);
}
END_TEST

START_TEST(test_future_wait_timeout)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_future *f = submit_gate(p, &g);

    gate_started(&g, 1);
    double t0 = now();
    ck_assert_int_eq(ws_future_wait(f, 0.2), ETIMEDOUT);
    double dt = now() - t0;
    ck_assert_msg(dt >= 0.199, "returned after %.3f s of 0.2", dt);
    ck_assert_msg(dt < 5.0, "returned after %.3f s of 0.2", dt);
    ck_assert(!ws_future_done(f));
    gate_open(&g);
    ck_assert_int_eq(ws_future_wait(f, 30.0), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

struct timed_wait {
    ws_future *f;
    double timeout;
    int err;
    double elapsed;
};

static void
timed_wait_task(void *arg)
{
    struct timed_wait *w = arg;
    double t0 = now();
    w->err = ws_future_wait(w->f, w->timeout);
    w->elapsed = now() - t0;
}

/* A worker that waits with a timeout gives up as an external thread does. */
START_TEST(test_future_wait_timeout_worker)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_future *f = submit_gate(p, &g);

    /* Running, so the waiting worker cannot pick it up and block. */
    gate_started(&g, 1);
    struct timed_wait w = {f, 0.2, -1, 0};
    ck_assert_int_eq(ws_run(p, timed_wait_task, &w), 0);
    ck_assert_int_eq(w.err, ETIMEDOUT);
    ck_assert_msg(w.elapsed >= 0.199, "returned after %.3f s", w.elapsed);
    ck_assert_msg(w.elapsed < 5.0, "returned after %.3f s", w.elapsed);
    w.timeout = 0;
    ck_assert_int_eq(ws_run(p, timed_wait_task, &w), 0);
    ck_assert_int_eq(w.err, ETIMEDOUT);
    gate_open(&g);
    w.timeout = WS_FOREVER;
    ck_assert_int_eq(ws_run(p, timed_wait_task, &w), 0);
    ck_assert_int_eq(w.err, 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

START_TEST(test_future_cancel_pending)
{
    ws_pool *p = pool_new(1);
    struct gate g = {0};
    atomic_long ran = 0;
    ws_future *busy = submit_gate(p, &g), *f = NULL;

    gate_started(&g, 1); /* the only worker is held: f stays queued */
    ck_assert_int_eq(ws_submit(p, count, &ran, &f), 0);
    ck_assert(!ws_future_done(f));
    ck_assert_int_eq(ws_future_cancel(f), 0);
    ck_assert_int_eq(ws_future_cancel(f), 0); /* still: it will never run */
    ck_assert(ws_future_done(f));             /* cancelled is done */
    ck_assert_int_eq(ws_future_wait(f, 0), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    void *r = (void *)&r;
    ck_assert_int_eq(ws_future_get(f, &r), ECANCELED);
    ck_assert_ptr_eq(r, (void *)&r); /* unchanged */
    ck_assert_int_eq(ws_future_get(f, NULL), ECANCELED);
    gate_open(&g);
    ck_assert_int_eq(ws_future_get(busy, NULL), 0);
    ws_future_release(f);
    ws_future_release(busy);
    destroy(p); /* the queued record is dropped, never run */
    ck_assert_int_eq(atomic_load(&ran), 0);
}
END_TEST

START_TEST(test_future_cancel_done)
{
    ws_pool *p = pool_new(2);
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(p, compute, (void *)3, &f), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ck_assert_int_eq(ws_future_cancel(f), EBUSY);
    ck_assert_ptr_eq(get_value(f), (void *)value_of(3));
    ws_future_release(f);
    destroy(p);
}
END_TEST

/* The caller's reference may go first: the task keeps the future alive. */
START_TEST(test_future_release_early)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    atomic_long ran = 0;
    ws_future *f = submit_gate(p, &g), *h = NULL, *c = NULL;

    ck_assert_int_eq(ws_submit(p, count, &ran, &h), 0);
    ws_future_release(f); /* queued or running */
    gate_started(&g, 1);
    ws_future_release(h); /* queued, running or done */
    /* Released while pending: it still runs. */
    ck_assert_int_eq(ws_submit(p, count, &ran, &c), 0);
    ws_future_release(c);
    ws_future_release(NULL); /* does nothing */
    gate_open(&g);
    destroy(p);
    ck_assert_int_eq(atomic_load(&ran), 2);
}
END_TEST

/* A cancelled future may be released before its record reaches a worker. */
START_TEST(test_future_release_cancelled)
{
    ws_pool *p = pool_new(1);
    struct gate g = {0};
    atomic_long ran = 0;
    ws_future *busy = submit_gate(p, &g), *f = NULL;

    gate_started(&g, 1);
    ck_assert_int_eq(ws_submit(p, count, &ran, &f), 0);
    ck_assert_int_eq(ws_future_cancel(f), 0);
    ws_future_release(f);
    ws_future_release(busy);
    gate_open(&g);
    destroy(p);
    ck_assert_int_eq(atomic_load(&ran), 0);
}
END_TEST

/* Detached work (no future) runs before ws_pool_destroy returns. */
START_TEST(test_future_detached)
{
    ws_pool *p = pool_new(3);
    atomic_long ran = 0;
    const long n = 200;

    for (long i = 0; i < n; i++)
        ck_assert_int_eq(ws_submit(p, count, &ran, NULL), 0);
    for (long i = 0; i < 6; i++)
        ck_assert_int_eq(ws_submit(p, sleeper, (void *)20, NULL), 0);
    destroy(p);
    ck_assert_int_eq(atomic_load(&ran), n);
}
END_TEST

struct inner {
    ws_pool *pool;
    atomic_long ran;
    int err;
    uintptr_t got;
};

static void *
inner_task(void *arg)
{
    struct inner *in = arg;
    ws_future *f = NULL;
    void *r = NULL;

    /* From a worker: on its own deque; the wait runs it meanwhile. */
    in->err = ws_submit(in->pool, compute, (void *)11, &f);
    if (in->err == 0)
        in->err = ws_future_get(f, &r);
    ws_future_release(f);
    in->got = (uintptr_t)r;
    for (int i = 0; i < 10 && in->err == 0; i++)
        in->err = ws_submit(in->pool, count, &in->ran, NULL);
    return NULL;
}

/* A task submits and waits on one worker: only helping lets it finish. */
START_TEST(test_future_submit_from_task)
{
    ws_pool *p = pool_new(1);
    struct inner in = {p, 0, -1, 0};
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(p, inner_task, &in, &f), 0);
    ck_assert_int_eq(ws_future_get(f, NULL), 0);
    ck_assert_int_eq(in.err, 0);
    ck_assert_uint_eq(in.got, value_of(11));
    ws_future_release(f);
    destroy(p);
    ck_assert_int_eq(atomic_load(&in.ran), 10);
}
END_TEST

/* ------------------------------------------------------------------ */
/* basic: waiting for any or all                                      */
/* ------------------------------------------------------------------ */

START_TEST(test_future_wait_all_zero_one)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_future *f = submit_gate(p, &g);

    ck_assert_int_eq(ws_wait_all(NULL, 0, WS_FOREVER), 0);
    ck_assert_int_eq(ws_wait_all(&f, 0, 0), 0);
    ck_assert_int_eq(ws_wait_all(&f, 1, 0), ETIMEDOUT);
    size_t idx = 99;
    ck_assert_int_eq(ws_wait_any(&f, 1, 0, &idx), ETIMEDOUT);
    ck_assert_int_eq(ws_wait_any(&f, 1, 0.05, &idx), ETIMEDOUT);
    ck_assert_uint_eq(idx, 99); /* unchanged */
    gate_open(&g);
    ck_assert_int_eq(ws_wait_any(&f, 1, WS_FOREVER, &idx), 0);
    ck_assert_uint_eq(idx, 0);
    ck_assert_int_eq(ws_wait_all(&f, 1, WS_FOREVER), 0);
    ck_assert_int_eq(ws_wait_all(&f, 1, 0), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

enum { MANY = 64 };

START_TEST(test_future_wait_many)
{
    ws_pool *p = pool_new(4);
    struct gate g = {0};
    ws_future *fs[MANY];
    const size_t quick = 37;
    size_t idx = 0;

    ck_assert_int_eq(ws_submit(p, compute, (void *)quick, &fs[quick]), 0);
    ck_assert_int_eq(ws_future_wait(fs[quick], WS_FOREVER), 0);
    for (size_t i = 0; i < MANY; i++)
        if (i != quick)
            fs[i] = submit_gate(p, &g);
    ck_assert_int_eq(ws_wait_any(fs, MANY, WS_FOREVER, &idx), 0);
    ck_assert_uint_eq(idx, quick);
    ck_assert_int_eq(ws_wait_any(fs, MANY, 0, &idx), 0);
    ck_assert_uint_eq(idx, quick);
    ck_assert_int_eq(ws_wait_all(fs, MANY, 0), ETIMEDOUT);
    ck_assert_int_eq(ws_wait_all(fs, MANY, 0.05), ETIMEDOUT);
    /* Later ones may be done too: the lowest done index comes back. */
    ck_assert_int_eq(ws_wait_any(fs + quick, MANY - quick, 0, &idx), 0);
    ck_assert_uint_eq(idx, 0);
    gate_open(&g);
    ck_assert_int_eq(ws_wait_all(fs, MANY, WS_FOREVER), 0);
    for (size_t i = 0; i < MANY; i++)
        ck_assert(ws_future_done(fs[i]));
    ck_assert_int_eq(ws_wait_any(fs, MANY, 0, &idx), 0);
    ck_assert_uint_eq(idx, 0);
    ck_assert_ptr_eq(get_value(fs[quick]), (void *)value_of(quick));
    for (size_t i = 0; i < MANY; i++)
        ws_future_release(fs[i]);
    destroy(p);
}
END_TEST

START_TEST(test_future_wait_timeout_many)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_future *fs[3];
    size_t idx = 77;

    for (int i = 0; i < 3; i++)
        fs[i] = submit_gate(p, &g);
    double t0 = now();
    ck_assert_int_eq(ws_wait_any(fs, 3, 0.2, &idx), ETIMEDOUT);
    double dt = now() - t0;
    ck_assert_msg(dt >= 0.199 && dt < 5.0, "wait_any: %.3f s of 0.2", dt);
    ck_assert_uint_eq(idx, 77);
    t0 = now();
    ck_assert_int_eq(ws_wait_all(fs, 3, 0.2), ETIMEDOUT);
    dt = now() - t0;
    ck_assert_msg(dt >= 0.199 && dt < 5.0, "wait_all: %.3f s of 0.2", dt);
    gate_open(&g);
    ck_assert_int_eq(ws_wait_all(fs, 3, 30.0), 0);
    for (int i = 0; i < 3; i++)
        ws_future_release(fs[i]);
    destroy(p);
}
END_TEST

/* Futures of several pools in one wait. */
START_TEST(test_future_wait_pools)
{
    ws_pool *a = pool_new(2), *b = pool_new(2);
    struct gate g = {0};
    ws_future *fs[4];
    size_t idx = 9;

    fs[0] = submit_gate(a, &g);
    ck_assert_int_eq(ws_submit(b, sleeper, (void *)30, &fs[1]), 0);
    ck_assert_int_eq(ws_submit(a, compute, (void *)2, &fs[2]), 0);
    ck_assert_int_eq(ws_submit(b, compute, (void *)3, &fs[3]), 0);
    ck_assert_int_eq(ws_wait_any(fs, 2, WS_FOREVER, &idx), 0);
    ck_assert_uint_eq(idx, 1); /* noticed though fs[0] is of pool a */
    ck_assert_int_eq(ws_wait_all(fs + 1, 3, WS_FOREVER), 0);
    gate_open(&g);
    ck_assert_int_eq(ws_wait_all(fs, 4, WS_FOREVER), 0);
    ck_assert_ptr_eq(get_value(fs[3]), (void *)value_of(3));
    for (int i = 0; i < 4; i++)
        ws_future_release(fs[i]);
    destroy(a);
    destroy(b);
}
END_TEST

struct wait_in_task {
    ws_pool *pool;
    int any_err, all_err;
    size_t idx;
    uintptr_t sum;
};

static void
wait_in_task(void *arg)
{
    struct wait_in_task *w = arg;
    ws_future *fs[8];

    for (uintptr_t i = 0; i < 8; i++)
        if (ws_submit(w->pool, compute, (void *)i, &fs[i]) != 0)
            return;
    w->any_err = ws_wait_any(fs, 8, WS_FOREVER, &w->idx);
    w->all_err = ws_wait_all(fs, 8, WS_FOREVER);
    for (uintptr_t i = 0; i < 8; i++) {
        void *r = NULL;
        ws_future_get(fs[i], &r);
        w->sum += (uintptr_t)r;
        ws_future_release(fs[i]);
    }
}

/* On its only worker, a task waits for its own submissions: it helps. */
START_TEST(test_future_wait_many_worker)
{
    ws_pool *p = pool_new(1);
    struct wait_in_task w = {p, -1, -1, 99, 0};
    uintptr_t sum = 0;

    ck_assert_int_eq(ws_run(p, wait_in_task, &w), 0);
    ck_assert_int_eq(w.any_err, 0);
    ck_assert_int_eq(w.all_err, 0);
    ck_assert_uint_lt(w.idx, 8);
    for (uintptr_t i = 0; i < 8; i++)
        sum += value_of(i);
    ck_assert_uint_eq(w.sum, sum);
    destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* basic: callbacks                                                   */
/* ------------------------------------------------------------------ */

struct cb_rec {
    atomic_int calls;
    ws_future *f;
    int worker;
    pthread_t thread;
    void *result;
    int get_err;
};

static void
record_cb(ws_future *f, void *arg)
{
    struct cb_rec *r = arg;
    r->f = f;
    r->worker = ws_worker_index();
    r->thread = pthread_self();
    /* The future is done when its callback runs. */
    r->get_err = ws_future_get(f, &r->result);
    atomic_fetch_add_explicit(&r->calls, 1, memory_order_release);
}

static void
other_cb(ws_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add_explicit((atomic_int *)arg, 1, memory_order_relaxed);
}

/* Pending: the callback runs once, on the worker that completes it. */
START_TEST(test_future_then_pending)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    struct cb_rec r = {.worker = -2};
    atomic_int other = 0;
    ws_future *f = submit_gate(p, &g);

    ck_assert_int_eq(ws_future_then(f, record_cb, &r), 0);
    ck_assert_int_eq(ws_future_then(f, other_cb, &other), EBUSY);
    ck_assert_int_eq(atomic_load(&r.calls), 0);
    gate_open(&g);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    destroy(p); /* the callback has certainly returned */
    ck_assert_int_eq(atomic_load(&r.calls), 1);
    ck_assert_ptr_eq(r.f, f);
    ck_assert_int_ge(r.worker, 0);
    ck_assert_int_eq(r.get_err, 0);
    ck_assert_ptr_eq(r.result, &g);
    ck_assert_int_eq(atomic_load(&other), 0);
    ws_future_release(f);
}
END_TEST

/* Done: the callback runs at once, on the caller. */
START_TEST(test_future_then_done)
{
    ws_pool *p = pool_new(2);
    struct cb_rec r = {.worker = -2};
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(p, compute, (void *)5, &f), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ck_assert_int_eq(ws_future_then(f, record_cb, &r), 0);
    ck_assert_int_eq(atomic_load(&r.calls), 1);
    ck_assert_int_eq(r.worker, -1);
    ck_assert(pthread_equal(r.thread, pthread_self()));
    ck_assert_ptr_eq(r.result, (void *)value_of(5));
    ws_future_release(f);
    destroy(p);
}
END_TEST

/* Cancel completes the future: the callback runs on the canceller. */
START_TEST(test_future_then_cancel)
{
    ws_pool *p = pool_new(1);
    struct gate g = {0};
    struct cb_rec r = {.worker = -2};
    ws_future *busy = submit_gate(p, &g), *f = NULL;

    gate_started(&g, 1);
    ck_assert_int_eq(ws_submit(p, compute, (void *)1, &f), 0);
    ck_assert_int_eq(ws_future_then(f, record_cb, &r), 0);
    ck_assert_int_eq(ws_future_cancel(f), 0);
    ck_assert_int_eq(atomic_load(&r.calls), 1);
    ck_assert(pthread_equal(r.thread, pthread_self()));
    ck_assert_int_eq(r.get_err, ECANCELED);
    ck_assert_int_eq(ws_future_cancel(f), 0);
    ck_assert_int_eq(atomic_load(&r.calls), 1);
    gate_open(&g);
    ws_future_release(busy);
    ws_future_release(f);
    destroy(p);
    ck_assert_int_eq(atomic_load(&r.calls), 1);
}
END_TEST

/* One callback per future: a second gets EBUSY, before or after done. */
START_TEST(test_future_then_once)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    atomic_int first = 0, second = 0, third = 0;
    ws_future *f = NULL, *h = submit_gate(p, &g);

    ck_assert_int_eq(ws_submit(p, nothing, NULL, &f), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ck_assert_int_eq(ws_future_then(f, other_cb, &first), 0);
    ck_assert_int_eq(atomic_load(&first), 1);
    ck_assert_int_eq(ws_future_then(f, other_cb, &second), EBUSY);
    ck_assert_int_eq(ws_future_then(f, other_cb, &second), EBUSY);
    ck_assert_int_eq(ws_future_then(h, other_cb, &third), 0);
    gate_open(&g);
    ck_assert_int_eq(ws_future_wait(h, WS_FOREVER), 0);
    ck_assert_int_eq(ws_future_then(h, other_cb, &second), EBUSY);
    ws_future_release(f);
    ws_future_release(h);
    destroy(p);
    ck_assert_int_eq(atomic_load(&first), 1);
    ck_assert_int_eq(atomic_load(&second), 0);
    ck_assert_int_eq(atomic_load(&third), 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* basic: completion queues                                           */
/* ------------------------------------------------------------------ */

/* Staggered sleeps come back in the order they finish, not added. */
START_TEST(test_future_completion_order)
{
    static const uintptr_t ms[] = {600, 150, 450, 300};
    static const size_t order[] = {1, 3, 2, 0};
    ws_pool *p = pool_new(4);
    ws_completion *c = NULL;
    ws_future *fs[4], *f;

    ck_assert_int_eq(ws_completion_create(&c), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ws_submit(p, sleeper, (void *)ms[i], &fs[i]), 0);
        ck_assert_int_eq(ws_completion_add(c, fs[i]), 0);
    }
    for (int k = 0; k < 4; k++) {
        f = NULL;
        ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &f), 0);
        ck_assert_msg(f == fs[order[k]], "next #%d is not future %zu", k,
                      order[k]);
        ck_assert(ws_future_done(f));
        ck_assert_ptr_eq(get_value(f), (void *)ms[order[k]]);
    }
    f = (ws_future *)&f;
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &f), EPIPE);
    ck_assert_int_eq(ws_completion_next(c, 0, &f), EPIPE);
    ck_assert_ptr_eq(f, (ws_future *)&f); /* unchanged */
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    for (int i = 0; i < 4; i++)
        ws_future_release(fs[i]);
    destroy(p);
}
END_TEST

START_TEST(test_future_completion_empty)
{
    ws_completion *c = NULL;
    ws_future *f = NULL;

    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_completion_next(c, 0, &f), EPIPE);
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &f), EPIPE);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
}
END_TEST

/* Already done when added, cancelled, and reused after EPIPE. */
START_TEST(test_future_completion_done_cancelled)
{
    ws_pool *p = pool_new(1);
    struct gate g = {0};
    ws_completion *c = NULL;
    ws_future *busy = submit_gate(p, &g), *a = NULL, *b = NULL, *f = NULL;

    gate_started(&g, 1);
    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_submit(p, compute, (void *)1, &b), 0);
    ck_assert_int_eq(ws_completion_add(c, b), 0);
    ck_assert_int_eq(ws_future_cancel(b), 0); /* arrives now */
    ck_assert_int_eq(ws_completion_next(c, 0, &f), 0);
    ck_assert_ptr_eq(f, b);
    ck_assert_int_eq(ws_future_get(f, NULL), ECANCELED);
    ck_assert_int_eq(ws_completion_next(c, 0, &f), EPIPE);
    gate_open(&g);
    ck_assert_int_eq(ws_submit(p, compute, (void *)2, &a), 0);
    ck_assert_int_eq(ws_future_wait(a, WS_FOREVER), 0);
    ck_assert_int_eq(ws_completion_add(c, a), 0); /* done: arrives at once */
    ck_assert_int_eq(ws_completion_next(c, 0, &f), 0);
    ck_assert_ptr_eq(f, a);
    ck_assert_int_eq(ws_completion_next(c, 0, &f), EPIPE);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    ws_future_release(a);
    ws_future_release(b);
    ws_future_release(busy);
    destroy(p);
}
END_TEST

START_TEST(test_future_completion_timeout)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_completion *c = NULL;
    ws_future *f = submit_gate(p, &g), *out = NULL;

    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_completion_add(c, f), 0);
    ck_assert_int_eq(ws_completion_next(c, 0, &out), ETIMEDOUT);
    double t0 = now();
    ck_assert_int_eq(ws_completion_next(c, 0.2, &out), ETIMEDOUT);
    double dt = now() - t0;
    ck_assert_msg(dt >= 0.199 && dt < 5.0, "next: %.3f s of 0.2", dt);
    ck_assert_ptr_null(out);
    gate_open(&g);
    ck_assert_int_eq(ws_completion_next(c, 30.0, &out), 0);
    ck_assert_ptr_eq(out, f);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

/* The callback slot is shared: one of then or add per future. */
START_TEST(test_future_completion_ebusy)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    atomic_int calls = 0;
    ws_completion *c = NULL, *d = NULL;
    ws_future *a = submit_gate(p, &g), *b = submit_gate(p, &g), *f = NULL;

    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_completion_create(&d), 0);
    ck_assert_int_eq(ws_future_then(a, other_cb, &calls), 0);
    ck_assert_int_eq(ws_completion_add(c, a), EBUSY);
    ck_assert_int_eq(ws_completion_add(c, b), 0);
    ck_assert_int_eq(ws_completion_add(c, b), EBUSY);
    ck_assert_int_eq(ws_completion_add(d, b), EBUSY);
    ck_assert_int_eq(ws_future_then(b, other_cb, &calls), EBUSY);
    /* A refused add leaves nothing pending in d. */
    ck_assert_int_eq(ws_completion_next(d, WS_FOREVER, &f), EPIPE);
    ck_assert_int_eq(ws_completion_destroy(d), 0);
    /* b is not done: c must stay. */
    ck_assert_int_eq(ws_completion_destroy(c), EBUSY);
    ck_assert_int_eq(ws_completion_destroy(c), EBUSY);
    gate_open(&g);
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &f), 0);
    ck_assert_ptr_eq(f, b);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    ck_assert_int_eq(ws_future_wait(a, WS_FOREVER), 0);
    ws_future_release(a);
    ws_future_release(b);
    destroy(p);
    ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

/* A done future added twice, to one queue or two, comes back once. */
START_TEST(test_future_completion_add_once)
{
    ws_pool *p = pool_new(2);
    ws_completion *c = NULL, *d = NULL;
    ws_future *f = NULL, *out = NULL;
    int got = 0, err;

    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_completion_create(&d), 0);
    ck_assert_int_eq(ws_submit(p, nothing, NULL, &f), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ck_assert_int_eq(ws_completion_add(c, f), 0);
    ck_assert_int_eq(ws_completion_add(c, f), EBUSY);
    ck_assert_int_eq(ws_completion_add(d, f), EBUSY);
    ck_assert_int_eq(ws_future_then(f, other_cb, &got), EBUSY);
    /* Bounded: a future linked twice would make the queue a cycle. */
    while (got < 4 && (err = ws_completion_next(c, 0, &out)) == 0)
        got++;
    ck_assert_int_eq(got, 1);
    ck_assert_int_eq(err, EPIPE);
    ck_assert_int_eq(ws_completion_next(d, 0, &out), EPIPE);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    ck_assert_int_eq(ws_completion_destroy(d), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

/* Done but not yet taken: destroy may go ahead. */
START_TEST(test_future_completion_destroy_unreturned)
{
    ws_pool *p = pool_new(2);
    ws_completion *c = NULL;
    ws_future *fs[3];

    ck_assert_int_eq(ws_completion_create(&c), 0);
    for (uintptr_t i = 0; i < 3; i++) {
        ck_assert_int_eq(ws_submit(p, compute, (void *)i, &fs[i]), 0);
        ck_assert_int_eq(ws_completion_add(c, fs[i]), 0);
    }
    ws_future *f = NULL;
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &f), 0);
    /* Once the pool is gone, every completion has been recorded. */
    destroy(p);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    for (int i = 0; i < 3; i++)
        ws_future_release(fs[i]);
}
END_TEST

struct next_in_task {
    ws_pool *pool;
    int err;
    int got;
    uintptr_t sum;
};

static void
next_in_task(void *arg)
{
    struct next_in_task *t = arg;
    ws_completion *c = NULL;
    ws_future *fs[16], *f;

    if ((t->err = ws_completion_create(&c)) != 0)
        return;
    for (uintptr_t i = 0; i < 16; i++) {
        if ((t->err = ws_submit(t->pool, compute, (void *)i, &fs[i])) != 0 ||
            (t->err = ws_completion_add(c, fs[i])) != 0)
            return;
    }
    /* The only worker waits here: it must run the futures meanwhile. */
    while ((t->err = ws_completion_next(c, WS_FOREVER, &f)) == 0) {
        void *r = NULL;
        ws_future_get(f, &r);
        t->sum += (uintptr_t)r;
        t->got++;
    }
    if (t->err == EPIPE)
        t->err = ws_completion_destroy(c);
    for (int i = 0; i < 16; i++)
        ws_future_release(fs[i]);
}

START_TEST(test_future_completion_worker)
{
    ws_pool *p = pool_new(1);
    struct next_in_task t = {p, -1, 0, 0};
    uintptr_t sum = 0;

    ck_assert_int_eq(ws_run(p, next_in_task, &t), 0);
    ck_assert_int_eq(t.err, 0);
    ck_assert_int_eq(t.got, 16);
    for (uintptr_t i = 0; i < 16; i++)
        sum += value_of(i);
    ck_assert_uint_eq(t.sum, sum);
    destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* basic: blocking work and nesting                                   */
/* ------------------------------------------------------------------ */

/* ThreadPoolExecutor(max_workers=10): ten sleepers overlap. */
START_TEST(test_future_sleepers)
{
    ws_pool *p = pool_new(10);
    ws_future *fs[10];

    ck_assert_uint_eq(ws_pool_size(p), 10);
    double t0 = now();
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ws_submit(p, sleeper, (void *)200, &fs[i]), 0);
    ck_assert_int_eq(ws_wait_all(fs, 10, WS_FOREVER), 0);
    double dt = now() - t0;
    ck_assert_msg(dt >= 0.199, "ten 200 ms sleeps took %.3f s", dt);
    ck_assert_msg(dt < 1.5, "ten 200 ms sleeps took %.3f s: not parallel", dt);
    for (int i = 0; i < 10; i++) {
        ck_assert_ptr_eq(get_value(fs[i]), (void *)200);
        ws_future_release(fs[i]);
    }
    destroy(p);
}
END_TEST

static ws_pool *tree_pool;

/* A binary tree of submit-and-wait: returns its leaf count. */
static void *
tree_node(void *arg)
{
    uintptr_t level = (uintptr_t)arg;
    ws_future *a = NULL, *b = NULL;
    void *ra = NULL, *rb = NULL;

    if (level == 0)
        return (void *)1;
    if (ws_submit(tree_pool, tree_node, (void *)(level - 1), &a) != 0 ||
        ws_submit(tree_pool, tree_node, (void *)(level - 1), &b) != 0)
        abort();
    if (ws_future_get(a, &ra) != 0 || ws_future_get(b, &rb) != 0)
        abort();
    ws_future_release(a);
    ws_future_release(b);
    return (void *)((uintptr_t)ra + (uintptr_t)rb);
}

/* Every worker waits on children, yet nothing deadlocks. */
START_TEST(test_future_nested_tree)
{
    tree_pool = pool_new(2);
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(tree_pool, tree_node, (void *)10, &f), 0);
    ck_assert_uint_eq((uintptr_t)get_value(f), 1024);
    ws_future_release(f);
    /* Several trees at once, from outside. */
    ws_future *fs[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(ws_submit(tree_pool, tree_node, (void *)8, &fs[i]), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq((uintptr_t)get_value(fs[i]), 256);
        ws_future_release(fs[i]);
    }
    destroy(tree_pool);
}
END_TEST

static ws_future **chain;
static long chain_len;
static atomic_int chain_go;

static void *
chain_hold(void *arg)
{
    while (!atomic_load_explicit(&chain_go, memory_order_acquire))
        sleep_s(0.001);
    return arg;
}

static void *
chain_link(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    /*
     * chain[i + 1] is stored once its ws_submit returns, which may be
     * after a worker took the link from a batch: wait for all of them.
     */
    while (!atomic_load_explicit(&chain_go, memory_order_acquire))
        sleep_s(0.001);
    if ((long)i + 1 < chain_len && ws_future_get(chain[i + 1], NULL) != 0)
        abort();
    return arg;
}

/*
 * A chain of tasks submitted from outside, each waiting on the next (queued
 * behind it), on two workers: only workers that run other tasks while they
 * wait, to the chain's depth, finish it (ThreadPoolExecutor deadlocks).
 */
static void
run_chain(long n)
{
    ws_pool *p = pool_new(2);
    ws_future *hold[2];

    chain_len = n;
    chain = calloc((size_t)n, sizeof *chain);
    ck_assert_ptr_nonnull(chain);
    atomic_store(&chain_go, 0);
    /* Both workers are held until every link is queued. */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(ws_submit(p, chain_hold, NULL, &hold[i]), 0);
    for (long i = 0; i < n; i++)
        ck_assert_int_eq(
            ws_submit(p, chain_link, (void *)(uintptr_t)i, &chain[i]), 0);
    atomic_store_explicit(&chain_go, 1, memory_order_release);
    ck_assert_int_eq(ws_future_wait(chain[0], WS_FOREVER), 0);
    ck_assert_int_eq(ws_wait_all(chain, (size_t)n, WS_FOREVER), 0);
    for (long i = 0; i < n; i++)
        ws_future_release(chain[i]);
    for (int i = 0; i < 2; i++)
        ws_future_release(hold[i]);
    free(chain);
    destroy(p);
}

START_TEST(test_future_sibling_chain)
{
    run_chain(100);
}
END_TEST

/* ------------------------------------------------------------------ */
/* errors                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_future_submit_einval)
{
    ws_pool *p = pool_new(1);
    ws_future *f = (ws_future *)&f;

    ck_assert_int_eq(ws_submit(NULL, nothing, NULL, &f), EINVAL);
    ck_assert_int_eq(ws_submit(p, NULL, NULL, &f), EINVAL);
    ck_assert_int_eq(ws_submit(NULL, nothing, NULL, NULL), EINVAL);
    ck_assert_int_eq(ws_submit(p, NULL, NULL, NULL), EINVAL);
    ck_assert_ptr_eq(f, (ws_future *)&f); /* unchanged */
    destroy(p);
}
END_TEST

START_TEST(test_future_calls_einval)
{
    void *r = &r;

    ck_assert_int_eq(ws_future_wait(NULL, 0), EINVAL);
    ck_assert_int_eq(ws_future_wait(NULL, WS_FOREVER), EINVAL);
    ck_assert_int_eq(ws_future_get(NULL, &r), EINVAL);
    ck_assert_int_eq(ws_future_get(NULL, NULL), EINVAL);
    ck_assert_ptr_eq(r, &r);
    ck_assert_int_eq(ws_future_cancel(NULL), EINVAL);
    ck_assert(!ws_future_done(NULL));
    ws_future_release(NULL);
}
END_TEST

START_TEST(test_future_wait_many_einval)
{
    ws_pool *p = pool_new(1);
    ws_future *f = NULL, *fs[2], *holes[2];
    size_t idx = 5;

    ck_assert_int_eq(ws_submit(p, nothing, NULL, &f), 0);
    fs[0] = fs[1] = f;
    holes[0] = f;
    holes[1] = NULL;
    ck_assert_int_eq(ws_wait_any(fs, 0, 0, &idx), EINVAL);
    ck_assert_int_eq(ws_wait_any(NULL, 0, 0, &idx), EINVAL);
    ck_assert_int_eq(ws_wait_any(NULL, 2, 0, &idx), EINVAL);
    ck_assert_int_eq(ws_wait_any(fs, 2, 0, NULL), EINVAL);
    ck_assert_int_eq(ws_wait_any(holes, 2, WS_FOREVER, &idx), EINVAL);
    ck_assert_uint_eq(idx, 5);
    ck_assert_int_eq(ws_wait_all(NULL, 2, 0), EINVAL);
    ck_assert_int_eq(ws_wait_all(holes, 2, WS_FOREVER), EINVAL);
    ck_assert_int_eq(ws_wait_all(holes + 1, 1, 0), EINVAL);
    ck_assert_int_eq(ws_wait_all(fs, 2, WS_FOREVER), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

START_TEST(test_future_then_einval)
{
    ws_pool *p = pool_new(1);
    atomic_int calls = 0;
    ws_future *f = NULL;

    ck_assert_int_eq(ws_submit(p, nothing, NULL, &f), 0);
    ck_assert_int_eq(ws_future_then(NULL, other_cb, &calls), EINVAL);
    ck_assert_int_eq(ws_future_then(f, NULL, &calls), EINVAL);
    /* A refused callback leaves the slot free. */
    ck_assert_int_eq(ws_future_then(f, other_cb, &calls), 0);
    ck_assert_int_eq(ws_future_wait(f, WS_FOREVER), 0);
    ws_future_release(f);
    destroy(p);
    ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

START_TEST(test_future_completion_einval)
{
    ws_pool *p = pool_new(1);
    ws_completion *c = NULL;
    ws_future *f = NULL, *out = (ws_future *)&out;

    ck_assert_int_eq(ws_completion_create(NULL), EINVAL);
    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_submit(p, nothing, NULL, &f), 0);
    ck_assert_int_eq(ws_completion_add(NULL, f), EINVAL);
    ck_assert_int_eq(ws_completion_add(c, NULL), EINVAL);
    ck_assert_int_eq(ws_completion_next(NULL, 0, &out), EINVAL);
    ck_assert_int_eq(ws_completion_next(c, 0, NULL), EINVAL);
    ck_assert_ptr_eq(out, (ws_future *)&out);
    ck_assert_int_eq(ws_completion_destroy(NULL), EINVAL);
    /* The refused add left f's callback slot free. */
    ck_assert_int_eq(ws_completion_add(c, f), 0);
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &out), 0);
    ck_assert_ptr_eq(out, f);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    ws_future_release(f);
    destroy(p);
}
END_TEST

static ws_pool *closing_pool;
static atomic_long closing_ran;
static atomic_int closing_inner_err = -1;

/* Runs while ws_pool_destroy waits for it, then submits more. */
static void *
closing_task(void *arg)
{
    gate_task(arg);
    atomic_store(&closing_inner_err,
                 ws_submit(closing_pool, count, &closing_ran, NULL));
    return NULL;
}

static void *
destroy_thread(void *arg)
{
    return (void *)(intptr_t)ws_pool_destroy(arg);
}

/*
 * Once ws_pool_destroy has begun, other threads get EPIPE and their work
 * never runs; a task that still runs may submit, and destroy waits for that
 * work too.
 */
START_TEST(test_future_submit_epipe)
{
    struct gate g = {0};
    pthread_t d;
    long accepted = 0;
    int err;

    closing_pool = pool_new(2);
    ck_assert_int_eq(ws_submit(closing_pool, closing_task, &g, NULL), 0);
    gate_started(&g, 1);
    ck_assert_int_eq(pthread_create(&d, NULL, destroy_thread, closing_pool), 0);
    while ((err = ws_submit(closing_pool, count, &closing_ran, NULL)) == 0) {
        accepted++;
        sleep_s(0.0005);
    }
    ck_assert_int_eq(err, EPIPE);
    ws_future *f = (ws_future *)&f;
    ck_assert_int_eq(ws_submit(closing_pool, compute, NULL, &f), EPIPE);
    ck_assert_ptr_eq(f, (ws_future *)&f);
    gate_open(&g);
    void *r;
    ck_assert_int_eq(pthread_join(d, &r), 0);
    ck_assert_int_eq((int)(intptr_t)r, 0);
    ck_assert_int_eq(atomic_load(&closing_inner_err), 0);
    ck_assert_int_eq(atomic_load(&closing_ran), accepted + 1);
}
END_TEST

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
        sleep_s(0.01);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* In the child: the first check that failed, or 0. */
static int
child_checks(ws_pool *parent, ws_future *pending, ws_future *done)
{
    ws_future *f = NULL;
    void *r = NULL;

    if (ws_submit(parent, compute, NULL, &f) != ECHILD || f != NULL)
        return 10;
    if (ws_submit(parent, compute, NULL, NULL) != ECHILD)
        return 11;
    if (ws_future_wait(pending, WS_FOREVER) != ECHILD)
        return 12;
    if (ws_future_get(pending, &r) != ECHILD)
        return 13;
    if (ws_wait_all(&pending, 1, 1.0) != ECHILD)
        return 15;
    /* A future that was done before the fork still answers. */
    if (ws_future_get(done, &r) != 0 || r != (void *)value_of(4))
        return 16;
    if (ws_pool_destroy(parent) != 0)
        return 17;
    if (UNDER_TSAN)
        return 0;
    ws_pool *p;
    ws_pool_opts o = {.workers = 2, .bind = WS_BIND_NONE};
    if (ws_pool_create(&p, &o) != 0)
        return 18;
    if (ws_submit(p, compute, (void *)9, &f) != 0 ||
        ws_future_get(f, &r) != 0 || r != (void *)value_of(9))
        return 19;
    ws_future_release(f);
    if (ws_pool_destroy(p) != 0)
        return 20;
    return 0;
}

START_TEST(test_future_submit_echild)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_future *pending = submit_gate(p, &g), *done = NULL;

    ck_assert_int_eq(ws_submit(p, compute, (void *)4, &done), 0);
    ck_assert_int_eq(ws_future_wait(done, WS_FOREVER), 0);
    gate_started(&g, 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(child_checks(p, pending, done));
    int st = wait_child(pid);
    ck_assert_msg(st == 0, "child: %d (-1: hung)", st);
    /* The parent's pool and futures are unaffected. */
    gate_open(&g);
    ck_assert_ptr_eq(get_value(pending), &g);
    ws_future_release(pending);
    ws_future_release(done);
    destroy(p);
}
END_TEST

/* In the child: the first check that failed, or 0. */
static int
child_completion_checks(ws_completion *c, ws_future *pending, ws_future *done)
{
    ws_future *out = NULL;

    if (ws_completion_next(c, WS_FOREVER, &out) != ECHILD || out != NULL)
        return 10;
    if (ws_completion_next(c, 0, &out) != ECHILD)
        return 11;
    if (ws_completion_add(c, done) != ECHILD)
        return 12;
    size_t idx = 0;
    if (ws_wait_any(&pending, 1, WS_FOREVER, &idx) != ECHILD)
        return 13;
    if (ws_completion_destroy(c) != 0) /* frees the child's copy */
        return 14;
    return 0;
}

/* After fork, the parent's completion queues answer ECHILD, never hang. */
START_TEST(test_future_completion_echild)
{
    ws_pool *p = pool_new(2);
    struct gate g = {0};
    ws_completion *c = NULL;
    ws_future *pending = submit_gate(p, &g), *done = NULL, *out = NULL;

    ck_assert_int_eq(ws_completion_create(&c), 0);
    ck_assert_int_eq(ws_completion_add(c, pending), 0);
    ck_assert_int_eq(ws_submit(p, compute, (void *)6, &done), 0);
    ck_assert_int_eq(ws_future_wait(done, WS_FOREVER), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(child_completion_checks(c, pending, done));
    int st = wait_child(pid);
    ck_assert_msg(st == 0, "child: %d (-1: hung)", st);
    /* The parent's queue is unaffected. */
    gate_open(&g);
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &out), 0);
    ck_assert_ptr_eq(out, pending);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    ws_future_release(pending);
    ws_future_release(done);
    destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* concurrency                                                        */
/* ------------------------------------------------------------------ */

enum { SUBMITTERS = 4 };

struct submitter {
    ws_pool *pool;
    int id;
    long n;
    atomic_long *detached;
    pthread_barrier_t *start;
    long bad;
};

static void *
submitter_thread(void *arg)
{
    struct submitter *s = arg;
    ws_future **fs = malloc(sizeof *fs * (size_t)s->n);

    pin(s->id);
    pthread_barrier_wait(s->start);
    for (long i = 0; i < s->n; i++) {
        uintptr_t v = (uintptr_t)(s->id * s->n + i);
        if (ws_submit(s->pool, compute, (void *)v, &fs[i]) != 0 ||
            ws_submit(s->pool, count, s->detached, NULL) != 0)
            s->bad++;
    }
    for (long i = 0; i < s->n; i++) {
        void *r = NULL;
        if (ws_future_get(fs[i], &r) != 0 ||
            r != (void *)value_of((uintptr_t)(s->id * s->n + i)))
            s->bad++;
        ws_future_release(fs[i]);
    }
    free(fs);
    return NULL;
}

/* Four external threads submit at once (more threads than cores). */
START_TEST(test_future_submit_threads)
{
    ws_pool *p = pool_new(4);
    pthread_t t[SUBMITTERS];
    struct submitter s[SUBMITTERS];
    pthread_barrier_t start;
    atomic_long detached = 0;
    const long n = scale(20000);

    pthread_barrier_init(&start, NULL, SUBMITTERS);
    for (int i = 0; i < SUBMITTERS; i++) {
        s[i] = (struct submitter){p, i, n, &detached, &start, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, submitter_thread, &s[i]),
                         0);
    }
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(s[i].bad, 0);
    }
    pthread_barrier_destroy(&start);
    destroy(p);
    ck_assert_int_eq(atomic_load(&detached), SUBMITTERS * n);
}
END_TEST

struct fan {
    ws_pool *pool;
    uintptr_t base;
    long width;
    atomic_long *detached;
};

/* A task that submits width children and detached work, and sums them. */
static void *
fan_task(void *arg)
{
    struct fan *fa = arg;
    ws_future **fs = malloc(sizeof *fs * (size_t)fa->width);
    uintptr_t sum = 0;

    for (long i = 0; i < fa->width; i++) {
        if (ws_submit(fa->pool, compute, (void *)(fa->base + (uintptr_t)i),
                      &fs[i]) != 0 ||
            ws_submit(fa->pool, count, fa->detached, NULL) != 0)
            abort();
    }
    for (long i = 0; i < fa->width; i++) {
        void *r = NULL;
        if (ws_future_get(fs[i], &r) != 0)
            abort();
        sum += (uintptr_t)r;
        ws_future_release(fs[i]);
    }
    free(fs);
    return (void *)sum;
}

/* Tasks on every worker submit at once, external threads beside them. */
START_TEST(test_future_submit_from_tasks)
{
    enum { ROOTS = 64 };
    ws_pool *p = pool_new(4);
    struct fan fa[ROOTS];
    ws_future *fs[ROOTS];
    atomic_long detached = 0;
    const long width = scale(500);

    for (int i = 0; i < ROOTS; i++) {
        fa[i] = (struct fan){p, (uintptr_t)(i * width), width, &detached};
        ck_assert_int_eq(ws_submit(p, fan_task, &fa[i], &fs[i]), 0);
    }
    for (int i = 0; i < ROOTS; i++) {
        uintptr_t want = 0;
        for (long k = 0; k < width; k++)
            want += value_of(fa[i].base + (uintptr_t)k);
        ck_assert_uint_eq((uintptr_t)get_value(fs[i]), want);
        ws_future_release(fs[i]);
    }
    destroy(p);
    ck_assert_int_eq(atomic_load(&detached), ROOTS * width);
}
END_TEST

struct cancel_slot {
    atomic_int ran;
    atomic_int cancelled; /* ws_future_cancel answers 0 */
    atomic_int busy;      /* ws_future_cancel answers EBUSY */
    atomic_int other;
};

struct cancel_race {
    ws_future **fs;
    struct cancel_slot *slots;
    long n;
    atomic_long published;
    int id;
};

struct cancel_arg {
    struct cancel_race *race;
    int id;
};

static void *
cancel_target(void *arg)
{
    struct cancel_slot *s = arg;
    atomic_fetch_add_explicit(&s->ran, 1, memory_order_relaxed);
    return s;
}

static void *
canceller_thread(void *arg)
{
    struct cancel_arg *a = arg;
    struct cancel_race *r = a->race;

    pin(a->id);
    for (long i = 0; i < r->n; i++) {
        /* Acquire: pairs with the release in test_future_cancel_race. */
        while (atomic_load_explicit(&r->published, memory_order_acquire) <= i)
            sched_yield();
        int err = ws_future_cancel(r->fs[i]);
        struct cancel_slot *s = &r->slots[i];
        if (err == 0)
            atomic_fetch_add(&s->cancelled, 1);
        else if (err == EBUSY)
            atomic_fetch_add(&s->busy, 1);
        else
            atomic_fetch_add(&s->other, 1);
    }
    return NULL;
}

/*
 * Three threads cancel every future while workers start them: each ends
 * either cancelled (every cancel said 0, get says ECANCELED, the function
 * never ran) or run exactly once (every cancel said EBUSY).
 */
START_TEST(test_future_cancel_race)
{
    enum { CANCELLERS = 3 };
    ws_pool *p = pool_new(4);
    struct cancel_race r = {0};
    struct cancel_arg a[CANCELLERS];
    pthread_t t[CANCELLERS];
    long cancelled = 0;

    r.n = scale(20000);
    r.fs = calloc((size_t)r.n, sizeof *r.fs);
    r.slots = calloc((size_t)r.n, sizeof *r.slots);
    ck_assert(r.fs != NULL && r.slots != NULL);
    for (int i = 0; i < CANCELLERS; i++) {
        a[i] = (struct cancel_arg){&r, i + 1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, canceller_thread, &a[i]),
                         0);
    }
    for (long i = 0; i < r.n; i++) {
        ck_assert_int_eq(ws_submit(p, cancel_target, &r.slots[i], &r.fs[i]), 0);
        /* Release: publishes fs[i] to the acquire in canceller_thread. */
        atomic_store_explicit(&r.published, i + 1, memory_order_release);
    }
    for (int i = 0; i < CANCELLERS; i++)
        pthread_join(t[i], NULL);
    for (long i = 0; i < r.n; i++) {
        struct cancel_slot *s = &r.slots[i];
        void *res = NULL;
        int err = ws_future_get(r.fs[i], &res);
        ck_assert_int_eq(atomic_load(&s->other), 0);
        if (err == ECANCELED) {
            cancelled++;
            ck_assert_int_eq(atomic_load(&s->cancelled), CANCELLERS);
            ck_assert_int_eq(atomic_load(&s->ran), 0);
        } else {
            ck_assert_int_eq(err, 0);
            ck_assert_ptr_eq(res, s);
            ck_assert_int_eq(atomic_load(&s->busy), CANCELLERS);
            ck_assert_int_eq(atomic_load(&s->ran), 1);
        }
        ws_future_release(r.fs[i]);
    }
    destroy(p);
    long ran = 0;
    for (long i = 0; i < r.n; i++)
        ran += atomic_load(&r.slots[i].ran);
    ck_assert_int_eq(ran + cancelled, r.n);
    free(r.fs);
    free(r.slots);
}
END_TEST

static void
count_cb(ws_future *f, void *arg)
{
    struct cancel_slot *s = arg;
    (void)f;
    atomic_fetch_add_explicit(&s->other, 1, memory_order_relaxed);
}

/*
 * Callbacks registered while the tasks complete, some futures cancelled and
 * released at once: each callback runs exactly once.
 */
START_TEST(test_future_then_race)
{
    ws_pool *p = pool_new(4);
    const long n = scale(20000);
    struct cancel_slot *slots = calloc((size_t)n, sizeof *slots);
    long cancelled = 0;

    ck_assert_ptr_nonnull(slots);
    for (long i = 0; i < n; i++) {
        ws_future *f = NULL;
        ck_assert_int_eq(ws_submit(p, cancel_target, &slots[i], &f), 0);
        ck_assert_int_eq(ws_future_then(f, count_cb, &slots[i]), 0);
        if (i % 3 == 0 && ws_future_cancel(f) == 0) {
            cancelled++;
            ck_assert_int_eq(atomic_load(&slots[i].other), 1);
        }
        ws_future_release(f);
    }
    destroy(p);
    long ran = 0;
    for (long i = 0; i < n; i++) {
        ck_assert_int_eq(atomic_load(&slots[i].other), 1);
        ran += atomic_load(&slots[i].ran);
    }
    ck_assert_int_eq(ran + cancelled, n);
    free(slots);
}
END_TEST

struct releaser {
    ws_pool *pool;
    long n;
    atomic_long *ran;
    int id;
};

static void *
releaser_thread(void *arg)
{
    struct releaser *r = arg;

    pin(r->id);
    for (long i = 0; i < r->n; i++) {
        ws_future *f = NULL;
        if (ws_submit(r->pool, count, r->ran, &f) != 0)
            abort();
        if (i % 2)
            sched_yield(); /* some finish first, some later */
        ws_future_release(f);
    }
    return NULL;
}

/* Releases race with completions; AddressSanitizer checks for leaks. */
START_TEST(test_future_release_race)
{
    ws_pool *p = pool_new(3);
    struct releaser r[SUBMITTERS];
    pthread_t t[SUBMITTERS];
    atomic_long ran = 0;
    const long n = scale(20000);

    for (int i = 0; i < SUBMITTERS; i++) {
        r[i] = (struct releaser){p, n, &ran, i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, releaser_thread, &r[i]),
                         0);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(t[i], NULL);
    destroy(p);
    ck_assert_int_eq(atomic_load(&ran), SUBMITTERS * n);
}
END_TEST

struct waiter {
    ws_future *f;
    int err;
    void *r;
};

static void *
waiter_thread(void *arg)
{
    struct waiter *w = arg;
    w->err = ws_future_get(w->f, &w->r);
    return NULL;
}

static void
waiter_task(void *arg)
{
    waiter_thread(arg);
}

/* External threads and workers wait on one future at once. */
START_TEST(test_future_many_waiters)
{
    enum { THREADS = 4, TASKS = 2 };
    ws_pool *p = pool_new(4);
    struct gate g = {0};
    ws_future *f = submit_gate(p, &g);
    struct waiter w[THREADS + TASKS];
    pthread_t t[THREADS];
    ws_group grp;

    gate_started(&g, 1);
    for (int i = 0; i < THREADS + TASKS; i++)
        w[i] = (struct waiter){f, -1, NULL};
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, waiter_thread, &w[i]), 0);
    ws_group_init(&grp, p);
    for (int i = THREADS; i < THREADS + TASKS; i++)
        ck_assert_int_eq(ws_spawn(&grp, waiter_task, &w[i]), 0);
    sleep_s(0.05);
    gate_open(&g);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(ws_sync(&grp), 0);
    for (int i = 0; i < THREADS + TASKS; i++) {
        ck_assert_int_eq(w[i].err, 0);
        ck_assert_ptr_eq(w[i].r, &g);
    }
    ws_future_release(f);
    destroy(p);
}
END_TEST

struct producer {
    ws_pool *pool;
    ws_completion *c;
    ws_future **fs;
    long base, n;
    int id;
    long bad;
};

static void *
producer_thread(void *arg)
{
    struct producer *pr = arg;

    pin(pr->id);
    for (long i = 0; i < pr->n; i++) {
        uintptr_t v = (uintptr_t)(pr->base + i);
        ws_future *f = NULL;
        if (ws_submit(pr->pool, nothing, (void *)v, &f) != 0 ||
            ws_completion_add(pr->c, f) != 0)
            pr->bad++;
        pr->fs[v] = f;
    }
    return NULL;
}

/* Four threads add to one completion queue; one thread takes them all. */
START_TEST(test_future_completion_threads)
{
    ws_pool *p = pool_new(3);
    ws_completion *c = NULL;
    struct producer pr[SUBMITTERS];
    pthread_t t[SUBMITTERS];
    const long n = scale(5000), total = SUBMITTERS * n;
    ws_future **fs = calloc((size_t)total, sizeof *fs);
    unsigned char *seen = calloc((size_t)total, 1);

    ck_assert(fs != NULL && seen != NULL);
    ck_assert_int_eq(ws_completion_create(&c), 0);
    for (int i = 0; i < SUBMITTERS; i++) {
        pr[i] = (struct producer){p, c, fs, i * n, n, i, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, producer_thread, &pr[i]),
                         0);
    }
    for (long got = 0; got < total;) {
        ws_future *f = NULL;
        int err = ws_completion_next(c, 0.05, &f);
        if (err == EPIPE || err == ETIMEDOUT) {
            sched_yield(); /* nothing pending yet: producers are behind */
            continue;
        }
        ck_assert_int_eq(err, 0);
        ck_assert(ws_future_done(f));
        uintptr_t v = (uintptr_t)get_value(f);
        ck_assert_uint_lt(v, (uintptr_t)total);
        ck_assert_int_eq(seen[v], 0);
        seen[v] = 1;
        got++;
    }
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(pr[i].bad, 0);
    }
    ws_future *f = NULL;
    ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &f), EPIPE);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    for (long i = 0; i < total; i++)
        ws_future_release(fs[i]);
    free(fs);
    free(seen);
    destroy(p);
}
END_TEST

struct quiet {
    ws_pool *pool;
    ws_future *f;
    long switches; /* voluntary context switches while blocked */
    double seconds;
};

static void *
quiet_waiter(void *arg)
{
    struct quiet *q = arg;
    struct rusage r0, r1;

    getrusage(RUSAGE_THREAD, &r0);
    double t0 = now();
    if (ws_future_get(q->f, NULL) != 0)
        abort();
    q->seconds = now() - t0;
    getrusage(RUSAGE_THREAD, &r1);
    q->switches = r1.ru_nvcsw - r0.ru_nvcsw;
    return NULL;
}

static void *
churn(void *arg)
{
    struct quiet *q = arg;
    for (int i = 0; i < 20000; i++) {
        ws_future *f = NULL;
        if (ws_submit(q->pool, nothing, NULL, &f) != 0 ||
            ws_future_get(f, NULL) != 0)
            abort();
        ws_future_release(f);
    }
    return NULL;
}

/*
 * Threads that are not workers block without spinning: one blocked on a
 * future sleeps until that future is done, or until its wait re-checks
 * (every 100 ms); the 20000 futures completing on the pool meanwhile are
 * none of its business.  Counted in voluntary context switches, with room
 * for 20 re-checks a second.
 */
START_TEST(test_future_quiet_waiter)
{
    ws_pool *p = pool_new(2);
    struct quiet q = {p, NULL, 0, 0};
    pthread_t t;

    ck_assert_int_eq(ws_submit(p, churn, &q, &q.f), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, quiet_waiter, &q), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    long allowed = 20 + (long)(20 * q.seconds);
    ck_assert_msg(q.switches <= allowed,
                  "woken %ld times in %.2f s (allowed %ld)", q.switches,
                  q.seconds, allowed);
    ws_future_release(q.f);
    destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* stress                                                             */
/* ------------------------------------------------------------------ */

/* 10^5 futures from outside: every result exact. */
START_TEST(test_future_results_exact)
{
    ws_pool *p = pool_new(4);
    const long n = scale(100000);
    ws_future **fs = malloc(sizeof *fs * (size_t)n);

    ck_assert_ptr_nonnull(fs);
    for (long i = 0; i < n; i++)
        ck_assert_int_eq(ws_submit(p, compute, (void *)(uintptr_t)i, &fs[i]),
                         0);
    for (long i = 0; i < n; i++) {
        ck_assert_ptr_eq(get_value(fs[i]), (void *)value_of((uintptr_t)i));
        ws_future_release(fs[i]);
    }
    free(fs);
    destroy(p);
}
END_TEST

struct flood {
    ws_pool *pool;
    long n;
    atomic_long *ran;
};

static void *
flood_task(void *arg)
{
    struct flood *fl = arg;
    for (long i = 0; i < fl->n; i++)
        if (ws_submit(fl->pool, count, fl->ran, NULL) != 0)
            abort();
    return NULL;
}

/* 10^5 detached submissions from outside and 10^5 from tasks. */
START_TEST(test_future_detached_many)
{
    ws_pool *p = pool_new(4);
    atomic_long ran = 0;
    const long n = scale(100000);
    struct flood fl = {p, n / 4, &ran};

    for (long i = 0; i < n; i++)
        ck_assert_int_eq(ws_submit(p, count, &ran, NULL), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(ws_submit(p, flood_task, &fl, NULL), 0);
    destroy(p);
    ck_assert_int_eq(atomic_load(&ran), n + 4 * (n / 4));
}
END_TEST

/* 10^4 futures through one completion queue, each returned once. */
START_TEST(test_future_completion_many)
{
    ws_pool *p = pool_new(4);
    ws_completion *c = NULL;
    const long n = scale(10000);
    ws_future **fs = malloc(sizeof *fs * (size_t)n);
    unsigned char *seen = calloc((size_t)n, 1);

    ck_assert(fs != NULL && seen != NULL);
    ck_assert_int_eq(ws_completion_create(&c), 0);
    for (long i = 0; i < n; i++) {
        ck_assert_int_eq(ws_submit(p, nothing, (void *)(uintptr_t)i, &fs[i]),
                         0);
        ck_assert_int_eq(ws_completion_add(c, fs[i]), 0);
    }
    ws_future *f;
    long got = 0;
    int err;
    while ((err = ws_completion_next(c, WS_FOREVER, &f)) == 0) {
        uintptr_t i = (uintptr_t)get_value(f);
        ck_assert_uint_lt(i, (uintptr_t)n);
        ck_assert_ptr_eq(fs[i], f);
        ck_assert_int_eq(seen[i], 0);
        seen[i] = 1;
        got++;
    }
    ck_assert_int_eq(err, EPIPE);
    ck_assert_int_eq(got, n);
    ck_assert_int_eq(ws_completion_destroy(c), 0);
    for (long i = 0; i < n; i++)
        ws_future_release(fs[i]);
    free(fs);
    free(seen);
    destroy(p);
}
END_TEST

/* Deeper trees on two workers, repeatedly. */
START_TEST(test_future_nested_tree_deep)
{
    tree_pool = pool_new(2);
    const long rounds = scale(20);

    for (long i = 0; i < rounds; i++) {
        ws_future *f = NULL;
        ck_assert_int_eq(ws_submit(tree_pool, tree_node, (void *)13, &f), 0);
        ck_assert_uint_eq((uintptr_t)get_value(f), 8192);
        ws_future_release(f);
    }
    destroy(tree_pool);
}
END_TEST

/* Waits nest on the workers' stacks as deep as the chain is long. */
START_TEST(test_future_sibling_chain_long)
{
    run_chain(scale(1000));
}
END_TEST

static Suite *
future_suite(void)
{
    Suite *s = suite_create("future");
    TCase *tc;

    tc = tcase_create("basic");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_future_submit_get);
    tcase_add_test(tc, test_future_wait_poll);
    tcase_add_test(tc, test_future_wait_negative);
    tcase_add_test(tc, test_future_wait_timeout);
    tcase_add_test(tc, test_future_wait_timeout_worker);
    tcase_add_test(tc, test_future_cancel_pending);
    tcase_add_test(tc, test_future_cancel_done);
    tcase_add_test(tc, test_future_release_early);
    tcase_add_test(tc, test_future_release_cancelled);
    tcase_add_test(tc, test_future_detached);
    tcase_add_test(tc, test_future_submit_from_task);
    tcase_add_test(tc, test_future_wait_all_zero_one);
    tcase_add_test(tc, test_future_wait_many);
    tcase_add_test(tc, test_future_wait_timeout_many);
    tcase_add_test(tc, test_future_wait_pools);
    tcase_add_test(tc, test_future_wait_many_worker);
    tcase_add_test(tc, test_future_then_pending);
    tcase_add_test(tc, test_future_then_done);
    tcase_add_test(tc, test_future_then_cancel);
    tcase_add_test(tc, test_future_then_once);
    tcase_add_test(tc, test_future_completion_order);
    tcase_add_test(tc, test_future_completion_empty);
    tcase_add_test(tc, test_future_completion_done_cancelled);
    tcase_add_test(tc, test_future_completion_timeout);
    tcase_add_test(tc, test_future_completion_ebusy);
    tcase_add_test(tc, test_future_completion_add_once);
    tcase_add_test(tc, test_future_completion_destroy_unreturned);
    tcase_add_test(tc, test_future_completion_worker);
    tcase_add_test(tc, test_future_sleepers);
    tcase_add_test(tc, test_future_nested_tree);
    tcase_add_test(tc, test_future_sibling_chain);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_future_submit_einval);
    tcase_add_test(tc, test_future_calls_einval);
    tcase_add_test(tc, test_future_wait_many_einval);
    tcase_add_test(tc, test_future_then_einval);
    tcase_add_test(tc, test_future_completion_einval);
    tcase_add_test(tc, test_future_submit_epipe);
    tcase_add_test(tc, test_future_submit_echild);
    tcase_add_test(tc, test_future_completion_echild);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_future_submit_threads);
    tcase_add_test(tc, test_future_submit_from_tasks);
    tcase_add_test(tc, test_future_cancel_race);
    tcase_add_test(tc, test_future_then_race);
    tcase_add_test(tc, test_future_release_race);
    tcase_add_test(tc, test_future_many_waiters);
    tcase_add_test(tc, test_future_completion_threads);
    tcase_add_test(tc, test_future_quiet_waiter);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_future_results_exact);
    tcase_add_test(tc, test_future_detached_many);
    tcase_add_test(tc, test_future_completion_many);
    tcase_add_test(tc, test_future_nested_tree_deep);
    tcase_add_test(tc, test_future_sibling_chain_long);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(future_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
