/*
 * Multi-process pools: parallel map over code that is not thread-safe or
 * that may crash, with each failure contained to the item it happened on.
 *
 * Processes.  ws_procpool_create makes one shared region (shm.c) and forks
 * a fork server before anything else; the fork server forks the workers,
 * at create and whenever one must be replaced, so no worker ever comes from
 * a process that has threads running.  Every process maps the region at
 * the same address, and the workers are forks of the caller as it was at
 * create: a function pointer or a pointer to memory that existed then (or
 * that ws_shm_alloc returned) means the same in the workers.
 *
 * Channels.  Each worker slot has two SPSC rings (ring.c) in the region:
 * requests from the parent (a map's parameters, chunks of items, exit) and
 * results back (a chunk's outputs and statuses).  SPSC per worker rather
 * than one shared queue: the parent then knows exactly which chunks each
 * worker holds, which is what lets it attribute a crash to one item, and no
 * worker contends with another for a line.  The parent deals chunks to the
 * workers as their rings drain (guided sizes: a share of what is left,
 * never below about 50 microseconds of measured work), keeping PP_DEPTH
 * chunks queued per worker so that none idles while the parent copies.
 * Workers sleep on their request ring's futex word, the parent on a word
 * of the control block that each worker exchanges after a result.
 *
 * Failure.  Before each item a worker publishes (chunk, index, running) in
 * its slot.  When a worker dies (a signal, exit, or a kill from outside)
 * the fork server reaps it and wakes the parent, which confirms the death
 * on the pidfd it was handed at fork, drains the results the worker had
 * committed, takes the outputs of the items the worker finished in its
 * unfinished chunk, marks the item it was running EOWNERDEAD (or
 * ETIMEDOUT if the parent killed it for overrunning timeout_s), queues the
 * rest of the chunk for the others, and has the fork server fork a
 * replacement.  Shared memory is untrusted once a worker may scribble on
 * it: the parent copies each field it reads once, checks it against what
 * it sent, and treats anything impossible as that worker's failure.
 *
 * Lifetime.  The fork server watches the caller through a pidfd and, when
 * the caller exits (or closes the socket in ws_procpool_destroy), kills and
 * reaps its workers and exits; workers die with it (PR_SET_PDEATHSIG, which
 * is exact here because the fork server has one thread), and an idle worker
 * also checks the caller's pidfd on each wait timeout.  Nothing is named in
 * /dev/shm; destroy closes every descriptor it opened.
 *
 * Threads: each call may be made from any thread of the process that
 * created the pool; maps on one pool run one at a time (a mutex).
 */
#define _GNU_SOURCE
#include <config.h>

#include "procpool.h"

#include "arch.h"
#include "loop.h"
#include "ring.h"
#include "shm.h"
#include "topo.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define PP_MAGIC UINT64_C(0x6c6f6f70636f7270) /* "procpool" */
#define PP_VERSION 1u

#define PP_RING_MAX ((uint64_t)1 << 20)    /* bytes per ring, small pools */
#define PP_RING_MIN ((uint64_t)256 << 10)  /* bytes per ring, large pools */
#define PP_RING_TOTAL ((uint64_t)32 << 20) /* all rings, when possible */
#define PP_DEPTH 3                         /* chunks queued per worker */
#define PP_CTL_SIZE ((size_t)4096)         /* control block */
#define PP_SLOT_HDR ((size_t)4096)         /* slot counters, then buffers */
#define PP_HEAP_START ((size_t)1 << 20)    /* heap at create */
#define PP_SHM_MAX ((size_t)64 << 30)      /* address space reserved */
#define PP_WORKER_SPIN 100u                /* polls before a worker sleeps */
#define PP_PARENT_SPIN 50u                 /* polls before the parent sleeps */
#define PP_IDLE_CHECK_S 0.25               /* idle worker: parent alive? */
#define PP_TICK_NS UINT64_C(100000000)     /* parent: pidfds polled at least */
#define PP_EXIT_WAIT_MS 2000               /* destroy: grace before SIGKILL */
#define PP_SPAWN_WAIT_MS 10000             /* fork server's answer */
#define PP_CHUNK_NS 50000.0                /* least automatic chunk, in work */

/* Record tags. */
enum { REQ_BEGIN = 1, REQ_CHUNK, REQ_EXIT, RES_CHUNK };

/* How items and results reach a worker. */
enum {
    IO_INLINE, /* copied through the rings */
    IO_PLACE,  /* the caller's buffer lies in the region: used in place */
    IO_STAGE   /* too big for a ring: one item at a time, via the heap */
};

/* Shared control block, at the start of the region's fixed part. */
struct pp_ctl {
    uint64_t magic;
    uint32_t version;
    uint32_t nslots;
    uint64_t ring_cap;
    uint64_t slot_size;
    /* 1: the parent sleeps on this word waiting for a result or a death. */
    WS_ALIGNED _Atomic uint32_t parent_sleep;
    /* Bumped by the fork server each time it reaps a worker. */
    _Atomic uint32_t deaths;
};

/* A worker slot: ring counters, then the two ring buffers. */
struct pp_slot {
    struct ws__ring_shared req; /* parent -> worker */
    struct ws__ring_shared res; /* worker -> parent */
    /* Written by the worker: chunk seq << 32 | index << 1 | running. */
    WS_ALIGNED _Atomic uint64_t progress;
    /* Written by the worker in timed maps: when the running item began. */
    _Atomic uint64_t started_ns;
};

_Static_assert(sizeof(struct pp_ctl) <= PP_CTL_SIZE, "control block fits");
_Static_assert(sizeof(struct pp_slot) <= PP_SLOT_HDR, "slot header fits");

/*
 * The start of a map, sent to each worker before its first chunk.  fn and
 * ctx are the caller's values, meaningful in the workers because they are
 * forks of the caller; everything in the region is named by offset.
 */
struct pp_begin {
    ws_map_fn fn;
    void *ctx; /* passed as is when ctx_size is 0 */
    uint64_t map_id;
    uint64_t ctx_off; /* staged copy of ctx_size bytes */
    uint64_t ctx_size;
    uint64_t in_size;
    uint64_t out_size;
    uint64_t in_off; /* IO_PLACE: item 0; IO_STAGE: this slot's stage */
    uint64_t out_off;
    uint64_t shm_size; /* bytes of the region the worker must map */
    uint32_t in_mode;
    uint32_t out_mode;
    uint32_t timed;
    uint32_t pad;
};

/*
 * A chunk of items; inline inputs follow (16-byte aligned).  state is
 * seq << 2 | CH_QUEUED, CH_CLAIMED or CH_REVOKED: the worker claims a
 * chunk before it starts it, and until then the parent may revoke it.
 */
struct pp_chunk {
    uint64_t first;
    uint32_t seq;
    uint32_t count;
    _Atomic uint64_t state;
    uint64_t pad;
};

enum { CH_QUEUED = 0, CH_CLAIMED = 1, CH_REVOKED = 2 };

/* A chunk's results: outputs (if inline), then count statuses. */
struct pp_result {
    uint32_t seq;
    uint32_t count;
    uint32_t nerr; /* statuses are written only if nonzero */
    uint32_t pad;
    uint64_t elapsed_ns; /* the chunk's work, for chunk sizing */
    uint64_t pad2;
};

