/* store.c — MariaDB, the durable truth (contract in include/stockd/store.h).
 *
 * Each writer connection is a small state machine (conn_state) driven by one
 * io event (re-armed for every wait, fd re-read every time because it changes
 * across reconnects), one timer whose meaning depends on the state (backoff,
 * connect timeout, commit timeout) and one deferral event, so that no
 * callback ever runs inside store_commit() / store_resolve().
 *
 * All bytes that come from outside (sku, order ids, reasons, node name) go
 * into SQL as hex literals X'..': there is no escaping to get wrong.
 */
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
#define STORE_SCHEMA_VERSION 5
/* The statement of one batch; the stack's max_allowed_packet is 64 MiB and
 * MariaDB's default is 16 MiB, so stay under the smaller. */
#define STORE_SQL_MAX_BYTES (15u << 20)
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

/* ---- growable SQL buffer ------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    const char *err;    /* first failure ("out of memory", "batch too large") */
} sbuf;

static void sb_reset(sbuf *b)
{
    b->len = 0;
    b->err = NULL;
    if (b->p)
        b->p[0] = '\0';
}

static bool sb_reserve(sbuf *b, size_t n)
{
    if (b->err)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    if (b->len + n + 1 > STORE_SQL_MAX_BYTES) {
        b->err = "batch too large for one statement";
        return false;
    }
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->err = "out of memory";
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_i64(sbuf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    sb_add(b, tmp, (size_t)n);
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_add(b, tmp, (size_t)n);
}

/* X'..' for n bytes; '' when empty (X'' is fine too, but clearer). */
static void sb_hex(sbuf *b, const void *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *d = data;
    if (n == 0) {
        sb_add(b, "''", 2);
        return;
    }
    if (!sb_reserve(b, 2 * n + 3))
        return;
    char *o = b->p + b->len;
    *o++ = 'X';
    *o++ = '\'';
    for (size_t i = 0; i < n; i++) {
        *o++ = digits[d[i] >> 4];
        *o++ = digits[d[i] & 15];
    }
    *o++ = '\'';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

static void sb_hex_str(sbuf *b, const char *s) { sb_hex(b, s, strlen(s)); }

/* An empty optional string is NULL in the database. */
static void sb_hex_or_null(sbuf *b, const char *s)
{
    if (!s || !s[0])
        sb_str(b, "NULL");
    else
        sb_hex_str(b, s);
}

static void sb_i64_or_null(sbuf *b, int64_t v)
{
    if (v == 0)
        sb_str(b, "NULL");
    else
        sb_i64(b, v);
}

static void sb_free(sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- types --------------------------------------------------------------- */

/* A nonblocking MariaDB connection on the loop (dbc): connects with
 * backoff, waits for its socket or a timeout, watches an idle connection
 * for a server close, closes, and has a defer event. The writers and the
 * reader own one each and keep only their statements and what a result
 * means, through dbc_ops.
 * Contract:
 *  - The hooks run from the loop (io, timer, defer), never inside a dbc_*
 *    call of the owner, but for down(), which dbc_down() always calls.
 *  - DBC_BUSY belongs to the owner: it starts a statement (dbc_begin and
 *    dbc_send, or dbc_query_start) and its own _start calls (dbc_started,
 *    dbc_wait); it hears cont() for each socket event, step() when a
 *    _start/_cont returned 0 (a _start that finishes at once is stepped
 *    from the defer, never inside the call), timeout() when the timer
 *    fires; it leaves with dbc_idle() or dbc_down().
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
    /* After every dbc_down (now DBC_DOWN, reconnect armed); was: the state before. */
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
    int64_t idle_since_us;  /* mono_us() when it last became idle (DBC_IDLE) */
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
    } fn;
    void *arg;
} load_req;

/* Fails one request, whatever its kind. */
static void load_req_fail(const load_req *r)
{
    switch (r->kind) {
    case LK_SKU:
        r->fn.load(r->sku, -1, NULL, r->arg);
        return;
    case LK_FIND:
        r->fn.find(r->sku, -1, NULL, r->arg);
        return;
    case LK_LINES:
        r->fn.lines(r->sku, -1, NULL, r->arg);
        return;
    case LK_DECIDE:
        r->fn.decide(r->sku, -1, NULL, r->arg);
        return;
    }
    assert(!"bad load kind");
}

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
    RD_STEP_DECIDE    /* cart decisions: one upsert ... RETURNING the rows that stand */
};

/* Steps that are a whole request in one statement with one result set. */
static bool rd_step_single(int step)
{
    return step == RD_STEP_FIND || step == RD_STEP_LINES || step == RD_STEP_DECIDE;
}

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

/* ---- small helpers ------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static uint64_t store_rand(store *s)
{
    /* xorshift64*: jitter only, not security. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * UINT64_C(2685821657736338717);
}

static struct timeval tv_ms(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static uint64_t store_batch_id(const store *s, const eng_batch *b)
{
    uint64_t n = eng_batch_id(b);
    /* Always-on: a wrapped counter would reuse tombstone keys. */
    assert(n < (UINT64_C(1) << STORE_BATCH_COUNTER_BITS));
    return s->boot_id << STORE_BATCH_COUNTER_BITS | n;
}

/* Errors after which the connection cannot be trusted and the statement
 * may or may not have committed: the client lost the server, or the server
 * killed the statement / is shutting down while it ran. */
static bool errno_is_unknown(unsigned e)
{
    if (e >= CR_MIN_ERROR && e <= CR_MAX_ERROR)
        return true;
    return e == ER_SERVER_SHUTDOWN || e == ER_QUERY_INTERRUPTED ||
           e == ER_CONNECTION_KILLED || e == ER_NET_READ_ERROR ||
           e == ER_NET_ERROR_ON_WRITE || e == ER_NET_READ_INTERRUPTED ||
           e == ER_NET_WRITE_INTERRUPTED;
}

/* ---- connection options ------------------------------------------------- */

/* Host for Connector/C: an IP, never a name (no blocking DNS on the loop),
 * and never "localhost", which Connector/C would turn into the default
 * unix socket. */
static const char *db_host(const cfg_db *db)
{
    if (db->socket[0])
        return NULL;
    if (!db->host[0] || strcmp(db->host, "localhost") == 0)
        return "127.0.0.1";
    return db->host;
}

static MYSQL *db_handle_new(const store *s, bool nonblock, unsigned io_timeout_s)
{
    MYSQL *my = mysql_init(NULL);
    if (!my)
        return NULL;
    unsigned ct = (s->connect_timeout_ms + 999) / 1000;
    unsigned proto = s->db.socket[0] ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    mysql_options(my, MYSQL_OPT_PROTOCOL, &proto);
    mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (io_timeout_s) {
        mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &io_timeout_s);
        mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout_s);
    }
    if (nonblock && mysql_options(my, MYSQL_OPT_NONBLOCK, 0) != 0) {
        mysql_close(my);
        return NULL;
    }
    return my;
}

/* Blocking connect for startup work. db: the database to select, or NULL. */
static MYSQL *db_connect_blocking(const store *s, bool nonblock, const char *db,
                                  char *err, size_t err_len)
{
    MYSQL *my = db_handle_new(s, nonblock, nonblock ? 0 : STORE_BLOCKING_IO_TIMEOUT_S);
    if (!my) {
        set_err(err, err_len, "mysql_init: out of memory");
        return NULL;
    }
    if (!mysql_real_connect(my, db_host(&s->db), s->db.user, s->db.password, db,
                            (unsigned)s->db.port, s->db.socket[0] ? s->db.socket : NULL,
                            0)) {
        set_err(err, err_len, "connect to MariaDB at %s:%d%s%s: %s",
                s->db.socket[0] ? "socket" : db_host(&s->db), s->db.port,
                s->db.socket[0] ? " " : "", s->db.socket, mysql_error(my));
        mysql_close(my);
        return NULL;
    }
    return my;
}

static int db_exec(MYSQL *my, const char *sql, char *err, size_t err_len)
{
    if (mysql_real_query(my, sql, strlen(sql)) != 0) {
        set_err(err, err_len, "MariaDB: %s (%u) in: %.80s", mysql_error(my),
                mysql_errno(my), sql);
        return -1;
    }
    /* Drain anything a statement returned (SELECT GET_LOCK, ...). */
    do {
        MYSQL_RES *r = mysql_store_result(my);
        if (r)
            mysql_free_result(r);
    } while (mysql_next_result(my) == 0);
    if (mysql_errno(my)) {
        set_err(err, err_len, "MariaDB: %s in: %.80s", mysql_error(my), sql);
        return -1;
    }
    return 0;
}

/* One integer from a one-row, one-column query; -1 with err on failure. */
static int db_query_i64(MYSQL *my, const char *sql, int64_t *out, char *err,
                        size_t err_len)
{
    if (mysql_real_query(my, sql, strlen(sql)) != 0) {
        set_err(err, err_len, "MariaDB: %s in: %.80s", mysql_error(my), sql);
        return -1;
    }
    MYSQL_RES *r = mysql_store_result(my);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    int rc = -1;
    if (row && row[0]) {
        char *end;
        errno = 0;
        long long v = strtoll(row[0], &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = v;
            rc = 0;
        }
    }
    if (rc != 0)
        set_err(err, err_len, "MariaDB: no integer from: %.80s", sql);
    if (r)
        mysql_free_result(r);
    return rc;
}

/* ---- schema --------------------------------------------------------------- */

static const char *const schema_v1[] = {
    "CREATE TABLE IF NOT EXISTS sku ("
    " sku VARBINARY(64) NOT NULL PRIMARY KEY,"
    " own_on_hand BIGINT NOT NULL DEFAULT 0,"
    " own_reserved BIGINT NOT NULL DEFAULT 0,"
    " supplier_reported BIGINT NOT NULL DEFAULT 0,"
    " supplier_sellable BIGINT NOT NULL DEFAULT 0,"
    " supplier_reserved BIGINT NOT NULL DEFAULT 0,"
    " supplier_synced_at BIGINT NOT NULL DEFAULT 0,"
    " mapping VARCHAR(16) NOT NULL,"
    " supplier_id VARBINARY(64) NULL,"
    " offer_id BIGINT NULL,"
    " spec_id VARBINARY(64) NULL,"
    " sku_id BIGINT NULL,"
    " epoch BIGINT NOT NULL DEFAULT 1,"
    " version BIGINT NOT NULL DEFAULT 0,"
    " updated_at BIGINT NOT NULL"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS orders ("
    " order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL,"
    " qty INT NOT NULL,"
    " status VARCHAR(16) NOT NULL,"
    " from_own INT NOT NULL,"
    " from_supplier INT NOT NULL,"
    " available BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " hold_expires_at BIGINT NULL,"
    " upstream_order_id VARBINARY(64) NULL,"
    " reason VARBINARY(255) NULL,"
    " KEY sku_status (sku, status)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS ledger ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL,"
    " order_id VARBINARY(64) NULL,"
    " move VARCHAR(16) NOT NULL,"
    " d_own_on_hand BIGINT NOT NULL,"
    " d_own_reserved BIGINT NOT NULL,"
    " d_supplier_reserved BIGINT NOT NULL,"
    " d_supplier_reported BIGINT NOT NULL,"
    " reason VARBINARY(255) NULL,"
    " at BIGINT NOT NULL,"
    " batch_id BIGINT UNSIGNED NOT NULL,"
    " KEY sku (sku),"
    " KEY order_id (order_id)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS batch_log ("
    " batch_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " at BIGINT NOT NULL"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS boots ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL,"
    " at BIGINT NOT NULL"
    ") ENGINE=InnoDB",
};

/* Issue 4: supplier cap and fingerprint, broken mappings (no DDL: mapping is
 * a name), purchase bookkeeping of orders, the purchase outbox, support
 * alerts and supplier trust. Every statement is idempotent (IF NOT EXISTS),
 * so a step cut short by a crash simply runs again. */
static const char *const schema_v2[] = {
    "ALTER TABLE sku"
    " ADD COLUMN IF NOT EXISTS supplier_cap BIGINT NULL,"
    " ADD COLUMN IF NOT EXISTS fingerprint BIGINT UNSIGNED NULL",

    "ALTER TABLE orders"
    " ADD COLUMN IF NOT EXISTS purchased_at BIGINT NULL,"
    " ADD COLUMN IF NOT EXISTS supplier_settled TINYINT NOT NULL DEFAULT 0",

    "CREATE TABLE IF NOT EXISTS purchase_jobs ("
    " order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL,"
    " supplier_id VARBINARY(64) NULL,"
    " offer_id BIGINT NULL,"
    " spec_id VARBINARY(64) NULL,"
    " sku_id BIGINT NULL,"
    " qty INT NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " KEY state (state)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS alerts ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " kind VARCHAR(32) NOT NULL,"
    " sku VARBINARY(64) NOT NULL,"
    " order_id VARBINARY(64) NULL,"
    " reason VARBINARY(255) NOT NULL,"
    " at BIGINT NOT NULL,"
    " node VARCHAR(64) NULL,"
    " batch_id BIGINT UNSIGNED NULL,"
    " KEY at (at)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS supplier ("
    " supplier_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " trust DOUBLE NOT NULL,"
    " trust_ceiling DOUBLE NOT NULL,"
    " event_mode TINYINT NOT NULL,"
    " event_trust DOUBLE NOT NULL,"
    " updated_at BIGINT NOT NULL"
    ") ENGINE=InnoDB",
};

/* Issue 8: orders of several lines. An order is stored one row per line,
 * keyed (order_id, line_no); every existing row is line 0 of a one-line
 * order (the defaults). Jobs are per line likewise. cart_decisions holds
 * the one decision on a cross-shard order (store_cart_decide). Each ALTER
 * is one statement (one table rebuild) and idempotent in effect: run again
 * after a crash, it drops the primary key and adds the same one. */
static const char *const schema_v3[] = {
    "ALTER TABLE orders"
    " ADD COLUMN IF NOT EXISTS line_no SMALLINT NOT NULL DEFAULT 0 AFTER order_id,"
    " ADD COLUMN IF NOT EXISTS n_lines SMALLINT NOT NULL DEFAULT 1 AFTER line_no,"
    " DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, line_no)",

    "ALTER TABLE purchase_jobs"
    " ADD COLUMN IF NOT EXISTS line_no SMALLINT NOT NULL DEFAULT 0 AFTER order_id,"
    " DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, line_no)",

    "CREATE TABLE IF NOT EXISTS cart_decisions ("
    " order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " decision ENUM('confirm','abort') NOT NULL,"
    " at_ms BIGINT NOT NULL"
    ") ENGINE=InnoDB",
};

/* Support acknowledges alerts (alerts.ack): when, by whom, with what note.
 * The index lists the open ones (acked_at NULL) newest first without
 * reading the handled ones, however many there are. One statement,
 * idempotent (IF NOT EXISTS): run again after a crash it changes nothing. */
static const char *const schema_v4[] = {
    "ALTER TABLE alerts"
    " ADD COLUMN IF NOT EXISTS acked_at BIGINT NULL,"
    " ADD COLUMN IF NOT EXISTS acked_by VARBINARY(64) NULL,"
    " ADD COLUMN IF NOT EXISTS ack_note VARBINARY(255) NULL,"
    " ADD INDEX IF NOT EXISTS open_alerts (acked_at)",
};

/* A refused cart leaves no record but its decision: the refusal the
 * client heard rides with an ABORT, so a retry hears it again. */
static const char *const schema_v5[] = {
    "ALTER TABLE cart_decisions"
    " ADD COLUMN IF NOT EXISTS err_code VARCHAR(16) NULL,"
    " ADD COLUMN IF NOT EXISTS err_line SMALLINT NULL,"
    " ADD COLUMN IF NOT EXISTS err_sku VARBINARY(64) NULL,"
    " ADD COLUMN IF NOT EXISTS err_available BIGINT NULL",
};

typedef struct schema_step {
    int version;
    const char *const *sql;
    size_t n;
} schema_step;

static const schema_step schema_steps[] = {
    {1, schema_v1, sizeof schema_v1 / sizeof schema_v1[0]},
    {2, schema_v2, sizeof schema_v2 / sizeof schema_v2[0]},
    {3, schema_v3, sizeof schema_v3 / sizeof schema_v3[0]},
    {4, schema_v4, sizeof schema_v4 / sizeof schema_v4[0]},
    {5, schema_v5, sizeof schema_v5 / sizeof schema_v5[0]},
};

/* Database names go between backticks: allow only what needs no quoting. */
static bool db_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '$'))
            return false;
    }
    return true;
}

