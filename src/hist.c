/* hist.c — log-linear histogram (see hist.h). */
#include "stockd/hist.h"

#include <assert.h>
#include <string.h>

/* 10^(HIST_DECADES + 1): the first value of the clamp bucket. */
static uint64_t hist_clamp_edge(void)
{
    uint64_t p = 10;
    for (unsigned e = 0; e < HIST_DECADES; e++)
        p *= 10;
    return p;
}

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_EXACT)
        return (unsigned)v;
    unsigned e = 0;
    uint64_t scale = 1;
    /* scale = 10^e with v / scale in 10..99 */
    while (v / scale >= 100) {
        scale *= 10;
        e++;
        if (e >= HIST_DECADES)
            return HIST_BUCKETS - 1u;
    }
    unsigned m = (unsigned)(v / scale);
    assert(m >= 10 && m <= 99);
    unsigned idx = HIST_EXACT + e * HIST_PER_DECADE + (m - 10u);
    assert(idx < HIST_BUCKETS - 1u);
    return idx;
}

/* Smallest value of bucket idx. */
static uint64_t hist_lower(unsigned idx)
{
    assert(idx < HIST_BUCKETS);
    if (idx < HIST_EXACT)
        return idx;
    if (idx == HIST_BUCKETS - 1u)
        return hist_clamp_edge();
    unsigned e = (idx - HIST_EXACT) / HIST_PER_DECADE;
    uint64_t m = (idx - HIST_EXACT) % HIST_PER_DECADE + 10u;
    uint64_t scale = 1;
    for (unsigned i = 0; i < e; i++)
        scale *= 10;
    return m * scale;
}

void hist_reset(hist *h)
{
    memset(h, 0, sizeof(*h));
}

void hist_record(hist *h, uint64_t v)
{
    h->buckets[hist_index(v)]++;
    h->count++;
    h->sum = h->sum > UINT64_MAX - v ? UINT64_MAX : h->sum + v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *dst, const hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum = dst->sum > UINT64_MAX - src->sum ? UINT64_MAX : dst->sum + src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const hist *h, double q)
{
    assert(q > 0.0 && q <= 1.0);
    if (h->count == 0)
        return 0;
    /* rank = ceil(q * count), at least 1: p100 is the largest value. */
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i + 1u < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t upper = hist_lower(i + 1u) - 1u;
            return upper < h->max ? upper : h->max;
        }
    }
    return h->max;  /* in the clamp bucket: no upper edge but max */
}

bool hist_is_edge(uint64_t v)
{
    if (v <= HIST_EXACT)
        return true;
    if (v > hist_clamp_edge())
        return false;
    return hist_lower(hist_index(v)) == v;
}

uint64_t hist_count_below(const hist *h, uint64_t bound)
{
    assert(hist_is_edge(bound));
    uint64_t n = 0;
    for (unsigned i = 0; i < HIST_BUCKETS && hist_lower(i) < bound; i++)
        n += h->buckets[i];
    return n;
}
