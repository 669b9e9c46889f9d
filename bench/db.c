/* db.c — see db.h. */
#include "db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "stockd/mysql_wait.h"

typedef enum db_state {
    DB_IDLE = 0,  /**< connected, no statement running */
    DB_QUERY,     /**< mysql_real_query_start/_cont in progress */
    DB_STORE,     /**< mysql_store_result_start/_cont in progress */
    DB_DEAD,      /**< client-side error: refuses work until closed */
} db_state;

struct bench_db {
    MYSQL *m;
    struct event_base *base;
    struct event ev_io;       /* one-shot, re-armed per wait */
    struct event ev_done;     /* defers a completion that happened inside _start */
    bool io_armed;
    bool in_start;
    db_state state;
    char sql[BENCH_SQL_MAX];
    const char *sqlp;         /* sql, or the caller's text (bench_db_query_ref) */
    size_t sql_len;
    bench_db_cb cb;
    void *arg;
    int qret;
    MYSQL_RES *res;
    unsigned err;
    uint64_t affected;
    bool has_value;
    char value[64];
};

MYSQL *bench_db_connect(const bench_dburl *u, const char *db, bool nonblock, char *err,
                        size_t err_len)
{
    MYSQL *m = mysql_init(NULL);
    if (m == NULL) {
        snprintf(err, err_len, "mysql_init: out of memory");
        return NULL;
    }
    unsigned connect_s = 5, rw_s = 60;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &rw_s);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &rw_s);
    if (nonblock)
        mysql_options(m, MYSQL_OPT_NONBLOCK, 0);
    const char *sock = u->socket[0] ? u->socket : NULL;
    if (mysql_real_connect(m, u->host, u->user, u->pass, db, u->port, sock, 0) == NULL) {
        snprintf(err, err_len, "connect to MariaDB %s:%u: %s", u->host, u->port, mysql_error(m));
        mysql_close(m);
        return NULL;
    }
    return m;
}

int bench_db_exec(MYSQL *m, const char *sql, char *err, size_t err_len)
{
    if (mysql_real_query(m, sql, strlen(sql)) != 0) {
        snprintf(err, err_len, "%.120s: %s", sql, mysql_error(m));
        return -1;
    }
    MYSQL_RES *res = mysql_store_result(m);
    if (res != NULL)
        mysql_free_result(res);
    return 0;
}

int bench_db_scalar(MYSQL *m, const char *sql, int64_t *out, char *err, size_t err_len)
{
    *out = 0;
    if (mysql_real_query(m, sql, strlen(sql)) != 0) {
        snprintf(err, err_len, "%.120s: %s", sql, mysql_error(m));
        return -1;
    }
    MYSQL_RES *res = mysql_store_result(m);
    if (res == NULL) {
        snprintf(err, err_len, "%.120s: no result: %s", sql, mysql_error(m));
        return -1;
    }
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row != NULL && row[0] != NULL)
        *out = strtoll(row[0], NULL, 10);
    mysql_free_result(res);
    return 0;
}

static void db_io_cb(evutil_socket_t fd, short what, void *arg);

static void db_wait(bench_db *db, int status)
{
    assert(status != 0);
    short what = mysql_wait_events(status);
    struct timeval tv, *tvp = NULL;
    if (status & MYSQL_WAIT_TIMEOUT) {
        unsigned ms = mysql_get_timeout_value_ms(db->m);
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
        tvp = &tv;
    }
    if (db->io_armed)
        event_del(&db->ev_io);
    /* The fd is read on every wait: it may change across reconnects. */
    event_assign(&db->ev_io, db->base, mysql_get_socket(db->m), what, db_io_cb, db);
    event_add(&db->ev_io, tvp);
    db->io_armed = true;
}

static void db_deliver(bench_db *db)
{
    bench_db_cb cb = db->cb;
    db->cb = NULL;
    assert(cb != NULL);
    cb(db, db->err, db->affected, db->has_value ? db->value : NULL, db->arg);
}

