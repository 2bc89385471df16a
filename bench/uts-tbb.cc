/*
 * UTS T3 with oneTBB task_group: a task per node below the root, no
 * cutoff.
 */
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <cstdio>
#include <vector>

#include "fj.h"
#include "uts.h"

namespace
{

/* Counts the subtree of child i of parent (the root when parent is
 * null), a node at depth `depth`. */
void
uts_tbb(const unsigned char *parent, int i, int depth, uts_count *r)
{
    unsigned char node[UTS_DIGEST];
    uts_count local[UTS_M], *sub = local;
    std::vector<uts_count> big;

    if (parent)
        uts_child(parent, i, node);
    else
        uts_root(node);
    int nc = uts_children(node, depth);
    r->nodes = 1;
    r->leaves = nc == 0;
    r->depth = depth;
    if (nc > UTS_M) {
        big.resize((size_t)nc);
        sub = big.data();
    }
    tbb::task_group g;
    for (int j = 0; j < nc; j++) {
        const unsigned char *p = node;
        uts_count *slot = &sub[j];
        g.run([=] { uts_tbb(p, j, depth + 1, slot); });
    }
    g.wait();
    for (int j = 0; j < nc; j++)
        uts_merge(r, &sub[j]);
}

int
run(void *arg)
{
    tbb::task_arena *arena = static_cast<tbb::task_arena *>(arg);
    uts_count r = {0, 0, 0};

    arena->execute([&] { uts_tbb(nullptr, 0, 0, &r); });
    return uts_check(&r);
}

} // namespace

int
main(int argc, char **argv)
{
    fj_opts o;
    fj_parse(argc, argv, &o, 0);
    if (uts_sha1_selftest())
        fj_fail("uts", "onetbb", "SHA-1 self-test");

    unsigned p =
        o.workers ? o.workers : (unsigned)tbb::info::default_concurrency();
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, p);
    tbb::task_arena a1(1), ap((int)p);
    fj_case cases[] = {
        {"onetbb", 1, run, &a1},
        {"onetbb", p, run, &ap},
    };
    fj_measure("uts", cases, p > 1 ? 2 : 1, o.runs);
    return 0;
}
