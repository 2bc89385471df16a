/*
 * Tests of the shared-memory SPSC ring (lib/ring.c): records, wrap-around
 * and pads, full and empty rings, rejection of counters and headers a
 * scribbling peer could write, and two processes moving records through
 * it, sleeping and waking each other on its futex words.
 */
#include <config.h>

#include "ring.h"
#include "shm.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned
scale(void)
{
    const char *s = getenv("WSCHED_TEST_SCALE");
    int v = s ? atoi(s) : 1;
    return v < 1 ? 1u : (unsigned)v;
}

/* A ring of cap bytes in a fresh shared region. */
struct fixture {
    struct ws__shm shm;
    struct ws__ring_shared *sh;
    unsigned char *data;
    uint64_t cap;
};

static void
fixture_init(struct fixture *f, uint64_t cap)
{
    ck_assert_int_eq(ws__shm_create(&f->shm, sizeof *f->sh + cap, 0, 0), 0);
    f->sh =
        (struct ws__ring_shared *)(void *)(f->shm.base + ws__shm_data_off());
    f->data = (unsigned char *)(f->sh + 1);
    f->cap = cap;
    ws__ring_init_shared(f->sh);
}

static void
ends(struct fixture *f, struct ws__ring_end *p, struct ws__ring_end *c,
     unsigned spin)
{
    ws__ring_end_init(p, f->sh, f->data, f->cap, spin);
    ws__ring_end_init(c, f->sh, f->data, f->cap, spin);
}

static int
push(struct ws__ring_end *p, uint32_t len, uint32_t tag, uint64_t user,
     unsigned char fill)
{
    void *buf;
    int r = ws__ring_reserve(p, len, &buf);
    if (r != 0)
        return r;
    memset(buf, fill, len);
    ws__ring_commit(p, tag, user);
    return 0;
}

static void
expect(struct ws__ring_end *c, uint32_t len, uint32_t tag, uint64_t user,
       unsigned char fill)
{
    struct ws__ring_msg m;
    ck_assert_int_eq(ws__ring_peek(c, &m), 0);
    ck_assert_uint_eq(m.len, len);
    ck_assert_uint_eq(m.tag, tag);
    ck_assert_uint_eq(m.user, user);
    ck_assert_uint_eq((uintptr_t)m.payload % WS__RING_ALIGN, 0);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < len; i++)
        bad += ((unsigned char *)m.payload)[i] != fill;
    ck_assert_uint_eq(bad, 0);
    ws__ring_release(c);
}