static void db_finish(bench_db *db)
{
    /* Client errors (2000..2999) mean the connection can no longer be
     * trusted: there is no way to resync a half-read reply. */
    db->state = (db->err >= 2000 && db->err < 3000) ? DB_DEAD : DB_IDLE;
    if (db->in_start)
        event_active(&db->ev_done, EV_TIMEOUT, 1);
    else
        db_deliver(db);
}

static void db_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    db_deliver(arg);
}

static void db_after_store(bench_db *db)
{
    if (db->res == NULL) {
        db->err = mysql_errno(db->m);
    } else {
        MYSQL_ROW row = mysql_fetch_row(db->res);
        if (row != NULL && row[0] != NULL) {
            snprintf(db->value, sizeof db->value, "%s", row[0]);
            db->has_value = true;
        }
        mysql_free_result(db->res);    /* no I/O after store_result */
        db->res = NULL;
    }
    db_finish(db);
}

static void db_after_query(bench_db *db)
{
    if (db->qret != 0) {
        db->err = mysql_errno(db->m);
        db_finish(db);
        return;
    }
    if (mysql_field_count(db->m) == 0) {
        db->affected = mysql_affected_rows(db->m);
        db_finish(db);
        return;
    }
    db->state = DB_STORE;
    int st = mysql_store_result_start(&db->res, db->m);
    if (st != 0) {
        db_wait(db, st);
        return;
    }
    db_after_store(db);
}

static void db_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    bench_db *db = arg;
    db->io_armed = false;
    int st = mysql_wait_status(what);
    switch (db->state) {
    case DB_QUERY:
        st = mysql_real_query_cont(&db->qret, db->m, st);
        if (st != 0) {
            db_wait(db, st);
            return;
        }
        db_after_query(db);
        return;
    case DB_STORE:
        st = mysql_store_result_cont(&db->res, db->m, st);
        if (st != 0) {
            db_wait(db, st);
            return;
        }
        db_after_store(db);
        return;
    case DB_IDLE:
    case DB_DEAD:
        break;
    }
    assert(!"db event in a state without I/O");
}

bench_db *bench_db_open(struct event_base *base, const bench_dburl *u, const char *dbname,
                        char *err, size_t err_len)
{
    MYSQL *m = bench_db_connect(u, dbname, true, err, err_len);
    if (m == NULL)
        return NULL;
    bench_db *db = calloc(1, sizeof *db);
    assert(db != NULL);
    db->m = m;
    db->base = base;
    event_assign(&db->ev_done, base, -1, 0, db_done_cb, db);
    return db;
}

static int db_start(bench_db *db, const char *sql, size_t len, bench_db_cb cb, void *arg)
{
    db->sqlp = sql;
    db->sql_len = len;
    db->cb = cb;
    db->arg = arg;
    db->err = 0;
    db->affected = 0;
    db->has_value = false;
    db->state = DB_QUERY;
    db->in_start = true;
    int st = mysql_real_query_start(&db->qret, db->m, db->sqlp, (unsigned long)db->sql_len);
    if (st != 0)
        db_wait(db, st);
    else
        db_after_query(db);
    db->in_start = false;
    return 0;
}

int bench_db_query(bench_db *db, const char *sql, size_t len, bench_db_cb cb, void *arg)
{
    assert(cb != NULL);
    if (db->state != DB_IDLE || len >= sizeof db->sql)
        return -1;
    memcpy(db->sql, sql, len);
    db->sql[len] = '\0';
    return db_start(db, db->sql, len, cb, arg);
}

int bench_db_query_ref(bench_db *db, const char *sql, size_t len, bench_db_cb cb, void *arg)
{
    assert(cb != NULL);
    if (db->state != DB_IDLE)
        return -1;
    return db_start(db, sql, len, cb, arg);
}

bool bench_db_dead(const bench_db *db)
{
    return db->state == DB_DEAD;
}

/* Closing in the middle of a nonblocking call is allowed by Connector/C;
 * the pending callback is dropped (the run is over by then). */
void bench_db_close(bench_db *db)
{
    if (db == NULL)
        return;
    if (db->io_armed)
        event_del(&db->ev_io);
    event_del(&db->ev_done);
    if (db->res != NULL)
        mysql_free_result(db->res);
    mysql_close(db->m);
    free(db);
}

/* ---- peer tables ---- */

