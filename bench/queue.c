/*
 * Bounded queue throughput: producers put items, consumers get them, for
 * 1:1, 2:2 and 4:4 producers:consumers at capacity 1024.  Compared in the
 * same run with
 *   textbook  a mutex and two condition variables around a ring (the design
 *             of Python's queue.Queue and of most hand-written queues), with
 *             the same close as ws_queue;
 *   oneTBB    tbb::concurrent_bounded_queue, measured by bench/queue_tbb (a
 *             child process found beside this program) when it was built,
 *             on fewer items when it is slow;
 *   python    queue.Queue with threads, when PYTHON3 names an interpreter
 *             (fewer items: it is two orders of magnitude slower).
 * Items per run: BENCH_QUEUE_ITEMS (default 2000000); runs: BENCH_RUNS.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wsched.h>

#include "bench.h"

#define CAPACITY 1024
#define PYTHON_ITEMS 100000

/* ------------------------------------------------------------------ */
/* The textbook queue                                                  */
/* ------------------------------------------------------------------ */

struct tq {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    void **ring;
    size_t capacity, head, count;
    bool closed;
};

static struct tq *
tq_create(size_t capacity)
{
    struct tq *q = calloc(1, sizeof *q);
    q->ring = calloc(capacity, sizeof q->ring[0]);
    q->capacity = capacity;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return q;
}

static void
tq_destroy(struct tq *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    free(q);
}

static int
tq_put(struct tq *q, void *item)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == q->capacity && !q->closed)
        pthread_cond_wait(&q->not_full, &q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        return EPIPE;
    }
    q->ring[(q->head + q->count++) % q->capacity] = item;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