static int schema_migrate(MYSQL *my, char *err, size_t err_len)
{
    int64_t have = 0;
    if (db_exec(my, "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version INT NOT NULL PRIMARY KEY,"
                    " applied_at BIGINT NOT NULL) ENGINE=InnoDB", err, err_len) != 0 ||
        db_query_i64(my, "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                     &have, err, err_len) != 0)
        return -1;
    if (have > STORE_SCHEMA_VERSION) {
        set_err(err, err_len, "database schema version %" PRId64
                " is newer than this stockd (%d)", have, STORE_SCHEMA_VERSION);
        return -1;
    }
    for (size_t i = 0; i < sizeof schema_steps / sizeof schema_steps[0]; i++) {
        const schema_step *st = &schema_steps[i];
        if (st->version <= have)
            continue;
        for (size_t j = 0; j < st->n; j++)
            if (db_exec(my, st->sql[j], err, err_len) != 0)
                return -1;
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%d, %" PRId64 ")",
                 st->version, now_ms());
        if (db_exec(my, sql, err, err_len) != 0)
            return -1;
        char v[16];
        snprintf(v, sizeof v, "%d", st->version);
        LOG_I("store: schema migrated", "version", v);
    }
    return 0;
}

/* Creates the database if missing, migrates under a named lock (two stockd
 * starting at once), and records this boot. */
static int store_setup_schema(store *s, char *err, size_t err_len)
{
    if (!db_name_ok(s->db.database)) {
        set_err(err, err_len, "database name must be 1-64 of [A-Za-z0-9_$]: %s",
                s->db.database);
        return -1;
    }
    MYSQL *my = db_connect_blocking(s, false, NULL, err, err_len);
    if (!my)
        return -1;
    char sql[256];
    int rc = -1;
    snprintf(sql, sizeof sql, "CREATE DATABASE IF NOT EXISTS `%.64s`", s->db.database);
    if (db_exec(my, sql, err, err_len) != 0)
        goto out;
    if (mysql_select_db(my, s->db.database) != 0) {
        set_err(err, err_len, "select database %s: %s", s->db.database, mysql_error(my));
        goto out;
    }
    int64_t locked = 0;
    if (db_query_i64(my, "SELECT GET_LOCK('stockd.schema', 30)", &locked, err, err_len) != 0)
        goto out;
    if (locked != 1) {
        set_err(err, err_len, "schema lock not granted in 30 s");
        goto out;
    }
    rc = schema_migrate(my, err, err_len);
    if (db_exec(my, "SELECT RELEASE_LOCK('stockd.schema')", NULL, 0) != 0)
        LOG_W("store: schema lock release failed");
    if (rc != 0)
        goto out;
    sbuf b = {0};
    sb_str(&b, "INSERT INTO boots (node, at) VALUES (");
    sb_hex_str(&b, s->node);
    sb_str(&b, ", ");
    sb_i64(&b, now_ms());
    sb_str(&b, ")");
    rc = b.err ? -1 : db_exec(my, b.p, err, err_len);
    sb_free(&b);
    if (rc == 0) {
        s->boot_id = mysql_insert_id(my);
        if (s->boot_id == 0 || s->boot_id > STORE_BOOT_ID_MAX) {
            set_err(err, err_len, "boot id %" PRIu64 " out of range", s->boot_id);
            rc = -1;
        }
    }
out:
    mysql_close(my);
    return rc;
}

/* ---- batch SQL ------------------------------------------------------------- */

/* The map columns of a row: a map is written for OK and for BROKEN (kept
 * for support and for the repair); NONE and MANUAL clear them. */
static const eng_supplier_map *sku_row_map(const eng_sku_row *r)
{
    if (r->mapping != ENG_MAP_OK && r->mapping != ENG_MAP_BROKEN)
        return NULL;
    return r->map;
}

static void sql_sku_values(sbuf *b, const eng_sku_row *r, int64_t at)
{
    const eng_supplier_map *m = sku_row_map(r);
    sb_str(b, "(");
    sb_hex_str(b, r->sku);
    sb_str(b, ",");
    sb_i64(b, r->c.own_on_hand);
    sb_str(b, ",");
    sb_i64(b, r->c.own_reserved);
    sb_str(b, ",");
    sb_i64(b, r->c.supplier_reported);
    sb_str(b, ",");
    sb_i64(b, r->c.supplier_sellable);
    sb_str(b, ",");
    sb_i64(b, r->c.supplier_reserved);
    sb_str(b, ",");
    sb_i64(b, r->c.supplier_synced_at_ms);
    sb_str(b, ",'");
    sb_str(b, eng_mapping_name(r->mapping));
    sb_str(b, "',");
    sb_hex_or_null(b, m ? m->supplier_id : NULL);
    sb_str(b, ",");
    sb_i64_or_null(b, m ? m->offer_id : 0);
    sb_str(b, ",");
    sb_hex_or_null(b, m ? m->spec_id : NULL);
    sb_str(b, ",");
    sb_i64_or_null(b, m ? m->sku_id : 0);
    sb_str(b, ",");
    sb_i64(b, r->epoch);
    sb_str(b, ",0,");
    sb_i64(b, at);
    sb_str(b, ",");
    /* NULL cap = no cap (-1 in the engine), NULL fingerprint = not seen (0). */
    if (m && m->cap >= 0)
        sb_i64(b, m->cap);
    else
        sb_str(b, "NULL");
    sb_str(b, ",");
    if (m && m->fingerprint)
        sb_u64(b, m->fingerprint);
    else
        sb_str(b, "NULL");
    sb_str(b, ")");
}

#define SKU_COLS "INSERT INTO sku (sku,own_on_hand,own_reserved,"                     \
                 "supplier_reported,supplier_sellable,supplier_reserved,"             \
                 "supplier_synced_at,mapping,supplier_id,offer_id,spec_id,"           \
                 "sku_id,epoch,version,updated_at,supplier_cap,fingerprint) VALUES\n"

/* Every fenced column assignment: taken only where the row's epoch is the
 * one the engine decided under. */
#define FENCED(col) col "=IF(epoch=VALUES(epoch),VALUES(" col ")," col "),"
/* A map column: like FENCED, but a BROKEN row that came without its map
 * (supplier_id NULL: every real map names its supplier) keeps the columns
 * it has, so support still sees what the SKU was mapped to. */
#define FENCED_MAP(col) col "=IF(epoch=VALUES(epoch) AND NOT (VALUES(mapping)='broken'" \
                        " AND VALUES(supplier_id) IS NULL),VALUES(" col ")," col "),"

/* New SKUs in one INSERT (a duplicate fails the batch). Changed SKUs in one
 * multi-row upsert whose every assignment is fenced on epoch: a row whose
 * epoch moved keeps its values, and version moves only where the fence
 * holds. MariaDB counts 2 affected rows per updated row (and 1 per insert,
 * 0 per unchanged row), so ROW_COUNT() = 2 x updates proves every fence held
 * and no row was missing. One statement instead of one UPDATE per SKU: the
 * per-statement cost of a compound block was ~100 us a SKU. */
static void sql_skus(sbuf *b, const eng_batch *batch, int64_t at)
{
    const eng_sku_row *rows;
    size_t n = eng_batch_sku_rows(batch, &rows);
    for (int pass = 0; pass < 2; pass++) {
        bool want_insert = pass == 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (rows[i].insert != want_insert)
                continue;
            sb_str(b, k == 0 ? SKU_COLS : ",\n");
            sql_sku_values(b, &rows[i], at);
            k++;
        }
        if (k == 0)
            continue;
        if (want_insert) {
            sb_str(b, ";\n");
            continue;
        }
        sb_str(b, "\nON DUPLICATE KEY UPDATE "
                  FENCED("own_on_hand") FENCED("own_reserved") FENCED("supplier_reported")
                  FENCED("supplier_sellable") FENCED("supplier_reserved")
                  FENCED("supplier_synced_at") FENCED("mapping") FENCED_MAP("supplier_id")
                  FENCED_MAP("offer_id") FENCED_MAP("spec_id") FENCED_MAP("sku_id")
                  FENCED_MAP("supplier_cap") FENCED_MAP("fingerprint") FENCED("updated_at")
                  "version=IF(epoch=VALUES(epoch),version+1,version);\n"
                  "IF ROW_COUNT()<>");
        sb_u64(b, 2 * (uint64_t)k);
        sb_str(b, " THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT='epoch fence'; END IF;\n");
    }
}

/* n_lines of a row, checked: a line outside its order would load as
 * nonsense (the load refuses it, and the instance would not start). */
static int32_t order_n_lines(const eng_order_view *o)
{
    int32_t n = o->n_lines;
    assert(n >= 1 && n <= ENG_LINES_MAX && o->line_no >= 0 && o->line_no < n);
    return n;
}

static void sql_order_values(sbuf *b, const eng_order_view *o)
{
    sb_str(b, "(");
    sb_hex_str(b, o->order_id);
    sb_str(b, ",");
    sb_i64(b, o->line_no);
    sb_str(b, ",");
    sb_i64(b, order_n_lines(o));
    sb_str(b, ",");
    sb_hex_str(b, o->sku);
    sb_str(b, ",");
    sb_i64(b, o->qty);
    sb_str(b, ",'");
    sb_str(b, eng_status_name(o->status));
    sb_str(b, "',");
    sb_i64(b, o->from_own);
    sb_str(b, ",");
    sb_i64(b, o->from_supplier);
    sb_str(b, ",");
    sb_i64(b, o->available);
    sb_str(b, ",");
    sb_i64(b, o->created_at_ms);
    sb_str(b, ",");
    sb_i64(b, o->updated_at_ms);
    sb_str(b, ",");
    sb_i64_or_null(b, o->hold_expires_at_ms);
    sb_str(b, ",");
    sb_hex_or_null(b, o->upstream_order_id);
    sb_str(b, ",");
    sb_hex_or_null(b, o->reason);
    sb_str(b, ",");
    sb_i64_or_null(b, o->purchased_at_ms);
    sb_str(b, o->supplier_settled ? ",1)" : ",0)");
}

#define ORDER_COLS "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,from_supplier," \
                   "available,created_at,updated_at,hold_expires_at,upstream_order_id,"  \
                   "reason,purchased_at,supplier_settled) VALUES\n"

/* One row per line, keyed (order_id, line_no). New lines in one INSERT (a
 * duplicate key fails the batch), changed lines in one upsert on that key
 * (a line's sku, qty and n_lines never change). */
static void sql_orders(sbuf *b, const eng_batch *batch)
{
    const eng_order_row *rows;
    size_t n = eng_batch_order_rows(batch, &rows);
    for (int pass = 0; pass < 2; pass++) {
        bool want_insert = pass == 0;
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            if (rows[i].insert != want_insert || rows[i].erase)
                continue;
            sb_str(b, first ? ORDER_COLS : ",\n");
            sql_order_values(b, &rows[i].o);
            first = false;
        }
        if (first)
            continue;
        if (!want_insert)
            sb_str(b, "\nON DUPLICATE KEY UPDATE status=VALUES(status),"
                      "from_own=VALUES(from_own),from_supplier=VALUES(from_supplier),"
                      "available=VALUES(available),updated_at=VALUES(updated_at),"
                      "hold_expires_at=VALUES(hold_expires_at),"
                      "upstream_order_id=VALUES(upstream_order_id),reason=VALUES(reason),"
                      "purchased_at=VALUES(purchased_at),"
                      "supplier_settled=VALUES(supplier_settled)");
        sb_str(b, ";\n");
    }
    /* Parts erased (a refused cart leaves no record): their rows go. One
     * placed and erased in this batch was never written. One statement a
     * row, on the whole primary key: it locks that row only (a row
     * constructor IN list may scan, and its gap locks deadlock with other
     * nodes' inserts). */
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].erase || rows[i].insert)
            continue;
        sb_str(b, "DELETE FROM orders WHERE order_id=");
        sb_hex_str(b, rows[i].o.order_id);
        sb_str(b, " AND line_no=");
        sb_i64(b, rows[i].o.line_no);
        sb_str(b, ";\n");
    }
}

static void sql_ledger(sbuf *b, const eng_batch *batch, uint64_t batch_id)
{
    const eng_ledger_row *rows;
    size_t n = eng_batch_ledger_rows(batch, &rows);
    for (size_t i = 0; i < n; i++) {
        const eng_ledger_row *r = &rows[i];
        sb_str(b, i == 0 ? "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,"
                           "d_own_reserved,d_supplier_reserved,d_supplier_reported,"
                           "reason,at,batch_id) VALUES\n"
                         : ",\n");
        sb_str(b, "(");
        sb_hex_str(b, r->sku);
        sb_str(b, ",");
        sb_hex_or_null(b, r->order_id);
        sb_str(b, ",'");
        sb_str(b, eng_move_name(r->move));
        sb_str(b, "',");
        sb_i64(b, r->d_own_on_hand);
        sb_str(b, ",");
        sb_i64(b, r->d_own_reserved);
        sb_str(b, ",");
        sb_i64(b, r->d_supplier_reserved);
        sb_str(b, ",");
        sb_i64(b, r->d_supplier_reported);
        sb_str(b, ",");
        sb_hex_or_null(b, r->reason);
        sb_str(b, ",");
        sb_i64(b, r->at_ms);
        sb_str(b, ",");
        sb_u64(b, batch_id);
        sb_str(b, ")");
    }
    if (n)
        sb_str(b, ";\n");
}

/* A string column of at most max bytes (VARBINARY(255) reasons): cut, not
 * refused, so a long reason never fails a batch. */
static void sb_hex_cut(sbuf *b, const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max) : 0;
    sb_hex(b, s ? s : "", n);
}

#define JOB_COLS "INSERT INTO purchase_jobs (order_id,line_no,sku,supplier_id,offer_id,spec_id," \
                 "sku_id,qty,state,created_at,updated_at) VALUES\n"

static void sql_job_values(sbuf *b, const eng_job_row *r, const eng_supplier_map *m)
{
    sb_str(b, "(");
    sb_hex_str(b, r->order_id);
    sb_str(b, ",");
    sb_i64(b, r->line_no);
    sb_str(b, ",");
    sb_hex_str(b, r->sku);
    sb_str(b, ",");
    sb_hex_or_null(b, m ? m->supplier_id : NULL);
    sb_str(b, ",");
    sb_i64_or_null(b, m ? m->offer_id : 0);
    sb_str(b, ",");
    sb_hex_or_null(b, m ? m->spec_id : NULL);
    sb_str(b, ",");
    sb_i64_or_null(b, m ? m->sku_id : 0);
    sb_str(b, ",");
    sb_i64(b, r->qty);
    sb_str(b, ",'");
    sb_str(b, eng_job_state_name(r->state));
    sb_str(b, "',");
    sb_i64(b, r->at_ms);
    sb_str(b, ",");
    sb_i64(b, r->at_ms);
    sb_str(b, ")");
}

/* Purchase outbox, one job per line, keyed (order_id, line_no). New jobs
 * in one INSERT (a duplicate fails the batch, as for orders). State changes in one upsert that changes only state and
 * updated_at: an order confirmed before schema 2 has no job row, and its
 * first state change then creates one (without a map) instead of vanishing
 * into an UPDATE that matched nothing. A change row without a SKU (not
 * expected) falls back to a plain UPDATE. */
