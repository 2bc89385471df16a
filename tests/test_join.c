/*
 * ws_join: exact results with more workers than cores, groups and joins
 * mixed, the sequential fallback outside workers, and bad input.
 */
#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <wsched.h>

struct fib {
    int n;
    long r;
};

static void
fib(void *arg)
{
    struct fib *f = arg;
    if (f->n < 2) {
        f->r = f->n;
        return;
    }
    struct fib a = {f->n - 1, 0}, b = {f->n - 2, 0};
    ck_assert_int_eq(ws_join(fib, &a, fib, &b), 0);
    f->r = a.r + b.r;
}

static long
fib_seq(int n)
{
    return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static ws_pool *
pool_of(unsigned workers)
{
    ws_pool *p;
    ws_pool_opts o = {workers, WS_BIND_NONE, NULL};
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    return p;
}

START_TEST(test_join_fib)
{
    static const unsigned workers[] = {1, 2, 4, 8};
    ws_pool *p = pool_of(workers[_i]);
    for (int n = 0; n <= 27; n += 9) {
        struct fib f = {n, -1};
        ck_assert_int_eq(ws_run(p, fib, &f), 0);
        ck_assert_int_eq(f.r, fib_seq(n));
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

/* Leaves of a tree of joins and groups, each counted exactly once. */
struct span {
    atomic_uchar *hits;
    size_t lo, hi;
};

static void span_run(void *arg);

static void
span_leaf(void *arg)
{
    struct span *s = arg;
    for (size_t i = s->lo; i < s->hi; i++)
        atomic_fetch_add(&s->hits[i], 1);
}

static void
span_run(void *arg)
{
    struct span *s = arg;
    if (s->hi - s->lo <= 4) {
        span_leaf(s);
        return;
    }
    size_t third = (s->hi - s->lo) / 3;
    struct span a = {s->hits, s->lo, s->lo + third};
    struct span b = {s->hits, s->lo + third, s->lo + 2 * third};
    struct span c = {s->hits, s->lo + 2 * third, s->hi};
    ws_group g;
    ws_group_init(&g, NULL);
    ck_assert_int_eq(ws_spawn(&g, span_run, &c), 0);
    ck_assert_int_eq(ws_join(span_run, &a, span_run, &b), 0);
    ck_assert_int_eq(ws_sync(&g), 0);
}

START_TEST(test_join_with_groups)
{
    const size_t n = 200003;
    struct span s = {calloc(n, 1), 0, n};
    ws_pool *p = pool_of(4);
    ck_assert_ptr_nonnull(s.hits);
    for (int round = 0; round < 5; round++) {
        ck_assert_int_eq(ws_run(p, span_run, &s), 0);
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(atomic_load(&s.hits[i]), round + 1);
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    free(s.hits);
}
END_TEST

/*
 * The second function syncs a group begun before the join, so its sync
 * runs the join's pushed child too: the join must not run it again.
 */
struct outer {
    ws_group *g;
    atomic_int a_runs, b_runs, spawned;
};

static void
count_a(void *arg)
{
    struct outer *o = arg;
    atomic_fetch_add(&o->a_runs, 1);
}

static void
spawned(void *arg)
{
    struct outer *o = arg;
    atomic_fetch_add(&o->spawned, 1);
}

static void
b_syncs_outer(void *arg)
{
    struct outer *o = arg;
    atomic_fetch_add(&o->b_runs, 1);
    ck_assert_int_eq(ws_sync(o->g), 0);
    /* And pushes a task of the outer group where the child was. */
    ck_assert_int_eq(ws_spawn(o->g, spawned, o), 0);
}

static void
outer_task(void *arg)
{
    struct outer *o = arg;
    ws_group g;
    ws_group_init(&g, NULL);
    o->g = &g;
    ck_assert_int_eq(ws_spawn(&g, spawned, o), 0);
    ck_assert_int_eq(ws_join(count_a, o, b_syncs_outer, o), 0);
    ck_assert_int_eq(ws_sync(&g), 0);
}

START_TEST(test_join_nonnested)
{
    ws_pool *p = pool_of(1);
    for (int i = 0; i < 100; i++) {
        struct outer o = {0};
        ck_assert_int_eq(ws_run(p, outer_task, &o), 0);
        ck_assert_int_eq(atomic_load(&o.a_runs), 1);
        ck_assert_int_eq(atomic_load(&o.b_runs), 1);
        ck_assert_int_eq(atomic_load(&o.spawned), 2);
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_join_outside_workers)
{
    struct fib f = {20, 0};
    fib(&f); /* main thread: sequential, same answer */
    ck_assert_int_eq(f.r, fib_seq(20));
}
END_TEST

START_TEST(test_join_einval)
{
    struct outer o = {0};
    ck_assert_int_eq(ws_join(NULL, &o, count_a, &o), EINVAL);
    ck_assert_int_eq(ws_join(count_a, &o, NULL, &o), EINVAL);
    ck_assert_int_eq(atomic_load(&o.a_runs), 0);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("join");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_join_fib, 0, 4);
    tcase_add_test(tc, test_join_outside_workers);
    suite_add_tcase(s, tc);
    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_join_with_groups);
    tcase_add_test(tc, test_join_nonnested);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_join_einval);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
