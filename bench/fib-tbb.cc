/*
 * fib(n) with oneTBB task_group, no cutoff: the child fib(n - 1) is run by
 * the group, fib(n - 2) called, then wait; the shape of the wsched version.
 * Each worker count has its own arena of exactly that many threads (the
 * caller is one of them), and global_control keeps TBB from adding more.
 */
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <cstdio>

#include "fib.h"
#include "fj.h"

namespace
{

struct fib_ctx {
    fib_job *job;
    tbb::task_arena *arena;
};

long
fib_tbb(int n)
{
    if (n < 2)
        return n;
    long a, b;
    tbb::task_group g;
    g.run([&a, n] { a = fib_tbb(n - 1); });
    b = fib_tbb(n - 2);
    g.wait();
    return a + b;
}

int
run(void *arg)
{
    fib_ctx *c = static_cast<fib_ctx *>(arg);
    long r = 0;

    c->arena->execute([&] { r = fib_tbb(c->job->n); });
    return r != c->job->expect;
}

} // namespace

int
main(int argc, char **argv)
{
    fj_opts o;
    fj_parse(argc, argv, &o, FIB_N);
    if (o.n > FIB_MAX_N)
        fj_usage(argv[0]);
    fib_job j = {o.n, fib_value(o.n)};

    unsigned p =
        o.workers ? o.workers : (unsigned)tbb::info::default_concurrency();
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, p);
    tbb::task_arena a1(1), ap((int)p);
    fib_ctx c1 = {&j, &a1}, cp = {&j, &ap};
    fj_case cases[] = {
        {"onetbb", 1, run, &c1},
        {"onetbb", p, run, &cp},
    };
    fj_measure("fib", cases, p > 1 ? 2 : 1, o.runs);
    return 0;
}
