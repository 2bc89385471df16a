#!/bin/sh
# Fork-join benchmarks: fib(35), nqueens(13) and UTS T3, each sequential,
# with wsched, with OpenMP tasks and with oneTBB task_group, all with one
# worker and with every worker (the default pool size).  Runs the programs
# of bench/ in turn (each runs its cases interleaved, see bench/fj.h),
# shows their BENCH lines, then prints one table of medians and ratios and
# the targets wsched is measured against.
#
# Usage: bench/fjbench [fib] [nqueens] [uts]   run (default: all three)
#        bench/fjbench -t FILE                 table of a saved run's output
# Environment: BENCH_RUNS (runs per measurement, default 5; OpenMP fib
# takes at most 3, since one run with two workers takes seconds here).
#
# A program that gets a wrong result prints FAIL and the suite stops with
# status 1.  Peers that configure did not find are left out of the table.

set -u
dir=$(dirname "$0")

# table FILE: the table and the targets, from the BENCH and INFO lines of
# FILE.  The worker count p is the largest one measured.
table() {
    awk '
$1 == "INFO" && $3 ~ /^(n|tree)=/ {
    if (!($2 in size)) order[++nb] = $2
    for (i = 3; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "spawns") spawns[$2] = kv[2]
        if (kv[1] == "n") size[$2] = "(" kv[2] ")"
        if (kv[1] == "tree") size[$2] = " " kv[2]
    }
}
$1 == "BENCH" {
    split($4, wk, "="); split($5, md, "="); split($7, rn, "=")
    impl = $3
    if (impl ~ /-capacity$/) {
        sub(/-capacity$/, "", impl)
        cap[$2, impl] = md[2]
    } else {
        t[$2, impl, wk[2]] = md[2]
        if (wk[2] + 0 > p) p = wk[2] + 0
        nruns[$2, impl] = rn[2]
    }
}
function num(x) { return x != "" }
function fmt_t(x) {
    if (!num(x)) return "-"
    return x >= 1000 ? sprintf("%.0f", x) : sprintf("%.1f", x)
}
function ratio(a, b) {
    return (num(a) && num(b) && b > 0) ? sprintf("%.2f", a / b) : "-"
}
function times(a, b) {
    if (!(num(a) && num(b) && b > 0)) return "-"
    return a / b >= 100 ? sprintf("%.0fx", a / b) : sprintf("%.1fx", a / b)
}
function target(what, value, goal, ok) {
    printf("  %-44s %9s  %-8s %s\n", what, value, goal,
           goal == "" ? "" : value == "-" ? "n/a" : ok ? "ok" : "MISS")
}
END {
    if (p < 1) p = 1
    ni = split("seq seq-calls wsched ws-join openmp onetbb", I, " ")
    printf("%-12s %-9s %8s %8s %6s %6s %6s %5s %6s %8s\n", "bench", "impl",
           "T1 ms", "T" p " ms", "T1/Ts", "T1/T" p, "Ts/T" p, "cap",
           "/cap", "ns/spawn")
    for (i = 1; i <= nb; i++) {
        b = order[i]
        ts = t[b, "seq", 1]
        label = b size[b]
        for (j = 1; j <= ni; j++) {
            im = I[j]
            t1 = t[b, im, 1]
            if (!num(t1)) continue
            tp = (p > 1) ? t[b, im, p] : ""
            c = cap[b, im]
            eff = "-"
            if (num(tp) && num(c) && c > 0)
                eff = sprintf("%.2f", t1 / tp / c)
            sp = "-"
            if (j > 2 && spawns[b] > 0 && num(ts))
                sp = sprintf("%.1f", (t1 - ts) * 1e6 / spawns[b])
            if (j == 1)
                printf("%-12s %-9s %8s\n", label, im, fmt_t(t1))
            else if (j == 2)
                printf("%-12s %-9s %8s %8s %6s\n", label, im, fmt_t(t1), "",
                       ratio(t1, ts))
            else
                printf("%-12s %-9s %8s %8s %6s %6s %6s %5s %6s %8s\n", label,
                       im, fmt_t(t1), fmt_t(tp), ratio(t1, ts),
                       ratio(t1, tp), ratio(ts, tp), c, eff, sp)
            label = ""
        }
    }
    runs = nruns[order[1], "seq"]
    printf("\nT1, T%d: median times with 1 and %d workers, %s runs each", p, p,
           runs)
    if (num(nruns["fib", "openmp"]) && nruns["fib", "openmp"] != runs)
        printf(" (OpenMP fib: %s)", nruns["fib", "openmp"])
    printf("; Ts: seq.\n")
    printf("cap: cores the machine gave two spinning threads, probed" \
           " before the %d-worker\n     run of every round (median; 2.00:" \
           " two full cores).  /cap: (T1/T%d) / cap.\n", p, p)
    printf("ns/spawn: (T1 - Ts) / spawns.  seq-calls: fib with every node" \
           " a real call.\n")

    printf("\n  %-44s %9s  %-8s\n", "targets for wsched", "measured", "target")
    for (i = 1; i <= nb; i++) {
        b = order[i]
        x = ratio(t[b, "wsched", 1], t[b, "seq", 1])
        goal = b == "fib" ? 6 : 1.15
        target(b " T1/Ts", x, "<= " goal, x + 0 <= goal)
        if (b != "fib")
            continue
        # ws_join, the one call for spawn-call-sync, is judged beside the
        # group calls when it was measured.
        for (v = 3; v <= 4; v++) {
            ws = I[v]
            if (!num(t[b, ws, 1])) continue
            if (v == 4) {
                x = ratio(t[b, ws, 1], t[b, "seq", 1])
                target("fib ws-join T1/Ts", x, "<= 6", x + 0 <= 6)
            }
            x = ratio(t[b, ws, 1], t[b, "seq-calls", 1])
            target(sprintf("fib %s T1/T(seq-calls), for scale", ws), x, "", 1)
            for (j = 5; j <= 6; j++) {
                if (!num(t[b, I[j], 1])) continue
                for (k = 1; k <= (p > 1 ? 2 : 1); k++) {
                    nw = k == 1 ? 1 : p
                    a = t[b, I[j], nw]; tw = t[b, ws, nw]
                    x = times(a, tw)
                    target(sprintf("fib %s / %s, %d worker%s", I[j], ws, nw,
                                   nw > 1 ? "s" : ""), x, ">= 8x",
                           x != "-" && a / tw >= 8)
                }
            }
        }
    }
    if (p > 1) {
        for (i = 1; i <= nb; i++) {
            b = order[i]
            for (v = 3; v <= 4; v++) {
                ws = I[v]
                t1 = t[b, ws, 1]; tp = t[b, ws, p]; c = cap[b, ws]
                if (v == 4 && !num(t1)) continue
                x = "-"
                if (num(t1) && num(tp) && num(c) && c > 0)
                    x = sprintf("%.2f", t1 / tp / c)
                target(sprintf("%s%s (T1/T%d) / cap, cap %s", b,
                               v == 4 ? " ws-join" : "", p, c), x,
                       ">= 0.9", x + 0 >= 0.9)
            }
        }
    }
}' "$1"
}

