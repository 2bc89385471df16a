/*
 * Deque tests: order, growth, and one owner racing several thieves, with
 * every task id checked to come out exactly once.
 *
 * The stress cases use the shapes that catch a missing fence: the owner
 * pushes two and takes two (so takes often meet thieves on the last task),
 * with every push shared at once (a plain Chase-Lev deque: each take runs
 * the fenced path), and the split mode where thieves must ask for work.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "deque.h"

static long
scale(long n)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    double f = s != NULL ? atof(s) : 1.0;
    long v = (long)((double)n * (f > 0 ? f : 1.0));
    return v > 0 ? v : 1;
}

static void
pin(int i)
{
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_ZERO(&set);
    CPU_SET((int)(i % (n > 0 ? n : 1)), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void
nop(void *arg)
{
    (void)arg;
}

START_TEST(test_deque_lifo_owner)
{
    ws__deque d;
    ws__task t;

    ck_assert_int_eq(ws__deque_init(&d, 16), 0);
    ck_assert(!ws__deque_pop(&d, &t)); /* empty: no underflow */
    for (uintptr_t i = 1; i <= 10; i++)
        ck_assert(ws__deque_push(&d, nop, (void *)i, i * 8));
    for (uintptr_t i = 10; i >= 1; i--) {
        ck_assert(ws__deque_pop(&d, &t));
        ck_assert_ptr_eq(t.arg, (void *)i);
        ck_assert_uint_eq(t.grp, i * 8);
        ck_assert(t.fn == nop);
    }
    ck_assert(!ws__deque_pop(&d, &t));
    ck_assert(!ws__deque_pop(&d, &t));
    ck_assert(ws__deque_push(&d, nop, (void *)1, 0));
    ck_assert(ws__deque_pop(&d, &t));
    ws__deque_destroy(&d);
}
END_TEST

START_TEST(test_deque_fifo_thief)
{
    ws__deque d;
    ws__task t;

    ck_assert_int_eq(ws__deque_init(&d, 8), 0);
    /* Private tasks are invisible to thieves until shared. */
    for (uintptr_t i = 0; i < 6; i++)
        ck_assert(ws__deque_push(&d, nop, (void *)i, 0));
    ck_assert_int_eq(ws__deque_steal(&d, &t), WS_STEAL_EMPTY);
    ck_assert(ws__deque_requested(&d));
    ck_assert(ws__deque_share(&d)); /* the older half: 0, 1, 2 */
    ck_assert(!ws__deque_requested(&d));
    for (uintptr_t i = 0; i < 3; i++) {
        ck_assert_int_eq(ws__deque_steal(&d, &t), WS_STEAL_OK);
        ck_assert_ptr_eq(t.arg, (void *)i);
    }
    ck_assert_int_eq(ws__deque_steal(&d, &t), WS_STEAL_EMPTY);
    /* The owner still has 5, 4, 3. */
    for (uintptr_t i = 5; i >= 3; i--) {
        ck_assert(ws__deque_pop(&d, &t));
        ck_assert_ptr_eq(t.arg, (void *)i);
    }
    ck_assert(!ws__deque_pop(&d, &t));
    ws__deque_destroy(&d);
}
END_TEST

START_TEST(test_deque_share_all)
{
    ws__deque d;
    ws__task t;

    ck_assert_int_eq(ws__deque_init(&d, 4), 0);
    ws__deque_share_all(&d, true);
    for (uintptr_t i = 0; i < 3; i++)
        ck_assert(ws__deque_push(&d, nop, (void *)i, 0));
    ck_assert(ws__deque_stealable(&d));
    ck_assert_int_eq(ws__deque_steal(&d, &t), WS_STEAL_OK);
    ck_assert_ptr_eq(t.arg, (void *)0);
    ck_assert(ws__deque_pop(&d, &t));
    ck_assert_ptr_eq(t.arg, (void *)2);
    ck_assert(ws__deque_pop(&d, &t)); /* the last one: the CAS path */
    ck_assert_ptr_eq(t.arg, (void *)1);
    ck_assert(!ws__deque_pop(&d, &t));
    ck_assert_int_eq(ws__deque_steal(&d, &t), WS_STEAL_EMPTY);
    ws__deque_destroy(&d);
}
END_TEST

START_TEST(test_deque_grow)
{
    ws__deque d;
    ws__task t;
    const uintptr_t n = 10000;

    ck_assert_int_eq(ws__deque_init(&d, 2), 0);
    for (uintptr_t i = 0; i < n; i++) {
        ck_assert(ws__deque_push(&d, nop, (void *)i, 0));
        if (i % 7 == 0)
            ws__deque_share(&d);
    }
    /* Thieves take the oldest, in order, across the grown arrays. */
    uintptr_t next = 0;
    while (ws__deque_steal(&d, &t) == WS_STEAL_OK)
        ck_assert_ptr_eq(t.arg, (void *)next++);
    ck_assert_uint_gt(next, 0);
    for (uintptr_t i = n; i > next; i--) {
        ck_assert(ws__deque_pop(&d, &t));
        ck_assert_ptr_eq(t.arg, (void *)(i - 1));
    }
    ck_assert(!ws__deque_pop(&d, &t));
    ws__deque_destroy(&d);
}
END_TEST