_Static_assert(sizeof(struct pp_chunk) % WS__RING_ALIGN == 0, "aligned");
_Static_assert(sizeof(struct pp_result) % WS__RING_ALIGN == 0, "aligned");

/* Fork server protocol over a SOCK_SEQPACKET pair. */
struct pp_spawn_req {
    uint32_t slot;
};
struct pp_spawn_rep {
    int32_t err;
    int32_t pid; /* with the worker's pidfd as SCM_RIGHTS */
};

/* Parent side. */

struct pp_inflight {
    uint64_t first;
    uint32_t seq;
    uint32_t count;
    _Atomic uint64_t *state; /* in the request ring, until its result */
};

struct pp_worker {
    struct pp_slot *slot;
    struct ws__ring_end req; /* the parent produces */
    struct ws__ring_end res; /* the parent consumes */
    pid_t pid;
    int pidfd;     /* -1: no worker in this slot */
    int kill_code; /* nonzero: we killed it; the running item gets this */
    int revoked;   /* chunks were taken back: none dealt until a result */
    uint32_t next_seq;
    uint64_t begun; /* map whose parameters it has; 0: none */
    struct pp_inflight q[PP_DEPTH];
    unsigned qhead, qlen;
};

struct ws_procpool {
    struct ws__shm shm;
    struct pp_ctl *ctl;
    struct pp_worker *w;
    unsigned n;
    uint64_t ring_cap; /* bytes per ring */
    pid_t creator;
    pid_t server_pid;
    int server_pidfd;        /* parent: -1 once the fork server is gone */
    int sock;                /* parent's end; in the fork server, its end */
    int parent_pidfd;        /* fork server and workers: the creator */
    int *srv_pidfd;          /* fork server: one pidfd per slot */
    struct pollfd *srv_poll; /* fork server: n + 2 entries */
    int spawn_err;           /* why the last replacement failed */
    uint32_t deaths_seen;
    uint64_t map_id;
    _Atomic uint64_t stolen; /* chunks taken back, for tests */
    pthread_mutex_t lock;    /* maps and destroy */
};

struct pp_range {
    uint64_t first;
    uint64_t count;
};

/* One ws_procpool_map call. */
struct pp_run {
    const ws_map *m;
    uint64_t id;
    int in_mode, out_mode;
    size_t in_off, out_off; /* IO_PLACE */
    void *ctx_stage;
    unsigned char *stage; /* IO_STAGE: per slot, input then output */
    size_t stage_in, stage_size;
    unsigned depth;
    uint64_t cmax;    /* most items per chunk the rings take */
    uint64_t next;    /* first item never dealt */
    uint64_t pending; /* items not dealt: [next, n) and retries */
    struct pp_range *retry;
    size_t nretry, cap_retry;
    uint64_t left; /* items without a final status */
    uint64_t fail_index;
    int fail_code;
    int stopped;     /* no more chunks are dealt: items fail with */
    int stop_code;   /* this code instead */
    unsigned barren; /* deaths in a row that settled no item */
    uint64_t timeout_ns;
    double ns_per_item; /* measured; 0: unknown */
};

static size_t
round16(size_t x)
{
    return (x + 15) & ~(size_t)15;
}

static uint64_t
prog_make(uint32_t seq, uint32_t index, int running)
{
    return (uint64_t)seq << 32 | (uint64_t)index << 1 | (uint64_t)running;
}

/* Ring size: large rings take bigger chunks, but cost memory per worker. */
static uint64_t
pp_ring_cap(unsigned processes)
{
    uint64_t cap = PP_RING_MAX;
    while (cap > PP_RING_MIN && cap * 2 * processes > PP_RING_TOTAL)
        cap /= 2;
    return cap;
}

static size_t
pp_slot_size(uint64_t cap)
{
    return PP_SLOT_HDR + 2 * cap;
}

static struct pp_slot *
pp_slot_at(const ws_procpool *pp, unsigned k)
{
    return (struct pp_slot *)(void *)(pp->shm.base + ws__shm_data_off() +
                                      PP_CTL_SIZE +
                                      k * pp_slot_size(pp->ring_cap));
}

static unsigned char *
pp_req_data(struct pp_slot *s)
{
    return (unsigned char *)s + PP_SLOT_HDR;
}

static unsigned char *
pp_res_data(struct pp_slot *s, uint64_t cap)
{
    return (unsigned char *)s + PP_SLOT_HDR + cap;
}

/* Payload bytes of a result record of count items. */
static uint32_t
pp_res_len(int out_inline, size_t out_size, uint64_t count)
{
    return (uint32_t)(sizeof(struct pp_result) +
                      (out_inline ? round16(count * out_size) : 0) +
                      round16(count * sizeof(int)));
}

static int
pp_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void
pp_pidfd_kill(int pidfd)
{
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
}

/* Nonzero once the process behind pidfd has exited; waits up to ms. */
static int
pp_exited(int pidfd, int ms)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

static void
pp_wake_parent(struct pp_ctl *ctl)
{
    /*
     * Acq_rel read-modify-write: pairs with the exchange in
     * procpool.c:pp_wait (the argument of ring.c:ws__ring_notify): either
     * we read 1 and wake the parent, or its exchange reads ours and sees
     * the result (or death count) we published before it.
     */
    if (atomic_exchange_explicit(&ctl->parent_sleep, 0, memory_order_acq_rel) !=
        0)
        ws__shm_wake(&ctl->parent_sleep, 1);
}

/* ------------------------------------------------------------------ */
/* Worker process                                                     */
/* ------------------------------------------------------------------ */

struct pp_wstate {
    ws_procpool *pp;
    struct pp_slot *slot;
    struct ws__ring_end req, res;
    ws_map_fn fn;
    void *ctx;
    void *ctx_buf;
    size_t ctx_cap;
    size_t in_size, out_size;
    int in_mode, out_mode, timed;
    unsigned char *in_base, *out_base;
};

static int
worker_parent_gone(const ws_procpool *pp)
{
    struct pollfd p = {.fd = pp->parent_pidfd, .events = POLLIN};
    return poll(&p, 1, 0) > 0 || getppid() != pp->server_pid;
}

static void
worker_begin(struct pp_wstate *st, const void *payload)
{
    struct pp_begin b;
    memcpy(&b, payload, sizeof b);
    if (ws__shm_attach(&st->pp->shm, b.shm_size) != 0)
        _exit(2);
    st->fn = b.fn;
    st->ctx = b.ctx;
    if (b.ctx_size != 0) {
        if (b.ctx_size > st->ctx_cap) {
            free(st->ctx_buf);
            st->ctx_buf = malloc(b.ctx_size);
            st->ctx_cap = st->ctx_buf ? b.ctx_size : 0;
            if (st->ctx_buf == NULL)
                _exit(3);
        }
        memcpy(st->ctx_buf, st->pp->shm.base + b.ctx_off, b.ctx_size);
        st->ctx = st->ctx_buf;
    }
    st->in_size = b.in_size;
    st->out_size = b.out_size;
    st->in_mode = (int)b.in_mode;
    st->out_mode = (int)b.out_mode;
    st->timed = (int)b.timed;
    st->in_base = st->pp->shm.base + b.in_off;
    st->out_base = st->pp->shm.base + b.out_off;
}

