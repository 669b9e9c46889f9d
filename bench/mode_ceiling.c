/* mode_ceiling.c — ceiling: the durable append ceiling of the MariaDB the
 * other modes run on. Not orders: every request is one statement
 *
 *   INSERT INTO <db>.bench_ceiling_<nonce> (...) VALUES (...), ... 1,000 rows
 *
 * of rows shaped like stockd's own order rows (ceiling.h), with
 * autocommit, so each statement is its own transaction and pays the
 * commit flush the server is configured for (innodb_flush_log_at_trx_commit
 * is read and reported, never changed). Nothing is checked or locked: it
 * is what appending stockd's rows costs with nothing else to do, the
 * figure stockd's reservations/s are held against. The scratch table goes
 * into the --db database (stockd's own, same tablespace and settings) and
 * is dropped at the end unless --keep.
 *
 * One statement at a time per connection (MariaDB runs one per
 * connection), so concurrency is --connections; with one connection every
 * commit waits for its own flush, with more they can share one (group
 * commit).
 */
#include "ceiling.h"
#include "db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ceil_conn {
    bench_run *r;
    struct ceil_mode *mode;
    bench_db *db;
    uint32_t idx;
    bench_req *q;
    char *sql;                       /* this connection's statement, kept until its reply */
    size_t cap;
    char outcome[32];
} ceil_conn;

typedef struct ceil_mode {
    char table[CEILING_TABLE_MAX];
    bool created;
    ceiling_shape shape;
    char settings[160];
    ceil_conn *conns;
    uint32_t n_conns;
} ceil_mode;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ceil_cb(bench_db *db, unsigned err, uint64_t affected, const char *value, void *arg)
{
    (void)db;
    (void)value;
    ceil_conn *c = arg;
    bench_req *q = c->q;
    assert(q != NULL);
    c->q = NULL;
    const char *outcome = NULL;
    if (err != 0) {
        snprintf(c->outcome, sizeof c->outcome, "db_%u", err);
        outcome = c->outcome;
    } else if (affected != CEILING_ROWS) {
        outcome = "short_insert";                /* not expected: a plain INSERT is all or nothing */
    }
    if (bench_db_dead(c->db))
        bench_conn_dead(c->r, c->idx);
    bench_done(c->r, q, outcome);
}

static void ceil_send(bench_run *r, void *state, bench_req *q)
{
    ceil_mode *m = state;
    ceil_conn *c = q->conn;
    assert(c->q == NULL);
    c->q = q;
    /* Rows seq*1000 .. seq*1000+999: unique over the run whatever the
     * order the connections send in. */
    size_t n = ceiling_insert_sql(c->sql, c->cap, &m->shape, q->seq * CEILING_ROWS, CEILING_ROWS,
                                  wall_ms());
    assert(n > 0);
    if (bench_db_query_ref(c->db, c->sql, n, ceil_cb, c) != 0) {
        c->q = NULL;
        bench_conn_dead(r, c->idx);
        bench_done(r, q, "db_conn_lost");
    }
}

static void ceil_drop(bench_run *r, ceil_mode *m)
{
    const bench_opts *o = bench_opts_of(r);
    if (!m->created || o->keep)
        return;
    char err[256], sql[256];
    MYSQL *my = bench_db_connect(&o->db, NULL, false, err, sizeof err);
    if (my == NULL) {
        fprintf(stderr, "stockbench: ceiling: cannot drop %s: %s\n", m->table, err);
        return;
    }
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", m->table);
    if (bench_db_exec(my, sql, err, sizeof err) != 0)
        fprintf(stderr, "stockbench: ceiling: %s\n", err);
    mysql_close(my);
}

static void ceil_close(bench_run *r, void *state)
{
    ceil_mode *m = state;
    for (uint32_t i = 0; i < m->n_conns; i++) {
        bench_db_close(m->conns[i].db);
        free(m->conns[i].sql);
    }
    ceil_drop(r, m);
    free(m->conns);
    free(m);
}

/* The settings that decide what a commit costs, as the server has them. */
static int read_settings(MYSQL *my, ceil_mode *m, char *err, size_t err_len)
{
    static const char *const names[] = { "innodb_flush_log_at_trx_commit", "sync_binlog",
                                         "log_bin", "autocommit" };
    int64_t v[4];
    char sql[96];
    for (int i = 0; i < 4; i++) {
        snprintf(sql, sizeof sql, "SELECT @@global.%s", names[i]);
        if (bench_db_scalar(my, sql, &v[i], err, err_len) != 0)
            return -1;
    }
    if (v[3] == 0) {
        snprintf(err, err_len, "ceiling: the server's autocommit is off, so a statement would not "
                 "be its own transaction");
        return -1;
    }
    snprintf(m->settings, sizeof m->settings, "innodb_flush_log_at_trx_commit=%" PRId64
             " sync_binlog=%" PRId64 " log_bin=%" PRId64 " autocommit=%" PRId64, v[0], v[1], v[2],
             v[3]);
    return 0;
}

