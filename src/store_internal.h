/* store_internal.h — the store's private state and the functions its
 * files share (store.c, store_sql.c, dbconn.c, store_schema.c,
 * store_load.c, store_reader.c, store_support.c). store.h is the contract;
 * nothing outside src/store*.c and src/dbconn.c includes this file. */
#ifndef STOCKD_STORE_INTERNAL_H
#define STOCKD_STORE_INTERNAL_H

#include "stockd/store.h"
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>
#include "stockd/log.h"
#include "stockd/rpc_parse.h"
#define STORE_CONNS_MAX 16
#define STORE_SCHEMA_VERSION 7

/* A connection's SQL buffer is kept for reuse up to this size, else freed
 * after the statement, so one huge batch does not pin memory forever. */
#define STORE_SQL_KEEP_BYTES (1u << 20)
#define STORE_BACKOFF_MIN_MS 50u

/* An idle writer connection is pinged when it has been idle this long, so a
 * database that died or froze without closing the socket (SIGSTOP, a hung
 * host, a dropped network path) is noticed within about this plus the
 * connect timeout even when no order comes: /readyz says so before the
 * first order fails. A ping is one round trip on a connection that is idle
 * anyway. */
#define STORE_PROBE_IDLE_MS 2000u
#define STORE_BLOCKING_IO_TIMEOUT_S 60u

/* batch_id = boot_id << 40 | engine batch counter: 2^40 batches per boot
 * (years at 10k commits/s) and 2^23 boots. */
#define STORE_BATCH_COUNTER_BITS 40
#define STORE_BOOT_ID_MAX ((UINT64_C(1) << 23) - 1)
#define SKU_SELECT "SELECT sku,own_on_hand,own_reserved,supplier_reported," \
                   "supplier_sellable,supplier_reserved,supplier_synced_at,mapping," \
                   "supplier_id,offer_id,spec_id,sku_id,epoch,supplier_cap,fingerprint FROM sku"
#define ORDER_SELECT "SELECT order_id,sku,qty,status,from_own,from_supplier,available," \
                     "created_at,updated_at,hold_expires_at,upstream_order_id,reason," \
                     "purchased_at,supplier_settled,line_no,n_lines FROM orders"

/* Lines reach the engine in this order: one order's lines together, line
 * 0 first (engine_load_order_lines). */
#define ORDER_SORT " ORDER BY order_id,line_no"
#define SUPPLIER_SELECT "SELECT supplier_id,trust,trust_ceiling,event_mode,event_trust," \
    "check_before_confirm FROM supplier"
#define SUP_SQL_MAX 1536   /* the longest: an ack, hex of by (128) and note (510) */
#define ALERT_COLS "a.id,a.kind,a.sku,a.order_id,a.reason,a.at,a.acked_at,a.acked_by,a.ack_note"


/* ---- growable SQL buffer ------------------------------------------------ */

#include "stockd/store_sql.h"

/* ---- types --------------------------------------------------------------- */

/* A nonblocking MariaDB connection on the loop (dbc): connects with
 * backoff, waits for its socket or a timeout, watches an idle connection
 * for a server close, closes, and has a defer event. The writers and the
 * reader own one each and keep only their statements and what a result
 * means, through dbc_ops.
 * Contract:
 *  - The hooks run from the loop (io, timer, defer), never inside a dbc_*
 *    call of the owner, but for down(), which st_dbc_down() always calls.
 *  - DBC_BUSY belongs to the owner: it starts a statement (st_dbc_begin and
 *    st_dbc_send, or st_dbc_query_start) and its own _start calls (st_dbc_started,
 *    st_dbc_wait); it hears cont() for each socket event, step() when a
 *    _start/_cont returned 0 (a _start that finishes at once is stepped
 *    from the defer, never inside the call), timeout() when the timer
 *    fires; it leaves with st_dbc_idle() or st_dbc_down().
 *  - The dbc owns the handle, its events and sql; the owner owns what it
 *    read (release() frees it before the handle closes). */
