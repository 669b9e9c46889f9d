/* mode_seedlock.c — seed-lock: the recipe stockd replaces. Per order:
 *
 *   SET lock:{sku} token NX PX 3000      retry with backoff while taken
 *   GET cache:stock:{sku}                 else SELECT qty FROM stock (and SET the cache)
 *   START TRANSACTION; UPDATE stock SET qty = qty - ? WHERE sku = ? AND qty >= ?;
 *   INSERT order; COMMIT                  (ROLLBACK when the UPDATE matched nothing)
 *   DEL cache:stock:{sku}
 *   EVALSHA compare-and-delete lock:{sku} token
 *
 * A cart (--lines N) takes the N locks one after another in ascending SKU
 * order (a global order: no deadlock), each with the same retry and
 * backoff, within one 3 s budget (lock_timeout releases those taken);
 * reads the N cache keys with one MGET and each miss from MariaDB; runs
 * the transaction with N UPDATEs (as mariadb-row); DELs the N cache keys
 * in one command and releases the N locks.
 *
 * Each worker owns one Redis and one MariaDB connection and carries one
 * order at a time (--pipeline does not apply).
 */
#include "db.h"
#include "rds.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#define SL_LOCK_TTL_MS 3000
#define SL_LOCK_WAIT_MS 3000        /* give up acquiring after this long */
#define SL_BACKOFF_MIN_US 500
#define SL_BACKOFF_MAX_US 32000

static const char LUA_UNLOCK[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

enum sl_stage {
    SL_LOCK = 0, SL_CACHE_GET, SL_DB_READ, SL_BEGIN, SL_UPDATE, SL_INSERT, SL_COMMIT,
    SL_ROLLBACK, SL_CACHE_DEL, SL_UNLOCK
};

typedef struct sl_worker {
    struct sl_mode *mode;
    bench_run *r;
    rds_conn rc;
    bench_db *db;
    struct event *ev_backoff;
    bench_req *q;
    uint64_t rng;
    /* the order's lines (one without --lines), in the cart's ascending order */
    char sku[BENCH_LINES_MAX][BENCH_NAME_LEN];
    bool miss[BENCH_LINES_MAX];     /* cache miss: read from MariaDB */
    uint32_t line;                  /* the line the LOCK / DB_READ / UPDATE stage is at */
    uint32_t n_locked;              /* locks held: lines 0..n_locked-1 */
    uint32_t unlock_pending;        /* unlock replies still to come */
    char token[64];
    char outcome[32];
} sl_worker;

typedef struct sl_mode {
    peer_tables t;
    sl_worker *w;
    uint32_t n_w;
    uint32_t n_settled;
    char unlock_sha[41];
} sl_mode;

static void sl_step(sl_worker *w, int stage);

/* Ends the order now, without unlocking (the connection is gone). */
static void sl_abort(sl_worker *w, const char *outcome)
{
    bench_req *q = w->q;
    w->q = NULL;
    bench_conn_dead(w->r, w->rc.idx);
    bench_done(w->r, q, outcome);
}

static void sl_finish(sl_worker *w)
{
    bench_req *done = w->q;
    w->q = NULL;
    bench_done(w->r, done, done->outcome);
}

/* The next line at or after `from` that missed the cache, or n_lines. */
static uint32_t sl_next_miss(const sl_worker *w, uint32_t from)
{
    while (from < w->q->n_lines && !w->miss[from])
        from++;
    return from;
}

/* A cache value for line i: sufficient, or the order is insufficient. */
static bool sl_cached_ok(sl_worker *w, const redisReply *v, uint32_t i)
{
    w->miss[i] = v->type != REDIS_REPLY_STRING;
    if (w->miss[i])
        return true;
    int64_t value = strtoll(v->str, NULL, 10);
    if (value >= w->q->qty)
        return true;
    w->q->outcome = "insufficient";
    return false;
}

static void sl_on_lock(sl_worker *w, const redisReply *rep)
{
    bench_req *q = w->q;
    if (rep->type == REDIS_REPLY_STATUS) {
        w->n_locked = ++w->line;
        q->tries = 0;
        if (w->line < q->n_lines) {
            sl_step(w, SL_LOCK);
            return;
        }
        sl_step(w, SL_CACHE_GET);
        return;
    }
    if (bench_now_ns() - q->t_stage_ns > (uint64_t)SL_LOCK_WAIT_MS * 1000000u) {
        q->outcome = "lock_timeout";
        sl_step(w, SL_UNLOCK);                   /* the locks already taken */
        return;
    }
    /* Exponential backoff with jitter, as such recipes are written. */
    uint64_t cap = SL_BACKOFF_MIN_US << (q->tries < 6 ? q->tries : 6);
    cap = cap > SL_BACKOFF_MAX_US ? SL_BACKOFF_MAX_US : cap;
    uint64_t us = cap / 2 + bench_rand(&w->rng) % (cap / 2 + 1);
    q->tries++;
    struct timeval tv = { .tv_sec = 0, .tv_usec = (suseconds_t)us };
    evtimer_add(w->ev_backoff, &tv);
}

/* GET (one line) or MGET (a cart): insufficient on any cached value below
 * qty, else read the misses from MariaDB, else the transaction. */
static void sl_on_cache(sl_worker *w, const redisReply *rep)
{
    bench_req *q = w->q;
    bool ok = true;
    if (q->n_lines == 1) {
        ok = sl_cached_ok(w, rep, 0);
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == q->n_lines) {
        for (uint32_t i = 0; i < q->n_lines && ok; i++)
            ok = sl_cached_ok(w, rep->element[i], i);
    } else {
        sl_abort(w, "redis_error");
        return;
    }
    if (!ok) {
        sl_step(w, SL_UNLOCK);
        return;
    }
    w->line = sl_next_miss(w, 0);
    sl_step(w, w->line < q->n_lines ? SL_DB_READ : SL_BEGIN);
}

static void sl_redis_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    sl_worker *w = privdata;
    redisReply *rep = reply;
    bench_req *q = w->q;
    if (q == NULL)
        return;                                  /* run over, worker torn down */
    if (rep == NULL) {
        sl_abort(w, "redis_conn_lost");
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        sl_abort(w, "redis_error");
        return;
    }
    switch (q->stage) {
    case SL_LOCK:
        sl_on_lock(w, rep);
        return;
    case SL_CACHE_GET:
        sl_on_cache(w, rep);
        return;
    case SL_CACHE_DEL:
        sl_step(w, SL_UNLOCK);
        return;
    case SL_UNLOCK:
        assert(w->unlock_pending > 0);
        if (--w->unlock_pending == 0)
            sl_finish(w);
        return;
    default:
        assert(!"redis reply in a MariaDB stage");
    }
}

