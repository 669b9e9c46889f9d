/* bloom.c — Bloom filter (contract in include/stockd/bloom.h). */
#include "stockd/bloom.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct bloom {
    uint64_t *words;
    uint64_t bits;
    uint32_t hashes;
    uint32_t fp_ppm;
    uint64_t capacity;
    uint64_t items;
    uint64_t checks;
    uint64_t negatives;
    uint64_t false_positives;
};

bool bloom_size_for(uint64_t n, uint32_t fp_ppm, uint64_t *bits, uint32_t *hashes)
{
    if (n < 1 || n > BLOOM_CAPACITY_MAX || fp_ppm < BLOOM_FP_PPM_MIN || fp_ppm > BLOOM_FP_PPM_MAX)
        return false;
    double p = (double)fp_ppm / 1e6;
    double ln2 = log(2.0);
    double m = ceil(-(double)n * log(p) / (ln2 * ln2));
    if (m < 64.0)
        m = 64.0;
    if (m > (double)BLOOM_BITS_MAX)
        return false;
    uint64_t mb = ((uint64_t)m + 63) / 64 * 64;
    double k = round((double)mb / (double)n * ln2);
    if (k < 1.0)
        k = 1.0;
    if (k > BLOOM_HASHES_MAX)
        k = BLOOM_HASHES_MAX;
    *bits = mb;
    *hashes = (uint32_t)k;
    return true;
}

bloom *bloom_new(uint64_t capacity, uint32_t fp_ppm)
{
    uint64_t bits;
    uint32_t k;
    if (!bloom_size_for(capacity, fp_ppm, &bits, &k))
        return NULL;
    bloom *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->words = calloc(bits / 64, sizeof(uint64_t));
    if (b->words == NULL) {
        free(b);
        return NULL;
    }
    b->bits = bits;
    b->hashes = k;
    b->fp_ppm = fp_ppm;
    b->capacity = capacity;
    return b;
}

void bloom_free(bloom *b)
{
    if (b == NULL)
        return;
    free(b->words);
    free(b);
}

/* Maps a 64-bit hash onto [0, bits) without a division (Lemire). */
static uint64_t reduce(uint64_t h, uint64_t bits)
{
    return (uint64_t)(((unsigned __int128)h * bits) >> 64);
}

/* Sets (add) or tests (check) the k probe bits of key. */
static bool probe(bloom *b, const void *key, size_t len, bool set)
{
    XXH128_hash_t h = XXH3_128bits(key, len);
    uint64_t h1 = h.low64;
    uint64_t h2 = h.high64 | 1;  /* odd: probes never collapse onto one bit */
    for (uint32_t i = 0; i < b->hashes; i++) {
        uint64_t bit = reduce(h1 + (uint64_t)i * h2, b->bits);
        uint64_t mask = UINT64_C(1) << (bit & 63);
        if (set)
            b->words[bit >> 6] |= mask;
        else if (!(b->words[bit >> 6] & mask))
            return false;
    }
    return true;
}

void bloom_add(bloom *b, const void *key, size_t len)
{
    assert(b != NULL && (key != NULL || len == 0));
    probe(b, key, len, true);
    b->items++;
}

bool bloom_check(bloom *b, const void *key, size_t len)
{
    assert(b != NULL && (key != NULL || len == 0));
    b->checks++;
    bool maybe = probe(b, key, len, false);
    if (!maybe)
        b->negatives++;
    return maybe;
}

void bloom_note_false_positive(bloom *b)
{
    b->false_positives++;
}

void bloom_stats_get(const bloom *b, bloom_stats *out)
{
    out->capacity = b->capacity;
    out->items = b->items;
    out->bits = b->bits;
    out->hashes = b->hashes;
    out->fp_ppm_target = b->fp_ppm;
    double fill = 1.0 - exp(-(double)b->hashes * (double)b->items / (double)b->bits);
    out->fp_ppm_estimate = (uint32_t)(pow(fill, (double)b->hashes) * 1e6 + 0.5);
    out->checks = b->checks;
    out->negatives = b->negatives;
    out->false_positives = b->false_positives;
}
