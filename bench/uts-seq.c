/*
 * UTS T3, sequential: Ts, the serial elision of the versions that make a
 * task per node.  The wsched version measures it too, interleaved with its
 * own runs; this program is the baseline on its own.
 */
#include <stdio.h>

#include "fj.h"
#include "uts.h"

int
main(int argc, char **argv)
{
    struct fj_opts o;

    fj_parse(argc, argv, &o, 0);
    if (uts_sha1_selftest())
        fj_fail("uts", "seq", "SHA-1 self-test");
    printf("INFO uts tree=T3 result=%d spawns=%d\n", UTS_T3_NODES,
           UTS_T3_NODES - 1);

    struct fj_case cases[] = {{"seq", 1, uts_run_seq, NULL}};
    fj_measure("uts", cases, 1, o.runs);
    return 0;
}
