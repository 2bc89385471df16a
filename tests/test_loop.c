/*
 * Check suite "loop": ws_parallel_for, ws_parallel_map, ws_parallel_reduce.
 *
 * Results are counted exactly: every index is visited once, every item lands
 * in its own slot, reductions equal the sequential answer.  Pools of 1, 2, 4
 * and 8 workers (more than the cores here) run each basic test; iteration
 * counts scale with WSCHED_TEST_SCALE.
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wsched.h>

#include "loop.h"

/*
 * Every Check assertion that passes still sends a message to the runner (a
 * system call): loops over many items test first and assert on a mismatch.
 */
#define EXPECT(c)                                                          \
    do {                                                                   \
        if (!(c))                                                          \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c);             \
    } while (0)
#define EXPECT_EQ(a, b)                                                    \
    do {                                                                   \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                   \
        if (a_ != b_)                                                      \
            ck_abort_msg("%s:%d: %s == %s (%jd != %jd)", __FILE__,         \
                         __LINE__, #a, #b, a_, b_);                        \
    } while (0)

static const unsigned pool_sizes[] = {1, 2, 4, 8};
#define NPOOLS (int)(sizeof pool_sizes / sizeof pool_sizes[0])

static const size_t sizes[] = {0,  1,  2,   3,    5,    7,
                               13, 31, 97, 1009, 10007, 100003};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static const size_t grains[] = {0, 1, 3, 7, 64, 1000, SIZE_MAX};
#define NGRAINS (sizeof grains / sizeof grains[0])

static size_t
scale(void)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    long v = s ? atol(s) : 1;
    return v < 1 ? 1 : (size_t)v;
}

static ws_pool *
pool_make(unsigned workers)
{
    ws_pool_opts o = {.workers = workers};
    ws_pool *p = NULL;

    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), workers);
    return p;
}

static size_t
min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------- for */

struct visit {
    size_t            begin, end, grain;
    atomic_uchar     *hits;
    atomic_size_t     calls;
    atomic_int        bad;
};

static void
visit_body(size_t b, size_t e, void *ctx)
{
    struct visit *v = ctx;

    atomic_fetch_add_explicit(&v->calls, 1, memory_order_relaxed);
    if (b >= e || b < v->begin || e > v->end)
        atomic_store_explicit(&v->bad, 1, memory_order_relaxed);
    else if (v->grain > 0 && ((b - v->begin) % v->grain != 0 ||
                              e - b != min_size(v->grain, v->end - b)))
        atomic_store_explicit(&v->bad, 2, memory_order_relaxed);
    for (size_t i = b; i < e && i >= v->begin && i < v->end; i++)
        atomic_fetch_add_explicit(&v->hits[i - v->begin], 1,
                                  memory_order_relaxed);
}

/* Runs one loop and checks every index was visited exactly once. */
static void
visit_check(ws_pool *pool, size_t begin, size_t n, size_t grain)
{
    struct visit v = {.begin = begin, .end = begin + n, .grain = grain};

    v.hits = calloc(n ? n : 1, 1);
    ck_assert_ptr_nonnull(v.hits);
    ck_assert_int_eq(
        ws_parallel_for(pool, begin, begin + n, grain, visit_body, &v), 0);
    ck_assert_int_eq(atomic_load(&v.bad), 0);
    for (size_t i = 0; i < n; i++)
        if (atomic_load(&v.hits[i]) != 1)
            ck_abort_msg("n=%zu grain=%zu: index %zu visited %d times", n,
                         grain, i, (int)atomic_load(&v.hits[i]));
    if (grain > 0)
        ck_assert_uint_eq(atomic_load(&v.calls),
                          n == 0 ? 0 : (n - 1) / grain + 1);
    if (n == 0)
        ck_assert_uint_eq(atomic_load(&v.calls), 0);
    free(v.hits);
}

START_TEST(test_loop_for_sizes)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);

    for (size_t s = 0; s < NSIZES; s++)
        for (size_t g = 0; g < NGRAINS; g++) {
            visit_check(pool, 0, sizes[s], grains[g]);
            visit_check(pool, 12345, sizes[s], grains[g]);
        }
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

