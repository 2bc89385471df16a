/*
 * UTS, the Unbalanced Tree Search benchmark (Olivier et al., LCPC 2006), as
 * its reference implementation defines the tree, for the binomial tree T3:
 * the root has b0 = 2000 children, every other node has m = 8 children
 * with probability q = 0.124875 and none otherwise, root seed 42.  T3 has
 * 4,112,897 nodes, 3,599,034 leaves and depth 1,572.
 *
 * A node is the 20-byte SHA-1 digest that identifies it.  The root's is
 * SHA-1 of 16 zero bytes and the seed as 4 big-endian bytes; child i's is
 * SHA-1 of its parent's 20 bytes and i as 4 big-endian bytes.  Whether a
 * node has children depends on the last 4 digest bytes, read big-endian,
 * as the reference's rng_rand and rng_toProb do.
 *
 * Every version makes a task per node below the root: the task computes
 * its node's digest from its parent's and counts the subtree.
 */
#ifndef WS_BENCH_UTS_H
#define WS_BENCH_UTS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UTS_DIGEST 20
#define UTS_B0 2000
#define UTS_M 8
#define UTS_Q 0.124875
#define UTS_SEED 42

#define UTS_T3_NODES 4112897
#define UTS_T3_LEAVES 3599034
#define UTS_T3_DEPTH 1572

/* Counts of a subtree: nodes, leaves, and its greatest node depth. */
struct uts_count {
    uint64_t nodes;
    uint64_t leaves;
    int depth;
};

/* SHA-1 (FIPS 180-4) of len bytes. */
void uts_sha1(const unsigned char *msg, size_t len,
              unsigned char out[UTS_DIGEST]);

/* Checks uts_sha1 against the FIPS 180 examples; 0 when right. */
int uts_sha1_selftest(void);

/* The root node. */
void uts_root(unsigned char node[UTS_DIGEST]);

/* Child i of parent. */
void uts_child(const unsigned char parent[UTS_DIGEST], int i,
               unsigned char child[UTS_DIGEST]);

/* Number of children of a node at depth `depth` (the root is at 0). */
int uts_children(const unsigned char node[UTS_DIGEST], int depth);

/* Adds the counts of a child's subtree to acc. */
static inline void
uts_merge(struct uts_count *acc, const struct uts_count *c)
{
    acc->nodes += c->nodes;
    acc->leaves += c->leaves;
    if (c->depth > acc->depth)
        acc->depth = c->depth;
}

/*
 * Checks a count of the whole tree against T3's figures; prints what
 * differs on stderr and returns nonzero when wrong.
 */
int uts_check(const struct uts_count *c);

/*
 * The sequential version, the serial elision of the task versions: counts
 * the subtree of child i of parent (the root when parent is NULL), a node
 * at depth `depth`.
 */
__attribute__((unused)) static void
uts_seq(const unsigned char *parent, int i, int depth, struct uts_count *r)
{
    unsigned char node[UTS_DIGEST];
    struct uts_count sub;
    int nc;

    if (parent)
        uts_child(parent, i, node);
    else
        uts_root(node);
    nc = uts_children(node, depth);
    r->nodes = 1;
    r->leaves = nc == 0;
    r->depth = depth;
    for (int j = 0; j < nc; j++) {
        uts_seq(node, j, depth + 1, &sub);
        uts_merge(r, &sub);
    }
}

/* One run of the sequential version, for fj_measure. */
__attribute__((unused)) static int
uts_run_seq(void *arg)
{
    struct uts_count c;

    (void)arg;
    uts_seq(NULL, 0, 0, &c);
    return uts_check(&c);
}

#ifdef __cplusplus
}
#endif

#endif /* WS_BENCH_UTS_H */
