/*
 * Tests of the shared region (lib/shm.c): the heap and its growth, the
 * same addresses in a forked process, attach checks, and process-shared
 * futex waits.
 */
#include <config.h>

#include "shm.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
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

START_TEST(test_shm_create)
{
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 1000, 4096, 1 << 20), 0);
    const struct ws__shm_hdr *h = (const void *)shm.base;
    ck_assert_uint_eq(h->magic, WS__SHM_MAGIC);
    ck_assert_uint_eq(h->version, WS__SHM_VERSION);
    ck_assert_uint_eq(h->data_size, 1000);
    ck_assert_uint_ge(ws__shm_size(&shm), 1000 + 4096);
    ck_assert_uint_ge(shm.reserved, 1 << 20);
    /* The fixed part is usable and zero. */
    unsigned char *d = shm.base + ws__shm_data_off();
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(d[i], 0);
    memset(d, 0x5a, 1000);
    ck_assert_int_eq(ws__shm_attach(&shm, 0), 0);
    ws__shm_destroy(&shm);
    ws__shm_destroy(&shm);
}
END_TEST

START_TEST(test_shm_alloc_free)
{
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 1 << 16, 1 << 24), 0);
    void *a = ws__shm_alloc(&shm, 1);
    void *b = ws__shm_alloc(&shm, 100);
    void *c = ws__shm_alloc(&shm, 64);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq((uintptr_t)a % WS__SHM_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)b % WS__SHM_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)c % WS__SHM_ALIGN, 0);
    ck_assert_uint_eq((unsigned char *)b - (unsigned char *)a, 64);
    ck_assert_uint_eq((unsigned char *)c - (unsigned char *)b, 128);
    ck_assert_uint_ne(ws__shm_offset(&shm, b, 100), SIZE_MAX);
    /* Freed blocks merge with both neighbours and are reused. */
    ck_assert_int_eq(ws__shm_free(&shm, b), 0);
    ck_assert_int_eq(ws__shm_free(&shm, a), 0);
    ck_assert_int_eq(ws__shm_free(&shm, c), 0);
    ck_assert_uint_eq(shm.nblocks, 1);
    void *d = ws__shm_alloc(&shm, 1 << 16);
    ck_assert_ptr_eq(d, a);
    ck_assert_int_eq(ws__shm_free(&shm, d), 0);
    ws__shm_destroy(&shm);
}
END_TEST

START_TEST(test_shm_grow)
{
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 0, (size_t)1 << 30), 0);
    uint64_t size0 = ws__shm_size(&shm);
    void *p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = ws__shm_alloc(&shm, (size_t)3 << 20);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], i + 1, (size_t)3 << 20);
    }
    ck_assert_uint_ge(ws__shm_size(&shm), size0 + ((size_t)24 << 20));
    /* A forked process maps the growth and sees the same bytes at the
     * same addresses; what it writes, the creator sees. */
    struct ws__shm copy = shm;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int ok = ws__shm_attach(&copy, ws__shm_size(&shm)) == 0;
        for (int i = 0; i < 8 && ok; i++)
            ok = ((unsigned char *)p[i])[((size_t)3 << 20) - 1] == i + 1;
        ((unsigned char *)p[7])[0] = 99;
        _exit(ok ? 0 : 1);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_uint_eq(((unsigned char *)p[7])[0], 99);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(ws__shm_free(&shm, p[i]), 0);
    ws__shm_destroy(&shm);
}
END_TEST

START_TEST(test_shm_attach_late)
{
    /* A process forked before the heap grew maps the growth on attach. */
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 0, (size_t)1 << 30), 0);
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct {
            void *p;
            uint64_t size;
        } msg;
        if (read(go[0], &msg, sizeof msg) != sizeof msg)
            _exit(1);
        if (ws__shm_attach(&shm, msg.size) != 0)
            _exit(2);
        _exit(((unsigned char *)msg.p)[12345] == 0x42 ? 0 : 3);
    }
    struct {
        void *p;
        uint64_t size;
    } msg;
    msg.p = ws__shm_alloc(&shm, (size_t)5 << 20);
    ck_assert_ptr_nonnull(msg.p);
    memset(msg.p, 0x42, (size_t)5 << 20);
    msg.size = ws__shm_size(&shm);
    ck_assert_int_eq(write(go[1], &msg, sizeof msg), sizeof msg);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    close(go[0]);
    close(go[1]);
    ws__shm_destroy(&shm);
}
END_TEST