START_TEST(test_loop_for_range_top)
{
    /* A range that ends at SIZE_MAX: no index arithmetic may overflow. */
    ws_pool *pool = pool_make(pool_sizes[_i]);

    visit_check(pool, SIZE_MAX - 1000, 1000, 0);
    visit_check(pool, SIZE_MAX - 1000, 1000, 7);
    visit_check(pool, SIZE_MAX - 1000, 1000, SIZE_MAX - 1);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

struct nest {
    ws_pool      *pool;
    size_t        inner, grain;
    atomic_size_t sum;
    atomic_int    failed;
};

static void
nest_inner(size_t b, size_t e, void *ctx)
{
    struct nest *t = ctx;
    size_t s = 0;

    for (size_t i = b; i < e; i++)
        s += i;
    atomic_fetch_add_explicit(&t->sum, s, memory_order_relaxed);
}

static void
nest_outer(size_t b, size_t e, void *ctx)
{
    struct nest *t = ctx;

    for (size_t i = b; i < e; i++) {
        if (ws_worker_index() < 0)
            atomic_store(&t->failed, EPERM);
        int rc = ws_parallel_for(t->pool, 0, t->inner, t->grain, nest_inner,
                                 t);
        if (rc != 0)
            atomic_store(&t->failed, rc);
    }
}

START_TEST(test_loop_for_nested)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);

    for (size_t g = 0; g < 3; g++) {
        struct nest t = {.pool = pool, .inner = 1001, .grain = g * 50};
        ck_assert_int_eq(
            ws_parallel_for(pool, 0, 64, g == 1 ? 1 : 0, nest_outer, &t), 0);
        ck_assert_int_eq(atomic_load(&t.failed), 0);
        ck_assert_uint_eq(atomic_load(&t.sum), 64 * (1001 * 1000 / 2));
    }
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* ---------------------------------------------------------------- map */

struct item_in {
    uint64_t a;
    uint32_t b;
    char     tag[5];
};

struct item_out {
    uint64_t sum;
    uint64_t prod;
    uint32_t b;
    char     tag[5];
    int      worker;
};

struct map_ctx {
    uint64_t      mul;
    atomic_size_t calls;
};

static int
item_fn(const void *in, void *out, void *ctx)
{
    const struct item_in *x = in;
    struct item_out *y = out;
    struct map_ctx *c = ctx;

    atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
    y->sum = x->a + x->b;
    y->prod = x->a * c->mul;
    y->b = x->b;
    memcpy(y->tag, x->tag, sizeof y->tag);
    y->worker = ws_worker_index();
    return 0;
}

static void
items_fill(struct item_in *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        in[i].a = i * 2654435761u + 17;
        in[i].b = (uint32_t)(i ^ 0x5a5a);
        memcpy(in[i].tag, "abcd", 5);
        in[i].tag[0] = (char)('a' + i % 26);
    }
}

static void
items_check(const struct item_in *in, const struct item_out *out, size_t n,
            uint64_t mul, unsigned workers)
{
    for (size_t i = 0; i < n; i++) {
        EXPECT_EQ(out[i].sum, in[i].a + in[i].b);
        EXPECT_EQ(out[i].prod, in[i].a * mul);
        EXPECT_EQ(out[i].b, in[i].b);
        EXPECT(memcmp(out[i].tag, in[i].tag, 5) == 0);
        EXPECT(out[i].worker >= 0 && out[i].worker < (int)workers);
    }
}

static const size_t chunks[] = {0, 1, 2, 5, 64, 100000};
#define NCHUNKS (sizeof chunks / sizeof chunks[0])

START_TEST(test_loop_map_sizes)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    size_t nmax = sizes[NSIZES - 1];
    struct item_in *in = malloc(nmax * sizeof *in);
    struct item_out *out = malloc((nmax + 1) * sizeof *out);

    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    items_fill(in, nmax);
    for (size_t s = 0; s < NSIZES; s++)
        for (size_t c = 0; c < NCHUNKS; c++) {
            size_t n = sizes[s];
            struct map_ctx ctx = {.mul = 3 + c};
            ws_map m = {.fn = item_fn,
                        .in = in,
                        .in_size = sizeof *in,
                        .out = out,
                        .out_size = sizeof *out,
                        .n = n,
                        .ctx = &ctx,
                        .chunk = chunks[c]};
            memset(out, 0xee, (nmax + 1) * sizeof *out);
            ck_assert_int_eq(ws_parallel_map(pool, &m), 0);
            ck_assert_uint_eq(atomic_load(&ctx.calls), n);
            items_check(in, out, n, ctx.mul, pool_sizes[_i]);
            /* Nothing past the last slot was written. */
            const unsigned char *tail = (const unsigned char *)(out + n);
            for (size_t k = 0; k < sizeof *out; k++)
                EXPECT_EQ(tail[k], 0xee);
        }
    free(in);
    free(out);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* Items of odd sizes: 1000 bytes in, 3 bytes out. */
