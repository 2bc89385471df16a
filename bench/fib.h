/*
 * fib(n) without a cutoff: the call tree every version of the benchmark
 * walks, and the figures that check it.
 */
#ifndef WS_BENCH_FIB_H
#define WS_BENCH_FIB_H

#define FIB_N 35
#define FIB_MAX_N 60

/* The expected result, computed without recursion. */
static inline long
fib_value(int n)
{
    long a = 0, b = 1;

    for (int i = 0; i < n; i++) {
        long t = a + b;
        a = b;
        b = t;
    }
    return a;
}

/*
 * Spawns made by fib(n): one per call with n >= 2, the inner nodes of the
 * call tree, which has fib(n + 1) leaves and so fib(n + 1) - 1 inner nodes.
 */
static inline long
fib_spawns(int n)
{
    return fib_value(n + 1) - 1;
}

/*
 * The sequential versions.  fib_seq is the serial elision of the task
 * versions, and its time is Ts; but gcc -O2 turns one of its two calls
 * into a loop and inlines a few levels of the other, so it makes far fewer
 * calls than the tree has nodes.  A scheduler cannot do that to spawned
 * calls, so fib_calls calls through a volatile function pointer: every
 * node of the tree is a real call, the cost a one-worker scheduler is also
 * compared with.  Unused in the peers' programs.
 */
__attribute__((unused)) static long
fib_seq(int n)
{
    return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static long fib_calls(int n);

/* Volatile, so that the compiler can neither inline nor unroll a call. */
static long (*volatile fib_calls_fn)(int) __attribute__((unused)) = fib_calls;

__attribute__((unused)) static long
fib_calls(int n)
{
    if (n < 2)
        return n;
    return fib_calls_fn(n - 1) + fib_calls_fn(n - 2);
}

/* What one run computes, and the answer it must get. */
struct fib_job {
    int n;
    long expect;
};

/*
 * One run of each sequential version, for fj_measure.  n is read through a
 * volatile lvalue so that the compiler, which knows fib_seq is pure, cannot
 * hoist the call out of the timing loop.
 */
__attribute__((unused)) static int
fib_run_seq(void *arg)
{
    struct fib_job *j = (struct fib_job *)arg;

    return fib_seq(*(volatile int *)&j->n) != j->expect;
}

__attribute__((unused)) static int
fib_run_calls(void *arg)
{
    struct fib_job *j = (struct fib_job *)arg;

    return fib_calls_fn(*(volatile int *)&j->n) != j->expect;
}

#endif /* WS_BENCH_FIB_H */