static void sl_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sl_worker *w = arg;
    if (w->q != NULL)
        sl_step(w, SL_LOCK);
}

/* A line read from MariaDB on a cache miss: refill the cache (reply not
 * awaited), then the next miss or the transaction. */
static void sl_on_db_read(sl_worker *w, const char *value)
{
    bench_req *q = w->q;
    int64_t v = value ? strtoll(value, NULL, 10) : -1;
    if (value != NULL && w->rc.ac != NULL)
        redisAsyncCommand(w->rc.ac, NULL, NULL, "SET cache:stock:{%s} %s EX 60", w->sku[w->line],
                          value);
    if (v < q->qty) {
        q->outcome = value ? "insufficient" : "unknown_sku";
        sl_step(w, SL_UNLOCK);
        return;
    }
    w->line = sl_next_miss(w, w->line + 1);
    sl_step(w, w->line < q->n_lines ? SL_DB_READ : SL_BEGIN);
}

static void sl_db_cb(bench_db *db, unsigned err, uint64_t affected, const char *value, void *arg)
{
    (void)db;
    sl_worker *w = arg;
    bench_req *q = w->q;
    assert(q != NULL);
    if (err != 0) {
        snprintf(w->outcome, sizeof w->outcome, "db_%u", err);
        q->outcome = w->outcome;
        if (bench_db_dead(w->db) || q->stage == SL_ROLLBACK)
            sl_step(w, SL_UNLOCK);
        else
            sl_step(w, q->stage == SL_DB_READ ? SL_UNLOCK : SL_ROLLBACK);
        return;
    }
    switch (q->stage) {
    case SL_DB_READ:
        sl_on_db_read(w, value);
        return;
    case SL_BEGIN:
        w->line = 0;
        sl_step(w, SL_UPDATE);
        return;
    case SL_UPDATE:
        if (affected == 1) {
            w->line++;
            sl_step(w, w->line < q->n_lines ? SL_UPDATE : SL_INSERT);
        } else {
            q->outcome = "insufficient";
            sl_step(w, SL_ROLLBACK);
        }
        return;
    case SL_INSERT:
        sl_step(w, SL_COMMIT);
        return;
    case SL_COMMIT:
    case SL_ROLLBACK:
        sl_step(w, SL_CACHE_DEL);
        return;
    default:
        assert(!"MariaDB reply in a Redis stage");
    }
}

