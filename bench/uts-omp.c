/*
 * UTS T3 with OpenMP tasks: a task per node below the root, no cutoff.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "fj.h"
#include "uts.h"

struct uts_ctx {
    unsigned workers;
};

/* Counts the subtree of child i of parent (the root when parent is
 * NULL), a node at depth `depth`. */
static void
uts_omp(const unsigned char *parent, int i, int depth, struct uts_count *r)
{
    unsigned char node[UTS_DIGEST];
    struct uts_count local[UTS_M], *sub = local;
    int nc;

    if (parent)
        uts_child(parent, i, node);
    else
        uts_root(node);
    nc = uts_children(node, depth);
    r->nodes = 1;
    r->leaves = nc == 0;
    r->depth = depth;
    if (nc > UTS_M && !(sub = malloc((size_t)nc * sizeof *sub)))
        fj_fail("uts", "openmp", "out of memory");
    for (int j = 0; j < nc; j++) {
#pragma omp task shared(node, sub) firstprivate(j, depth)
        uts_omp(node, j, depth + 1, &sub[j]);
    }
#pragma omp taskwait
    for (int j = 0; j < nc; j++)
        uts_merge(r, &sub[j]);
    if (sub != local)
        free(sub);
}

static int
run(void *arg)
{
    struct uts_ctx *c = arg;
    struct uts_count r = {0, 0, 0};

#pragma omp parallel num_threads(c->workers)
#pragma omp single
    uts_omp(NULL, 0, 0, &r);
    return uts_check(&r);
}

int
main(int argc, char **argv)
{
    struct fj_opts o;

    fj_parse(argc, argv, &o, 0);
    if (uts_sha1_selftest())
        fj_fail("uts", "openmp", "SHA-1 self-test");
    omp_set_dynamic(0);

    unsigned p = o.workers ? o.workers : (unsigned)omp_get_max_threads();
    struct uts_ctx c1 = {1}, cp = {p};
    struct fj_case cases[] = {
        {"openmp", 1, run, &c1},
        {"openmp", p, run, &cp},
    };
    fj_measure("uts", cases, p > 1 ? 2 : 1, o.runs);
    return 0;
}
