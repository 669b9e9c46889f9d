/* bloom.h — a Bloom filter of known SKUs: "certainly unknown" or "maybe".
 *
 * Pure: no I/O, no clock; allocates its bit array once in bloom_new().
 * Sized from an expected item count and a target false-positive rate given
 * in parts per million (1000 = 0.1 %). Adding more items than the capacity
 * keeps it correct (never a false negative) but raises the false-positive
 * rate; bloom_stats_get() reports the estimate so an operator sees it.
 *
 * Hashing: XXH3-128 of the key bytes, split into two 64-bit halves for
 * double hashing (Kirsch–Mitzenmacher): probe i is h1 + i * h2.
 */
#ifndef STOCKD_BLOOM_H
#define STOCKD_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOOM_CAPACITY_MAX (UINT64_C(1) << 32)   /* items */
#define BLOOM_BITS_MAX (UINT64_C(1) << 36)       /* 8 GiB: refuse beyond */
#define BLOOM_HASHES_MAX 16
#define BLOOM_FP_PPM_MIN 1
#define BLOOM_FP_PPM_MAX 500000

typedef struct bloom bloom;

typedef struct bloom_stats {
    uint64_t capacity;          /* items it was sized for */
    uint64_t items;             /* bloom_add() calls (duplicates counted) */
    uint64_t bits;
    uint32_t hashes;
    uint32_t fp_ppm_target;
    uint32_t fp_ppm_estimate;   /* (1 - e^(-k n / m))^k at the current n */
    uint64_t checks;            /* bloom_check() calls */
    uint64_t negatives;         /* answered "certainly unknown" */
    uint64_t false_positives;   /* reported by the caller */
} bloom_stats;

/* Bits and hash count for n items at fp_ppm: bits = -n ln p / (ln 2)^2
 * rounded up to 64, hashes = round(bits / n * ln 2) within 1..16. Returns
 * false when n or fp_ppm is out of range or the size exceeds BLOOM_BITS_MAX. */
bool bloom_size_for(uint64_t n, uint32_t fp_ppm, uint64_t *bits, uint32_t *hashes);

/* NULL on bad arguments (see bloom_size_for) or out of memory. */
bloom *bloom_new(uint64_t capacity, uint32_t fp_ppm);
void bloom_free(bloom *b);

void bloom_add(bloom *b, const void *key, size_t len);
/* False: the key was never added. True: it may have been. Counts. */
bool bloom_check(bloom *b, const void *key, size_t len);
/* The caller found a "maybe" to be unknown after all. */
void bloom_note_false_positive(bloom *b);
void bloom_stats_get(const bloom *b, bloom_stats *out);

#endif
