/* coldload.c — SKUs not in memory: the Bloom filter of known SKUs,
 * single-flight loads from MariaDB (takeovers when sharded), requests
 * waiting on them, and the Redis read cache's rendering; see coldload.h. */
#include "stockd/coldload.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/node.h"
#include <uthash.h>

#include "stockd/core.h"
#include "stockd/orderload.h"
#include "stockd/reply.h"
#include "stockd/route.h"
#include "stockd/rpc.h"

static eng_err cold_enqueue(server *s, req *r, const char *sku);

/* ------------------------------------------------------------ cold SKUs, read cache
 *
 * With --preload-skus no, a SKU may be in MariaDB but not in memory
 * ("cold"). A request naming a SKU the engine does not hold goes:
 *   Bloom filter says "certainly unknown" -> unknown_sku at once (a sku.put
 *     goes on and creates it), no backend touched;
 *   else one load per SKU (single flight): the first request starts it,
 *     later ones wait on the same entry, in arrival order; when the row
 *     arrives the SKU is loaded into the engine and every waiter is handled
 *     as if it had just arrived (stock.get answered, changes submitted).
 * The owner does not read Redis here: its key names the SKU's supplier,
 * which only the row tells, and the writes that follow need the row anyway.
 * With --preload-skus yes every known SKU is in memory, so a SKU the engine
 * does not hold is unknown and none of this runs. */

typedef struct cold_sku {
    UT_hash_handle hh;
    char sku[ENG_ID_MAX + 1];
    req *head, *tail;             /* waiters, linked through next_free */
    uint32_t n_waiters;
    bool prefetch;                /* started by the startup takeover, not a request */
} cold_sku;

/* Cold SKUs exist with --preload-skus no, and always on a sharded instance
 * (whose every SKU is taken over on first use). */
bool cold_enabled(const server *s)
{
    return !s->cfg->preload_skus || s->ring != NULL;
}

/* Answers a request that waited on a cold load and releases it. */
static void cold_reply(server *s, req *r, eng_err err, const eng_stock_view *v)
{
    rpc_count_at(s, r->m, err, r->start_ns);
    r->op.err = err;
    if (err == ENG_OK) {
        codec_pack_response_ok_head(&s->pk, r->msgid);
        reply_stock(&s->pk, v);
    } else {
        rpc_pack_eng_error(s, r->msgid, &r->op);
    }
    req_finish(s, r);
}

/* Hands a change that waited on a cold load to the engine, as
 * handle_request does for one that arrives while the SKU is loaded. */
static void cold_submit(server *s, req *r)
{
    eng_op *op = &r->op;
    op->kind = rpc_method_op_kind(r->m);
    eng_err err = (!core_store_up(s) || s->draining)
                      ? ENG_E_UNAVAILABLE : engine_submit(s->eng, op, clock_wall_ms());
    if (err != ENG_OK) {
        cold_reply(s, r, err, NULL);
        return;
    }
    evtimer_assign(&r->timer, s->base, rpc_deadline_cb, r);
    struct timeval tv = {r->deadline_ms / 1000, (r->deadline_ms % 1000) * 1000};
    evtimer_add(&r->timer, &tv);
    core_pump_schedule(s);
}

/* The SKU a request would wait on: its own when the engine does not hold
 * it, for a reserve with lines the first line's SKU not held (line set to
 * its index, else -1). False when nothing it names is cold. */
static bool cold_target(const server *s, const req *r, enum method m, const char **sku, int32_t *line)
{
    *line = -1;
    if (!cold_enabled(s))
        return false;
    const eng_op *op = &r->op;
    if (m == M_RESERVE && op->n_lines > 0) {
        for (uint32_t i = 0; i < op->n_lines; i++) {
            if (!engine_knows_sku(s->eng, op->lines[i].sku)) {
                *sku = op->lines[i].sku;
                *line = (int32_t)i;
                return true;
            }
        }
        return false;
    }
    /* An order call reaches here with its SKU known only when sharded (a
     * hint or MariaDB's answer): its SKU may need taking over too. */
    bool names_sku = rpc_method_names_sku(m) || (rpc_method_is_order(m) && op->sku[0] != '\0' && s->ring != NULL);
    if (!names_sku || engine_knows_sku(s->eng, op->sku))
        return false;
    *sku = op->sku;
    return true;
}

