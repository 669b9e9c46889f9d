/* test_clock.c — the manual wall clock (--test-clock): off until started,
 * then standing still, moved only forward; the real clocks never follow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "stockd/clock.h"

static void nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* One test: the clock is process-wide and cannot be turned off again. */
static void test_manual_clock(void **state)
{
    (void)state;
    /* Off: refused, the wall clock is the system's. */
    assert_false(clock_manual_on());
    assert_false(clock_manual_advance(INT64_MAX));
    int64_t real = clock_real_wall_ms();
    assert_true(clock_wall_ms() - real < 1000);
    assert_true(clock_wall_ms() >= real);

    clock_manual_start();
    assert_true(clock_manual_on());
    int64_t t0 = clock_wall_ms();
    assert_true(t0 >= real && t0 - real < 1000);
    nap_ms(20);
    assert_int_equal(clock_wall_ms(), t0);              /* stands still */
    assert_true(clock_real_wall_ms() >= t0 + 20);         /* the real one goes on */
    int64_t mono = clock_mono_ms();
    clock_manual_start();                                 /* a second start changes nothing */
    assert_int_equal(clock_wall_ms(), t0);

    assert_false(clock_manual_advance(t0 - 1));           /* never back */
    assert_int_equal(clock_wall_ms(), t0);
    assert_true(clock_manual_advance(t0));                /* equal: fine */
    assert_true(clock_manual_advance(t0 + 86400000));
    assert_int_equal(clock_wall_ms(), t0 + 86400000);
    assert_true(clock_mono_ms() - mono < 60000);          /* monotonic untouched */
    assert_true(clock_real_wall_ms() < t0 + 86400000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manual_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