static void
worker_chunk(struct pp_wstate *st, const unsigned char *payload)
{
    struct pp_chunk ch;
    memcpy(&ch, payload, offsetof(struct pp_chunk, state));
    /*
     * Claim the chunk; if the parent revoked it first, it was dealt to
     * another worker and is skipped.  One compare-exchange of the word
     * against the one in procpool.c:pp_steal decides; nothing else is
     * published through it, so relaxed.
     */
    _Atomic uint64_t *state =
        (_Atomic uint64_t *)(void *)(payload +
                                     offsetof(struct pp_chunk, state));
    uint64_t queued = (uint64_t)ch.seq << 2 | CH_QUEUED;
    if (!atomic_compare_exchange_strong_explicit(
            state, &queued, queued | CH_CLAIMED, memory_order_relaxed,
            memory_order_relaxed))
        return;
    const unsigned char *in = st->in_mode == IO_INLINE ? payload + sizeof ch
                              : st->in_mode == IO_PLACE
                                  ? st->in_base + ch.first * st->in_size
                                  : st->in_base;
    int out_inline = st->out_mode == IO_INLINE;
    uint32_t rlen = pp_res_len(out_inline, st->out_size, ch.count);
    void *buf;
    for (;;) {
        int r = ws__ring_reserve(&st->res, rlen, &buf);
        if (r == 0)
            break;
        if (r != EAGAIN)
            _exit(2);
        if (ws__ring_wait_space(&st->res, rlen, PP_IDLE_CHECK_S) == ETIMEDOUT &&
            worker_parent_gone(st->pp))
            _exit(0);
    }
    struct pp_result *h = buf;
    h->seq = ch.seq;
    h->count = ch.count;
    h->nerr = 0;
    unsigned char *out = out_inline ? (unsigned char *)buf + sizeof *h
                         : st->out_mode == IO_PLACE
                             ? st->out_base + ch.first * st->out_size
                             : st->out_base;
    int *status =
        (int *)(void *)((unsigned char *)buf + sizeof *h +
                        (out_inline ? round16(ch.count * st->out_size) : 0));
    /* Locals: fn may write any memory, so fields would be reloaded. */
    ws_map_fn fn = st->fn;
    void *ctx = st->ctx;
    size_t isz = st->in_size, osz = st->out_size;
    _Atomic uint64_t *progress = &st->slot->progress;
    _Atomic uint64_t *started = st->timed ? &st->slot->started_ns : NULL;
    uint32_t nerr = 0;
    uint64_t t0 = ws__shm_now_ns();
    for (uint32_t i = 0; i < ch.count; i++) {
        if (started != NULL)
            atomic_store_explicit(started, ws__shm_now_ns(),
                                  memory_order_relaxed);
        /*
         * Release: the start time above is visible to a parent that
         * reads this progress; pairs with the acquire load in
         * procpool.c:pp_check_timeouts.
         */
        atomic_store_explicit(progress, prog_make(ch.seq, i, 1),
                              memory_order_release);
        int e = fn(in + i * isz, out + i * osz, ctx);
        if (WS_UNLIKELY(e != 0)) {
            if (nerr == 0)
                memset(status, 0, i * sizeof *status);
            status[i] = e;
            h->nerr = ++nerr;
        } else if (WS_UNLIKELY(nerr != 0)) {
            status[i] = 0;
        }
        atomic_store_explicit(progress, prog_make(ch.seq, i + 1, 0),
                              memory_order_relaxed);
    }
    h->elapsed_ns = ws__shm_now_ns() - t0;
    ws__ring_commit(&st->res, RES_CHUNK, 0);
    pp_wake_parent(st->pp->ctl);
}

static _Noreturn void
worker_main(ws_procpool *pp, unsigned k)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != pp->server_pid)
        _exit(0);
    close(pp->sock);
    for (unsigned i = 0; i < pp->n; i++)
        if (pp->srv_pidfd[i] >= 0)
            close(pp->srv_pidfd[i]);
    if (ws__shm_attach(&pp->shm, 0) != 0)
        _exit(2);

    struct pp_wstate st = {.pp = pp, .slot = pp_slot_at(pp, k)};
    ws__ring_end_init(&st.req, &st.slot->req, pp_req_data(st.slot),
                      pp->ring_cap, PP_WORKER_SPIN);
    ws__ring_end_init(&st.res, &st.slot->res,
                      pp_res_data(st.slot, pp->ring_cap), pp->ring_cap,
                      PP_WORKER_SPIN);
    for (;;) {
        struct ws__ring_msg msg;
        int r = ws__ring_peek(&st.req, &msg);
        if (r == EAGAIN) {
            if (ws__ring_wait_data(&st.req, PP_IDLE_CHECK_S) == ETIMEDOUT &&
                worker_parent_gone(pp))
                _exit(0);
            continue;
        }
        if (r != 0)
            _exit(2);
        if (msg.tag == REQ_BEGIN && msg.len == sizeof(struct pp_begin))
            worker_begin(&st, msg.payload);
        else if (msg.tag == REQ_CHUNK && msg.len >= sizeof(struct pp_chunk))
            worker_chunk(&st, msg.payload);
        else if (msg.tag == REQ_EXIT)
            _exit(0);
        else
            _exit(2);
        ws__ring_release(&st.req);
    }
}

/* ------------------------------------------------------------------ */
/* Fork server                                                        */
/* ------------------------------------------------------------------ */

static int
pp_send(int sock, const void *buf, size_t len, int fd)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.b;
        mh.msg_controllen = sizeof u.b;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t r;
    do
        r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno;
    return r == (ssize_t)len ? 0 : EPROTO;
}

static void
server_reap(ws_procpool *pp, unsigned k)
{
    siginfo_t si;
    while (waitid((idtype_t)P_PIDFD, (id_t)pp->srv_pidfd[k], &si, WEXITED) <
               0 &&
           errno == EINTR)
        ;
    close(pp->srv_pidfd[k]);
    pp->srv_pidfd[k] = -1;
}

static void
server_spawn(ws_procpool *pp, unsigned k)
{
    struct pp_spawn_rep rep = {0};
    int fd = -1;
    if (k >= pp->n) {
        rep.err = EINVAL;
        goto reply;
    }
    /* The parent asks only once it saw the old worker dead. */
    if (pp->srv_pidfd[k] >= 0)
        server_reap(pp, k);
    pid_t pid = fork();
    if (pid == 0)
        worker_main(pp, k);
    if (pid < 0) {
        rep.err = errno;
        goto reply;
    }
    /* No race with pid reuse: only this process reaps the child. */
    fd = pp_pidfd_open(pid);
    if (fd < 0) {
        rep.err = errno;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto reply;
    }
    pp->srv_pidfd[k] = fd;
    rep.pid = pid;
reply:
    pp_send(pp->sock, &rep, sizeof rep, fd);
}

