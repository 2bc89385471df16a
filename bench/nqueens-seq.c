/*
 * n-queens, sequential: Ts, the serial elision of the versions that make a
 * task per placement.  The wsched version measures it too, interleaved with
 * its own runs; this program is the baseline on its own.
 */
#include <stdio.h>

#include "fj.h"
#include "nqueens.h"

int
main(int argc, char **argv)
{
    struct fj_opts o;
    struct nq_job j;

    fj_parse(argc, argv, &o, NQ_N);
    if (o.n < 1 || o.n > NQ_MAX_N)
        fj_usage(argv[0]);
    j.n = o.n;
    j.expect = nq_solutions[o.n];
    printf("INFO nqueens n=%d result=%ld spawns=%ld\n", o.n, j.expect,
           nq_placements(o.n, nq_empty, 0, -1));

    struct fj_case cases[] = {{"seq", 1, nq_run_seq, &j}};
    fj_measure("nqueens", cases, 1, o.runs);
    return 0;
}
