/* mode_redis.c — redis-ping (the bare reactor to compare stockd's ping
 * with) and redis-lua (the flash-sale recipe: one EVALSHA checks,
 * decrements and records the order; fast, but Redis may lose acknowledged
 * writes, which no audit of a live Redis can show).
 */
#include "rds.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] stock key, KEYS[2] orders hash; ARGV qty, order_id, sku index.
 * 1 reserved, 0 insufficient, -1 unknown SKU, -2 order_id already used. */
static const char LUA_RESERVE[] =
    "local s = redis.call('GET', KEYS[1])\n"
    "if not s then return -1 end\n"
    "local q = tonumber(ARGV[1])\n"
    "if tonumber(s) < q then return 0 end\n"
    "if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3] .. ':' .. ARGV[1]) == 0 then return -2 end\n"
    "redis.call('DECRBY', KEYS[1], q)\n"
    "return 1\n";

/* A cart (--lines): KEYS[1..n] the lines' stock keys, KEYS[n+1] the
 * orders hash; ARGV qty (per line), order_id, then the n sku indexes.
 * Every key is checked before any is touched: all lines or none. The
 * record is "i:qty,i:qty,...". Same return codes as LUA_RESERVE. */
static const char LUA_CART[] =
    "local n = #KEYS - 1\n"
    "local q = tonumber(ARGV[1])\n"
    "for i = 1, n do\n"
    "  local s = redis.call('GET', KEYS[i])\n"
    "  if not s then return -1 end\n"
    "  if tonumber(s) < q then return 0 end\n"
    "end\n"
    "local rec = {}\n"
    "for i = 1, n do rec[i] = ARGV[i + 2] .. ':' .. ARGV[1] end\n"
    "if redis.call('HSETNX', KEYS[n + 1], ARGV[2], table.concat(rec, ',')) == 0 then return -2 end\n"
    "for i = 1, n do redis.call('DECRBY', KEYS[i], q) end\n"
    "return 1\n";

typedef struct redis_mode {
    rds_conn *conns;
    uint32_t n_conns;
    uint32_t n_settled;
    char sha[41];
    char cart_sha[41];
    char orders_key[64];
    bool keys_made;
} redis_mode;

static void stock_key(bench_run *r, uint32_t sku, char *buf, size_t len)
{
    char name[BENCH_NAME_LEN];
    bench_sku_name(r, sku, name, sizeof name);
    snprintf(buf, len, "bench:stock:%s", name);
}

/* Opens --connections async connections with --pipeline slots each. */
static int redis_conns_open(bench_run *r, redis_mode *m, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    m->conns = calloc(o->connections, sizeof *m->conns);
    assert(m->conns != NULL);
    for (uint32_t i = 0; i < o->connections; i++) {
        if (rds_connect(r, &m->conns[i], &m->n_settled, err, err_len) != 0)
            return -1;
        m->n_conns++;
    }
    if (bench_wait(r, &m->n_settled, m->n_conns, 10000) != 0) {
        snprintf(err, err_len, "redis: connections did not come up in 10 s");
        return -1;
    }
    for (uint32_t i = 0; i < m->n_conns; i++) {
        if (!m->conns[i].up) {
            snprintf(err, err_len, "redis %s:%u: connection refused", o->redis.host, o->redis.port);
            return -1;
        }
        m->conns[i].idx = bench_add_conn(r, &m->conns[i], o->pipeline);
    }
    return 0;
}

static void redis_conns_close(redis_mode *m)
{
    for (uint32_t i = 0; i < m->n_conns; i++)
        rds_close(&m->conns[i]);
    free(m->conns);
    m->conns = NULL;
}

/* A NULL reply: the connection broke (or is being freed after the run). */
static bool reply_lost(rds_conn *c, bench_req *q, const redisReply *rep)
{
    if (rep != NULL)
        return false;
    if (c->idx != UINT32_MAX)
        bench_conn_dead(c->r, c->idx);
    bench_done(c->r, q, "redis_conn_lost");
    return true;
}

/* ---- redis-ping ---- */

static void ping_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    bench_req *q = privdata;
    rds_conn *c = q->conn;
    redisReply *rep = reply;
    if (reply_lost(c, q, rep))
        return;
    bool ok = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    bench_done(c->r, q, ok ? NULL : "redis_error");
}

