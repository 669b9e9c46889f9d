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

#define STORE_CONNS_MAX 16
#define STORE_SCHEMA_VERSION 3
/* The statement of one batch; the stack's max_allowed_packet is 64 MiB and
 * MariaDB's default is 16 MiB, so stay under the smaller. */
#define STORE_SQL_MAX_BYTES (15u << 20)
/* A connection's SQL buffer is kept for reuse up to this size, else freed
 * after the statement, so one huge batch does not pin memory forever. */
#define STORE_SQL_KEEP_BYTES (1u << 20)
#define STORE_BACKOFF_MIN_MS 50u
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

typedef enum conn_state {
    CONN_DOWN = 0,      /**< no handle; timer = reconnect backoff */
    CONN_CONNECTING,    /**< real_connect running; timer = connect timeout */
    CONN_IDLE,          /**< up, no statement; io watches for a server close */
    CONN_COMMIT,        /**< a batch statement running; timer = commit timeout */
    CONN_RESOLVE,       /**< a tombstone insert running; timer = commit timeout */
    CONN_STATE_MAX_
} conn_state;

typedef enum conn_phase {
    PHASE_QUERY = 0,    /**< real_query_start/_cont */
    PHASE_NEXT_RESULT,  /**< next_result_start/_cont: draining trailing results */
} conn_phase;

typedef struct store_conn {
    store *s;
    unsigned idx;
    conn_state state;
    conn_phase phase;
    MYSQL *my;              /* NULL in CONN_DOWN */
    MYSQL *connect_ret;
    int qret;               /* result of real_query / next_result */
    struct event *io;
    struct event *timer;
    struct event *defer;    /* completes work that finished inside a _start */
    eng_batch *batch;       /* COMMIT / RESOLVE */
    uint64_t batch_id;
    int64_t started_us;
    uint32_t backoff_ms;    /* 0: healthy, next failure reconnects at once */
    bool ever_up;
    const char *build_err;  /* SQL could not be built: abort the batch */
    sbuf sql;
} store_conn;

/* The reader connection for single-SKU loads (see store.h). */
typedef enum reader_state {
    RD_DOWN = 0,        /**< no handle; timer = reconnect backoff */
    RD_CONNECTING,      /**< real_connect running; timer = connect timeout */
    RD_IDLE,            /**< up; io watches for a server close */
    RD_QUERY,           /**< SELECT running; timer = commit timeout */
    RD_RESULT,          /**< store_result running; timer still armed */
} reader_state;

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
        r->fn.decide(r->sku, -1, r->arg);
        return;
    }
    assert(!"bad load kind");
}

