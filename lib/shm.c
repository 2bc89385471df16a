/*
 * Shared memory for the multi-process mode.
 *
 * A region is one memfd (never a named shm_open segment, which a killed
 * process leaks in /dev/shm) mapped MAP_SHARED inside a PROT_NONE
 * reservation of address space.  Processes forked after the region is
 * created inherit the reservation and the mapping, so every address in it
 * means the same thing in all of them.  When the creator's heap grows, it
 * extends the memfd, allocates the new pages (posix_fallocate, so that a
 * full tmpfs is an ENOSPC here and not a SIGBUS in some process later) and
 * maps them over its reservation; the other processes map the same pages
 * over theirs when they are told the new size (ws__shm_attach).
 *
 * Layout: a header (magic, layout version, sizes) at offset 0, the caller's
 * fixed part, then the heap.  The heap's block list lives in the creator's
 * private memory: the other processes may scribble on shared memory, and
 * the allocator must not trust anything they can write.
 *
 * Waits between processes are futex words in the region, waited on with
 * the process-shared (non-private) futex operations.  Callers always pass
 * a timeout: a waker that dies before it wakes must not strand a waiter.
 */
#define _GNU_SOURCE
#include <config.h>

#include "shm.h"

#include "arch.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

/* Growth of the heap, and the smallest reservation worth trying. */
#define SHM_GROW_STEP ((size_t)2 << 20)
#define SHM_PAGE ((size_t)4096)

static size_t
round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

size_t
ws__shm_data_off(void)
{
    return round_up(sizeof(struct ws__shm_hdr), WS__SHM_ALIGN);
}

static struct ws__shm_hdr *
shm_hdr(const struct ws__shm *shm)
{
    return (struct ws__shm_hdr *)(void *)shm->base;
}

/* Allocates [from, to) of the memfd and maps it at the same offset. */
static int
shm_back(struct ws__shm *shm, size_t from, size_t to)
{
    if (ftruncate(shm->fd, (off_t)to) != 0)
        return errno;
    int r = posix_fallocate(shm->fd, (off_t)from, (off_t)(to - from));
    if (r != 0) {
        if (ftruncate(shm->fd, (off_t)from) != 0)
            return r;
        return r == EFBIG ? ENOSPC : r;
    }
    void *p = mmap(shm->base + from, to - from, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED, shm->fd, (off_t)from);
    if (p == MAP_FAILED) {
        r = errno;
        if (ftruncate(shm->fd, (off_t)from) != 0)
            return r;
        return r;
    }
    return 0;
}