static void sl_redis(sl_worker *w, int rc)
{
    if (rc != REDIS_OK)
        sl_abort(w, "redis_conn_lost");
}

static void sl_sql(sl_worker *w, const char *sql, int n)
{
    assert(n > 0 && n < BENCH_SQL_MAX);
    if (bench_db_dead(w->db) || bench_db_query(w->db, sql, (size_t)n, sl_db_cb, w) != 0) {
        w->q->outcome = "db_conn_lost";
        sl_step(w, SL_UNLOCK);
    }
}

/* cmd (MGET or DEL) over every line's cache key, in one command. */
static int sl_cache_keys_cmd(sl_worker *w, const char *cmd)
{
    char keys[BENCH_LINES_MAX][BENCH_NAME_LEN + 16];
    const char *argv[BENCH_LINES_MAX + 1];
    uint32_t n = w->q->n_lines;
    argv[0] = cmd;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "cache:stock:{%s}", w->sku[i]);
        argv[i + 1] = keys[i];
    }
    return redisAsyncCommandArgv(w->rc.ac, sl_redis_cb, w, (int)n + 1, argv, NULL);
}

/* Releases the locks taken, all at once; the order ends with the last reply. */
static void sl_unlock(sl_worker *w)
{
    if (w->n_locked == 0) {
        sl_finish(w);
        return;
    }
    w->unlock_pending = w->n_locked;
    for (uint32_t i = 0; i < w->n_locked; i++) {
        if (redisAsyncCommand(w->rc.ac, sl_redis_cb, w, "EVALSHA %s 1 lock:{%s} %s",
                              w->mode->unlock_sha, w->sku[i], w->token) != REDIS_OK) {
            sl_abort(w, "redis_conn_lost");
            return;
        }
    }
}

static void sl_step(sl_worker *w, int stage)
{
    bench_req *q = w->q;
    char sql[BENCH_SQL_MAX];
    q->stage = stage;
    redisAsyncContext *ac = w->rc.ac;
    if (ac == NULL && (stage == SL_LOCK || stage == SL_CACHE_GET || stage == SL_CACHE_DEL ||
                       stage == SL_UNLOCK)) {
        sl_abort(w, "redis_conn_lost");
        return;
    }
    switch (stage) {
    case SL_LOCK:
        sl_redis(w, redisAsyncCommand(ac, sl_redis_cb, w, "SET lock:{%s} %s NX PX %d",
                                      w->sku[w->line], w->token, SL_LOCK_TTL_MS));
        return;
    case SL_CACHE_GET:
        sl_redis(w, sl_cache_keys_cmd(w, q->n_lines == 1 ? "GET" : "MGET"));
        return;
    case SL_DB_READ:
        sl_sql(w, sql, snprintf(sql, sizeof sql, "SELECT qty FROM %s WHERE sku = '%s'",
                                w->mode->t.stock, w->sku[w->line]));
        return;
    case SL_BEGIN:
        sl_sql(w, sql, snprintf(sql, sizeof sql, "START TRANSACTION"));
        return;
    case SL_UPDATE:
        sl_sql(w, sql, peer_update_sql(w->r, &w->mode->t, q, w->line, sql, sizeof sql));
        return;
    case SL_INSERT:
        sl_sql(w, sql, peer_insert_sql(w->r, &w->mode->t, q, sql, sizeof sql));
        return;
    case SL_COMMIT:
        sl_sql(w, sql, snprintf(sql, sizeof sql, "COMMIT"));
        return;
    case SL_ROLLBACK:
        sl_sql(w, sql, snprintf(sql, sizeof sql, "ROLLBACK"));
        return;
    case SL_CACHE_DEL:
        sl_redis(w, sl_cache_keys_cmd(w, "DEL"));
        return;
    case SL_UNLOCK:
        sl_unlock(w);
        return;
    default:
        assert(!"bad stage");
    }
}