typedef struct store_reader {
    reader_state state;
    MYSQL *my;
    MYSQL *connect_ret;
    int qret;
    MYSQL_RES *res;
    struct event *io;
    struct event *timer;
    struct event *defer;    /* completes work finished inside a _start; fails queued loads */
    uint32_t backoff_ms;
    sbuf sql;
    load_req *q;            /* ring of waiting requests */
    size_t q_head, q_len, q_cap;
    load_req batch[STORE_LOAD_BATCH_MAX];  /* the ones in the running query */
    size_t n_batch;
    int step;               /* RD_STEP_*: where a load is in its statements */
    int deadlocks;          /* takeover attempts of this batch lost to InnoDB deadlocks */
    bool step_due;          /* defer: a _start finished at once, rd_step() its result */
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
    engine *takeover;       /* non-NULL: loads are takeovers into this engine */
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

typedef struct schema_step {
    int version;
    const char *const *sql;
    size_t n;
} schema_step;

static const schema_step schema_steps[] = {
    {1, schema_v1, sizeof schema_v1 / sizeof schema_v1[0]},
    {2, schema_v2, sizeof schema_v2 / sizeof schema_v2[0]},
    {3, schema_v3, sizeof schema_v3 / sizeof schema_v3[0]},
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
            if (rows[i].insert != want_insert)
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

/* ---- connection state machine ---------------------------------------------- */

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_defer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_start_resolve(store_conn *c);
static void conn_query_step(store_conn *c);
static void store_kick(store *s);

static bool conn_is_up(const store_conn *c)
{
    return c->state == CONN_IDLE || c->state == CONN_COMMIT || c->state == CONN_RESOLVE;
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

/* Arms the io event for one Connector/C wait mask. */
static void conn_wait(store_conn *c, int status)
{
    short what = 0;
    struct timeval tv, *tvp = NULL;
    if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
        what |= EV_READ;
    if (status & MYSQL_WAIT_WRITE)
        what |= EV_WRITE;
    if (status & MYSQL_WAIT_TIMEOUT) {
        tv = tv_ms(mysql_get_timeout_value_ms(c->my));
        tvp = &tv;
    }
    event_del(c->io);
    event_assign(c->io, c->s->base, mysql_get_socket(c->my), what, conn_io_cb, c);
    event_add(c->io, tvp);
}

/* While idle, a readable socket means the server closed or will close it. */
static void conn_watch_idle(store_conn *c)
{
    event_del(c->io);
    event_assign(c->io, c->s->base, mysql_get_socket(c->my), EV_READ, conn_io_cb, c);
    event_add(c->io, NULL);
}

static void conn_close(store_conn *c)
{
    event_del(c->io);
    event_del(c->timer);
    event_del(c->defer);
    if (c->my) {
        /* Allowed in the middle of a nonblocking call: the only way to
         * abandon a query. */
        mysql_close(c->my);
        c->my = NULL;
    }
    c->state = CONN_DOWN;
    if (c->sql.cap > STORE_SQL_KEEP_BYTES)
        sb_free(&c->sql);
}

/* Closes and schedules a reconnect: at once after the first failure of a
 * healthy connection, then with exponential backoff and jitter. */
static void conn_down(store_conn *c, const char *why)
{
    store *s = c->s;
    bool was_up = conn_is_up(c);
    conn_close(c);
    uint32_t delay = 0;
    if (c->backoff_ms) {
        uint32_t half = c->backoff_ms / 2;
        delay = half + (uint32_t)(store_rand(s) % (half + 1));
    }
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : STORE_BACKOFF_MIN_MS;
    if (c->backoff_ms > s->backoff_max_ms)
        c->backoff_ms = s->backoff_max_ms;
    struct timeval tv = tv_ms(delay);
    evtimer_add(c->timer, &tv);
    if (was_up) {
        char idx[12];
        snprintf(idx, sizeof idx, "%u", c->idx);
        LOG_W("store: connection down", "conn", idx, "why", why);
    }
}

static void conn_connect_start(store_conn *c)
{
    store *s = c->s;
    assert(c->state == CONN_DOWN && !c->my);
    c->my = db_handle_new(s, true, 0);
    if (!c->my) {
        conn_down(c, "mysql_init failed");
        return;
    }
    c->state = CONN_CONNECTING;
    struct timeval tv = tv_ms(s->connect_timeout_ms);
    evtimer_add(c->timer, &tv);
    int st = mysql_real_connect_start(&c->connect_ret, c->my, db_host(&s->db), s->db.user,
                                      s->db.password, s->db.database, (unsigned)s->db.port,
                                      s->db.socket[0] ? s->db.socket : NULL, 0);
    if (st) {
        conn_wait(c, st);
        return;
    }
    /* Finished at once (refused): we are in a timer callback, not in an API
     * call, so completing here is fine. */
    conn_query_step(c);
}

static void conn_connected(store_conn *c)
{
    store *s = c->s;
    if (!c->connect_ret) {
        char msg[256];
        snprintf(msg, sizeof msg, "connect: %s", mysql_error(c->my));
        LOG_D("store: connect failed", "err", msg);
        c->state = CONN_DOWN; /* never up: no "down" log for every retry */
        conn_down(c, msg);
        return;
    }
    event_del(c->timer);
    c->state = CONN_IDLE;
    c->backoff_ms = 0;
    if (c->ever_up) {
        s->st.reconnects++;
        LOG_I("store: reconnected");
    }
    c->ever_up = true;
    conn_watch_idle(c);
    if (s->rq_len) {
        conn_start_resolve(c);
        store_notify(s, false);
        return;
    }
    store_notify(s, true);
}

/* Starts the statement in c->sql; completion arrives through io or defer. */
static void conn_start_query(store_conn *c)
{
    store *s = c->s;
    event_del(c->io);
    c->phase = PHASE_QUERY;
    c->started_us = mono_us();
    struct timeval tv = tv_ms(s->commit_timeout_ms);
    evtimer_add(c->timer, &tv);
    if (c->build_err) {
        event_active(c->defer, EV_TIMEOUT, 0);
        return;
    }
    int st = mysql_real_query_start(&c->qret, c->my, c->sql.p, c->sql.len);
    if (st)
        conn_wait(c, st);
    else
        event_active(c->defer, EV_TIMEOUT, 0);
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
    assert(c->state == CONN_IDLE && s->rq_len > 0);
    c->batch = rq_pop(s);
    c->batch_id = store_batch_id(s, c->batch);
    c->state = CONN_RESOLVE;
    c->build_err = NULL;
    sb_reset(&c->sql);
    sql_batch_log(&c->sql, s, c->batch_id, "aborted");
    /* An earlier attempt of this resolve may have written the tombstone
     * and lost its reply: a duplicate alone does not mean "committed".
     * The update changes an 'aborted' row and leaves a 'committed' one as
     * it is, so affected rows say which: 1 inserted now, 2 an earlier
     * tombstone (both aborted), 0 the batch's own row (committed). */
    sb_str(&c->sql, " ON DUPLICATE KEY UPDATE at=IF(state='committed',at,at+1)");
    c->build_err = c->sql.err;
    conn_start_query(c);
}

/* Starts queued resolves on idle connections. */
static void store_kick(store *s)
{
    for (uint32_t i = 0; i < s->n_conns && s->rq_len; i++)
        if (s->conns[i].state == CONN_IDLE)
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
    assert(c->state == CONN_COMMIT && b);
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, c->batch_id);
    c->batch = NULL;
    event_del(c->timer);
    conn_note_latency(c);
    if (outcome == ENG_COMMITTED)
        s->st.commits_ok++;
    else if (outcome == ENG_ABORTED)
        s->st.commits_aborted++;
    else
        s->st.commits_unknown++;
    if (keep) {
        c->state = CONN_IDLE;
        conn_watch_idle(c);
        if (c->sql.cap > STORE_SQL_KEEP_BYTES)
            sb_free(&c->sql);
        if (s->rq_len)
            conn_start_resolve(c);
    } else {
        conn_down(c, err ? err : "commit failed");
    }
    bool idle = c->state == CONN_IDLE;
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
    assert(c->state == CONN_RESOLVE && b);
    c->batch = NULL;
    event_del(c->timer);
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
    c->state = CONN_IDLE;
    conn_watch_idle(c);
    if (s->rq_len)
        conn_start_resolve(c);
    bool idle = c->state == CONN_IDLE;
    LOG_I("store: batch resolved", "batch", id, "committed", result ? "true" : "false");
    s->cb.on_resolve(b, result == 1, s->cb.arg);
    store_notify(s, idle);
}

/* The statement ended with an error. */
static void conn_query_failed(store_conn *c)
{
    unsigned e = mysql_errno(c->my);
    char msg[300];
    snprintf(msg, sizeof msg, "MariaDB %u: %s", e, mysql_error(c->my));
    if (c->state == CONN_RESOLVE) {
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
    if (c->state == CONN_RESOLVE) {
        my_ulonglong n = mysql_affected_rows(c->my);
        if (n == 0)
            conn_finish_resolve(c, 1, NULL);
        else if (n == 1 || n == 2)
            conn_finish_resolve(c, 0, NULL);
        else
            conn_finish_resolve(c, -1, "resolve: unexpected affected rows");
    } else
        conn_finish_commit(c, ENG_COMMITTED, NULL, true);
}

/* A _start/_cont of the current state returned 0: act on its result. */
static void conn_query_step(store_conn *c)
{
    for (;;) {
        if (c->state == CONN_CONNECTING) {
            conn_connected(c);
            return;
        }
        assert(c->state == CONN_COMMIT || c->state == CONN_RESOLVE);
        if (c->build_err) {
            if (c->state == CONN_RESOLVE) {
                conn_finish_resolve(c, -1, c->build_err);
                return;
            }
            /* The connection never sent anything: keep it. */
            conn_finish_commit(c, ENG_ABORTED, c->build_err, true);
            return;
        }
        /* next_result: 0 = another result read, -1 = no more, >0 = error. */
        if (c->phase == PHASE_QUERY ? c->qret != 0 : c->qret > 0) {
            conn_query_failed(c);
            return;
        }
        if (c->phase == PHASE_NEXT_RESULT && c->qret == -1) {
            conn_query_ok(c);
            return;
        }
        if (mysql_field_count(c->my) > 0) {
            /* Our statements return no rows: the stream is not what we
             * think it is; do not trust this connection. */
            if (c->state == CONN_RESOLVE)
                conn_finish_resolve(c, -1, "unexpected result set");
            else
                conn_finish_commit(c, ENG_UNKNOWN, "unexpected result set", false);
            return;
        }
        if (!mysql_more_results(c->my)) {
            conn_query_ok(c);
            return;
        }
        c->phase = PHASE_NEXT_RESULT;
        int st = mysql_next_result_start(&c->qret, c->my);
        if (st) {
            conn_wait(c, st);
            return;
        }
    }
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    store_conn *c = arg;
    int st = 0;
    if (what & EV_READ)
        st |= MYSQL_WAIT_READ;
    if (what & EV_WRITE)
        st |= MYSQL_WAIT_WRITE;
    if (what & EV_TIMEOUT)
        st |= MYSQL_WAIT_TIMEOUT;
    switch (c->state) {
    case CONN_CONNECTING:
        st = mysql_real_connect_cont(&c->connect_ret, c->my, st);
        break;
    case CONN_COMMIT:
    case CONN_RESOLVE:
        if (c->phase == PHASE_QUERY)
            st = mysql_real_query_cont(&c->qret, c->my, st);
        else
            st = mysql_next_result_cont(&c->qret, c->my, st);
        break;
    case CONN_IDLE:
        conn_down(c, "server closed the connection");
        store_notify(c->s, false);
        return;
    default:
        assert(!"io event in a state without io");
        return;
    }
    if (st) {
        conn_wait(c, st);
        return;
    }
    conn_query_step(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store_conn *c = arg;
    char msg[64];
    switch (c->state) {
    case CONN_DOWN:
        conn_connect_start(c);
        return;
    case CONN_CONNECTING:
        snprintf(msg, sizeof msg, "connect timeout after %" PRIu32 " ms",
                 c->s->connect_timeout_ms);
        c->state = CONN_DOWN;
        conn_down(c, msg);
        return;
    case CONN_COMMIT:
        snprintf(msg, sizeof msg, "commit timeout after %" PRIu32 " ms",
                 c->s->commit_timeout_ms);
        conn_finish_commit(c, ENG_UNKNOWN, msg, false);
        return;
    case CONN_RESOLVE:
        snprintf(msg, sizeof msg, "resolve timeout after %" PRIu32 " ms",
                 c->s->commit_timeout_ms);
        conn_finish_resolve(c, -1, msg);
        return;
    default:
        assert(!"timer in a state without a timer");
    }
}

static void conn_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_query_step(arg);
}

static int rd_init(store *s, char *err, size_t err_len);
static void rd_free(store *s);

/* ---- public API -------------------------------------------------------------- */

static int store_conns_init(store *s, char *err, size_t err_len)
{
    for (uint32_t i = 0; i < s->n_conns; i++) {
        store_conn *c = &s->conns[i];
        c->s = s;
        c->idx = i;
        c->io = event_new(s->base, -1, 0, conn_io_cb, c);
        c->timer = evtimer_new(s->base, conn_timer_cb, c);
        c->defer = evtimer_new(s->base, conn_defer_cb, c);
        if (!c->io || !c->timer || !c->defer) {
            set_err(err, err_len, "event_new: out of memory");
            return -1;
        }
        /* Blocking at startup; the same handle then runs nonblocking. */
        c->my = db_connect_blocking(s, true, s->db.database, err, err_len);
        if (!c->my)
            return -1;
        c->state = CONN_IDLE;
        c->ever_up = true;
        conn_watch_idle(c);
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
    for (uint32_t i = 0; i < STORE_CONNS_MAX; i++) {
        store_conn *c = &s->conns[i];
        if (c->io)
            conn_close(c);
        if (c->io)
            event_free(c->io);
        if (c->timer)
            event_free(c->timer);
        if (c->defer)
            event_free(c->defer);
        sb_free(&c->sql);
    }
    rd_free(s);
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
        idle += s->conns[i].state == CONN_IDLE;
    return idle > s->rq_len;
}

int store_commit(store *s, eng_batch *b)
{
    assert(b && !eng_batch_is_empty(b));
    store_kick(s);
    store_conn *c = NULL;
    for (uint32_t i = 0; i < s->n_conns && !c; i++)
        if (s->conns[i].state == CONN_IDLE)
            c = &s->conns[i];
    if (!c)
        return -1;
    c->batch = b;
    c->batch_id = store_batch_id(s, b);
    c->state = CONN_COMMIT;
    sql_build_commit(&c->sql, s, b, c->batch_id);
    c->build_err = c->sql.err;
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
        out->conns_busy += c->state == CONN_COMMIT || c->state == CONN_RESOLVE;
    }
}

/* ---- loading ---------------------------------------------------------------- */

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

/* The columns of SKU_SELECT into r; false on a bad row. */
static bool parse_sku_row(MYSQL_ROW row, const unsigned long *len, store_sku_row *r)
{
    char mapping_s[32];
    memset(r, 0, sizeof *r);
    return col_str(row, len, 0, r->sku, sizeof r->sku, false) && r->sku[0] &&
           col_i64(row, 1, &r->c.own_on_hand) && col_i64(row, 2, &r->c.own_reserved) &&
           col_i64(row, 3, &r->c.supplier_reported) && col_i64(row, 4, &r->c.supplier_sellable) &&
           col_i64(row, 5, &r->c.supplier_reserved) &&
           col_i64(row, 6, &r->c.supplier_synced_at_ms) &&
           col_str(row, len, 7, mapping_s, sizeof mapping_s, false) &&
           eng_mapping_parse(mapping_s, &r->mapping) &&
           col_str(row, len, 8, r->map.supplier_id, sizeof r->map.supplier_id, true) &&
           col_i64(row, 9, &r->map.offer_id) &&
           col_str(row, len, 10, r->map.spec_id, sizeof r->map.spec_id, true) &&
           col_i64(row, 11, &r->map.sku_id) && col_i64(row, 12, &r->epoch) &&
           col_cap(row, 13, &r->map.cap) && col_u64(row, 14, &r->map.fingerprint);
}

/* The map engine_load_sku() takes: OK and BROKEN mappings carry one. */
const eng_supplier_map *store_sku_row_map(const store_sku_row *r)
{
    return r->mapping == ENG_MAP_OK || r->mapping == ENG_MAP_BROKEN ? &r->map : NULL;
}

static bool load_sku_row(engine *e, MYSQL_ROW row, const unsigned long *len)
{
    store_sku_row r;
    if (!parse_sku_row(row, len, &r))
        return false;
    return engine_load_sku(e, r.sku, &r.c, r.mapping, store_sku_row_map(&r), r.epoch);
}

#define ORDER_SELECT "SELECT order_id,sku,qty,status,from_own,from_supplier,available," \
                     "created_at,updated_at,hold_expires_at,upstream_order_id,reason," \
                     "purchased_at,supplier_settled,line_no,n_lines FROM orders"
/* Lines reach engine_load_order() in this order: line 0 of an order first,
 * which the engine needs to attach the others to it. */
#define ORDER_SORT " ORDER BY order_id,line_no"

/* The columns of ORDER_SELECT into o; false on a bad row. */
static bool parse_order_row(MYSQL_ROW row, const unsigned long *len, eng_order_view *o)
{
    char status_s[32];
    int64_t qty, from_own, from_supplier, settled, line_no, n_lines;
    memset(o, 0, sizeof *o);
    if (!col_str(row, len, 0, o->order_id, sizeof o->order_id, false) || !o->order_id[0] ||
        !col_str(row, len, 1, o->sku, sizeof o->sku, false) || !col_i64(row, 2, &qty) ||
        !col_str(row, len, 3, status_s, sizeof status_s, false) ||
        !eng_status_parse(status_s, &o->status) || !col_i64(row, 4, &from_own) ||
        !col_i64(row, 5, &from_supplier) || !col_i64(row, 6, &o->available) ||
        !col_i64(row, 7, &o->created_at_ms) || !col_i64(row, 8, &o->updated_at_ms) ||
        !col_i64(row, 9, &o->hold_expires_at_ms) ||
        !col_str(row, len, 10, o->upstream_order_id, sizeof o->upstream_order_id, true) ||
        !col_str(row, len, 11, o->reason, sizeof o->reason, true) ||
        !col_i64(row, 12, &o->purchased_at_ms) || !col_i64(row, 13, &settled) ||
        !row[14] || !col_i64(row, 14, &line_no) || !row[15] || !col_i64(row, 15, &n_lines))
        return false;
    if (n_lines < 1 || n_lines > ENG_LINES_MAX || line_no < 0 || line_no >= n_lines)
        return false;
    o->line_no = (int32_t)line_no;
    o->n_lines = (int32_t)n_lines;
    if (o->purchased_at_ms < 0 || settled < 0 || settled > 1)
        return false;
    o->supplier_settled = settled == 1;
    if (qty < 1 || qty > ENG_QTY_MAX || from_own < 0 || from_supplier < 0 ||
        from_own + from_supplier != qty)
        return false;
    o->qty = (int32_t)qty;
    o->from_own = (int32_t)from_own;
    o->from_supplier = (int32_t)from_supplier;
    return true;
}

static bool load_order_row(engine *e, MYSQL_ROW row, const unsigned long *len)
{
    eng_order_view o;
    return parse_order_row(row, len, &o) && engine_load_order(e, &o);
}

typedef bool (*load_row_fn)(engine *e, MYSQL_ROW row, const unsigned long *len);

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
        unsigned long *len = mysql_fetch_lengths(r);
        if (!fn(e, row, len)) {
            char key[2 * ENG_ID_MAX + 1] = "";
            unsigned long n = row[0] ? (len[0] > ENG_ID_MAX ? ENG_ID_MAX : len[0]) : 0;
            for (unsigned long i = 0; i < n; i++)
                snprintf(key + 2 * i, 3, "%02x", (unsigned char)row[0][i]);
            set_err(err, err_len, "load %s: bad row (key hex %s) or out of memory", what, key);
            rc = -1;
            continue;
        }
        (*count)++;
    }
    if (rc == 0 && mysql_errno(my)) {
        set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        rc = -1;
    }
    mysql_free_result(r);
    return rc;
}

#define SKU_SELECT "SELECT sku,own_on_hand,own_reserved,supplier_reported," \
                   "supplier_sellable,supplier_reserved,supplier_synced_at,mapping," \
                   "supplier_id,offer_id,spec_id,sku_id,epoch,supplier_cap,fingerprint FROM sku"

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

/* A supplier's trust settings; the engine judges the values. */
static bool load_supplier_row(engine *e, MYSQL_ROW row, const unsigned long *len)
{
    char id[ENG_ID_MAX + 1];
    eng_trust t = {0};
    int64_t mode;
    if (!col_str(row, len, 0, id, sizeof id, false) || !id[0] ||
        !col_double(row, 1, &t.trust) || !col_double(row, 2, &t.ceiling) ||
        !row[3] || !col_i64(row, 3, &mode) || mode < 0 || mode > 1 ||
        !col_double(row, 4, &t.event_trust))
        return false;
    t.event_mode = mode == 1;
    return engine_load_supplier(e, id, &t);
}

int store_load_all(store *s, engine *e, char *err, size_t err_len)
{
    return store_load_state(s, e, true, err, err_len);
}

int store_load_state(store *s, engine *e, bool preload_skus, char *err, size_t err_len)
{
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
    if (rc == 0)
        rc = load_table(my, e, "orders", ORDER_SELECT ORDER_SORT, load_order_row, &orders, err,
                        err_len);
    mysql_close(my);
    if (rc == 0) {
        char a[24], b[24], c[24];
        snprintf(a, sizeof a, "%" PRIu64, skus);
        snprintf(b, sizeof b, "%" PRIu64, orders);
        snprintf(c, sizeof c, "%" PRIu64, suppliers);
        LOG_I("store: loaded", "skus", a, "orders", b, "suppliers", c);
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

static void rd_io_cb(evutil_socket_t fd, short what, void *arg);
static void rd_timer_cb(evutil_socket_t fd, short what, void *arg);
static void rd_defer_cb(evutil_socket_t fd, short what, void *arg);
static void rd_start_query(store *s);

static void rd_wait(store *s, int status)
{
    store_reader *rd = &s->rd;
    short what = 0;
    struct timeval tv, *tvp = NULL;
    if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
        what |= EV_READ;
    if (status & MYSQL_WAIT_WRITE)
        what |= EV_WRITE;
    if (status & MYSQL_WAIT_TIMEOUT) {
        tv = tv_ms(mysql_get_timeout_value_ms(rd->my));
        tvp = &tv;
    }
    event_del(rd->io);
    event_assign(rd->io, s->base, mysql_get_socket(rd->my), what, rd_io_cb, s);
    event_add(rd->io, tvp);
}

static void rd_watch_idle(store *s)
{
    store_reader *rd = &s->rd;
    event_del(rd->io);
    event_assign(rd->io, s->base, mysql_get_socket(rd->my), EV_READ, rd_io_cb, s);
    event_add(rd->io, NULL);
}

static void rd_close(store *s)
{
    store_reader *rd = &s->rd;
    event_del(rd->io);
    event_del(rd->timer);
    rd->step_due = false;
    if (rd->res) {
        mysql_free_result(rd->res);
        rd->res = NULL;
    }
    if (rd->res_orders) {
        mysql_free_result(rd->res_orders);
        rd->res_orders = NULL;
    }
    if (rd->my) {
        mysql_close(rd->my);
        rd->my = NULL;
    }
    rd->state = RD_DOWN;
    if (rd->sql.cap > STORE_SQL_KEEP_BYTES)
        sb_free(&rd->sql);
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

/* The reader failed: its query's requests fail, and so do the queued ones
 * (through defer: the loop answers them while the reader is down, so that
 * readers of a dead MariaDB hear "unavailable" at once). Reconnects after
 * backoff. */
static void rd_down(store *s, const char *why)
{
    store_reader *rd = &s->rd;
    bool was_up = rd->state != RD_DOWN && rd->state != RD_CONNECTING;
    rd_close(s);
    uint32_t delay = 0;
    if (rd->backoff_ms) {
        uint32_t half = rd->backoff_ms / 2;
        delay = half + (uint32_t)(store_rand(s) % (half + 1));
    }
    rd->backoff_ms = rd->backoff_ms ? rd->backoff_ms * 2 : STORE_BACKOFF_MIN_MS;
    if (rd->backoff_ms > s->backoff_max_ms)
        rd->backoff_ms = s->backoff_max_ms;
    struct timeval tv = tv_ms(delay);
    evtimer_add(rd->timer, &tv);
    if (was_up)
        LOG_W("store: reader connection down", "why", why);
    rd_fail_batch(s);
    if (rd->q_len)
        event_active(rd->defer, EV_TIMEOUT, 0);
}

static void rd_connect_start(store *s)
{
    store_reader *rd = &s->rd;
    assert(rd->state == RD_DOWN && !rd->my);
    rd->my = db_handle_new(s, true, 0);
    if (!rd->my) {
        rd_down(s, "mysql_init failed");
        return;
    }
    rd->state = RD_CONNECTING;
    struct timeval tv = tv_ms(s->connect_timeout_ms);
    evtimer_add(rd->timer, &tv);
    int st = mysql_real_connect_start(&rd->connect_ret, rd->my, db_host(&s->db), s->db.user,
                                      s->db.password, s->db.database, (unsigned)s->db.port,
                                      s->db.socket[0] ? s->db.socket : NULL, 0);
    if (st) {
        rd_wait(s, st);
        return;
    }
    rd->step_due = true;
    event_active(rd->defer, EV_TIMEOUT, 0);
}

static void rd_connected(store *s)
{
    store_reader *rd = &s->rd;
    if (!rd->connect_ret) {
        char msg[256];
        snprintf(msg, sizeof msg, "connect: %s", mysql_error(rd->my));
        rd->state = RD_DOWN;
        rd_down(s, msg);
        return;
    }
    event_del(rd->timer);
    rd->state = RD_IDLE;
    rd->backoff_ms = 0;
    rd_watch_idle(s);
    rd_start_query(s);
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
    sb_str(&rd->sql, rd->step == RD_STEP_FIND || rd->step == RD_STEP_LINES
                         ? " WHERE order_id IN ("
                         : " WHERE sku IN (");
    for (size_t i = 0; i < rd->n_batch; i++) {
        if (i)
            sb_str(&rd->sql, ",");
        sb_hex_str(&rd->sql, rd->batch[i].sku);
    }
    sb_str(&rd->sql, ")");
}

/* First writer wins, in one statement: the upsert changes nothing on a
 * duplicate, and RETURNING gives the row that stands for every value
 * (inserted now, or there before: InnoDB locks it, so it is final). Two
 * requests of one order in a batch: the first inserts, both read it. */
static void rd_sql_decide(store_reader *rd)
{
    int64_t at = now_ms();
    sb_str(&rd->sql, "INSERT INTO cart_decisions (order_id,decision,at_ms) VALUES ");
    for (size_t i = 0; i < rd->n_batch; i++) {
        const load_req *r = &rd->batch[i];
        assert(r->want == STORE_DECIDE_CONFIRM || r->want == STORE_DECIDE_ABORT);
        sb_str(&rd->sql, i ? ",(" : "(");
        sb_hex_str(&rd->sql, r->sku);
        sb_str(&rd->sql, r->want == STORE_DECIDE_CONFIRM ? ",'confirm'," : ",'abort',");
        sb_i64(&rd->sql, at);
        sb_str(&rd->sql, ")");
    }
    sb_str(&rd->sql, " ON DUPLICATE KEY UPDATE at_ms=at_ms RETURNING order_id,decision");
}

/* Sends the statement of the running batch's current step. */
static void rd_send_step(store *s)
{
    store_reader *rd = &s->rd;
    sb_reset(&rd->sql);
    switch (rd->step) {
    case RD_STEP_ISOLATION:
        /* READ COMMITTED: the bump of SKUs that do not exist yet takes no
         * gap locks, so it cannot deadlock with a batch inserting them.
         * The rows that do exist are locked by the bump, so what the
         * SELECTs read after it is final either way. */
        sb_str(&rd->sql, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
        break;
    case RD_STEP_BEGIN:
        sb_str(&rd->sql, "START TRANSACTION");
        break;
    case RD_STEP_BUMP:
        sb_str(&rd->sql, "UPDATE sku SET epoch=epoch+1,version=version+1");
        rd_sql_in(rd);
        break;
    case RD_STEP_SKUS:
        sb_str(&rd->sql, SKU_SELECT);
        rd_sql_in(rd);
        break;
    case RD_STEP_ORDERS:
        /* Sorted: a SKU's lines of one order may come in any order. */
        sb_str(&rd->sql, ORDER_SELECT);
        rd_sql_in(rd);
        sb_str(&rd->sql, ORDER_SORT);
        break;
    case RD_STEP_COMMIT:
        sb_str(&rd->sql, "COMMIT");
        break;
    case RD_STEP_FIND:
        sb_str(&rd->sql, "SELECT order_id,sku FROM orders");
        rd_sql_in(rd);
        sb_str(&rd->sql, " AND line_no=0");
        break;
    case RD_STEP_LINES:
        sb_str(&rd->sql, "SELECT order_id,line_no,n_lines,sku FROM orders");
        rd_sql_in(rd);
        sb_str(&rd->sql, ORDER_SORT);
        break;
    case RD_STEP_DECIDE:
        rd_sql_decide(rd);
        break;
    case RD_STEP_RETRY:
        sb_str(&rd->sql, "ROLLBACK");
        break;
    default:
        assert(!"no statement for this step");
    }
    if (rd->sql.err) {
        rd_fail_batch(s);
        rd->state = RD_IDLE;
        return;
    }
    s->st.sku_load_queries++;
    rd->state = RD_QUERY;
    event_del(rd->io);
    struct timeval tv = tv_ms(s->commit_timeout_ms);
    evtimer_add(rd->timer, &tv);
    int st = mysql_real_query_start(&rd->qret, rd->my, rd->sql.p, rd->sql.len);
    if (st) {
        rd_wait(s, st);
        return;
    }
    rd->step_due = true;
    event_active(rd->defer, EV_TIMEOUT, 0);
}

/* Takes up to STORE_LOAD_BATCH_MAX queued requests into one load. */
static void rd_start_query(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->state != RD_IDLE || rd->q_len == 0)
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
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        eng_order_view o;
        if (!parse_order_row(row, len, &o) || !engine_load_order(s->takeover, &o))
            LOG_W("store: takeover: order row refused", "order_id", o.order_id);
    }
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
    for (size_t i = 0; i < n; i++)
        got[i] = -1;
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        int d = !row[1] ? -1
                : strcmp(row[1], "confirm") == 0 ? STORE_DECIDE_CONFIRM
                : strcmp(row[1], "abort") == 0   ? STORE_DECIDE_ABORT
                                                 : -1;
        for (size_t i = 0; i < n; i++)
            if (row_is_key(row, len, 0, batch[i].sku))
                got[i] = d;
    }
    if (res)
        mysql_free_result(res);
    for (size_t i = 0; i < n; i++) {
        if (got[i] < 0)
            s->st.sku_loads_failed++;
        batch[i].fn.decide(batch[i].sku, got[i], batch[i].arg);
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
        bool ok = parse_sku_row(row, len, &r);
        for (size_t i = 0; i < rd->n_batch; i++) {
            if (!row[0] || strlen(rd->batch[i].sku) != len[0] ||
                memcmp(rd->batch[i].sku, row[0], len[0]) != 0)
                continue;
            found[i] = true;
            ok_row[i] = ok;
            if (ok)
                rows_ok[i] = r;
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
    event_del(rd->timer);
    rd->state = RD_IDLE;
    rd_watch_idle(s);
    rd_deliver(s);
    rd_start_query(s);
}

/* A _start/_cont returned 0: act on where the reader is. */
static void rd_step(store *s)
{
    store_reader *rd = &s->rd;
    char msg[300];
    switch (rd->state) {
    case RD_CONNECTING:
        rd_connected(s);
        return;
    case RD_QUERY:
        if (rd->qret != 0) {
            unsigned e = mysql_errno(rd->my);
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
            snprintf(msg, sizeof msg, "load: MariaDB %u: %s", e, mysql_error(rd->my));
            rd_down(s, msg);
            return;
        }
        if (rd->step != RD_STEP_SKUS && rd->step != RD_STEP_ORDERS && !rd_step_single(rd->step)) {
            rd_next_step(s);
            return;
        }
        rd->state = RD_RESULT;
        int st = mysql_store_result_start(rd->step == RD_STEP_ORDERS ? &rd->res_orders : &rd->res, rd->my);
        if (st) {
            rd_wait(s, st);
            return;
        }
        /* fall through: stored at once */
        /* FALLTHROUGH */
    case RD_RESULT:
        if (!(rd->step == RD_STEP_ORDERS ? rd->res_orders : rd->res) && mysql_errno(rd->my)) {
            snprintf(msg, sizeof msg, "load result: %s", mysql_error(rd->my));
            rd_down(s, msg);
            return;
        }
        rd_next_step(s);
        return;
    default:
        return;
    }
}

static void rd_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    store *s = arg;
    store_reader *rd = &s->rd;
    int st = 0;
    if (what & EV_READ)
        st |= MYSQL_WAIT_READ;
    if (what & EV_WRITE)
        st |= MYSQL_WAIT_WRITE;
    if (what & EV_TIMEOUT)
        st |= MYSQL_WAIT_TIMEOUT;
    switch (rd->state) {
    case RD_CONNECTING:
        st = mysql_real_connect_cont(&rd->connect_ret, rd->my, st);
        break;
    case RD_QUERY:
        st = mysql_real_query_cont(&rd->qret, rd->my, st);
        break;
    case RD_RESULT:
        st = mysql_store_result_cont(rd->step == RD_STEP_ORDERS ? &rd->res_orders : &rd->res, rd->my, st);
        break;
    case RD_IDLE:
        rd_down(s, "server closed the connection");
        return;
    default:
        assert(!"reader io in a state without io");
        return;
    }
    if (st) {
        rd_wait(s, st);
        return;
    }
    rd_step(s);
}

static void rd_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store *s = arg;
    store_reader *rd = &s->rd;
    if (rd->state == RD_DOWN) {
        rd_connect_start(s);
        return;
    }
    rd_down(s, rd->state == RD_CONNECTING ? "connect timeout" : "load timeout");
}

static void rd_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store *s = arg;
    store_reader *rd = &s->rd;
    if (rd->state == RD_DOWN) {
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
    if (rd->step_due) {
        rd->step_due = false;
        rd_step(s);
        return;
    }
    if (rd->state == RD_IDLE) {
        rd_start_query(s);
        return;
    }
    /* Busy: armed by a request queued while idle (from a callback of the
     * query that just ended), and a query started since. It is no result
     * to act on (that would read a query still on the wire); the running
     * query starts the next one when it ends. */
}

static int rd_init(store *s, char *err, size_t err_len)
{
    store_reader *rd = &s->rd;
    rd->io = event_new(s->base, -1, 0, rd_io_cb, s);
    rd->timer = evtimer_new(s->base, rd_timer_cb, s);
    rd->defer = evtimer_new(s->base, rd_defer_cb, s);
    rd->q_cap = 1024;
    rd->q = malloc(rd->q_cap * sizeof *rd->q);
    if (!rd->io || !rd->timer || !rd->defer || !rd->q) {
        set_err(err, err_len, "reader: out of memory");
        return -1;
    }
    rd->my = db_connect_blocking(s, true, s->db.database, err, err_len);
    if (!rd->my)
        return -1;
    rd->state = RD_IDLE;
    rd_watch_idle(s);
    return 0;
}

static void rd_free(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->io)
        rd_close(s);
    if (rd->io)
        event_free(rd->io);
    if (rd->timer)
        event_free(rd->timer);
    if (rd->defer)
        event_free(rd->defer);
    sb_free(&rd->sql);
    free(rd->q);
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
    if (rd->state == RD_IDLE || rd->state == RD_DOWN)
        event_active(rd->defer, EV_TIMEOUT, 0);
    return 0;
}

void store_set_takeover(store *s, engine *e)
{
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

int store_cart_decide(store *s, const char *order_id, store_decision want, store_decide_fn fn,
                      void *arg)
{
    assert(fn && (want == STORE_DECIDE_CONFIRM || want == STORE_DECIDE_ABORT));
    load_req r = req_new(order_id, LK_DECIDE, arg);
    r.fn.decide = fn;
    r.want = want;
    return rd_enqueue(s, &r);
}