static int ceil_open(bench_run *r, void **state, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    if (!o->has_db) {
        snprintf(err, err_len, "ceiling needs --db or STOCKD_DB");
        return -1;
    }
    ceil_mode *m = calloc(1, sizeof *m);
    assert(m != NULL);
    *state = m;
    m->conns = calloc(o->connections, sizeof *m->conns);
    assert(m->conns != NULL);
    snprintf(m->table, sizeof m->table, "`%s`.bench_ceiling_%s", o->db.db, bench_nonce(r));
    m->shape = (ceiling_shape){ .table = m->table, .nonce = bench_nonce(r), .skus = o->skus,
                                .qty = o->qty,
                                .available = o->stock > o->qty ? o->stock - o->qty : 0 };
    MYSQL *my = bench_db_connect(&o->db, NULL, false, err, err_len);
    if (my == NULL) {
        ceil_close(r, m);
        return -1;
    }
    char sql[1536];
    int rc = read_settings(my, m, err, err_len);
    if (rc == 0 && ceiling_table_sql(sql, sizeof sql, m->table) == 0) {
        snprintf(err, err_len, "ceiling: table name too long");
        rc = -1;
    }
    if (rc == 0 && (rc = bench_db_exec(my, sql, err, err_len)) == 0)
        m->created = true;
    mysql_close(my);
    if (rc != 0) {
        ceil_close(r, m);
        return -1;
    }
    for (uint32_t i = 0; i < o->connections; i++) {
        ceil_conn *c = &m->conns[i];
        c->db = bench_db_open(bench_base(r), &o->db, o->db.db, err, err_len);
        if (c->db == NULL) {
            ceil_close(r, m);
            return -1;
        }
        m->n_conns++;
        c->r = r;
        c->mode = m;
        c->cap = ceiling_insert_cap(CEILING_ROWS);
        c->sql = malloc(c->cap);
        assert(c->sql != NULL);
        c->idx = bench_add_conn(r, c, 1);
    }
    return 0;
}

static void ceil_after(bench_run *r, void *state, bench_result *res)
{
    (void)r;
    ceil_mode *m = state;
    snprintf(res->server_settings, sizeof res->server_settings, "%s", m->settings);
}

/* Every statement is all or nothing: the table holds exactly 1,000 rows
 * per success reply, plus 0 or 1,000 per statement whose reply never came. */
static bench_audit_rc ceil_audit(bench_run *r, void *state, const bench_result *res, char *msg,
                                 size_t msg_len)
{
    const bench_opts *o = bench_opts_of(r);
    ceil_mode *m = state;
    char err[512], sql[256];
    MYSQL *my = bench_db_connect(&o->db, NULL, false, err, sizeof err);
    if (my == NULL) {
        snprintf(msg, msg_len, "audit: %s", err);
        return BENCH_AUDIT_ERROR;
    }
    int64_t rows = 0;
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", m->table);
    int rc = bench_db_scalar(my, sql, &rows, err, sizeof err);
    mysql_close(my);
    if (rc != 0) {
        snprintf(msg, msg_len, "audit: %s", err);
        return BENCH_AUDIT_ERROR;
    }
    uint64_t lo = res->ok_total * CEILING_ROWS;
    uint64_t hi = (res->ok_total + res->unknown_total) * CEILING_ROWS;
    if (rows < 0 || (uint64_t)rows % CEILING_ROWS != 0 || (uint64_t)rows < lo || (uint64_t)rows > hi) {
        snprintf(msg, msg_len, "FAILED: %" PRId64 " rows vs %" PRIu64 " statements of %d acknowledged"
                 " (+%" PRIu64 " unknown)", rows, res->ok_total, CEILING_ROWS, res->unknown_total);
        return BENCH_AUDIT_FAILED;
    }
    snprintf(msg, msg_len, "ok (%" PRId64 " rows = %" PRId64 " statements of %d rows, each its own"
             " transaction)", rows, rows / CEILING_ROWS, CEILING_ROWS);
    return BENCH_AUDIT_OK;
}

const bench_mode_ops bench_mode_ceiling = {
    .name = "ceiling",
    .reserves = true,
    .rows_per_request = CEILING_ROWS,
    .open = ceil_open,
    .send = ceil_send,
    .after = ceil_after,
    .audit = ceil_audit,
    .close = ceil_close,
};
