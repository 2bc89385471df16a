/*
 * oneTBB's tbb::concurrent_bounded_queue under the load of bench/queue.c:
 *     queue_tbb <producers> <consumers> <items> <capacity> <runs>
 * prints one BENCH line with the median items per second.  bench/queue runs
 * it as a child so that one table holds every queue.  Consumers stop at a
 * null item, one per consumer, pushed after the producers finish (the
 * queue's abort() would drop items still inside).  A first short run
 * measures the rate, and when the queue is slow (oneTBB's bounded queue
 * collapses when its threads outnumber the cores) the runs move fewer
 * items, so that each lasts about 0.3 s and the benchmark stays short.
 */
#include <tbb/concurrent_queue.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "bench.h"

static double
run_once(unsigned np, unsigned nc, unsigned long items, long capacity)
{
    tbb::concurrent_bounded_queue<void *> q;
    q.set_capacity(capacity);
    unsigned long per = items / np;
    std::vector<unsigned long> count(nc), sum(nc);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, np + nc + 1);
    std::vector<std::thread> ps, cs;
    for (unsigned i = 0; i < np; i++)
        ps.emplace_back([&] {
            pthread_barrier_wait(&start);
            for (unsigned long k = 1; k <= per; k++)
                q.push(reinterpret_cast<void *>(static_cast<uintptr_t>(k)));
        });
    for (unsigned i = 0; i < nc; i++)
        cs.emplace_back([&, i] {
            pthread_barrier_wait(&start);
            for (;;) {
                void *v;
                q.pop(v);
                if (v == nullptr)
                    break;
                count[i]++;
                sum[i] += reinterpret_cast<uintptr_t>(v);
            }
        });
    pthread_barrier_wait(&start);
    double t0 = bench_now();
    for (auto &t : ps)
        t.join();
    for (unsigned i = 0; i < nc; i++)
        q.push(nullptr);
    for (auto &t : cs)
        t.join();
    double dt = bench_now() - t0;
    pthread_barrier_destroy(&start);
    unsigned long got = 0, s = 0;
    for (unsigned i = 0; i < nc; i++) {
        got += count[i];
        s += sum[i];
    }
    if (got != np * per || s != np * (per * (per + 1) / 2)) {
        std::fprintf(stderr, "queue_tbb: lost or duplicated items\n");
        std::exit(1);
    }
    return static_cast<double>(got) / dt;
}

int
main(int argc, char **argv)
{
    unsigned np = argc > 1 ? std::atoi(argv[1]) : 1;
    unsigned nc = argc > 2 ? std::atoi(argv[2]) : 1;
    unsigned long items = argc > 3 ? std::strtoul(argv[3], NULL, 10) : 2000000;
    long capacity = argc > 4 ? std::atol(argv[4]) : 1024;
    int runs = argc > 5 ? std::atoi(argv[5]) : bench_runs();
    if (np < 1 || nc < 1 || items < np || capacity < 1 || runs < 1) {
        std::fprintf(stderr, "usage: queue_tbb producers consumers items "
                             "capacity runs\n");
        return 2;
    }
    unsigned long warm = items / 20 > np ? items / 20 : np;
    double rate = run_once(np, nc, warm, capacity);
    if (rate * 0.3 < static_cast<double>(items))
        items = static_cast<unsigned long>(rate * 0.3);
    if (items < warm)
        items = warm;
    std::vector<double> v(runs);
    for (int i = 0; i < runs; i++)
        v[i] = run_once(np, nc, items, capacity) / 1e6;
    std::printf("BENCH queue-%u:%u oneTBB workers=%u median=%.2f Mitems/s "
                "runs=%d\n",
                np, nc, np + nc, bench_median(v.data(), runs), runs);
    return 0;
}