static _Noreturn void
server_main(ws_procpool *pp, pid_t parent)
{
    pp->server_pid = getpid();
    pp->parent_pidfd = pp_pidfd_open(parent);
    /* The caller may have died before we took its pidfd. */
    if (pp->parent_pidfd < 0 || getppid() != parent)
        _exit(0);
    /* Reaping is ours (a handler that reaps would race with it). */
    signal(SIGCHLD, SIG_DFL);

    for (;;) {
        struct pollfd *p = pp->srv_poll;
        p[0] = (struct pollfd){.fd = pp->sock, .events = POLLIN};
        p[1] = (struct pollfd){.fd = pp->parent_pidfd, .events = POLLIN};
        for (unsigned k = 0; k < pp->n; k++)
            p[2 + k] =
                (struct pollfd){.fd = pp->srv_pidfd[k], .events = POLLIN};
        if (poll(p, pp->n + 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents != 0)
            break;
        int died = 0;
        for (unsigned k = 0; k < pp->n; k++) {
            if (p[2 + k].revents != 0 && pp->srv_pidfd[k] >= 0) {
                server_reap(pp, k);
                died = 1;
            }
        }
        if (died) {
            /* Relaxed: the parent confirms each death on its pidfd. */
            atomic_fetch_add_explicit(&pp->ctl->deaths, 1,
                                      memory_order_relaxed);
            pp_wake_parent(pp->ctl);
        }
        if (p[0].revents != 0) {
            struct pp_spawn_req req;
            ssize_t r = recv(pp->sock, &req, sizeof req, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                break;
            if (r == (ssize_t)sizeof req)
                server_spawn(pp, req.slot);
        }
    }
    for (unsigned k = 0; k < pp->n; k++) {
        if (pp->srv_pidfd[k] >= 0) {
            pp_pidfd_kill(pp->srv_pidfd[k]);
            server_reap(pp, k);
        }
    }
    _exit(0);
}

/* ------------------------------------------------------------------ */
/* Parent: worker slots                                               */
/* ------------------------------------------------------------------ */

static void
pp_server_gone(ws_procpool *pp)
{
    if (pp->server_pidfd < 0)
        return;
    pp_pidfd_kill(pp->server_pidfd);
    pp_exited(pp->server_pidfd, -1);
    siginfo_t si;
    /* ECHILD if the caller reaps its children itself: nothing to do. */
    while (waitid((idtype_t)P_PIDFD, (id_t)pp->server_pidfd, &si, WEXITED) <
               0 &&
           errno == EINTR)
        ;
    close(pp->server_pidfd);
    pp->server_pidfd = -1;
    if (pp->sock >= 0)
        close(pp->sock);
    pp->sock = -1;
}

/* Forks a worker into slot k, whose previous worker (if any) is dead. */
static int
pp_spawn(ws_procpool *pp, unsigned k)
{
    struct pp_worker *w = &pp->w[k];
    struct pp_slot *s = w->slot;
    ws__ring_init_shared(&s->req);
    ws__ring_init_shared(&s->res);
    atomic_store_explicit(&s->progress, 0, memory_order_relaxed);
    atomic_store_explicit(&s->started_ns, 0, memory_order_relaxed);
    ws__ring_end_init(&w->req, &s->req, pp_req_data(s), pp->ring_cap, 0);
    ws__ring_end_init(&w->res, &s->res, pp_res_data(s, pp->ring_cap),
                      pp->ring_cap, 0);
    w->qhead = w->qlen = 0;
    w->begun = 0;
    w->next_seq = 1;
    w->kill_code = 0;
    w->revoked = 0;
    w->pid = -1;
    if (pp->server_pidfd < 0)
        return ECHILD;

    /* The slot is reset before the fork: the fork orders it for the new
     * worker. */
    struct pp_spawn_req req = {.slot = k};
    int err = pp_send(pp->sock, &req, sizeof req, -1);
    if (err != 0) {
        pp_server_gone(pp);
        return ECHILD;
    }
    struct pollfd p = {.fd = pp->sock, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, PP_SPAWN_WAIT_MS);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        pp_server_gone(pp);
        return ECHILD;
    }
    struct pp_spawn_rep rep;
    struct iovec iov = {.iov_base = &rep, .iov_len = sizeof rep};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.b,
                        .msg_controllen = sizeof u.b};
    ssize_t got;
    do
        got = recvmsg(pp->sock, &mh, MSG_CMSG_CLOEXEC);
    while (got < 0 && errno == EINTR);
    int fd = -1;
    struct cmsghdr *c = got > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (c != NULL && c->cmsg_level == SOL_SOCKET &&
        c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if (got != (ssize_t)sizeof rep) {
        if (fd >= 0)
            close(fd);
        pp_server_gone(pp);
        return ECHILD;
    }
    if (rep.err != 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        return rep.err != 0 ? rep.err : EPROTO;
    }
    w->pid = rep.pid;
    w->pidfd = fd;
    return 0;
}

static void pp_fail_item(struct pp_run *run, uint64_t index, int code);

/* Queues items [first, first + count) to be dealt again. */
static int
pp_add_retry(struct pp_run *run, uint64_t first, uint64_t count)
{
    if (run->stopped) {
        for (uint64_t i = 0; i < count; i++)
            pp_fail_item(run, first + i, run->stop_code);
        return 0;
    }
    if (count == 0)
        return 0;
    if (run->nretry == run->cap_retry) {
        size_t cap = run->cap_retry ? run->cap_retry * 2 : 16;
        struct pp_range *r = realloc(run->retry, cap * sizeof *r);
        if (r == NULL) {
            /* Cannot queue them: they fail rather than get lost. */
            for (uint64_t i = 0; i < count; i++)
                pp_fail_item(run, first + i, ENOMEM);
            return ENOMEM;
        }
        run->retry = r;
        run->cap_retry = cap;
    }
    run->retry[run->nretry++] = (struct pp_range){first, count};
    run->pending += count;
    return 0;
}

static void
pp_note_fail(struct pp_run *run, uint64_t index, int code)
{
    if (run->fail_code == 0 || index < run->fail_index) {
        run->fail_index = index;
        run->fail_code = code;
    }
}

/* Gives item index its final status code (nonzero). */
static void
pp_fail_item(struct pp_run *run, uint64_t index, int code)
{
    if (run->m->status != NULL)
        run->m->status[index] = code;
    pp_note_fail(run, index, code);
    run->left--;
}

/* Fails every item not dealt yet; chunks in flight still finish. */
static void
pp_stop(struct pp_run *run, int code)
{
    for (size_t i = 0; i < run->nretry; i++)
        for (uint64_t j = 0; j < run->retry[i].count; j++)
            pp_fail_item(run, run->retry[i].first + j, code);
    run->nretry = 0;
    for (; run->next < run->m->n; run->next++)
        pp_fail_item(run, run->next, code);
    run->pending = 0;
    run->stopped = 1;
    run->stop_code = code;
}

/*
 * Takes the results of items [first, first + done) of a chunk of count
 * items whose result record (payload) was filled by worker k.
 */
static void
pp_accept(struct pp_run *run, unsigned k, uint64_t first, uint32_t done,
          uint32_t count, const unsigned char *payload)
{
    const ws_map *m = run->m;
    size_t osz = m->out_size;
    unsigned char *out = (unsigned char *)m->out + first * osz;
    const unsigned char *src = NULL;
    if (run->out_mode == IO_INLINE)
        src = payload + sizeof(struct pp_result);
    else if (run->out_mode == IO_STAGE)
        src = run->stage + (size_t)k * run->stage_size + run->stage_in;
    struct pp_result h;
    memcpy(&h, payload, sizeof h);
    if (h.nerr == 0) {
        if (src != NULL)
            memcpy(out, src, done * osz);
        if (m->status != NULL)
            memset(&m->status[first], 0, done * sizeof(int));
    } else {
        const unsigned char *st =
            payload + sizeof h +
            (run->out_mode == IO_INLINE ? round16(count * osz) : 0);
        for (uint32_t i = 0; i < done; i++) {
            int s;
            memcpy(&s, st + i * sizeof s, sizeof s);
            if (m->status != NULL)
                m->status[first + i] = s;
            if (s != 0)
                pp_note_fail(run, first + i, s);
            else if (src != NULL)
                memcpy(out + i * osz, src + i * osz, osz);
        }
    }
    run->left -= done;
    if (done != 0)
        run->barren = 0;
}

/* Drains worker k's committed results.  0, or EPROTO. */
static int
pp_collect(ws_procpool *pp, struct pp_run *run, unsigned k, unsigned *got)
{
    struct pp_worker *w = &pp->w[k];
    int out_inline = run->out_mode == IO_INLINE;
    struct ws__ring_msg msg;
    int r;
    while ((r = ws__ring_peek(&w->res, &msg)) == 0) {
        if (w->qlen == 0 || msg.tag != RES_CHUNK)
            return EPROTO;
        struct pp_inflight *c = &w->q[w->qhead];
        if (msg.len != pp_res_len(out_inline, run->m->out_size, c->count))
            return EPROTO;
        struct pp_result h;
        memcpy(&h, msg.payload, sizeof h);
        if (h.seq != c->seq || h.count != c->count)
            return EPROTO;
        pp_accept(run, k, c->first, c->count, c->count, msg.payload);
        double ns = (double)h.elapsed_ns / c->count;
        if (ns < 1e10)
            run->ns_per_item = run->ns_per_item == 0
                                   ? ns
                                   : 0.75 * run->ns_per_item + 0.25 * ns;
        w->qhead = (w->qhead + 1) % PP_DEPTH;
        w->qlen--;
        w->revoked = 0;
        ws__ring_release(&w->res);
        (*got)++;
    }
    if (*got != 0)
        ws__ring_notify_space(&w->res);
    return r == EAGAIN ? 0 : EPROTO;
}

/*
 * Worker k is dead or must die: make sure it is gone, settle what it held
 * (results it committed, the items it finished, the one it was running),
 * queue the rest again and fork a replacement.
 */
static void
pp_lost(ws_procpool *pp, struct pp_run *run, unsigned k, int code)
{
    struct pp_worker *w = &pp->w[k];
    if (w->pidfd < 0)
        return;
    if (!pp_exited(w->pidfd, 0)) {
        pp_pidfd_kill(w->pidfd);
        pp_exited(w->pidfd, -1);
    }
    close(w->pidfd);
    w->pidfd = -1;
    if (w->kill_code != 0)
        code = w->kill_code;

    if (run != NULL) {
        unsigned got = 0;
        uint64_t settled = run->left;
        pp_collect(pp, run, k, &got);
        if (w->qlen != 0) {
            struct pp_inflight c = w->q[w->qhead];
            w->qhead = (w->qhead + 1) % PP_DEPTH;
            w->qlen--;
            /* What the dead worker said it was doing, read once. */
            uint64_t p =
                atomic_load_explicit(&w->slot->progress, memory_order_relaxed);
            uint32_t seq = (uint32_t)(p >> 32);
            uint32_t index = (uint32_t)(p >> 1) & 0x7fffffffu;
            int running = (int)(p & 1);
            if (seq == c.seq && index <= c.count &&
                (index < c.count || !running)) {
                const unsigned char *payload = ws__ring_next_payload(
                    &w->res, pp_res_len(run->out_mode == IO_INLINE,
                                        run->m->out_size, c.count));
                pp_accept(run, k, c.first, index, c.count, payload);
                if (running) {
                    pp_fail_item(run, c.first + index, code);
                    index++;
                }
                pp_add_retry(run, c.first + index, c.count - index);
            } else if (seq < c.seq && !running) {
                /* It had not started this chunk. */
                pp_add_retry(run, c.first, c.count);
            } else {
                /* Progress it could not have written honestly. */
                pp_fail_item(run, c.first, EPROTO);
                pp_add_retry(run, c.first + 1, c.count - 1);
            }
            while (w->qlen != 0) {
                c = w->q[w->qhead];
                w->qhead = (w->qhead + 1) % PP_DEPTH;
                w->qlen--;
                pp_add_retry(run, c.first, c.count);
            }
        }
        if (run->left == settled)
            run->barren++;
    }
    pp->spawn_err = pp_spawn(pp, k);
}

/* Polls the pidfds when the fork server reported a death, or if forced. */
static void
pp_check_deaths(ws_procpool *pp, struct pp_run *run, int force)
{
    uint32_t d = atomic_load_explicit(&pp->ctl->deaths, memory_order_relaxed);
    if (d == pp->deaths_seen && !force)
        return;
    pp->deaths_seen = d;
    for (unsigned k = 0; k < pp->n; k++)
        if (pp->w[k].pidfd >= 0 && pp_exited(pp->w[k].pidfd, 0))
            pp_lost(pp, run, k, EOWNERDEAD);
    if (pp->server_pidfd >= 0 && pp_exited(pp->server_pidfd, 0))
        pp_server_gone(pp);
}

static unsigned
pp_alive(const ws_procpool *pp)
{
    unsigned a = 0;
    for (unsigned k = 0; k < pp->n; k++)
        a += pp->w[k].pidfd >= 0;
    return a;
}

/* ------------------------------------------------------------------ */
/* Parent: dealing chunks                                             */
/* ------------------------------------------------------------------ */

static uint64_t
pp_chunk_count(ws_procpool *pp, struct pp_run *run)
{
    uint64_t c = run->m->chunk;
    if (c == 0) {
        unsigned a = pp_alive(pp);
        c = (run->pending + 4 * a - 1) / (4 * (uint64_t)(a ? a : 1));
        if (run->ns_per_item > 0) {
            double least = PP_CHUNK_NS / run->ns_per_item;
            if (least > (double)c)
                c = least > (double)run->cmax ? run->cmax : (uint64_t)least;
        }
    }
    if (c > run->cmax)
        c = run->cmax;
    return c ? c : 1;
}

static int
pp_send_begin(ws_procpool *pp, struct pp_run *run, unsigned k)
{
    struct pp_worker *w = &pp->w[k];
    const ws_map *m = run->m;
    void *p;
    int r = ws__ring_reserve(&w->req, sizeof(struct pp_begin), &p);
    if (r != 0)
        return r;
    struct pp_begin b = {
        .fn = m->fn,
        .ctx = m->ctx,
        .map_id = run->id,
        .ctx_size = m->ctx_size,
        .in_size = m->in_size,
        .out_size = m->out_size,
        .shm_size = ws__shm_size(&pp->shm),
        .in_mode = (uint32_t)run->in_mode,
        .out_mode = (uint32_t)run->out_mode,
        .timed = run->timeout_ns != 0,
    };
    if (run->ctx_stage != NULL)
        b.ctx_off = (uint64_t)((unsigned char *)run->ctx_stage - pp->shm.base);
    size_t stage = run->stage ? (size_t)(run->stage - pp->shm.base) +
                                    (size_t)k * run->stage_size
                              : 0;
    b.in_off = run->in_mode == IO_PLACE ? run->in_off : stage;
    b.out_off =
        run->out_mode == IO_PLACE ? run->out_off : stage + run->stage_in;
    memcpy(p, &b, sizeof b);
    ws__ring_commit(&w->req, REQ_BEGIN, 0);
    w->begun = run->id;
    return 0;
}

/* Deals one chunk to worker k.  0, EAGAIN (ring full) or EPROTO. */
static int
pp_send_chunk(ws_procpool *pp, struct pp_run *run, unsigned k)
{
    struct pp_worker *w = &pp->w[k];
    const ws_map *m = run->m;
    if (w->begun != run->id) {
        int r = pp_send_begin(pp, run, k);
        if (r != 0)
            return r;
    }
    uint64_t want = pp_chunk_count(pp, run), first, count;
    struct pp_range *rr = run->nretry ? &run->retry[run->nretry - 1] : NULL;
    if (rr != NULL) {
        first = rr->first;
        count = rr->count < want ? rr->count : want;
    } else {
        first = run->next;
        count = m->n - first < want ? m->n - first : want;
    }
    size_t inl = run->in_mode == IO_INLINE ? count * m->in_size : 0;
    void *p;
    int r = ws__ring_reserve(&w->req, (uint32_t)(sizeof(struct pp_chunk) + inl),
                             &p);
    if (r != 0)
        return r;
    struct pp_chunk ch = {
        .first = first, .seq = w->next_seq++, .count = (uint32_t)count};
    memcpy(p, &ch, offsetof(struct pp_chunk, state));
    _Atomic uint64_t *state =
        (_Atomic uint64_t *)(void *)((unsigned char *)p +
                                     offsetof(struct pp_chunk, state));
    /* Published with the record by ws__ring_commit. */
    atomic_store_explicit(state, (uint64_t)ch.seq << 2 | CH_QUEUED,
                          memory_order_relaxed);
    const unsigned char *in = (const unsigned char *)m->in + first * m->in_size;
    if (inl != 0)
        memcpy((unsigned char *)p + sizeof ch, in, inl);
    else if (run->in_mode == IO_STAGE)
        memcpy(run->stage + (size_t)k * run->stage_size, in, m->in_size);
    ws__ring_commit(&w->req, REQ_CHUNK, 0);

    if (rr != NULL) {
        rr->first += count;
        rr->count -= count;
        if (rr->count == 0)
            run->nretry--;
    } else {
        run->next += count;
    }
    run->pending -= count;
    unsigned t = (w->qhead + w->qlen) % PP_DEPTH;
    w->q[t] = (struct pp_inflight){.first = first,
                                   .seq = ch.seq,
                                   .count = (uint32_t)count,
                                   .state = state};
    w->qlen++;
    return 0;
}

static void
pp_deal(ws_procpool *pp, struct pp_run *run)
{
    unsigned char told[WS__PROCPOOL_MAX / 8 + 1] = {0};
    /*
     * A worker whose chunks were taken back gets none until it delivers a
     * result: handing them straight back would undo the stealing.  Unless
     * no other worker can take them.
     */
    unsigned eligible = 0;
    for (unsigned k = 0; k < pp->n; k++)
        eligible += pp->w[k].pidfd >= 0 && !pp->w[k].revoked;
    if (eligible == 0)
        for (unsigned k = 0; k < pp->n; k++)
            pp->w[k].revoked = 0;
    for (unsigned d = 0; d < run->depth; d++) {
        for (unsigned k = 0; k < pp->n && run->pending != 0; k++) {
            struct pp_worker *w = &pp->w[k];
            if (w->pidfd < 0 || w->qlen > d || w->revoked)
                continue;
            int r = pp_send_chunk(pp, run, k);
            if (r == 0) {
                told[k / 8] |= (unsigned char)(1u << (k % 8));
            } else if (r == EPROTO) {
                w->kill_code = EPROTO;
                pp_lost(pp, run, k, EPROTO);
            }
        }
    }
    for (unsigned k = 0; k < pp->n; k++)
        if ((told[k / 8] >> (k % 8)) & 1 && pp->w[k].pidfd >= 0)
            ws__ring_notify(&pp->w[k].req);
}

/*
 * When nothing is left to deal and a worker is idle, takes back the last
 * chunk each other worker has queued but not started, to be dealt again:
 * a worker the host is not running must not hold up the end of a map.
 * Returns how many chunks it took back.
 */
static unsigned
pp_steal(ws_procpool *pp, struct pp_run *run)
{
    if (run->pending != 0 || run->stopped)
        return 0;
    unsigned idle = 0, taken = 0;
    for (unsigned k = 0; k < pp->n; k++)
        idle += pp->w[k].pidfd >= 0 && pp->w[k].qlen == 0 && !pp->w[k].revoked;
    if (idle == 0)
        return 0;
    for (unsigned k = 0; k < pp->n; k++) {
        struct pp_worker *w = &pp->w[k];
        if (w->pidfd < 0 || w->qlen == 0)
            continue;
        struct pp_inflight *c = &w->q[(w->qhead + w->qlen - 1) % PP_DEPTH];
        uint64_t queued = (uint64_t)c->seq << 2 | CH_QUEUED;
        /* Against the claim in procpool.c:worker_chunk; relaxed there. */
        if (!atomic_compare_exchange_strong_explicit(
                c->state, &queued, queued | CH_REVOKED, memory_order_relaxed,
                memory_order_relaxed))
            continue;
        w->qlen--;
        w->revoked = 1;
        pp_add_retry(run, c->first, c->count);
        atomic_fetch_add_explicit(&pp->stolen, 1, memory_order_relaxed);
        taken++;
    }
    return taken;
}

/* Kills workers whose running item is past timeout_s; the next deadline. */
static uint64_t
pp_check_timeouts(ws_procpool *pp, struct pp_run *run)
{
    if (run->timeout_ns == 0)
        return UINT64_MAX;
    uint64_t now = ws__shm_now_ns(), next = UINT64_MAX;
    uint64_t recheck =
        run->timeout_ns < PP_TICK_NS ? run->timeout_ns / 2 + 1 : PP_TICK_NS;
    for (unsigned k = 0; k < pp->n; k++) {
        struct pp_worker *w = &pp->w[k];
        if (w->pidfd < 0 || w->qlen == 0)
            continue;
        /*
         * Acquire: pairs with the release store in
         * procpool.c:worker_chunk, so started_ns is this item's start or
         * a later item's, never an earlier one's.
         */
        uint64_t p =
            atomic_load_explicit(&w->slot->progress, memory_order_acquire);
        if (!(p & 1) || (uint32_t)(p >> 32) != w->q[w->qhead].seq) {
            if (now + recheck < next)
                next = now + recheck;
            continue;
        }
        uint64_t start =
            atomic_load_explicit(&w->slot->started_ns, memory_order_relaxed);
        if (start > now)
            start = now;
        if (now - start >= run->timeout_ns) {
            w->kill_code = ETIMEDOUT;
            pp_lost(pp, run, k, ETIMEDOUT);
            continue;
        }
        if (start + run->timeout_ns < next)
            next = start + run->timeout_ns;
    }
    return next;
}

static int
pp_any_result(ws_procpool *pp)
{
    for (unsigned k = 0; k < pp->n; k++)
        if (pp->w[k].pidfd >= 0 && ws__ring_readable(&pp->w[k].res))
            return 1;
    return atomic_load_explicit(&pp->ctl->deaths, memory_order_relaxed) !=
           pp->deaths_seen;
}

/* Sleeps until a result or a death, or until deadline (ns). */
static void
pp_wait(ws_procpool *pp, uint64_t deadline)
{
    for (unsigned i = 0; i < PP_PARENT_SPIN; i++) {
        if (pp_any_result(pp))
            return;
        ws_cpu_relax();
    }
    /*
     * Acq_rel: pairs with the exchange in procpool.c:pp_wake_parent; if
     * it came first, the recheck below sees what it published.
     */
    atomic_exchange_explicit(&pp->ctl->parent_sleep, 1, memory_order_acq_rel);
    if (!pp_any_result(pp)) {
        uint64_t now = ws__shm_now_ns();
        if (deadline > now)
            ws__shm_wait(&pp->ctl->parent_sleep, 1,
                         (double)(deadline - now) * 1e-9);
    }
    atomic_store_explicit(&pp->ctl->parent_sleep, 0, memory_order_relaxed);
}

/* The thread map's checks (loop.c), and those of the fields only the
 * process map reads. */
static int
pp_map_check(const ws_map *m)
{
    int err = ws__loop_map_check(m);
    if (err != 0)
        return err;
    if (isnan(m->timeout_s) || (m->ctx_size != 0 && m->ctx == NULL))
        return EINVAL;
    return 0;
}

/* Where inputs or outputs go, and the most items per chunk for them. */
static int
pp_mode(ws_procpool *pp, const void *buf, size_t n, size_t size, size_t extra,
        size_t *off, uint64_t *cmax)
{
    uint32_t budget = ws__ring_max_payload(pp->ring_cap) / 2 - 64;
    *off = ws__shm_offset(&pp->shm, buf, n * size);
    if (*off != SIZE_MAX) {
        *cmax = extra ? budget / extra : UINT64_MAX;
        return IO_PLACE;
    }
    if (size + extra <= budget) {
        *cmax = budget / (size + extra);
        return IO_INLINE;
    }
    *cmax = 1;
    return IO_STAGE;
}

static size_t
round64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static int
pp_run_init(ws_procpool *pp, struct pp_run *run, const ws_map *m)
{
    memset(run, 0, sizeof *run);
    run->m = m;
    run->id = ++pp->map_id;
    run->pending = run->left = m->n;
    if (m->timeout_s > 0) {
        double ns = m->timeout_s * 1e9;
        run->timeout_ns = ns > 1e18 ? UINT64_C(1000000000000000000)
                          : ns < 1  ? 1
                                    : (uint64_t)ns;
    }
    uint64_t cin, cout;
    run->in_mode = pp_mode(pp, m->in, m->n, m->in_size, 0, &run->in_off, &cin);
    run->out_mode = pp_mode(pp, m->out, m->n, m->out_size, sizeof(int),
                            &run->out_off, &cout);
    run->cmax = cin < cout ? cin : cout;
    if (run->cmax > 0x7fffffff)
        run->cmax = 0x7fffffff;
    run->depth = PP_DEPTH;
    if (run->in_mode == IO_STAGE || run->out_mode == IO_STAGE) {
        run->cmax = 1;
        run->depth = 1;
        run->stage_in = run->in_mode == IO_STAGE ? round64(m->in_size) : 0;
        run->stage_size =
            run->stage_in +
            (run->out_mode == IO_STAGE ? round64(m->out_size) : 0);
        if (run->stage_size > SIZE_MAX / pp->n)
            return ENOMEM;
        run->stage = ws__shm_alloc(&pp->shm, run->stage_size * pp->n);
        if (run->stage == NULL)
            return ENOMEM;
    }
    if (m->ctx_size != 0) {
        run->ctx_stage = ws__shm_alloc(&pp->shm, m->ctx_size);
        if (run->ctx_stage == NULL) {
            if (run->stage != NULL)
                ws__shm_free(&pp->shm, run->stage);
            return ENOMEM;
        }
        memcpy(run->ctx_stage, m->ctx, m->ctx_size);
    }
    return 0;
}

static void
pp_run_fini(ws_procpool *pp, struct pp_run *run)
{
    if (run->stage != NULL)
        ws__shm_free(&pp->shm, run->stage);
    if (run->ctx_stage != NULL)
        ws__shm_free(&pp->shm, run->ctx_stage);
    free(run->retry);
}

int
ws_procpool_map(ws_procpool *pp, const ws_map *m)
{
    if (pp == NULL)
        return EINVAL;
    int err = pp_map_check(m);
    if (err != 0 || m->n == 0)
        return err;
    if (getpid() != pp->creator)
        return EINVAL;
    pthread_mutex_lock(&pp->lock);

    /* Replace workers lost since the last map. */
    pp_check_deaths(pp, NULL, 1);
    for (unsigned k = 0; k < pp->n; k++) {
        if (pp->w[k].pidfd < 0)
            pp->spawn_err = pp_spawn(pp, k);
        pp->w[k].revoked = 0;
    }
    if (pp_alive(pp) == 0) {
        err = pp->spawn_err ? pp->spawn_err : ECHILD;
        goto out;
    }

    struct pp_run run;
    err = pp_run_init(pp, &run, m);
    if (err != 0)
        goto out;
    uint64_t tick = ws__shm_now_ns() + PP_TICK_NS;
    while (run.left != 0) {
        pp_deal(pp, &run);
        unsigned got = 0;
        for (unsigned k = 0; k < pp->n; k++) {
            if (pp->w[k].pidfd >= 0 && pp_collect(pp, &run, k, &got) != 0) {
                pp->w[k].kill_code = EPROTO;
                pp_lost(pp, &run, k, EPROTO);
            }
        }
        if (run.left == 0)
            break;
        uint64_t now = ws__shm_now_ns();
        int force = now >= tick;
        if (force)
            tick = now + PP_TICK_NS;
        pp_check_deaths(pp, &run, force);
        uint64_t deadline = pp_check_timeouts(pp, &run);
        if (!run.stopped && (pp_alive(pp) == 0 || run.barren > 2 * pp->n + 2))
            pp_stop(&run, pp->spawn_err ? pp->spawn_err : ECHILD);
        if (got == 0 && run.left != 0 && pp_steal(pp, &run) == 0)
            pp_wait(pp, deadline < tick ? deadline : tick);
    }
    err = run.fail_code;
    pp_run_fini(pp, &run);
out:
    pthread_mutex_unlock(&pp->lock);
    return err;
}

/* ------------------------------------------------------------------ */
/* Create, destroy, shared allocations                                */
/* ------------------------------------------------------------------ */

/* One worker per core the process may use, as for thread pools. */
static int
pp_default_size(unsigned *n)
{
    ws__plan *plan;
    int err = ws__plan_create(&plan, 0, WS_BIND_NONE, NULL);
    if (err != 0)
        return err;
    *n = ws__plan_cores(plan);
    ws__plan_destroy(plan);
    if (*n == 0)
        *n = 1;
    return 0;
}

static void
pp_free(ws_procpool *pp)
{
    free(pp->w);
    free(pp->srv_pidfd);
    free(pp->srv_poll);
    free(pp);
}

/* Stops the workers and the fork server and releases everything. */
static void
pp_teardown(ws_procpool *pp)
{
    for (unsigned k = 0; k < pp->n; k++) {
        struct pp_worker *w = &pp->w[k];
        void *p;
        if (w->pidfd >= 0 && ws__ring_reserve(&w->req, 0, &p) == 0) {
            ws__ring_commit(&w->req, REQ_EXIT, 0);
            ws__ring_notify(&w->req);
        }
    }
    uint64_t deadline = ws__shm_now_ns() + PP_EXIT_WAIT_MS * UINT64_C(1000000);
    for (unsigned k = 0; k < pp->n; k++) {
        struct pp_worker *w = &pp->w[k];
        if (w->pidfd < 0)
            continue;
        uint64_t now = ws__shm_now_ns();
        int ms = now < deadline ? (int)((deadline - now) / 1000000) : 0;
        if (!pp_exited(w->pidfd, ms)) {
            pp_pidfd_kill(w->pidfd);
            pp_exited(w->pidfd, -1);
        }
        close(w->pidfd);
        w->pidfd = -1;
    }
    if (pp->sock >= 0) {
        close(pp->sock);
        pp->sock = -1;
    }
    if (pp->server_pidfd >= 0) {
        if (!pp_exited(pp->server_pidfd, PP_EXIT_WAIT_MS))
            pp_pidfd_kill(pp->server_pidfd);
        pp_server_gone(pp);
    }
    ws__shm_destroy(&pp->shm);
    pthread_mutex_destroy(&pp->lock);
    pp_free(pp);
}

int
ws_procpool_create(ws_procpool **out, unsigned processes)
{
    if (out == NULL || processes > WS__PROCPOOL_MAX)
        return EINVAL;
    if (processes == 0) {
        int err = pp_default_size(&processes);
        if (err != 0)
            return err;
        if (processes > WS__PROCPOOL_MAX)
            processes = WS__PROCPOOL_MAX;
    }

    ws_procpool *pp = calloc(1, sizeof *pp);
    if (pp == NULL)
        return ENOMEM;
    pp->n = processes;
    pp->w = calloc(processes, sizeof *pp->w);
    pp->srv_pidfd = malloc(processes * sizeof *pp->srv_pidfd);
    pp->srv_poll = malloc((processes + 2) * sizeof *pp->srv_poll);
    if (pp->w == NULL || pp->srv_pidfd == NULL || pp->srv_poll == NULL) {
        pp_free(pp);
        return ENOMEM;
    }
    for (unsigned k = 0; k < processes; k++) {
        pp->w[k].pidfd = -1;
        pp->srv_pidfd[k] = -1;
    }
    pp->server_pidfd = pp->sock = pp->parent_pidfd = -1;
    int err = pthread_mutex_init(&pp->lock, NULL);
    if (err != 0) {
        pp_free(pp);
        return err;
    }
    pp->ring_cap = pp_ring_cap(processes);
    err = ws__shm_create(&pp->shm,
                         PP_CTL_SIZE + processes * pp_slot_size(pp->ring_cap),
                         PP_HEAP_START, PP_SHM_MAX);
    if (err != 0) {
        pthread_mutex_destroy(&pp->lock);
        pp_free(pp);
        return err;
    }
    pp->ctl = (struct pp_ctl *)(void *)(pp->shm.base + ws__shm_data_off());
    pp->ctl->magic = PP_MAGIC;
    pp->ctl->version = PP_VERSION;
    pp->ctl->nslots = processes;
    pp->ctl->ring_cap = pp->ring_cap;
    pp->ctl->slot_size = pp_slot_size(pp->ring_cap);
    for (unsigned k = 0; k < processes; k++)
        pp->w[k].slot = pp_slot_at(pp, k);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        err = errno;
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        pp->sock = sv[1];
        server_main(pp, parent);
    }
    close(sv[1]);
    pp->sock = sv[0];
    if (pid < 0) {
        err = errno;
        goto fail;
    }
    pp->server_pid = pid;
    pp->server_pidfd = pp_pidfd_open(pid);
    if (pp->server_pidfd < 0) {
        err = errno;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto fail;
    }
    for (unsigned k = 0; k < processes; k++) {
        err = pp_spawn(pp, k);
        if (err != 0)
            goto fail;
    }
    pp->creator = parent;
    *out = pp;
    return 0;
fail:
    pp_teardown(pp);
    return err;
}