if [ "${1:-}" = -t ]; then
    [ $# -eq 2 ] || {
        echo "usage: $0 -t FILE" >&2
        exit 2
    }
    table "$2"
    exit
fi

runs=${BENCH_RUNS:-5}
case $runs in
    '' | *[!0-9]*) runs=5 ;;
esac
[ "$runs" -ge 1 ] || runs=1
omp_fib_runs=$runs
[ "$omp_fib_runs" -gt 3 ] && omp_fib_runs=3
benches=${*:-fib nqueens uts}

log=$(mktemp "${TMPDIR:-/tmp}/fjbench.XXXXXX") || exit 1
out=$(mktemp "${TMPDIR:-/tmp}/fjbench.XXXXXX") || exit 1
trap 'rm -f "$log" "$out"' EXIT
trap 'exit 1' HUP INT TERM

# run PROGRAM ARGS...: runs one program, shows its output, keeps it for the
# table; stops the suite if it fails.
run() {
    "$@" >"$out"
    status=$?
    cat "$out"
    if [ $status -ne 0 ]; then
        echo "fjbench: FAIL: $* (exit status $status)" >&2
        exit 1
    fi
    cat "$out" >>"$log"
}

have() {
    [ -x "$dir/$1" ]
}

for b in $benches; do
    case $b in
        fib | nqueens | uts) ;;
        *)
            echo "fjbench: unknown benchmark $b (fib, nqueens, uts)" >&2
            exit 2
            ;;
    esac
    have "$b-seq" || {
        echo "fjbench: $dir/$b-seq is missing: run make bench" >&2
        exit 1
    }
done

# "Every worker" is the default pool size; the peers get the same count.
if have fib-ws; then
    p=$("$dir/fib-ws" -s) || {
        echo "fjbench: FAIL: cannot create a default pool" >&2
        exit 1
    }
else
    p=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
fi

# The load average tells how much else shared the machine during the run.
load() {
    [ -r /proc/loadavg ] && cut -d' ' -f1-3 /proc/loadavg
}

echo "fork-join: $benches with 1 and $p workers, $runs runs each;" \
    "load average $(load)"
for b in $benches; do
    # The wsched program also runs the sequential versions, interleaved
    # with its own runs; without it, the sequential program runs alone.
    if have "$b-ws"; then
        run "$dir/$b-ws" -w "$p" -r "$runs"
    else
        run "$dir/$b-seq" -r "$runs"
    fi
    for impl in omp tbb; do
        have "$b-$impl" || continue
        r=$runs
        [ "$b-$impl" = fib-omp ] && r=$omp_fib_runs
        run "$dir/$b-$impl" -w "$p" -r "$r"
    done
done
echo
table "$log"
echo
echo "load average at the end: $(load)"
