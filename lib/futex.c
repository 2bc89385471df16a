/* Private futexes (Linux). */
#define _GNU_SOURCE
#include "futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int
ws__futex_wait(atomic_uint *addr, unsigned expected, double timeout_s)
{
    struct timespec ts, *tp = NULL;

    if (timeout_s >= 0) {
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
        return ETIMEDOUT;
    return 0;
}

void
ws__futex_wake(atomic_uint *addr, int n)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
