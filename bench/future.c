/*
 * Executor benchmark: what a future costs, against oneTBB and Python.
 *
 * Four measurements, each of an empty task:
 *   rt_ext      submit and get, one at a time, from a thread that is not
 *               a worker (the main thread): microseconds per round trip;
 *   rt_worker   the same from inside a task, where the wait runs the task
 *               itself: microseconds per round trip;
 *   tput_ext    10^6 detached submissions from the main thread, then the
 *               pool drained (ws_pool_destroy): tasks per second;
 *   tput_worker one task submits the 10^6, then the pool drained.
 * oneTBB does the same in bench/future-tbb (task_arena::enqueue with a
 * std::promise, task_group run and wait, task_arena::enqueue of deferred
 * task_group tasks then a wait, task_group run then wait), and Python's
 * ThreadPoolExecutor in bench/future.py (submit().result(), then 5 x 10^4
 * submissions and shutdown(wait=True)), each with as many workers.  The
 * sequential baseline is a direct call of the empty task.
 *
 * The machine is shared and time-sliced, so the implementations run
 * interleaved: each round measures wsched once, then runs the oneTBB
 * program and the Python script for one run each, and probes the parallel
 * capacity; the medians over the rounds are compared.  The peers are left
 * out when they are missing (no oneTBB at configure time, PYTHON3 empty).
 *
 * Environment: BENCH_RUNS rounds (default 5), BENCH_SCALE multiplies the
 * task counts (default 1), PYTHON3 the interpreter, srcdir where
 * bench/future.py lives, WSCHED_WORKERS the pool size (default: one
 * worker per core).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wsched.h>

#include "bench.h"

enum { RT_EXT, RT_WORKER, TPUT_EXT, TPUT_WORKER, SEQ, NMEAS };
enum { WS, TBB, PY, NIMPL };
enum { MAX_RUNS = 1000 };

static const char *const meas_name[NMEAS] = {
    "future_rt_ext",      "future_rt_worker", "future_tput_ext",
    "future_tput_worker", "future_seq_call",
};
static const char *const meas_unit[NMEAS] = {"us", "us", "tasks/s", "tasks/s",
                                             "ns"};
static const char *const impl_name[NIMPL] = {"wsched", "tbb", "python"};

static double vals[NIMPL][NMEAS][MAX_RUNS];
static int nvals[NIMPL][NMEAS];
static double caps[MAX_RUNS];

static long rt_ext_iters, rt_worker_iters, tput_tasks, py_tput_tasks;

static void
record(int impl, int m, double v)
{
    if (nvals[impl][m] < MAX_RUNS)
        vals[impl][m][nvals[impl][m]++] = v;
}

static double
median_of(int impl, int m)
{
    return nvals[impl][m] > 0 ? bench_median(vals[impl][m], nvals[impl][m])
                              : -1;
}

static void
check(int err, const char *what)
{
    if (err != 0) {
        fprintf(stderr, "future: %s: %s\n", what, strerror(err));
        exit(1);
    }
}

static void *
empty(void *arg)
{
    return arg;
}

/* Round trips from the calling thread: microseconds each. */
static double
round_trips(ws_pool *pool, long n)
{
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        ws_future *f;
        void *r = NULL;
        check(ws_submit(pool, empty, &r, &f), "ws_submit");
        check(ws_future_get(f, &r), "ws_future_get");
        if (r != &r) {
            fprintf(stderr, "FAIL: wrong result\n");
            exit(1);
        }
        ws_future_release(f);
    }
    return (bench_now() - t0) / (double)n * 1e6;
}

struct in_worker {
    ws_pool *pool;
    long n;
    double us;
};

static void
round_trips_task(void *arg)
{
    struct in_worker *w = arg;
    w->us = round_trips(w->pool, w->n);
}

static void *
flood(void *arg)
{
    struct in_worker *w = arg;
    for (long i = 0; i < w->n; i++)
        check(ws_submit(w->pool, empty, NULL, NULL), "ws_submit");
    return NULL;
}

