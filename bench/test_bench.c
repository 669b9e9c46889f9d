/* test_bench.c — unit checks for stockbench's pure parts: the histogram's
 * latency quantiles, URL/address parsing, the zipf table, the ceiling's
 * rows, the /proc readings of --cpu. Plain
 * asserts (they stay on: b_ndebug=false); exits 0 when all hold. */
#include "bench.h"
#include "ceiling.h"

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

/* The ceiling's rows: stockd's order row shape (every column, ids and SKUs
 * as hex literals), one unique id per row, SKUs round-robin, and a buffer
 * of ceiling_insert_cap() always big enough. */
static void test_ceiling_rows(void)
{
    char buf[4096];
    ceiling_shape s = { .table = "`db`.bench_ceiling_ab", .nonce = "ab", .skus = 2, .qty = 3,
                        .available = 99 };
    size_t n = ceiling_row_sql(buf, sizeof buf, &s, 5, 1700000000123);
    /* "oab-5" and "bab-1" (5 mod 2) in hex */
    const char *want = "(X'6f61622d35',0,1,X'6261622d31',3,'confirmed',3,0,99,1700000000123,"
                       "1700000000123,NULL,NULL,NULL,NULL,0)";
    assert(n == strlen(want) && strcmp(buf, want) == 0);
    assert(ceiling_row_sql(buf, n, &s, 5, 1700000000123) == 0);      /* no room for the NUL */

    n = ceiling_insert_sql(buf, sizeof buf, &s, 10, 3, 7);
    assert(n == strlen(buf));
    assert(strncmp(buf, "INSERT INTO `db`.bench_ceiling_ab (order_id,line_no,n_lines,sku,qty,status,"
                   "from_own,from_supplier,available,created_at,updated_at,hold_expires_at,"
                   "upstream_order_id,reason,purchased_at,supplier_settled) VALUES\n(X'6f61622d3130',",
                   strlen("INSERT INTO `db`.bench_ceiling_ab (order_id,line_no,n_lines,sku,qty,status,"
                   "from_own,from_supplier,available,created_at,updated_at,hold_expires_at,"
                   "upstream_order_id,reason,purchased_at,supplier_settled) VALUES\n(X'6f61622d3130',")) == 0);
    assert(strstr(buf, "X'6f61622d3132'") != NULL);                /* oab-12, the last */
    assert(strstr(buf, "X'6f61622d3133'") == NULL);                /* oab-13 is not in it */
    assert(strstr(buf, ",NULL,NULL,NULL,NULL,0),\n(") != NULL);     /* separated as stockd does */
    assert(buf[n - 1] == ')');
    assert(ceiling_insert_sql(buf, 100, &s, 10, 3, 7) == 0);
    assert(ceiling_insert_sql(buf, sizeof buf, &s, 10, 0, 7) == 0);

    /* The same columns, in the same order, in the table and the INSERT. */
    char ddl[2048];
    assert(ceiling_table_sql(ddl, sizeof ddl, s.table) > 0);
    const char *cols[] = { "order_id", "line_no", "n_lines", "sku", "qty", "status", "from_own",
                           "from_supplier", "available", "created_at", "updated_at",
                           "hold_expires_at", "upstream_order_id", "reason", "purchased_at",
                           "supplier_settled" };
    const char *at = ddl;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", cols[i]);
        const char *p = strstr(at, pat);
        assert(p != NULL);
        at = p + 1;
    }
    assert(strstr(ddl, "PRIMARY KEY (order_id, line_no)") && strstr(ddl, "KEY sku_status (sku, status)"));
    assert(ceiling_table_sql(ddl, 20, s.table) == 0);

    /* Longest names and numbers: a row stays under CEILING_ROW_MAX, and a
     * full statement fits ceiling_insert_cap(). */
    char nonce[80];
    memset(nonce, 'z', 72);
    nonce[72] = '\0';
    ceiling_shape big = { .table = "`db`.bench_ceiling_zz", .nonce = nonce, .skus = UINT32_MAX,
                          .qty = INT32_MIN, .available = INT64_MIN };
    n = ceiling_row_sql(buf, sizeof buf, &big, UINT64_MAX, INT64_MIN);
    assert(n > 0 && n <= CEILING_ROW_MAX);
    memset(nonce, 'z', 79);                                        /* too long: refused, not cut */
    nonce[79] = '\0';
    assert(ceiling_row_sql(buf, sizeof buf, &big, 1, 1) == 0);
    nonce[72] = '\0';
    size_t cap = ceiling_insert_cap(CEILING_ROWS);
    char *stmt = malloc(cap);
    assert(stmt != NULL);
    n = ceiling_insert_sql(stmt, cap, &big, UINT64_MAX - CEILING_ROWS, CEILING_ROWS, INT64_MIN);
    assert(n > 0 && n < cap);
    /* The usual shape: ~130 bytes a row. */
    n = ceiling_insert_sql(stmt, cap, &s, 0, CEILING_ROWS, 1700000000123);
    assert(n > 100 * CEILING_ROWS && n < 200 * CEILING_ROWS);
    free(stmt);
}

/* --cpu reads /proc/PID/stat: odd command names and malformed lines must
 * not be misread as figures. */
static void test_cpu_parse(void)
{
    uint64_t t = 0;
    const char *line = "4242 (mariadbd) S 1 4242 4242 0 -1 4194560 52 0 0 0 731 269 0 0 20 0 30 0";
    assert(bench_cpu_parse_stat(line, &t) == 0 && t == 1000);
    /* A name with spaces and a ')' of its own: counted from the last ')'. */
    assert(bench_cpu_parse_stat("7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0", &t) == 0 && t == 11);
    assert(bench_cpu_parse_stat("7 (short) R 1 7 7 0 -1 0 0 0 0 0 5", &t) == -1);
    assert(bench_cpu_parse_stat("7 (x) R 1 7 7 0 -1 0 0 0 0 0 5z 6 0", &t) == -1);
    assert(bench_cpu_parse_stat("no parenthesis at all", &t) == -1);
    assert(bench_cpu_parse_stat("", &t) == -1);
    /* This process can read its own figures; pid 0 means itself. */
    assert(bench_cpu_read(0, &t) == 0);
}

int main(void)
{
    test_hist_exact_and_bounded();
    test_urls();
    test_zipf();
    test_ceiling_rows();
    test_cpu_parse();
    printf("stockbench unit checks: ok\n");
    return 0;
}