START_TEST(test_shm_wait_wake)
{
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 0, 0), 0);
    _Atomic uint32_t *w =
        (_Atomic uint32_t *)(void *)(shm.base + ws__shm_data_off());
    ck_assert_int_eq(ws__shm_wait(w, 1, 0.01), EAGAIN);
    ck_assert_int_eq(ws__shm_wait(w, 0, 0.01), ETIMEDOUT);
    ck_assert_int_eq(ws__shm_wait(w, 0, 0.0), ETIMEDOUT);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Woken by the other process, not by a timeout. */
        while (atomic_load(w) == 0) {
            int r = ws__shm_wait(w, 0, 30.0);
            if (r == ETIMEDOUT)
                _exit(1);
        }
        _exit(0);
    }
    usleep(50000);
    atomic_store(w, 1);
    ws__shm_wake(w, 1);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_uint_ge(ws__shm_now_ns(), 1);
    ws__shm_destroy(&shm);
}
END_TEST

START_TEST(test_shm_free_einval)
{
    struct ws__shm shm;
    int local;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 4096, 0), 0);
    void *a = ws__shm_alloc(&shm, 100);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(ws__shm_free(&shm, &local), EINVAL);
    ck_assert_int_eq(ws__shm_free(&shm, (char *)a + 64), EINVAL);
    ck_assert_int_eq(ws__shm_free(&shm, shm.base), EINVAL);
    ck_assert_int_eq(ws__shm_free(&shm, a), 0);
    ck_assert_int_eq(ws__shm_free(&shm, a), EINVAL);
    ck_assert_ptr_null(ws__shm_alloc(&shm, 0));
    ck_assert_ptr_null(ws__shm_alloc(&shm, SIZE_MAX));
    /* Past the reservation: NULL, and the heap is still usable. */
    ck_assert_ptr_null(ws__shm_alloc(&shm, shm.reserved + 1));
    ck_assert_ptr_nonnull(ws__shm_alloc(&shm, 100));
    ck_assert_uint_eq(ws__shm_offset(&shm, &local, 1), SIZE_MAX);
    ck_assert_uint_eq(ws__shm_offset(&shm, a, shm.reserved), SIZE_MAX);
    ws__shm_destroy(&shm);
}
END_TEST

START_TEST(test_shm_attach_eproto)
{
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 0, 1 << 20), 0);
    ck_assert_int_eq(ws__shm_attach(&shm, (uint64_t)shm.reserved * 2), EPROTO);
    ck_assert_int_eq(ws__shm_attach(&shm, ws__shm_size(&shm) + 1), EPROTO);
    ((struct ws__shm_hdr *)(void *)shm.base)->version = 99;
    ck_assert_int_eq(ws__shm_attach(&shm, 0), EPROTO);
    ((struct ws__shm_hdr *)(void *)shm.base)->version = WS__SHM_VERSION;
    ((struct ws__shm_hdr *)(void *)shm.base)->magic = 1;
    ck_assert_int_eq(ws__shm_attach(&shm, 0), EPROTO);
    ws__shm_destroy(&shm);
}
END_TEST

/* Threads allocate, fill, check and free blocks concurrently. */
struct churn {
    struct ws__shm *shm;
    unsigned seed;
    int bad;
};

static void *
churn(void *arg)
{
    struct churn *c = arg;
    unsigned char *held[16] = {0};
    size_t sizes[16] = {0};
    for (unsigned i = 0; i < 1000 * scale(); i++) {
        unsigned k = (c->seed + i * 7) % 16;
        if (held[k] != NULL) {
            for (size_t j = 0; j < sizes[k]; j += 61)
                if (held[k][j] != (unsigned char)c->seed)
                    c->bad = 1;
            if (ws__shm_free(c->shm, held[k]) != 0)
                c->bad = 1;
            held[k] = NULL;
        } else {
            sizes[k] = 1 + (i * 2654435761u + c->seed) % 50000;
            held[k] = ws__shm_alloc(c->shm, sizes[k]);
            if (held[k] == NULL)
                c->bad = 1;
            else
                memset(held[k], (unsigned char)c->seed, sizes[k]);
        }
    }
    for (unsigned k = 0; k < 16; k++)
        if (held[k] != NULL)
            ws__shm_free(c->shm, held[k]);
    return NULL;
}

START_TEST(test_shm_alloc_threads)
{
    struct ws__shm shm;
    ck_assert_int_eq(ws__shm_create(&shm, 64, 1 << 16, (size_t)1 << 32), 0);
    pthread_t t[6];
    struct churn c[6];
    for (int i = 0; i < 6; i++) {
        c[i] = (struct churn){.shm = &shm, .seed = (unsigned)i + 1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn, &c[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(c[i].bad, 0);
    }
    /* Everything freed: one block again. */
    ck_assert_uint_eq(shm.nblocks, 1);
    ws__shm_destroy(&shm);
}
END_TEST

static Suite *
shm_suite(void)
{
    Suite *s = suite_create("shm");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_shm_create);
    tcase_add_test(tc, test_shm_alloc_free);
    tcase_add_test(tc, test_shm_grow);
    tcase_add_test(tc, test_shm_attach_late);
    tcase_add_test(tc, test_shm_wait_wake);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_shm_free_einval);
    tcase_add_test(tc, test_shm_attach_eproto);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_shm_alloc_threads);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(shm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
