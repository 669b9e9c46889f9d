/* sn_peer.c — the recipes stockd is measured against, played by the
 * simulator on real MariaDB, Redis and fake1688, on simulated time.
 *
 * naive: a 5-minute snapshot of every offer (alibaba.product.get) writes
 *   amountOnSale into MariaDB; an order is one transaction of conditional
 *   UPDATEs (own stock first, then the supplier figure) and an INSERT; the
 *   supplier units are then bought (fastCreateOrder). No lock, no check.
 *   A failed purchase cancels the order, and somebody has to tell the
 *   customer: that is the support load.
 * seed: the recipe shops write to fix that, as the story tells it:
 *   a Redis lock per SKU (SET NX PX, compare-and-delete), a cached read
 *   (60 simulated s) that refuses at once when it shows too little, the
 *   same conditional UPDATE transaction, the cache key dropped after the
 *   commit; after the order a sync of its offers (product.get) and an order
 *   check (createOrder.preview) of the supplier units: a refused check rolls
 *   the order back and alerts support, else the units are bought (a failed
 *   purchase does the same); the 5-minute snapshot; and every 30 simulated
 *   minutes a validation of every mapping (spec gone, offer offline, price
 *   changed) that stops selling a broken one's supplier stock and alerts.
 *
 * Both answer the customer right after the commit; what follows runs
 * before the next event (the simulator is sequential), so its simulated
 * time is the order's. Calls that hit the rate limit or a 5xx are tried
 * SN_PEER_TRIES times, then the recipe gives up: a snapshot keeps the old
 * figure, a check or purchase cancels the order.
 */
#include "db.h"
#include "rds.h"
#include "sn_sys.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SN_PEER_TRIES 3
#define SN_SNAPSHOT_MS (5 * SN_MINUTE_MS)
#define SN_VALIDATE_MS (30 * SN_MINUTE_MS)
#define SN_CACHE_MS (1 * SN_MINUTE_MS)
#define SN_LOCK_PX 3000
#define SN_UPSERT_ROWS 500

