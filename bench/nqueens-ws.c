/*
 * n-queens with wsched: a task per placement, no cutoff, through the
 * public calls of the shared library.  The sequential version runs
 * interleaved with it, so that T1/Ts compares runs made under the same
 * load.
 */
#include <stdio.h>
#include <wsched.h>

#include "fj-ws.h"
#include "fj.h"
#include "nqueens.h"

/* A node: the parent's board and row, the column of its queen, and the
 * solutions found below it. */
struct nq_arg {
    const signed char *parent;
    int n, row, col;
    long count;
};

struct nq_ctx {
    ws_pool *pool;
    struct nq_job *job;
    long calls;
};

static void
nq_task(void *p)
{
    struct nq_arg *t = p, child[NQ_MAX_N];
    signed char a[NQ_BOARD];
    int row = nq_place(a, t->parent, t->row, t->col), k = 0;
    long count = 0;
    ws_group g;

    if (row == t->n) {
        t->count = 1;
        return;
    }
    ws_group_init(&g, NULL);
    for (int j = 0; j < t->n; j++) {
        if (nq_ok(a, row, j)) {
            child[k].parent = a;
            child[k].n = t->n;
            child[k].row = row;
            child[k].col = j;
            if (ws_spawn(&g, nq_task, &child[k]) != 0)
                fj_fail("nqueens", "wsched", "ws_spawn failed");
            k++;
        }
    }
    if (ws_sync(&g) != 0)
        fj_fail("nqueens", "wsched", "ws_sync failed");
    for (int i = 0; i < k; i++)
        count += child[i].count;
    t->count = count;
}

static int
run(void *arg)
{
    struct nq_ctx *c = arg;
    struct nq_arg root = {nq_empty, c->job->n, 0, -1, 0};

    c->calls++;
    if (ws_run(c->pool, nq_task, &root) != 0)
        fj_fail("nqueens", "wsched", "ws_run failed");
    return root.count != c->job->expect;
}

int
main(int argc, char **argv)
{
    struct fj_opts o;
    struct nq_job j;
    ws_pool *one, *all;

    fj_parse(argc, argv, &o, NQ_N);
    if (o.n < 1 || o.n > NQ_MAX_N)
        fj_usage(argv[0]);
    fj_ws_pools(&o, "nqueens", &one, &all);
    j.n = o.n;
    j.expect = nq_solutions[o.n];
    printf("INFO nqueens n=%d result=%ld spawns=%ld\n", o.n, j.expect,
           nq_placements(o.n, nq_empty, 0, -1));

    unsigned p = ws_pool_size(all);
    struct nq_ctx c1 = {one, &j, 0}, cp = {all, &j, 0};
    struct fj_on_worker seq = {one, nq_run_seq, &j, 0};
    struct fj_case cases[] = {
        {"seq", 1, fj_on_worker_run, &seq},
        {"wsched", 1, run, &c1},
        {"wsched", p, run, &cp},
    };
    fj_measure("nqueens", cases, p > 1 ? 3 : 2, o.runs);
    fj_ws_report(one, "nqueens", c1.calls);
    if (p > 1)
        fj_ws_report(all, "nqueens", cp.calls);
    ws_pool_destroy(one);
    ws_pool_destroy(all);
    return 0;
}