typedef enum dbc_state {
    DBC_DOWN = 0,       /**< no handle; timer = reconnect backoff */
    DBC_CONNECTING,     /**< real_connect running; timer = connect timeout */
    DBC_IDLE,           /**< up, no statement; io watches for a server close */
    DBC_BUSY,           /**< the owner's statement running; timer = its timeout */
} dbc_state;

typedef struct dbc dbc;

typedef struct dbc_ops {
    void (*up)(dbc *d);                     /* connected; now DBC_IDLE */
    /* After every st_dbc_down (now DBC_DOWN, reconnect armed); was: the state before. */
    void (*down)(dbc *d, const char *why, dbc_state was);
    void (*release)(dbc *d);                /* optional: before the handle closes */
    int (*cont)(dbc *d, int status);        /* BUSY: the running _cont; its wait mask */
    void (*step)(dbc *d);                   /* BUSY: a _start/_cont returned 0 */
    void (*timeout)(dbc *d);                /* BUSY (or IDLE if the owner left it armed) */
    void (*defer)(dbc *d);                  /* optional: the defer fired, no step due */
} dbc_ops;

struct dbc {
    store *s;
    const dbc_ops *ops;
    void *owner;
    dbc_state state;
    MYSQL *my;              /* NULL in DBC_DOWN */
    MYSQL *connect_ret;
    int qret;               /* result of real_query / next_result */
    struct event *io;
    struct event *timer;
    struct event *defer;
    uint32_t backoff_ms;    /* 0: healthy, next failure reconnects at once */
    int64_t idle_since_us;  /* st_mono_us() when it last became idle (DBC_IDLE) */
    bool step_due;          /* defer: a _start finished at once, step() its result */
    sbuf sql;
};

/* What a writer's statement is (while its dbc is DBC_BUSY). */
typedef enum conn_kind {
    CONN_COMMIT = 0,    /**< a batch statement; timer = commit timeout */
    CONN_RESOLVE,       /**< a tombstone insert; timer = commit timeout */
    CONN_PROBE,         /**< a ping of an idle connection; timer = connect timeout */
} conn_kind;

typedef enum conn_phase {
    PHASE_QUERY = 0,    /**< real_query_start/_cont */
    PHASE_NEXT_RESULT,  /**< next_result_start/_cont: draining trailing results */
} conn_phase;

typedef struct store_conn {
    store *s;
    unsigned idx;
    dbc db;
    conn_kind kind;
    conn_phase phase;
    eng_batch *batch;       /* COMMIT / RESOLVE */
    uint64_t batch_id;
    int64_t started_us;
    bool ever_up;
    const char *build_err;  /* SQL could not be built: abort the batch */
} store_conn;

/* Where the reader's statement is (while its dbc is DBC_BUSY). */
typedef enum reader_phase {
    RD_QUERY = 0,       /**< SELECT running; timer = commit timeout */
    RD_RESULT,          /**< store_result running; timer still armed */
} reader_phase;

/* What a reader request asks; one kind per query. */
typedef enum load_kind {
    LK_SKU = 0,         /**< store_load_sku: a SKU row (a takeover in sharded mode) */
    LK_FIND,            /**< store_find_order_sku: line 0's SKU */
    LK_LINES,           /**< store_find_order_lines: every line's SKU */
    LK_DECIDE,          /**< store_cart_decide: first writer wins */
    LK_ORDER,           /**< store_load_order: every stored line of an order */
} load_kind;

typedef struct load_req {
    char sku[ENG_ID_MAX + 1];     /* or the order_id (every kind but LK_SKU) */
    load_kind kind;
    store_decision want;          /* LK_DECIDE */
    store_abort_why why;          /* LK_DECIDE, ABORT: the refusal told (code "" = none) */
    union {
        store_load_fn load;
        store_find_fn find;
        store_lines_fn lines;
        store_decide_fn decide;
        store_order_fn order;
    } fn;
    void *arg;
} load_req;

