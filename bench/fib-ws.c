/*
 * fib(n) with wsched, no cutoff, through the public calls of the shared
 * library: each call with n >= 2 spawns fib(n - 1), calls fib(n - 2)
 * directly, and syncs.  The same tree through ws_join, the one call for
 * that pattern, is measured beside it ("ws-join").  The sequential
 * versions run interleaved with both, so that T1/Ts compares runs made
 * under the same load.
 */
#include <stdio.h>
#include <wsched.h>

#include "fib.h"
#include "fj-ws.h"
#include "fj.h"

struct fib_arg {
    int n;
    long r;
};

struct fib_ctx {
    ws_pool *pool;
    struct fib_job *job;
    long calls;
};

static void
fib_task(void *p)
{
    struct fib_arg *f = p, a, b;
    ws_group g;

    if (f->n < 2) {
        f->r = f->n;
        return;
    }
    a.n = f->n - 1;
    b.n = f->n - 2;
    ws_group_init(&g, NULL);
    if (ws_spawn(&g, fib_task, &a) != 0)
        fj_fail("fib", "wsched", "ws_spawn failed");
    fib_task(&b);
    if (ws_sync(&g) != 0)
        fj_fail("fib", "wsched", "ws_sync failed");
    f->r = a.r + b.r;
}

static void
fib_join(void *p)
{
    struct fib_arg *f = p, a, b;

    if (f->n < 2) {
        f->r = f->n;
        return;
    }
    a.n = f->n - 1;
    b.n = f->n - 2;
    if (ws_join(fib_join, &a, fib_join, &b) != 0)
        fj_fail("fib", "ws-join", "ws_join failed");
    f->r = a.r + b.r;
}

static int
run(void *arg)
{
    struct fib_ctx *c = arg;
    struct fib_arg f = {c->job->n, 0};

    c->calls++;
    if (ws_run(c->pool, fib_task, &f) != 0)
        fj_fail("fib", "wsched", "ws_run failed");
    return f.r != c->job->expect;
}

static int
run_join(void *arg)
{
    struct fib_ctx *c = arg;
    struct fib_arg f = {c->job->n, 0};

    c->calls++;
    if (ws_run(c->pool, fib_join, &f) != 0)
        fj_fail("fib", "ws-join", "ws_run failed");
    return f.r != c->job->expect;
}

int
main(int argc, char **argv)
{
    struct fj_opts o;
    struct fib_job j;
    ws_pool *one, *all;

    fj_parse(argc, argv, &o, FIB_N);
    if (o.n > FIB_MAX_N)
        fj_usage(argv[0]);
    fj_ws_pools(&o, "fib", &one, &all);
    j.n = o.n;
    j.expect = fib_value(o.n);
    printf("INFO fib n=%d result=%ld spawns=%ld\n", o.n, j.expect,
           fib_spawns(o.n));

    unsigned p = ws_pool_size(all);
    struct fib_ctx c1 = {one, &j, 0}, cp = {all, &j, 0};
    struct fj_on_worker seq = {one, fib_run_seq, &j, 0};
    struct fj_on_worker calls = {one, fib_run_calls, &j, 0};
    struct fj_case cases[] = {
        {"seq", 1, fj_on_worker_run, &seq},
        {"seq-calls", 1, fj_on_worker_run, &calls},
        {"wsched", 1, run, &c1},     {"ws-join", 1, run_join, &c1},
        {"wsched", p, run, &cp},     {"ws-join", p, run_join, &cp},
    };
    fj_measure("fib", cases, p > 1 ? 6 : 4, o.runs);
    fj_ws_report(one, "fib", c1.calls);
    if (p > 1)
        fj_ws_report(all, "fib", cp.calls);
    ws_pool_destroy(one);
    ws_pool_destroy(all);
    return 0;
}
