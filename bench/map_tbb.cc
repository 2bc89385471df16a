/*
 * oneTBB peer of bench/map: tbb::parallel_for over the items with the
 * default (auto) partitioner, calling the same item functions through a
 * pointer.  bench/map runs it as a child so that one table shows every peer;
 * run alone it prints its own BENCH lines.
 *
 *     map_tbb [workers [tiny_items [heavy_items [spin_rounds [runs]]]]]
 *
 * workers 0 (the default) leaves oneTBB its own default; spin_rounds 0
 * calibrates a heavy item to about 100 us.
 */
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/parallel_for.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "bench.h"
#include "map_items.h"

static map_item_fn volatile tiny_fn = map_square;
static map_item_fn volatile heavy_fn = map_spin;
static volatile uint64_t spin_sink; /* keeps calibration runs alive */

static double
run_once(map_item_fn fn, const unsigned char *in, size_t in_size,
         unsigned char *out, size_t out_size, size_t n, void *ctx)
{
    double t0 = bench_now();
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n),
                      [=](const tbb::blocked_range<size_t> &r) {
                          for (size_t i = r.begin(); i != r.end(); ++i)
                              fn(in + i * in_size, out + i * out_size, ctx);
                      });
    return bench_now() - t0;
}

static double
measure(map_item_fn fn, const unsigned char *in, size_t in_size,
        unsigned char *out, size_t out_size, size_t n, void *ctx, int runs,
        bool warm_up)
{
    std::vector<double> t(runs);

    if (warm_up)
        run_once(fn, in, in_size, out, out_size, n, ctx);
    for (int r = 0; r < runs; r++)
        t[r] = run_once(fn, in, in_size, out, out_size, n, ctx);
    return bench_median(t.data(), runs);
}

static uint64_t
calibrate_spin(void)
{
    uint64_t rounds = 1000000, x = 1, y;
    double best = 1e9;

    for (int k = 0; k < 5; k++) {
        double t0 = bench_now();
        heavy_fn(&x, &y, &rounds);
        double dt = bench_now() - t0;
        spin_sink = y;
        if (dt < best)
            best = dt;
    }
    return (uint64_t)(rounds * 100e-6 / best) + 1;
}

int
main(int argc, char **argv)
{
    unsigned workers = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 0;
    size_t tiny_n = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000000;
    size_t heavy_n = argc > 3 ? strtoull(argv[3], NULL, 10) : 10000;
    uint64_t spin = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    int runs = argc > 5 ? atoi(argv[5]) : bench_runs();

    if (workers == 0)
        workers = (unsigned)tbb::info::default_concurrency();
    if (spin == 0)
        spin = calibrate_spin();
    if (runs < 1)
        runs = 1;
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           workers);

    std::unique_ptr<double[]> tin(new double[tiny_n]), tout(new double[tiny_n]);
    for (size_t i = 0; i < tiny_n; i++) {
        tin[i] = (double)i * 0.25 - 1e5;
        tout[i] = 0;
    }
    double t = measure(tiny_fn, (const unsigned char *)tin.get(),
                       sizeof(double), (unsigned char *)tout.get(),
                       sizeof(double), tiny_n, NULL, runs, true);
    for (size_t i = 0; i < tiny_n; i++)
        if (tout[i] != tin[i] * tin[i]) {
            fprintf(stderr, "map_tbb: wrong result at %zu\n", i);
            return 1;
        }
    printf("BENCH map_tiny tbb workers=%u median=%.6g items/s runs=%d\n",
           workers, tiny_n / t, runs);

    std::unique_ptr<uint64_t[]> hin(new uint64_t[heavy_n]),
        hout(new uint64_t[heavy_n]);
    for (size_t i = 0; i < heavy_n; i++)
        hin[i] = i + 1;
    t = measure(heavy_fn, (const unsigned char *)hin.get(), sizeof(uint64_t),
                (unsigned char *)hout.get(), sizeof(uint64_t), heavy_n, &spin,
                runs, false);
    printf("BENCH map_heavy tbb workers=%u median=%.6g items/s runs=%d\n",
           workers, heavy_n / t, runs);
    return 0;
}