static void sql_jobs(sbuf *b, const eng_batch *batch)
{
    const eng_job_row *rows;
    size_t n = eng_batch_job_rows(batch, &rows);
    for (int pass = 0; pass < 2; pass++) {
        bool want_insert = pass == 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const eng_job_row *r = &rows[i];
            assert(r->order_id && r->order_id[0]);
            assert(r->line_no >= 0 && r->line_no < ENG_LINES_MAX);
            if (r->insert != want_insert || (!want_insert && (!r->sku || !r->sku[0])))
                continue;
            sb_str(b, k == 0 ? JOB_COLS : ",\n");
            sql_job_values(b, r, want_insert ? &r->map : NULL);
            k++;
        }
        if (k == 0)
            continue;
        if (!want_insert)
            sb_str(b, "\nON DUPLICATE KEY UPDATE state=VALUES(state),updated_at=VALUES(updated_at)");
        sb_str(b, ";\n");
    }
    for (size_t i = 0; i < n; i++) {
        const eng_job_row *r = &rows[i];
        if (r->insert || (r->sku && r->sku[0]))
            continue;
        sb_str(b, "UPDATE purchase_jobs SET state='");
        sb_str(b, eng_job_state_name(r->state));
        sb_str(b, "',updated_at=");
        sb_i64(b, r->at_ms);
        sb_str(b, " WHERE order_id=");
        sb_hex_str(b, r->order_id);
        sb_str(b, " AND line_no=");
        sb_i64(b, r->line_no);
        sb_str(b, ";\n");
    }
}

static void sql_alerts(sbuf *b, const store *s, const eng_batch *batch, uint64_t batch_id)
{
    const eng_alert_row *rows;
    size_t n = eng_batch_alert_rows(batch, &rows);
    for (size_t i = 0; i < n; i++) {
        const eng_alert_row *r = &rows[i];
        assert(r->kind && r->kind[0] && r->sku && r->sku[0]);
        sb_str(b, i == 0 ? "INSERT INTO alerts (kind,sku,order_id,reason,at,node,batch_id)"
                           " VALUES\n"
                         : ",\n");
        sb_str(b, "(");
        sb_hex_cut(b, r->kind, STORE_ALERT_KIND_MAX);
        sb_str(b, ",");
        sb_hex_str(b, r->sku);
        sb_str(b, ",");
        sb_hex_or_null(b, r->order_id);
        sb_str(b, ",");
        sb_hex_cut(b, r->reason, 255);
        sb_str(b, ",");
        sb_i64(b, r->at_ms);
        sb_str(b, ",");
        sb_hex_str(b, s->node);
        sb_str(b, ",");
        sb_u64(b, batch_id);
        sb_str(b, ")");
    }
    if (n)
        sb_str(b, ";\n");
}

/* A trust factor: 0..1 by contract; "%.17g" round-trips a double exactly.
 * Anything else fails the batch rather than writing nonsense. */
static void sb_factor(sbuf *b, double v)
{
    if (!(v >= 0.0 && v <= 1.0)) {
        if (!b->err)
            b->err = "trust factor outside 0..1";
        return;
    }
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    sb_add(b, tmp, (size_t)n);
}

static void sql_suppliers(sbuf *b, const eng_batch *batch, int64_t at)
{
    const eng_supplier_row *rows;
    size_t n = eng_batch_supplier_rows(batch, &rows);
    for (size_t i = 0; i < n; i++) {
        const eng_supplier_row *r = &rows[i];
        assert(r->supplier_id && r->supplier_id[0]);
        sb_str(b, i == 0 ? "INSERT INTO supplier (supplier_id,trust,trust_ceiling,event_mode,"
                           "event_trust,updated_at) VALUES\n"
                         : ",\n");
        sb_str(b, "(");
        sb_hex_str(b, r->supplier_id);
        sb_str(b, ",");
        sb_factor(b, r->t.trust);
        sb_str(b, ",");
        sb_factor(b, r->t.ceiling);
        sb_str(b, r->t.event_mode ? ",1," : ",0,");
        sb_factor(b, r->t.event_trust);
        sb_str(b, ",");
        sb_i64(b, at);
        sb_str(b, ")");
    }
    if (n)
        sb_str(b, "\nON DUPLICATE KEY UPDATE trust=VALUES(trust),"
                  "trust_ceiling=VALUES(trust_ceiling),event_mode=VALUES(event_mode),"
                  "event_trust=VALUES(event_trust),updated_at=VALUES(updated_at);\n");
}

static void sql_batch_log(sbuf *b, const store *s, uint64_t batch_id, const char *state)
{
    sb_str(b, "INSERT INTO batch_log (batch_id,node,state,at) VALUES (");
    sb_u64(b, batch_id);
    sb_str(b, ",");
    sb_hex_str(b, s->node);
    sb_str(b, ",'");
    sb_str(b, state);
    sb_str(b, "',");
    sb_i64(b, now_ms());
    sb_str(b, ")");
}

/* The whole batch as one compound statement: one round trip. The exit
 * handler rolls back and re-raises any error, the epoch fence included, so
 * the client sees exactly one error and nothing of the batch stays. */
static void sql_build_commit(sbuf *b, const store *s, const eng_batch *batch,
                             uint64_t batch_id)
{
    sb_reset(b);
    sb_str(b, "BEGIN NOT ATOMIC\n"
              "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
              "START TRANSACTION;\n");
    /* First: the tombstone key that store_resolve() races against. */
    sql_batch_log(b, s, batch_id, "committed");
    sb_str(b, ";\n");
    int64_t at = now_ms();
    sql_suppliers(b, batch, at);
    sql_skus(b, batch, at);
    sql_orders(b, batch);
    sql_jobs(b, batch);
    sql_ledger(b, batch, batch_id);
    sql_alerts(b, s, batch, batch_id);
    sb_str(b, "COMMIT;\nEND");
}

/* ---- dbc: a nonblocking MariaDB connection on the loop ---------------------- */

static void dbc_io_cb(evutil_socket_t fd, short what, void *arg);
static void dbc_timer_cb(evutil_socket_t fd, short what, void *arg);
static void dbc_defer_cb(evutil_socket_t fd, short what, void *arg);

static bool dbc_is_up(const dbc *d)
{
    return d->state == DBC_IDLE || d->state == DBC_BUSY;
}

/* Arms the io event for one Connector/C wait mask. */
static void dbc_wait(dbc *d, int status)
{
    short what = 0;
    struct timeval tv, *tvp = NULL;
    if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
        what |= EV_READ;
    if (status & MYSQL_WAIT_WRITE)
        what |= EV_WRITE;
    if (status & MYSQL_WAIT_TIMEOUT) {
        tv = tv_ms(mysql_get_timeout_value_ms(d->my));
        tvp = &tv;
    }
    event_del(d->io);
    event_assign(d->io, d->s->base, mysql_get_socket(d->my), what, dbc_io_cb, d);
    event_add(d->io, tvp);
}

/* While idle, a readable socket means the server closed or will close it. */
static void dbc_watch_idle(dbc *d)
{
    event_del(d->io);
    event_assign(d->io, d->s->base, mysql_get_socket(d->my), EV_READ, dbc_io_cb, d);
    event_add(d->io, NULL);
}

/* A _start returned st: wait for it, or step its result from the defer
 * (never inside the caller, which may be a callback of the last result). */
static void dbc_started(dbc *d, int st)
{
    if (st) {
        dbc_wait(d, st);
        return;
    }
    d->step_due = true;
    event_active(d->defer, EV_TIMEOUT, 0);
}

/* Steps the owner from the defer without a _start (e.g. nothing to send). */
static void dbc_step_later(dbc *d)
{
    dbc_started(d, 0);
}

static void dbc_close(dbc *d)
{
    event_del(d->io);
    event_del(d->timer);
    event_del(d->defer);
    d->step_due = false;
    if (d->ops->release)
        d->ops->release(d);
    if (d->my) {
        /* Allowed in the middle of a nonblocking call: the only way to
         * abandon a query. */
        mysql_close(d->my);
        d->my = NULL;
    }
    d->state = DBC_DOWN;
    if (d->sql.cap > STORE_SQL_KEEP_BYTES)
        sb_free(&d->sql);
}

/* Closes and schedules a reconnect: at once after the first failure of a
 * healthy connection, then with exponential backoff and jitter. */
static void dbc_down(dbc *d, const char *why)
{
    store *s = d->s;
    dbc_state was = d->state;
    dbc_close(d);
    uint32_t delay = 0;
    if (d->backoff_ms) {
        uint32_t half = d->backoff_ms / 2;
        delay = half + (uint32_t)(store_rand(s) % (half + 1));
    }
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : STORE_BACKOFF_MIN_MS;
    if (d->backoff_ms > s->backoff_max_ms)
        d->backoff_ms = s->backoff_max_ms;
    struct timeval tv = tv_ms(delay);
    evtimer_add(d->timer, &tv);
    d->ops->down(d, why, was);
}

static void dbc_connect_start(dbc *d)
{
    store *s = d->s;
    assert(d->state == DBC_DOWN && !d->my);
    d->my = db_handle_new(s, true, 0);
    if (!d->my) {
        dbc_down(d, "mysql_init failed");
        return;
    }
    d->state = DBC_CONNECTING;
    struct timeval tv = tv_ms(s->connect_timeout_ms);
    evtimer_add(d->timer, &tv);
    int st = mysql_real_connect_start(&d->connect_ret, d->my, db_host(&s->db), s->db.user,
                                      s->db.password, s->db.database, (unsigned)s->db.port,
                                      s->db.socket[0] ? s->db.socket : NULL, 0);
    dbc_started(d, st);
}

static void dbc_connected(dbc *d)
{
    if (!d->connect_ret) {
        char msg[256];
        snprintf(msg, sizeof msg, "connect: %s", mysql_error(d->my));
        LOG_D("store: connect failed", "err", msg);
        dbc_down(d, msg); /* was CONNECTING: owners log no "down" for every retry */
        return;
    }
    event_del(d->timer);
    d->state = DBC_IDLE;
    d->idle_since_us = mono_us();
    d->backoff_ms = 0;
    dbc_watch_idle(d);
    d->ops->up(d);
}

/* The owner's statement is done and the connection is fine. */
static void dbc_idle(dbc *d)
{
    event_del(d->timer);
    d->state = DBC_IDLE;
    d->idle_since_us = mono_us();
    dbc_watch_idle(d);
}

/* The owner is about to send: io off, busy, its timeout armed. */
static void dbc_begin(dbc *d, uint32_t timeout_ms)
{
    assert(d->state == DBC_IDLE || d->state == DBC_BUSY);
    event_del(d->io);
    d->state = DBC_BUSY;
    struct timeval tv = tv_ms(timeout_ms);
    evtimer_add(d->timer, &tv);
}

/* Sends d->sql; the owner hears cont()/step(). */
static void dbc_send(dbc *d)
{
    assert(d->state == DBC_BUSY);
    int st = mysql_real_query_start(&d->qret, d->my, d->sql.p, d->sql.len);
    dbc_started(d, st);
}

static void dbc_query_start(dbc *d, uint32_t timeout_ms)
{
    dbc_begin(d, timeout_ms);
    dbc_send(d);
}

/* A _start/_cont returned 0: act on its result. */
static void dbc_step(dbc *d)
{
    if (d->state == DBC_CONNECTING)
        dbc_connected(d);
    else if (d->state == DBC_BUSY)
        d->ops->step(d);
}

static void dbc_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    dbc *d = arg;
    int st = 0;
    if (what & EV_READ)
        st |= MYSQL_WAIT_READ;
    if (what & EV_WRITE)
        st |= MYSQL_WAIT_WRITE;
    if (what & EV_TIMEOUT)
        st |= MYSQL_WAIT_TIMEOUT;
    switch (d->state) {
    case DBC_CONNECTING:
        st = mysql_real_connect_cont(&d->connect_ret, d->my, st);
        break;
    case DBC_BUSY:
        st = d->ops->cont(d, st);
        break;
    case DBC_IDLE:
        dbc_down(d, "server closed the connection");
        return;
    default:
        assert(!"io event in a state without io");
        return;
    }
    if (st) {
        dbc_wait(d, st);
        return;
    }
    dbc_step(d);
}

static void dbc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dbc *d = arg;
    char msg[64];
    switch (d->state) {
    case DBC_DOWN:
        dbc_connect_start(d);
        return;
    case DBC_CONNECTING:
        snprintf(msg, sizeof msg, "connect timeout after %" PRIu32 " ms",
                 d->s->connect_timeout_ms);
        dbc_down(d, msg);
        return;
    default:
        d->ops->timeout(d);
        return;
    }
}

static void dbc_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dbc *d = arg;
    if (d->step_due) {
        d->step_due = false;
        dbc_step(d);
        return;
    }
    if (d->ops->defer)
        d->ops->defer(d);
}

/* Events, then a blocking connect (the same handle then runs nonblocking).
 * On failure the caller still calls dbc_free. */
static int dbc_init(dbc *d, store *s, const dbc_ops *ops, void *owner, char *err,
                    size_t err_len)
{
    assert(ops->up && ops->down && ops->cont && ops->step && ops->timeout);
    d->s = s;
    d->ops = ops;
    d->owner = owner;
    d->io = event_new(s->base, -1, 0, dbc_io_cb, d);
    d->timer = evtimer_new(s->base, dbc_timer_cb, d);
    d->defer = evtimer_new(s->base, dbc_defer_cb, d);
    if (!d->io || !d->timer || !d->defer) {
        set_err(err, err_len, "event_new: out of memory");
        return -1;
    }
    d->my = db_connect_blocking(s, true, s->db.database, err, err_len);
    if (!d->my)
        return -1;
    d->state = DBC_IDLE;
    d->idle_since_us = mono_us();
    dbc_watch_idle(d);
    return 0;
}

/* Safe on a zeroed or partly initialised dbc. */
static void dbc_free(dbc *d)
{
    if (d->io)
        dbc_close(d);
    if (d->io)
        event_free(d->io);
    if (d->timer)
        event_free(d->timer);
    if (d->defer)
        event_free(d->defer);
    sb_free(&d->sql);
}

/* ---- writers: batch commits and resolves ------------------------------------ */

static void conn_start_resolve(store_conn *c);
static void store_kick(store *s);

static bool conn_is_up(const store_conn *c)
{
    return dbc_is_up(&c->db);
}

static bool conn_is_idle(const store_conn *c)
{
    return c->db.state == DBC_IDLE;
}

/* Fires on_idle when asked to (a connection became idle) or when store_up()
 * changed since the last call. */
static void store_notify(store *s, bool became_idle)
{
    bool up = store_up(s);
    bool changed = up != s->was_up;
    s->was_up = up;
    if ((became_idle || changed) && s->cb.on_idle)
        s->cb.on_idle(s->cb.arg);
}

static void conn_down(store_conn *c, const char *why)
{
    dbc_down(&c->db, why);
}

static void conn_on_down(dbc *d, const char *why, dbc_state was)
{
    store_conn *c = d->owner;
    if (was == DBC_IDLE || was == DBC_BUSY) {
        char idx[12];
        snprintf(idx, sizeof idx, "%u", c->idx);
        LOG_W("store: connection down", "conn", idx, "why", why);
    }
    /* Only the server's close of an idle connection goes down outside a
     * finish (which notifies after its callback). */
    if (was == DBC_IDLE)
        store_notify(c->s, false);
}

static void conn_on_up(dbc *d)
{
    store_conn *c = d->owner;
    store *s = c->s;
    if (c->ever_up) {
        s->st.reconnects++;
        LOG_I("store: reconnected");
    }
    c->ever_up = true;
    if (s->rq_len) {
        conn_start_resolve(c);
        store_notify(s, false);
        return;
    }
    store_notify(s, true);
}

/* Starts the statement in c->db.sql; completion arrives through io or defer. */
static void conn_start_query(store_conn *c)
{
    c->phase = PHASE_QUERY;
    c->started_us = mono_us();
    dbc_begin(&c->db, c->s->commit_timeout_ms);
    if (c->build_err)
        dbc_step_later(&c->db);
    else
        dbc_send(&c->db);
}

/* ---- resolve queue --------------------------------------------------------- */

static bool rq_grow(store *s)
{
    size_t cap = s->rq_cap ? s->rq_cap * 2 : 16;
    eng_batch **q = malloc(cap * sizeof *q);
    if (!q)
        return false;
    for (size_t i = 0; i < s->rq_len; i++)
        q[i] = s->rq[(s->rq_head + i) % s->rq_cap];
    free(s->rq);
    s->rq = q;
    s->rq_cap = cap;
    s->rq_head = 0;
    return true;
}

