/* test_bench.c — unit checks for stockbench's pure parts: the histogram's
 * latency quantiles, URL/address parsing, the zipf table. Plain
 * asserts (they stay on: b_ndebug=false); exits 0 when all hold. */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* stockbench records latencies in stockd's histogram (hist.h, unit-tested
 * on its own): here only what the reports rely on, in microseconds. */
static void test_hist_exact_and_bounded(void)
{
    static hist h;
    hist_reset(&h);
    for (uint64_t v = 1; v <= 100; v++)
        hist_record(&h, v);
    assert(h.count == 100);
    assert(hist_quantile(&h, 1.0) == 100);          /* max is exact */
    uint64_t p50 = hist_quantile(&h, 0.5);
    assert(p50 >= 50 && p50 <= 51);                 /* two significant digits */
    /* Any value is reported within one bucket (< 10 %) above itself. */
    for (uint64_t v = 10; v < (1u << 30); v = v * 3 + 7) {
        hist_reset(&h);
        hist_record(&h, v);
        hist_record(&h, v * 2);
        uint64_t q = hist_quantile(&h, 0.5);
        assert(q >= v);
        assert((double)(q - v) <= (double)v / 10.0);
    }
    hist_reset(&h);
    assert(hist_quantile(&h, 0.99) == 0);
}

static void test_urls(void)
{
    bench_dburl u;
    char err[256];
    assert(bench_parse_dburl("mysql://stockd:pw@127.0.0.1:3307/stockd", &u, err, sizeof err) == 0);
    assert(strcmp(u.user, "stockd") == 0 && strcmp(u.pass, "pw") == 0);
    assert(strcmp(u.host, "127.0.0.1") == 0 && u.port == 3307 && strcmp(u.db, "stockd") == 0);
    assert(bench_parse_dburl("mysql://root@localhost/x?socket=/tmp/s", &u, err, sizeof err) == 0);
    assert(u.port == 3306 && strcmp(u.host, "127.0.0.1") == 0 && strcmp(u.socket, "/tmp/s") == 0);
    assert(bench_parse_dburl("mysql://u:p@db.example.com:1/x", &u, err, sizeof err) != 0);
    assert(bench_parse_dburl("mysql://u:p@127.0.0.1:1/x;drop", &u, err, sizeof err) != 0);
    assert(bench_parse_dburl("http://u@127.0.0.1/x", &u, err, sizeof err) != 0);
    assert(bench_parse_dburl("mysql://u@127.0.0.1:0/x", &u, err, sizeof err) != 0);
    bench_addr a;
    assert(bench_parse_addr("redis://127.0.0.1:6379", "redis", &a, err, sizeof err) == 0);
    assert(a.port == 6379);
    assert(bench_parse_addr("127.0.0.1:70000", NULL, &a, err, sizeof err) != 0);
    assert(bench_parse_addr("127.0.0.1", NULL, &a, err, sizeof err) != 0);
    assert(bench_parse_addr("::1:7400", NULL, &a, err, sizeof err) == 0 && a.port == 7400);
}

static void test_zipf(void)
{
    double *cdf = bench_zipf_cdf(1000, 0.99);
    assert(cdf != NULL);
    for (unsigned i = 1; i < 1000; i++)
        assert(cdf[i] >= cdf[i - 1]);
    assert(cdf[999] == 1.0);
    assert(cdf[0] > 0.1 && cdf[0] < 0.2);          /* rank 1 of 1000 at s=0.99: ~13 % */
    free(cdf);
}

int main(void)
{
    test_hist_exact_and_bounded();
    test_urls();
    test_zipf();
    printf("stockbench unit checks: ok\n");
    return 0;
}