START_TEST(test_ring_push_pop)
{
    struct fixture f;
    struct ws__ring_end p, c;
    fixture_init(&f, 4096);
    ends(&f, &p, &c, 0);
    struct ws__ring_msg m;
    ck_assert_int_eq(ws__ring_peek(&c, &m), EAGAIN);
    ck_assert(!ws__ring_readable(&c));
    ck_assert_int_eq(push(&p, 0, 1, 10, 0), 0);
    ck_assert_int_eq(push(&p, 1, 2, 11, 0xa1), 0);
    ck_assert_int_eq(push(&p, 100, 3, 12, 0xb2), 0);
    ck_assert(ws__ring_readable(&c));
    expect(&c, 0, 1, 10, 0);
    expect(&c, 1, 2, 11, 0xa1);
    expect(&c, 100, 3, 12, 0xb2);
    ck_assert_int_eq(ws__ring_peek(&c, &m), EAGAIN);
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_wrap)
{
    struct fixture f;
    struct ws__ring_end p, c;
    fixture_init(&f, 1024);
    ends(&f, &p, &c, 0);
    /* Lengths that do not divide the buffer force pads at the end. */
    for (uint32_t i = 0; i < 2000; i++) {
        uint32_t len = (i * 37) % 300;
        ck_assert_int_eq(push(&p, len, 5, i, (unsigned char)i), 0);
        if (i % 2 == 1) {
            ck_assert_int_eq(push(&p, 7, 6, i, 0x77), 0);
            expect(&c, ((i - 1) * 37) % 300, 5, i - 1, (unsigned char)(i - 1));
            expect(&c, len, 5, i, (unsigned char)i);
            expect(&c, 7, 6, i, 0x77);
        }
    }
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_full)
{
    struct fixture f;
    struct ws__ring_end p, c;
    fixture_init(&f, 1024);
    ends(&f, &p, &c, 0);
    int n = 0;
    while (push(&p, 48, 1, (uint64_t)n, (unsigned char)n) == 0)
        n++;
    ck_assert_int_eq(n, 1024 / 64);
    ck_assert_int_eq(push(&p, 48, 1, 0, 0), EAGAIN);
    ck_assert_int_eq(ws__ring_wait_space(&p, 48, 0.0), ETIMEDOUT);
    expect(&c, 48, 1, 0, 0);
    ck_assert_int_eq(ws__ring_wait_space(&p, 48, 0.0), 0);
    ck_assert_int_eq(push(&p, 48, 1, 99, 9), 0);
    for (int i = 1; i < n; i++)
        expect(&c, 48, 1, (uint64_t)i, (unsigned char)i);
    expect(&c, 48, 1, 99, 9);
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_sizes)
{
    ck_assert_uint_eq(ws__ring_cap(0), 256);
    ck_assert_uint_eq(ws__ring_cap(257), 512);
    ck_assert_uint_eq(ws__ring_cap(4096), 4096);
    ck_assert_uint_eq(ws__ring_rec_size(0), 16);
    ck_assert_uint_eq(ws__ring_rec_size(1), 32);
    ck_assert_uint_eq(ws__ring_rec_size(16), 32);
    ck_assert_uint_eq(ws__ring_max_payload(1024), 512 - 16);

    struct fixture f;
    struct ws__ring_end p, c;
    fixture_init(&f, 1024);
    ends(&f, &p, &c, 0);
    void *buf;
    ck_assert_int_eq(ws__ring_reserve(&p, 512 - 15, &buf), EMSGSIZE);
    ck_assert_int_eq(ws__ring_wait_space(&p, 512 - 15, 0.0), EMSGSIZE);
    /*
     * The largest record fits at every offset of an empty ring: each
     * round moves the position by 16 + 512 bytes, which visits every
     * 16-byte offset of the buffer.
     */
    for (uint32_t i = 0; i < 128; i++) {
        ck_assert_int_eq(push(&p, 0, 1, i, 0), 0);
        expect(&c, 0, 1, i, 0);
        ck_assert_int_eq(push(&p, 512 - 16, 2, i, 2), 0);
        expect(&c, 512 - 16, 2, i, 2);
    }
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_next_payload)
{
    struct fixture f;
    struct ws__ring_end p, c;
    fixture_init(&f, 1024);
    ends(&f, &p, &c, 0);
    /* Wherever the ring stands, an unpublished record is where the
     * consumer predicts it. */
    for (uint32_t i = 0; i < 200; i++) {
        uint32_t len = (i * 53) % 400;
        void *buf;
        ck_assert_int_eq(ws__ring_reserve(&p, len, &buf), 0);
        ck_assert_ptr_eq(ws__ring_next_payload(&c, len), buf);
        memset(buf, (unsigned char)i, len);
        ws__ring_commit(&p, 1, i);
        expect(&c, len, 1, i, (unsigned char)i);
    }
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_peek_eproto)
{
    struct fixture f;
    struct ws__ring_end p, c;
    struct ws__ring_msg m;
    fixture_init(&f, 1024);

    /* head beyond the capacity */
    ends(&f, &p, &c, 0);
    atomic_store(&f.sh->head, 2048);
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);

    /* head not aligned */
    ws__ring_init_shared(f.sh);
    ends(&f, &p, &c, 0);
    atomic_store(&f.sh->head, 24);
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);

    /* head moving backwards */
    ws__ring_init_shared(f.sh);
    ends(&f, &p, &c, 0);
    ck_assert_int_eq(push(&p, 8, 1, 0, 1), 0);
    expect(&c, 8, 1, 0, 1);
    atomic_store(&f.sh->head, 0);
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);

    /* a header longer than what was published */
    ws__ring_init_shared(f.sh);
    ends(&f, &p, &c, 0);
    ck_assert_int_eq(push(&p, 8, 1, 0, 1), 0);
    ((struct ws__ring_rec *)(void *)f.data)->len = 200;
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);

    /* a huge header length */
    ((struct ws__ring_rec *)(void *)f.data)->len = UINT32_MAX;
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);

    /* a pad that does not reach the end of the buffer */
    ws__ring_init_shared(f.sh);
    ends(&f, &p, &c, 0);
    ck_assert_int_eq(push(&p, 8, 1, 0, 1), 0);
    ((struct ws__ring_rec *)(void *)f.data)->tag = WS__RING_PAD;
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);

    /* a record crossing the end of the buffer */
    ws__ring_init_shared(f.sh);
    ends(&f, &p, &c, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(push(&p, 304, 1, 0, 1), 0);
        expect(&c, 304, 1, 0, 1);
    }
    ck_assert_int_eq(push(&p, 16, 1, 0, 1), 0);
    ((struct ws__ring_rec *)(void *)(f.data + 960))->len = 100;
    atomic_store(&f.sh->head, 960 + 128);
    ck_assert_int_eq(ws__ring_peek(&c, &m), EPROTO);
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_reserve_eproto)
{
    struct fixture f;
    struct ws__ring_end p, c;
    void *buf;
    fixture_init(&f, 1024);
    ends(&f, &p, &c, 0);
    while (push(&p, 48, 1, 0, 0) == 0)
        ;
    /* tail ahead of head */
    atomic_store(&f.sh->tail, 4096);
    ck_assert_int_eq(ws__ring_reserve(&p, 48, &buf), EPROTO);
    ck_assert_int_eq(ws__ring_wait_space(&p, 48, 0.0), EPROTO);
    /* tail not aligned */
    atomic_store(&f.sh->tail, 8);
    ck_assert_int_eq(ws__ring_reserve(&p, 48, &buf), EPROTO);
    /* tail moving backwards after a real release */
    atomic_store(&f.sh->tail, 0);
    expect(&c, 48, 1, 0, 0);
    ck_assert_int_eq(push(&p, 48, 1, 0, 0), 0);
    atomic_store(&f.sh->tail, 0);
    ck_assert_int_eq(push(&p, 48, 1, 0, 0), EPROTO);
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_wait_timeout)
{
    struct fixture f;
    struct ws__ring_end p, c;
    fixture_init(&f, 1024);
    ends(&f, &p, &c, 10);
    ck_assert_int_eq(ws__ring_wait_data(&c, 0.0), ETIMEDOUT);
    ck_assert_int_eq(ws__ring_wait_data(&c, 0.02), ETIMEDOUT);
    ck_assert_uint_eq(atomic_load(&f.sh->cons_sleep), 0);
    ck_assert_int_eq(push(&p, 8, 1, 0, 1), 0);
    ck_assert_int_eq(ws__ring_wait_data(&c, 0.0), 0);
    ck_assert_int_eq(ws__ring_wait_data(&c, -1.0), 0);
    ws__shm_destroy(&f.shm);
}
END_TEST

