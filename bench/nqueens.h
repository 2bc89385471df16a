/*
 * n-queens with a task per placement: the board checks and the expected
 * counts shared by every version.
 *
 * A node of the search is a board with `row` queens, one per row; its
 * children are the columns where a queen fits in the next row.  Each child
 * copies its parent's board and adds its queen, so that siblings can run
 * at the same time; the sequential version does the same copies, so that
 * it is the serial elision of the parallel ones.
 */
#ifndef WS_BENCH_NQUEENS_H
#define WS_BENCH_NQUEENS_H

#include <string.h>

#define NQ_N 13
#define NQ_MAX_N 16

/* A board: the column of the queen of each row; copied whole, in one or two
 * moves, rather than by its used length. */
#define NQ_BOARD 16

/* Solutions of the n-queens problem for n = 0..NQ_MAX_N (OEIS A000170). */
static const long nq_solutions[NQ_MAX_N + 1] = {
    1,   1,   0,    0,     2,     10,     4,       40,       92,
    352, 724, 2680, 14200, 73712, 365596, 2279184, 14772512,
};

/* The root's board, which has no queen. */
static const signed char nq_empty[NQ_BOARD] = {0};

/* Whether a queen fits in column col of row `row` of board a. */
static inline int
nq_ok(const signed char *a, int row, int col)
{
    for (int i = 0; i < row; i++) {
        int d = a[i] - col;

        if (d == 0 || d == row - i || d == i - row)
            return 0;
    }
    return 1;
}

/*
 * Fills a with the parent's `row` queens plus one in column col (none when
 * col is negative: the root, whose parent is nq_empty); returns the number
 * of queens on a.
 */
static inline int
nq_place(signed char *a, const signed char *parent, int row, int col)
{
    memcpy(a, parent, NQ_BOARD);
    if (col < 0)
        return row;
    a[row] = (signed char)col;
    return row + 1;
}

/*
 * The sequential version, the serial elision of the task versions: the
 * solutions below the node that puts a queen in column col of row `row`
 * of the parent board (the root: nq_empty, 0, -1).
 */
__attribute__((unused)) static long
nq_seq(int n, const signed char *parent, int row, int col)
{
    signed char a[NQ_BOARD];
    long count = 0;

    row = nq_place(a, parent, row, col);
    if (row == n)
        return 1;
    for (int j = 0; j < n; j++)
        if (nq_ok(a, row, j))
            count += nq_seq(n, a, row, j);
    return count;
}

/* Nodes of the search below the node: the spawns of the task versions. */
__attribute__((unused)) static long
nq_placements(int n, const signed char *parent, int row, int col)
{
    signed char a[NQ_BOARD];
    long count = 0;

    row = nq_place(a, parent, row, col);
    if (row == n)
        return 0;
    for (int j = 0; j < n; j++)
        if (nq_ok(a, row, j))
            count += 1 + nq_placements(n, a, row, j);
    return count;
}

/* What one run computes, and the answer it must get. */
struct nq_job {
    int n;
    long expect;
};

/* One run of the sequential version, for fj_measure; n is read through a
 * volatile lvalue so that the pure call cannot leave the timing loop. */
__attribute__((unused)) static int
nq_run_seq(void *arg)
{
    struct nq_job *j = (struct nq_job *)arg;

    return nq_seq(*(volatile int *)&j->n, nq_empty, 0, -1) != j->expect;
}

#endif /* WS_BENCH_NQUEENS_H */
