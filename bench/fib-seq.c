/*
 * fib(n), sequential: Ts, and the same tree with every node a real call
 * (see fib.h).  The wsched version measures these too, interleaved with
 * its own runs; this program is the baseline on its own.
 */
#include <stdio.h>

#include "fib.h"
#include "fj.h"

int
main(int argc, char **argv)
{
    struct fj_opts o;
    struct fib_job j;

    fj_parse(argc, argv, &o, FIB_N);
    if (o.n > FIB_MAX_N)
        fj_usage(argv[0]);
    j.n = o.n;
    j.expect = fib_value(o.n);
    printf("INFO fib n=%d result=%ld spawns=%ld\n", o.n, j.expect,
           fib_spawns(o.n));

    struct fj_case cases[] = {
        {"seq", 1, fib_run_seq, &j},
        {"seq-calls", 1, fib_run_calls, &j},
    };
    fj_measure("fib", cases, 2, o.runs);
    return 0;
}
