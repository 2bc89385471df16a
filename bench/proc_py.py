#!/usr/bin/env python3
"""Python baselines for bench/proc_map: the same maps with the standard
library's process pools, printed as BENCH lines.

    proc_py.py map <tiny_n> <heavy_n> <heavy_us>

tiny: x*x+1 over tiny_n ints; heavy: heavy_n items that each spin for
heavy_us microseconds.  multiprocessing.Pool.map at its default chunksize
and at 1000, ProcessPoolExecutor.map at chunksize 1 and 1000, two worker
processes each.  Configurations that would take minutes at chunksize 1 run
on fewer items; the rate is what is reported.  BENCH_RUNS runs each
(default 3), median reported.
"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import statistics
import sys
import time

WORKERS = 2


def tiny(x):
    return x * x + 1


def heavy(x):
    end = time.perf_counter() + HEAVY_S
    while time.perf_counter() < end:
        pass
    return x + 1


HEAVY_S = 1e-4


def init_heavy(s):
    global HEAVY_S
    HEAVY_S = s


def runs():
    try:
        return max(1, int(os.environ.get("BENCH_RUNS", "3")))
    except ValueError:
        return 3


def measure(label, bench, n, call):
    times = []
    for _ in range(runs()):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"BENCH {bench} {label} workers={WORKERS} "
          f"median={n / med:.0f} items/s runs={len(times)}", flush=True)


def bench_map(bench, fn, n_full, n_slow, init, initargs):
    xs = list(range(n_full))
    few = xs[:n_slow]
    with mp.Pool(WORKERS, initializer=init, initargs=initargs) as p:
        p.map(fn, few[:100])
        measure("py_pool_default", bench, n_full, lambda: p.map(fn, xs))
        measure("py_pool_1000", bench, n_full,
                lambda: p.map(fn, xs, chunksize=1000))
    with cf.ProcessPoolExecutor(WORKERS, initializer=init,
                                initargs=initargs) as ex:
        list(ex.map(fn, few[:100]))
        measure("py_ppe_1", bench, n_slow,
                lambda: list(ex.map(fn, few, chunksize=1)))
        measure("py_ppe_1000", bench, n_full,
                lambda: list(ex.map(fn, xs, chunksize=1000)))


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "map":
        sys.exit(__doc__)
    tiny_n, heavy_n, heavy_us = map(int, sys.argv[2:])
    bench_map("map_tiny", tiny, tiny_n, min(tiny_n, 20000), init_heavy,
              (heavy_us * 1e-6,))
    bench_map("map_heavy", heavy, heavy_n, heavy_n, init_heavy,
              (heavy_us * 1e-6,))


if __name__ == "__main__":
    main()
