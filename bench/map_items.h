/*
 * The item functions of the map benchmarks, shared by the C program
 * (sequential, OpenMP, wsched) and the C++ one (oneTBB) so that every
 * implementation runs the same code.  Each implementation calls them through
 * a function pointer it cannot see through, as a map must.
 */
#ifndef WS_BENCH_MAP_ITEMS_H
#define WS_BENCH_MAP_ITEMS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*map_item_fn)(const void *in, void *out, void *ctx);

/* Tiny item: one double squared. */
static int
map_square(const void *in, void *out, void *ctx)
{
    double x = *(const double *)in;

    (void)ctx;
    *(double *)out = x * x;
    return 0;
}

/* Heavy item: *(uint64_t *)ctx rounds of xorshift seeded by the input. */
static int
map_spin(const void *in, void *out, void *ctx)
{
    uint64_t n = *(const uint64_t *)ctx, x = *(const uint64_t *)in | 1;

    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    *(uint64_t *)out = x;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* WS_BENCH_MAP_ITEMS_H */