static int
shm_memfd(void)
{
    int fd = memfd_create("wsched", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create("wsched", MFD_CLOEXEC);
    return fd;
}

int
ws__shm_create(struct ws__shm *shm, size_t data_size, size_t heap_size,
               size_t max_size)
{
    size_t data_off = ws__shm_data_off();
    if (data_size > SIZE_MAX / 4 || heap_size > SIZE_MAX / 4)
        return ENOMEM;
    size_t heap_off = round_up(data_off + data_size, SHM_PAGE);
    size_t size = round_up(heap_off + heap_size, SHM_PAGE);
    if (max_size < size)
        max_size = size;
    max_size = round_up(max_size, SHM_PAGE);

    memset(shm, 0, sizeof *shm);
    shm->fd = shm_memfd();
    if (shm->fd < 0)
        return errno == ENOSYS ? ENOSYS : errno;

    /*
     * Reserve the address space the heap may grow into.  PROT_NONE and
     * MAP_NORESERVE cost neither memory nor commit charge; a smaller
     * reservation is tried when the address space is limited (ulimit -v).
     */
    void *base = MAP_FAILED;
    for (size_t r = max_size; r >= size; r /= 2) {
        base = mmap(NULL, r, PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base != MAP_FAILED) {
            shm->reserved = r;
            break;
        }
        if (r == size)
            break;
        if (r / 2 < size)
            r = size * 2;
    }
    if (base == MAP_FAILED) {
        close(shm->fd);
        shm->fd = -1;
        return ENOMEM;
    }
    shm->base = base;

    int err = shm_back(shm, 0, size);
    if (err == 0)
        err = pthread_mutex_init(&shm->lock, NULL);
    if (err != 0) {
        munmap(shm->base, shm->reserved);
        close(shm->fd);
        shm->fd = -1;
        return err;
    }
    shm->mapped = size;
    shm->heap_off = heap_off;
    if (size > heap_off) {
        shm->blocks = malloc(sizeof *shm->blocks * 8);
        if (shm->blocks == NULL) {
            ws__shm_destroy(shm);
            return ENOMEM;
        }
        shm->cap_blocks = 8;
        shm->blocks[0] =
            (struct ws__shm_block){.off = heap_off, .size = size - heap_off};
        shm->nblocks = 1;
    }

    struct ws__shm_hdr *h = shm_hdr(shm);
    h->magic = WS__SHM_MAGIC;
    h->version = WS__SHM_VERSION;
    h->hdr_size = sizeof *h;
    h->reserved = shm->reserved;
    h->data_size = data_size;
    /* Nothing reads size before the processes are forked: relaxed. */
    atomic_store_explicit(&h->size, size, memory_order_relaxed);
    return 0;
}

void
ws__shm_destroy(struct ws__shm *shm)
{
    if (shm->fd < 0)
        return;
    munmap(shm->base, shm->reserved);
    close(shm->fd);
    shm->fd = -1;
    shm->base = NULL;
    pthread_mutex_destroy(&shm->lock);
    free(shm->blocks);
    shm->blocks = NULL;
    shm->nblocks = shm->cap_blocks = 0;
}

int
ws__shm_attach(struct ws__shm *shm, uint64_t size)
{
    const struct ws__shm_hdr *h = shm_hdr(shm);
    if (h->magic != WS__SHM_MAGIC || h->version != WS__SHM_VERSION ||
        h->hdr_size != sizeof *h)
        return EPROTO;
    if (size <= shm->mapped)
        return 0;
    if (size > shm->reserved || size % SHM_PAGE != 0)
        return EPROTO;
    void *p = mmap(shm->base + shm->mapped, size - shm->mapped,
                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shm->fd,
                   (off_t)shm->mapped);
    if (p == MAP_FAILED)
        return errno;
    shm->mapped = size;
    return 0;
}

uint64_t
ws__shm_size(struct ws__shm *shm)
{
    pthread_mutex_lock(&shm->lock);
    uint64_t size = shm->mapped;
    pthread_mutex_unlock(&shm->lock);
    return size;
}

/* Offset of [p, p + size) in the mapping; the caller holds the lock. */
static size_t
shm_offset(const struct ws__shm *shm, const void *p, size_t size)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)shm->base;
    if (a < b || a - b > shm->mapped || size > shm->mapped - (a - b))
        return SIZE_MAX;
    return a - b;
}

size_t
ws__shm_offset(struct ws__shm *shm, const void *p, size_t size)
{
    pthread_mutex_lock(&shm->lock);
    size_t off = shm_offset(shm, p, size);
    pthread_mutex_unlock(&shm->lock);
    return off;
}

/* Heap.  Blocks tile [heap_off, mapped) in offset order. */

static int
blocks_insert(struct ws__shm *shm, size_t at, struct ws__shm_block b)
{
    if (shm->nblocks == shm->cap_blocks) {
        size_t cap = shm->cap_blocks ? shm->cap_blocks * 2 : 8;
        struct ws__shm_block *nb =
            realloc(shm->blocks, cap * sizeof *shm->blocks);
        if (nb == NULL)
            return ENOMEM;
        shm->blocks = nb;
        shm->cap_blocks = cap;
    }
    memmove(&shm->blocks[at + 1], &shm->blocks[at],
            (shm->nblocks - at) * sizeof *shm->blocks);
    shm->blocks[at] = b;
    shm->nblocks++;
    return 0;
}

static void
blocks_remove(struct ws__shm *shm, size_t at)
{
    memmove(&shm->blocks[at], &shm->blocks[at + 1],
            (shm->nblocks - at - 1) * sizeof *shm->blocks);
    shm->nblocks--;
}