static void rq_push(store *s, eng_batch *b, bool front)
{
    if (s->rq_len == s->rq_cap && !rq_grow(s)) {
        /* Losing a resolve would block its SKUs forever. */
        LOG_E("store: out of memory queueing a resolve");
        abort();
    }
    if (front) {
        s->rq_head = (s->rq_head + s->rq_cap - 1) % s->rq_cap;
        s->rq[s->rq_head] = b;
    } else {
        s->rq[(s->rq_head + s->rq_len) % s->rq_cap] = b;
    }
    s->rq_len++;
}

static eng_batch *rq_pop(store *s)
{
    assert(s->rq_len > 0);
    eng_batch *b = s->rq[s->rq_head];
    s->rq_head = (s->rq_head + 1) % s->rq_cap;
    s->rq_len--;
    return b;
}

static void conn_start_resolve(store_conn *c)
{
    store *s = c->s;
    assert(conn_is_idle(c) && s->rq_len > 0);
    c->batch = rq_pop(s);
    c->batch_id = store_batch_id(s, c->batch);
    c->kind = CONN_RESOLVE;
    c->build_err = NULL;
    sb_reset(&c->db.sql);
    sql_batch_log(&c->db.sql, s, c->batch_id, "aborted");
    /* An earlier attempt of this resolve may have written the tombstone
     * and lost its reply: a duplicate alone does not mean "committed".
     * The update changes an 'aborted' row and leaves a 'committed' one as
     * it is, so affected rows say which: 1 inserted now, 2 an earlier
     * tombstone (both aborted), 0 the batch's own row (committed). */
    sb_str(&c->db.sql, " ON DUPLICATE KEY UPDATE at=IF(state='committed',at,at+1)");
    c->build_err = c->db.sql.err;
    conn_start_query(c);
}

/* Starts queued resolves on idle connections. */
static void store_kick(store *s)
{
    for (uint32_t i = 0; i < s->n_conns && s->rq_len; i++)
        if (conn_is_idle(&s->conns[i]))
            conn_start_resolve(&s->conns[i]);
}

/* ---- completion ------------------------------------------------------------ */

static void conn_note_latency(store_conn *c)
{
    int64_t us = mono_us() - c->started_us;
    if (us < 0)
        us = 0;
    c->s->st.commit_us_total += (uint64_t)us;
    if ((uint64_t)us > c->s->st.commit_us_max)
        c->s->st.commit_us_max = (uint64_t)us;
}

/* The connection is done with its statement: either back to idle (next:
 * a queued resolve first), or down. Then the callback, then on_idle. */
static void conn_finish_commit(store_conn *c, eng_outcome outcome, const char *err,
                               bool keep)
{
    store *s = c->s;
    eng_batch *b = c->batch;
    assert(c->db.state == DBC_BUSY && c->kind == CONN_COMMIT && b);
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, c->batch_id);
    c->batch = NULL;
    event_del(c->db.timer);
    conn_note_latency(c);
    if (outcome == ENG_COMMITTED)
        s->st.commits_ok++;
    else if (outcome == ENG_ABORTED)
        s->st.commits_aborted++;
    else
        s->st.commits_unknown++;
    if (keep) {
        dbc_idle(&c->db);
        if (c->db.sql.cap > STORE_SQL_KEEP_BYTES)
            sb_free(&c->db.sql);
        if (s->rq_len)
            conn_start_resolve(c);
    } else {
        conn_down(c, err ? err : "commit failed");
    }
    bool idle = conn_is_idle(c);
    if (outcome != ENG_COMMITTED) {
        LOG_W("store: commit not done", "batch", id,
              "outcome", outcome == ENG_ABORTED ? "aborted" : "unknown",
              "err", err ? err : "");
    }
    s->cb.on_commit(b, outcome, err, s->cb.arg);
    store_notify(s, idle);
}

static void conn_finish_resolve(store_conn *c, int result, const char *err)
{
    store *s = c->s;
    eng_batch *b = c->batch;
    assert(c->db.state == DBC_BUSY && c->kind == CONN_RESOLVE && b);
    c->batch = NULL;
    event_del(c->db.timer);
    if (result < 0) {
        /* Unsettled: try again on a fresh connection after backoff. */
        rq_push(s, b, true);
        conn_down(c, err ? err : "resolve failed");
        store_kick(s);
        store_notify(s, false);
        return;
    }
    s->st.resolves++;
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, c->batch_id);
    dbc_idle(&c->db);
    if (s->rq_len)
        conn_start_resolve(c);
    bool idle = conn_is_idle(c);
    LOG_I("store: batch resolved", "batch", id, "committed", result ? "true" : "false");
    s->cb.on_resolve(b, result == 1, s->cb.arg);
    store_notify(s, idle);
}

/* The statement ended with an error. */
static void conn_query_failed(store_conn *c)
{
    unsigned e = mysql_errno(c->db.my);
    char msg[300];
    snprintf(msg, sizeof msg, "MariaDB %u: %s", e, mysql_error(c->db.my));
    if (c->kind == CONN_RESOLVE) {
        conn_finish_resolve(c, -1, msg);
        return;
    }
    if (errno_is_unknown(e))
        conn_finish_commit(c, ENG_UNKNOWN, msg, false);
    else
        /* Too large: refused unread, but the server drops the connection. */
        conn_finish_commit(c, ENG_ABORTED, msg, e != ER_NET_PACKET_TOO_LARGE);
}

static void conn_query_ok(store_conn *c)
{
    if (c->kind == CONN_RESOLVE) {
        my_ulonglong n = mysql_affected_rows(c->db.my);
        if (n == 0)
            conn_finish_resolve(c, 1, NULL);
        else if (n == 1 || n == 2)
            conn_finish_resolve(c, 0, NULL);
        else
            conn_finish_resolve(c, -1, "resolve: unexpected affected rows");
    } else
        conn_finish_commit(c, ENG_COMMITTED, NULL, true);
}

/* The statement's _start/_cont returned 0: act on its result. */
static void conn_query_step(store_conn *c)
{
    dbc *d = &c->db;
    for (;;) {
        if (c->build_err) {
            if (c->kind == CONN_RESOLVE) {
                conn_finish_resolve(c, -1, c->build_err);
                return;
            }
            /* The connection never sent anything: keep it. */
            conn_finish_commit(c, ENG_ABORTED, c->build_err, true);
            return;
        }
        /* next_result: 0 = another result read, -1 = no more, >0 = error. */
        if (c->phase == PHASE_QUERY ? d->qret != 0 : d->qret > 0) {
            conn_query_failed(c);
            return;
        }
        if (c->phase == PHASE_NEXT_RESULT && d->qret == -1) {
            conn_query_ok(c);
            return;
        }
        if (mysql_field_count(d->my) > 0) {
            /* Our statements return no rows: the stream is not what we
             * think it is; do not trust this connection. */
            if (c->kind == CONN_RESOLVE)
                conn_finish_resolve(c, -1, "unexpected result set");
            else
                conn_finish_commit(c, ENG_UNKNOWN, "unexpected result set", false);
            return;
        }
        if (!mysql_more_results(d->my)) {
            conn_query_ok(c);
            return;
        }
        c->phase = PHASE_NEXT_RESULT;
        int st = mysql_next_result_start(&d->qret, d->my);
        if (st) {
            dbc_wait(d, st);
            return;
        }
    }
}

static void conn_finish_probe(store_conn *c, const char *err);

static void conn_on_step(dbc *d)
{
    store_conn *c = d->owner;
    if (c->kind == CONN_PROBE) {
        char msg[300];
        if (d->qret != 0)
            snprintf(msg, sizeof msg, "probe: MariaDB %u: %s", mysql_errno(d->my),
                     mysql_error(d->my));
        conn_finish_probe(c, d->qret != 0 ? msg : NULL);
        return;
    }
    conn_query_step(c);
}

static int conn_on_cont(dbc *d, int status)
{
    const store_conn *c = d->owner;
    if (c->kind == CONN_PROBE)
        return mysql_ping_cont(&d->qret, d->my, status);
    if (c->phase == PHASE_QUERY)
        return mysql_real_query_cont(&d->qret, d->my, status);
    return mysql_next_result_cont(&d->qret, d->my, status);
}

static void conn_on_timeout(dbc *d)
{
    store_conn *c = d->owner;
    assert(d->state == DBC_BUSY && "timer in a state without a timer");
    char msg[64];
    if (c->kind == CONN_PROBE) {
        snprintf(msg, sizeof msg, "probe: no answer within %" PRIu32 " ms",
                 c->s->connect_timeout_ms);
        conn_finish_probe(c, msg);
        return;
    }
    snprintf(msg, sizeof msg, "%s timeout after %" PRIu32 " ms",
             c->kind == CONN_COMMIT ? "commit" : "resolve", c->s->commit_timeout_ms);
    if (c->kind == CONN_COMMIT)
        conn_finish_commit(c, ENG_UNKNOWN, msg, false);
    else
        conn_finish_resolve(c, -1, msg);
}

static const dbc_ops conn_ops = {
    .up = conn_on_up,
    .down = conn_on_down,
    .cont = conn_on_cont,
    .step = conn_on_step,
    .timeout = conn_on_timeout,
};

/* ---- probes of idle connections ---------------------------------------------- */

/* A ping answered: the connection is idle again and commits may use it.
 * Unanswered or refused: the connection goes down like any broken one
 * (reconnect with backoff; store_up() false once none is left up). */
static void conn_finish_probe(store_conn *c, const char *err)
{
    store *s = c->s;
    assert(c->db.state == DBC_BUSY && c->kind == CONN_PROBE);
    c->kind = CONN_COMMIT;
    if (err != NULL) {
        conn_down(c, err);
        store_notify(s, false);
        return;
    }
    dbc_idle(&c->db);
    if (s->rq_len)
        conn_start_resolve(c);
    store_notify(s, conn_is_idle(c));
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store *s = arg;
    int64_t now = mono_us();
    for (uint32_t i = 0; i < s->n_conns; i++) {
        store_conn *c = &s->conns[i];
        if (!conn_is_idle(c) || now - c->db.idle_since_us < (int64_t)STORE_PROBE_IDLE_MS * 1000)
            continue;
        c->kind = CONN_PROBE;
        dbc_begin(&c->db, s->connect_timeout_ms);
        dbc_started(&c->db, mysql_ping_start(&c->db.qret, c->db.my));
    }
}

static int rd_init(store *s, char *err, size_t err_len);
static void rd_free(store *s);
static void sup_free(store *s);

/* ---- public API -------------------------------------------------------------- */

static int store_conns_init(store *s, char *err, size_t err_len)
{
    for (uint32_t i = 0; i < s->n_conns; i++) {
        store_conn *c = &s->conns[i];
        c->s = s;
        c->idx = i;
        if (dbc_init(&c->db, s, &conn_ops, c, err, err_len) != 0)
            return -1;
        c->ever_up = true;
    }
    return 0;
}

store *store_open(struct event_base *base, const stockd_config *cfg,
                  const store_callbacks *cb, char *err, size_t err_len)
{
    assert(base && cfg && cb && cb->on_commit && cb->on_resolve);
    if (cfg->db_connections < 1 || cfg->db_connections > STORE_CONNS_MAX) {
        set_err(err, err_len, "db_connections must be 1..%d", STORE_CONNS_MAX);
        return NULL;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        set_err(err, err_len, "mysql_library_init failed");
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, err_len, "out of memory");
        return NULL;
    }
    s->base = base;
    s->cb = *cb;
    s->db = cfg->db;
    snprintf(s->node, sizeof s->node, "%s", cfg->node);
    if (strlen(s->node) > 64)
        s->node[64] = '\0';     /* batch_log.node is VARCHAR(64) */
    s->n_conns = cfg->db_connections;
    s->commit_timeout_ms = cfg->commit_timeout_ms ? cfg->commit_timeout_ms : 5000;
    s->connect_timeout_ms = cfg->db_connect_timeout_ms ? cfg->db_connect_timeout_ms : 2000;
    s->backoff_max_ms = cfg->db_backoff_max_ms >= STORE_BACKOFF_MIN_MS
                            ? cfg->db_backoff_max_ms : STORE_BACKOFF_MIN_MS;
    s->rng = (uint64_t)mono_us() ^ ((uint64_t)getpid() << 32) ^ UINT64_C(0x9e3779b97f4a7c15);
    if (store_setup_schema(s, err, err_len) != 0 || store_conns_init(s, err, err_len) != 0 ||
        rd_init(s, err, err_len) != 0) {
        store_free(s);
        return NULL;
    }
    /* Half the idle time: a connection is pinged at most 1.5 x
     * STORE_PROBE_IDLE_MS after it last answered. */
    struct timeval every = tv_ms(STORE_PROBE_IDLE_MS / 2);
    s->probe = event_new(base, -1, EV_PERSIST, probe_cb, s);
    if (!s->probe || event_add(s->probe, &every) != 0) {
        set_err(err, err_len, "event_new: out of memory");
        store_free(s);
        return NULL;
    }
    s->was_up = true;
    char boot[24];
    snprintf(boot, sizeof boot, "%" PRIu64, s->boot_id);
    LOG_I("store: open", "boot_id", boot, "database", s->db.database);
    return s;
}

void store_free(store *s)
{
    if (!s)
        return;
    if (s->probe)
        event_free(s->probe);
    for (uint32_t i = 0; i < STORE_CONNS_MAX; i++)
        dbc_free(&s->conns[i].db);
    rd_free(s);
    sup_free(s);
    free(s->rq);
    free(s);
}

bool store_up(const store *s)
{
    for (uint32_t i = 0; i < s->n_conns; i++)
        if (conn_is_up(&s->conns[i]))
            return true;
    return false;
}

bool store_can_commit(const store *s)
{
    /* Queued resolves take idle connections first. */
    size_t idle = 0;
    for (uint32_t i = 0; i < s->n_conns; i++)
        idle += conn_is_idle(&s->conns[i]);
    return idle > s->rq_len;
}

int store_commit(store *s, eng_batch *b)
{
    assert(b && !eng_batch_is_empty(b));
    store_kick(s);
    store_conn *c = NULL;
    for (uint32_t i = 0; i < s->n_conns && !c; i++)
        if (conn_is_idle(&s->conns[i]))
            c = &s->conns[i];
    if (!c)
        return -1;
    c->batch = b;
    c->batch_id = store_batch_id(s, b);
    c->kind = CONN_COMMIT;
    sql_build_commit(&c->db.sql, s, b, c->batch_id);
    c->build_err = c->db.sql.err;
    conn_start_query(c);
    return 0;
}

void store_resolve(store *s, eng_batch *b)
{
    assert(b);
    rq_push(s, b, false);
    store_kick(s);
}

void store_stats_get(const store *s, store_stats *out)
{
    *out = s->st;
    out->conns_up = 0;
    out->conns_busy = 0;
    for (uint32_t i = 0; i < s->n_conns; i++) {
        const store_conn *c = &s->conns[i];
        out->conns_up += conn_is_up(c);
        out->conns_busy += c->db.state == DBC_BUSY;
    }
}

/* ---- loading ----------------------------------------------------------------
 *
 * Rows are checked here and by the engine (engine.h "set aside"), never
 * trusted: a row that does not parse or does not add up sets its SKU or
 * order aside with a log line and a support alert, and the load goes on.
 * Only running out of memory, or more than ENG_ASIDE_MAX rows set aside,
 * fails a load. */

/* Bytes for a log line or an alert: printable ASCII as is, anything else
 * \xNN, cut to fit out (never a partial escape). */
static void show_bytes(char *out, size_t out_size, const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t w = plain ? 1 : 4;
        if (k + w + 1 > out_size)
            break;
        if (plain)
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, out_size - k, "\\x%02x", c);
    }
    out[k] = '\0';
}

/* A column as an id: 1..ENG_ID_MAX bytes of UTF-8 without NUL (what a
 * client could have sent: rpc_parse.h). */
static bool col_id(MYSQL_ROW row, const unsigned long *len, int i, char out[ENG_ID_MAX + 1])
{
    out[0] = '\0';
    if (!row[i] || len[i] < 1 || len[i] > ENG_ID_MAX ||
        !rpc_utf8_valid((const unsigned char *)row[i], len[i]))
        return false;
    memcpy(out, row[i], len[i]);
    out[len[i]] = '\0';
    return true;
}

