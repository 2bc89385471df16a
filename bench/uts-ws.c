/*
 * UTS T3 with wsched: a task per node below the root, no cutoff, through
 * the public calls of the shared library.  The sequential version runs
 * interleaved with it, so that T1/Ts compares runs made under the same
 * load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <wsched.h>

#include "fj-ws.h"
#include "fj.h"
#include "uts.h"

/* A node: child i of parent (the root when parent is NULL), at depth
 * `depth`, and the counts of its subtree. */
struct uts_arg {
    const unsigned char *parent;
    int i, depth;
    struct uts_count r;
};

struct uts_ctx {
    ws_pool *pool;
    long calls;
};

static void
uts_task(void *p)
{
    struct uts_arg *t = p, local[UTS_M], *sub = local;
    unsigned char node[UTS_DIGEST];
    int nc;
    ws_group g;

    if (t->parent)
        uts_child(t->parent, t->i, node);
    else
        uts_root(node);
    nc = uts_children(node, t->depth);
    t->r.nodes = 1;
    t->r.leaves = nc == 0;
    t->r.depth = t->depth;
    if (nc == 0)
        return;
    if (nc > UTS_M && !(sub = malloc((size_t)nc * sizeof *sub)))
        fj_fail("uts", "wsched", "out of memory");
    ws_group_init(&g, NULL);
    for (int j = 0; j < nc; j++) {
        sub[j].parent = node;
        sub[j].i = j;
        sub[j].depth = t->depth + 1;
        if (ws_spawn(&g, uts_task, &sub[j]) != 0)
            fj_fail("uts", "wsched", "ws_spawn failed");
    }
    if (ws_sync(&g) != 0)
        fj_fail("uts", "wsched", "ws_sync failed");
    for (int j = 0; j < nc; j++)
        uts_merge(&t->r, &sub[j].r);
    if (sub != local)
        free(sub);
}

static int
run(void *arg)
{
    struct uts_ctx *c = arg;
    struct uts_arg root = {NULL, 0, 0, {0, 0, 0}};

    c->calls++;
    if (ws_run(c->pool, uts_task, &root) != 0)
        fj_fail("uts", "wsched", "ws_run failed");
    return uts_check(&root.r);
}

int
main(int argc, char **argv)
{
    struct fj_opts o;
    ws_pool *one, *all;

    fj_parse(argc, argv, &o, 0);
    if (uts_sha1_selftest())
        fj_fail("uts", "wsched", "SHA-1 self-test");
    fj_ws_pools(&o, "uts", &one, &all);
    printf("INFO uts tree=T3 result=%d spawns=%d\n", UTS_T3_NODES,
           UTS_T3_NODES - 1);

    unsigned p = ws_pool_size(all);
    struct uts_ctx c1 = {one, 0}, cp = {all, 0};
    struct fj_on_worker seq = {one, uts_run_seq, NULL, 0};
    struct fj_case cases[] = {
        {"seq", 1, fj_on_worker_run, &seq},
        {"wsched", 1, run, &c1},
        {"wsched", p, run, &cp},
    };
    fj_measure("uts", cases, p > 1 ? 3 : 2, o.runs);
    fj_ws_report(one, "uts", c1.calls);
    if (p > 1)
        fj_ws_report(all, "uts", cp.calls);
    ws_pool_destroy(one);
    ws_pool_destroy(all);
    return 0;
}
