/*
 * Executor promises that need a search or a count of wake-ups:
 *
 *   quiet_run     a thread blocked in ws_run is not woken each time a
 *                 future of the pool completes;
 *   destroy_done  ws_completion_destroy never answers EBUSY for a future
 *                 that ws_future_done already calls done, even when the
 *                 future completes while ws_completion_add registers it.
 *                 The window is narrow (about 1 round in 75000 before it
 *                 was closed, more often under ThreadSanitizer); the case
 *                 searches for at most 10^6 rounds or 20 seconds.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <wsched.h>

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *
nothing(void *arg)
{
    return arg;
}

struct churn {
    ws_pool *pool;
    long n;
};

/* n submit-and-get round trips on the calling worker. */
static void
churn(void *arg)
{
    struct churn *c = arg;
    for (long i = 0; i < c->n; i++) {
        ws_future *f = NULL;
        if (ws_submit(c->pool, nothing, NULL, &f) != 0 ||
            ws_future_get(f, NULL) != 0)
            abort();
        ws_future_release(f);
    }
}

/*
 * ws_run: a thread that is not a worker blocks without spinning until fn
 * has returned.  While fn makes 20000 futures complete, the caller should
 * sleep but for its wait's re-checks (every 100 ms): counted in voluntary
 * context switches, with room for 20 a second.
 */
START_TEST(test_future_quiet_run)
{
    ws_pool *p = NULL;
    ws_pool_opts o = {.workers = 2, .bind = WS_BIND_NONE};
    struct churn c = {NULL, 20000};
    struct rusage r0, r1;

    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    c.pool = p;
    getrusage(RUSAGE_THREAD, &r0);
    double t0 = now();
    ck_assert_int_eq(ws_run(p, churn, &c), 0);
    double seconds = now() - t0;
    getrusage(RUSAGE_THREAD, &r1);
    long switches = r1.ru_nvcsw - r0.ru_nvcsw;
    long allowed = 20 + (long)(20 * seconds);
    ck_assert_msg(switches <= allowed,
                  "woken %ld times in %.2f s (allowed %ld)", switches, seconds,
                  allowed);
    ck_assert_int_eq(ws_pool_destroy(p), 0);
}
END_TEST

/*
 * ws_completion_destroy answers EBUSY only while an added future is not
 * done: never once ws_future_done has said it is.
 */
START_TEST(test_future_destroy_done)
{
    ws_pool *p = NULL;
    ws_pool_opts o = {.workers = 3, .bind = WS_BIND_NONE};
    double end = now() + 20;
    long i = 0;
    int err = 0;

    ck_assert_int_eq(ws_pool_create(&p, &o), 0);
    for (; i < 1000000 && err == 0 && now() < end; i++) {
        ws_completion *c = NULL;
        ws_future *f = NULL;
        ck_assert_int_eq(ws_completion_create(&c), 0);
        ck_assert_int_eq(ws_submit(p, nothing, NULL, &f), 0);
        ck_assert_int_eq(ws_completion_add(c, f), 0);
        while (!ws_future_done(f))
            ;
        err = ws_completion_destroy(c);
        if (err == EBUSY) { /* take f back, then the queue may go */
            ws_future *out = NULL;
            ck_assert_int_eq(ws_completion_next(c, WS_FOREVER, &out), 0);
            ck_assert_int_eq(ws_completion_destroy(c), 0);
        }
        ws_future_release(f);
    }
    ck_assert_int_eq(ws_pool_destroy(p), 0);
    ck_assert_msg(err == 0, "destroy: %d for a done future in round %ld", err,
                  i);
}
END_TEST

static Suite *
future_known_suite(void)
{
    Suite *s = suite_create("future_quiet");
    TCase *tc = tcase_create("concurrency");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_future_quiet_run);
    tcase_add_test(tc, test_future_destroy_done);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(future_known_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
