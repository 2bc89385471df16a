"""The executor benchmark's Python side (bench/future.c runs it).

Python's ThreadPoolExecutor with as many threads as wsched has workers:
  rt_ext    submit(noop).result(), one at a time, from the main thread:
            microseconds per round trip;
  tput_ext  5 x 10^4 submissions (fewer than the C programs make: each costs
            tens of microseconds), then shutdown(wait=True): tasks per
            second.
Python has no counterpart of a task that submits from inside the pool
without blocking a thread, so the in-worker measurements are left out.

Usage: future.py [-w workers] [-r runs] [-s scale]
Prints one BENCH line per measurement (the median of the runs).
"""

import getopt
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def noop():
    return None


def round_trips(ex, n):
    t0 = time.monotonic()
    for _ in range(n):
        ex.submit(noop).result()
    return (time.monotonic() - t0) / n * 1e6


def throughput(workers, n):
    ex = ThreadPoolExecutor(max_workers=workers)
    t0 = time.monotonic()
    for _ in range(n):
        ex.submit(noop)
    ex.shutdown(wait=True)
    return n / (time.monotonic() - t0)


def main():
    workers, runs, scale = os.cpu_count() or 1, 5, 1.0
    runs = max(1, int(os.environ.get("BENCH_RUNS", "5") or 5))
    try:
        opts, _ = getopt.getopt(sys.argv[1:], "w:r:s:")
    except getopt.GetoptError:
        print(__doc__, file=sys.stderr)
        return 2
    for o, v in opts:
        if o == "-w":
            workers = max(1, int(v))
        elif o == "-r":
            runs = max(1, int(v))
        elif o == "-s":
            scale = float(v)
    rt_n = max(1, int(2000 * scale))
    tput_n = max(1, int(50000 * scale))

    rt, tput = [], []
    for _ in range(runs):
        with ThreadPoolExecutor(max_workers=workers) as ex:
            round_trips(ex, rt_n // 10 + 1)  # warm up: start the threads
            rt.append(round_trips(ex, rt_n))
        tput.append(throughput(workers, tput_n))
    print("BENCH future_rt_ext python workers=%d median=%.6g us runs=%d"
          % (workers, statistics.median(rt), runs))
    print("BENCH future_tput_ext python workers=%d median=%.6g tasks/s "
          "runs=%d" % (workers, statistics.median(tput), runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