START_TEST(test_deque_init_einval)
{
    ws__deque d;
    ck_assert_int_eq(ws__deque_init(&d, 0), EINVAL);
    ck_assert_int_eq(ws__deque_init(&d, 3), EINVAL);
    ck_assert_int_eq(ws__deque_init(&d, 1), EINVAL);
}
END_TEST

/* ---- one owner, several thieves ---- */

enum { THIEVES = 3 };

struct race {
    ws__deque d;
    long n;                 /* task ids 0..n-1 */
    atomic_uchar *seen;     /* times each id came out */
    atomic_int done;        /* the owner has finished */
    atomic_long stolen;
    atomic_long bad;        /* records that were not ours */
    int shape;              /* 0: push2/take2, 1: burst push then drain */
};

/*
 * Hot loops check without ck_assert: each passing Check assertion costs a
 * write to the runner, which would dwarf the deque operations.
 */
static void
take(struct race *r, const ws__task *t)
{
    uintptr_t id = (uintptr_t)t->arg;
    if (t->fn != nop || id >= (uintptr_t)r->n) {
        atomic_fetch_add_explicit(&r->bad, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&r->seen[id], 1, memory_order_relaxed);
}

static void *
thief(void *arg)
{
    struct race *r = arg;
    ws__task t;
    long mine = 0;

    pin(1);
    while (!atomic_load_explicit(&r->done, memory_order_acquire) ||
           ws__deque_stealable(&r->d)) {
        int s = ws__deque_steal(&r->d, &t);
        if (s == WS_STEAL_OK) {
            take(r, &t);
            mine++;
        } else if (s == WS_STEAL_EMPTY) {
            sched_yield();
        }
    }
    atomic_fetch_add(&r->stolen, mine);
    return NULL;
}

static void
owner_run(struct race *r)
{
    ws__task t;
    long id = 0;

    pin(0);
    while (id < r->n) {
        int burst = r->shape == 0 ? 2 : 1 + (int)(id % 61);
        int pushed = 0;
        for (; pushed < burst && id < r->n; pushed++, id++)
            if (!ws__deque_push(&r->d, nop, (void *)(uintptr_t)id, 0))
                atomic_fetch_add_explicit(&r->bad, 1, memory_order_relaxed);
        if (ws__deque_requested(&r->d))
            ws__deque_share(&r->d);
        for (int k = 0; k < pushed; k++) {
            if (!ws__deque_pop(&r->d, &t))
                break;
            take(r, &t);
        }
    }
    while (ws__deque_pop(&r->d, &t))
        take(r, &t);
    atomic_store_explicit(&r->done, 1, memory_order_release);
}

static void
race(long n, int shape, bool share_all, int64_t capacity)
{
    struct race *r = calloc(1, sizeof *r);
    pthread_t th[THIEVES];

    ck_assert_ptr_nonnull(r);
    r->n = n;
    r->shape = shape;
    r->seen = calloc((size_t)n, sizeof *r->seen);
    ck_assert_ptr_nonnull(r->seen);
    ck_assert_int_eq(ws__deque_init(&r->d, capacity), 0);
    ws__deque_share_all(&r->d, share_all);
    for (int i = 0; i < THIEVES; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, thief, r), 0);
    owner_run(r);
    for (int i = 0; i < THIEVES; i++)
        pthread_join(th[i], NULL);
    long lost = 0, twice = 0;
    for (long i = 0; i < n; i++) {
        unsigned c = atomic_load(&r->seen[i]);
        lost += c == 0;
        twice += c > 1;
    }
    ck_assert_msg(lost == 0 && twice == 0 && atomic_load(&r->bad) == 0,
                  "%ld of %ld tasks lost, %ld run twice, %ld bad records "
                  "(%ld stolen)",
                  lost, n, twice, atomic_load(&r->bad),
                  atomic_load(&r->stolen));
    ws__deque_destroy(&r->d);
    free(r->seen);
    free(r);
}

START_TEST(test_deque_race_chase_lev)
{
    /* Every task shared at once: each take is the fenced Chase-Lev path. */
    race(scale(10000000), 0, true, 1024);
}
END_TEST

START_TEST(test_deque_race_split)
{
    race(scale(2000000), 0, false, 1024);
}
END_TEST

START_TEST(test_deque_race_bursts)
{
    race(scale(1000000), 1, true, 1024);
}
END_TEST

START_TEST(test_deque_race_grow)
{
    /* Capacity 2: the array grows while thieves steal from it. */
    race(scale(500000), 1, true, 2);
}
END_TEST

static Suite *
deque_suite(void)
{
    Suite *s = suite_create("deque");
    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, test_deque_lifo_owner);
    tcase_add_test(tc, test_deque_fifo_thief);
    tcase_add_test(tc, test_deque_share_all);
    tcase_add_test(tc, test_deque_grow);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_deque_init_einval);
    suite_add_tcase(s, tc);
    tc = tcase_create("stress");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_deque_race_chase_lev);
    tcase_add_test(tc, test_deque_race_split);
    tcase_add_test(tc, test_deque_race_bursts);
    tcase_add_test(tc, test_deque_race_grow);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(deque_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
