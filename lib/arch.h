/*
 * Machine facts and compiler builtins: cache-line size, the spin-wait hint,
 * branch hints and WS_ASSERT.  The only file that holds asm or builtins.
 */
#ifndef WS_ARCH_H
#define WS_ARCH_H

#include <config.h>

#include <stdatomic.h>

#ifndef WS_CACHELINE
#define WS_CACHELINE 64
#endif

#define WS_ALIGNED _Alignas(WS_CACHELINE)
#define WS_LIKELY(x) __builtin_expect(!!(x), 1)
#define WS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WS_HIDDEN __attribute__((visibility("hidden")))
#define WS_NOINLINE __attribute__((noinline))

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "lock-free int atomics required");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "lock-free 64-bit atomics required");
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "lock-free pointer atomics required");

static inline void
ws_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#ifdef WS_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define WS_ASSERT(c)                                                       \
    do {                                                                   \
        if (!(c)) {                                                        \
            fprintf(stderr, "wsched: %s:%d: assertion '%s' failed\n",      \
                    __FILE__, __LINE__, #c);                               \
            abort();                                                       \
        }                                                                  \
    } while (0)
#else
#define WS_ASSERT(c) ((void)0)
#endif

#endif /* WS_ARCH_H */