static const char LUA_UNLOCK[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

typedef struct peer {
    bool seed;
    MYSQL *m;
    redisContext *r;
    char unlock_sha[41];
    char stock[128], orders[128];
    int64_t next_snapshot_ms, next_validate_ms;
    bool *broken;                    /* seed: per SKU, mapping found broken */
    int64_t *mapped_price;           /* seed: per SKU, the price when it was mapped */
    char err[512];
} peer;

static int sqlf(peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sqlf(peer *p, const char *fmt, ...)
{
    char sql[BENCH_SQL_MAX * 8];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof sql) {
        snprintf(p->err, sizeof p->err, "statement too long");
        return -1;
    }
    return bench_db_exec(p->m, sql, p->err, sizeof p->err);
}

/* ---- the supplier figure: snapshot, sync, validation ---------------------- */

/* product.get with retries; SN_CALL_RETRY when the recipe gave up. */
static sn_call_rc product(sn_ctx *c, int64_t offer_id, sn_product *pr)
{
    char code[64];
    sn_call_rc rc = SN_CALL_RETRY;
    for (int t = 0; t < SN_PEER_TRIES && rc == SN_CALL_RETRY; t++)
        rc = sn_fake_product(c->fake, offer_id, pr, code, sizeof code);
    return rc;
}

static int64_t reported_of(const sn_product *pr, const char *spec, int64_t *price)
{
    for (uint32_t k = 0; k < pr->n; k++)
        if (strcmp(pr->spec_id[k], spec) == 0) {
            if (price)
                *price = pr->price_fen[k];
            return pr->reported[k];
        }
    return -1;                        /* the spec is not listed */
}

/* Writes amountOnSale of the offer's listed specs into the stock table
 * (broken mappings stay at 0). Appends to an upsert of many rows. */
static void figures_of(peer *p, sn_ctx *c, const sn_offer *o, const sn_product *pr, char *sql,
                       size_t cap, size_t *len, uint32_t *rows)
{
    for (uint32_t k = 0; k < o->n_specs; k++) {
        char spec[72];
        sn_spec_id(o, k, spec, sizeof spec);
        int64_t rep = reported_of(pr, spec, NULL);
        uint32_t sku = o->sku[k];
        if (rep < 0 || (p->broken && p->broken[sku]))
            continue;
        int n = snprintf(sql + *len, cap - *len, "%s(%" PRIu32 ",%d,%" PRId64 ")",
                         *rows ? "," : "", sku, c->sc->skus[sku].own, rep);
        if (n > 0 && (size_t)n < cap - *len) {
            *len += (size_t)n;
            (*rows)++;
        }
    }
}

static int upsert_flush(peer *p, char *sql, size_t *len, uint32_t *rows, size_t head)
{
    if (*rows == 0)
        return 0;
    snprintf(sql + *len, 64, " ON DUPLICATE KEY UPDATE sup = VALUES(sup)");
    int rc = bench_db_exec(p->m, sql, p->err, sizeof p->err);
    *len = head;
    *rows = 0;
    return rc;
}

/* The 5-minute snapshot: every offer, read at the same simulated moment. */
static int snapshot(peer *p, sn_ctx *c)
{
    static char sql[SN_UPSERT_ROWS * 48 + 256];
    size_t head = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s (sku, own, sup) VALUES ",
                                   p->stock);
    size_t len = head;
    uint32_t rows = 0;
    for (uint32_t i = 0; i < c->sc->n_offers; i++) {
        const sn_offer *o = &c->sc->offers[i];
        sn_product pr;
        if (product(c, o->offer_id, &pr) != SN_CALL_OK)
            continue;                 /* keeps the old figure */
        figures_of(p, c, o, &pr, sql, sizeof sql, &len, &rows);
        if (rows >= SN_UPSERT_ROWS - SN_SPECS_PER_OFFER_MAX &&
            upsert_flush(p, sql, &len, &rows, head) != 0)
            return -1;
    }
    return upsert_flush(p, sql, &len, &rows, head);
}

/* seed: the sync after an order, for one offer. */
static int sync_offer(peer *p, sn_ctx *c, const sn_offer *o)
{
    char sql[1024];
    size_t head = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s (sku, own, sup) VALUES ",
                                   p->stock);
    size_t len = head;
    uint32_t rows = 0;
    sn_product pr;
    if (product(c, o->offer_id, &pr) != SN_CALL_OK)
        return 0;
    figures_of(p, c, o, &pr, sql, sizeof sql, &len, &rows);
    return upsert_flush(p, sql, &len, &rows, head);
}

/* seed: every 30 simulated minutes, every mapping against the live offer. */
static int validate(peer *p, sn_ctx *c)
{
    for (uint32_t i = 0; i < c->sc->n_offers; i++) {
        const sn_offer *o = &c->sc->offers[i];
        sn_product pr;
        if (product(c, o->offer_id, &pr) != SN_CALL_OK)
            continue;
        for (uint32_t k = 0; k < o->n_specs; k++) {
            uint32_t sku = o->sku[k];
            if (p->broken[sku])
                continue;
            char spec[72];
            sn_spec_id(o, k, spec, sizeof spec);
            int64_t price = -1;
            bool ok = pr.found && pr.published && reported_of(&pr, spec, &price) >= 0 &&
                      price == p->mapped_price[sku];
            if (ok)
                continue;
            p->broken[sku] = true;
            if (sqlf(p, "UPDATE %s SET sup = 0 WHERE sku = %" PRIu32, p->stock, sku) != 0)
                return -1;
            sn_acct_alert(c->acct, 1);            /* support must map it afresh */
            if (c->link_of_offer[i] >= 0)
                sn_acct_link_detected(c->acct, (uint32_t)c->link_of_offer[i], c->now_ms);
        }
    }
    return 0;
}

