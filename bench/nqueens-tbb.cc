/*
 * n-queens with oneTBB task_group: a task per placement, no cutoff.
 */
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <cstdio>

#include "fj.h"
#include "nqueens.h"

namespace
{

struct nq_ctx {
    nq_job *job;
    tbb::task_arena *arena;
};

long
nq_tbb(int n, const signed char *parent, int row, int col)
{
    signed char a[NQ_BOARD];
    long counts[NQ_MAX_N], count = 0;
    int k = 0;

    row = nq_place(a, parent, row, col);
    if (row == n)
        return 1;
    tbb::task_group g;
    for (int j = 0; j < n; j++) {
        if (nq_ok(a, row, j)) {
            long *slot = &counts[k++];
            const signed char *board = a;
            g.run([=] { *slot = nq_tbb(n, board, row, j); });
        }
    }
    g.wait();
    for (int i = 0; i < k; i++)
        count += counts[i];
    return count;
}

int
run(void *arg)
{
    nq_ctx *c = static_cast<nq_ctx *>(arg);
    long r = 0;

    c->arena->execute([&] { r = nq_tbb(c->job->n, nq_empty, 0, -1); });
    return r != c->job->expect;
}

} // namespace

int
main(int argc, char **argv)
{
    fj_opts o;
    fj_parse(argc, argv, &o, NQ_N);
    if (o.n < 1 || o.n > NQ_MAX_N)
        fj_usage(argv[0]);
    nq_job j = {o.n, nq_solutions[o.n]};

    unsigned p =
        o.workers ? o.workers : (unsigned)tbb::info::default_concurrency();
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, p);
    tbb::task_arena a1(1), ap((int)p);
    nq_ctx c1 = {&j, &a1}, cp = {&j, &ap};
    fj_case cases[] = {
        {"onetbb", 1, run, &c1},
        {"onetbb", p, run, &cp},
    };
    fj_measure("nqueens", cases, p > 1 ? 2 : 1, o.runs);
    return 0;
}