/* A key column (sku, order_id) as a name for the engine, the log and the
 * alert: the id itself, or "x'<hex>'" (cut to ENG_ID_MAX) when it is not
 * one, so an unreadable key can still be named and set aside. */
static void col_name(MYSQL_ROW row, const unsigned long *len, int i, char out[ENG_ID_MAX + 1])
{
    if (col_id(row, len, i, out))
        return;
    if (!row[i]) {
        snprintf(out, ENG_ID_MAX + 1, "NULL");
        return;
    }
    size_t k = (size_t)snprintf(out, ENG_ID_MAX + 1, "x'");
    for (unsigned long j = 0; j < len[i] && k + 3 < ENG_ID_MAX; j++)
        k += (size_t)snprintf(out + k, ENG_ID_MAX + 1 - k, "%02x", (unsigned char)row[i][j]);
    snprintf(out + k, ENG_ID_MAX + 1 - k, "'");
}

/* why := "<col> <value> <what>"; returns false for the caller's return. */
static bool bad_col(char why[ENG_REASON_MAX + 1], const char *col, MYSQL_ROW row,
                    const unsigned long *len, int i, const char *what)
{
    char v[48];
    if (row[i])
        show_bytes(v, sizeof v, row[i], len[i]);
    else
        snprintf(v, sizeof v, "NULL");
    eng_why_fmt(why, "%s '%s' %s", col, v, what);
    return false;
}

/* A column as an id: NULL -> "", else 1..ENG_ID_MAX bytes without NUL. */
static bool col_str(MYSQL_ROW row, const unsigned long *len, int i, char *out,
                    size_t out_size, bool nullable)
{
    if (!row[i]) {
        out[0] = '\0';
        return nullable;
    }
    if (len[i] >= out_size || memchr(row[i], '\0', len[i]))
        return false;
    memcpy(out, row[i], len[i]);
    out[len[i]] = '\0';
    return true;
}

static bool col_i64(MYSQL_ROW row, int i, int64_t *out)
{
    if (!row[i]) {
        *out = 0;       /* NULL integers (offer_id, sku_id, hold) mean "none" */
        return true;
    }
    char *end;
    errno = 0;
    long long v = strtoll(row[i], &end, 10);
    if (errno || end == row[i] || *end)
        return false;
    *out = v;
    return true;
}

static bool col_u64(MYSQL_ROW row, int i, uint64_t *out)
{
    if (!row[i]) {
        *out = 0;       /* NULL fingerprint: not seen yet */
        return true;
    }
    char *end;
    errno = 0;
    if (row[i][0] == '-')
        return false;
    unsigned long long v = strtoull(row[i], &end, 10);
    if (errno || end == row[i] || *end)
        return false;
    *out = v;
    return true;
}

/* supplier_cap: NULL is "no cap" (-1), never 0 (a real cap of nothing). */
static bool col_cap(MYSQL_ROW row, int i, int64_t *out)
{
    if (!row[i]) {
        *out = -1;
        return true;
    }
    return col_i64(row, i, out) && *out >= 0;
}

/* An optional id column (supplier_id, spec_id, upstream_order_id). */
static bool col_opt_id(MYSQL_ROW row, const unsigned long *len, int i, char out[ENG_ID_MAX + 1])
{
    if (!row[i]) {
        out[0] = '\0';
        return true;
    }
    return col_id(row, len, i, out);
}

#define SKU_SELECT "SELECT sku,own_on_hand,own_reserved,supplier_reported," \
                   "supplier_sellable,supplier_reserved,supplier_synced_at,mapping," \
                   "supplier_id,offer_id,spec_id,sku_id,epoch,supplier_cap,fingerprint FROM sku"

/* The columns of SKU_SELECT into r, checked (eng_sku_row_valid); false
 * with why on a bad row (r->sku then holds a name for it: col_name). */
static bool parse_sku_row(MYSQL_ROW row, const unsigned long *len, store_sku_row *r,
                          char why[ENG_REASON_MAX + 1])
{
    static const char *const num[] = {"own_on_hand", "own_reserved", "supplier_reported",
                                      "supplier_sellable", "supplier_reserved",
                                      "supplier_synced_at"};
    int64_t *dst[] = {&r->c.own_on_hand, &r->c.own_reserved, &r->c.supplier_reported,
                      &r->c.supplier_sellable, &r->c.supplier_reserved,
                      &r->c.supplier_synced_at_ms};
    char mapping_s[32];
    memset(r, 0, sizeof *r);
    char id[ENG_ID_MAX + 1];
    col_name(row, len, 0, r->sku);
    if (!col_id(row, len, 0, id))
        return bad_col(why, "sku", row, len, 0, "is not 1..64 bytes of UTF-8");
    for (int k = 0; k < 6; k++)
        if (!col_i64(row, 1 + k, dst[k]))
            return bad_col(why, num[k], row, len, 1 + k, "is not an integer");
    if (!col_str(row, len, 7, mapping_s, sizeof mapping_s, false) ||
        !eng_mapping_parse(mapping_s, &r->mapping))
        return bad_col(why, "mapping", row, len, 7, "is not a mapping");
    if (!col_opt_id(row, len, 8, r->map.supplier_id))
        return bad_col(why, "supplier_id", row, len, 8, "is not an id");
    if (!col_i64(row, 9, &r->map.offer_id))
        return bad_col(why, "offer_id", row, len, 9, "is not an integer");
    if (!col_opt_id(row, len, 10, r->map.spec_id))
        return bad_col(why, "spec_id", row, len, 10, "is not an id");
    if (!col_i64(row, 11, &r->map.sku_id))
        return bad_col(why, "sku_id", row, len, 11, "is not an integer");
    if (!col_i64(row, 12, &r->epoch))
        return bad_col(why, "epoch", row, len, 12, "is not an integer");
    if (!col_cap(row, 13, &r->map.cap))
        return bad_col(why, "supplier_cap", row, len, 13, "is not a count");
    if (!col_u64(row, 14, &r->map.fingerprint))
        return bad_col(why, "fingerprint", row, len, 14, "is not an unsigned integer");
    return eng_sku_row_valid(&r->c, r->mapping, store_sku_row_map(r), why);
}

/* The map engine_load_sku() takes: OK and BROKEN mappings carry one. */
const eng_supplier_map *store_sku_row_map(const store_sku_row *r)
{
    return r->mapping == ENG_MAP_OK || r->mapping == ENG_MAP_BROKEN ? &r->map : NULL;
}

/* Sets a SKU aside (engine.h) and says so. -1: the engine refused (at
 * ENG_ASIDE_MAX, or busy in a batch). */
static int aside_sku(engine *e, const char *sku, const char *why)
{
    size_t orders = 0;
    int rc = engine_set_aside_sku(e, sku, why, &orders);
    if (rc < 0) {
        LOG_E("store: cannot set a SKU aside", "sku", sku, "reason", why);
        return -1;
    }
    if (rc == 1) {
        char n[24];
        snprintf(n, sizeof n, "%zu", orders);
        LOG_W("store: SKU set aside (support alert set_aside)", "sku", sku, "reason", why,
              "orders_with_it", n);
    }
    return 0;
}

static void audit_note(const char *sku, const char *why, void *arg)
{
    (void)arg;
    LOG_W("store: SKU set aside (support alert set_aside)", "sku", sku, "reason", why);
}

/* Checks the counters of the SKUs just loaded against their orders. */
static int audit_loaded(engine *e, char *err, size_t err_len)
{
    if (engine_audit_loaded(e, audit_note, NULL) < 0) {
        set_err(err, err_len, "more than %d rows set aside: repair the database first "
                "(docs/operations.md)", ENG_ASIDE_MAX);
        return -1;
    }
    return 0;
}

/* One SKU row at startup: loaded or set aside. 0, or -1 with err. */
static int load_sku_row(engine *e, MYSQL_ROW row, const unsigned long *len, char *err,
                        size_t err_len)
{
    store_sku_row r;
    char why[ENG_REASON_MAX + 1];
    if (parse_sku_row(row, len, &r, why)) {
        if (engine_load_sku(e, r.sku, &r.c, r.mapping, store_sku_row_map(&r), r.epoch))
            return 0;
        eng_why_fmt(why, "refused by the engine (stored twice?)");
    }
    if (aside_sku(e, r.sku, why) == 0)
        return 0;
    set_err(err, err_len, "load sku: cannot set %s aside (more than %d rows set aside?)", r.sku,
            ENG_ASIDE_MAX);
    return -1;
}

#define ORDER_SELECT "SELECT order_id,sku,qty,status,from_own,from_supplier,available," \
                     "created_at,updated_at,hold_expires_at,upstream_order_id,reason," \
                     "purchased_at,supplier_settled,line_no,n_lines FROM orders"
/* Lines reach the engine in this order: one order's lines together, line
 * 0 first (engine_load_order_lines). */
#define ORDER_SORT " ORDER BY order_id,line_no"

/* The columns of ORDER_SELECT into o, checked (eng_order_row_valid); false
 * with why on a bad row. *holds_known: status, quantities and settlement
 * were read, so the units the line holds are known (line_holds). */
static bool parse_order_row(MYSQL_ROW row, const unsigned long *len, eng_order_view *o,
                            char why[ENG_REASON_MAX + 1], bool *holds_known)
{
    char status_s[32], id[ENG_ID_MAX + 1];
    int64_t qty, from_own, from_supplier, settled, line_no, n_lines;
    memset(o, 0, sizeof *o);
    *holds_known = false;
    col_name(row, len, 0, o->order_id);
    col_name(row, len, 1, o->sku);
    if (!col_id(row, len, 1, id))
        return bad_col(why, "sku", row, len, 1, "is not 1..64 bytes of UTF-8");
    if (!col_str(row, len, 3, status_s, sizeof status_s, false) ||
        !eng_status_parse(status_s, &o->status))
        return bad_col(why, "status", row, len, 3, "is not a status");
    if (!row[2] || !col_i64(row, 2, &qty) || qty < 1 || qty > ENG_QTY_MAX)
        return bad_col(why, "qty", row, len, 2, "is not 1..1000000");
    if (!row[4] || !row[5] || !col_i64(row, 4, &from_own) || !col_i64(row, 5, &from_supplier) ||
        from_own < 0 || from_supplier < 0 || from_own + from_supplier != qty)
        return bad_col(why, "from_own", row, len, 4, "and from_supplier do not split qty");
    if (!col_i64(row, 13, &settled) || settled < 0 || settled > 1)
        return bad_col(why, "supplier_settled", row, len, 13, "is not 0 or 1");
    o->qty = (int32_t)qty;
    o->from_own = (int32_t)from_own;
    o->from_supplier = (int32_t)from_supplier;
    o->supplier_settled = settled == 1;
    *holds_known = true;
    if (!col_id(row, len, 0, id))
        return bad_col(why, "order_id", row, len, 0, "is not 1..64 bytes of UTF-8");
    if (!col_i64(row, 6, &o->available) || !col_i64(row, 7, &o->created_at_ms) ||
        !col_i64(row, 8, &o->updated_at_ms))
        return bad_col(why, "available / created_at / updated_at", row, len, 6,
                       "are not integers");
    if (!col_i64(row, 9, &o->hold_expires_at_ms))
        return bad_col(why, "hold_expires_at", row, len, 9, "is not an integer");
    if (!col_opt_id(row, len, 10, o->upstream_order_id))
        return bad_col(why, "upstream_order_id", row, len, 10, "is not an id");
    /* The reason is prose for people: shown, never refused. */
    if (row[11] && rpc_utf8_valid((const unsigned char *)row[11], len[11]) &&
        len[11] <= ENG_REASON_MAX) {
        memcpy(o->reason, row[11], len[11]);
        o->reason[len[11]] = '\0';
    } else if (row[11]) {
        show_bytes(o->reason, sizeof o->reason, row[11], len[11]);
    }
    if (!col_i64(row, 12, &o->purchased_at_ms))
        return bad_col(why, "purchased_at", row, len, 12, "is not an integer");
    if (!row[14] || !row[15] || !col_i64(row, 14, &line_no) || !col_i64(row, 15, &n_lines) ||
        n_lines < 1 || n_lines > ENG_LINES_MAX || line_no < 0 || line_no >= n_lines)
        return bad_col(why, "line_no", row, len, 14, "or n_lines out of range");
    o->line_no = (int32_t)line_no;
    o->n_lines = (int32_t)n_lines;
    return eng_order_row_valid(o, why);
}

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

static bool group_same(const order_group *g, MYSQL_ROW row, const unsigned long *len)
{
    if (g->rows == 0)
        return true;
    if (!row[0] || g->key_null)
        return !row[0] && g->key_null;
    return len[0] == g->key_len && memcmp(row[0], g->key, len[0]) == 0;
}

static void group_add(order_group *g, MYSQL_ROW row, const unsigned long *len)
{
    if (g->rows++ == 0) {
        g->key_null = !row[0];
        g->key_len = row[0] ? (len[0] < sizeof g->key ? len[0] : sizeof g->key) : 0;
        if (g->key_len)
            memcpy(g->key, row[0], g->key_len);
    }
    char why[ENG_REASON_MAX + 1];
    bool holds_known;
    eng_order_view o;
    if (g->n == ENG_LINES_MAX) {
        if (!g->bad)
            snprintf(g->why, sizeof g->why, "more than %d lines stored", ENG_LINES_MAX);
        g->bad = true;
        return;
    }
    bool ok = parse_order_row(row, len, &o, why, &holds_known);
    if (!ok && !g->bad)
        memcpy(g->why, why, sizeof why);
    g->bad = g->bad || !ok;
    if (holds_known)
        g->v[g->n++] = o;
    else if (g->n_blind < ENG_LINES_MAX && row[1] && col_id(row, len, 1, g->blind[g->n_blind]))
        g->n_blind++;
}

/* Loads the gathered order or sets it aside. 0, or -1 with err (out of
 * memory, ENG_ASIDE_MAX). */
static int group_flush(order_group *g, engine *e, uint64_t *loaded, char *err, size_t err_len)
{
    if (g->rows == 0)
        return 0;
    int rc = 0;
    char name[ENG_ID_MAX + 1];
    if (g->n > 0) {
        memcpy(name, g->v[0].order_id, sizeof name);
    } else {
        unsigned long l = g->key_len;
        char *one[1] = {g->key_null ? NULL : g->key};
        col_name(one, &l, 0, name);
    }
    if (!g->bad) {
        rc = engine_load_order_lines(e, g->v, g->n, g->why);
        if (rc == 1) {
            (*loaded)++;
            goto out;
        }
        if (rc < 0) {
            set_err(err, err_len, "load orders: out of memory");
            goto out;
        }
        rc = 0;
    }
    /* A SKU whose line cannot be read cannot have its counters checked. */
    for (size_t i = 0; i < g->n_blind && rc == 0; i++) {
        char why[ENG_REASON_MAX + 1];
        eng_why_fmt(why, "order %s cannot be read (%s)", name, g->why);
        rc = aside_sku(e, g->blind[i], why);
    }
    const char *sku = g->n > 0 ? g->v[0].sku : g->n_blind > 0 ? g->blind[0] : "?";
    if (rc == 0) {
        int a = engine_set_aside_order(e, name, g->v, g->n, sku, g->why);
        if (a == 1)
            LOG_W("store: order set aside (support alert set_aside)", "order_id", name, "sku", sku,
                  "reason", g->why);
        else if (a == 2)
            LOG_D("store: order set aside with its SKU", "order_id", name, "sku", sku);
        rc = a < 0 ? -1 : 0;
    }
    if (rc < 0)
        set_err(err, err_len, "load orders: cannot set %s aside (more than %d rows set aside?)",
                name, ENG_ASIDE_MAX);
out:
    g->rows = g->n = g->n_blind = 0;
    g->bad = false;
    g->why[0] = '\0';
    return rc < 0 ? -1 : 0;
}

/* Streams the orders (sorted) into e; then checks the counters of the SKUs
 * loaded. 0, or -1 with err. */
