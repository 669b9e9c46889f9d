/* test_hist.c — the log-linear histogram: bucket edges, quantiles,
 * exact cumulative counts at decimal edges, clamp, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stockd/hist.h"

static void test_empty(void **state)
{
    (void)state;
    hist h;
    hist_reset(&h);
    assert_int_equal(hist_quantile(&h, 0.5), 0);
    assert_int_equal(hist_count_below(&h, 100), 0);
}

static void test_exact_small(void **state)
{
    (void)state;
    hist h;
    hist_reset(&h);
    for (uint64_t v = 0; v < 10; v++)
        hist_record(&h, v);
    assert_int_equal(h.count, 10);
    assert_int_equal(h.sum, 45);
    assert_int_equal(hist_quantile(&h, 0.5), 4);
    assert_int_equal(hist_quantile(&h, 1.0), 9);
    assert_int_equal(hist_count_below(&h, 5), 5);
}

static void test_edges(void **state)
{
    (void)state;
    assert_true(hist_is_edge(0));
    assert_true(hist_is_edge(10));
    assert_true(hist_is_edge(100));
    assert_true(hist_is_edge(250));
    assert_true(hist_is_edge(2500000));
    assert_true(hist_is_edge(5000000000ull));
    assert_false(hist_is_edge(101));
    assert_false(hist_is_edge(255));
    assert_false(hist_is_edge(20000000001ull));
}

/* Cumulative counts at edges are exact for any values. */
static void test_count_below_exact(void **state)
{
    (void)state;
    hist h;
    hist_reset(&h);
    uint64_t below_250 = 0, below_1000 = 0;
    for (uint64_t v = 0; v < 5000; v += 7) {
        hist_record(&h, v);
        below_250 += v < 250;
        below_1000 += v < 1000;
    }
    assert_int_equal(hist_count_below(&h, 250), below_250);
    assert_int_equal(hist_count_below(&h, 1000), below_1000);
    assert_int_equal(hist_count_below(&h, 10000), h.count);
}

/* A quantile over-estimates by less than one bucket (10%) and never
 * exceeds the maximum. */
static void test_quantile_error(void **state)
{
    (void)state;
    hist h;
    hist_reset(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(&h, v);
    uint64_t p50 = hist_quantile(&h, 0.5), p99 = hist_quantile(&h, 0.99);
    assert_true(p50 >= 50000 && p50 <= 55000);
    assert_true(p99 >= 99000 && p99 <= 100000);
    assert_int_equal(hist_quantile(&h, 1.0), 100000);
}

static void test_clamp_and_merge(void **state)
{
    (void)state;
    hist a, b;
    hist_reset(&a);
    hist_reset(&b);
    hist_record(&a, 3);
    hist_record(&b, UINT64_MAX);
    hist_record(&b, 123456789012ull);
    hist_merge(&a, &b);
    assert_int_equal(a.count, 3);
    assert_int_equal(a.max, UINT64_MAX);
    assert_int_equal(a.sum, UINT64_MAX);  /* saturated */
    assert_int_equal(hist_quantile(&a, 1.0), UINT64_MAX);
    assert_int_equal(hist_count_below(&a, 10), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_exact_small),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_count_below_exact),
        cmocka_unit_test(test_quantile_error),
        cmocka_unit_test(test_clamp_and_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