/*
 * Moves count records between two processes through a ring of cap bytes;
 * lengths vary, every byte is checked.  The consumer sleeps whenever the
 * ring is empty, the producer whenever it is full.
 */
static void
two_processes(uint64_t cap, uint64_t count, unsigned spin)
{
    struct fixture f;
    fixture_init(&f, cap);
    uint32_t maxlen = ws__ring_max_payload(cap);
    if (maxlen > 600)
        maxlen = 600;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct ws__ring_end c;
        ws__ring_end_init(&c, f.sh, f.data, f.cap, spin);
        for (uint64_t i = 0; i < count; i++) {
            struct ws__ring_msg m;
            int r;
            while ((r = ws__ring_peek(&c, &m)) == EAGAIN)
                if (ws__ring_wait_data(&c, 5.0) == ETIMEDOUT)
                    _exit(3);
            if (r != 0 || m.user != i || m.tag != 7 ||
                m.len != (uint32_t)((i * 131) % (maxlen + 1)))
                _exit(4);
            for (uint32_t j = 0; j < m.len; j++)
                if (((unsigned char *)m.payload)[j] != (unsigned char)(i + j))
                    _exit(5);
            ws__ring_release(&c);
            if (i % 16 == 0)
                ws__ring_notify_space(&c);
        }
        ws__ring_notify_space(&c);
        _exit(0);
    }
    struct ws__ring_end p;
    ws__ring_end_init(&p, f.sh, f.data, f.cap, spin);
    for (uint64_t i = 0; i < count; i++) {
        uint32_t len = (uint32_t)((i * 131) % (maxlen + 1));
        void *buf;
        int r;
        while ((r = ws__ring_reserve(&p, len, &buf)) == EAGAIN)
            ck_assert_int_ne(ws__ring_wait_space(&p, len, 5.0), ETIMEDOUT);
        ck_assert_int_eq(r, 0);
        for (uint32_t j = 0; j < len; j++)
            ((unsigned char *)buf)[j] = (unsigned char)(i + j);
        ws__ring_commit(&p, 7, i);
        if (i % 8 == 0)
            ws__ring_notify(&p);
    }
    ws__ring_notify(&p);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ws__shm_destroy(&f.shm);
}