int
ws_procpool_destroy(ws_procpool *pp)
{
    if (pp == NULL || getpid() != pp->creator)
        return EINVAL;
    pthread_mutex_lock(&pp->lock);
    pthread_mutex_unlock(&pp->lock);
    pp_teardown(pp);
    return 0;
}

void *
ws_shm_alloc(ws_procpool *pp, size_t size)
{
    if (pp == NULL || size == 0 || getpid() != pp->creator)
        return NULL;
    return ws__shm_alloc(&pp->shm, size);
}

void
ws_shm_free(ws_procpool *pp, void *p)
{
    if (pp == NULL || p == NULL || getpid() != pp->creator)
        return;
    int err = ws__shm_free(&pp->shm, p);
    WS_ASSERT(err == 0);
    (void)err;
}

unsigned
ws__procpool_size(const ws_procpool *pp)
{
    return pp->n;
}

pid_t
ws__procpool_worker_pid(const ws_procpool *pp, unsigned i)
{
    return i < pp->n && pp->w[i].pidfd >= 0 ? pp->w[i].pid : -1;
}

pid_t
ws__procpool_server_pid(const ws_procpool *pp)
{
    return pp->server_pidfd >= 0 ? pp->server_pid : -1;
}

_Atomic uint64_t *
ws__procpool_result_head(const ws_procpool *pp, unsigned i)
{
    return i < pp->n ? &pp_slot_at(pp, i)->res.head : NULL;
}

uint64_t
ws__procpool_stolen(const ws_procpool *pp)
{
    return atomic_load_explicit(&pp->stolen, memory_order_relaxed);
}
