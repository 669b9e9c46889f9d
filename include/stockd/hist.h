/* hist.h — a fixed-size log-linear histogram of non-negative integers
 * (stockd records microseconds and batch sizes in it).
 *
 * Layout: the values 0..9 have a bucket each; above that every decade
 * [10^e, 10^(e+1)) is cut into 90 buckets of width 10^e, so a bucket keeps
 * two significant decimal digits (at most 10% wide, usually less). Values of
 * 10^(HIST_DECADES+1) and more share one clamp bucket; max keeps the true
 * largest value. Decimal edges on purpose: Prometheus bucket bounds such as
 * 0.00025 s or 2.5 ms fall exactly on bucket edges, so exported cumulative
 * counts are exact, not interpolated.
 *
 * Pure, no allocation: a hist is plain memory (zeroed = empty), ~7 KiB.
 * Not thread-safe; stockd is single-threaded.
 */
#ifndef STOCKD_HIST_H
#define STOCKD_HIST_H

#include <stdbool.h>
#include <stdint.h>

#define HIST_EXACT 10u                /* 0..9 exactly */
#define HIST_PER_DECADE 90u           /* 10..99 x 10^e */
#define HIST_DECADES 9u               /* e = 0..8: up to 10^10 - 1 */
#define HIST_BUCKETS (HIST_EXACT + HIST_PER_DECADE * HIST_DECADES + 1u)

typedef struct hist {
    uint64_t count;
    uint64_t sum;                     /* saturates at UINT64_MAX */
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
} hist;

void hist_reset(hist *h);
void hist_record(hist *h, uint64_t v);
/* Adds src's values to dst. */
void hist_merge(hist *dst, const hist *src);

/* The q-quantile (0 < q <= 1) as the upper edge of the bucket holding the
 * rank-ceil(q*count) value, never above max; 0 when empty. An over-estimate
 * by less than one bucket width. */
uint64_t hist_quantile(const hist *h, double q);

/* True when v is the lower edge of a bucket (0..10 and any d.d x 10^e with
 * two significant digits up to the clamp edge): hist_count_below(v) is exact. */
bool hist_is_edge(uint64_t v);
/* Values < bound. bound must satisfy hist_is_edge(); asserted. */
uint64_t hist_count_below(const hist *h, uint64_t bound);

#endif