void peer_tables_name(bench_run *r, peer_tables *t)
{
    const bench_opts *o = bench_opts_of(r);
    snprintf(t->stock, sizeof t->stock, "`%s`.bench_stock_%s", o->peer_db, bench_nonce(r));
    snprintf(t->orders, sizeof t->orders, "`%s`.bench_orders_%s", o->peer_db, bench_nonce(r));
}

static int insert_stock_rows(MYSQL *m, bench_run *r, const peer_tables *t, char *err,
                             size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    enum { ROWS_PER_INSERT = 1000 };
    size_t cap = 128 + ROWS_PER_INSERT * (BENCH_NAME_LEN + 48);
    char *sql = malloc(cap);
    assert(sql != NULL);
    int rc = 0;
    for (uint32_t i = 0; i < o->skus && rc == 0; i += ROWS_PER_INSERT) {
        size_t n = (size_t)snprintf(sql, cap, "INSERT INTO %s (sku, qty, initial) VALUES ", t->stock);
        for (uint32_t j = i; j < o->skus && j < i + ROWS_PER_INSERT; j++) {
            char sku[BENCH_NAME_LEN];
            bench_sku_name(r, j, sku, sizeof sku);
            n += (size_t)snprintf(sql + n, cap - n, "%s('%s',%" PRId64 ",%" PRId64 ")",
                                  j == i ? "" : ",", sku, o->stock, o->stock);
            assert(n < cap);
        }
        rc = bench_db_exec(m, sql, err, err_len);
    }
    free(sql);
    return rc;
}

int peer_tables_create(bench_run *r, const peer_tables *t, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    MYSQL *m = bench_db_connect(&o->db, NULL, false, err, err_len);
    if (m == NULL)
        return -1;
    char sql[512];
    int rc = -1;
    snprintf(sql, sizeof sql, "CREATE DATABASE IF NOT EXISTS `%s`", o->peer_db);
    if (bench_db_exec(m, sql, err, err_len) != 0)
        goto out;
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (sku VARBINARY(64) NOT NULL PRIMARY KEY,"
             " qty BIGINT NOT NULL, initial BIGINT NOT NULL) ENGINE=InnoDB", t->stock);
    if (bench_db_exec(m, sql, err, err_len) != 0)
        goto out;
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (order_id VARBINARY(64) NOT NULL, line_no SMALLINT NOT NULL,"
             " sku VARBINARY(64) NOT NULL, qty INT NOT NULL,"
             " created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
             " PRIMARY KEY (order_id, line_no), KEY (sku)) ENGINE=InnoDB", t->orders);
    if (bench_db_exec(m, sql, err, err_len) != 0)
        goto out;
    rc = insert_stock_rows(m, r, t, err, err_len);
out:
    mysql_close(m);
    return rc;
}

int peer_insert_sql(bench_run *r, const peer_tables *t, const bench_req *q, char *sql, size_t len)
{
    char oid[BENCH_NAME_LEN], sku[BENCH_NAME_LEN];
    assert(q->n_lines >= 1 && q->n_lines <= BENCH_LINES_MAX);
    bench_order_id(r, q->seq, oid, sizeof oid);
    int n = snprintf(sql, len, "INSERT INTO %s (order_id, line_no, sku, qty) VALUES ", t->orders);
    for (uint32_t i = 0; i < q->n_lines; i++) {
        assert(n > 0 && (size_t)n < len);
        bench_sku_name(r, q->line_sku[i], sku, sizeof sku);
        n += snprintf(sql + n, len - (size_t)n, "%s('%s',%" PRIu32 ",'%s',%" PRId32 ")",
                      i ? "," : "", oid, i, sku, q->qty);
    }
    assert(n > 0 && (size_t)n < len);
    return n;
}

int peer_update_sql(bench_run *r, const peer_tables *t, const bench_req *q, uint32_t line,
                    char *sql, size_t len)
{
    char sku[BENCH_NAME_LEN];
    assert(line < q->n_lines);
    bench_sku_name(r, q->line_sku[line], sku, sizeof sku);
    int n = snprintf(sql, len, "UPDATE %s SET qty = qty - %" PRId32 " WHERE sku = '%s' AND qty >= %"
                     PRId32, t->stock, q->qty, sku, q->qty);
    assert(n > 0 && (size_t)n < len);
    return n;
}