START_TEST(test_ring_two_processes)
{
    two_processes(4096, 20000, 100);
}
END_TEST

START_TEST(test_ring_two_processes_sleepy)
{
    /* No polling: every empty or full ring is a futex sleep. */
    two_processes(1024, 5000, 0);
}
END_TEST

START_TEST(test_ring_wake_sleeper)
{
    struct fixture f;
    fixture_init(&f, 1024);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct ws__ring_end c;
        ws__ring_end_init(&c, f.sh, f.data, f.cap, 0);
        /* Sleeps with no timeout: only the producer's wake ends it. */
        if (ws__ring_wait_data(&c, -1.0) != 0)
            _exit(3);
        struct ws__ring_msg m;
        _exit(ws__ring_peek(&c, &m) == 0 && m.user == 42 ? 0 : 4);
    }
    struct ws__ring_end p;
    ws__ring_end_init(&p, f.sh, f.data, f.cap, 0);
    while (atomic_load(&f.sh->cons_sleep) == 0)
        usleep(1000);
    usleep(20000);
    ck_assert_int_eq(push(&p, 8, 1, 42, 0), 0);
    ws__ring_notify(&p);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ws__shm_destroy(&f.shm);
}
END_TEST

START_TEST(test_ring_stress)
{
    two_processes(256, 200000 * (uint64_t)scale(), 20);
    two_processes(65536, 500000 * (uint64_t)scale(), 1000);
}
END_TEST

static Suite *
ring_suite(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, test_ring_push_pop);
    tcase_add_test(tc, test_ring_wrap);
    tcase_add_test(tc, test_ring_full);
    tcase_add_test(tc, test_ring_sizes);
    tcase_add_test(tc, test_ring_next_payload);
    tcase_add_test(tc, test_ring_wait_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_ring_peek_eproto);
    tcase_add_test(tc, test_ring_reserve_eproto);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ring_two_processes);
    tcase_add_test(tc, test_ring_two_processes_sleepy);
    tcase_add_test(tc, test_ring_wake_sleeper);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_ring_stress);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(ring_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