/* A reserve with lines whose load of loaded ended with result >= 0: every
 * SKU of its lines must be held before the submit, so it waits on the
 * next cold one, if any (one load at a time, in line order). The next
 * load is asked for from the loop, not from inside the store's callback. */
static void cold_lines_again(server *s, req *r, const char *loaded, int result)
{
    const char *sku;
    int32_t line;
    if (!cold_target(s, r, r->m, &sku, &line)) {
        cold_submit(s, r);
        return;
    }
    if (result == 0 && strcmp(sku, loaded) == 0) {
        r->op.err_line = line;
        cold_reply(s, r, ENG_E_UNKNOWN_SKU, NULL);
        return;
    }
    r->next_free = NULL;
    if (s->cold_again_tail)
        s->cold_again_tail->next_free = r;
    else
        s->cold_again_head = r;
    s->cold_again_tail = r;
    event_active(s->cold_again_ev, EV_TIMEOUT, 0);
}

void cold_again_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    req *r = s->cold_again_head;
    s->cold_again_head = s->cold_again_tail = NULL;
    while (r != NULL) {
        req *next = r->next_free;
        r->next_free = NULL;
        const char *sku;
        int32_t line;
        eng_err err = ENG_OK;
        if (!cold_target(s, r, r->m, &sku, &line))
            cold_submit(s, r);
        else if ((err = cold_enqueue(s, r, sku)) != ENG_OK) {
            r->op.err_line = line;
            cold_reply(s, r, err, NULL);
        }
        r = next;
    }
}

/* One waiter, once the load of sku ended with result (see store_load_fn). */
static void cold_handle_waiter(server *s, req *r, const char *sku, int result)
{
    eng_stock_view v;
    if (r->reload_sku) {
        orderload_sku_loaded(s, r, result);
    } else if (result < 0) {
        cold_reply(s, r, ENG_E_UNAVAILABLE, NULL);
    } else if (route_hint_missed(s, r, r->m)) {
        /* As in local_request: the SKU is loaded now, the order is not on it. */
        s->order_lookups++;
        conn *c = r->c;
        req_reroute(r);
        route_coordinate_order(s, c, r, r->msgid, r->m, r->deadline_ms);
        conn_release(c);  /* coordinate_order took its own hold */
    } else if (r->m == M_RESERVE && r->op.n_lines > 0) {
        cold_lines_again(s, r, sku, result);
    } else if (r->m == M_ORDER_GET) {
        eng_order_view o;
        bool found = rpc_order_read(s, &r->op, &o);
        rpc_count_at(s, r->m, found ? ENG_OK : ENG_E_NOT_FOUND, r->start_ns);
        if (found) {
            codec_pack_response_ok_head(&s->pk, r->msgid);
            rpc_pack_order(s, &s->pk, &o);
        } else {
            r->op.err = ENG_E_NOT_FOUND;
            rpc_pack_eng_error(s, r->msgid, &r->op);
        }
        req_finish(s, r);
    } else if (rpc_method_is_order(r->m) && !rpc_order_known(s, &r->op)) {
        cold_reply(s, r, ENG_E_NOT_FOUND, NULL);
    } else if (r->m == M_STOCK_GET)
        cold_reply(s, r, engine_stock_get(s->eng, r->op.sku, &v) ? ENG_OK : ENG_E_UNKNOWN_SKU, &v);
    else if (r->m == M_SKU_RECHECK && engine_stock_get(s->eng, r->op.sku, &v)) {
        rpc_count_at(s, r->m, ENG_OK, r->start_ns);
        rpc_pack_recheck(s, r->msgid, &v);
        req_finish(s, r);
    } else if (r->m == M_SKU_RECHECK)
        cold_reply(s, r, ENG_E_UNKNOWN_SKU, NULL);
    else if (result == 0 && r->m != M_SKU_PUT && !engine_knows_sku(s->eng, r->op.sku))
        cold_reply(s, r, ENG_E_UNKNOWN_SKU, NULL);
    else
        cold_submit(s, r);
}