static int peer_tick(sn_ctx *c, void *st)
{
    peer *p = st;
    while (p->next_snapshot_ms <= c->now_ms) {
        p->next_snapshot_ms += SN_SNAPSHOT_MS;
        if (snapshot(p, c) != 0)
            goto fail;
    }
    while (p->seed && p->next_validate_ms <= c->now_ms) {
        p->next_validate_ms += SN_VALIDATE_MS;
        if (validate(p, c) != 0)
            goto fail;
    }
    return 0;
fail:
    snprintf(c->note, sizeof c->note, "%s", p->err);
    return -1;
}

/* ---- the order ------------------------------------------------------------ */

typedef enum { ANS_YES, ANS_NO, ANS_ERROR } ans;

/* seed: the lock of every line (one at a time, SKUs ascending). The
 * simulator is the only client, so a lock is always free; the round trips
 * are the recipe's cost. */
static int lock_lines(peer *p, sn_ctx *c, const sn_event *ev, const char *token, uint32_t *n_locked)
{
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        redisReply *rep = redisCommand(p->r, "SET sn:%s:lock:{%" PRIu32 "} %s NX PX %d", c->nonce,
                                       ev->line_sku[i], token, SN_LOCK_PX);
        bool ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep)
            freeReplyObject(rep);
        if (!ok)
            return -1;
        (*n_locked)++;
    }
    return 0;
}

static void unlock_lines(peer *p, sn_ctx *c, const sn_event *ev, const char *token, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        redisReply *rep = redisCommand(p->r, "EVALSHA %s 1 sn:%s:lock:{%" PRIu32 "} %s",
                                       p->unlock_sha, c->nonce, ev->line_sku[i], token);
        if (rep)
            freeReplyObject(rep);
    }
}

/* seed: the cached read. The value is "own sup t" with t the simulated ms
 * it was read at; older than 60 simulated s is a miss. */
static ans cached_read(peer *p, sn_ctx *c, const sn_event *ev)
{
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        uint32_t sku = ev->line_sku[i];
        long long own = 0, sup = 0, t = -1;
        redisReply *rep = redisCommand(p->r, "GET sn:%s:cache:{%" PRIu32 "}", c->nonce, sku);
        if (rep == NULL)
            return ANS_ERROR;
        bool hit = rep->type == REDIS_REPLY_STRING &&
                   sscanf(rep->str, "%lld %lld %lld", &own, &sup, &t) == 3 &&
                   c->now_ms - t < SN_CACHE_MS;
        freeReplyObject(rep);
        if (!hit) {
            MYSQL_RES *res = NULL;
            char sql[256];
            snprintf(sql, sizeof sql, "SELECT own, sup FROM %s WHERE sku = %" PRIu32, p->stock, sku);
            if (mysql_query(p->m, sql) != 0 || (res = mysql_store_result(p->m)) == NULL)
                return ANS_ERROR;
            MYSQL_ROW row = mysql_fetch_row(res);
            if (row && row[0] && row[1]) {
                own = strtoll(row[0], NULL, 10);
                sup = strtoll(row[1], NULL, 10);
            }
            mysql_free_result(res);
            rep = redisCommand(p->r, "SET sn:%s:cache:{%" PRIu32 "} %lld %lld %" PRId64 " PX 600000",
                               c->nonce, sku, own, sup, c->now_ms);
            if (rep)
                freeReplyObject(rep);
        }
        if (own + sup < ev->line_qty[i])
            return ANS_NO;
    }
    return ANS_YES;
}

/* The transaction: per line a conditional UPDATE that takes own stock
 * first (@o keeps what own was, for the split), then the order rows. */
