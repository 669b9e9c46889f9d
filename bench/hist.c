/* hist.c — see hist.h. */
#include "hist.h"

#include <assert.h>
#include <string.h>

_Static_assert(HIST_LINEAR == 2u * HIST_SUB, "layout: 64 exact values, then 32 per octave");

static unsigned hist_msb(uint64_t v)
{
    assert(v != 0);
    return 63u - (unsigned)__builtin_clzll(v);
}

static unsigned hist_index(uint64_t us)
{
    if (us < HIST_LINEAR)
        return (unsigned)us;
    unsigned k = hist_msb(us);                 /* >= 6 */
    if (k >= HIST_MAX_EXP)
        return HIST_BUCKETS - 1u;
    unsigned shift = k - 5u;                   /* leaves 6 significant bits */
    unsigned top = (unsigned)(us >> shift);    /* 32..63 */
    assert(top >= HIST_SUB && top < 2u * HIST_SUB);
    unsigned idx = HIST_LINEAR + (k - 6u) * HIST_SUB + (top - HIST_SUB);
    assert(idx < HIST_BUCKETS);
    return idx;
}

/* Largest value that falls into bucket idx. */
static uint64_t hist_upper(unsigned idx)
{
    assert(idx < HIST_BUCKETS);
    if (idx < HIST_LINEAR)
        return idx;
    unsigned k = (idx - HIST_LINEAR) / HIST_SUB + 6u;
    unsigned top = (idx - HIST_LINEAR) % HIST_SUB + HIST_SUB;
    unsigned shift = k - 5u;
    return (((uint64_t)top + 1u) << shift) - 1u;
}

void hist_reset(bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

void hist_add(bench_hist *h, uint64_t us)
{
    h->buckets[hist_index(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t hist_quantile(const bench_hist *h, double q)
{
    assert(q > 0.0 && q <= 1.0);
    if (h->count == 0)
        return 0;
    /* The rank of the q-quantile, rounded up so p100 is the last value. */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            if (i == HIST_BUCKETS - 1u)
                return h->max_us;             /* the clamp bucket has no upper edge */
            uint64_t v = hist_upper(i);
            return v < h->max_us ? v : h->max_us;
        }
    }
    return h->max_us;
}