static void sl_send(bench_run *r, void *state, bench_req *q)
{
    (void)state;
    rds_conn *rc = q->conn;
    sl_worker *w = rc->owner;
    assert(w->q == NULL);
    w->q = q;
    for (uint32_t i = 0; i < q->n_lines; i++)
        bench_sku_name(r, q->line_sku[i], w->sku[i], sizeof w->sku[i]);
    w->line = 0;
    w->n_locked = 0;
    w->unlock_pending = 0;
    snprintf(w->token, sizeof w->token, "%s:%" PRIu64, bench_nonce(r), q->seq);
    q->t_stage_ns = bench_now_ns();
    sl_step(w, SL_LOCK);
}

static void sl_cleanup_keys(bench_run *r)
{
    const bench_opts *o = bench_opts_of(r);
    char err[256], sku[BENCH_NAME_LEN];
    redisContext *c = rds_blocking(o, err, sizeof err);
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < o->skus; i++) {
        bench_sku_name(r, i, sku, sizeof sku);
        redisAppendCommand(c, "DEL cache:stock:{%s} lock:{%s}", sku, sku);
        if ((i + 1) % 1000 == 0 || i + 1 == o->skus) {
            for (uint32_t j = i - i % 1000; j <= i; j++) {
                void *rep = NULL;
                if (redisGetReply(c, &rep) != REDIS_OK)
                    goto out;
                freeReplyObject(rep);
            }
        }
    }
out:
    redisFree(c);
}

static void sl_close(bench_run *r, void *state)
{
    sl_mode *m = state;
    for (uint32_t i = 0; i < m->n_w; i++) {
        sl_worker *w = &m->w[i];
        w->q = NULL;                      /* late callbacks see no order */
        rds_close(&w->rc);
        bench_db_close(w->db);
        if (w->ev_backoff != NULL)
            event_free(w->ev_backoff);
    }
    if (!bench_opts_of(r)->keep)
        sl_cleanup_keys(r);
    peer_tables_drop(r, &m->t);
    free(m->w);
    free(m);
}

static int sl_open_workers(bench_run *r, sl_mode *m, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    for (uint32_t i = 0; i < o->connections; i++) {
        sl_worker *w = &m->w[i];
        w->mode = m;
        w->r = r;
        w->rng = o->seed ^ ((uint64_t)i << 32);
        w->rc.owner = w;
        w->ev_backoff = evtimer_new(bench_base(r), sl_backoff_cb, w);
        assert(w->ev_backoff != NULL);
        m->n_w++;
        w->db = bench_db_open(bench_base(r), &o->db, o->peer_db, err, err_len);
        if (w->db == NULL || rds_connect(r, &w->rc, &m->n_settled, err, err_len) != 0)
            return -1;
    }
    if (bench_wait(r, &m->n_settled, m->n_w, 10000) != 0) {
        snprintf(err, err_len, "redis: connections did not come up in 10 s");
        return -1;
    }
    for (uint32_t i = 0; i < m->n_w; i++) {
        if (!m->w[i].rc.up) {
            snprintf(err, err_len, "redis %s:%u: connection refused", o->redis.host, o->redis.port);
            return -1;
        }
        m->w[i].rc.idx = bench_add_conn(r, &m->w[i].rc, 1);
    }
    return 0;
}

static int sl_open(bench_run *r, void **state, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    if (!o->has_db || !o->has_redis) {
        snprintf(err, err_len, "seed-lock needs --db and --redis (or STOCKD_DB, STOCKD_REDIS)");
        return -1;
    }
    sl_mode *m = calloc(1, sizeof *m);
    assert(m != NULL);
    *state = m;
    peer_tables_name(r, &m->t);
    m->w = calloc(o->connections, sizeof *m->w);
    assert(m->w != NULL);
    redisContext *c = rds_blocking(o, err, err_len);
    int rc = c ? rds_script_load(c, LUA_UNLOCK, m->unlock_sha, err, err_len) : -1;
    if (c != NULL)
        redisFree(c);
    if (rc != 0 || peer_tables_create(r, &m->t, err, err_len) != 0 ||
        sl_open_workers(r, m, err, err_len) != 0) {
        sl_close(r, m);
        return -1;
    }
    return 0;
}

static bench_audit_rc sl_audit(bench_run *r, void *state, const bench_result *res, char *msg,
                               size_t msg_len)
{
    sl_mode *m = state;
    return peer_tables_audit(r, &m->t, res, msg, msg_len);
}

const bench_mode_ops bench_mode_seed_lock = {
    .name = "seed-lock",
    .reserves = true,
    .open = sl_open,
    .send = sl_send,
    .audit = sl_audit,
    .close = sl_close,
};