#define BIG_IN 1000
#define BIG_OUT 3

static int
big_fn(const void *in, void *out, void *ctx)
{
    const unsigned char *x = in;
    unsigned char *y = out;
    unsigned s = 0;

    (void)ctx;
    for (size_t k = 0; k < BIG_IN; k++)
        s += x[k];
    y[0] = (unsigned char)s;
    y[1] = (unsigned char)(s >> 8);
    y[2] = x[BIG_IN - 1];
    return 0;
}

START_TEST(test_loop_map_odd_item_sizes)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    size_t n = 4099;
    unsigned char *in = malloc(n * BIG_IN), *out = malloc(n * BIG_OUT);

    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n * BIG_IN; i++)
        in[i] = (unsigned char)(i * 7 + i / 1000);
    for (size_t c = 0; c < NCHUNKS; c++) {
        ws_map m = {.fn = big_fn,
                    .in = in,
                    .in_size = BIG_IN,
                    .out = out,
                    .out_size = BIG_OUT,
                    .n = n,
                    .chunk = chunks[c]};
        memset(out, 0, n * BIG_OUT);
        ck_assert_int_eq(ws_parallel_map(pool, &m), 0);
        for (size_t i = 0; i < n; i++) {
            unsigned char want[BIG_OUT];
            big_fn(in + i * BIG_IN, want, NULL);
            EXPECT(memcmp(out + i * BIG_OUT, want, BIG_OUT) == 0);
        }
    }
    free(in);
    free(out);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* A map whose item function runs a map of its own. */
struct outer_ctx {
    ws_pool *pool;
    size_t   inner_n, chunk;
    int     *inner_in;
};

static int
square_int(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(long *)out = (long)*(const int *)in * *(const int *)in;
    return 0;
}

static int
outer_fn(const void *in, void *out, void *ctx)
{
    const struct outer_ctx *c = ctx;
    size_t k = *(const size_t *)in;
    long *res = malloc(c->inner_n * sizeof *res), sum = 0;
    ws_map m = {.fn = square_int,
                .in = c->inner_in + k,
                .in_size = sizeof(int),
                .out = res,
                .out_size = sizeof *res,
                .n = c->inner_n,
                .chunk = c->chunk};

    if (res == NULL)
        return ENOMEM;
    int rc = ws_parallel_map(c->pool, &m);
    for (size_t i = 0; i < c->inner_n; i++)
        sum += res[i];
    free(res);
    *(long *)out = sum;
    return rc;
}

START_TEST(test_loop_map_nested)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    size_t n = 101, inner_n = 499;
    int *inner_in = malloc((n + inner_n) * sizeof *inner_in);
    size_t *idx = malloc(n * sizeof *idx);
    long *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);

    for (size_t i = 0; i < n + inner_n; i++)
        inner_in[i] = (int)i - 250;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t c = 0; c < 3; c++) {
        struct outer_ctx ctx = {pool, inner_n, c * 13, inner_in};
        ws_map m = {.fn = outer_fn,
                    .in = idx,
                    .in_size = sizeof *idx,
                    .out = out,
                    .out_size = sizeof *out,
                    .n = n,
                    .ctx = &ctx,
                    .chunk = c,
                    .status = status};
        ck_assert_int_eq(ws_parallel_map(pool, &m), 0);
        for (size_t k = 0; k < n; k++) {
            long want = 0;
            for (size_t i = 0; i < inner_n; i++)
                want += (long)inner_in[k + i] * inner_in[k + i];
            EXPECT_EQ(status[k], 0);
            EXPECT_EQ(out[k], want);
        }
    }
    free(inner_in);
    free(idx);
    free(out);
    free(status);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* Items i with i % 7 == 3 fail with EDOM, i % 11 == 5 with ERANGE. */
static int
failing_fn(const void *in, void *out, void *ctx)
{
    size_t i = *(const size_t *)in;

    atomic_fetch_add_explicit((atomic_size_t *)ctx, 1, memory_order_relaxed);
    *(size_t *)out = i + 1;
    if (i % 7 == 3)
        return EDOM;
    if (i % 11 == 5)
        return ERANGE;
    return 0;
}