/* No SKU below zero; one order per success reply (replies that never
 * came may or may not have committed), each with all its lines (--lines);
 * stock taken = sum of order rows. */
bench_audit_rc peer_tables_audit(bench_run *r, const peer_tables *t, const bench_result *res,
                                 char *msg, size_t msg_len)
{
    const bench_opts *o = bench_opts_of(r);
    char err[512], sql[768];
    MYSQL *m = bench_db_connect(&o->db, NULL, false, err, sizeof err);
    if (m == NULL) {
        snprintf(msg, msg_len, "audit: %s", err);
        return BENCH_AUDIT_ERROR;
    }
    int64_t negative, rows, skus, mismatched, partial;
    bench_audit_rc rc = BENCH_AUDIT_ERROR;
    snprintf(sql, sizeof sql, "SELECT COUNT(*), SUM(qty < 0) FROM %s", t->stock);
    if (bench_db_scalar(m, sql, &skus, err, sizeof err) != 0)
        goto fail;
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE qty < 0", t->stock);
    if (bench_db_scalar(m, sql, &negative, err, sizeof err) != 0)
        goto fail;
    snprintf(sql, sizeof sql, "SELECT COUNT(DISTINCT order_id) FROM %s", t->orders);
    if (bench_db_scalar(m, sql, &rows, err, sizeof err) != 0)
        goto fail;
    uint32_t n_lines = bench_lines_per_order(o);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM (SELECT order_id FROM %s GROUP BY order_id"
             " HAVING COUNT(*) <> %" PRIu32 " OR COUNT(DISTINCT sku) <> %" PRIu32 ") x",
             t->orders, n_lines, n_lines);
    if (bench_db_scalar(m, sql, &partial, err, sizeof err) != 0)
        goto fail;
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM %s s LEFT JOIN (SELECT sku, SUM(qty) q FROM %s GROUP BY sku) o"
             " ON o.sku = s.sku WHERE s.initial - s.qty <> COALESCE(o.q, 0)", t->stock, t->orders);
    if (bench_db_scalar(m, sql, &mismatched, err, sizeof err) != 0)
        goto fail;
    mysql_close(m);
    uint64_t lo = res->ok_total, hi = res->ok_total + res->unknown_total;
    if ((uint64_t)skus != o->skus || negative != 0 || rows < 0 || (uint64_t)rows < lo ||
        (uint64_t)rows > hi || mismatched != 0 || partial != 0) {
        snprintf(msg, msg_len,
                 "FAILED: skus %" PRId64 "/%" PRIu32 ", oversold skus %" PRId64
                 ", orders %" PRId64 " vs success replies %" PRIu64 " (+%" PRIu64
                 " unknown), skus whose stock != initial - orders %" PRId64
                 ", orders without all %" PRIu32 " lines %" PRId64,
                 skus, o->skus, negative, rows, res->ok_total, res->unknown_total, mismatched,
                 n_lines, partial);
        return BENCH_AUDIT_FAILED;
    }
    if (o->lines > 0)
        snprintf(msg, msg_len, "ok (%" PRId64 " carts of %" PRIu32 " lines, all or nothing, %" PRIu32
                 " skus, none oversold)", rows, n_lines, o->skus);
    else
        snprintf(msg, msg_len, "ok (%" PRId64 " order rows, %" PRIu32 " skus, none oversold)", rows,
                 o->skus);
    return BENCH_AUDIT_OK;
fail:
    mysql_close(m);
    snprintf(msg, msg_len, "audit: %s", err);
    return rc;
}

void peer_tables_drop(bench_run *r, const peer_tables *t)
{
    const bench_opts *o = bench_opts_of(r);
    if (o->keep)
        return;
    char err[256], sql[256];
    MYSQL *m = bench_db_connect(&o->db, NULL, false, err, sizeof err);
    if (m == NULL)
        return;
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s, %s", t->stock, t->orders);
    (void)bench_db_exec(m, sql, err, sizeof err);
    mysql_close(m);
}