static void ping_send(bench_run *r, void *state, bench_req *q)
{
    (void)state;
    rds_conn *c = q->conn;
    if (c->ac == NULL || redisAsyncCommand(c->ac, ping_cb, q, "PING") != REDIS_OK) {
        bench_conn_dead(r, c->idx);
        bench_done(r, q, "redis_conn_lost");
    }
}

static int ping_open(bench_run *r, void **state, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    if (!o->has_redis) {
        snprintf(err, err_len, "redis modes need --redis or STOCKD_REDIS");
        return -1;
    }
    redis_mode *m = calloc(1, sizeof *m);
    assert(m != NULL);
    *state = m;
    if (redis_conns_open(r, m, err, err_len) != 0) {
        redis_conns_close(m);
        free(m);
        return -1;
    }
    return 0;
}

static void ping_close(bench_run *r, void *state)
{
    (void)r;
    redis_mode *m = state;
    redis_conns_close(m);
    free(m);
}

static bench_audit_rc ping_audit(bench_run *r, void *state, const bench_result *res, char *msg,
                                 size_t msg_len)
{
    (void)r;
    (void)state;
    (void)res;
    snprintf(msg, msg_len, "none (no writes)");
    return BENCH_AUDIT_NONE;
}

const bench_mode_ops bench_mode_redis_ping = {
    .name = "redis-ping",
    .reserves = false,
    .open = ping_open,
    .send = ping_send,
    .audit = ping_audit,
    .close = ping_close,
};

/* ---- redis-lua ---- */

typedef struct lua_setup {
    bench_run *r;
    int64_t stock;
    int64_t *now;       /* audit: stock read back per SKU */
} lua_setup;

static int lua_append_set(redisContext *c, uint32_t i, void *arg)
{
    lua_setup *s = arg;
    char key[BENCH_NAME_LEN + 16];
    stock_key(s->r, i, key, sizeof key);
    return redisAppendCommand(c, "SET %s %" PRId64, key, s->stock);
}

static int lua_append_get(redisContext *c, uint32_t i, void *arg)
{
    lua_setup *s = arg;
    char key[BENCH_NAME_LEN + 16];
    stock_key(s->r, i, key, sizeof key);
    return redisAppendCommand(c, "GET %s", key);
}

static int lua_append_del(redisContext *c, uint32_t i, void *arg)
{
    lua_setup *s = arg;
    char key[BENCH_NAME_LEN + 16];
    stock_key(s->r, i, key, sizeof key);
    return redisAppendCommand(c, "UNLINK %s", key);
}

static int lua_on_get(uint32_t i, const redisReply *rep, void *arg)
{
    lua_setup *s = arg;
    if (rep->type != REDIS_REPLY_STRING)
        return -1;
    s->now[i] = strtoll(rep->str, NULL, 10);
    return 0;
}

static void lua_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    bench_req *q = privdata;
    rds_conn *c = q->conn;
    redisReply *rep = reply;
    if (reply_lost(c, q, rep))
        return;
    const char *outcome = "redis_error";
    if (rep->type == REDIS_REPLY_INTEGER) {
        switch (rep->integer) {
        case 1: outcome = NULL; break;
        case 0: outcome = "insufficient"; break;
        case -1: outcome = "unknown_sku"; break;
        case -2: outcome = "duplicate_order"; break;
        default: break;
        }
    }
    bench_done(c->r, q, outcome);
}

#define LUA_ARGV_MAX (2 * BENCH_LINES_MAX + 6)

/* EVALSHA of LUA_CART; hiredis copies argv into its buffer at once. */
static int lua_send_cart(bench_run *r, redis_mode *m, rds_conn *c, bench_req *q)
{
    char keys[BENCH_LINES_MAX][BENCH_NAME_LEN + 16], idx[BENCH_LINES_MAX][12];
    char numkeys[12], qty[12], oid[BENCH_NAME_LEN];
    const char *argv[LUA_ARGV_MAX];
    size_t argc = 0;
    assert(q->n_lines >= 1 && q->n_lines <= BENCH_LINES_MAX);
    snprintf(numkeys, sizeof numkeys, "%" PRIu32, q->n_lines + 1);
    snprintf(qty, sizeof qty, "%" PRId32, q->qty);
    bench_order_id(r, q->seq, oid, sizeof oid);
    argv[argc++] = "EVALSHA";
    argv[argc++] = m->cart_sha;
    argv[argc++] = numkeys;
    for (uint32_t i = 0; i < q->n_lines; i++) {
        stock_key(r, q->line_sku[i], keys[i], sizeof keys[i]);
        argv[argc++] = keys[i];
    }
    argv[argc++] = m->orders_key;
    argv[argc++] = qty;
    argv[argc++] = oid;
    for (uint32_t i = 0; i < q->n_lines; i++) {
        snprintf(idx[i], sizeof idx[i], "%" PRIu32, q->line_sku[i]);
        argv[argc++] = idx[i];
    }
    assert(argc <= LUA_ARGV_MAX);
    return redisAsyncCommandArgv(c->ac, lua_cb, q, (int)argc, argv, NULL);
}