static int load_orders_res(MYSQL_RES *res, engine *e, uint64_t *count, char *err, size_t err_len)
{
    order_group *g = calloc(1, sizeof *g);
    if (g == NULL) {
        set_err(err, err_len, "load orders: out of memory");
        return -1;
    }
    int rc = 0;
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        if (rc != 0)
            continue;   /* drain the stream before freeing */
        unsigned long *len = mysql_fetch_lengths(res);
        if (!group_same(g, row, len))
            rc = group_flush(g, e, count, err, err_len);
        if (rc == 0)
            group_add(g, row, len);
    }
    if (rc == 0)
        rc = group_flush(g, e, count, err, err_len);
    free(g);
    if (rc == 0)
        rc = audit_loaded(e, err, err_len);
    return rc;
}

typedef int (*load_row_fn)(engine *e, MYSQL_ROW row, const unsigned long *len, char *err,
                           size_t err_len);

/* Streams one table (mysql_use_result: no full copy in memory). */
static int load_table(MYSQL *my, engine *e, const char *what, const char *sql,
                      load_row_fn fn, uint64_t *count, char *err, size_t err_len)
{
    if (mysql_real_query(my, sql, strlen(sql)) != 0) {
        set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        return -1;
    }
    MYSQL_RES *r = mysql_use_result(my);
    if (!r) {
        set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        return -1;
    }
    int rc = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        if (rc != 0)
            continue;   /* drain the stream before freeing */
        rc = fn(e, row, mysql_fetch_lengths(r), err, err_len);
        if (rc == 0)
            (*count)++;
    }
    if (rc == 0 && mysql_errno(my)) {
        set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        rc = -1;
    }
    mysql_free_result(r);
    return rc;
}

#define SUPPLIER_SELECT "SELECT supplier_id,trust,trust_ceiling,event_mode,event_trust FROM supplier"

static bool col_double(MYSQL_ROW row, int i, double *out)
{
    if (!row[i])
        return false;
    char *end;
    errno = 0;
    double v = strtod(row[i], &end);
    if (errno || end == row[i] || *end)
        return false;
    *out = v;
    return true;
}

/* A supplier's trust settings; the engine judges the values. One that
 * cannot be used gets trust 0 (its SKUs sell none of its stock) until a
 * supplier.put sets it again: never the default, which may trust more than
 * the shop chose. */
static int load_supplier_row(engine *e, MYSQL_ROW row, const unsigned long *len, char *err,
                             size_t err_len)
{
    char id[ENG_ID_MAX + 1], name[ENG_ID_MAX + 1];
    eng_trust t = {0};
    int64_t mode;
    (void)err;
    (void)err_len;
    if (col_id(row, len, 0, id) && col_double(row, 1, &t.trust) &&
        col_double(row, 2, &t.ceiling) && row[3] && col_i64(row, 3, &mode) && mode >= 0 &&
        mode <= 1 && col_double(row, 4, &t.event_trust)) {
        t.event_mode = mode == 1;
        if (engine_load_supplier(e, id, &t))
            return 0;
    }
    col_name(row, len, 0, name);
    char why[ENG_REASON_MAX + 1];
    eng_why_fmt(why, "supplier %s: trust settings unreadable or out of range; trust 0 "
             "until supplier.put", name);
    if (id[0] != '\0' && strcmp(id, name) == 0) {
        eng_trust zero = {0};
        (void)engine_load_supplier(e, id, &zero);
    }
    engine_aside_alert(e, name, "", why);
    LOG_W("store: supplier row set aside (support alert set_aside)", "supplier_id", name,
          "reason", why);
    return 0;
}

int store_load_all(store *s, engine *e, char *err, size_t err_len)
{
    return store_load_state(s, e, true, err, err_len);
}

int store_load_state(store *s, engine *e, bool preload_skus, char *err, size_t err_len)
{
    s->eng = e;
    MYSQL *my = db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    uint64_t suppliers = 0, skus = 0, orders = 0;
    /* Suppliers first: every SKU then meets its supplier's settings. All
     * of them, whatever preload_skus says: there are few, and cold SKUs
     * loaded later need them too. */
    int rc = load_table(my, e, "supplier", SUPPLIER_SELECT, load_supplier_row, &suppliers,
                        err, err_len);
    if (rc == 0)
        rc = load_table(my, e, "sku",
                        preload_skus ? SKU_SELECT
                                     : SKU_SELECT " WHERE sku IN (SELECT DISTINCT sku FROM orders)",
                        load_sku_row, &skus, err, err_len);
    if (rc == 0) {
        const char *sql = ORDER_SELECT ORDER_SORT;
        MYSQL_RES *r = NULL;
        if (mysql_real_query(my, sql, strlen(sql)) != 0 || !(r = mysql_use_result(my))) {
            set_err(err, err_len, "load orders: %s", mysql_error(my));
            rc = -1;
        } else {
            rc = load_orders_res(r, e, &orders, err, err_len);
            if (rc == 0 && mysql_errno(my)) {
                set_err(err, err_len, "load orders: %s", mysql_error(my));
                rc = -1;
            }
            mysql_free_result(r);
        }
    }
    mysql_close(my);
    if (rc == 0) {
        eng_stats es;
        engine_stats_get(e, &es);
        char a[24], b[24], c[24], d[24], f[24];
        snprintf(a, sizeof a, "%" PRIu64, skus);
        snprintf(b, sizeof b, "%" PRIu64, orders);
        snprintf(c, sizeof c, "%" PRIu64, suppliers);
        snprintf(d, sizeof d, "%" PRIu64, es.skus_aside);
        snprintf(f, sizeof f, "%" PRIu64, es.orders_aside);
        LOG_I("store: loaded", "skus", a, "orders", b, "suppliers", c, "skus_set_aside", d,
              "orders_set_aside", f);
    }
    return rc;
}

/* ---- recent alerts (startup) --------------------------------------------- */

/* A string column cut to fit out (out_size - 1 bytes), and at a NUL. */
static void col_cut(MYSQL_ROW row, const unsigned long *len, int i, char *out, size_t out_size)
{
    size_t n = row[i] ? len[i] : 0;
    if (n >= out_size)
        n = out_size - 1;
    if (n)
        memcpy(out, row[i], n);
    out[n] = '\0';
}

static bool parse_alert_row(MYSQL_ROW row, const unsigned long *len, store_alert *a)
{
    memset(a, 0, sizeof *a);
    if (!col_i64(row, 0, &a->id) || !row[0] ||
        !col_str(row, len, 2, a->sku, sizeof a->sku, false) || !a->sku[0] ||
        !col_str(row, len, 3, a->order_id, sizeof a->order_id, true) ||
        !col_i64(row, 5, &a->at_ms))
        return false;
    col_cut(row, len, 1, a->kind, sizeof a->kind);
    col_cut(row, len, 4, a->reason, sizeof a->reason);
    return a->kind[0] != '\0';
}

int store_recent_alerts(store *s, uint32_t max, void (*fn)(const store_alert *a, void *arg),
                        void *arg, char *err, size_t err_len)
{
    assert(s && fn);
    if (max == 0)
        return 0;
    MYSQL *my = db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    /* The newest max by id (commit order), handed out oldest first. */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT id,kind,sku,order_id,reason,at FROM"
             " (SELECT id,kind,sku,order_id,reason,at FROM alerts ORDER BY id DESC LIMIT %" PRIu32
             ") t ORDER BY id",
             max);
    int rc = -1;
    MYSQL_RES *r = NULL;
    if (mysql_real_query(my, sql, strlen(sql)) != 0 || !(r = mysql_use_result(my))) {
        set_err(err, err_len, "load alerts: %s", mysql_error(my));
        goto out;
    }
    uint64_t bad = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        store_alert a;
        /* A bad row is history, not state: skip it rather than refuse to start. */
        if (parse_alert_row(row, mysql_fetch_lengths(r), &a))
            fn(&a, arg);
        else
            bad++;
    }
    rc = mysql_errno(my) ? -1 : 0;
    if (rc)
        set_err(err, err_len, "load alerts: %s", mysql_error(my));
    mysql_free_result(r);
    if (bad) {
        char n[24];
        snprintf(n, sizeof n, "%" PRIu64, bad);
        LOG_W("store: alert rows skipped", "rows", n);
    }
out:
    mysql_close(my);
    return rc;
}

/* ---- SKU names (Bloom filter) ------------------------------------------- */

int store_count_skus(store *s, uint64_t *out, char *err, size_t err_len)
{
    MYSQL *my = db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    int64_t n = 0;
    int rc = db_query_i64(my, "SELECT COUNT(*) FROM sku", &n, err, err_len);
    mysql_close(my);
    if (rc == 0)
        *out = n < 0 ? 0 : (uint64_t)n;
    return rc;
}

int store_each_sku(store *s, void (*fn)(const char *sku, size_t len, void *arg), void *arg,
                   char *err, size_t err_len)
{
    MYSQL *my = db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    int rc = -1;
    MYSQL_RES *r = NULL;
    if (mysql_real_query(my, "SELECT sku FROM sku", 19) != 0 || !(r = mysql_use_result(my))) {
        set_err(err, err_len, "scan sku: %s", mysql_error(my));
        goto out;
    }
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        unsigned long *len = mysql_fetch_lengths(r);
        if (row[0] && len[0] >= 1 && len[0] <= ENG_ID_MAX)
            fn(row[0], len[0], arg);
    }
    rc = mysql_errno(my) ? -1 : 0;
    if (rc)
        set_err(err, err_len, "scan sku: %s", mysql_error(my));
    mysql_free_result(r);
out:
    mysql_close(my);
    return rc;
}

/* ---- reader: single-SKU loads -------------------------------------------- */

static void rd_start_query(store *s);

/* Frees what the reader read, before its handle closes. */
static void rd_release(dbc *d)
{
    store_reader *rd = &((store *)d->owner)->rd;
    if (rd->res) {
        mysql_free_result(rd->res);
        rd->res = NULL;
    }
    if (rd->res_orders) {
        mysql_free_result(rd->res_orders);
        rd->res_orders = NULL;
    }
}

/* Answers every request of the running query with result -1. */
static void rd_fail_batch(store *s)
{
    store_reader *rd = &s->rd;
    size_t n = rd->n_batch;
    rd->n_batch = 0;
    for (size_t i = 0; i < n; i++) {
        s->st.sku_loads_failed++;
        load_req_fail(&rd->batch[i]);
    }
}

static void rd_down(store *s, const char *why)
{
    dbc_down(&s->rd.db, why);
}

/* The reader failed: its query's requests fail, and so do the queued ones
 * (through defer: the loop answers them while the reader is down, so that
 * readers of a dead MariaDB hear "unavailable" at once). Reconnects after
 * backoff (armed by dbc_down). */
static void rd_on_down(dbc *d, const char *why, dbc_state was)
{
    store *s = d->owner;
    if (was == DBC_IDLE || was == DBC_BUSY)
        LOG_W("store: reader connection down", "why", why);
    rd_fail_batch(s);
    if (s->rd.q_len)
        event_active(d->defer, EV_TIMEOUT, 0);
}

static void rd_on_up(dbc *d)
{
    rd_start_query(d->owner);
}

static void lq_push(store_reader *rd, const load_req *r)
{
    assert(rd->q_len < rd->q_cap);
    rd->q[(rd->q_head + rd->q_len) % rd->q_cap] = *r;
    rd->q_len++;
}

static void lq_pop(store_reader *rd, load_req *out)
{
    assert(rd->q_len > 0);
    *out = rd->q[rd->q_head];
    rd->q_head = (rd->q_head + 1) % rd->q_cap;
    rd->q_len--;
}

/* " WHERE sku IN (...)" (or order_id) over the running batch. */
static void rd_sql_in(store_reader *rd)
{
    sb_str(&rd->db.sql, rd->step == RD_STEP_FIND || rd->step == RD_STEP_LINES
                         ? " WHERE order_id IN ("
                         : " WHERE sku IN (");
    for (size_t i = 0; i < rd->n_batch; i++) {
        if (i)
            sb_str(&rd->db.sql, ",");
        sb_hex_str(&rd->db.sql, rd->batch[i].sku);
    }
    sb_str(&rd->db.sql, ")");
}

/* First writer wins, in one statement: the upsert changes nothing on a
 * duplicate, and RETURNING gives the row that stands for every value
 * (inserted now, or there before: InnoDB locks it, so it is final). Two
 * requests of one order in a batch: the first inserts, both read it. */
static void rd_sql_decide(store_reader *rd)
{
    int64_t at = now_ms();
    sb_str(&rd->db.sql, "INSERT INTO cart_decisions (order_id,decision,at_ms,err_code,err_line,"
                        "err_sku,err_available) VALUES ");
    for (size_t i = 0; i < rd->n_batch; i++) {
        const load_req *r = &rd->batch[i];
        assert(r->want == STORE_DECIDE_CONFIRM || r->want == STORE_DECIDE_ABORT);
        const store_abort_why *w = &r->why;
        bool why = r->want == STORE_DECIDE_ABORT && w->code[0] != '\0';
        sb_str(&rd->db.sql, i ? ",(" : "(");
        sb_hex_str(&rd->db.sql, r->sku);
        sb_str(&rd->db.sql, r->want == STORE_DECIDE_CONFIRM ? ",'confirm'," : ",'abort',");
        sb_i64(&rd->db.sql, at);
        sb_str(&rd->db.sql, ",");
        sb_hex_or_null(&rd->db.sql, why ? w->code : NULL);
        sb_str(&rd->db.sql, ",");
        if (why && w->line >= 0)
            sb_i64(&rd->db.sql, w->line);
        else
            sb_str(&rd->db.sql, "NULL");
        sb_str(&rd->db.sql, ",");
        sb_hex_or_null(&rd->db.sql, why && w->sku[0] ? w->sku : NULL);
        sb_str(&rd->db.sql, ",");
        if (why && w->available >= 0)
            sb_i64(&rd->db.sql, w->available);
        else
            sb_str(&rd->db.sql, "NULL");
        sb_str(&rd->db.sql, ")");
    }
    sb_str(&rd->db.sql, " ON DUPLICATE KEY UPDATE at_ms=at_ms RETURNING order_id,decision,err_code,"
                        "err_line,err_sku,err_available");
}

/* Sends the statement of the running batch's current step. */
static void rd_send_step(store *s)
{
    store_reader *rd = &s->rd;
    sb_reset(&rd->db.sql);
    switch (rd->step) {
    case RD_STEP_ISOLATION:
        /* READ COMMITTED: the bump of SKUs that do not exist yet takes no
         * gap locks, so it cannot deadlock with a batch inserting them.
         * The rows that do exist are locked by the bump, so what the
         * SELECTs read after it is final either way. */
        sb_str(&rd->db.sql, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
        break;
    case RD_STEP_BEGIN:
        sb_str(&rd->db.sql, "START TRANSACTION");
        break;
    case RD_STEP_BUMP:
        sb_str(&rd->db.sql, "UPDATE sku SET epoch=epoch+1,version=version+1");
        rd_sql_in(rd);
        break;
    case RD_STEP_SKUS:
        sb_str(&rd->db.sql, SKU_SELECT);
        rd_sql_in(rd);
        break;
    case RD_STEP_ORDERS:
        /* Sorted: a SKU's lines of one order may come in any order. */
        sb_str(&rd->db.sql, ORDER_SELECT);
        rd_sql_in(rd);
        sb_str(&rd->db.sql, ORDER_SORT);
        break;
    case RD_STEP_COMMIT:
        sb_str(&rd->db.sql, "COMMIT");
        break;
    case RD_STEP_FIND:
        sb_str(&rd->db.sql, "SELECT order_id,sku FROM orders");
        rd_sql_in(rd);
        sb_str(&rd->db.sql, " AND line_no=0");
        break;
    case RD_STEP_LINES:
        sb_str(&rd->db.sql, "SELECT order_id,line_no,n_lines,sku FROM orders");
        rd_sql_in(rd);
        sb_str(&rd->db.sql, ORDER_SORT);
        break;
    case RD_STEP_DECIDE:
        rd_sql_decide(rd);
        break;
    case RD_STEP_RETRY:
        sb_str(&rd->db.sql, "ROLLBACK");
        break;
    default:
        assert(!"no statement for this step");
    }
    if (rd->db.sql.err) {
        rd_fail_batch(s);
        rd->db.state = DBC_IDLE;
        return;
    }
    s->st.sku_load_queries++;
    rd->phase = RD_QUERY;
    dbc_query_start(&rd->db, s->commit_timeout_ms);
}

/* Takes up to STORE_LOAD_BATCH_MAX queued requests into one load. */
static void rd_start_query(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->db.state != DBC_IDLE || rd->q_len == 0)
        return;
    rd->n_batch = 0;
    /* One kind a batch: the requests at the head of the queue that share
     * its kind (arrival order is kept). */
    load_kind kind = rd->q[rd->q_head].kind;
    while (rd->q_len && rd->n_batch < STORE_LOAD_BATCH_MAX && rd->q[rd->q_head].kind == kind) {
        load_req *r = &rd->batch[rd->n_batch];
        lq_pop(rd, r);
        rd->n_batch++;
    }
    switch (kind) {
    case LK_FIND:
        rd->step = RD_STEP_FIND;
        break;
    case LK_LINES:
        rd->step = RD_STEP_LINES;
        break;
    case LK_DECIDE:
        rd->step = RD_STEP_DECIDE;
        break;
    default:
        rd->step = s->takeover ? RD_STEP_ISOLATION : RD_STEP_SKUS;
        break;
    }
    rd->deadlocks = 0;
    rd_send_step(s);
}