/* n detached submissions, from here or from a task, then the drain. */
static double
throughput(long n, int from_worker)
{
    ws_pool *pool;
    check(ws_pool_create(&pool, NULL), "ws_pool_create");
    struct in_worker w = {pool, n, 0};
    double t0 = bench_now();
    if (from_worker) {
        check(ws_submit(pool, flood, &w, NULL), "ws_submit");
    } else {
        for (long i = 0; i < n; i++)
            check(ws_submit(pool, empty, NULL, NULL), "ws_submit");
    }
    check(ws_pool_destroy(pool), "ws_pool_destroy");
    return (double)n / (bench_now() - t0);
}

static void *(*volatile empty_ptr)(void *) = empty;

/* The sequential baseline: a direct call through a pointer, ns each. */
static double
direct_calls(long n)
{
    double t0 = bench_now();
    for (long i = 0; i < n; i++)
        empty_ptr(NULL);
    return (bench_now() - t0) / (double)n * 1e9;
}

static void
measure_wsched(void)
{
    ws_pool *pool;
    check(ws_pool_create(&pool, NULL), "ws_pool_create");
    round_trips(pool, rt_ext_iters / 10 + 1); /* warm up */
    record(WS, RT_EXT, round_trips(pool, rt_ext_iters));
    struct in_worker w = {pool, rt_worker_iters, 0};
    check(ws_run(pool, round_trips_task, &w), "ws_run");
    record(WS, RT_WORKER, w.us);
    check(ws_pool_destroy(pool), "ws_pool_destroy");
    record(WS, TPUT_EXT, throughput(tput_tasks, 0));
    record(WS, TPUT_WORKER, throughput(tput_tasks, 1));
    record(WS, SEQ, direct_calls(tput_tasks * 10));
}

/*
 * Runs a peer for one run and keeps the medians of its BENCH lines.
 * Returns false when it could not be run or failed.
 */
static int
run_peer(int impl, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    char line[512];
    int got = 0;

    if (p == NULL)
        return 0;
    while (fgets(line, sizeof line, p) != NULL) {
        char bench[64], who[64];
        double v;
        if (sscanf(line, "BENCH %63s %63s workers=%*u median=%lf", bench, who,
                   &v) != 3)
            continue;
        for (int m = 0; m < NMEAS; m++)
            if (strcmp(bench, meas_name[m]) == 0) {
                record(impl, m, v);
                got++;
            }
    }
    int st = pclose(p);
    if (st != 0 || got == 0) {
        fprintf(stderr, "future: %s: %s\n", impl_name[impl],
                st != 0 ? "failed" : "printed no BENCH line");
        return 0;
    }
    return 1;
}