static void lua_send(bench_run *r, void *state, bench_req *q)
{
    redis_mode *m = state;
    rds_conn *c = q->conn;
    if (bench_opts_of(r)->lines > 0) {
        if (c->ac == NULL || lua_send_cart(r, m, c, q) != REDIS_OK) {
            bench_conn_dead(r, c->idx);
            bench_done(r, q, "redis_conn_lost");
        }
        return;
    }
    char key[BENCH_NAME_LEN + 16], oid[BENCH_NAME_LEN];
    stock_key(r, q->sku, key, sizeof key);
    bench_order_id(r, q->seq, oid, sizeof oid);
    if (c->ac == NULL ||
        redisAsyncCommand(c->ac, lua_cb, q, "EVALSHA %s 2 %s %s %" PRId32 " %s %" PRIu32, m->sha,
                          key, m->orders_key, q->qty, oid, q->sku) != REDIS_OK) {
        bench_conn_dead(r, c->idx);
        bench_done(r, q, "redis_conn_lost");
    }
}

static void lua_cleanup(bench_run *r, redis_mode *m)
{
    const bench_opts *o = bench_opts_of(r);
    if (o->keep || !m->keys_made)
        return;
    char err[256];
    redisContext *c = rds_blocking(o, err, sizeof err);
    if (c == NULL)
        return;
    lua_setup s = { .r = r };
    (void)rds_pipeline(c, o->skus, lua_append_del, NULL, &s, err, sizeof err);
    redisReply *rep = redisCommand(c, "UNLINK %s", m->orders_key);
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
}

static void lua_close(bench_run *r, void *state)
{
    redis_mode *m = state;
    redis_conns_close(m);
    lua_cleanup(r, m);
    free(m);
}

static int lua_setup_keys(bench_run *r, redis_mode *m, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    redisContext *c = rds_blocking(o, err, err_len);
    if (c == NULL)
        return -1;
    snprintf(m->orders_key, sizeof m->orders_key, "bench:orders:%s", bench_nonce(r));
    int rc = rds_script_load(c, LUA_RESERVE, m->sha, err, err_len);
    if (rc == 0)
        rc = rds_script_load(c, LUA_CART, m->cart_sha, err, err_len);
    lua_setup s = { .r = r, .stock = o->stock };
    m->keys_made = true;
    if (rc == 0)
        rc = rds_pipeline(c, o->skus, lua_append_set, NULL, &s, err, err_len);
    redisFree(c);
    return rc;
}

static int lua_open(bench_run *r, void **state, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    if (!o->has_redis) {
        snprintf(err, err_len, "redis modes need --redis or STOCKD_REDIS");
        return -1;
    }
    redis_mode *m = calloc(1, sizeof *m);
    assert(m != NULL);
    *state = m;
    if (lua_setup_keys(r, m, err, err_len) != 0 || redis_conns_open(r, m, err, err_len) != 0) {
        lua_close(r, m);
        return -1;
    }
    return 0;
}

/* One record "i:qty[,i:qty...]": adds to sold; returns its line count, or
 * -1 when malformed. */
static int lua_parse_record(const char *rec, uint32_t skus, int64_t *sold)
{
    int lines = 0;
    const char *p = rec;
    for (;;) {
        char *end = NULL;
        unsigned long idx = strtoul(p, &end, 10);
        if (end == p || *end != ':' || idx >= skus || lines == BENCH_LINES_MAX)
            return -1;
        p = end + 1;
        long long qty = strtoll(p, &end, 10);
        if (end == p || qty <= 0 || (*end != ',' && *end != '\0'))
            return -1;
        sold[idx] += qty;
        lines++;
        if (*end == '\0')
            return lines;
        p = end + 1;
    }
}

