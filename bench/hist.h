/* hist.h — log-linear latency histogram (HdrHistogram's layout, fixed size).
 *
 * Values are microseconds. 0..63 get one bucket each; above that every
 * power of two is split into 32 linear sub-buckets, so any reported
 * percentile is within 1/32 (about 3 %) of the true value. The largest
 * value is kept exactly. No allocation: the struct is the histogram.
 */
#ifndef STOCKBENCH_HIST_H
#define STOCKBENCH_HIST_H

#include <stdint.h>

#define HIST_LINEAR 64u              /* values below this are exact */
#define HIST_SUB 32u                 /* sub-buckets per power of two above */
#define HIST_MAX_EXP 40u             /* up to 2^40 us (12 days): clamps above */
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAX_EXP - 6u) * HIST_SUB)

typedef struct bench_hist {
    uint64_t count;
    uint64_t max_us;
    uint64_t buckets[HIST_BUCKETS];
} bench_hist;

void hist_reset(bench_hist *h);
void hist_add(bench_hist *h, uint64_t us);
/* The value at quantile q (0..1]: the upper edge of its bucket, never more
 * than max. 0 when empty. */
uint64_t hist_quantile(const bench_hist *h, double q);

#endif