static void cold_loaded(const char *sku, int result, const store_sku_row *row, void *arg)
{
    server *s = arg;
    cold_sku *k;
    HASH_FIND_STR(s->cold, sku, k);
    assert(k != NULL);
    HASH_DEL(s->cold, k);
    s->n_cold--;
    if (k->prefetch)
        s->n_prefetch--;
    if (result == 1) {
        /* Nobody could have created it meanwhile: its requests waited here.
         * A takeover (sharded) loaded it, with its orders, already. */
        if (engine_knows_sku(s->eng, sku) ||
            engine_load_sku(s->eng, sku, &row->c, row->mapping, store_sku_row_map(row),
                            row->epoch)) {
            s->cold_loaded++;
            if (s->cache)
                cache_mark(s->cache, sku);  /* storefronts find it in Redis from now on */
        } else {
            LOG_W("cold load: row refused by the engine", "sku", sku);
            result = -1;
        }
    } else if (result == 0) {
        s->cold_missing++;
        if (s->bloom)
            bloom_note_false_positive(s->bloom);
    }
    if (result < 0)
        s->cold_failed++;
    req *r = k->head;
    char name[ENG_ID_MAX + 1];
    memcpy(name, k->sku, sizeof name);
    free(k);
    while (r != NULL) {
        req *next = r->next_free;
        r->next_free = NULL;
        cold_handle_waiter(s, r, name, result);
        r = next;
    }
}

/* Answers a request now (it never waited). */
static void cold_refuse(server *s, conn *c, req *r, uint32_t msgid, enum method m, eng_err err)
{
    r->op.err = err;
    rpc_count(s, m, err);
    rpc_pack_eng_error(s, msgid, &r->op);
    rpc_flush(s, c);
    req_put(s, r);
}

/* Queues r (r->c, msgid, m, deadline_ms set) on the load of sku, starting
 * it unless one is in flight. ENG_OK: queued (the connection not held yet);
 * ENG_E_UNKNOWN_SKU: the Bloom filter says certainly unknown; else the
 * error to answer. */
static eng_err cold_enqueue(server *s, req *r, const char *sku)
{
    cold_sku *k;
    HASH_FIND_STR(s->cold, sku, k);
    if (k == NULL) {
        /* The Bloom filter only knows SKUs seen by this instance: a sharded
         * one may be handed SKUs another created. */
        if (s->bloom != NULL && s->ring == NULL && !bloom_check(s->bloom, sku, strlen(sku)))
            return ENG_E_UNKNOWN_SKU;
        /* The startup takeover's own loads do not count: requests must not
         * be refused `busy` while it runs. */
        if (s->st == NULL || s->n_cold - s->n_prefetch >= s->cfg->cold_loads_max)
            return s->st == NULL ? ENG_E_UNAVAILABLE : ENG_E_BUSY;
        k = calloc(1, sizeof(*k));
        if (k == NULL)
            return ENG_E_INTERNAL;
        snprintf(k->sku, sizeof k->sku, "%s", sku);
        if (store_load_sku(s->st, k->sku, cold_loaded, s) != 0) {
            free(k);
            return ENG_E_BUSY;
        }
        HASH_ADD_STR(s->cold, sku, k);
        s->n_cold++;
        s->cold_loads++;
    } else if (k->n_waiters >= s->cfg->queue_per_sku_max) {
        return ENG_E_BUSY;
    }
    s->cold_waits++;
    r->next_free = NULL;
    if (k->tail)
        k->tail->next_free = r;
    else
        k->head = r;
    k->tail = r;
    k->n_waiters++;
    return ENG_OK;
}