static void
failing_run(ws_pool *pool, size_t n, size_t first, bool with_status)
{
    size_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    int *status = malloc(n * sizeof *status);

    for (size_t i = 0; i < n; i++)
        in[i] = first + i;
    for (size_t c = 0; c < NCHUNKS; c++) {
        atomic_size_t calls = 0;
        ws_map m = {.fn = failing_fn,
                    .in = in,
                    .in_size = sizeof *in,
                    .out = out,
                    .out_size = sizeof *out,
                    .n = n,
                    .ctx = &calls,
                    .chunk = chunks[c],
                    .status = with_status ? status : NULL};
        int want = 0;
        for (size_t i = 0; i < n && want == 0; i++)
            want = (first + i) % 7 == 3 ? EDOM
                   : (first + i) % 11 == 5 ? ERANGE
                                           : 0;
        memset(status, 0x55, n * sizeof *status);
        ck_assert_int_eq(ws_parallel_map(pool, &m), want);
        /* Every item ran, failing or not. */
        ck_assert_uint_eq(atomic_load(&calls), n);
        for (size_t i = 0; i < n; i++) {
            size_t v = first + i;
            EXPECT_EQ(out[i], v + 1);
            if (with_status)
                EXPECT_EQ(status[i], v % 7 == 3    ? EDOM
                                     : v % 11 == 5 ? ERANGE
                                                   : 0);
            else
                EXPECT_EQ(status[i], 0x55555555);
        }
    }
    free(in);
    free(out);
    free(status);
}

START_TEST(test_loop_map_item_errors)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);

    /* First failure EDOM at index 3; then ERANGE first (5 % 11). */
    failing_run(pool, 10007, 0, true);
    failing_run(pool, 10007, 0, false);
    failing_run(pool, 1009, 5, true);
    failing_run(pool, 1009, 5, false);
    /* No failing item at all. */
    failing_run(pool, 3, 0, true);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* ------------------------------------------------------------- reduce */

static void
sum_fold(size_t b, size_t e, void *acc, void *ctx)
{
    uint64_t s = *(uint64_t *)acc;

    (void)ctx;
    for (size_t i = b; i < e; i++)
        s += i;
    *(uint64_t *)acc = s;
}

static void
sum_combine(void *acc, const void *other, void *ctx)
{
    (void)ctx;
    *(uint64_t *)acc += *(const uint64_t *)other;
}

START_TEST(test_loop_reduce_sum)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    const uint64_t zero = 0;

    for (size_t s = 0; s < NSIZES; s++)
        for (size_t g = 0; g < NGRAINS; g++) {
            size_t b = 1000 * g, n = sizes[s];
            uint64_t res = 12345;
            ws_reduce r = {.begin = b,
                           .end = b + n,
                           .grain = grains[g],
                           .body = sum_fold,
                           .combine = sum_combine,
                           .identity = &zero,
                           .result = &res,
                           .size = sizeof res};
            ck_assert_int_eq(ws_parallel_reduce(pool, &r), 0);
            ck_assert_uint_eq(res, (uint64_t)n * b + (uint64_t)n * (n - 1) / 2);
        }
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/*
 * Non-commutative accumulators.  poly: the polynomial hash of the sequence
 * f(begin), ..., f(end - 1), combined as h = h_left * p_right + h_right.
 * span: the interval folded so far; combining non-adjacent intervals, or in
 * the wrong order, marks it bad.
 */
struct ordered {
    uint64_t h, p;
    size_t   lo, hi;
    int      empty, bad;
};

#define POLY_B 1000003u

static uint64_t
poly_f(size_t i)
{
    return (uint64_t)i * 0x9e3779b97f4a7c15u ^ (i >> 3);
}

static void
ordered_fold(size_t b, size_t e, void *acc, void *ctx)
{
    struct ordered *a = acc;

    (void)ctx;
    for (size_t i = b; i < e; i++) {
        a->h = a->h * POLY_B + poly_f(i);
        a->p *= POLY_B;
    }
    if (a->empty) {
        a->lo = b;
        a->hi = e;
        a->empty = 0;
    } else if (a->hi == b) {
        a->hi = e;
    } else {
        a->bad = 1;
    }
}

static void
ordered_combine(void *acc, const void *other, void *ctx)
{
    struct ordered *a = acc;
    const struct ordered *o = other;

    (void)ctx;
    a->h = a->h * o->p + o->h;
    a->p *= o->p;
    a->bad |= o->bad;
    if (o->empty)
        return;
    if (a->empty) {
        a->lo = o->lo;
        a->hi = o->hi;
        a->empty = 0;
    } else if (a->hi == o->lo) {
        a->hi = o->hi;
    } else {
        a->bad = 1;
    }
}