static ans take(peer *p, sn_ctx *c, const sn_event *ev, int32_t *from_own, int32_t *from_sup)
{
    if (sqlf(p, "START TRANSACTION") != 0)
        return ANS_ERROR;
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        int32_t q = ev->line_qty[i];
        if (sqlf(p, "UPDATE %s SET sup = sup - GREATEST(0, %d - (@o := own)), "
                    "own = GREATEST(0, own - %d) WHERE sku = %" PRIu32 " AND own + sup >= %d",
                 p->stock, q, q, ev->line_sku[i], q) != 0)
            goto error;
        if (mysql_affected_rows(p->m) != 1) {
            sqlf(p, "ROLLBACK");
            return ANS_NO;
        }
        int64_t own_before = 0;
        if (bench_db_scalar(p->m, "SELECT @o", &own_before, p->err, sizeof p->err) != 0)
            goto error;
        from_own[i] = (int32_t)(own_before < q ? own_before : q);
        from_sup[i] = q - from_own[i];
        if (sqlf(p, "INSERT INTO %s (order_no, line_no, sku, qty, from_own, from_sup, status) "
                    "VALUES (%" PRIu32 ", %" PRIu32 ", %" PRIu32 ", %d, %d, %d, 'confirmed')",
                 p->orders, ev->no, i, ev->line_sku[i], q, from_own[i], from_sup[i]) != 0)
            goto error;
    }
    if (sqlf(p, "COMMIT") != 0)
        goto error;
    return ANS_YES;
error:
    sqlf(p, "ROLLBACK");
    return ANS_ERROR;
}

/* Cancels a confirmed order: its own units go back, the row says why.
 * naive gives the supplier units back too (qty += n, as such code does);
 * seed does not: its sync after the order has just rewritten the figure,
 * and adding the order's units on top would count them twice. */
static int cancel(peer *p, sn_ctx *c, const sn_event *ev, const int32_t *from_own,
                  const int32_t *from_sup, sn_fate why)
{
    sn_acct_cancel(c->acct, ev->no, why);
    sn_acct_alert(c->acct, 1);       /* seed alerts; naive's failed purchase lands on a desk too */
    if (sqlf(p, "START TRANSACTION") != 0)
        return -1;
    for (uint32_t i = 0; i < ev->n_lines; i++)
        if (sqlf(p, "UPDATE %s SET own = own + %d, sup = sup + %d WHERE sku = %" PRIu32,
                 p->stock, from_own[i], p->seed ? 0 : from_sup[i], ev->line_sku[i]) != 0)
            return -1;
    if (sqlf(p, "UPDATE %s SET status = '%s' WHERE order_no = %" PRIu32, p->orders,
             sn_fate_name(why), ev->no) != 0)
        return -1;
    return sqlf(p, "COMMIT");
}

/* preview (create false) or purchase of line i, with retries. */
static sn_call_rc supplier_call(sn_ctx *c, const sn_event *ev, uint32_t i, int32_t qty,
                                bool create, char *code, size_t len)
{
    const sn_sku *s = &c->sc->skus[ev->line_sku[i]];
    const sn_offer *o = &c->sc->offers[s->offer];
    char spec[72], out[96];
    sn_spec_id(o, s->spec, spec, sizeof spec);
    sn_out_order_id(c, ev->no, i, out, sizeof out);
    sn_call_rc rc = SN_CALL_RETRY;
    for (int t = 0; t < SN_PEER_TRIES && rc == SN_CALL_RETRY; t++)
        rc = sn_fake_order(c->fake, create, o->offer_id, spec, qty, out, code, len);
    return rc;
}

/* After the answer: (seed) sync and check, then buy the supplier units. */
static int after_order(peer *p, sn_ctx *c, const sn_event *ev, const int32_t *from_own,
                       const int32_t *from_sup)
{
    char code[64];
    if (p->seed) {
        for (uint32_t i = 0; i < ev->n_lines; i++) {
            const sn_sku *s = &c->sc->skus[ev->line_sku[i]];
            bool seen = false;
            for (uint32_t j = 0; j < i; j++)
                seen = seen || c->sc->skus[ev->line_sku[j]].offer == s->offer;
            if (from_sup[i] > 0 && !seen && sync_offer(p, c, &c->sc->offers[s->offer]) != 0)
                return -1;
        }
        for (uint32_t i = 0; i < ev->n_lines; i++) {
            if (from_sup[i] == 0)
                continue;
            sn_call_rc rc = supplier_call(c, ev, i, from_sup[i], false, code, sizeof code);
            if (rc != SN_CALL_OK)
                return cancel(p, c, ev, from_own, from_sup,
                              rc == SN_CALL_RETRY ? SN_FATE_API : sn_fate_of_code(code));
        }
    }
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        if (from_sup[i] == 0)
            continue;
        sn_call_rc rc = supplier_call(c, ev, i, from_sup[i], true, code, sizeof code);
        if (rc != SN_CALL_OK)
            return cancel(p, c, ev, from_own, from_sup,
                          rc == SN_CALL_RETRY ? SN_FATE_API : sn_fate_of_code(code));
        const sn_sku *s = &c->sc->skus[ev->line_sku[i]];
        sn_acct_bought(c->acct, ev->no, i, c->price_changed[s->offer]);
    }
    return 0;
}

