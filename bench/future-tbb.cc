/*
 * The executor benchmark's oneTBB side (bench/future.c runs it): the same
 * four measurements of an empty task with oneTBB's own idioms.
 *   rt_ext      task_arena::enqueue of a task that fulfils a std::promise,
 *               then future::get, from the main thread;
 *   rt_worker   inside task_arena::execute: task_group::run, then wait;
 *   tput_ext    task_arena::enqueue of 10^6 task_group::defer handles from
 *               the main thread, then task_group::wait;
 *   tput_worker inside task_arena::execute: 10^6 task_group::run, then
 *               wait.
 * The arena has as many slots as wsched has workers, none reserved for
 * the main thread, and global_control lets oneTBB start that many worker
 * threads, so that enqueued work gets as many threads as wsched's.
 *
 * Usage: future-tbb [-w workers] [-r runs] [-s scale]
 * Prints one BENCH line per measurement (the median of the runs).
 */
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>
#include <unistd.h>

#include "bench.h"

namespace
{

constexpr int max_runs = 1000;

double
round_trips_ext(tbb::task_arena &arena, long n)
{
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        std::promise<void *> p;
        std::future<void *> f = p.get_future();
        arena.enqueue([&p] { p.set_value(nullptr); });
        f.get();
    }
    return (bench_now() - t0) / static_cast<double>(n) * 1e6;
}

double
round_trips_worker(tbb::task_arena &arena, long n)
{
    double us = 0;
    arena.execute([&] {
        tbb::task_group tg;
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            tg.run([] {});
            tg.wait();
        }
        us = (bench_now() - t0) / static_cast<double>(n) * 1e6;
    });
    return us;
}

double
throughput_ext(tbb::task_arena &arena, long n)
{
    tbb::task_group tg;
    double t0 = bench_now();
    for (long i = 0; i < n; i++)
        arena.enqueue(tg.defer([] {}));
    arena.execute([&] { tg.wait(); });
    return static_cast<double>(n) / (bench_now() - t0);
}

double
throughput_worker(tbb::task_arena &arena, long n)
{
    double t0 = bench_now();
    arena.execute([&] {
        tbb::task_group tg;
        for (long i = 0; i < n; i++)
            tg.run([] {});
        tg.wait();
    });
    return static_cast<double>(n) / (bench_now() - t0);
}

/* Every enqueued task runs before the wait returns: checked once. */
bool
drains(tbb::task_arena &arena)
{
    std::atomic<long> ran{0};
    tbb::task_group tg;
    for (int i = 0; i < 10000; i++)
        arena.enqueue(tg.defer([&ran] { ran.fetch_add(1); }));
    arena.execute([&] { tg.wait(); });
    return ran.load() == 10000;
}

void
usage(const char *prog)
{
    std::fprintf(stderr, "usage: %s [-w workers] [-r runs] [-s scale]\n", prog);
    std::exit(2);
}

} // namespace

int
main(int argc, char **argv)
{
    int workers = 0, runs = bench_runs(), c;
    double scale = 1;

    while ((c = getopt(argc, argv, "w:r:s:")) != -1) {
        switch (c) {
        case 'w':
            workers = std::atoi(optarg);
            break;
        case 'r':
            runs = std::atoi(optarg);
            break;
        case 's':
            scale = std::atof(optarg);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (workers <= 0)
        workers = static_cast<int>(std::thread::hardware_concurrency());
    if (runs < 1 || runs > max_runs || scale <= 0)
        usage(argv[0]);
    long rt_ext_n = static_cast<long>(5000 * scale) + 1;
    long rt_worker_n = static_cast<long>(50000 * scale) + 1;
    long tput_n = static_cast<long>(1e6 * scale) + 1;

    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           static_cast<size_t>(workers) + 1);
    tbb::task_arena arena(workers, 0);
    arena.initialize();
    if (!drains(arena)) {
        std::fprintf(stderr, "FAIL: task_group::wait returned early\n");
        return 1;
    }

    static double v[4][max_runs];
    for (int r = 0; r < runs; r++) {
        round_trips_ext(arena, rt_ext_n / 10 + 1); /* warm up */
        v[0][r] = round_trips_ext(arena, rt_ext_n);
        v[1][r] = round_trips_worker(arena, rt_worker_n);
        v[2][r] = throughput_ext(arena, tput_n);
        v[3][r] = throughput_worker(arena, tput_n);
    }
    static const char *const name[4] = {"future_rt_ext", "future_rt_worker",
                                        "future_tput_ext",
                                        "future_tput_worker"};
    static const char *const unit[4] = {"us", "us", "tasks/s", "tasks/s"};
    for (int m = 0; m < 4; m++)
        std::printf("BENCH %s tbb workers=%d median=%.6g %s runs=%d\n", name[m],
                    workers, bench_median(v[m], runs), unit[m], runs);
    return 0;
}