static const struct ordered ordered_identity = {.h = 0, .p = 1, .empty = 1};

static void
ordered_check(ws_pool *pool, size_t b, size_t n, size_t grain)
{
    struct ordered res, want = ordered_identity;
    ws_reduce r = {.begin = b,
                   .end = b + n,
                   .grain = grain,
                   .body = ordered_fold,
                   .combine = ordered_combine,
                   .identity = &ordered_identity,
                   .result = &res,
                   .size = sizeof res};

    if (n)
        ordered_fold(b, b + n, &want, NULL);
    memset(&res, 0xff, sizeof res);
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), 0);
    ck_assert_int_eq(res.bad, 0);
    ck_assert_int_eq(res.empty, n == 0);
    if (n) {
        ck_assert_uint_eq(res.lo, b);
        ck_assert_uint_eq(res.hi, b + n);
    }
    ck_assert_uint_eq(res.h, want.h);
    ck_assert_uint_eq(res.p, want.p);
}

START_TEST(test_loop_reduce_noncommutative)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);

    for (size_t s = 0; s < NSIZES; s++)
        for (size_t g = 0; g < NGRAINS; g++)
            ordered_check(pool, 77, sizes[s], grains[g]);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* A 4 KiB accumulator (allocated per piece): a histogram plus a span. */
#define HBINS 510

struct histo {
    uint64_t bin[HBINS];
    size_t   lo, hi;
    uint64_t empty, bad;
};

static void
histo_fold(size_t b, size_t e, void *acc, void *ctx)
{
    struct histo *a = acc;

    (void)ctx;
    for (size_t i = b; i < e; i++)
        a->bin[(i * i) % HBINS]++;
    if (a->empty) {
        a->lo = b;
        a->empty = 0;
    } else if (a->hi != b) {
        a->bad = 1;
    }
    a->hi = e;
}

static void
histo_combine(void *acc, const void *other, void *ctx)
{
    struct histo *a = acc;
    const struct histo *o = other;

    (void)ctx;
    for (size_t k = 0; k < HBINS; k++)
        a->bin[k] += o->bin[k];
    a->bad |= o->bad;
    if (o->empty)
        return;
    if (a->empty) {
        a->lo = o->lo;
        a->empty = 0;
    } else if (a->hi != o->lo) {
        a->bad = 1;
    }
    a->hi = o->hi;
}

START_TEST(test_loop_reduce_big_accumulator)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    struct histo *id = calloc(1, sizeof *id), *res = malloc(sizeof *res),
                 *want = calloc(1, sizeof *want);
    size_t n = 100003;

    _Static_assert(sizeof(struct histo) > 4000, "a big accumulator");
    id->empty = 1;
    want->empty = 1;
    histo_fold(3, 3 + n, want, NULL);
    for (size_t g = 0; g < NGRAINS; g++) {
        ws_reduce r = {.begin = 3,
                       .end = 3 + n,
                       .grain = grains[g],
                       .body = histo_fold,
                       .combine = histo_combine,
                       .identity = id,
                       .result = res,
                       .size = sizeof *res};
        ck_assert_int_eq(ws_parallel_reduce(pool, &r), 0);
        ck_assert_int_eq(memcmp(res, want, sizeof *res), 0);
    }
    free(id);
    free(res);
    free(want);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

START_TEST(test_loop_reduce_in_place)
{
    /* identity and result may be the same object. */
    ws_pool *pool = pool_make(pool_sizes[_i]);
    struct histo *h = calloc(1, sizeof *h), *want = calloc(1, sizeof *want);
    uint64_t s = 5;
    ws_reduce r = {.begin = 0,
                   .end = 1000,
                   .body = sum_fold,
                   .combine = sum_combine,
                   .identity = &s,
                   .result = &s,
                   .size = sizeof s};

    ck_assert_int_eq(ws_parallel_reduce(pool, &r), 0);
    /* The identity is folded into every piece: 5 once per piece. */
    ck_assert_uint_eq((s - 1000 * 999 / 2) % 5, 0);
    ck_assert_uint_ge(s, 1000 * 999 / 2 + 5);

    h->empty = want->empty = 1;
    histo_fold(0, 50000, want, NULL);
    r = (ws_reduce){.begin = 0,
                    .end = 50000,
                    .grain = 100,
                    .body = histo_fold,
                    .combine = histo_combine,
                    .identity = h,
                    .result = h,
                    .size = sizeof *h};
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), 0);
    ck_assert_int_eq(memcmp(h, want, sizeof *h), 0);
    free(h);
    free(want);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* ------------------------------------------------------------- errors */