typedef struct store_reader {
    dbc db;                 /* defer also fails queued loads while down */
    reader_phase phase;
    MYSQL_RES *res;
    load_req *q;            /* ring of waiting requests */
    size_t q_head, q_len, q_cap;
    load_req batch[STORE_LOAD_BATCH_MAX];  /* the ones in the running query */
    size_t n_batch;
    int step;               /* RD_STEP_*: where a load is in its statements */
    int deadlocks;          /* takeover attempts of this batch lost to InnoDB deadlocks */
    MYSQL_RES *res_orders;  /* takeover: the orders of the loaded SKUs */
} store_reader;

/* A plain load is one SELECT of the SKU rows. A takeover (sharded mode) is
 * one transaction that first bumps the SKUs' epochs, so that a previous
 * owner's next batch fails its fence, and then reads the rows and their
 * orders under the row locks it holds: what it reads is final. */
enum {
    RD_STEP_ISOLATION = 0, RD_STEP_BEGIN, RD_STEP_BUMP, RD_STEP_SKUS, RD_STEP_ORDERS, RD_STEP_COMMIT, RD_STEP_DONE,
    RD_STEP_FIND,     /* an order lookup: one SELECT of (order_id, sku) of line 0 */
    RD_STEP_RETRY,    /* a takeover lost a lock conflict: ROLLBACK, then again */
    RD_STEP_LINES,    /* an order's lines: one SELECT of (order_id, line_no, n_lines, sku) */
    RD_STEP_DECIDE,   /* cart decisions: one upsert ... RETURNING the rows that stand */
    RD_STEP_ORDER     /* whole orders read back: one SELECT of their rows */
};

struct store {
    struct event_base *base;
    store_callbacks cb;
    cfg_db db;
    char node[CFG_STR_MAX];
    uint32_t n_conns;
    uint32_t commit_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t backoff_max_ms;
    uint64_t boot_id;
    bool was_up;
    uint64_t rng;
    store_conn conns[STORE_CONNS_MAX];
    store_reader rd;
    struct store_support *sup;  /* support queries: created at the first one */
    struct event *probe;    /* every STORE_PROBE_IDLE_MS: ping the long-idle writers */
    engine *takeover;       /* non-NULL: loads are takeovers into this engine */
    engine *eng;            /* the engine loaded (store_load_state, store_set_takeover):
                             * cold SKU rows that cannot be trusted are set aside in it */
    /* UNKNOWN batches waiting for a connection: a ring, grown on demand.
     * Bounded by the engine (each holds its SKUs blocked). */
    eng_batch **rq;
    size_t rq_head, rq_len, rq_cap;
    store_stats st;
};

typedef struct schema_step {
    int version;
    const char *const *sql;
    size_t n;
} schema_step;

/* The stored lines of one order, gathered from rows sorted by order_id:
 * loaded all at once or set aside together. */
typedef struct order_group {
    char key[ENG_ID_MAX];         /* order_id's raw bytes (VARBINARY(64)) */
    unsigned long key_len;
    bool key_null;
    size_t rows;
    eng_order_view v[ENG_LINES_MAX]; /* lines whose holds are known */
    size_t n;
    bool bad;                     /* a row did not parse, or too many */
    char why[ENG_REASON_MAX + 1]; /* the first thing wrong */
    char blind[ENG_LINES_MAX][ENG_ID_MAX + 1]; /* SKUs of rows whose holds are unknown */
    size_t n_blind;
} order_group;

typedef int (*load_row_fn)(engine *e, MYSQL_ROW row, const unsigned long *len, char *err,
                           size_t err_len);

/* ---- support queries (the console) ---------------------------------------------- */

