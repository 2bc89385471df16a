/*
 * Private futex waits and wakes: the one module that makes the futex
 * system call for threads of one process.
 */
#ifndef WS_FUTEX_H
#define WS_FUTEX_H

#include <stdatomic.h>

/*
 * Sleeps while *addr == expected, for at most timeout_s seconds (negative:
 * no limit).  Returns 0 when woken (or the value had already changed, or a
 * signal interrupted the wait) and ETIMEDOUT when the time ran out.  Callers
 * re-check their condition in every case.
 */
int ws__futex_wait(atomic_uint *addr, unsigned expected, double timeout_s);

/* Wakes up to n threads sleeping on addr (INT_MAX: all). */
void ws__futex_wake(atomic_uint *addr, int n);

#endif /* WS_FUTEX_H */
