/* clock.c — see clock.h. */
#include "stockd/clock.h"

#include <stdatomic.h>
#include <time.h>

/* The manual wall clock, unix ms; 0 = off. Atomic: the loop moves it,
 * and a reader on another thread (libraries' callbacks) must never see
 * half a value. */
static _Atomic int64_t manual_ms;

int64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t clock_mono_us(void)
{
    return clock_mono_ns() / 1000;
}

int64_t clock_mono_ms(void)
{
    return clock_mono_ns() / 1000000;
}

int64_t clock_real_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_ms(void)
{
    int64_t m = atomic_load_explicit(&manual_ms, memory_order_relaxed);
    return m != 0 ? m : clock_real_wall_ms();
}

void clock_manual_start(void)
{
    int64_t zero = 0;
    atomic_compare_exchange_strong(&manual_ms, &zero, clock_real_wall_ms());
}

bool clock_manual_on(void)
{
    return atomic_load(&manual_ms) != 0;
}

bool clock_manual_advance(int64_t now_ms)
{
    int64_t cur = atomic_load(&manual_ms);
    if (cur == 0 || now_ms < cur)
        return false;
    atomic_store(&manual_ms, now_ms);
    return true;
}