bool cold_wait_held(server *s, req *r, const char *sku)
{
    return cold_enqueue(s, r, sku) == ENG_OK;
}

/* Takes a request naming a SKU the engine does not hold. Returns false when
 * the normal path should handle it (SKU held, preloaded state, a sku.put of
 * a certainly new SKU); true when it was answered or now waits. */
bool cold_intercept(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                           int64_t deadline_ms)
{
    const char *sku;
    int32_t line;
    if (!cold_target(s, r, m, &sku, &line))
        return false;
    r->c = c;
    r->msgid = msgid;
    r->m = m;
    r->deadline_ms = deadline_ms;
    eng_err err = cold_enqueue(s, r, sku);
    if (err == ENG_OK) {
        req_hold(r, c);
        return true;
    }
    if (err == ENG_E_UNKNOWN_SKU && m == M_SKU_PUT)
        return false;
    r->op.err_line = line;
    cold_refuse(s, c, r, msgid, m, err);
    return true;
}

/* Appends a decimal integer field ("name":v) to a JSON object in buf. */
static size_t json_int(char *buf, size_t cap, size_t off, const char *name, int64_t v)
{
    int n = snprintf(buf + off, off < cap ? cap - off : 0, "%s\"%s\":%lld", off > 1 ? "," : "",
                     name, (long long)v);
    return off + (n > 0 ? (size_t)n : 0);
}

/* The cache module's render callback: key stock:{supplier}:{sku} and the
 * JSON value documented in proto/PROTOCOL.md ("Read cache in Redis"). */
static bool cache_render(const char *sku, char *key, size_t key_cap, char *value,
                         size_t value_cap, size_t *value_len, void *arg)
{
    server *s = arg;
    eng_stock_view v;
    if (!engine_stock_get(s->eng, sku, &v))
        return false;
    /* A broken mapping keeps its key: the storefront reads the same key
     * and sees the supplier figure drop, not a stale value until the TTL. */
    const char *supplier = v.has_map ? v.map.supplier_id : "own";
    /* Rows older than the rule (rpc_parse: no ':', not "own") get no key
     * rather than one another SKU's key could equal. */
    if (v.has_map && (strchr(supplier, ':') != NULL || strcmp(supplier, "own") == 0))
        return false;
    int kn = snprintf(key, key_cap, "stock:%s:%s", supplier, sku);
    if (kn < 0 || (size_t)kn >= key_cap)
        return false;
    size_t off = 1;
    value[0] = '{';
    off = json_int(value, value_cap, off, "available", v.available);
    off = json_int(value, value_cap, off, "own_on_hand", v.c.own_on_hand);
    off = json_int(value, value_cap, off, "own_reserved", v.c.own_reserved);
    off = json_int(value, value_cap, off, "supplier_reported", v.c.supplier_reported);
    off = json_int(value, value_cap, off, "supplier_sellable", v.c.supplier_sellable);
    off = json_int(value, value_cap, off, "supplier_reserved", v.c.supplier_reserved);
    off = json_int(value, value_cap, off, "supplier_synced_at", v.c.supplier_synced_at_ms);
    off = json_int(value, value_cap, off, "at", clock_wall_ms());
    int n = snprintf(value + off, off < value_cap ? value_cap - off : 0, ",\"mapping\":\"%s\"}",
                     eng_mapping_name(v.mapping));
    if (n < 0 || off + (size_t)n >= value_cap)
        return false;
    *value_len = off + (size_t)n;
    return true;
}

static void add_sku_to_bloom(const char *sku, size_t len, void *arg)
{
    bloom_add(arg, sku, len);
}

