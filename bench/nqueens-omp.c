/*
 * n-queens with OpenMP tasks: a task per placement, no cutoff.
 */
#include <omp.h>
#include <stdio.h>

#include "fj.h"
#include "nqueens.h"

struct nq_ctx {
    struct nq_job *job;
    unsigned workers;
};

static long
nq_omp(int n, const signed char *parent, int row, int col)
{
    signed char a[NQ_BOARD];
    long counts[NQ_MAX_N], count = 0;
    int k = 0;

    row = nq_place(a, parent, row, col);
    if (row == n)
        return 1;
    for (int j = 0; j < n; j++) {
        if (nq_ok(a, row, j)) {
#pragma omp task shared(a, counts) firstprivate(n, row, j, k)
            counts[k] = nq_omp(n, a, row, j);
            k++;
        }
    }
#pragma omp taskwait
    for (int i = 0; i < k; i++)
        count += counts[i];
    return count;
}

static int
run(void *arg)
{
    struct nq_ctx *c = arg;
    long r = 0;

#pragma omp parallel num_threads(c->workers)
#pragma omp single
    r = nq_omp(c->job->n, nq_empty, 0, -1);
    return r != c->job->expect;
}

int
main(int argc, char **argv)
{
    struct fj_opts o;
    struct nq_job j;

    fj_parse(argc, argv, &o, NQ_N);
    if (o.n < 1 || o.n > NQ_MAX_N)
        fj_usage(argv[0]);
    omp_set_dynamic(0);
    j.n = o.n;
    j.expect = nq_solutions[o.n];

    unsigned p = o.workers ? o.workers : (unsigned)omp_get_max_threads();
    struct nq_ctx c1 = {&j, 1}, cp = {&j, p};
    struct fj_case cases[] = {
        {"openmp", 1, run, &c1},
        {"openmp", p, run, &cp},
    };
    fj_measure("nqueens", cases, p > 1 ? 2 : 1, o.runs);
    return 0;
}