static int peer_order(sn_ctx *c, void *st, const sn_event *ev)
{
    peer *p = st;
    int32_t from_own[SN_LINES_MAX] = {0}, from_sup[SN_LINES_MAX] = {0};
    char token[64];
    uint32_t n_locked = 0;
    uint64_t t0 = sn_mono_ns();
    ans a = ANS_YES;
    if (p->seed) {
        snprintf(token, sizeof token, "%s:%" PRIu32, c->nonce, ev->no);
        if (lock_lines(p, c, ev, token, &n_locked) != 0)
            a = ANS_ERROR;
        else
            a = cached_read(p, c, ev);
    }
    if (a == ANS_YES)
        a = take(p, c, ev, from_own, from_sup);
    if (p->seed) {
        for (uint32_t i = 0; i < ev->n_lines && a == ANS_YES; i++) {
            redisReply *rep = redisCommand(p->r, "DEL sn:%s:cache:{%" PRIu32 "}", c->nonce,
                                           ev->line_sku[i]);
            if (rep)
                freeReplyObject(rep);
        }
        unlock_lines(p, c, ev, token, n_locked);
    }
    hist_record(&c->hist, (sn_mono_ns() - t0) / 1000u);
    c->answers++;
    if (a != ANS_YES) {
        int64_t orderable[SN_LINES_MAX];
        if (sn_truth_lines(c, ev, orderable) != 0) {
            snprintf(c->note, sizeof c->note, "%s", c->fake->err);
            return -1;
        }
        sn_acct_no(c->acct, ev, orderable, a == ANS_ERROR);
        return 0;
    }
    sn_acct_yes(c->acct, ev, from_own, from_sup);
    if (after_order(p, c, ev, from_own, from_sup) != 0) {
        snprintf(c->note, sizeof c->note, "%s", p->err);
        return -1;
    }
    return 0;
}

/* ---- setup ---------------------------------------------------------------- */

static void peer_close(sn_ctx *c, void *st)
{
    peer *p = st;
    if (p == NULL)
        return;
    if (p->m != NULL && !c->o->keep) {
        sqlf(p, "DROP TABLE IF EXISTS %s", p->stock);
        sqlf(p, "DROP TABLE IF EXISTS %s", p->orders);
    }
    if (p->r != NULL && !c->o->keep) {
        for (uint32_t s = 0; s < c->sc->n_skus; s++)
            redisAppendCommand(p->r, "DEL sn:%s:cache:{%" PRIu32 "} sn:%s:lock:{%" PRIu32 "}",
                               c->nonce, s, c->nonce, s);
        for (uint32_t s = 0; s < c->sc->n_skus; s++) {
            void *rep = NULL;
            if (redisGetReply(p->r, &rep) != REDIS_OK)
                break;
            freeReplyObject(rep);
        }
    }
    if (p->m)
        mysql_close(p->m);
    if (p->r)
        redisFree(p->r);
    free(p->broken);
    free(p->mapped_price);
    free(p);
}