/* Sums the recorded orders per SKU with HSCAN (values are "sku:qty", a
 * cart's "sku:qty,sku:qty,..."); *partial counts records without exactly
 * `lines` lines. */
static int lua_scan_orders(redisContext *c, const char *key, uint32_t skus, uint32_t lines,
                           int64_t *sold, uint64_t *rows, uint64_t *partial, char *err,
                           size_t err_len)
{
    *partial = 0;
    char cursor[32] = "0";
    *rows = 0;
    for (unsigned guard = 0; guard < 100000000u; guard++) {
        redisReply *rep = redisCommand(c, "HSCAN %s %s COUNT 1000", key, cursor);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            snprintf(err, err_len, "HSCAN: %s", rep ? "bad reply" : c->errstr);
            if (rep != NULL)
                freeReplyObject(rep);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        redisReply *kv = rep->element[1];
        for (size_t i = 1; i < kv->elements; i += 2) {
            int n = lua_parse_record(kv->element[i]->str, skus, sold);
            if (n < 0) {
                freeReplyObject(rep);
                snprintf(err, err_len, "HSCAN: bad order record");
                return -1;
            }
            *partial += (uint32_t)n != lines;
            (*rows)++;
        }
        freeReplyObject(rep);
        if (strcmp(cursor, "0") == 0)
            return 0;
    }
    snprintf(err, err_len, "HSCAN did not finish");
    return -1;
}

static bench_audit_rc lua_audit(bench_run *r, void *state, const bench_result *res, char *msg,
                                size_t msg_len)
{
    const bench_opts *o = bench_opts_of(r);
    redis_mode *m = state;
    char err[256];
    redisContext *c = rds_blocking(o, err, sizeof err);
    if (c == NULL) {
        snprintf(msg, msg_len, "audit: %s", err);
        return BENCH_AUDIT_ERROR;
    }
    int64_t *now = calloc(o->skus, sizeof *now), *sold = calloc(o->skus, sizeof *sold);
    assert(now != NULL && sold != NULL);
    lua_setup s = { .r = r, .now = now };
    uint64_t rows = 0, partial = 0;
    uint32_t lines = bench_lines_per_order(o);
    bench_audit_rc rc = BENCH_AUDIT_ERROR;
    if (rds_pipeline(c, o->skus, lua_append_get, lua_on_get, &s, err, sizeof err) != 0 ||
        lua_scan_orders(c, m->orders_key, o->skus, lines, sold, &rows, &partial, err,
                        sizeof err) != 0) {
        snprintf(msg, msg_len, "audit: %s", err);
        goto out;
    }
    uint64_t negative = 0, mismatched = 0;
    for (uint32_t i = 0; i < o->skus; i++) {
        negative += now[i] < 0;
        mismatched += o->stock - now[i] != sold[i];
    }
    if (negative || mismatched || partial || rows < res->ok_total ||
        rows > res->ok_total + res->unknown_total) {
        snprintf(msg, msg_len,
                 "FAILED: oversold skus %" PRIu64 ", order records %" PRIu64 " vs success replies %"
                 PRIu64 " (+%" PRIu64 " unknown), skus whose stock != initial - orders %" PRIu64
                 ", records without all %" PRIu32 " lines %" PRIu64,
                 negative, rows, res->ok_total, res->unknown_total, mismatched, lines, partial);
        rc = BENCH_AUDIT_FAILED;
        goto out;
    }
    if (o->lines > 0)
        snprintf(msg, msg_len, "ok (%" PRIu64 " cart records of %" PRIu32 " lines, %" PRIu32
                 " skus, none oversold)", rows, lines, o->skus);
    else
        snprintf(msg, msg_len, "ok (%" PRIu64 " order records, %" PRIu32 " skus, none oversold)",
                 rows, o->skus);
    rc = BENCH_AUDIT_OK;
out:
    free(now);
    free(sold);
    redisFree(c);
    return rc;
}

const bench_mode_ops bench_mode_redis_lua = {
    .name = "redis-lua",
    .reserves = true,
    .open = lua_open,
    .send = lua_send,
    .audit = lua_audit,
    .close = lua_close,
};
