/* mode_mariadb.c — mariadb-row: what a service does straight against
 * MariaDB, one transaction per order:
 *
 *   START TRANSACTION
 *   UPDATE stock SET qty = qty - ? WHERE sku = ? AND qty >= ?
 *   INSERT INTO orders ...          (only when the UPDATE changed a row)
 *   COMMIT                          (ROLLBACK when it did not)
 *
 * A cart (--lines N) is the same transaction with N UPDATEs, one per line
 * in ascending SKU order (a global lock order: no deadlock cycles), stopped
 * at the first that matches no row (ROLLBACK), and one INSERT of N rows.
 *
 * Sent as consecutive statements, not one multi-statement: the service has
 * to read the UPDATE's affected-row count to decide between INSERT+COMMIT
 * and ROLLBACK, and that is how an application (or an ORM) does it. The
 * row lock is therefore held across the INSERT and COMMIT round trips,
 * exactly as in production. A MariaDB connection runs one statement at a
 * time, so --pipeline does not apply: concurrency is --connections.
 */
#include "db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum row_stage { ROW_BEGIN = 0, ROW_UPDATE, ROW_INSERT, ROW_COMMIT, ROW_ROLLBACK };

typedef struct row_conn {
    bench_run *r;
    struct row_mode *mode;
    bench_db *db;
    uint32_t idx;
    bench_req *q;
    char outcome[32];
} row_conn;

typedef struct row_mode {
    peer_tables t;
    row_conn *conns;
    uint32_t n_conns;
} row_mode;

static void row_step_cb(bench_db *db, unsigned err, uint64_t affected, const char *value,
                        void *arg);

static void row_query(row_conn *c, const char *sql, int len)
{
    assert(len > 0 && len < BENCH_SQL_MAX);
    if (bench_db_query(c->db, sql, (size_t)len, row_step_cb, c) != 0) {
        bench_req *q = c->q;
        c->q = NULL;
        bench_conn_dead(c->r, c->idx);
        bench_done(c->r, q, "db_conn_lost");
    }
}

/* q->tries is the line the UPDATE stage is at (carts: one UPDATE per line,
 * in the cart's ascending SKU order, so two carts never wait on each other
 * in a cycle). */
static void row_stmt(row_conn *c, int stage)
{
    bench_req *q = c->q;
    char sql[BENCH_SQL_MAX];
    int n = 0;
    q->stage = stage;
    switch (stage) {
    case ROW_BEGIN:
        n = snprintf(sql, sizeof sql, "START TRANSACTION");
        break;
    case ROW_UPDATE:
        n = peer_update_sql(c->r, &c->mode->t, q, q->tries, sql, sizeof sql);
        break;
    case ROW_INSERT:
        n = peer_insert_sql(c->r, &c->mode->t, q, sql, sizeof sql);
        break;
    case ROW_COMMIT:
        n = snprintf(sql, sizeof sql, "COMMIT");
        break;
    case ROW_ROLLBACK:
        n = snprintf(sql, sizeof sql, "ROLLBACK");
        break;
    default:
        assert(!"bad stage");
    }
    row_query(c, sql, n);
}

static void row_finish(row_conn *c, const char *outcome)
{
    bench_req *q = c->q;
    assert(q != NULL);
    c->q = NULL;
    if (bench_db_dead(c->db))
        bench_conn_dead(c->r, c->idx);
    bench_done(c->r, q, outcome);
}

static void row_step_cb(bench_db *db, unsigned err, uint64_t affected, const char *value,
                        void *arg)
{
    (void)db;
    (void)value;
    row_conn *c = arg;
    bench_req *q = c->q;
    assert(q != NULL);
    if (err != 0) {
        snprintf(c->outcome, sizeof c->outcome, "db_%u", err);
        if (bench_db_dead(c->db) || q->stage == ROW_ROLLBACK || q->stage == ROW_COMMIT) {
            row_finish(c, c->outcome);
            return;
        }
        q->outcome = c->outcome;         /* deadlock, lock wait timeout...: roll back */
        row_stmt(c, ROW_ROLLBACK);
        return;
    }
    switch (q->stage) {
    case ROW_BEGIN:
        q->tries = 0;
        row_stmt(c, ROW_UPDATE);
        return;
    case ROW_UPDATE:
        if (affected == 1) {
            q->tries++;
            row_stmt(c, q->tries < q->n_lines ? ROW_UPDATE : ROW_INSERT);
        } else {
            q->outcome = "insufficient";
            row_stmt(c, ROW_ROLLBACK);
        }
        return;
    case ROW_INSERT:
        row_stmt(c, ROW_COMMIT);
        return;
    case ROW_COMMIT:
        row_finish(c, NULL);
        return;
    case ROW_ROLLBACK:
        row_finish(c, q->outcome);
        return;
    default:
        assert(!"bad stage");
    }
}

static void row_send(bench_run *r, void *state, bench_req *q)
{
    (void)r;
    (void)state;
    row_conn *c = q->conn;
    assert(c->q == NULL);
    c->q = q;
    row_stmt(c, ROW_BEGIN);
}

static void row_close(bench_run *r, void *state)
{
    row_mode *m = state;
    for (uint32_t i = 0; i < m->n_conns; i++)
        bench_db_close(m->conns[i].db);
    peer_tables_drop(r, &m->t);
    free(m->conns);
    free(m);
}

static int row_open(bench_run *r, void **state, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    if (!o->has_db) {
        snprintf(err, err_len, "mariadb-row needs --db or STOCKD_DB");
        return -1;
    }
    row_mode *m = calloc(1, sizeof *m);
    assert(m != NULL);
    *state = m;
    peer_tables_name(r, &m->t);
    m->conns = calloc(o->connections, sizeof *m->conns);
    assert(m->conns != NULL);
    if (peer_tables_create(r, &m->t, err, err_len) != 0) {
        row_close(r, m);
        return -1;
    }
    for (uint32_t i = 0; i < o->connections; i++) {
        row_conn *c = &m->conns[i];
        c->db = bench_db_open(bench_base(r), &o->db, o->peer_db, err, err_len);
        if (c->db == NULL) {
            row_close(r, m);
            return -1;
        }
        m->n_conns++;
        c->r = r;
        c->mode = m;
        c->idx = bench_add_conn(r, c, 1);
    }
    return 0;
}

static bench_audit_rc row_audit(bench_run *r, void *state, const bench_result *res, char *msg,
                                size_t msg_len)
{
    row_mode *m = state;
    return peer_tables_audit(r, &m->t, res, msg, msg_len);
}

const bench_mode_ops bench_mode_mariadb_row = {
    .name = "mariadb-row",
    .reserves = true,
    .open = row_open,
    .send = row_send,
    .audit = row_audit,
    .close = row_close,
};
