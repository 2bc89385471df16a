/*
 * Throughput of the shared-memory ring between two processes: a producer
 * and a forked consumer move 8-byte and 256-byte messages, one record per
 * message, against a pipe with one write and one read per message.
 * Messages per second, median of BENCH_RUNS runs (default 5).
 *
 *   proc_ring [messages_8 messages_256]
 */
#include <config.h>

#include "ring.h"
#include "shm.h"

#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define RING_CAP ((uint64_t)1 << 20)
#define SPIN 100u
#define BATCH 64u

/* Bytes of records each side publishes at once (ws__ring_set_batch). */
static uint64_t publish_batch = 4096;

struct shared {
    struct ws__ring_shared ring;
    uint64_t sum;
};

/* CPU seconds of this process, or of its reaped children. */
static double
cpu_s(int who)
{
    struct rusage r;
    getrusage(who, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec * 1e-6 +
           (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds per message of the last run, producer and consumer. */
static double cpu_prod, cpu_cons;

/* One run through the ring; returns seconds, checks every message. */
static double
ring_run(uint32_t len, uint64_t count)
{
    struct ws__shm shm;
    int err = ws__shm_create(&shm, sizeof(struct shared) + RING_CAP, 0, 0);
    if (err != 0) {
        fprintf(stderr, "proc_ring: %s\n", strerror(err));
        exit(1);
    }
    struct shared *sh =
        (struct shared *)(void *)(shm.base + ws__shm_data_off());
    unsigned char *data = (unsigned char *)(sh + 1);
    ws__ring_init_shared(&sh->ring);

    pid_t pid = fork();
    if (pid < 0) {
        perror("proc_ring: fork");
        exit(1);
    }
    if (pid == 0) {
        struct ws__ring_end c;
        ws__ring_end_init(&c, &sh->ring, data, RING_CAP, SPIN);
        ws__ring_set_batch(&c, publish_batch);
        uint64_t sum = 0;
        for (uint64_t i = 0; i < count; i++) {
            struct ws__ring_msg m;
            int r;
            while ((r = ws__ring_peek(&c, &m)) == EAGAIN)
                ws__ring_wait_data(&c, 1.0);
            if (r != 0 || m.len != len)
                _exit(2);
            uint64_t v;
            memcpy(&v, m.payload, sizeof v);
            sum += v;
            ws__ring_release(&c);
            if (i % BATCH == 0)
                ws__ring_notify_space(&c);
        }
        ws__ring_notify_space(&c);
        sh->sum = sum;
        _exit(0);
    }

    struct ws__ring_end p;
    ws__ring_end_init(&p, &sh->ring, data, RING_CAP, SPIN);
    ws__ring_set_batch(&p, publish_batch);
    unsigned char msg[256] = {0};
    double c0 = cpu_s(RUSAGE_SELF), k0 = cpu_s(RUSAGE_CHILDREN);
    double t0 = bench_now();
    for (uint64_t i = 0; i < count; i++) {
        void *buf;
        while (ws__ring_reserve(&p, len, &buf) != 0)
            ws__ring_wait_space(&p, len, 1.0);
        memcpy(msg, &i, sizeof i);
        memcpy(buf, msg, len);
        ws__ring_commit(&p, 1, 0);
        if (i % BATCH == 0)
            ws__ring_notify(&p);
    }
    ws__ring_notify(&p);
    int st;
    waitpid(pid, &st, 0);
    double t = bench_now() - t0;
    cpu_prod = (cpu_s(RUSAGE_SELF) - c0) / (double)count;
    cpu_cons = (cpu_s(RUSAGE_CHILDREN) - k0) / (double)count;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
        sh->sum != count * (count - 1) / 2) {
        fprintf(stderr, "proc_ring: consumer failed\n");
        exit(1);
    }
    ws__shm_destroy(&shm);
    return t;
}

/* The same through a pipe, one write and one read per message. */
static double
pipe_run(uint32_t len, uint64_t count)
{
    int fd[2];
    if (pipe(fd) != 0) {
        perror("proc_ring: pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[1]);
        unsigned char msg[256];
        for (uint64_t i = 0; i < count; i++) {
            size_t got = 0;
            while (got < len) {
                ssize_t r = read(fd[0], msg + got, len - got);
                if (r <= 0)
                    _exit(2);
                got += (size_t)r;
            }
        }
        _exit(0);
    }
    close(fd[0]);
    unsigned char msg[256] = {0};
    double t0 = bench_now();
    for (uint64_t i = 0; i < count; i++) {
        memcpy(msg, &i, sizeof i);
        if (write(fd[1], msg, len) != (ssize_t)len) {
            perror("proc_ring: write");
            exit(1);
        }
    }
    close(fd[1]);
    int st;
    waitpid(pid, &st, 0);
    return bench_now() - t0;
}

/* Median CPU ns per message, producer and consumer, of the ring runs. */
static double med_prod, med_cons;

static double
measure(const char *bench, const char *impl, double (*run)(uint32_t, uint64_t),
        uint32_t len, uint64_t count)
{
    int runs = bench_runs();
    double t[64], cp[64], cc[64];
    if (runs > 64)
        runs = 64;
    for (int r = 0; r < runs; r++) {
        t[r] = run(len, count);
        cp[r] = cpu_prod * 1e9;
        cc[r] = cpu_cons * 1e9;
    }
    med_prod = bench_median(cp, runs);
    med_cons = bench_median(cc, runs);
    double rate = (double)count / bench_median(t, runs);
    printf("BENCH %s %s workers=2 median=%.0f msgs/s runs=%d\n", bench, impl,
           rate, runs);
    fflush(stdout);
    return rate;
}

int
main(int argc, char **argv)
{
    uint64_t n8 = 10000000, n256 = 2000000;
    if (argc >= 3) {
        n8 = strtoull(argv[1], NULL, 10);
        n256 = strtoull(argv[2], NULL, 10);
    }
    if (argc >= 4)
        publish_batch = strtoull(argv[3], NULL, 10);
    if (n8 < 2 || n256 < 2) {
        fprintf(stderr, "usage: proc_ring [messages_8 messages_256]\n");
        return 2;
    }
    double cap0 = bench_capacity();
    double r8 = measure("ring_msg8", "wsched_ring", ring_run, 8, n8);
    double cp8 = med_prod, cc8 = med_cons;
    double p8 = measure("ring_msg8", "pipe", pipe_run, 8, n8 / 20);
    double r256 = measure("ring_msg256", "wsched_ring", ring_run, 256, n256);
    double cp256 = med_prod, cc256 = med_cons;
    double p256 = measure("ring_msg256", "pipe", pipe_run, 256, n256 / 4);
    double cap1 = bench_capacity();

    printf("\n# proc_ring: producer and consumer processes; parallel "
           "capacity %.2f before, %.2f after\n",
           cap0, cap1);
    printf("  %-10s %16s %16s %10s %12s\n", "message", "ring msgs/s",
           "pipe msgs/s", "ring/pipe", "ring MB/s");
    printf("  %-10s %16.0f %16.0f %9.1fx %12.0f\n", "8 bytes", r8, p8, r8 / p8,
           r8 * 8 / 1e6);
    printf("  %-10s %16.0f %16.0f %9.1fx %12.0f\n", "256 bytes", r256, p256,
           r256 / p256, r256 * 256 / 1e6);
    /*
     * Wall-clock rates depend on how much of a core each process got;
     * CPU time per message does not.  With a core each, the ring moves
     * about one message per CPU time of its slower side.
     */
    printf("\n  ring CPU ns/msg   producer  consumer  one-core-each rate\n");
    printf("  %-14s %11.1f %9.1f %19.0f\n", "8 bytes", cp8, cc8,
           1e9 / (cp8 > cc8 ? cp8 : cc8));
    printf("  %-14s %11.1f %9.1f %19.0f\n", "256 bytes", cp256, cc256,
           1e9 / (cp256 > cc256 ? cp256 : cc256));
    printf("\n# target: >= 10000000 8-byte messages/s through the ring\n");
    return 0;
}
