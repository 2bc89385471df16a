/*
 * Shared memory between a process and the processes it forks: one memfd
 * mapped MAP_SHARED at the same address in all of them, a heap inside it,
 * and process-shared futex waits on words that live in it.
 */
#ifndef WS_SHM_H
#define WS_SHM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Segment header, at offset 0 of every region; checked on attach. */
#define WS__SHM_MAGIC UINT64_C(0x6d68732e64656873) /* "shed.shm" */
#define WS__SHM_VERSION 1u

struct ws__shm_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_size;  /* sizeof(struct ws__shm_hdr) of the creator */
    uint64_t reserved;  /* bytes of address space reserved at base */
    uint64_t data_size; /* bytes the creator asked for (fixed part) */
    /* Bytes mapped and backed in the memfd; grows with the heap. */
    _Atomic uint64_t size;
};

/* One block of the heap; the list lives in the creator's private memory. */
struct ws__shm_block {
    size_t off;  /* from base */
    size_t size; /* bytes, a multiple of WS__SHM_ALIGN */
    int used;
};

#define WS__SHM_ALIGN 64

/*
 * The creator's view of a region.  A forked process gets a copy at the
 * fork and may read base, fd and mapped; only the creator allocates.
 */
struct ws__shm {
    unsigned char *base;          /* start of the reservation and the header */
    size_t reserved;              /* address space reserved at base */
    size_t mapped;                /* bytes mapped by this process */
    size_t heap_off;              /* where the heap starts */
    int fd;                       /* the memfd; -1 once destroyed */
    pthread_mutex_t lock;         /* heap and growth, creator only */
    struct ws__shm_block *blocks; /* heap blocks sorted by offset */
    size_t nblocks, cap_blocks;
};

/*
 * Creates a region whose first data_size bytes (after the header) are the
 * fixed part, followed by a heap that starts with heap_size bytes and
 * may grow, within the address space reserved, up to max_size bytes in
 * all.  Every byte is allocated in the memfd up front.  0, ENOMEM, ENOSPC
 * (tmpfs full), ENOSYS (no memfd) or EMFILE.
 */
int ws__shm_create(struct ws__shm *shm, size_t data_size, size_t heap_size,
                   size_t max_size);
/* Unmaps and closes; the processes forked from it keep their mapping. */
void ws__shm_destroy(struct ws__shm *shm);

/* Offset of the fixed part from base. */
size_t ws__shm_data_off(void);

/*
 * In a forked process: checks the header and maps whatever the creator
 * has added since, up to size bytes.  0, EPROTO (bad header) or errno.
 */
int ws__shm_attach(struct ws__shm *shm, uint64_t size);

/* Bytes the creator has mapped; what ws__shm_attach should be given. */
uint64_t ws__shm_size(struct ws__shm *shm);

/* Heap in the creator: 64-byte aligned blocks; NULL if exhausted. */
void *ws__shm_alloc(struct ws__shm *shm, size_t size);
/* 0, or EINVAL if p is not a live block of this heap. */
int ws__shm_free(struct ws__shm *shm, void *p);

/* Offset of [p, p + size) inside the mapped region, or SIZE_MAX if any of
 * it lies outside. */
size_t ws__shm_offset(struct ws__shm *shm, const void *p, size_t size);

/*
 * Process-shared futex wait: sleeps while *word == expected, for at most
 * timeout_s seconds (negative: no limit).  0 when woken (or spuriously),
 * EAGAIN if *word != expected on entry, ETIMEDOUT, EINTR.
 */
int ws__shm_wait(_Atomic uint32_t *word, uint32_t expected, double timeout_s);
/* Wakes up to n waiters on word, in any process. */
void ws__shm_wake(_Atomic uint32_t *word, int n);

/* CLOCK_MONOTONIC in nanoseconds: the same clock in every process. */
uint64_t ws__shm_now_ns(void);

#endif /* WS_SHM_H */
