/* clock.h — the two clocks stockd reads: monotonic for durations and
 * timeouts (never jumps), the wall clock for timestamps that leave the
 * process (records, rows, alerts) and for the times that decide answers
 * (hold expiry, synced_at against purchased_at). One place, so every module
 * measures the same way.
 *
 * The manual wall clock (test only, --test-clock): from clock_manual_start()
 * on, clock_wall_ms() answers a figure that moves only through
 * clock_manual_advance(), so a simulator can replay a night exactly
 * (testclock.h drives it). It is the one piece of process-wide mutable
 * state outside main's wiring, on purpose: every reader of the wall clock,
 * in whichever module, follows it without being told. The monotonic clock
 * never follows it (timeouts, latency, token buckets and backoff stay
 * real), and neither does clock_real_wall_ms(), for the few timestamps an
 * outside party checks against its own clock (1688's _aop_timestamp), for
 * uptime and for logs. */
#ifndef STOCKD_CLOCK_H
#define STOCKD_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

int64_t clock_mono_ns(void);
int64_t clock_mono_us(void);
int64_t clock_mono_ms(void);
/* Unix time in milliseconds: the manual clock when it is on. */
int64_t clock_wall_ms(void);
/* Unix time in milliseconds, always the system's. */
int64_t clock_real_wall_ms(void);

/* Turns the manual wall clock on at the system's wall time, once, before
 * the loop runs (main wiring). */
void clock_manual_start(void);
bool clock_manual_on(void);
/* Moves the manual clock to now_ms: only forward (equal is fine). false,
 * nothing changed, when it is off or now_ms is earlier. */
bool clock_manual_advance(int64_t now_ms);

#endif