static double
env_scale(void)
{
    const char *s = getenv("BENCH_SCALE");
    double v = s != NULL ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

static long
scaled(double base, double scale)
{
    long v = (long)(base * scale);
    return v > 0 ? v : 1;
}

/* A value for the table: "-" when not measured. */
static const char *
fmt(char *buf, size_t size, double v, int m)
{
    if (v < 0)
        snprintf(buf, size, "-");
    else if (m == TPUT_EXT || m == TPUT_WORKER)
        snprintf(buf, size, "%.2f M/s", v / 1e6);
    else if (m == SEQ)
        snprintf(buf, size, "%.2f ns", v);
    else
        snprintf(buf, size, "%.2f us", v);
    return buf;
}

/* How many times better wsched is: smaller times, larger rates. */
static const char *
ratio(char *buf, size_t size, double ws, double peer, int m)
{
    if (ws <= 0 || peer <= 0)
        snprintf(buf, size, "-");
    else if (m == TPUT_EXT || m == TPUT_WORKER)
        snprintf(buf, size, "%.1fx", ws / peer);
    else
        snprintf(buf, size, "%.1fx", peer / ws);
    return buf;
}

int
main(int argc, char **argv)
{
    (void)argc;
    int runs = bench_runs();
    double scale = env_scale();
    const char *py = getenv("PYTHON3");
    const char *srcdir = getenv("srcdir");
    char tbb_cmd[4096], py_cmd[4096], self[2048];
    unsigned workers;

    if (runs > MAX_RUNS)
        runs = MAX_RUNS;
    rt_ext_iters = scaled(5000, scale);
    rt_worker_iters = scaled(50000, scale);
    tput_tasks = scaled(1e6, scale);
    py_tput_tasks = scaled(5e4, scale);

    ws_pool *probe;
    check(ws_pool_create(&probe, NULL), "ws_pool_create");
    workers = ws_pool_size(probe);
    check(ws_pool_destroy(probe), "ws_pool_destroy");

    /* The oneTBB program sits next to this one when configure found it. */
    snprintf(self, sizeof self, "%s", argv[0]);
    const char *dir = dirname(self);
    char tbb_path[2048];
    snprintf(tbb_path, sizeof tbb_path, "%s/future-tbb", dir);
    snprintf(tbb_cmd, sizeof tbb_cmd, "'%s' -w %u -r 1 -s %g", tbb_path,
             workers, scale);
    int have_tbb = access(tbb_path, X_OK) == 0;
    int have_py = py != NULL && py[0] != '\0';
    snprintf(py_cmd, sizeof py_cmd,
             "'%s' '%s/bench/future.py' -w %u -r 1 -s %g", have_py ? py : "",
             srcdir != NULL ? srcdir : ".", workers, scale);

    printf("future: executor round trips and throughput, %u workers, "
           "%d rounds\n",
           workers, runs);
    fflush(stdout);
    for (int r = 0; r < runs; r++) {
        measure_wsched();
        if (have_tbb && !run_peer(TBB, tbb_cmd))
            have_tbb = 0;
        if (have_py && !run_peer(PY, py_cmd))
            have_py = 0;
        caps[r] = bench_capacity_once(10000000);
    }

    for (int i = 0; i < NIMPL; i++)
        for (int m = 0; m < NMEAS; m++)
            if (nvals[i][m] > 0)
                printf("BENCH %s %s workers=%u median=%.6g %s runs=%d\n",
                       meas_name[m], impl_name[i], m == SEQ ? 1 : workers,
                       median_of(i, m), meas_unit[m], nvals[i][m]);
    double cap = bench_median(caps, runs);
    printf("BENCH future_capacity wsched workers=2 median=%.2f cores "
           "runs=%d\n",
           cap, runs);

    static const char *const label[NMEAS] = {
        "round trip, external thread", "round trip, inside a worker",
        "throughput, external thread", "throughput, inside workers",
        "direct call (sequential)",
    };
    char a[32], b[32], c[32], d[32], e[32];
    printf("\n%-29s %12s %12s %12s %8s %8s\n", "median of empty tasks",
           "wsched", "oneTBB", "Python", "vs TBB", "vs Py");
    for (int m = 0; m < NMEAS; m++) {
        double ws = median_of(WS, m), tb = median_of(TBB, m),
               p = median_of(PY, m);
        printf("%-29s %12s %12s %12s %8s %8s\n", label[m],
               fmt(a, sizeof a, ws, m), fmt(b, sizeof b, tb, m),
               fmt(c, sizeof c, p, m), ratio(d, sizeof d, ws, tb, m),
               ratio(e, sizeof e, ws, p, m));
    }
    printf("(\"vs\": how many times faster wsched is; parallel capacity "
           "%.2f cores;\n oneTBB: enqueue+promise, task_group run+wait, "
           "enqueue+wait, run+wait;\n Python: ThreadPoolExecutor, "
           "%ld tasks for throughput)\n",
           cap, py_tput_tasks);

    double rt = median_of(WS, RT_EXT), tp = median_of(WS, TPUT_EXT);
    printf("target: external round trip under 10 us: %.2f us, %s\n", rt,
           rt < 10 ? "met" : "NOT met");
    if (nvals[TBB][TPUT_EXT] > 0) {
        double x = tp / median_of(TBB, TPUT_EXT);
        printf("target: throughput 3x oneTBB enqueue+wait: %.1fx, %s\n", x,
               x >= 3 ? "met" : "NOT met");
    }
    if (nvals[PY][TPUT_EXT] > 0) {
        double x = tp / median_of(PY, TPUT_EXT);
        printf("target: throughput 100x Python: %.0fx, %s\n", x,
               x >= 100 ? "met" : "NOT met");
    }
    return 0;
}