static void
never_body(size_t b, size_t e, void *ctx)
{
    (void)b;
    (void)e;
    atomic_store((atomic_int *)ctx, 1);
}

START_TEST(test_loop_for_einval)
{
    ws_pool *pool = pool_make(2);
    atomic_int ran = 0;

    ck_assert_int_eq(ws_parallel_for(NULL, 0, 10, 0, never_body, &ran),
                     EINVAL);
    ck_assert_int_eq(ws_parallel_for(pool, 0, 10, 0, NULL, &ran), EINVAL);
    ck_assert_int_eq(ws_parallel_for(pool, 11, 10, 0, never_body, &ran),
                     EINVAL);
    ck_assert_int_eq(ws_parallel_for(pool, SIZE_MAX, 0, 1, never_body, &ran),
                     EINVAL);
    ck_assert_int_eq(ws_parallel_for(pool, 10, 10, 0, never_body, &ran), 0);
    ck_assert_int_eq(ws_parallel_for(pool, 0, 0, 5, never_body, &ran), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

static int
never_fn(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    atomic_store((atomic_int *)ctx, 1);
    return 0;
}

START_TEST(test_loop_map_einval)
{
    ws_pool *pool = pool_make(2);
    atomic_int ran = 0;
    int in[4] = {1, 2, 3, 4}, out[4] = {0}, status[4] = {7, 7, 7, 7};
    ws_map ok = {.fn = never_fn,
                 .in = in,
                 .in_size = sizeof in[0],
                 .out = out,
                 .out_size = sizeof out[0],
                 .n = 4,
                 .ctx = &ran,
                 .status = status};
    ws_map m;

    ck_assert_int_eq(ws_parallel_map(NULL, &ok), EINVAL);
    ck_assert_int_eq(ws_parallel_map(pool, NULL), EINVAL);
    m = ok, m.fn = NULL;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.in = NULL;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.out = NULL;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.in_size = 0;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.out_size = 0;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.n = SIZE_MAX / 2 + 1, m.in_size = 2;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.n = SIZE_MAX / 8 + 1, m.out_size = 8;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    m = ok, m.n = SIZE_MAX / 3, m.in_size = 1, m.out_size = 1;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL); /* status */
    m = ok, m.in_size = 0, m.n = 0;
    ck_assert_int_eq(ws_parallel_map(pool, &m), EINVAL);
    /* Bad input changed nothing. */
    ck_assert_int_eq(atomic_load(&ran), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(out[i], 0);
        ck_assert_int_eq(status[i], 7);
    }
    /* Zero items: nothing runs, NULL buffers allowed. */
    m = ok, m.n = 0, m.in = NULL, m.out = NULL;
    ck_assert_int_eq(ws_parallel_map(pool, &m), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    /* The same checks, for the process version. */
    ck_assert_int_eq(ws__loop_map_check(&ok), 0);
    ck_assert_int_eq(ws__loop_map_check(NULL), EINVAL);
    m = ok, m.n = SIZE_MAX, m.in_size = 1, m.out_size = 1, m.status = NULL;
    ck_assert_int_eq(ws__loop_map_check(&m), 0);
    m.out_size = 2;
    ck_assert_int_eq(ws__loop_map_check(&m), EINVAL);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

static void
never_fold(size_t b, size_t e, void *acc, void *ctx)
{
    (void)b;
    (void)e;
    (void)acc;
    atomic_store((atomic_int *)ctx, 1);
}

START_TEST(test_loop_reduce_einval)
{
    ws_pool *pool = pool_make(2);
    atomic_int ran = 0;
    uint64_t id = 42, res = 7;
    ws_reduce ok = {.begin = 0,
                    .end = 100,
                    .body = never_fold,
                    .combine = sum_combine,
                    .ctx = &ran,
                    .identity = &id,
                    .result = &res,
                    .size = sizeof res};
    ws_reduce r;

    ck_assert_int_eq(ws_parallel_reduce(NULL, &ok), EINVAL);
    ck_assert_int_eq(ws_parallel_reduce(pool, NULL), EINVAL);
    r = ok, r.body = NULL;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), EINVAL);
    r = ok, r.combine = NULL;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), EINVAL);
    r = ok, r.identity = NULL;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), EINVAL);
    r = ok, r.result = NULL;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), EINVAL);
    r = ok, r.size = 0;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), EINVAL);
    r = ok, r.begin = 101;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), EINVAL);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_uint_eq(res, 7);
    /* An empty range: the result is the identity. */
    r = ok, r.begin = r.end = 100;
    ck_assert_int_eq(ws_parallel_reduce(pool, &r), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_uint_eq(res, 42);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

START_TEST(test_loop_echild)
{
    /* In a forked child the parent's pool answers ECHILD. */
    ws_pool *pool = pool_make(2);
    atomic_int ran = 0;
    int st;

    ck_assert_int_eq(ws_parallel_for(pool, 0, 1000, 0, never_body, &ran), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int code = 0, in = 1, out;
        uint64_t id = 0, res;
        atomic_int flag = 0;
        ws_map m = {.fn = never_fn,
                    .in = &in,
                    .in_size = sizeof in,
                    .out = &out,
                    .out_size = sizeof out,
                    .n = 1,
                    .ctx = &flag};
        ws_reduce r = {.begin = 0,
                       .end = 10,
                       .body = sum_fold,
                       .combine = sum_combine,
                       .identity = &id,
                       .result = &res,
                       .size = sizeof res};
        if (ws_parallel_for(pool, 0, 10, 0, never_body, &flag) != ECHILD)
            code |= 1;
        if (ws_parallel_map(pool, &m) != ECHILD)
            code |= 2;
        if (ws_parallel_reduce(pool, &r) != ECHILD)
            code |= 4;
        if (atomic_load(&flag))
            code |= 8;
        _exit(code);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* -------------------------------------------------------- concurrency */

/* Counts the calls of body and the indices they cover. */
struct split_count {
    atomic_size_t calls, items;
};

static void
split_count_body(size_t b, size_t e, void *ctx)
{
    struct split_count *c = ctx;

    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_add(&c->items, e - b);
}

START_TEST(test_loop_for_splits_for_thieves)
{
    /*
     * With more than one worker, an adaptive loop starts as about one piece
     * per worker, halving down to single indices: a two-index loop offers
     * its second index to a thief instead of running both in one call.
     */
    ws_pool *pool = pool_make(pool_sizes[1 + _i % (NPOOLS - 1)]);

    for (size_t n = 2; n <= 4; n++) {
        struct split_count c = {0};
        ck_assert_int_eq(
            ws_parallel_for(pool, 10, 10 + n, 0, split_count_body, &c), 0);
        ck_assert_uint_eq(atomic_load(&c.items), n);
        if (n == 2)
            ck_assert_uint_eq(atomic_load(&c.calls), 2);
        else
            ck_assert_uint_ge(atomic_load(&c.calls), 2);
    }
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

struct caller {
    ws_pool  *pool;
    unsigned  seed;
    int       failed;
    pthread_t tid;
};

static unsigned
rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* One thread's share: mixed loops with exact checks. */
static void *
caller_main(void *arg)
{
    struct caller *c = arg;
    size_t rounds = 40 * scale();

    for (size_t k = 0; k < rounds && !c->failed; k++) {
        size_t n = rnd(&c->seed) % 5000, g = rnd(&c->seed) % 3 ? 0 : 1 + n / 7;
        size_t b = rnd(&c->seed) % 100;
        struct visit v = {.begin = b, .end = b + n, .grain = g};
        v.hits = calloc(n + 1, 1);
        if (ws_parallel_for(c->pool, b, b + n, g, visit_body, &v) != 0 ||
            atomic_load(&v.bad))
            c->failed = 1;
        for (size_t i = 0; i < n; i++)
            if (atomic_load(&v.hits[i]) != 1)
                c->failed = 2;
        free(v.hits);

        struct ordered res, want = ordered_identity;
        ws_reduce r = {.begin = b,
                       .end = b + n,
                       .grain = g,
                       .body = ordered_fold,
                       .combine = ordered_combine,
                       .identity = &ordered_identity,
                       .result = &res,
                       .size = sizeof res};
        if (n)
            ordered_fold(b, b + n, &want, NULL);
        if (ws_parallel_reduce(c->pool, &r) != 0 || res.h != want.h ||
            res.bad)
            c->failed = 3;

        int *in = malloc((n + 1) * sizeof *in);
        long *out = malloc((n + 1) * sizeof *out);
        for (size_t i = 0; i < n; i++)
            in[i] = (int)(i + b);
        ws_map m = {.fn = square_int,
                    .in = in,
                    .in_size = sizeof *in,
                    .out = out,
                    .out_size = sizeof *out,
                    .n = n,
                    .chunk = g};
        if (ws_parallel_map(c->pool, &m) != 0)
            c->failed = 4;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)(i + b) * (long)(i + b))
                c->failed = 5;
        free(in);
        free(out);
    }
    return NULL;
}

START_TEST(test_loop_concurrent_callers)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    struct caller c[8];

    for (unsigned t = 0; t < 8; t++) {
        c[t] = (struct caller){.pool = pool, .seed = t * 7919 + 1};
        ck_assert_int_eq(pthread_create(&c[t].tid, NULL, caller_main, &c[t]),
                         0);
    }
    for (unsigned t = 0; t < 8; t++) {
        pthread_join(c[t].tid, NULL);
        ck_assert_int_eq(c[t].failed, 0);
    }
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

/* Loops run from tasks: the pool's own (nested) and another pool's. */
struct from_task {
    struct caller c;
};

static void
from_task_run(void *arg)
{
    struct from_task *t = arg;

    caller_main(&t->c);
}

START_TEST(test_loop_from_tasks)
{
    ws_pool *pool = pool_make(pool_sizes[_i]), *other = pool_make(2);
    struct from_task t[12];
    ws_group g;

    ws_group_init(&g, pool);
    for (unsigned k = 0; k < 12; k++) {
        t[k].c = (struct caller){.pool = k % 3 ? pool : other, .seed = k + 5};
        ck_assert_int_eq(ws_spawn(&g, from_task_run, &t[k]), 0);
    }
    ck_assert_int_eq(ws_sync(&g), 0);
    for (unsigned k = 0; k < 12; k++)
        ck_assert_int_eq(t[k].c.failed, 0);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
    ck_assert_int_eq(ws_pool_destroy(other), 0);
}
END_TEST

/* ------------------------------------------------------------- stress */

START_TEST(test_loop_for_large)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    size_t n = 10000000 * scale();

    visit_check(pool, 3, n, 0);
    visit_check(pool, 3, n / 10, 1);
    visit_check(pool, 3, n, 4093);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

static int
square_double(const void *in, void *out, void *ctx)
{
    double x = *(const double *)in;

    (void)ctx;
    *(double *)out = x * x;
    return 0;
}

START_TEST(test_loop_map_large)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    size_t n = 10000000 * scale();
    double *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);

    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n; i++)
        in[i] = (double)i * 0.5 - 1e6;
    for (size_t c = 0; c < 2; c++) {
        ws_map m = {.fn = square_double,
                    .in = in,
                    .in_size = sizeof *in,
                    .out = out,
                    .out_size = sizeof *out,
                    .n = n,
                    .chunk = c * 10000};
        memset(out, 0, n * sizeof *out);
        ck_assert_int_eq(ws_parallel_map(pool, &m), 0);
        for (size_t i = 0; i < n; i++)
            EXPECT(out[i] == in[i] * in[i]);
    }
    free(in);
    free(out);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

