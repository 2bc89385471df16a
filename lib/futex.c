/*
 * Private futexes (Linux).  The word is a C11 atomic_uint, which the kernel
 * reads as a plain 32-bit integer.  FUTEX_WAIT takes a relative timeout on
 * the monotonic clock, so a change of the wall clock never stretches or
 * cuts a wait.
 */
#define _GNU_SOURCE
#include "futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(atomic_uint) == sizeof(uint32_t),
               "the futex word is 32 bits");

/* Longer timeouts (about 31 years) wait without a limit: no overflow. */
#define FUTEX_TIMEOUT_MAX 1e9

int
ws__futex_wait(atomic_uint *addr, unsigned expected, double timeout_s)
{
    struct timespec ts, *tp = NULL;
    int saved = errno, r = 0;

    /* A NaN fails the comparison and waits without a limit. */
    if (timeout_s >= 0 && timeout_s < FUTEX_TIMEOUT_MAX) {
        ts.tv_sec = (time_t)timeout_s;
        ts.tv_nsec = (long)((timeout_s - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        tp = &ts;
    }
    /* A relative timeout on the monotonic clock (FUTEX_WAIT's default). */
    if (syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, expected, tp,
                NULL, 0) == -1 &&
        errno == ETIMEDOUT)
        r = ETIMEDOUT;
    /* Calls report through their return value; the caller's errno stays. */
    errno = saved;
    return r;
}

void
ws__futex_wake(atomic_uint *addr, int n)
{
    int saved = errno;
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    errno = saved;
}