static int
tq_get(struct tq *q, void **item)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->lock);
    if (q->count == 0) {
        pthread_mutex_unlock(&q->lock);
        return EPIPE;
    }
    *item = q->ring[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

static void
tq_close(struct tq *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

/* ------------------------------------------------------------------ */
/* One run                                                             */
/* ------------------------------------------------------------------ */

enum impl { IMPL_WS, IMPL_TEXTBOOK };

struct run {
    enum impl impl;
    ws_queue *wq;
    struct tq *tq;
    unsigned long per_producer;
    pthread_barrier_t start;
};

struct side {
    struct run *r;
    unsigned long count;
    uintptr_t sum;
};

static void *
producer(void *arg)
{
    struct side *s = arg;
    struct run *r = s->r;
    pthread_barrier_wait(&r->start);
    for (unsigned long i = 1; i <= r->per_producer; i++) {
        int e = r->impl == IMPL_WS
                    ? ws_queue_put(r->wq, (void *)(uintptr_t)i, WS_FOREVER)
                    : tq_put(r->tq, (void *)(uintptr_t)i);
        if (e != 0) {
            fprintf(stderr, "queue: put failed: %s\n", strerror(e));
            exit(1);
        }
    }
    return NULL;
}

static void *
consumer(void *arg)
{
    struct side *s = arg;
    struct run *r = s->r;
    void *v;
    pthread_barrier_wait(&r->start);
    for (;;) {
        int e = r->impl == IMPL_WS ? ws_queue_get(r->wq, &v, WS_FOREVER)
                                   : tq_get(r->tq, &v);
        if (e == EPIPE)
            break;
        s->count++;
        s->sum += (uintptr_t)v;
    }
    return NULL;
}

/* Items per second for one run; checks that every item arrived. */
static double
run_once(enum impl impl, unsigned np, unsigned nc, unsigned long items)
{
    struct run r = {.impl = impl, .per_producer = items / np};
    struct side s[16] = {{0}};
    pthread_t t[16];
    unsigned n = np + nc;
    if (impl == IMPL_WS) {
        if (ws_queue_create(&r.wq, CAPACITY) != 0)
            exit(1);
    } else {
        r.tq = tq_create(CAPACITY);
    }
    pthread_barrier_init(&r.start, NULL, n + 1);
    for (unsigned i = 0; i < n; i++) {
        s[i].r = &r;
        pthread_create(&t[i], NULL, i < np ? producer : consumer, &s[i]);
    }
    pthread_barrier_wait(&r.start);
    double t0 = bench_now();
    for (unsigned i = 0; i < np; i++)
        pthread_join(t[i], NULL);
    if (impl == IMPL_WS)
        ws_queue_close(r.wq);
    else
        tq_close(r.tq);
    for (unsigned i = np; i < n; i++)
        pthread_join(t[i], NULL);
    double dt = bench_now() - t0;

    unsigned long got = 0;
    uintptr_t sum = 0;
    for (unsigned i = np; i < n; i++) {
        got += s[i].count;
        sum += s[i].sum;
    }
    uintptr_t want = (uintptr_t)np * r.per_producer * (r.per_producer + 1) / 2;
    if (got != np * r.per_producer || sum != want) {
        fprintf(stderr, "queue: lost or duplicated items\n");
        exit(1);
    }
    pthread_barrier_destroy(&r.start);
    if (impl == IMPL_WS)
        ws_queue_destroy(r.wq);
    else
        tq_destroy(r.tq);
    return (double)got / dt;
}

static void
report(const char *name, unsigned np, unsigned nc, double *v, int runs)
{
    printf("BENCH queue-%u:%u %s workers=%u median=%.2f Mitems/s runs=%d\n", np,
           nc, name, np + nc, bench_median(v, runs), runs);
    fflush(stdout);
}

/*
 * Medians of wsched and the textbook queue, their runs interleaved so that
 * both see the same moments of a host whose load changes.
 */
static void
measure(unsigned np, unsigned nc, unsigned long items, double *ws, double *tb)
{
    int runs = bench_runs();
    double v[2][runs];
    for (int i = 0; i < runs; i++) {
        v[0][i] = run_once(IMPL_WS, np, nc, items) / 1e6;
        v[1][i] = run_once(IMPL_TEXTBOOK, np, nc, items) / 1e6;
    }
    report("wsched", np, nc, v[0], runs);
    report("textbook", np, nc, v[1], runs);
    *ws = bench_median(v[0], runs);
    *tb = bench_median(v[1], runs);
}

/* ------------------------------------------------------------------ */
/* Peers run as child processes: their result is the median of a BENCH  */
/* line they print.                                                     */
/* ------------------------------------------------------------------ */

static double
child_median(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    char line[512];
    double m = -1;
    if (p == NULL)
        return -1;
    while (fgets(line, sizeof line, p)) {
        const char *s = strstr(line, " median=");
        if (strncmp(line, "BENCH ", 6) == 0 && s != NULL) {
            m = strtod(s + 8, NULL);
            fputs(line, stdout);
        }
    }
    if (pclose(p) != 0)
        return -1;
    fflush(stdout);
    return m;
}

/* The oneTBB program sits beside this one; under libtool's wrapper this
 * one runs from .libs/, so look one level up too. */
static bool
find_tbb(const char *argv0, char *out, size_t size)
{
    char dir[PATH_MAX - 16];
    snprintf(dir, sizeof dir, "%s", argv0);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else
        *slash = '\0';
    snprintf(out, size, "%s/queue_tbb", dir);
    if (access(out, X_OK) == 0)
        return true;
    size_t n = strlen(dir);
    if (n >= 6 && strcmp(dir + n - 6, "/.libs") == 0) {
        dir[n - 6] = '\0';
        snprintf(out, size, "%s/queue_tbb", dir);
        return access(out, X_OK) == 0;
    }
    return false;
}

static const char python_prog[] =
    "import queue, sys, threading, time\n"
    "np, nc, n, cap = map(int, sys.argv[1:5])\n"
    "def prod(q, k):\n"
    "    for i in range(k):\n"
    "        q.put(i)\n"
    "def cons(q):\n"
    "    while q.get() is not None:\n"
    "        pass\n"
    "q = queue.Queue(cap)\n"
    "ps = [threading.Thread(target=prod, args=(q, n // np)) for _ in "
    "range(np)]\n"
    "cs = [threading.Thread(target=cons, args=(q,)) for _ in range(nc)]\n"
    "t0 = time.perf_counter()\n"
    "for t in ps + cs:\n"
    "    t.start()\n"
    "for t in ps:\n"
    "    t.join()\n"
    "for _ in cs:\n"
    "    q.put(None)\n"
    "for t in cs:\n"
    "    t.join()\n"
    "print(n // np * np / (time.perf_counter() - t0))\n";

static double
python_median(const char *python, unsigned np, unsigned nc)
{
    int runs = bench_runs() < 3 ? bench_runs() : 3;
    double v[3];
    char cmd[PATH_MAX + 512];
    char path[] = "/tmp/wsched-bench-queue-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    if (write(fd, python_prog, sizeof python_prog - 1) !=
        (ssize_t)(sizeof python_prog - 1)) {
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    snprintf(cmd, sizeof cmd, "'%s' '%s' %u %u %d %d", python, path, np, nc,
             PYTHON_ITEMS, CAPACITY);
    for (int i = 0; i < runs; i++) {
        FILE *p = popen(cmd, "r");
        if (p == NULL || fscanf(p, "%lf", &v[i]) != 1) {
            if (p)
                pclose(p);
            unlink(path);
            return -1;
        }
        pclose(p);
        v[i] /= 1e6;
    }
    unlink(path);
    double m = bench_median(v, runs);
    printf("BENCH queue-%u:%u python workers=%u median=%.2f Mitems/s "
           "runs=%d\n",
           np, nc, np + nc, m, runs);
    return m;
}

int
main(int argc, char **argv)
{
    (void)argc;
    const char *s = getenv("BENCH_QUEUE_ITEMS");
    unsigned long items = s ? strtoul(s, NULL, 10) : 2000000;
    if (items < 8)
        items = 8;
    const char *python = getenv("PYTHON3");
    if (python != NULL && *python == '\0')
        python = NULL;
    char tbb[PATH_MAX];
    bool have_tbb = find_tbb(argv[0], tbb, sizeof tbb);

    static const unsigned sides[] = {1, 2, 4};
    double ws[3], tb[3], tbbm[3], py[3], cap[3];
    printf("queue: bounded MPMC throughput, capacity %d, %lu items per run, "
           "%d runs\n",
           CAPACITY, items, bench_runs());
    for (int i = 0; i < 3; i++) {
        unsigned n = sides[i];
        cap[i] = bench_capacity();
        printf("BENCH queue-capacity probe workers=2 median=%.2f cores "
               "runs=5\n",
               cap[i]);
        measure(n, n, items, &ws[i], &tb[i]);
        tbbm[i] = -1;
        if (have_tbb) {
            char cmd[PATH_MAX + 64];
            snprintf(cmd, sizeof cmd, "'%s' %u %u %lu %d %d", tbb, n, n, items,
                     CAPACITY, bench_runs());
            tbbm[i] = child_median(cmd);
        }
        py[i] = python ? python_median(python, n, n) : -1;
    }

    printf("\n%-5s %9s %9s %9s %9s %8s %8s %8s\n", "P:C", "wsched", "textbook",
           "oneTBB", "python", "ws/text", "ws/tbb", "capacity");
    for (int i = 0; i < 3; i++) {
        char label[16], t[16] = "-", p[16] = "-", rt[16] = "-";
        snprintf(label, sizeof label, "%u:%u", sides[i], sides[i]);
        if (tbbm[i] > 0) {
            snprintf(t, sizeof t, "%.2f", tbbm[i]);
            snprintf(rt, sizeof rt, "%.2fx", ws[i] / tbbm[i]);
        }
        if (py[i] > 0)
            snprintf(p, sizeof p, "%.2f", py[i]);
        printf("%-5s %9.2f %9.2f %9s %9s %7.2fx %8s %8.2f\n", label, ws[i],
               tb[i], t, p, ws[i] / tb[i], rt, cap[i]);
    }
    printf("(M items/s, medians; capacity: cores' worth the host gave two "
           "threads, probed before each row)\n");
    return 0;
}
