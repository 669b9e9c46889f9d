/* test_log.c — log.c as operators rely on it: a burst of one error is
 * rate-limited and summarised with an exact count, a hostile value cannot
 * start a new line, levels filter. stderr is redirected to a temp file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "stockd/log.h"

static int saved_fd = -1;
static FILE *capture;

static void capture_start(void)
{
    fflush(stderr);
    capture = tmpfile();
    assert_non_null(capture);
    saved_fd = dup(STDERR_FILENO);
    assert_true(saved_fd >= 0);
    assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was logged (caller frees). */
static char *capture_end(void)
{
    assert_true(dup2(saved_fd, STDERR_FILENO) >= 0);
    close(saved_fd);
    long n = ftell(capture);
    assert_true(n >= 0);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    rewind(capture);
    assert_int_equal(fread(buf, 1, (size_t)n, capture), (size_t)n);
    fclose(capture);
    return buf;
}

static unsigned count_lines_with(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char tmp[4096];
        size_t k = len < sizeof(tmp) - 1 ? len : sizeof(tmp) - 1;
        memcpy(tmp, line, k);
        tmp[k] = '\0';
        n += strstr(tmp, needle) != NULL;
        line = end ? end + 1 : NULL;
    }
    return n;
}

static void sleep_past_second(void)
{
    struct timespec now, ts;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ts.tv_sec = 0;
    ts.tv_nsec = 1000000000L - now.tv_nsec + 20000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec = 1;
        ts.tv_nsec -= 1000000000L;
    }
    nanosleep(&ts, NULL);
}

static void test_burst_is_summarised(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    sleep_past_second();  /* the burst fits one second window */
    capture_start();
    for (int i = 0; i < 1000; i++)
        LOG_E("store: commit failed", "error", "boom");
    sleep_past_second();
    LOG_I("after the burst");
    char *out = capture_end();
    unsigned printed = count_lines_with(out, " msg=\"store: commit failed\"");
    assert_int_equal(printed, 10);
    assert_int_equal(count_lines_with(out, "msg=log.suppressed"), 1);
    assert_non_null(strstr(out, "suppressed=990"));
    free(out);
}

/* With the loop attached, the summary comes when the window ends, from a
 * timer: no later line is needed (a quiet loop still reports its burst). */
static void test_summary_by_timer(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    struct event_base *base = event_base_new();
    assert_non_null(base);
    assert_int_equal(log_attach_loop(base), 0);
    sleep_past_second();
    capture_start();
    for (int i = 0; i < 100; i++)
        LOG_W("peer: connect failed", "peer", "b");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct timeval limit = {2, 0};
    event_base_loopexit(base, &limit);
    /* The loop runs nothing but the log's timer; it exits at the limit. */
    char *mid = NULL;
    for (;;) {
        event_base_loop(base, EVLOOP_ONCE);
        fflush(stderr);
        long n = ftell(capture);
        if (n > 0) {
            free(mid);
            mid = calloc(1, (size_t)n + 1);
            assert_non_null(mid);
            assert_int_equal(pread(fileno(capture), mid, (size_t)n, 0), n);
            if (strstr(mid, "msg=log.suppressed"))
                break;
        }
        if (event_base_got_exit(base))
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char *out = capture_end();
    free(mid);
    assert_int_equal(count_lines_with(out, " msg=\"peer: connect failed\""), 10);
    assert_int_equal(count_lines_with(out, "msg=log.suppressed"), 1);
    assert_non_null(strstr(out, "suppressed=90"));
    assert_non_null(strstr(out, "level=warn msg=log.suppressed"));
    /* Within the window's second, not at the loop's limit. */
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(took < 1.5);
    free(out);
    log_detach_loop();
    event_base_free(base);
}

static void test_hostile_value_stays_on_one_line(void **state)
{
    (void)state;
    capture_start();
    LOG_W("bad input", "sku", "x\nts=2020 level=error msg=forged", "k", "a=b \"q\"");
    char *out = capture_end();
    assert_int_equal(count_lines_with(out, "level="), 1);
    assert_non_null(strstr(out, "\\n"));
    assert_null(strstr(out, "\nts=2020"));
    free(out);
}

static void test_level_filters(void **state)
{
    (void)state;
    capture_start();
    assert_int_equal(log_set_level_name("warn"), 0);
    LOG_I("hidden info");
    LOG_W("shown warning");
    assert_int_equal(log_set_level_name("nonsense"), -1);
    log_set_level(LOG_INFO);
    char *out = capture_end();
    assert_null(strstr(out, "hidden info"));
    assert_non_null(strstr(out, "shown warning"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_is_summarised),
        cmocka_unit_test(test_summary_by_timer),
        cmocka_unit_test(test_hostile_value_stays_on_one_line),
        cmocka_unit_test(test_level_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