/* Makes the heap end in a free block of at least need bytes; its index. */
static int
heap_grow(struct ws__shm *shm, size_t need, size_t *index)
{
    size_t have = 0;
    struct ws__shm_block *last =
        shm->nblocks ? &shm->blocks[shm->nblocks - 1] : NULL;
    if (last != NULL && !last->used)
        have = last->size;
    size_t grow = round_up(need - have, SHM_GROW_STEP);
    if (grow > shm->reserved - shm->mapped) {
        grow = round_up(need - have, SHM_PAGE);
        if (grow > shm->reserved - shm->mapped)
            return ENOMEM;
    }
    /* Reserve the list entry first, so a failure changes nothing. */
    if (have == 0 && shm->nblocks == shm->cap_blocks) {
        int err = blocks_insert(shm, shm->nblocks, (struct ws__shm_block){0});
        if (err != 0)
            return err;
        shm->nblocks--;
    }
    size_t old = shm->mapped;
    int err = shm_back(shm, old, old + grow);
    if (err != 0)
        return err;
    shm->mapped = old + grow;
    /*
     * Publish the new size for ws__shm_attach callers that read it from
     * the header; the processes that use the new pages are also told the
     * size through their own channel, which orders the mapping for them.
     */
    atomic_store_explicit(&shm_hdr(shm)->size, shm->mapped,
                          memory_order_relaxed);
    if (have != 0) {
        last->size += grow;
    } else {
        blocks_insert(shm, shm->nblocks,
                      (struct ws__shm_block){.off = old, .size = grow});
    }
    *index = shm->nblocks - 1;
    return 0;
}

void *
ws__shm_alloc(struct ws__shm *shm, size_t size)
{
    if (size == 0 || size > SIZE_MAX / 2)
        return NULL;
    size_t need = round_up(size, WS__SHM_ALIGN);
    void *p = NULL;
    pthread_mutex_lock(&shm->lock);
    size_t i;
    for (i = 0; i < shm->nblocks; i++)
        if (!shm->blocks[i].used && shm->blocks[i].size >= need)
            break;
    if (i == shm->nblocks && heap_grow(shm, need, &i) != 0)
        goto out;
    struct ws__shm_block *b = &shm->blocks[i];
    if (b->size > need) {
        struct ws__shm_block rest = {.off = b->off + need,
                                     .size = b->size - need};
        if (blocks_insert(shm, i + 1, rest) != 0)
            goto out;
        b = &shm->blocks[i];
        b->size = need;
    }
    b->used = 1;
    p = shm->base + b->off;
out:
    pthread_mutex_unlock(&shm->lock);
    return p;
}

int
ws__shm_free(struct ws__shm *shm, void *p)
{
    int err = EINVAL;
    pthread_mutex_lock(&shm->lock);
    size_t off = shm_offset(shm, p, 0);
    if (off == SIZE_MAX || off < shm->heap_off)
        goto out;
    size_t lo = 0, hi = shm->nblocks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (shm->blocks[mid].off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == shm->nblocks || shm->blocks[lo].off != off ||
        !shm->blocks[lo].used)
        goto out;
    shm->blocks[lo].used = 0;
    if (lo + 1 < shm->nblocks && !shm->blocks[lo + 1].used) {
        shm->blocks[lo].size += shm->blocks[lo + 1].size;
        blocks_remove(shm, lo + 1);
    }
    if (lo > 0 && !shm->blocks[lo - 1].used) {
        shm->blocks[lo - 1].size += shm->blocks[lo].size;
        blocks_remove(shm, lo);
    }
    err = 0;
out:
    pthread_mutex_unlock(&shm->lock);
    return err;
}

/* Futex waits between processes. */

int
ws__shm_wait(_Atomic uint32_t *word, uint32_t expected, double timeout_s)
{
    struct timespec ts, *tp = NULL;
    if (timeout_s >= 0) {
        if (timeout_s > 1e6)
            timeout_s = 1e6;
        ts.tv_sec = (time_t)timeout_s;
        ts.tv_nsec = (long)((timeout_s - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_nsec = 999999999L;
        tp = &ts;
    }
    long r =
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tp, NULL, 0);
    if (r == 0)
        return 0;
    switch (errno) {
    case EAGAIN:
    case ETIMEDOUT:
    case EINTR:
        return errno;
    default:
        return EINVAL;
    }
}

void
ws__shm_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

uint64_t
ws__shm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