START_TEST(test_loop_reduce_large)
{
    ws_pool *pool = pool_make(pool_sizes[_i]);
    size_t n = 10000000 * scale();

    ordered_check(pool, 11, n, 0);
    ordered_check(pool, 11, n, 65536);
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

START_TEST(test_loop_many_small)
{
    /* Many short loops: start-up and wind-down races. */
    ws_pool *pool = pool_make(pool_sizes[_i]);
    unsigned seed = 99;
    size_t rounds = 3000 * scale();

    for (size_t k = 0; k < rounds; k++) {
        size_t n = rnd(&seed) % 40, g = rnd(&seed) % 4;
        visit_check(pool, k, n, g);
        ordered_check(pool, k, n, g);
    }
    ck_assert_int_eq(ws_pool_destroy(pool), 0);
}
END_TEST

static Suite *
loop_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc;

    tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_loop_for_sizes, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_for_range_top, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_for_nested, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_map_sizes, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_map_odd_item_sizes, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_map_nested, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_map_item_errors, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_reduce_sum, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_reduce_noncommutative, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_reduce_big_accumulator, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_reduce_in_place, 0, NPOOLS);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loop_for_einval);
    tcase_add_test(tc, test_loop_map_einval);
    tcase_add_test(tc, test_loop_reduce_einval);
    tcase_add_test(tc, test_loop_echild);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_loop_for_splits_for_thieves, 0, NPOOLS - 1);
    tcase_add_loop_test(tc, test_loop_concurrent_callers, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_from_tasks, 0, NPOOLS);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_loop_for_large, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_map_large, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_reduce_large, 0, NPOOLS);
    tcase_add_loop_test(tc, test_loop_many_small, 0, NPOOLS);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(loop_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