/* A takeover's orders go straight into the engine, after their SKUs (an
 * order needs its SKU) and before anyone is told the SKU is loaded. */
static void rd_load_orders(store *s, MYSQL_RES *res)
{
    uint64_t n = 0;
    char err[256];
    /* Set aside what does not load; a failure here (out of memory, too
     * much set aside) leaves the rest unloaded: their SKUs' audit then
     * sets them aside too, never sells from them. */
    if (load_orders_res(res, s->takeover, &n, err, sizeof err) != 0)
        LOG_E("store: takeover: orders not loaded", "error", err);
}

/* Takes the reader's finished batch and its result (NULL when the query
 * failed) off the reader before any callback runs, so a callback may queue
 * the next request. Returns how many requests it held. */
static size_t rd_take_batch(store *s, load_req *batch, MYSQL_RES **res)
{
    store_reader *rd = &s->rd;
    *res = rd->res;
    rd->res = NULL;
    size_t n = rd->n_batch;
    rd->n_batch = 0;
    memcpy(batch, rd->batch, n * sizeof *batch);
    return n;
}

/* An order lookup's result: (order_id, sku) rows. */
static void rd_deliver_find(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    char skus[STORE_LOAD_BATCH_MAX][ENG_ID_MAX + 1];
    bool found[STORE_LOAD_BATCH_MAX] = {false};
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        for (size_t i = 0; i < n; i++) {
            if (!row[0] || !row[1] || strlen(batch[i].sku) != len[0] ||
                memcmp(batch[i].sku, row[0], len[0]) != 0 || len[1] < 1 || len[1] > ENG_ID_MAX)
                continue;
            memcpy(skus[i], row[1], len[1]);
            skus[i][len[1]] = '\0';
            found[i] = true;
        }
    }
    if (res)
        mysql_free_result(res);
    for (size_t i = 0; i < n; i++)
        batch[i].fn.find(batch[i].sku, found[i] ? 1 : 0, found[i] ? skus[i] : NULL,
                         batch[i].arg);
}

static bool row_is_key(MYSQL_ROW row, const unsigned long *len, int col, const char *key)
{
    return row[col] && strlen(key) == len[col] && memcmp(key, row[col], len[col]) == 0;
}

/* The lines of order_id among the rows of res (sorted by order_id,
 * line_no): their count, 0 when none, -1 when they do not make sense
 * (out of range, not one per line_no, n_lines not shared). */
static int rd_collect_lines(MYSQL_RES *res, const char *order_id, store_line_ref *out)
{
    int n = 0;
    MYSQL_ROW row;
    mysql_data_seek(res, 0);
    while ((row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        if (!row_is_key(row, len, 0, order_id))
            continue;
        int64_t line_no, n_lines;
        if (n >= ENG_LINES_MAX || !row[1] || !col_i64(row, 1, &line_no) || !row[2] ||
            !col_i64(row, 2, &n_lines) || n_lines < 1 || n_lines > ENG_LINES_MAX ||
            line_no < 0 || line_no >= n_lines || (n > 0 && n_lines != out[0].n_lines) ||
            (n > 0 && line_no <= out[n - 1].line_no) ||
            !col_str(row, len, 3, out[n].sku, sizeof out[n].sku, false) || !out[n].sku[0])
            return -1;
        out[n].line_no = (int32_t)line_no;
        out[n].n_lines = (int32_t)n_lines;
        n++;
    }
    return n;
}

/* An order-lines lookup's result. Each request scans the rows (at most
 * STORE_LOAD_BATCH_MAX x ENG_LINES_MAX): simple, and small next to the
 * round trip. */
static void rd_deliver_lines(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    store_line_ref lines[ENG_LINES_MAX];
    for (size_t i = 0; i < n; i++) {
        int got = res ? rd_collect_lines(res, batch[i].sku, lines) : -1;
        if (got < 0) {
            s->st.sku_loads_failed++;
            LOG_W("store: order lines do not make sense", "order_id", batch[i].sku);
        }
        batch[i].fn.lines(batch[i].sku, got, got > 0 ? lines : NULL, batch[i].arg);
    }
    if (res)
        mysql_free_result(res);
}

/* A decision batch's result: (order_id, decision) of every order asked. */
static void rd_deliver_decide(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    int got[STORE_LOAD_BATCH_MAX];
    store_abort_why why[STORE_LOAD_BATCH_MAX];
    bool has_why[STORE_LOAD_BATCH_MAX] = {false};
    for (size_t i = 0; i < n; i++)
        got[i] = -1;
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        int d = !row[1] ? -1
                : strcmp(row[1], "confirm") == 0 ? STORE_DECIDE_CONFIRM
                : strcmp(row[1], "abort") == 0   ? STORE_DECIDE_ABORT
                                                 : -1;
        /* A refusal we cannot read back is no refusal: the retry then
         * answers as for an abort without one. */
        store_abort_why w = {.line = -1, .available = -1};
        bool ok = d == STORE_DECIDE_ABORT && row[2] && len[2] > 0 && len[2] <= STORE_ABORT_CODE_MAX &&
                  (!row[4] || len[4] <= ENG_ID_MAX);
        if (ok) {
            memcpy(w.code, row[2], len[2]);
            if (row[3])
                w.line = (int32_t)strtol(row[3], NULL, 10);
            if (row[4])
                memcpy(w.sku, row[4], len[4]);
            if (row[5])
                w.available = strtoll(row[5], NULL, 10);
        }
        for (size_t i = 0; i < n; i++) {
            if (row_is_key(row, len, 0, batch[i].sku)) {
                got[i] = d;
                why[i] = w;
                has_why[i] = ok;
            }
        }
    }
    if (res)
        mysql_free_result(res);
    for (size_t i = 0; i < n; i++) {
        if (got[i] < 0)
            s->st.sku_loads_failed++;
        batch[i].fn.decide(batch[i].sku, got[i], has_why[i] ? &why[i] : NULL, batch[i].arg);
    }
}

/* The results are stored: answer every request of the batch. */
static void rd_deliver(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->step == RD_STEP_FIND) {
        rd_deliver_find(s);
        return;
    }
    if (rd->step == RD_STEP_LINES) {
        rd_deliver_lines(s);
        return;
    }
    if (rd->step == RD_STEP_DECIDE) {
        rd_deliver_decide(s);
        return;
    }
    MYSQL_RES *res = rd->res, *res_orders = rd->res_orders;
    rd->res = rd->res_orders = NULL;
    bool found[STORE_LOAD_BATCH_MAX] = {false};
    store_sku_row rows_ok[STORE_LOAD_BATCH_MAX];
    bool ok_row[STORE_LOAD_BATCH_MAX] = {false};
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        store_sku_row r;
        char why[ENG_REASON_MAX + 1];
        bool ok = parse_sku_row(row, len, &r, why);
        /* Not a takeover: a SKU loaded on first use had no orders when the
         * instance started (those with orders were loaded then), and can
         * have none since, so it holds no units. */
        if (ok && !s->takeover && (r.c.own_reserved != 0 || r.c.supplier_reserved != 0)) {
            snprintf(why, sizeof why,
                     "counters do not match its orders: own_reserved %" PRId64
                     ", supplier_reserved %" PRId64 " with no orders",
                     r.c.own_reserved, r.c.supplier_reserved);
            ok = false;
        }
        for (size_t i = 0; i < rd->n_batch; i++) {
            if (!row[0] || strlen(rd->batch[i].sku) != len[0] ||
                memcmp(rd->batch[i].sku, row[0], len[0]) != 0)
                continue;
            found[i] = true;
            ok_row[i] = ok;
            rows_ok[i] = r;
            /* Known to the engine from now on: the waiters are refused
             * (set aside), nobody loads it again. */
            if (!ok && s->eng != NULL && !engine_knows_sku(s->eng, rd->batch[i].sku) &&
                aside_sku(s->eng, rd->batch[i].sku, why) == 0)
                ok_row[i] = true;
        }
    }
    if (s->takeover) {
        for (size_t i = 0; i < rd->n_batch; i++) {
            const store_sku_row *r = &rows_ok[i];
            if (ok_row[i] && !engine_knows_sku(s->takeover, r->sku) &&
                !engine_load_sku(s->takeover, r->sku, &r->c, r->mapping,
                                 store_sku_row_map(r), r->epoch))
                ok_row[i] = false;
        }
        rd_load_orders(s, res_orders);
        for (size_t i = 0; i < rd->n_batch; i++)
            if (found[i] && ok_row[i] && !engine_knows_sku(s->takeover, rd->batch[i].sku))
                ok_row[i] = false;
    }
    size_t n = rd->n_batch;
    rd->n_batch = 0;
    load_req batch[STORE_LOAD_BATCH_MAX];
    memcpy(batch, rd->batch, n * sizeof *batch);
    for (size_t i = 0; i < n; i++) {
        if (!found[i]) {
            batch[i].fn.load(batch[i].sku, 0, NULL, batch[i].arg);
        } else if (ok_row[i]) {
            s->st.sku_loads_found++;
            batch[i].fn.load(batch[i].sku, 1, &rows_ok[i], batch[i].arg);
        } else {
            s->st.sku_loads_failed++;
            batch[i].fn.load(batch[i].sku, -1, NULL, batch[i].arg);
        }
    }
    if (res)
        mysql_free_result(res);
    if (res_orders)
        mysql_free_result(res_orders);
}

/* The running step's statement is done: the next one, or the answers. */
static void rd_next_step(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->step == RD_STEP_RETRY)
        rd->step = RD_STEP_ISOLATION;
    else if (!rd_step_single(rd->step))
        rd->step = s->takeover ? rd->step + 1 : RD_STEP_DONE;
    if (rd->step < RD_STEP_DONE) {
        rd_send_step(s);
        return;
    }
    assert(rd->step == RD_STEP_DONE || rd_step_single(rd->step));
    dbc_idle(&rd->db);
    rd_deliver(s);
    rd_start_query(s);
}

/* The statement's _start/_cont returned 0: act on where the reader is. */
static void rd_step(dbc *d)
{
    store *s = d->owner;
    store_reader *rd = &s->rd;
    char msg[300];
    switch (rd->phase) {
    case RD_QUERY:
        if (d->qret != 0) {
            unsigned e = mysql_errno(d->my);
            /* InnoDB rolled the takeover back (deadlock or lock wait
             * timeout) and the connection is fine: run it again, a few
             * times, before failing its loads. */
            if ((e == 1213 || e == 1205) && s->takeover && rd->step >= RD_STEP_BUMP &&
                rd->step < RD_STEP_DONE && ++rd->deadlocks <= 3) {
                s->st.sku_load_retries++;
                rd->step = RD_STEP_RETRY;
                rd_send_step(s);
                return;
            }
            snprintf(msg, sizeof msg, "load: MariaDB %u: %s", e, mysql_error(d->my));
            rd_down(s, msg);
            return;
        }
        if (rd->step != RD_STEP_SKUS && rd->step != RD_STEP_ORDERS && !rd_step_single(rd->step)) {
            rd_next_step(s);
            return;
        }
        rd->phase = RD_RESULT;
        int st = mysql_store_result_start(rd->step == RD_STEP_ORDERS ? &rd->res_orders : &rd->res, d->my);
        if (st) {
            dbc_wait(d, st);
            return;
        }
        /* fall through: stored at once */
        /* FALLTHROUGH */
    case RD_RESULT:
        if (!(rd->step == RD_STEP_ORDERS ? rd->res_orders : rd->res) && mysql_errno(d->my)) {
            snprintf(msg, sizeof msg, "load result: %s", mysql_error(d->my));
            rd_down(s, msg);
            return;
        }
        rd_next_step(s);
        return;
    }
}

static int rd_cont(dbc *d, int status)
{
    store_reader *rd = &((store *)d->owner)->rd;
    if (rd->phase == RD_QUERY)
        return mysql_real_query_cont(&d->qret, d->my, status);
    return mysql_store_result_cont(rd->step == RD_STEP_ORDERS ? &rd->res_orders : &rd->res,
                                   d->my, status);
}

static void rd_timeout(dbc *d)
{
    rd_down(d->owner, "load timeout");
}

static void rd_defer(dbc *d)
{
    store *s = d->owner;
    store_reader *rd = &s->rd;
    if (d->state == DBC_DOWN) {
        /* Nobody to ask: the waiting loads fail now, not after backoff. */
        size_t n = rd->q_len;
        for (size_t i = 0; i < n; i++) {
            load_req r;
            lq_pop(rd, &r);
            s->st.sku_loads_failed++;
            load_req_fail(&r);
        }
        return;
    }
    if (d->state == DBC_IDLE) {
        rd_start_query(s);
        return;
    }
    /* Busy: armed by a request queued while idle (from a callback of the
     * query that just ended), and a query started since. It is no result
     * to act on (that would read a query still on the wire: dbc steps only
     * a _start that finished at once); the running query starts the next
     * one when it ends. */
}

static const dbc_ops rd_ops = {
    .up = rd_on_up,
    .down = rd_on_down,
    .release = rd_release,
    .cont = rd_cont,
    .step = rd_step,
    .timeout = rd_timeout,
    .defer = rd_defer,
};

static int rd_init(store *s, char *err, size_t err_len)
{
    store_reader *rd = &s->rd;
    rd->q_cap = 1024;
    rd->q = malloc(rd->q_cap * sizeof *rd->q);
    if (!rd->q) {
        set_err(err, err_len, "reader: out of memory");
        return -1;
    }
    return dbc_init(&rd->db, s, &rd_ops, s, err, err_len);
}

static void rd_free(store *s)
{
    dbc_free(&s->rd.db);
    free(s->rd.q);
}

/* Queues r (its key and callback set). */
static int rd_enqueue(store *s, const load_req *req)
{
    store_reader *rd = &s->rd;
    size_t n = strnlen(req->sku, ENG_ID_MAX + 1);
    assert(n >= 1 && n <= ENG_ID_MAX);
    if (rd->q_len >= STORE_LOAD_QUEUE_MAX)
        return -1;
    if (rd->q_len == rd->q_cap) {
        size_t cap = rd->q_cap * 2;
        load_req *q = malloc(cap * sizeof *q);
        if (!q)
            return -1;
        for (size_t i = 0; i < rd->q_len; i++)
            q[i] = rd->q[(rd->q_head + i) % rd->q_cap];
        free(rd->q);
        rd->q = q;
        rd->q_cap = cap;
        rd->q_head = 0;
    }
    lq_push(rd, req);
    s->st.sku_loads++;
    /* Never inside this call: the defer starts the query (or fails the
     * request when the reader is down) after the current callback. */
    if (rd->db.state == DBC_IDLE || rd->db.state == DBC_DOWN)
        event_active(rd->db.defer, EV_TIMEOUT, 0);
    return 0;
}

void store_set_takeover(store *s, engine *e)
{
    s->eng = e;
    s->takeover = e;
}

