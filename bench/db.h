/* db.h — MariaDB for stockbench: blocking helpers for setup and audit, and
 * one nonblocking connection type driven on the loop (Connector/C's
 * nonblocking start/cont API on events of mysql_get_socket).
 *
 * A bench_db runs one statement at a time. Its callback gets the MySQL
 * error number (0 = success), the affected rows of a DML statement, and
 * the first column of the first row of a result set (NULL when none). The
 * callback always runs from the loop, never inside bench_db_query().
 * After a client-side error (errno >= 2000: connection lost, timeout) the
 * connection is dead and refuses further queries.
 */
#ifndef STOCKBENCH_DB_H
#define STOCKBENCH_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mysql.h>

#include "bench.h"

#define BENCH_SQL_MAX 4096            /* one statement on the hot path (a 50-line INSERT) */

struct event_base;
typedef struct bench_db bench_db;
typedef void (*bench_db_cb)(bench_db *db, unsigned err, uint64_t affected, const char *value,
                            void *arg);

/* Blocking connect; db NULL = no default database. NULL with err. */
MYSQL *bench_db_connect(const bench_dburl *u, const char *db, bool nonblock, char *err,
                        size_t err_len);
/* Blocking statement; results are read and dropped. 0 or -1 with err. */
int bench_db_exec(MYSQL *m, const char *sql, char *err, size_t err_len);
/* Blocking query returning one integer (first column of the first row;
 * NULL reads as 0). 0 or -1 with err. */
int bench_db_scalar(MYSQL *m, const char *sql, int64_t *out, char *err, size_t err_len);

bench_db *bench_db_open(struct event_base *base, const bench_dburl *u, const char *db,
                        char *err, size_t err_len);
/* Starts sql; 0, or -1 when the connection is dead or busy. */
int bench_db_query(bench_db *db, const char *sql, size_t len, bench_db_cb cb, void *arg);
/* The same for statements of any size: sql is not copied and must stay
 * unchanged until the callback has run (Connector/C may still be sending
 * it from the loop). */
int bench_db_query_ref(bench_db *db, const char *sql, size_t len, bench_db_cb cb, void *arg);
bool bench_db_dead(const bench_db *db);
void bench_db_close(bench_db *db);

/* Peer tables (mariadb-row, seed-lock): <peer_db>.bench_stock_<nonce> and
 * bench_orders_<nonce>, created fresh with the run's SKUs and stock. */
typedef struct peer_tables {
    char stock[96];                   /* qualified names, ready for SQL */
    char orders[96];
} peer_tables;

void peer_tables_name(bench_run *r, peer_tables *t);
int peer_tables_create(bench_run *r, const peer_tables *t, char *err, size_t err_len);
/* The order's INSERT: one row (order_id, line_no, sku, qty) per line.
 * Returns the length (always < len). */
int peer_insert_sql(bench_run *r, const peer_tables *t, const bench_req *q, char *sql, size_t len);
/* The conditional UPDATE of line `line` of q. Returns the length. */
int peer_update_sql(bench_run *r, const peer_tables *t, const bench_req *q, uint32_t line,
                    char *sql, size_t len);
bench_audit_rc peer_tables_audit(bench_run *r, const peer_tables *t, const bench_result *res,
                                 char *msg, size_t msg_len);
void peer_tables_drop(bench_run *r, const peer_tables *t);

#endif
