/* test_bloom.c — sizing, no false negatives, false-positive rate near the
 * target, counters, refusal of bad sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/bloom.h"

static void key_of(char *buf, size_t cap, const char *prefix, uint64_t i)
{
    snprintf(buf, cap, "%s-%llu", prefix, (unsigned long long)i);
}

static void test_sizing(void **state)
{
    (void)state;
    uint64_t bits = 0;
    uint32_t k = 0;
    /* 1e6 items at 0.1 %: 14.38 bits/item, k = 10. */
    assert_true(bloom_size_for(1000000, 1000, &bits, &k));
    assert_true(bits >= 14377588 && bits <= 14377588 + 64);
    assert_int_equal(bits % 64, 0);
    assert_int_equal(k, 10);
    /* 1 %: 9.59 bits/item, k = 7. */
    assert_true(bloom_size_for(1000, 10000, &bits, &k));
    assert_int_equal(k, 7);
    assert_true(bloom_size_for(1, 1000, &bits, &k));
    assert_true(bits >= 64);
    assert_true(k >= 1 && k <= BLOOM_HASHES_MAX);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    uint64_t bits;
    uint32_t k;
    assert_false(bloom_size_for(0, 1000, &bits, &k));
    assert_false(bloom_size_for(1000, 0, &bits, &k));
    assert_false(bloom_size_for(1000, BLOOM_FP_PPM_MAX + 1, &bits, &k));
    assert_false(bloom_size_for(BLOOM_CAPACITY_MAX + 1, 1000, &bits, &k));
    assert_false(bloom_size_for(BLOOM_CAPACITY_MAX, 1, &bits, &k)); /* too many bits */
    assert_null(bloom_new(0, 1000));
}

static void test_no_false_negatives_and_rate(void **state)
{
    (void)state;
    const uint64_t n = 20000;
    bloom *b = bloom_new(n, 1000);
    assert_non_null(b);
    char key[64];
    for (uint64_t i = 0; i < n; i++) {
        key_of(key, sizeof key, "sku", i);
        bloom_add(b, key, strlen(key));
    }
    for (uint64_t i = 0; i < n; i++) {
        key_of(key, sizeof key, "sku", i);
        assert_true(bloom_check(b, key, strlen(key)));
    }
    uint64_t fp = 0;
    const uint64_t probes = 200000;
    for (uint64_t i = 0; i < probes; i++) {
        key_of(key, sizeof key, "nope", i);
        fp += bloom_check(b, key, strlen(key));
    }
    /* Target 0.1 % = 200 expected; allow 3x for randomness. */
    assert_true(fp <= 600);
    bloom_stats st;
    bloom_stats_get(b, &st);
    assert_int_equal(st.items, n);
    assert_int_equal(st.checks, n + probes);
    assert_int_equal(st.negatives, probes - fp);
    assert_true(st.fp_ppm_estimate > 500 && st.fp_ppm_estimate < 1500);
    bloom_note_false_positive(b);
    bloom_stats_get(b, &st);
    assert_int_equal(st.false_positives, 1);
    bloom_free(b);
}

static void test_empty_and_binary_keys(void **state)
{
    (void)state;
    bloom *b = bloom_new(100, 1000);
    assert_non_null(b);
    assert_false(bloom_check(b, "a", 1));
    const unsigned char bin[] = {0, 1, 2, 0xff};
    bloom_add(b, bin, sizeof bin);
    assert_true(bloom_check(b, bin, sizeof bin));
    assert_false(bloom_check(b, bin, 3)); /* a prefix is another key (almost surely) */
    bloom_stats st;
    bloom_stats_get(b, &st);
    assert_int_equal(st.capacity, 100);
    assert_int_equal(st.fp_ppm_target, 1000);
    bloom_free(b);
}

static void test_over_capacity_stays_correct(void **state)
{
    (void)state;
    bloom *b = bloom_new(100, 10000);
    assert_non_null(b);
    char key[64];
    for (uint64_t i = 0; i < 1000; i++) {
        key_of(key, sizeof key, "x", i);
        bloom_add(b, key, strlen(key));
    }
    for (uint64_t i = 0; i < 1000; i++) {
        key_of(key, sizeof key, "x", i);
        assert_true(bloom_check(b, key, strlen(key)));
    }
    bloom_stats st;
    bloom_stats_get(b, &st);
    assert_true(st.fp_ppm_estimate > st.fp_ppm_target);
    bloom_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizing),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_no_false_negatives_and_rate),
        cmocka_unit_test(test_empty_and_binary_keys),
        cmocka_unit_test(test_over_capacity_stays_correct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