/* A request for key (1..ENG_ID_MAX bytes, asserted by rd_enqueue). */
static load_req req_new(const char *key, load_kind kind, void *arg)
{
    load_req r;
    memset(&r, 0, sizeof r);
    snprintf(r.sku, sizeof r.sku, "%s", key);
    assert(strlen(key) == strlen(r.sku));
    r.kind = kind;
    r.arg = arg;
    return r;
}

int store_load_sku(store *s, const char *sku, store_load_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(sku, LK_SKU, arg);
    r.fn.load = fn;
    return rd_enqueue(s, &r);
}

int store_find_order_sku(store *s, const char *order_id, store_find_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(order_id, LK_FIND, arg);
    r.fn.find = fn;
    return rd_enqueue(s, &r);
}

int store_find_order_lines(store *s, const char *order_id, store_lines_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(order_id, LK_LINES, arg);
    r.fn.lines = fn;
    return rd_enqueue(s, &r);
}

int store_cart_decide(store *s, const char *order_id, store_decision want,
                      const store_abort_why *why, store_decide_fn fn, void *arg)
{
    assert(fn && (want == STORE_DECIDE_CONFIRM || want == STORE_DECIDE_ABORT));
    load_req r = req_new(order_id, LK_DECIDE, arg);
    r.fn.decide = fn;
    r.want = want;
    if (why != NULL && want == STORE_DECIDE_ABORT) {
        r.why = *why;
        assert(strlen(r.why.code) <= STORE_ABORT_CODE_MAX);
    } else {
        r.why.line = -1;
        r.why.available = -1;
    }
    return rd_enqueue(s, &r);
}

/* ---- support queries (the console) ---------------------------------------------- */

typedef enum sup_kind {
    SUP_ALERTS = 0,     /**< a SELECT of alert rows */
    SUP_ACK,            /**< UPDATE of one alert, then SUP_ACK_READ */
    SUP_ACK_READ,       /**< the acked alert's row as it stands */
    SUP_MOVES,          /**< a SELECT of a SKU's ledger moves */
} sup_kind;

#define SUP_SQL_MAX 1536   /* the longest: an ack, hex of by (128) and note (510) */
#define ALERT_COLS "a.id,a.kind,a.sku,a.order_id,a.reason,a.at,a.acked_at,a.acked_by,a.ack_note"

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

static void sup_fail(const sup_req *r)
{
    if (r->kind == SUP_MOVES)
        r->fn.moves(r->arg, -1, NULL);
    else
        r->fn.alerts(r->arg, -1, NULL);
}

static void sup_start(store *s);

static void sup_release(dbc *d)
{
    store_support *sp = ((store *)d->owner)->sup;
    if (sp->res) {
        mysql_free_result(sp->res);
        sp->res = NULL;
    }
}

/* Every waiting request fails: nobody can answer them now. */
static void sup_fail_queue(store_support *sp)
{
    while (sp->q_len > 0) {
        sup_req r = sp->q[sp->q_head];
        sp->q_head = (sp->q_head + 1) % STORE_SUPPORT_QUEUE_MAX;
        sp->q_len--;
        sup_fail(&r);
    }
}

static void sup_on_down(dbc *d, const char *why, dbc_state was)
{
    store_support *sp = ((store *)d->owner)->sup;
    if (was == DBC_IDLE || was == DBC_BUSY)
        LOG_W("store: support connection down", "why", why);
    if (sp->running) {
        sp->running = false;
        sup_fail(&sp->cur);
    }
    if (sp->q_len)
        event_active(d->defer, EV_TIMEOUT, 0);
}

static void sup_on_up(dbc *d)
{
    sup_start(d->owner);
}

static bool parse_alert_full(MYSQL_ROW row, const unsigned long *len, store_alert *a)
{
    if (!parse_alert_row(row, len, a))
        return false;
    if (row[6] && !col_i64(row, 6, &a->acked_at))
        return false;
    col_cut(row, len, 7, a->acked_by, sizeof a->acked_by);
    col_cut(row, len, 8, a->ack_note, sizeof a->ack_note);
    return true;
}

/* Hands the stored result to the request's callback. */
static void sup_deliver(store_support *sp, const sup_req *r)
{
    MYSQL_RES *res = sp->res;
    sp->res = NULL;
    size_t n = res ? (size_t)mysql_num_rows(res) : 0;
    if (n > STORE_SUPPORT_ROWS_MAX)
        n = STORE_SUPPORT_ROWS_MAX;
    if (r->kind == SUP_MOVES) {
        store_sku_move *m = calloc(n ? n : 1, sizeof *m);
        int k = 0;
        MYSQL_ROW row;
        while (m && (size_t)k < n && (row = mysql_fetch_row(res))) {
            const unsigned long *len = mysql_fetch_lengths(res);
            store_sku_move *x = &m[k];
            if (!col_str(row, len, 0, x->order_id, sizeof x->order_id, false) ||
                !col_i64(row, 2, &x->at_ms))
                continue;  /* history that does not parse: left out */
            col_cut(row, len, 1, x->move, sizeof x->move);
            col_cut(row, len, 3, x->status, sizeof x->status);
            if (row[3]) {
                (void)col_i64(row, 4, &x->qty);
                (void)col_i64(row, 5, &x->from_own);
                (void)col_i64(row, 6, &x->from_supplier);
                col_cut(row, len, 7, x->reason, sizeof x->reason);
            }
            k++;
        }
        r->fn.moves(r->arg, m ? k : -1, m);
        free(m);
    } else {
        store_alert *a = calloc(n ? n : 1, sizeof *a);
        int k = 0;
        MYSQL_ROW row;
        while (a && (size_t)k < n && (row = mysql_fetch_row(res)))
            if (parse_alert_full(row, mysql_fetch_lengths(res), &a[k]))
                k++;
        int result = a ? k : -1;
        if (r->kind == SUP_ACK_READ && result >= 0)
            result = k == 0 ? 0 : r->acked_now ? 1 : 2;
        r->fn.alerts(r->arg, result, a);
        free(a);
    }
    if (res)
        mysql_free_result(res);
}

/* The running statement is done (its result stored, if it has one). */
static void sup_done(store *s)
{
    store_support *sp = s->sup;
    dbc_idle(&sp->db);
    sup_req r = sp->cur;
    sp->running = false;
    if (r.kind == SUP_ACK) {
        /* Then read the row as it stands: the first acknowledgement wins. */
        sup_req rd = r;
        rd.kind = SUP_ACK_READ;
        rd.acked_now = mysql_affected_rows(sp->db.my) == 1;
        snprintf(rd.sql, sizeof rd.sql, "SELECT " ALERT_COLS " FROM alerts a WHERE a.id = %" PRId64,
                 r.id);
        sp->cur = rd;
        sp->running = true;
        sp->phase = SUP_QUERY;
        sb_reset(&sp->db.sql);
        sb_str(&sp->db.sql, rd.sql);
        dbc_query_start(&sp->db, s->commit_timeout_ms);
        return;
    }
    sup_deliver(sp, &r);
    sup_start(s);
}

static void sup_step(dbc *d)
{
    store *s = d->owner;
    store_support *sp = s->sup;
    char msg[300];
    if (sp->phase == SUP_QUERY) {
        if (d->qret != 0) {
            unsigned e = mysql_errno(d->my);
            snprintf(msg, sizeof msg, "support query: MariaDB %u: %s", e, mysql_error(d->my));
            if (e >= 2000) {  /* a client error: the connection is gone */
                dbc_down(d, msg);
                return;
            }
            /* The server refused the statement (e.g. max_statement_time):
             * the connection is fine, the request fails. */
            LOG_W("store: support query failed", "why", msg);
            dbc_idle(d);
            sp->running = false;
            sup_fail(&sp->cur);
            sup_start(s);
            return;
        }
        if (sp->cur.kind == SUP_ACK) {
            sup_done(s);
            return;
        }
        sp->phase = SUP_RESULT;
        int st = mysql_store_result_start(&sp->res, d->my);
        if (st) {
            dbc_wait(d, st);
            return;
        }
    }
    if (!sp->res && mysql_errno(d->my)) {
        snprintf(msg, sizeof msg, "support result: %s", mysql_error(d->my));
        dbc_down(d, msg);
        return;
    }
    sup_done(s);
}

static int sup_cont(dbc *d, int status)
{
    store_support *sp = ((store *)d->owner)->sup;
    if (sp->phase == SUP_QUERY)
        return mysql_real_query_cont(&d->qret, d->my, status);
    return mysql_store_result_cont(&sp->res, d->my, status);
}

static void sup_timeout(dbc *d)
{
    dbc_down(d, "support query timeout");
}

static void sup_defer(dbc *d)
{
    store *s = d->owner;
    if (d->state == DBC_DOWN) {
        /* Nobody to ask: the waiting requests fail now, not after backoff;
         * the reconnect is armed. */
        sup_fail_queue(s->sup);
        return;
    }
    if (d->state == DBC_IDLE)
        sup_start(s);
}

static const dbc_ops sup_ops = {
    .up = sup_on_up,
    .down = sup_on_down,
    .release = sup_release,
    .cont = sup_cont,
    .step = sup_step,
    .timeout = sup_timeout,
    .defer = sup_defer,
};

/* Starts the next waiting request when the connection is idle. */
static void sup_start(store *s)
{
    store_support *sp = s->sup;
    if (sp->running || sp->q_len == 0 || sp->db.state != DBC_IDLE)
        return;
    sp->cur = sp->q[sp->q_head];
    sp->q_head = (sp->q_head + 1) % STORE_SUPPORT_QUEUE_MAX;
    sp->q_len--;
    sp->running = true;
    sp->phase = SUP_QUERY;
    sb_reset(&sp->db.sql);
    sb_str(&sp->db.sql, sp->cur.sql);
    if (sp->db.sql.err) {
        sp->running = false;
        sup_fail(&sp->cur);
        event_active(sp->db.defer, EV_TIMEOUT, 0);
        return;
    }
    dbc_query_start(&sp->db, s->commit_timeout_ms);
}

/* The connection is made at the first request, in the background (the
 * timer of a DOWN dbc connects). */
static store_support *sup_get(store *s)
{
    if (s->sup)
        return s->sup;
    store_support *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    dbc *d = &sp->db;
    d->s = s;
    d->ops = &sup_ops;
    d->owner = s;
    d->io = event_new(s->base, -1, 0, dbc_io_cb, d);
    d->timer = evtimer_new(s->base, dbc_timer_cb, d);
    d->defer = evtimer_new(s->base, dbc_defer_cb, d);
    if (!d->io || !d->timer || !d->defer) {
        dbc_free(d);
        free(sp);
        return NULL;
    }
    d->state = DBC_DOWN;
    struct timeval now = {0, 0};
    evtimer_add(d->timer, &now);
    s->sup = sp;
    return sp;
}

static void sup_free(store *s)
{
    if (!s->sup)
        return;
    dbc_free(&s->sup->db);
    free(s->sup);
    s->sup = NULL;
}

static int sup_enqueue(store *s, const sup_req *r)
{
    store_support *sp = sup_get(s);
    if (!sp || sp->q_len >= STORE_SUPPORT_QUEUE_MAX)
        return -1;
    sp->q[(sp->q_head + sp->q_len) % STORE_SUPPORT_QUEUE_MAX] = *r;
    sp->q_len++;
    /* Never inside this call: the defer starts it. While the connection is
     * down or connecting, its coming up starts it, or its failing fails it
     * (sup_on_down): a wait bounded by the backoff and connect timeout. */
    if (sp->db.state == DBC_IDLE)
        event_active(sp->db.defer, EV_TIMEOUT, 0);
    return 0;
}

/* SQL text into r->sql; false when it does not fit (never expected). */
static bool sup_sql(sup_req *r, const sbuf *b)
{
    if (b->err || b->len >= sizeof r->sql)
        return false;
    memcpy(r->sql, b->p, b->len);
    r->sql[b->len] = '\0';
    return true;
}

static int sup_limit(uint32_t limit)
{
    return limit < 1 ? 1 : limit > STORE_SUPPORT_ROWS_MAX ? STORE_SUPPORT_ROWS_MAX : (int)limit;
}

int store_alerts_open(store *s, uint32_t limit, store_alerts_fn fn, void *arg)
{
    assert(fn);
    sup_req r = {.kind = SUP_ALERTS, .fn.alerts = fn, .arg = arg};
    snprintf(r.sql, sizeof r.sql,
             "SET STATEMENT max_statement_time=%d FOR SELECT " ALERT_COLS
             " FROM alerts a WHERE a.acked_at IS NULL ORDER BY a.id DESC LIMIT %d",
             STORE_SUPPORT_STMT_S, sup_limit(limit));
    return sup_enqueue(s, &r);
}

int store_alerts_of_supplier(store *s, const char *supplier_id, uint32_t limit,
                             store_alerts_fn fn, void *arg)
{
    assert(fn);
    size_t n = strnlen(supplier_id, ENG_ID_MAX + 1);
    if (n < 1 || n > ENG_ID_MAX)
        return -1;
    sup_req r = {.kind = SUP_ALERTS, .fn.alerts = fn, .arg = arg};
    sbuf b = {0};
    char head[160];
    snprintf(head, sizeof head, "SET STATEMENT max_statement_time=%d FOR SELECT ",
             STORE_SUPPORT_STMT_S);
    sb_str(&b, head);
    sb_str(&b, ALERT_COLS " FROM alerts a JOIN sku k ON k.sku = a.sku WHERE k.supplier_id = ");
    sb_hex_str(&b, supplier_id);
    sb_str(&b, " ORDER BY a.id DESC LIMIT ");
    sb_i64(&b, sup_limit(limit));
    bool ok = sup_sql(&r, &b);
    sb_free(&b);
    return ok ? sup_enqueue(s, &r) : -1;
}

int store_alert_ack(store *s, int64_t id, const char *by, const char *note, int64_t at_ms,
                    store_alerts_fn fn, void *arg)
{
    assert(fn && by && note);
    size_t nb = strnlen(by, ENG_ID_MAX + 1), nn = strnlen(note, STORE_ACK_NOTE_MAX + 1);
    if (id < 1 || nb < 1 || nb > ENG_ID_MAX || nn > STORE_ACK_NOTE_MAX)
        return -1;
    sup_req r = {.kind = SUP_ACK, .id = id, .fn.alerts = fn, .arg = arg};
    sbuf b = {0};
    sb_str(&b, "UPDATE alerts SET acked_at = ");
    sb_i64(&b, at_ms);
    sb_str(&b, ", acked_by = ");
    sb_hex_str(&b, by);
    sb_str(&b, ", ack_note = ");
    sb_hex_or_null(&b, nn ? note : NULL);
    sb_str(&b, " WHERE id = ");
    sb_i64(&b, id);
    sb_str(&b, " AND acked_at IS NULL");
    bool ok = sup_sql(&r, &b);
    sb_free(&b);
    return ok ? sup_enqueue(s, &r) : -1;
}

int store_sku_moves(store *s, const char *sku, uint32_t limit, store_moves_fn fn, void *arg)
{
    assert(fn);
    size_t n = strnlen(sku, ENG_ID_MAX + 1);
    if (n < 1 || n > ENG_ID_MAX)
        return -1;
    sup_req r = {.kind = SUP_MOVES, .fn.moves = fn, .arg = arg};
    sbuf b = {0};
    char head[160];
    snprintf(head, sizeof head, "SET STATEMENT max_statement_time=%d FOR SELECT ",
             STORE_SUPPORT_STMT_S);
    sb_str(&b, head);
    /* The ledger's sku index ends in its id: the newest moves of one SKU
     * are read backwards from the index, without sorting its history. */
    sb_str(&b, "l.order_id,l.move,l.at,o.status,o.qty,o.from_own,o.from_supplier,o.reason"
               " FROM ledger l LEFT JOIN orders o ON o.order_id = l.order_id AND o.sku = l.sku"
               " WHERE l.sku = ");
    sb_hex_str(&b, sku);
    sb_str(&b, " AND l.order_id IS NOT NULL ORDER BY l.id DESC LIMIT ");
    sb_i64(&b, sup_limit(limit));
    bool ok = sup_sql(&r, &b);
    sb_free(&b);
    return ok ? sup_enqueue(s, &r) : -1;
}
