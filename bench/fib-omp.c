/*
 * fib(n) with OpenMP tasks, no cutoff: the child fib(n - 1) is a task,
 * fib(n - 2) a call, then taskwait; the shape of the wsched version.
 */
#include <omp.h>
#include <stdio.h>

#include "fib.h"
#include "fj.h"

struct fib_ctx {
    struct fib_job *job;
    unsigned workers;
};

static long
fib_omp(int n)
{
    long a = 0, b;

    if (n < 2)
        return n;
#pragma omp task shared(a) firstprivate(n)
    a = fib_omp(n - 1);
    b = fib_omp(n - 2);
#pragma omp taskwait
    return a + b;
}

static int
run(void *arg)
{
    struct fib_ctx *c = arg;
    long r = 0;

#pragma omp parallel num_threads(c->workers)
#pragma omp single
    r = fib_omp(c->job->n);
    return r != c->job->expect;
}

int
main(int argc, char **argv)
{
    struct fj_opts o;
    struct fib_job j;

    fj_parse(argc, argv, &o, FIB_N);
    if (o.n > FIB_MAX_N)
        fj_usage(argv[0]);
    omp_set_dynamic(0);
    j.n = o.n;
    j.expect = fib_value(o.n);

    unsigned p = o.workers ? o.workers : (unsigned)omp_get_max_threads();
    struct fib_ctx c1 = {&j, 1}, cp = {&j, p};
    struct fj_case cases[] = {
        {"openmp", 1, run, &c1},
        {"openmp", p, run, &cp},
    };
    fj_measure("fib", cases, p > 1 ? 2 : 1, o.runs);
    return 0;
}