typedef enum sup_kind {
    SUP_ALERTS = 0,     /**< a SELECT of alert rows */
    SUP_ACK,            /**< UPDATE of one alert, then SUP_ACK_READ */
    SUP_ACK_READ,       /**< the acked alert's row as it stands */
    SUP_MOVES,          /**< a SELECT of a SKU's ledger moves */
} sup_kind;

typedef struct sup_req {
    sup_kind kind;
    int64_t id;                 /* SUP_ACK */
    bool acked_now;             /* SUP_ACK_READ: the update changed the row */
    uint32_t limit;
    char sql[SUP_SQL_MAX];
    union {
        store_alerts_fn alerts;
        store_moves_fn moves;
    } fn;
    void *arg;
} sup_req;

typedef enum sup_phase { SUP_QUERY = 0, SUP_RESULT } sup_phase;

typedef struct store_support {
    dbc db;
    sup_phase phase;
    MYSQL_RES *res;
    bool running;               /* cur holds the request on the wire */
    sup_req cur;
    sup_req q[STORE_SUPPORT_QUEUE_MAX];
    size_t q_head, q_len;
} store_support;

/* Shared between the files of the module (defined where their job is). */
bool st_dbc_is_up(const dbc *d);
void st_dbc_wait(dbc *d, int status);
void st_dbc_started(dbc *d, int st);
void st_dbc_step_later(dbc *d);
void st_dbc_down(dbc *d, const char *why);
void st_dbc_idle(dbc *d);
void st_dbc_begin(dbc *d, uint32_t timeout_ms);
void st_dbc_send(dbc *d);
void st_dbc_query_start(dbc *d, uint32_t timeout_ms);
void st_dbc_io_cb(evutil_socket_t fd, short what, void *arg);
void st_dbc_timer_cb(evutil_socket_t fd, short what, void *arg);
void st_dbc_defer_cb(evutil_socket_t fd, short what, void *arg);
int st_dbc_init(dbc *d, store *s, const dbc_ops *ops, void *owner, char *err,
                    size_t err_len);
void st_dbc_free(dbc *d);
const char *st_db_host(const cfg_db *db);
int st_db_query_i64(MYSQL *my, const char *sql, int64_t *out, char *err,
                        size_t err_len);
int st_store_setup_schema(store *s, char *err, size_t err_len);
bool st_col_str(MYSQL_ROW row, const unsigned long *len, int i, char *out,
                    size_t out_size, bool nullable);
bool st_col_i64(MYSQL_ROW row, int i, int64_t *out);
bool st_parse_sku_row(MYSQL_ROW row, const unsigned long *len, store_sku_row *r,
                          char why[ENG_REASON_MAX + 1]);
int st_aside_sku(engine *e, const char *sku, const char *why);
int st_load_orders_res(MYSQL_RES *res, engine *e, uint64_t *count, char *err, size_t err_len);
/* The columns of ORDER_SELECT into o, checked; false with why on a bad row. */
bool st_parse_order_row(MYSQL_ROW row, const unsigned long *len, eng_order_view *o,
                        char why[ENG_REASON_MAX + 1]);
void st_col_cut(MYSQL_ROW row, const unsigned long *len, int i, char *out, size_t out_size);
bool st_parse_alert_row(MYSQL_ROW row, const unsigned long *len, store_alert *a);
int st_rd_init(store *s, char *err, size_t err_len);
void st_rd_free(store *s);
void st_sup_free(store *s);
void st_load_req_fail(const load_req *r);
bool st_rd_step_single(int step);
void st_set_err(char *err, size_t err_len, const char *fmt, ...);
uint64_t st_store_rand(store *s);
struct timeval st_tv_ms(uint32_t ms);
MYSQL *st_db_handle_new(const store *s, bool nonblock, unsigned io_timeout_s);
MYSQL *st_db_connect_blocking(const store *s, bool nonblock, const char *db,
                                  char *err, size_t err_len);

#endif