int server_read_path_init(server *s, char *err, size_t err_len)
{
    assert(s->st != NULL && s->bloom == NULL && s->cache == NULL);
    uint64_t n = 0;
    if (store_count_skus(s->st, &n, err, err_len) != 0)
        return -1;
    /* Room to grow: sku.put adds to it at runtime. */
    uint64_t cap = n * 2 > s->cfg->bloom_min_skus ? n * 2 : s->cfg->bloom_min_skus;
    if (cap > BLOOM_CAPACITY_MAX)
        cap = BLOOM_CAPACITY_MAX;
    s->bloom = bloom_new(cap, s->cfg->bloom_fp_ppm);
    if (s->bloom == NULL) {
        snprintf(err, err_len, "bloom filter for %llu SKUs: out of memory", (unsigned long long)cap);
        return -1;
    }
    if (store_each_sku(s->st, add_sku_to_bloom, s->bloom, err, err_len) != 0)
        return -1;
    s->cache = cache_new(s->base, s->cfg, cache_render, s, err, err_len);
    if (s->cache == NULL)
        return -1;
    bloom_stats bs;
    bloom_stats_get(s->bloom, &bs);
    char a[24], b[24], k[8];
    snprintf(a, sizeof a, "%llu", (unsigned long long)bs.items);
    snprintf(b, sizeof b, "%llu", (unsigned long long)(bs.bits / 8));
    snprintf(k, sizeof k, "%u", bs.hashes);
    LOG_I("read path ready", "bloom_skus", a, "bloom_bytes", b, "bloom_hashes", k,
          "preload_skus", s->cfg->preload_skus ? "yes" : "no");
    return 0;
}

/* "read_path" in stats: cold loads, the Bloom filter, the Redis cache. */

/* Frees cold entries still waiting at shutdown (the store abandons loads
 * without callbacks). */
void cold_free_all(server *s)
{
    for (req *r = s->cold_again_head; r != NULL;) {
        req *next = r->next_free;
        rpc_op_free_lines(&r->op);
        free(r);
        r = next;
    }
    s->cold_again_head = s->cold_again_tail = NULL;
    cold_sku *k, *tmp;
    HASH_ITER(hh, s->cold, k, tmp) {
        HASH_DEL(s->cold, k);
        for (req *r = k->head; r != NULL;) {
            req *next = r->next_free;
            rpc_op_free_lines(&r->op);
            free(r);
            r = next;
        }
        free(k);
    }
    s->n_cold = 0;
}

static void prefetch_owned(const char *sku, size_t len, void *arg)
{
    server *s = arg;
    if (len == 0 || len > ENG_ID_MAX || s->n_cold >= STORE_LOAD_QUEUE_MAX / 2)
        return;
    char name[ENG_ID_MAX + 1];
    memcpy(name, sku, len);
    name[len] = '\0';
    if (route_owner_of(s, name) != s->self || engine_knows_sku(s->eng, name))
        return;
    cold_sku *k;
    HASH_FIND_STR(s->cold, name, k);
    if (k != NULL || (k = calloc(1, sizeof(*k))) == NULL)
        return;
    memcpy(k->sku, name, len + 1);
    k->prefetch = true;
    if (store_load_sku(s->st, k->sku, cold_loaded, s) != 0) {
        free(k);
        return;
    }
    HASH_ADD_STR(s->cold, sku, k);
    s->n_cold++;
    s->n_prefetch++;
    s->cold_loads++;
}

int server_take_over_owned(server *s, char *err, size_t err_len)
{
    assert(s->ring != NULL && s->st != NULL);
    store_set_takeover(s->st, s->eng);
    /* Every SKU this node owns is taken over in the background from the
     * start, so that its holds expire on time even if nobody asks for it;
     * a request for one not loaded yet waits on its load as usual. */
    return store_each_sku(s->st, prefetch_owned, s, err, err_len);
}
