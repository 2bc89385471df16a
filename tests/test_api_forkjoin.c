/*
 * Fork-join end to end through the shared library and <wsched.h> alone:
 * fib and a tree sum, from the main thread and from several threads at
 * once, and the run-time version against the header's.
 */
#include <check.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <wsched.h>

static double
test_scale(void)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    double v = s != NULL ? strtod(s, NULL) : 1.0;
    return v > 0 ? v : 1.0;
}

static unsigned long
scaled(unsigned long n)
{
    double v = (double)n * test_scale();
    return v < 1 ? 1 : (unsigned long)v;
}

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
    ws_group g;
    ws_group_init(&g, NULL);
    ws_spawn(&g, fib, &a);
    fib(&b);
    ws_sync(&g);
    f->r = a.r + b.r;
}

static long
fib_seq(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long t = a + b;
        a = b;
        b = t;
    }
    return a;
}

/* A complete tree of the given fan-out; each node adds its own id. */
struct node {
    unsigned depth, fanout;
    unsigned long id;
    unsigned long sum;
};

static void
tree(void *arg)
{
    struct node *n = arg;
    struct node kids[8];
    ws_group g;

    n->sum = n->id;
    if (n->depth == 0)
        return;
    ws_group_init(&g, NULL);
    for (unsigned i = 0; i < n->fanout; i++) {
        kids[i] = (struct node){n->depth - 1, n->fanout,
                                n->id * n->fanout + i + 1, 0};
        ws_spawn(&g, tree, &kids[i]);
    }
    ws_sync(&g);
    for (unsigned i = 0; i < n->fanout; i++)
        n->sum += kids[i].sum;
}

START_TEST(test_api_forkjoin_fib)
{
    ws_pool_opts o = {.workers = 4, .bind = WS_BIND_NONE};
    ws_pool *p;
    unsigned long runs = scaled(2);

    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    ck_assert_uint_eq(ws_pool_size(p), 4);
    for (unsigned long i = 0; i < runs; i++) {
        struct fib f = {25, 0};
        ck_assert_int_eq(ws_run(p, fib, &f), 0);
        ck_assert_int_eq(f.r, fib_seq(25));
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);

    /* The default pool, as a program that passes no options gets. */
    ck_assert_int_eq(ws_pool_create(&p, NULL), 0);
    struct fib f = {22, 0};
    ck_assert_int_eq(ws_run(p, fib, &f), 0);
    ck_assert_int_eq(f.r, fib_seq(22));
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_api_forkjoin_tree_sum)
{
    ws_pool_opts o = {.workers = 3, .bind = WS_BIND_NONE};
    ws_pool *p;
    /* Ids are 0 .. nodes - 1, so the sum is nodes * (nodes - 1) / 2. */
    const unsigned depth = 7, fanout = 5;
    unsigned long nodes = 0, level = 1;

    for (unsigned d = 0; d <= depth; d++, level *= fanout)
        nodes += level;
    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    for (unsigned long i = 0; i < scaled(2); i++) {
        struct node root = {depth, fanout, 0, 0};
        ck_assert_int_eq(ws_run(p, tree, &root), 0);
        ck_assert_uint_eq(root.sum, nodes * (nodes - 1) / 2);
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

struct caller {
    ws_pool *pool;
    int rc;
    long r;
};

static void *
caller_main(void *arg)
{
    struct caller *c = arg;
    struct fib f = {20, 0};
    c->rc = ws_run(c->pool, fib, &f);
    c->r = f.r;
    return NULL;
}

START_TEST(test_api_forkjoin_callers)
{
    ws_pool_opts o = {.workers = 4, .bind = WS_BIND_NONE};
    struct caller c[6];
    pthread_t t[6];
    ws_pool *p;

    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    for (int i = 0; i < 6; i++) {
        c[i] = (struct caller){p, -1, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, caller_main, &c[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(c[i].rc, 0);
        ck_assert_int_eq(c[i].r, fib_seq(20));
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_api_forkjoin_version)
{
    unsigned v = ws_version();

    ck_assert_uint_eq(v >> 16, WS_VERSION_MAJOR);
    ck_assert_uint_eq(v >> 8 & 0xff, WS_VERSION_MINOR);
    ck_assert_uint_eq(v & 0xff, WS_VERSION_PATCH);
    ck_assert_uint_eq(v, (WS_VERSION_MAJOR << 16) | (WS_VERSION_MINOR << 8) |
                             WS_VERSION_PATCH);
}
END_TEST

START_TEST(test_api_forkjoin_einval)
{
    ws_group g;

    ck_assert_int_eq(ws_pool_create(NULL, NULL), EINVAL);
    ck_assert_int_eq(ws_pool_destroy(NULL), EINVAL);
    ck_assert_int_eq(ws_run(NULL, fib, NULL), EINVAL);
    ck_assert_uint_eq(ws_pool_size(NULL), 0);
    ck_assert_int_eq(ws_worker_index(), -1);
    /* Outside any worker, pool NULL leaves the group unusable. */
    ws_group_init(&g, NULL);
    ck_assert_int_eq(ws_spawn(&g, fib, NULL), EINVAL);
    ck_assert_int_eq(ws_sync(&g), EINVAL);
}
END_TEST

static Suite *
api_forkjoin_suite(void)
{
    Suite *s = suite_create("api_forkjoin");
    TCase *tc;

    tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_api_forkjoin_fib);
    tcase_add_test(tc, test_api_forkjoin_tree_sum);
    tcase_add_test(tc, test_api_forkjoin_version);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_api_forkjoin_einval);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_api_forkjoin_callers);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(api_forkjoin_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