static int peer_open_common(sn_ctx *c, void **st, bool seed, char *err, size_t len)
{
    const bench_opts *o = c->o;
    if (!o->has_db || (seed && !o->has_redis)) {
        snprintf(err, len, "%s needs --db%s", seed ? "seed" : "naive", seed ? " and --redis" : "");
        return -1;
    }
    peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    *st = p;
    p->seed = seed;
    snprintf(p->stock, sizeof p->stock, "`%s`.sn_stock_%s", o->peer_db, c->nonce);
    snprintf(p->orders, sizeof p->orders, "`%s`.sn_orders_%s", o->peer_db, c->nonce);
    p->m = bench_db_connect(&o->db, NULL, false, err, len);
    if (p->m == NULL)
        goto fail;
    if (sqlf(p, "CREATE DATABASE IF NOT EXISTS `%s`", o->peer_db) != 0 ||
        sqlf(p, "CREATE TABLE %s (sku INT UNSIGNED PRIMARY KEY, own INT NOT NULL, "
                "sup INT NOT NULL) ENGINE=InnoDB", p->stock) != 0 ||
        sqlf(p, "CREATE TABLE %s (order_no INT UNSIGNED, line_no INT UNSIGNED, sku INT UNSIGNED, "
                "qty INT, from_own INT, from_sup INT, status VARCHAR(16), "
                "PRIMARY KEY (order_no, line_no)) ENGINE=InnoDB", p->orders) != 0) {
        snprintf(err, len, "%s", p->err);
        goto fail;
    }
    /* Every SKU with its own stock, supplier figures from the first snapshot. */
    for (uint32_t s = 0; s < c->sc->n_skus; s += SN_UPSERT_ROWS) {
        char sql[SN_UPSERT_ROWS * 32 + 128];
        size_t n = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s (sku, own, sup) VALUES ",
                                    p->stock);
        for (uint32_t k = s; k < c->sc->n_skus && k < s + SN_UPSERT_ROWS; k++)
            n += (size_t)snprintf(sql + n, sizeof sql - n, "%s(%" PRIu32 ",%d,0)", k > s ? "," : "",
                                  k, c->sc->skus[k].own);
        if (bench_db_exec(p->m, sql, err, len) != 0)
            goto fail;
    }
    if (seed) {
        p->broken = calloc(c->sc->n_skus, sizeof *p->broken);
        p->mapped_price = calloc(c->sc->n_skus, sizeof *p->mapped_price);
        p->r = rds_blocking(o, err, len);
        if (!p->broken || !p->mapped_price || p->r == NULL ||
            rds_script_load(p->r, LUA_UNLOCK, p->unlock_sha, err, len) != 0)
            goto fail;
        for (uint32_t i = 0; i < c->sc->n_offers; i++) {
            const sn_offer *of = &c->sc->offers[i];
            for (uint32_t k = 0; k < of->n_specs; k++)
                p->mapped_price[of->sku[k]] = of->price_fen[k];
        }
        p->next_validate_ms = SN_VALIDATE_MS;
    }
    p->next_snapshot_ms = 0;          /* the first tick takes the snapshot at 0 */
    c->now_ms = 0;
    if (peer_tick(c, p) != 0) {
        snprintf(err, len, "%s", c->note);
        goto fail;
    }
    return 0;
fail:
    peer_close(c, p);
    *st = NULL;
    return -1;
}

static int naive_open(sn_ctx *c, void **st, char *err, size_t len)
{
    return peer_open_common(c, st, false, err, len);
}

static int seed_open(sn_ctx *c, void **st, char *err, size_t len)
{
    return peer_open_common(c, st, true, err, len);
}

static int peer_finish(sn_ctx *c, void *st)
{
    (void)c;
    (void)st;
    return 0;                         /* everything settled before the next event */
}

const sn_system sn_sys_naive = {
    .name = "naive", .open = naive_open, .tick = peer_tick, .order = peer_order,
    .finish = peer_finish, .close = peer_close,
};

const sn_system sn_sys_seed = {
    .name = "seed", .open = seed_open, .tick = peer_tick, .order = peer_order,
    .finish = peer_finish, .close = peer_close,
};
