/* clock.h — the two clocks stockd reads: monotonic for durations and
 * timeouts (never jumps), the wall clock for timestamps that leave the
 * process (records, rows, alerts). One place, so every module measures the
 * same way. */
#ifndef STOCKD_CLOCK_H
#define STOCKD_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ns(void);
int64_t clock_mono_us(void);
int64_t clock_mono_ms(void);
/* Unix time in milliseconds. */
int64_t clock_wall_ms(void);

#endif
