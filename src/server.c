/* server.c — listener, connections, msgpack-rpc dispatch, the batch pump.
 *
 * Everything runs on one event_base. A request is decoded and validated
 * in the read callback; reads (ping, stats, stock.get, order.get) are
 * answered at once from memory; changes go to the engine, which answers
 * them through done_cb after their batch committed. The pump runs as a
 * deferred event after the current round of callbacks, so every request
 * read in one loop iteration can share one batch.
 */
#include "stockd/server.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <uthash.h>
#include <xxhash.h>

#include "stockd/bloom.h"
#include "stockd/cache.h"
#include "stockd/cart.h"
#include "stockd/codec.h"
#include "stockd/conn.h"
#include "stockd/peer.h"
#include "stockd/notify.h"
#include "stockd/peer_auth.h"
#include "stockd/reply.h"
#include "stockd/stats.h"
#include "stockd/ring.h"
#include "stockd/hist.h"
#include "stockd/log.h"
#include "stockd/purchase.h"
#include "stockd/rpc_parse.h"
#include "stockd/supplier.h"
#include "stockd/supplier_sync.h"

#define EXPIRY_TICK_MS 50
#define COMMITS_TRACKED 64        /* > STORE_CONNS_MAX: batches in commit at once */

/* Result slots of the per-method counters: engine errors, plus these. */
enum { RES_UNAUTHORIZED = ENG_E_COUNT_, RES_TOO_LARGE, RES_UNKNOWN_METHOD, RES_COUNT };

/* What the server keeps per connection (conn_data). */
typedef struct client {
    server *srv;
    /* The peer handshake (peer_auth.h), accepting side: a peer.hello was
     * answered (hello), then peer.auth proved the secret (peer). Only a
     * peer connection may send peer-only fields. */
    bool hello, peer;
    int key;
    char node[PEER_NODE_MAX + 1];
    uint8_t na[PEER_NONCE_BYTES], nb[PEER_NONCE_BYTES];
} client;

static client *cl(conn *c)
{
    return conn_data(c);
}

typedef struct req {
    eng_op op;                    /* op.ctx == this */
    conn *c;
    uint32_t msgid;
    enum method m;
    int64_t start_ns;             /* frame read: latency is measured from here */
    struct event timer;           /* deadline while queued */
    int64_t deadline_ms;          /* a change waiting on a cold SKU's load */
    struct req *next_free;        /* free list; cold SKU waiters */
    char owner[RING_NAME_MAX + 1]; /* sharding: the node a forwarded request went to */
    int32_t limit;                /* alerts.list */
    bool fwd;                     /* sent by a peer: never forwarded again */
    bool nf_checked;              /* a not_found from memory already asked MariaDB */
    bool cart_routed;             /* an order call the coordinator found to have one SKU and
                                   * routed by it: never handed to the coordinator again */
} req;

struct server {
    struct event_base *base;
    const stockd_config *cfg;
    engine *eng;
    store *st;
    conn_mgr *cm;
    struct event *pump_ev;
    struct event *tick_ev;
    struct event *drain_ev;
    bool pump_armed;
    bool draining;
    const struct timeval *deadline_tv_default;
    req *free_reqs;
    msgpack_zone zone;
    msgpack_sbuffer out;
    msgpack_packer pk;
    int64_t started_ms;
    /* counters */
    uint64_t notifications;
    uint64_t results[M_COUNT][RES_COUNT];
    uint64_t outcome_unknown;
    /* latency: every answer is counted in results[][] and recorded in
     * latency_us[] at the same place, so the two always agree */
    int64_t frame_start_ns;       /* the frame being handled now */
    hist latency_us[M_COUNT];
    hist batch_ops;
    hist commit_us;
    struct { uint64_t batch_id; int64_t start_ns; } commits[COMMITS_TRACKED];
    bool listening;
    uint64_t reloads;
    /* read path: cold SKUs, Bloom filter, Redis cache */
    struct cold_sku *cold;        /* uthash by sku: loads in flight */
    uint32_t n_cold;
    uint32_t n_prefetch;          /* of n_cold: startup takeovers nobody waits on yet */
    uint64_t cold_loads, cold_waits, cold_loaded, cold_missing, cold_failed;
    struct req *cold_again_head, *cold_again_tail; /* carts waiting for their next cold SKU */
    struct event *cold_again_ev;
    bloom *bloom;
    cache *cache;
    /* sharding (NULL ring: a single node owning every SKU) */
    ring *ring;
    uint32_t self;                /* this node's index in the ring */
    peer_pool *peers;
    peer_keyring keyring;         /* the cluster secrets (cfg), rebuilt on reload */
    uint64_t peer_auth_ok, peer_auth_failed, peer_only_refused;
    char **forget;                /* SKUs to drop from memory when idle */
    size_t n_forget, cap_forget;
    uint64_t fwd_calls, fwd_failed, not_owner, fence_drops, order_lookups, ring_changes;
    uint64_t nf_checks, nf_routed, nf_stale;   /* not_found asked of MariaDB (sharded) */
    supplier_sync *supsync;       /* NULL: supplier sync off (no --supplier-url) */
    supplier_client *supc;        /* shared by sync and purchases (one app key) */
    purchase *purch;
    /* order.subscribe listeners (order.update notifications) */
    notify *notify;               /* order.subscribe listeners, alerts ring (notify.h) */
    uint64_t alerts_total, alerts_no_cache;
    /* orders of several lines */
    bool parts_mode;              /* sharded: multi-line orders are parts here */
    cart *cart;                   /* sharded: the coordinator (NULL: not built in) */
    uint64_t lines_reserves, lines_total, lines_coordinated;
    eng_line_view line_buf[ENG_LINES_MAX]; /* pack_order scratch */
};


_Static_assert(M_COUNT <= STATS_METHODS_MAX && RES_COUNT <= STATS_RESULTS_MAX,
               "stats_snapshot arrays too small");

static void pump_schedule(server *s);

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ replies */

/* Sends what was packed into s->out to the connection, if it still has a
 * socket. */
static void out_flush(server *s, conn *c)
{
    conn_send(c, s->out.data, s->out.size);
    msgpack_sbuffer_clear(&s->out);
}

/* An order record (reply.h), with the lines of a whole order of several
 * lines from the engine; in parts mode a multi-line order here is a part. */
static void pack_order(server *s, msgpack_packer *pk, const eng_order_view *o)
{
    size_t nl = 0;
    if (o->n_lines > 1 && !s->parts_mode)
        nl = engine_order_lines(s->eng, o->order_id, s->line_buf, ENG_LINES_MAX);
    reply_order(pk, o, s->parts_mode, s->line_buf, nl);
}

/* Counts an answer to a request read at start_ns. */
static void count_at(server *s, enum method m, int res, int64_t start_ns)
{
    assert(m < M_COUNT && res < RES_COUNT);
    s->results[m][res]++;
    int64_t d = mono_ns() - start_ns;
    hist_record(&s->latency_us[m], d > 0 ? (uint64_t)d / 1000 : 0);
}

/* Counts an answer to the frame being handled now. */
static const char *result_name(int r)
{
    return r < ENG_E_COUNT_ ? eng_err_code((eng_err)r)
         : r == RES_UNAUTHORIZED ? "unauthorized"
         : r == RES_TOO_LARGE ? "too_large" : "unknown_method";
}

static void count(server *s, enum method m, int res)
{
    count_at(s, m, res, s->frame_start_ns);
}

/* The error answer of op (reply.h), naming what was set aside at load
 * when a miss was about a SKU or order set aside. */
static void pack_eng_error(server *s, uint32_t msgid, const eng_op *op)
{
    char aside[ENG_REASON_MAX + 1];
    bool is_aside = (op->err == ENG_E_UNKNOWN_SKU || op->err == ENG_E_NOT_FOUND) &&
                    op->err_aside[0] == '\0' && engine_aside_of(s->eng, op, aside);
    reply_eng_error(&s->pk, msgid, op, is_aside ? aside : NULL);
}

static void reply_simple_error(server *s, conn *c, uint32_t msgid, const char *code,
                               const char *message, bool retryable, const char *dkey,
                               const char *dval)
{
    reply_error(&s->pk, msgid, code, message, retryable, dkey, dval);
    out_flush(s, c);
}

static void reply_invalid(server *s, conn *c, uint32_t msgid, enum method m,
                          const char *field, const char *problem)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s: %s", field, problem);
    count(s, m, ENG_E_INVALID);
    reply_simple_error(s, c, msgid, "invalid", msg, false, "field", field);
}

/* ------------------------------------------------------------ requests */

static req *req_get(server *s)
{
    req *r = s->free_reqs;
    if (r != NULL) {
        s->free_reqs = r->next_free;
    } else if ((r = malloc(sizeof(*r))) == NULL) {
        return NULL;
    }
    memset(&r->op, 0, sizeof(r->op));
    r->op.ctx = r;
    r->op.err_line = -1;
    r->next_free = NULL;
    r->cart_routed = false;
    r->fwd = false;
    r->nf_checked = false;
    return r;
}

/* Releases a request; its lines (rpc_parse) go with it. */
static void req_put(server *s, req *r)
{
    rpc_op_free_lines(&r->op);
    r->next_free = s->free_reqs;
    s->free_reqs = r;
}

/* Sends what was packed for a request held on its connection (conn_hold)
 * and ends it: the one way every answer that waited (engine, deadline,
 * cold load, forward) leaves, so the connection is freed exactly when its
 * last request is answered. */
static void req_finish(server *s, req *r)
{
    conn *c = r->c;
    out_flush(s, c);
    req_put(s, r);
    conn_release(c);
}

static bool nf_verify(server *s, req *r);

/* The engine answered a request: reply and release it. */
static void done_cb(eng_op *op, void *arg)
{
    server *s = arg;
    req *r = op->ctx;
    evtimer_del(&r->timer);
    if (op->err == ENG_E_NOT_FOUND && nf_verify(s, r))
        return;  /* MariaDB answers (nf_checked_cb) */
    count_at(s, r->m, op->err, r->start_ns);
    if (op->outcome_unknown)
        s->outcome_unknown++;
    if (op->err == ENG_OK) {
        codec_pack_response_ok_head(&s->pk, r->msgid);
        if (r->m == M_SKU_PUT || r->m == M_ADJUST)
            reply_stock(&s->pk, &op->stock);
        else if (r->m == M_SUPPLIER_PUT)
            reply_trust(&s->pk, op->supplier.supplier_id, &op->trust);
        else
            pack_order(s, &s->pk, &op->order);
    } else {
        pack_eng_error(s, r->msgid, op);
    }
    req_finish(s, r);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    req *r = arg;
    server *s = cl(r->c)->srv;
    if (!engine_cancel(s->eng, &r->op))
        return;  /* already decided: the commit (bounded by its timeout) answers */
    r->op.err = ENG_E_DEADLINE;
    count_at(s, r->m, ENG_E_DEADLINE, r->start_ns);
    pack_eng_error(s, r->msgid, &r->op);
    req_finish(s, r);
}

/* Constant-time: the comparison takes the same time wherever it differs. */
static bool token_ok(const server *s, const msgpack_object *tok)
{
    const char *want = s->cfg->admin_token;
    size_t wn = strlen(want);
    if (wn == 0)
        return true;
    if (tok == NULL)
        return false;
    size_t gn = tok->via.str.size;
    unsigned char diff = (unsigned char)(gn != wn);
    for (size_t i = 0; i < wn; i++) {
        unsigned char g = i < gn ? (unsigned char)tok->via.str.ptr[i] : 0;
        diff |= g ^ (unsigned char)want[i];
    }
    return diff == 0;
}

/* ------------------------------------------------------------ dispatch */

static void pack_ring_or_self(server *s);
static void forget_later(server *s, const char *sku);
static void forget_sweep(server *s);

/* A read of something that is not there: answered now. */
static void reply_read_miss(server *s, conn *c, uint32_t msgid, enum method m, eng_op *op, eng_err err)
{
    op->err = err;
    count(s, m, err);
    pack_eng_error(s, msgid, op);
    out_flush(s, c);
}


/* The committed record an order call names: a part (a peer's call with
 * part_lines) or an order. */
static bool order_read(const server *s, const eng_op *op, eng_order_view *out)
{
    if (op->part_lines > 0)
        return engine_part_get(s->eng, op->order_id, op->line_no, out);
    return engine_order_get(s->eng, op->order_id, out);
}

/* True when the order (or part) an order call names is in memory. */
static bool order_known(const server *s, const eng_op *op)
{
    if (op->part_lines > 0)
        return engine_part_sku(s->eng, op->order_id, op->line_no, NULL);
    return engine_order_sku(s->eng, op->order_id, NULL);
}

static void handle_read_only(server *s, conn *c, uint32_t msgid, enum method m, req *r)
{
    msgpack_packer *pk = &s->pk;
    eng_op *op = &r->op;
    if (m == M_ORDER_SUBSCRIBE) {
        if (!notify_subscribe(s->notify, c)) {
            count(s, m, ENG_E_BUSY);
            reply_simple_error(s, c, msgid, "busy", "too many order.subscribe connections", true,
                               NULL, NULL);
            return;
        }
        codec_pack_response_ok_head(pk, msgid);
        msgpack_pack_map(pk, 1);
        codec_pack_kv_bool(pk, "subscribed", true);
    } else if (m == M_ALERTS_LIST) {
        codec_pack_response_ok_head(pk, msgid);
        notify_alerts_pack(s->notify, pk, r->limit > 0 ? (uint32_t)r->limit : RPC_ALERTS_LIMIT_DEFAULT);
    } else if (m == M_SUPPLIER_GET) {
        eng_trust t;
        if (!engine_supplier_trust(s->eng, op->supplier.supplier_id, &t)) {
            count(s, m, ENG_E_NOT_FOUND);
            reply_simple_error(s, c, msgid, "not_found", "supplier not found", false, NULL, NULL);
            return;
        }
        codec_pack_response_ok_head(pk, msgid);
        reply_trust(pk, op->supplier.supplier_id, &t);
    } else if (m == M_PING) {
        codec_pack_response_ok_head(pk, msgid);
        msgpack_pack_map(pk, 2);
        codec_pack_kv_str(pk, "node", s->cfg->node);
        codec_pack_kv_str(pk, "version", STOCKD_VERSION);
    } else if (m == M_STATS) {
        stats_snapshot *snap = malloc(sizeof *snap);
        if (snap == NULL) {
            reply_read_miss(s, c, msgid, m, &r->op, ENG_E_INTERNAL);
            return;
        }
        server_stats_get(s, snap);
        codec_pack_response_ok_head(pk, msgid);
        stats_pack(snap, pk);
        free(snap);
    } else if (m == M_CLUSTER_RING) {
        codec_pack_response_ok_head(pk, msgid);
        pack_ring_or_self(s);
    } else if (m == M_STOCK_GET) {
        eng_stock_view v;
        if (!engine_stock_get(s->eng, op->sku, &v)) {
            reply_read_miss(s, c, msgid, m, op, ENG_E_UNKNOWN_SKU);
            return;
        }
        codec_pack_response_ok_head(pk, msgid);
        reply_stock(pk, &v);
    } else {
        assert(m == M_ORDER_GET);
        eng_order_view v;
        if (!order_read(s, op, &v)) {
            reply_read_miss(s, c, msgid, m, op, ENG_E_NOT_FOUND);
            return;
        }
        codec_pack_response_ok_head(pk, msgid);
        pack_order(s, pk, &v);
    }
    count(s, m, ENG_OK);
    out_flush(s, c);
}

static const eng_op_kind op_kind_of[M_COUNT] = {
    [M_RESERVE] = ENG_OP_RESERVE, [M_CONFIRM] = ENG_OP_CONFIRM, [M_RELEASE] = ENG_OP_RELEASE,
    [M_SHIP] = ENG_OP_SHIP, [M_SKU_PUT] = ENG_OP_SKU_PUT, [M_ADJUST] = ENG_OP_ADJUST,
    [M_SUPPLIER_PUT] = ENG_OP_SUPPLIER_PUT,
};

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

static bool method_names_sku(enum method m)
{
    return m == M_STOCK_GET || m == M_RESERVE || m == M_SKU_PUT || m == M_ADJUST;
}

static bool method_is_order(enum method m)
{
    return m == M_CONFIRM || m == M_RELEASE || m == M_SHIP || m == M_ORDER_GET;
}

/* Cold SKUs exist with --preload-skus no, and always on a sharded instance
 * (whose every SKU is taken over on first use). */
static bool cold_enabled(const server *s)
{
    return !s->cfg->preload_skus || s->ring != NULL;
}

/* Answers a request that waited on a cold load and releases it. */
static void cold_reply(server *s, req *r, eng_err err, const eng_stock_view *v)
{
    count_at(s, r->m, err, r->start_ns);
    r->op.err = err;
    if (err == ENG_OK) {
        codec_pack_response_ok_head(&s->pk, r->msgid);
        reply_stock(&s->pk, v);
    } else {
        pack_eng_error(s, r->msgid, &r->op);
    }
    req_finish(s, r);
}

/* Hands a change that waited on a cold load to the engine, as
 * handle_request does for one that arrives while the SKU is loaded. */
static void cold_submit(server *s, req *r)
{
    eng_op *op = &r->op;
    op->kind = op_kind_of[r->m];
    eng_err err = (s->st == NULL || !store_up(s->st) || s->draining)
                      ? ENG_E_UNAVAILABLE : engine_submit(s->eng, op, now_ms());
    if (err != ENG_OK) {
        cold_reply(s, r, err, NULL);
        return;
    }
    evtimer_assign(&r->timer, s->base, deadline_cb, r);
    struct timeval tv = {r->deadline_ms / 1000, (r->deadline_ms % 1000) * 1000};
    evtimer_add(&r->timer, &tv);
    pump_schedule(s);
}

static eng_err cold_enqueue(server *s, req *r, const char *sku);

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
    bool names_sku = method_names_sku(m) || (method_is_order(m) && op->sku[0] != '\0' && s->ring != NULL);
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

static void cold_again_cb(evutil_socket_t fd, short what, void *arg)
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

static bool hint_missed(const server *s, const req *r, enum method m);
static void coordinate_order(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                             int64_t deadline_ms);

/* One waiter, once the load of sku ended with result (see store_load_fn). */
static void cold_handle_waiter(server *s, req *r, const char *sku, int result)
{
    eng_stock_view v;
    if (result < 0) {
        cold_reply(s, r, ENG_E_UNAVAILABLE, NULL);
    } else if (hint_missed(s, r, r->m)) {
        /* As in local_request: the SKU is loaded now, the order is not on it. */
        s->order_lookups++;
        conn *c = r->c;
        coordinate_order(s, c, r, r->msgid, r->m, r->deadline_ms);
        conn_release(c);  /* coordinate_order took its own hold */
    } else if (r->m == M_RESERVE && r->op.n_lines > 0) {
        cold_lines_again(s, r, sku, result);
    } else if (r->m == M_ORDER_GET) {
        eng_order_view o;
        bool found = order_read(s, &r->op, &o);
        count_at(s, r->m, found ? ENG_OK : ENG_E_NOT_FOUND, r->start_ns);
        if (found) {
            codec_pack_response_ok_head(&s->pk, r->msgid);
            pack_order(s, &s->pk, &o);
        } else {
            r->op.err = ENG_E_NOT_FOUND;
            pack_eng_error(s, r->msgid, &r->op);
        }
        req_finish(s, r);
    } else if (method_is_order(r->m) && !order_known(s, &r->op)) {
        cold_reply(s, r, ENG_E_NOT_FOUND, NULL);
    } else if (r->m == M_STOCK_GET)
        cold_reply(s, r, engine_stock_get(s->eng, r->op.sku, &v) ? ENG_OK : ENG_E_UNKNOWN_SKU, &v);
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
    count(s, m, err);
    pack_eng_error(s, msgid, &r->op);
    out_flush(s, c);
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

/* Takes a request naming a SKU the engine does not hold. Returns false when
 * the normal path should handle it (SKU held, preloaded state, a sku.put of
 * a certainly new SKU); true when it was answered or now waits. */
static bool cold_intercept(server *s, conn *c, req *r, uint32_t msgid, enum method m,
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
        conn_hold(c);
        return true;
    }
    if (err == ENG_E_UNKNOWN_SKU && m == M_SKU_PUT)
        return false;
    r->op.err_line = line;
    cold_refuse(s, c, r, msgid, m, err);
    return true;
}

/* ------------------------------------------------------------ order.subscribe, alerts (notify.h) */

/* [2, "order.update", [order record]] to every listener. */
static void notify_order(server *s, const eng_order_view *o)
{
    if (notify_listeners(s->notify) == 0)
        return;
    pack_order(s, notify_begin(s->notify), o);
    notify_end(s->notify);
}

static const msgpack_object *update_field(const msgpack_object *rec, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < rec->via.map.size; i++) {
        const msgpack_object *k = &rec->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, key, n) == 0)
            return &rec->via.map.ptr[i].val;
    }
    return NULL;
}

/* A peer's order.subscribe {"update": record} (cart.h cart_order_changed):
 * the whole order of a cross-shard cart, told to this node's listeners
 * once per (order_id, status) however many owners send it. The record was
 * built by a stockd coordinator; rpc_parse checked its order_id and
 * status. Answers {"told": listeners reached}. */
static void peer_update(server *s, conn *c, uint32_t msgid, const msgpack_object *rec)
{
    const msgpack_object *id = update_field(rec, "order_id"), *st = update_field(rec, "status");
    assert(id != NULL && st != NULL);
    uint32_t told = 0;
    if (notify_update_first(s->notify, id->via.str.ptr, id->via.str.size, st->via.str.ptr,
                            st->via.str.size) &&
        notify_listeners(s->notify) > 0) {
        msgpack_pack_object(notify_begin(s->notify), *rec);
        told = notify_end(s->notify);
    }
    count(s, M_ORDER_SUBSCRIBE, ENG_OK);
    codec_pack_response_ok_head(&s->pk, msgid);
    msgpack_pack_map(&s->pk, 1);
    codec_pack_kv_int(&s->pk, "told", told);
    out_flush(s, c);
}

void server_alert_load(server *s, const char *kind, const char *sku, const char *order_id,
                       const char *reason, int64_t at_ms)
{
    notify_alert(s->notify, kind, sku, order_id, reason, at_ms);
}

/* A committed alert: the log, the ring, and Redis (best effort). */
static void alert_note(server *s, const eng_alert_row *a)
{
    char at[24];
    snprintf(at, sizeof at, "%lld", (long long)a->at_ms);
    LOG_W("support alert", "kind", a->kind, "sku", a->sku, "order_id", a->order_id,
          "reason", a->reason, "at", at);
    s->alerts_total++;
    notify_alert(s->notify, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
    if (s->cache != NULL)
        (void)cache_xadd_alert(s->cache, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
    else
        s->alerts_no_cache++;
}

/* What a committed batch asks for once the engine has applied it (the
 * batch and its rows are gone by then: SKU names are copied). */
typedef struct notify_ref {
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;
    bool part;
} notify_ref;

/* A part whose purchase failed for good (cart_part_failed). */
typedef struct failed_ref {
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;
    int32_t n_lines;
    char reason[ENG_REASON_MAX + 1];
} failed_ref;

typedef struct post_commit {
    bool wake;                    /* new purchase jobs */
    size_t n_pokes;
    char (*pokes)[ENG_ID_MAX + 1]; /* SKUs whose new orders took supplier units */
    size_t n_notes;
    notify_ref *notes;            /* orders (or parts) order.subscribe hears of */
    size_t n_failed;
    failed_ref *failed;           /* parts whose purchase failed: the order fails whole */
} post_commit;

/* Parts of cross-shard orders whose purchase failed for good in this
 * batch: the job row says "failed" (a cascade's own failures cancel jobs,
 * never fail them, so a cascade never cascades again). */
static void note_failed_parts(server *s, eng_batch *b, post_commit *pc)
{
    const eng_job_row *jobs;
    size_t nj = eng_batch_job_rows(b, &jobs);
    size_t want = 0;
    for (size_t i = 0; i < nj; i++)
        want += jobs[i].state == ENG_JOB_FAILED;
    if (want == 0)
        return;
    const eng_order_row *orows;
    size_t no = eng_batch_order_rows(b, &orows);
    pc->failed = malloc(want * sizeof *pc->failed);
    if (pc->failed == NULL) {
        LOG_E("out of memory: a failed line's order is not failed whole (support: purchase_failed alert)");
        return;
    }
    for (size_t i = 0; i < nj; i++) {
        if (jobs[i].state != ENG_JOB_FAILED)
            continue;
        for (size_t k = 0; k < no; k++) {
            const eng_order_view *o = &orows[k].o;
            if (o->n_lines <= 1 || o->line_no != jobs[i].line_no || o->status != ENG_ST_FAILED)
                continue;
            /* A job row names its line by (order_id, line_no). */
            if (strcmp(o->order_id, jobs[i].order_id) != 0)
                continue;
            failed_ref *f = &pc->failed[pc->n_failed++];
            memcpy(f->order_id, o->order_id, sizeof f->order_id);
            f->line_no = o->line_no;
            f->n_lines = o->n_lines;
            memcpy(f->reason, o->reason, sizeof f->reason);
            break;
        }
    }
}

/* A batch committed: refresh the Redis keys of its SKUs (coalesced and
 * pipelined by the cache module after this round of callbacks, from the
 * committed state), put new SKUs into the Bloom filter, tell order.subscribe
 * listeners, note alerts, and collect what must follow the commit. */
static void note_committed(server *s, eng_batch *b, post_commit *pc)
{
    const eng_sku_row *rows;
    size_t n = eng_batch_sku_rows(b, &rows);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].insert && s->bloom)
            bloom_add(s->bloom, rows[i].sku, strlen(rows[i].sku));
        if (s->cache)
            cache_mark(s->cache, rows[i].sku);
    }
    const eng_order_row *orows;
    size_t no = eng_batch_order_rows(b, &orows);
    size_t want = 0, notes = 0;
    for (size_t i = 0; i < no; i++) {
        notes += orows[i].notify;
        want += orows[i].insert && orows[i].o.from_supplier > 0;
    }
    /* Listeners hear of the whole order (a cart: every line) once the
     * engine has applied the batch: collected here, told in post_committed.
     * A part's change is for every node's listeners (cart_order_changed),
     * whoever listens here. */
    bool any = notify_listeners(s->notify) > 0 || (s->parts_mode && s->cart != NULL);
    if (notes > 0 && any && (pc->notes = malloc(notes * sizeof *pc->notes)) != NULL) {
        for (size_t i = 0; i < no; i++) {
            if (!orows[i].notify)
                continue;
            notify_ref *nr = &pc->notes[pc->n_notes++];
            memcpy(nr->order_id, orows[i].o.order_id, sizeof nr->order_id);
            nr->line_no = orows[i].o.line_no;
            nr->part = s->parts_mode && orows[i].o.n_lines > 1;
        }
    }
    if (want > 0 && s->supsync != NULL && (pc->pokes = malloc(want * sizeof *pc->pokes)) != NULL) {
        for (size_t i = 0; i < no; i++) {
            if (orows[i].insert && orows[i].o.from_supplier > 0)
                memcpy(pc->pokes[pc->n_pokes++], orows[i].o.sku, ENG_ID_MAX + 1);
        }
    }
    const eng_job_row *jobs;
    size_t nj = eng_batch_job_rows(b, &jobs);
    for (size_t i = 0; i < nj && !pc->wake; i++)
        pc->wake = jobs[i].insert;
    const eng_alert_row *alerts;
    size_t na = eng_batch_alert_rows(b, &alerts);
    for (size_t i = 0; i < na; i++)
        alert_note(s, &alerts[i]);
    if (s->parts_mode && s->cart != NULL)
        note_failed_parts(s, b, pc);
}

/* After engine_batch_done / engine_batch_resolve: the committed state is
 * visible, so the worker can claim the new jobs and the sync finds the
 * SKUs' committed mappings. */
static void post_committed(server *s, post_commit *pc)
{
    if (pc->wake && s->purch != NULL)
        purchase_wake(s->purch);
    for (size_t i = 0; i < pc->n_pokes; i++)
        supsync_poke_sku(s->supsync, pc->pokes[i]);
    free(pc->pokes);
    pc->pokes = NULL;
    pc->n_pokes = 0;
    for (size_t i = 0; i < pc->n_failed; i++) {
        const failed_ref *f = &pc->failed[i];
        cart_part_failed(s->cart, f->order_id, f->line_no, f->n_lines, f->reason);
    }
    free(pc->failed);
    pc->failed = NULL;
    pc->n_failed = 0;
    for (size_t i = 0; i < pc->n_notes; i++) {
        const notify_ref *n = &pc->notes[i];
        if (n->part) {
            /* One line of a cross-shard order: every node's listeners hear
             * the whole order once it is final (cart.h). */
            if (s->cart != NULL)
                cart_order_changed(s->cart, n->order_id);
            continue;
        }
        eng_order_view v;
        if (engine_order_get(s->eng, n->order_id, &v))
            notify_order(s, &v);
    }
    free(pc->notes);
    pc->notes = NULL;
    pc->n_notes = 0;
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
    off = json_int(value, value_cap, off, "at", now_ms());
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
static void cold_free_all(server *s)
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

/* ------------------------------------------------------------ sharding
 *
 * With --peers, SKUs are spread over the instances by the ring (ring.h).
 * A request for a SKU another instance owns is forwarded to it over the
 * peer pool, with "_fwd" so that it is never forwarded twice, and the
 * owner's reply is relayed under the client's msgid. A forwarded request
 * this instance does not own (rings disagree during a change) is refused
 * with `unavailable`: only the owner ever decides for a SKU.
 *
 * Order calls name no SKU: the order's SKU comes from the "sku" hint, else
 * from this instance's memory (which only holds SKUs it owns), else from
 * MariaDB (orders.sku; one query batched with other lookups).
 *
 * Every SKU an instance serves is first taken over (store_set_takeover):
 * the cold path bumps its epoch in MariaDB and loads it with its orders, so
 * a previous owner's next batch fails the fence. A batch refused by the
 * fence makes this instance forget the SKUs in it; the next request takes
 * them over again from MariaDB's state. */

static bool sharded(const server *s)
{
    return s->ring != NULL;
}

static uint32_t owner_of(const server *s, const char *sku)
{
    return ring_owner(s->ring, sku, strlen(sku));
}

static const ring_node *node_at(const server *s, uint32_t i)
{
    const ring_node *nodes;
    size_t n = ring_nodes(s->ring, &nodes);
    assert(i < n);
    (void)n;
    return &nodes[i];
}

/* The engine error named by a relayed error map, for the counters. */
static int relayed_result(const msgpack_object *error)
{
    if (error == NULL || error->type == MSGPACK_OBJECT_NIL)
        return ENG_OK;
    const msgpack_object *code = error->type == MSGPACK_OBJECT_MAP ? codec_map_get(error, "code") : NULL;
    if (code != NULL && code->type == MSGPACK_OBJECT_STR) {
        for (int e = 1; e < ENG_E_COUNT_; e++) {
            const char *name = eng_err_code((eng_err)e);
            if (strlen(name) == code->via.str.size && memcmp(name, code->via.str.ptr, code->via.str.size) == 0)
                return e;
        }
    }
    return ENG_E_INTERNAL;
}

static void fwd_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                         const char *reason)
{
    req *r = ctx;
    server *s = cl(r->c)->srv;
    if (reason != NULL) {
        s->fwd_failed++;
        count_at(s, r->m, ENG_E_UNAVAILABLE, r->start_ns);
        char msg[128];
        if (peer_maybe_ran(reason) && !rpc_method_read_only(r->m)) {
            /* Sent, and the owner may have committed it before it died or
             * went silent: only a retry with the same order_id can tell. */
            s->outcome_unknown++;
            snprintf(msg, sizeof msg,
                     "owner %s after the request was sent: outcome unknown; retry with the same "
                     "order_id", reason);
            reply_unavailable_owner(&s->pk, r->msgid, msg, r->owner, true);
        } else {
            snprintf(msg, sizeof msg, "owner not reachable (%s): nothing was done; retry", reason);
            reply_unavailable_owner(&s->pk, r->msgid, msg, r->owner, false);
        }
    } else {
        count_at(s, r->m, relayed_result(error), r->start_ns);
        msgpack_pack_array(&s->pk, 4);
        msgpack_pack_int(&s->pk, RPC_RESPONSE);
        msgpack_pack_uint32(&s->pk, r->msgid);
        if (error)
            msgpack_pack_object(&s->pk, *error);
        else
            msgpack_pack_nil(&s->pk);
        if (result)
            msgpack_pack_object(&s->pk, *result);
        else
            msgpack_pack_nil(&s->pk);
    }
    req_finish(s, r);
}

/* Sends r to its owner node; the reply comes back through fwd_reply_cb. */
static void forward(server *s, conn *c, req *r, uint32_t msgid, enum method m, uint32_t node,
                    const msgpack_object *params_map, int64_t deadline_ms)
{
    r->c = c;
    r->msgid = msgid;
    r->m = m;
    const ring_node *n = node_at(s, node);
    /* By name, not index: a SIGHUP may replace the ring before the reply. */
    memcpy(r->owner, n->name, sizeof r->owner);
    if (r->start_ns == 0)
        r->start_ns = s->frame_start_ns;
    conn_hold(c);
    s->fwd_calls++;
    peer_call(s->peers, n->name, n->host, n->port, rpc_method_name(m), params_map, "_fwd",
              ring_version(s->ring), (uint32_t)deadline_ms, fwd_reply_cb, r);
}

/* The params of an order call rebuilt from its op, with the SKU as hint
 * (the request's own params are gone once handle_request returns). */
static void order_params(req *r, msgpack_object_kv kv[2], msgpack_object *map)
{
    kv[0].key.type = MSGPACK_OBJECT_STR;
    kv[0].key.via.str.ptr = "order_id";
    kv[0].key.via.str.size = 8;
    kv[0].val.type = MSGPACK_OBJECT_STR;
    kv[0].val.via.str.ptr = r->op.order_id;
    kv[0].val.via.str.size = (uint32_t)strlen(r->op.order_id);
    kv[1].key.type = MSGPACK_OBJECT_STR;
    kv[1].key.via.str.ptr = "sku";
    kv[1].key.via.str.size = 3;
    kv[1].val.type = MSGPACK_OBJECT_STR;
    kv[1].val.via.str.ptr = r->op.sku;
    kv[1].val.via.str.size = (uint32_t)strlen(r->op.sku);
    map->type = MSGPACK_OBJECT_MAP;
    map->via.map.size = 2;
    map->via.map.ptr = kv;
}

static bool cold_enabled(const server *s);
static void local_request(server *s, conn *c, req *r, uint32_t msgid, enum method m, int64_t deadline_ms);

/* An order call that waited (held on its connection) is answered now
 * with an engine error. */
static void order_call_fail(server *s, req *r, eng_err err)
{
    r->op.err = err;
    count_at(s, r->m, err, r->start_ns);
    pack_eng_error(s, r->msgid, &r->op);
    req_finish(s, r);
}

/* The order is known to be on sku: route the waiting call (counted in
 * held on its connection) as if the client had named that SKU. */
static void order_route_sku(server *s, req *r, const char *sku)
{
    conn *c = r->c;
    snprintf(r->op.sku, sizeof r->op.sku, "%s", sku);
    uint32_t o = owner_of(s, sku);
    if (o != s->self) {
        msgpack_object_kv kv[2];
        msgpack_object map;
        order_params(r, kv, &map);
        forward(s, c, r, r->msgid, r->m, o, &map, r->deadline_ms);
    } else {
        local_request(s, c, r, r->msgid, r->m, r->deadline_ms);
    }
    conn_release(c);  /* whatever handles it now took its own hold */
}

/* MariaDB said which SKU the order is on (without the coordinator). */
static void order_found_cb(const char *order_id, int result, const char *sku, void *arg)
{
    (void)order_id;
    req *r = arg;
    if (result <= 0)
        order_call_fail(cl(r->c)->srv, r, result == 0 ? ENG_E_NOT_FOUND : ENG_E_UNAVAILABLE);
    else
        order_route_sku(cl(r->c)->srv, r, sku);
}

/* ------------------------------------------------------------ not_found only from the truth
 *
 * Sharded: an order missing from this instance's memory is no proof that it
 * does not exist. Another instance may hold its SKU now (a ring change, two
 * instances that both believe they own it) and have committed it; our copy
 * of the SKU is then stale, and only the next commit's fence would tell.
 * So before answering not_found, MariaDB is asked: no row -> not_found; a
 * row on a SKU another node owns -> routed there; a row on a SKU we hold ->
 * our copy is out of date: forgotten (taken over afresh at the next use)
 * and the client told `unavailable`, retryable. */

static void nf_answer(server *s, req *r, eng_err err, const char *why)
{
    r->op.err = err;
    count_at(s, r->m, err, r->start_ns);
    if (why != NULL) {
        codec_pack_response_err_head(&s->pk, r->msgid, eng_err_code(err), why, true, 1);
        codec_pack_kv_str(&s->pk, "owner", node_at(s, s->self)->name);
        codec_pack_response_err_tail(&s->pk);
    } else {
        pack_eng_error(s, r->msgid, &r->op);
    }
    req_finish(s, r);
}

static void nf_checked_cb(const char *order_id, int result, const char *sku, void *arg)
{
    (void)order_id;
    req *r = arg;
    server *s = cl(r->c)->srv;
    if (result == 0) {
        nf_answer(s, r, ENG_E_NOT_FOUND, NULL);
    } else if (result < 0) {
        nf_answer(s, r, ENG_E_UNAVAILABLE, "could not tell whether the order exists (MariaDB); retry");
    } else if (owner_of(s, sku) != s->self && !r->fwd) {
        s->nf_routed++;
        order_route_sku(s, r, sku);
    } else {
        s->nf_stale++;
        forget_later(s, sku);
        char why[ENG_ID_MAX + 96];
        snprintf(why, sizeof why, "this instance's copy of sku %s is out of date (taken over "
                 "elsewhere); retry", sku);
        nf_answer(s, r, ENG_E_UNAVAILABLE, why);
    }
}

/* Starts the check for a request held on its connection (its answer is
 * then nf_checked_cb's). False when no check is needed: the caller
 * answers not_found itself. */
static bool nf_verify(server *s, req *r)
{
    if (!sharded(s) || s->st == NULL || !method_is_order(r->m) || r->op.part_lines > 0 ||
        r->nf_checked)
        return false;
    r->nf_checked = true;
    s->nf_checks++;
    if (store_find_order_sku(s->st, r->op.order_id, nf_checked_cb, r) != 0) {
        nf_answer(s, r, ENG_E_BUSY, NULL);
        return true;
    }
    return true;
}

/* ------------------------------------------------------------ the coordinator (cart.h)
 *
 * Sharded only. A reserve with lines, and an order call naming no SKU for
 * an order not held here as a single-SKU order, go to the coordinator,
 * which answers with complete response bytes (or, for an order call, says
 * the order has one SKU: routed as before). */

static void cart_pump(void *arg)
{
    pump_schedule(arg);
}

static void coordinator_start(server *s)
{
    assert(s->ring != NULL && s->st != NULL && s->cart == NULL);
    cart_env env = {
        .base = s->base, .peers = s->peers, .st = s->st, .eng = s->eng, .rg = s->ring,
        .self = s->self, .cfg = s->cfg, .pump = cart_pump, .pump_arg = s,
    };
    s->cart = cart_new(&env);
    if (s->cart == NULL)
        LOG_E("cart coordinator: out of memory; orders of several lines are refused");
}

/* The result slot of a complete response, for the counters. */
static int response_result(const char *data, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int res = ENG_E_INTERNAL;
    if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4)
        res = relayed_result(&u.data.via.array.ptr[2]);
    msgpack_unpacked_destroy(&u);
    return res;
}

/* cart_reply_fn: the coordinator's answer to a waiting request. */
static void cart_reply_cb(void *ctx, const char *data, size_t len)
{
    req *r = ctx;
    conn *c = r->c;
    server *s = cl(c)->srv;
    count_at(s, r->m, response_result(data, len), r->start_ns);
    conn_send(c, data, len);
    req_finish(s, r);
}

/* cart_order_op's single_fn: not an order of several lines. */
static void cart_single_cb(void *ctx, const char *sku)
{
    req *r = ctx;
    r->cart_routed = true;
    if (sku[0] == '\0')
        order_call_fail(cl(r->c)->srv, r, ENG_E_NOT_FOUND);
    else
        order_route_sku(cl(r->c)->srv, r, sku);
}

/* The one answer while there is no coordinator (out of memory at start). */
static bool coordinator_off(server *s, conn *c, req *r, uint32_t msgid, enum method m)
{
    if (s->cart != NULL)
        return false;
    count(s, m, ENG_E_UNAVAILABLE);
    reply_simple_error(s, c, msgid, "unavailable",
                       "orders of several lines need the coordinator (not built yet)", true, NULL,
                       NULL);
    req_put(s, r);
    return true;
}

/* Marks r as waiting on c (answered later through req_finish). */
static void req_wait(server *s, conn *c, req *r, uint32_t msgid, enum method m, int64_t deadline_ms)
{
    r->c = c;
    r->msgid = msgid;
    r->m = m;
    if (r->start_ns == 0)
        r->start_ns = s->frame_start_ns;
    r->deadline_ms = deadline_ms;
    conn_hold(c);
}

static void coordinate_reserve(server *s, conn *c, req *r, uint32_t msgid, int64_t deadline_ms)
{
    s->lines_coordinated++;
    if (coordinator_off(s, c, r, msgid, M_RESERVE))
        return;
    req_wait(s, c, r, msgid, M_RESERVE, deadline_ms);
    eng_op *op = &r->op;
    cart_reserve(s->cart, msgid, op->order_id, op->lines, op->n_lines, op->hold_ms, deadline_ms,
                 cart_reply_cb, r);
}

static void coordinate_order(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                             int64_t deadline_ms)
{
    assert(s->cart != NULL && method_is_order(m));
    req_wait(s, c, r, msgid, m, deadline_ms);
    cart_order_op(s->cart, msgid, rpc_method_name(m), r->op.order_id, deadline_ms, cart_reply_cb,
                  cart_single_cb, r);
}

/* True when order_id is held here as one of several lines (a part). */
static bool part_here(const server *s, const char *order_id)
{
    eng_order_view v;
    return s->parts_mode && engine_order_get(s->eng, order_id, &v) && v.n_lines > 1;
}

/* An order call without part fields that this instance cannot answer
 * for the whole order: it holds one line of a cross-shard order under
 * order_id (line 0), or no order of that id at all (another line's
 * owner, or a hint naming the wrong SKU). Such calls come with a "sku"
 * hint (a client's, or a peer's forward of one): the hint only saves a
 * lookup, it must never make the call fail, so MariaDB's lines decide
 * (cart_order_op). A call the coordinator already routed by its one SKU
 * is answered here: no loop. Placeholders of queued reserves count as
 * known (a pipelined reserve + confirm waits in the engine). */
static bool hint_missed(const server *s, const req *r, enum method m)
{
    if (s->cart == NULL || !sharded(s) || !method_is_order(m) || r->op.part_lines > 0 ||
        r->cart_routed)
        return false;
    return part_here(s, r->op.order_id) || !engine_order_sku(s->eng, r->op.order_id, NULL);
}

/* Routes a request on a sharded instance. Returns true when it was
 * answered or sent elsewhere; false when this instance handles it. */
static bool route(server *s, conn *c, req *r, const rpc_msg *msg, enum method m, const rpc_parsed *pp)
{
    /* Not about one SKU: answered by the instance asked (per node). */
    if (m == M_PING || m == M_STATS || m == M_CLUSTER_RING || m == M_ORDER_SUBSCRIBE ||
        m == M_ALERTS_LIST || m == M_SUPPLIER_PUT || m == M_SUPPLIER_GET)
        return false;
    eng_op *op = &r->op;
    if (m == M_RESERVE && op->n_lines > 0) {
        coordinate_reserve(s, c, r, msg->msgid, pp->deadline_ms);
        return true;
    }
    /* A client's call on an order of several lines held here as a part:
     * the coordinator answers for the whole order. */
    if (method_is_order(m) && !pp->fwd && s->cart != NULL && part_here(s, op->order_id)) {
        coordinate_order(s, c, r, msg->msgid, m, pp->deadline_ms);
        return true;
    }
    bool by_sku = m == M_RESERVE || m == M_STOCK_GET || m == M_SKU_PUT || m == M_ADJUST || pp->sku_hint;
    if (!by_sku && engine_order_sku(s->eng, op->order_id, op->sku)) {
        /* Held here: its SKU is ours, unless it moved away and waits to be
         * forgotten; then it goes to the owner like any call naming it. */
        if (owner_of(s, op->sku) == s->self)
            return false;
        if (!pp->fwd) {
            msgpack_object_kv kv[2];
            msgpack_object map;
            order_params(r, kv, &map);
            forward(s, c, r, msg->msgid, m, owner_of(s, op->sku), &map, pp->deadline_ms);
            return true;
        }
        by_sku = true;  /* forwarded to a non-owner: refused below */
    }
    if (!by_sku) {
        if (pp->fwd || s->st == NULL)
            return false;  /* a peer already looked: not_found here */
        if (s->cart != NULL) {
            /* MariaDB's lines of the order decide: one SKU -> routed by it
             * (cart_single_cb), several -> the whole order. */
            s->order_lookups++;
            coordinate_order(s, c, r, msg->msgid, m, pp->deadline_ms);
            return true;
        }
        r->c = c;
        r->msgid = msg->msgid;
        r->m = m;
        r->start_ns = s->frame_start_ns;
        r->deadline_ms = pp->deadline_ms;
        conn_hold(c);
        s->order_lookups++;
        if (store_find_order_sku(s->st, op->order_id, order_found_cb, r) != 0) {
            conn_release(c);
            op->err = ENG_E_BUSY;
            count(s, m, op->err);
            pack_eng_error(s, msg->msgid, op);
            out_flush(s, c);
            req_put(s, r);
        }
        return true;
    }
    uint32_t o = owner_of(s, op->sku);
    if (o == s->self)
        return false;
    if (pp->fwd) {
        /* Our ring and the sender's disagree (a change under way): never
         * decide for a SKU this instance does not own. */
        s->not_owner++;
        count(s, m, ENG_E_UNAVAILABLE);
        reply_unavailable_owner(&s->pk, msg->msgid, "not the owner of this sku (ring change); retry",
                                node_at(s, o)->name, false);
        out_flush(s, c);
        req_put(s, r);
        return true;
    }
    forward(s, c, r, msg->msgid, m, o, &msg->params->via.array.ptr[0], pp->deadline_ms);
    return true;
}

static void pack_ring(server *s)
{
    msgpack_packer *pk = &s->pk;
    const ring_node *nodes;
    const ring_point *points;
    size_t n = ring_nodes(s->ring, &nodes), np = ring_points(s->ring, &points);
    char ver[24];
    snprintf(ver, sizeof ver, "%016llx", (unsigned long long)ring_version(s->ring));
    msgpack_pack_map(pk, 5);
    codec_pack_kv_str(pk, "node", s->cfg->node);
    codec_pack_kv_str(pk, "version", ver);
    codec_pack_kv_int(pk, "vnodes", (int64_t)(np / n));
    codec_pack_cstr(pk, "nodes");
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(pk, 3);
        codec_pack_kv_str(pk, "name", nodes[i].name);
        codec_pack_kv_str(pk, "host", nodes[i].host);
        codec_pack_kv_int(pk, "port", nodes[i].port);
    }
    codec_pack_cstr(pk, "points");
    msgpack_pack_array(pk, (uint32_t)np);
    for (size_t i = 0; i < np; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint64(pk, points[i].hash);
        msgpack_pack_uint32(pk, points[i].node);
    }
}

/* cluster.ring: the ring, or on a single node a ring of itself. */
static void pack_ring_or_self(server *s)
{
    if (s->ring != NULL) {
        pack_ring(s);
        return;
    }
    ring_node self;
    memset(&self, 0, sizeof self);
    /* --node is 1..64 bytes and --listen an IPv4 literal: both fit. */
    memcpy(self.name, s->cfg->node, strnlen(s->cfg->node, RING_NAME_MAX));
    memcpy(self.host, s->cfg->listen_host, strnlen(s->cfg->listen_host, RING_HOST_MAX));
    self.port = s->cfg->listen_port;
    s->ring = ring_new(&self, 1, RING_VNODES_DEFAULT);
    if (s->ring == NULL) {
        msgpack_pack_nil(&s->pk);  /* out of memory: an empty result */
        return;
    }
    s->self = 0;
    pack_ring(s);
    ring_free(s->ring);
    s->ring = NULL;
}

/* Remembers a SKU to drop from memory once it is idle (see forget_sweep). */
static void forget_later(server *s, const char *sku)
{
    if (s->n_forget == s->cap_forget) {
        size_t cap = s->cap_forget ? s->cap_forget * 2 : 64;
        char **f = realloc(s->forget, cap * sizeof *f);
        if (f == NULL)
            return;  /* the fence keeps it safe; it is retried at the next fence refusal */
        s->forget = f;
        s->cap_forget = cap;
    }
    char *d = strdup(sku);
    if (d != NULL)
        s->forget[s->n_forget++] = d;
}

/* Drops the SKUs waiting to be forgotten that are idle now; the busy ones
 * stay for the next tick. Their queued requests answer `unavailable`
 * (retryable): the retry goes to the owner. */
static void forget_sweep(server *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_forget; i++) {
        char *sku = s->forget[i];
        /* Owned again (a fence refusal on our own SKU): forget all the same;
         * the next request takes it over from MariaDB. */
        if (engine_forget_sku(s->eng, sku, ENG_E_UNAVAILABLE))
            free(sku);
        else
            s->forget[k++] = sku;
    }
    s->n_forget = k;
}

static void note_not_owned(const char *sku, void *arg)
{
    server *s = arg;
    if (owner_of(s, sku) != s->self)
        forget_later(s, sku);
}

/* SIGHUP with a new peer list: a new ring; SKUs that moved away are
 * forgotten when idle (their in-flight batches commit or fail the fence
 * first); SKUs that moved here are taken over at their first request. */
static void ring_reload(server *s)
{
    const stockd_config *cfg = s->cfg;
    if (cfg->peers[0] == '\0' || s->ring == NULL) {
        if ((cfg->peers[0] == '\0') != (s->ring == NULL))
            LOG_W("reload: switching between single node and cluster needs a restart");
        return;
    }
    ring_node nodes[RING_NODES_MAX];
    size_t n = 0;
    char err[160];
    if (ring_parse_peers(cfg->peers, nodes, RING_NODES_MAX, &n, err, sizeof err) != 0) {
        LOG_E("reload: peers refused", "error", err);
        return;
    }
    ring *nr = ring_new(nodes, n, RING_VNODES_DEFAULT);
    int self = nr ? ring_find(nr, cfg->node) : -1;
    if (nr == NULL || self < 0) {
        LOG_E("reload: peers refused", "error", nr ? "this node is not in the list" : "out of memory");
        ring_free(nr);
        return;
    }
    if (ring_version(nr) == ring_version(s->ring)) {
        ring_free(nr);
        return;
    }
    ring_free(s->ring);
    s->ring = nr;
    s->self = (uint32_t)self;
    if (s->cart != NULL)
        cart_set_ring(s->cart, s->ring, s->self);
    s->ring_changes++;
    engine_each_sku(s->eng, note_not_owned, s);
    forget_sweep(s);
    char ver[24], cnt[16];
    snprintf(ver, sizeof ver, "%016llx", (unsigned long long)ring_version(nr));
    snprintf(cnt, sizeof cnt, "%zu", n);
    LOG_I("ring changed", "version", ver, "nodes", cnt);
}

/* supplier.put: fields not given keep the committed settings (or the
 * defaults of a supplier without any). Two partial puts in flight at once
 * both start from the committed settings: the later one wins whole. */
static bool supplier_put_merge(server *s, eng_op *op, const rpc_parsed *pp, rpc_perr *pe)
{
    eng_trust cur;
    if (!engine_supplier_trust(s->eng, op->supplier.supplier_id, &cur)) {
        cur.trust = s->cfg->supplier_trust;
        cur.ceiling = 1.0;
        cur.event_mode = false;
        cur.event_trust = s->cfg->supplier_event_trust;
    }
    eng_trust *t = &op->trust;
    if (!pp->has_trust)
        t->trust = cur.trust;
    if (!pp->has_ceiling)
        t->ceiling = cur.ceiling;
    if (!pp->has_event_mode)
        t->event_mode = cur.event_mode;
    if (!pp->has_event_trust)
        t->event_trust = cur.event_trust;
    op->has_trust = true;
    if (eng_trust_valid(t))
        return true;
    /* Name a field the caller gave: the one that broke the rule. */
    bool trust_bad = t->trust > t->ceiling;
    pe->field = trust_bad ? (pp->has_trust ? "trust" : "trust_ceiling")
                          : (pp->has_event_trust ? "event_trust" : "trust_ceiling");
    pe->problem = pp->has_ceiling && !(trust_bad ? pp->has_trust : pp->has_event_trust)
                      ? "below the current trust or event_trust"
                      : "must not exceed trust_ceiling";
    return false;
}

/* ------------------------------------------------------------ peer handshake */

static void peer_refuse(server *s, conn *c, uint32_t msgid, enum method m, const char *why)
{
    s->peer_auth_failed++;
    count(s, m, RES_UNAUTHORIZED);
    reply_simple_error(s, c, msgid, "unauthorized", why, false, NULL, NULL);
}

static void pack_bin(msgpack_packer *pk, const char *key, const uint8_t *p, size_t n)
{
    codec_pack_cstr(pk, key);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

/* The accepting side of peer_auth.h's handshake. A failed peer.auth also
 * ends the connection: a prover that got it wrong has nothing more to say. */
static void peer_handshake(server *s, conn *c, uint32_t msgid, enum method m, const rpc_parsed *pp)
{
    client *k = cl(c);
    const char *self = sharded(s) ? node_at(s, s->self)->name : s->cfg->node;
    if (m == M_PEER_HELLO) {
        k->hello = k->peer = false;
        int node = sharded(s) ? ring_find(s->ring, pp->peer_node) : -1;
        if (!sharded(s) || s->keyring.n == 0) {
            peer_refuse(s, c, msgid, m, "this node is not in a cluster (no --peers or no cluster secret)");
            return;
        }
        /* Our own name too: the cart coordinator tells every node,
         * itself included, and the proof still needs the secret. */
        if (node < 0) {
            peer_refuse(s, c, msgid, m, "not a node of this ring");
            return;
        }
        k->key = peer_keyring_find(&s->keyring, pp->peer_keys, pp->peer_n_keys);
        if (k->key < 0) {
            LOG_W("peer handshake refused: no shared cluster secret", "peer", pp->peer_node);
            peer_refuse(s, c, msgid, m, "no shared cluster secret");
            return;
        }
        if (!peer_nonce(k->nb)) {
            count(s, m, ENG_E_INTERNAL);
            reply_simple_error(s, c, msgid, "internal", "no random bytes", true, NULL, NULL);
            return;
        }
        memcpy(k->na, pp->peer_nonce, PEER_NONCE_BYTES);
        snprintf(k->node, sizeof k->node, "%s", pp->peer_node);
        k->hello = true;
        uint8_t mac[PEER_MAC_BYTES];
        peer_auth_mac(&s->keyring, k->key, PEER_B_TO_A, k->node, self, k->na, k->nb, mac);
        count(s, m, ENG_OK);
        codec_pack_response_ok_head(&s->pk, msgid);
        msgpack_pack_map(&s->pk, 4);
        codec_pack_kv_str(&s->pk, "node", self);
        pack_bin(&s->pk, "nonce", k->nb, PEER_NONCE_BYTES);
        pack_bin(&s->pk, "key", s->keyring.k[k->key].id, PEER_KEY_ID_BYTES);
        pack_bin(&s->pk, "mac", mac, PEER_MAC_BYTES);
        out_flush(s, c);
        return;
    }
    if (!k->hello) {
        peer_refuse(s, c, msgid, m, "peer.hello first");
        return;
    }
    k->hello = false;  /* one proof per hello: a new nonce for every try */
    /* The keyring may have been reloaded since the hello: the key index must
     * still name a key (a removed one fails the check). */
    if (!peer_auth_check(&s->keyring, k->key, PEER_A_TO_B, k->node, self, k->na, k->nb, pp->peer_mac,
                         PEER_MAC_BYTES)) {
        LOG_W("peer handshake refused: wrong proof of the cluster secret", "peer", k->node);
        peer_refuse(s, c, msgid, m, "wrong proof of the cluster secret");
        conn_drain(c);
        return;
    }
    k->peer = true;
    s->peer_auth_ok++;
    LOG_D("peer authenticated", "peer", k->node);
    count(s, m, ENG_OK);
    codec_pack_response_ok_head(&s->pk, msgid);
    msgpack_pack_map(&s->pk, 1);
    codec_pack_kv_bool(&s->pk, "ok", true);
    out_flush(s, c);
}

static void handle_request(server *s, conn *c, const rpc_msg *msg)
{
    enum method m = rpc_method_lookup(msg->method, msg->method_len);
    if (m == M_UNKNOWN) {
        char name[65];
        size_t n = msg->method_len < 64 ? msg->method_len : 64;
        if (n > 0)  /* msgpack-c gives "" as NULL: memcpy(NULL, 0) is undefined */
            memcpy(name, msg->method, n);
        name[n] = '\0';
        if (!rpc_utf8_valid((const unsigned char *)name, n))
            strcpy(name, "?");
        count(s, M_UNKNOWN, RES_UNKNOWN_METHOD);
        reply_simple_error(s, c, msg->msgid, "unknown_method", "unknown method", false, "method", name);
        return;
    }
    req *r = req_get(s);
    if (r == NULL) {
        count(s, m, ENG_E_INTERNAL);
        reply_simple_error(s, c, msg->msgid, "internal", "out of memory", true, NULL, NULL);
        return;
    }
    rpc_parsed pp = {.deadline_ms = s->cfg->default_deadline_ms};
    rpc_perr pe = {"params", "invalid", false, ""};
    eng_op *op = &r->op;
    if (!rpc_parse_params(m, msg->params, cl(c)->peer, op, &pp, &pe)) {
        if (pe.unauthorized) {
            s->peer_only_refused++;
            count(s, m, RES_UNAUTHORIZED);
            reply_simple_error(s, c, msg->msgid, "unauthorized", pe.problem, false, "field", pe.field);
        } else {
            reply_invalid(s, c, msg->msgid, m, pe.field, pe.problem);
        }
        req_put(s, r);
        return;
    }
    if (m == M_PEER_HELLO || m == M_PEER_AUTH) {
        peer_handshake(s, c, msg->msgid, m, &pp);
        req_put(s, r);
        return;
    }
    if (m == M_ORDER_SUBSCRIBE && pp.update != NULL) {
        peer_update(s, c, msg->msgid, pp.update);
        req_put(s, r);
        return;
    }
    if (rpc_method_admin(m) && !token_ok(s, pp.token)) {
        count(s, m, RES_UNAUTHORIZED);
        reply_simple_error(s, c, msg->msgid, "unauthorized", "admin token required", false, NULL, NULL);
        req_put(s, r);
        return;
    }
    if (m == M_SUPPLIER_PUT && !supplier_put_merge(s, op, &pp, &pe)) {
        reply_invalid(s, c, msg->msgid, m, pe.field, pe.problem);
        req_put(s, r);
        return;
    }
    if (op->n_lines > 0) {
        s->lines_reserves++;
        s->lines_total += op->n_lines;
    }
    r->c = c;
    r->msgid = msg->msgid;
    r->m = m;
    r->start_ns = s->frame_start_ns;
    r->deadline_ms = pp.deadline_ms;
    r->limit = (int32_t)pp.limit;
    r->fwd = pp.fwd;
    if (sharded(s) && route(s, c, r, msg, m, &pp))
        return;
    local_request(s, c, r, msg->msgid, m, pp.deadline_ms);
}

/* A request this instance answers itself: from memory, after a cold load
 * (or takeover), or through the engine. Not held on its connection yet. */
static void local_request(server *s, conn *c, req *r, uint32_t msgid, enum method m, int64_t deadline_ms)
{
    eng_op *op = &r->op;
    if (cold_intercept(s, c, r, msgid, m, deadline_ms))
        return;
    /* A "sku" hint that led here to one line of a cross-shard order, or
     * to no order at all: the coordinator finds the whole order. */
    if (hint_missed(s, r, m)) {
        s->order_lookups++;
        coordinate_order(s, c, r, msgid, m, deadline_ms);
        return;
    }
    if (rpc_method_read_only(m)) {
        eng_order_view ov;
        if (m == M_ORDER_GET && !order_read(s, op, &ov)) {
            req_wait(s, c, r, msgid, m, deadline_ms);
            if (nf_verify(s, r))
                return;
            conn_release(c);
        }
        handle_read_only(s, c, msgid, m, r);
        req_put(s, r);
        return;
    }
    op->kind = op_kind_of[m];
    r->c = c;
    r->msgid = msgid;
    r->m = m;
    /* A store known to be down answers at once rather than queueing work
     * that cannot commit. */
    eng_err err = (s->st == NULL || !store_up(s->st) || s->draining) ? ENG_E_UNAVAILABLE
                                                      : engine_submit(s->eng, op, now_ms());
    if (err != ENG_OK) {
        op->err = err;
        count_at(s, m, err, r->start_ns);
        pack_eng_error(s, msgid, op);
        out_flush(s, c);
        req_put(s, r);
        return;
    }
    conn_hold(c);
    evtimer_assign(&r->timer, s->base, deadline_cb, r);
    if (deadline_ms == (int64_t)s->cfg->default_deadline_ms && s->deadline_tv_default) {
        evtimer_add(&r->timer, s->deadline_tv_default);
    } else {
        struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};
        evtimer_add(&r->timer, &tv);
    }
    pump_schedule(s);
}

/* ------------------------------------------------------------ pump */

/* Notes when a batch went to the store, for the commit latency. A slot
 * whose commit never reported is reused after COMMITS_TRACKED others. */
static void commit_track(server *s, eng_batch *b)
{
    hist_record(&s->batch_ops, eng_batch_ops(b));
    uint64_t id = eng_batch_id(b);
    s->commits[id % COMMITS_TRACKED].batch_id = id + 1;  /* 0 = free slot */
    s->commits[id % COMMITS_TRACKED].start_ns = mono_ns();
}

static void commit_untrack(server *s, eng_batch *b)
{
    uint64_t id = eng_batch_id(b);
    if (s->commits[id % COMMITS_TRACKED].batch_id != id + 1)
        return;
    int64_t d = mono_ns() - s->commits[id % COMMITS_TRACKED].start_ns;
    hist_record(&s->commit_us, d > 0 ? (uint64_t)d / 1000 : 0);
    s->commits[id % COMMITS_TRACKED].batch_id = 0;
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    s->pump_armed = false;
    if (s->st == NULL)
        return;
    /* Bounded: each round takes at least one op off a queue. */
    for (int rounds = 0; rounds < 64 && engine_has_ready(s->eng); rounds++) {
        if (!store_can_commit(s->st))
            return;  /* on_idle pumps again */
        eng_batch *b = engine_next_batch(s->eng, now_ms());
        if (b == NULL)
            return;
        if (eng_batch_is_empty(b)) {
            engine_batch_done(s->eng, b, ENG_COMMITTED);
            continue;
        }
        commit_track(s, b);
        int rc = store_commit(s->st, b);
        assert(rc == 0);
        (void)rc;
    }
    if (engine_has_ready(s->eng) && store_can_commit(s->st))
        pump_schedule(s);
}

static void pump_schedule(server *s)
{
    if (s->pump_armed)
        return;
    s->pump_armed = true;
    event_active(s->pump_ev, EV_TIMEOUT, 0);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    if (s->n_forget > 0)
        forget_sweep(s);
    /* Also work queued outside any request (alerts of rows set aside at
     * load): nothing else would start its batch. */
    if (engine_expire_due(s->eng, now_ms()) > 0 || engine_has_ready(s->eng))
        pump_schedule(s);
    if (s->cart != NULL)
        cart_settle_due(s->cart);  /* this node's parts whose hold lapsed */
}

static void on_commit(eng_batch *b, eng_outcome outcome, const char *err, void *arg)
{
    server *s = arg;
    commit_untrack(s, b);
    if (outcome != ENG_COMMITTED)
        LOG_W("batch not committed", "outcome", outcome == ENG_ABORTED ? "aborted" : "unknown",
              "error", err ? err : "");
    post_commit pc = {0};
    if (outcome == ENG_COMMITTED)
        note_committed(s, b, &pc);
    if (outcome == ENG_ABORTED && s->ring != NULL && err != NULL && strstr(err, "epoch fence")) {
        /* Another instance took (some of) these SKUs over: our memory of
         * them is stale. Forget them; a request that still comes here
         * takes them over again from MariaDB. */
        const eng_sku_row *rows;
        size_t n = eng_batch_sku_rows(b, &rows);
        for (size_t i = 0; i < n; i++)
            forget_later(s, rows[i].sku);
        s->fence_drops += n;
    }
    engine_batch_done(s->eng, b, outcome);
    post_committed(s, &pc);
    if (outcome == ENG_UNKNOWN)
        store_resolve(s->st, b);
    pump_schedule(s);
}

static void on_resolve(eng_batch *b, bool committed, void *arg)
{
    server *s = arg;
    LOG_I("unknown batch resolved", "committed", committed ? "yes" : "no");
    post_commit pc = {0};
    if (committed)
        note_committed(s, b, &pc);
    engine_batch_resolve(s->eng, b, committed);
    post_committed(s, &pc);
    pump_schedule(s);
}

static void on_idle(void *arg)
{
    server *s = arg;
    if (!store_up(s->st)) {
        /* Work waiting for a store that is gone: tell its clients now. */
        engine_cancel_all(s->eng, ENG_E_UNAVAILABLE);
        return;
    }
    pump_schedule(s);
}

void server_store_callbacks(server *s, store_callbacks *out)
{
    out->on_commit = on_commit;
    out->on_resolve = on_resolve;
    out->on_idle = on_idle;
    out->arg = s;
}

/* ------------------------------------------------------------ connections */

/* conn.h on_bad_frame: answered when the msgid could be read. */
static void on_bad_frame(void *arg, conn *c, enum conn_bad why, int64_t msgid)
{
    server *s = arg;
    if (msgid < 0 || why == CONN_BAD_MALFORMED)
        return;
    char msg[96];
    if (why == CONN_BAD_TOO_MANY_VALUES) {
        snprintf(msg, sizeof msg, "more than %d values (no request needs so many)",
                 CONN_FRAME_VALUES_MAX);
        reply_invalid(s, c, (uint32_t)msgid, M_UNKNOWN, "message", msg);
        return;
    }
    snprintf(msg, sizeof(msg), "message larger than %u bytes", s->cfg->max_message_bytes);
    count(s, M_UNKNOWN, RES_TOO_LARGE);
    reply_simple_error(s, c, (uint32_t)msgid, "too_large", msg, false, NULL, NULL);
}

static void on_close(void *arg, conn *c)
{
    server *s = arg;
    notify_forget(s->notify, c);
}

/* conn.h on_frame: decodes one complete, size-checked frame and handles
 * it. Returns false when the connection must close. */
static bool on_frame(void *arg, conn *c, const uint8_t *p, size_t n)
{
    server *s = arg;
    s->frame_start_ns = mono_ns();
    if (cl(c)->srv == NULL)
        cl(c)->srv = s;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_clear(&s->zone);
    if (msgpack_unpack((const char *)p, n, &off, &s->zone, &obj) != MSGPACK_UNPACK_SUCCESS || off != n)
        return false;
    rpc_msg msg;
    const char *why = NULL;
    if (!rpc_msg_parse(&obj, &msg, &why)) {
        /* Well-formed msgpack in a bad shape: answer when a msgid can be
         * read, else the peer is not speaking msgpack-rpc. */
        if (obj.type == MSGPACK_OBJECT_ARRAY && obj.via.array.size >= 2 &&
            obj.via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && obj.via.array.ptr[0].via.u64 == 0 &&
            obj.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            obj.via.array.ptr[1].via.u64 <= UINT32_MAX) {
            uint32_t msgid = (uint32_t)obj.via.array.ptr[1].via.u64;
            if (obj.via.array.size != 4)
                reply_invalid(s, c, msgid, M_UNKNOWN, "message", "a request is [0, msgid, method, params]");
            else if (obj.via.array.ptr[2].type != MSGPACK_OBJECT_STR)
                reply_invalid(s, c, msgid, M_UNKNOWN, "method", "must be a string");
            else
                reply_invalid(s, c, msgid, M_UNKNOWN, "params", "must be an array holding one map");
            return true;
        }
        return false;
    }
    if (msg.type == RPC_NOTIFY) {
        s->notifications++;  /* no method is fire-and-forget: ignored */
        return true;
    }
    if (msg.type != RPC_REQUEST)
        return false;
    handle_request(s, c, &msg);
    return true;
}

/* ------------------------------------------------------------ lifecycle */

static void limits_from_cfg(const stockd_config *cfg, eng_limits *lim)
{
    eng_limits_default(lim);
    lim->queue_per_sku_max = cfg->queue_per_sku_max;
    lim->queue_total_max = cfg->queue_total_max;
    lim->batch_ops_max = cfg->batch_ops_max;
    lim->batch_sku_ops_max = cfg->batch_sku_ops_max;
    lim->expire_per_tick_max = cfg->expire_per_tick_max;
    lim->upstream_lag_ms = cfg->supplier_upstream_lag_ms;
    lim->trust_default.trust = cfg->supplier_trust;
    lim->trust_default.ceiling = 1.0;
    lim->trust_default.event_mode = false;
    lim->trust_default.event_trust = cfg->supplier_event_trust;
    lim->trust_cut = cfg->supplier_trust_cut;
    lim->trust_step = cfg->supplier_trust_step;
}

server *server_new(struct event_base *base, const stockd_config *cfg, char *err, size_t err_len)
{
    server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->base = base;
    s->cfg = cfg;
    s->started_ms = now_ms();
    peer_keyring_set(&s->keyring, cfg->cluster_secret, cfg->cluster_secret_alt);
    eng_limits lim;
    limits_from_cfg(cfg, &lim);
    s->eng = engine_new(&lim, done_cb, s);
    s->notify = notify_new(cfg);
    conn_callbacks ccb = {.on_frame = on_frame, .on_bad_frame = on_bad_frame, .on_close = on_close,
                          .arg = s};
    s->cm = conn_mgr_new(base, cfg, &ccb, sizeof(client));
    if (s->eng == NULL || s->notify == NULL || s->cm == NULL || !msgpack_zone_init(&s->zone, 8192)) {
        snprintf(err, err_len, "out of memory");
        engine_free(s->eng);
        conn_mgr_free(s->cm);
        notify_free(s->notify);
        free(s);
        return NULL;
    }
    msgpack_sbuffer_init(&s->out);
    msgpack_packer_init(&s->pk, &s->out, msgpack_sbuffer_write);
    s->pump_ev = event_new(base, -1, 0, pump_cb, s);
    s->cold_again_ev = event_new(base, -1, 0, cold_again_cb, s);
    s->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, s);
    struct timeval tick = {0, EXPIRY_TICK_MS * 1000};
    event_add(s->tick_ev, &tick);
    struct timeval dl = {cfg->default_deadline_ms / 1000, (cfg->default_deadline_ms % 1000) * 1000};
    s->deadline_tv_default = event_base_init_common_timeout(base, &dl);
    if (cfg->peers[0] != '\0') {
        ring_node nodes[RING_NODES_MAX];
        size_t n = 0;
        if (ring_parse_peers(cfg->peers, nodes, RING_NODES_MAX, &n, err, err_len) != 0)
            return NULL;
        s->ring = ring_new(nodes, n, RING_VNODES_DEFAULT);
        s->peers = peer_pool_new(base, cfg->node, &s->keyring);
        int self = s->ring ? ring_find(s->ring, cfg->node) : -1;
        if (s->ring == NULL || s->peers == NULL || self < 0) {
            snprintf(err, err_len, self < 0 && s->ring ? "peers must name this node" : "out of memory");
            return NULL;
        }
        s->self = (uint32_t)self;
        /* Every stored multi-line order is a part here (engine.h "Parts"). */
        engine_set_parts_mode(s->eng, true);
        s->parts_mode = true;
    }
    return s;
}

bool server_sharded(const server *s)
{
    return s->ring != NULL;
}

static void prefetch_owned(const char *sku, size_t len, void *arg)
{
    server *s = arg;
    if (len == 0 || len > ENG_ID_MAX || s->n_cold >= STORE_LOAD_QUEUE_MAX / 2)
        return;
    char name[ENG_ID_MAX + 1];
    memcpy(name, sku, len);
    name[len] = '\0';
    if (owner_of(s, name) != s->self || engine_knows_sku(s->eng, name))
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

engine *server_engine(server *s)
{
    return s->eng;
}

void server_set_store(server *s, store *st)
{
    s->st = st;
    if (s->ring != NULL)
        coordinator_start(s);
}

int server_listen(server *s, char *err, size_t err_len)
{
    if (conn_mgr_listen(s->cm, err, err_len) != 0)
        return -1;
    s->listening = true;
    return 0;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    eng_stats es;
    engine_stats_get(s->eng, &es);
    if (es.queued != 0 || es.batches_in_flight != 0)
        return;
    /* Quiet: nothing of ours is in flight. Close each connection once its
     * replies are flushed; a request read meanwhile is answered (writes
     * with a retryable 'unavailable') before its connection goes. */
    if (conn_mgr_drain_idle(s->cm) == 0)
        event_base_loopexit(s->base, NULL);
}

void server_drain(server *s, unsigned drain_ms)
{
    if (s->draining)
        return;
    s->draining = true;
    if (s->supsync)
        supsync_stop(s->supsync); /* new figures would keep the engine from going quiet */
    if (s->purch)
        purchase_stop(s->purch);  /* no new claims; calls on the wire end normally */
    conn_mgr_stop_accepting(s->cm);
    /* Poll for quiet every 20 ms; leave at drain_ms whatever remains. */
    s->drain_ev = event_new(s->base, -1, EV_PERSIST, drain_cb, s);
    struct timeval tv = {0, 20000};
    event_add(s->drain_ev, &tv);
    struct timeval lim = {drain_ms / 1000, (drain_ms % 1000) * 1000};
    event_base_loopexit(s->base, &lim);
}

static void supplier_kick(void *arg)
{
    pump_schedule(arg);
}

static void supplier_poke(const char *sku, void *arg)
{
    server *s = arg;
    supsync_poke_sku(s->supsync, sku);
}

/* One client (one app key, one token bucket) for the sync and the
 * purchase worker alike, as 1688 limits the app, not the caller. */
static supplier_client *supplier_client_from_cfg(server *s, char *err, size_t err_len)
{
    const stockd_config *cfg = s->cfg;
    supplier_client_config cc;
    supplier_client_config_defaults(&cc);
    cc.base_url = cfg->supplier_url;
    cc.app_key = cfg->supplier_app_key;
    cc.app_secret = cfg->supplier_app_secret;
    cc.access_token = cfg->supplier_token;
    cc.timeout_ms = cfg->supplier_timeout_ms;
    if (cc.connect_timeout_ms > cc.timeout_ms)
        cc.connect_timeout_ms = cc.timeout_ms;
    cc.rate_per_s = cfg->supplier_rate_per_s;
    uint32_t slots = cfg->supplier_concurrency + cfg->supplier_purchase_concurrency;
    cc.max_in_flight = slots < SUPPLIER_IN_FLIGHT_MAX ? slots : SUPPLIER_IN_FLIGHT_MAX;
    /* A failed sync round is simply repeated next period: retries of one
     * round must not run into the next one. */
    if (cc.backoff_max_ms > cfg->supplier_sync_ms)
        cc.backoff_max_ms = cfg->supplier_sync_ms;
    if (cc.backoff_base_ms > cc.backoff_max_ms)
        cc.backoff_base_ms = cc.backoff_max_ms;
    char e[256];
    supplier_client *cli = supplier_client_new(s->base, &cc, e, sizeof e);
    if (cli == NULL)
        snprintf(err, err_len, "supplier client: %s", e);
    return cli;
}

int server_supplier_start(server *s, char *err, size_t err_len)
{
    if (s->cfg->supplier_url[0] == '\0')
        return 0;
    s->supc = supplier_client_from_cfg(s, err, err_len);
    if (s->supc == NULL)
        return -1;
    s->supsync = supsync_new(s->base, s->cfg, s->eng, s->supc, supplier_kick, s, err, err_len);
    if (s->supsync == NULL)
        return -1;
    purchase_hooks hooks = {.kick = supplier_kick, .poke_sku = supplier_poke, .arg = s};
    s->purch = purchase_new(s->base, s->cfg, s->eng, s->supc, &hooks, err, err_len);
    if (s->purch == NULL)
        return -1;
    char ms[16], pc[16];
    snprintf(ms, sizeof(ms), "%u", s->cfg->supplier_sync_ms);
    snprintf(pc, sizeof(pc), "%u", s->cfg->supplier_purchase_concurrency);
    /* no URL: it may carry credentials */
    LOG_I("supplier sync and purchases on", "sync_ms", ms, "purchase_concurrency", pc);
    return 0;
}

supplier_sync *server_supsync(server *s)
{
    return s->supsync;
}

void server_free(server *s)
{
    if (s == NULL)
        return;
    /* The client first: it answers every call still pending (the sync
     * and the worker ignore answers once stopped), then the users. */
    if (s->supsync)
        supsync_stop(s->supsync);
    if (s->purch)
        purchase_stop(s->purch);
    if (s->supc)
        supplier_client_free(s->supc);
    purchase_free(s->purch);      /* unclaims its jobs: before the engine */
    supsync_free(s->supsync);
    notify_free(s->notify);
    cache_free(s->cache);         /* before the engine: pending SETs fail now */
    bloom_free(s->bloom);
    cold_free_all(s);
    if (s->cart != NULL)
        cart_free(s->cart);       /* before the pool and the store (cart.h) */
    peer_pool_free(s->peers);     /* forwarded calls fail now: their conns are still here */
    ring_free(s->ring);
    for (size_t i = 0; i < s->n_forget; i++)
        free(s->forget[i]);
    free(s->forget);
    conn_mgr_free(s->cm);
    if (s->pump_ev)
        event_free(s->pump_ev);
    if (s->cold_again_ev)
        event_free(s->cold_again_ev);
    if (s->tick_ev)
        event_free(s->tick_ev);
    if (s->drain_ev)
        event_free(s->drain_ev);
    while (s->free_reqs) {
        req *r = s->free_reqs;
        s->free_reqs = r->next_free;
        free(r);
    }
    engine_free(s->eng);
    msgpack_zone_destroy(&s->zone);
    msgpack_sbuffer_destroy(&s->out);
    free(s);
}

/* ------------------------------------------------------------ operators */

void server_reload(server *s)
{
    const stockd_config *cfg = s->cfg;
    eng_limits lim;
    limits_from_cfg(cfg, &lim);
    engine_set_limits(s->eng, &lim);
    /* libevent keeps a few common-timeout queues; a new default deadline
     * gets its own, and requests already queued keep their timers. */
    struct timeval dl = {cfg->default_deadline_ms / 1000, (cfg->default_deadline_ms % 1000) * 1000};
    s->deadline_tv_default = event_base_init_common_timeout(s->base, &dl);
    /* Connections read max_inflight_per_conn and max_output_bytes on each
     * check, so paused ones may resume now. */
    conn_mgr_reload(s->cm);
    /* New secrets apply to the next handshake; proven connections stay. */
    peer_keyring_set(&s->keyring, cfg->cluster_secret, cfg->cluster_secret_alt);
    ring_reload(s);
    s->reloads++;
}

/* Descriptors open now (the entries of /proc/self/fd, less the one the
 * count itself opens). */
static uint64_t open_files(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static void trust_fill(const char *id, const eng_trust *t, void *arg)
{
    stats_snapshot *out = arg;
    if (out->n_trust >= STATS_TRUST_MAX)
        return;
    stats_trust *e = &out->trust[out->n_trust++];
    snprintf(e->supplier_id, sizeof e->supplier_id, "%s", id);
    e->effective = eng_trust_effective(t);
}

void server_stats_get(server *s, stats_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    out->node = s->cfg->node;
    out->uptime_ms = now_ms() - s->started_ms;
    out->listening = s->listening;
    out->draining = s->draining;
    out->store_up = s->st != NULL && store_up(s->st);
    conn_mgr_stats_get(s->cm, &out->conns);
    out->open_files = open_files();
    struct rlimit rl;
    out->open_files_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
    out->notifications = s->notifications;
    out->outcome_unknown = s->outcome_unknown;
    out->reloads = s->reloads;
    out->n_methods = M_COUNT;
    out->n_results = RES_COUNT;
    for (int r = 0; r < RES_COUNT; r++)
        out->result_names[r] = result_name(r);
    for (int m = 0; m < M_COUNT; m++) {
        out->methods[m].name = rpc_method_name((enum method)m);
        memcpy(out->methods[m].results, s->results[m], sizeof(s->results[m]));
        out->methods[m].latency_us = &s->latency_us[m];
    }
    out->batch_ops = &s->batch_ops;
    out->commit_us = &s->commit_us;
    out->queue_per_sku_max = s->cfg->queue_per_sku_max;
    out->queue_total_max = s->cfg->queue_total_max;
    engine_stats_get(s->eng, &out->engine);
    if (s->st)
        store_stats_get(s->st, &out->store);
    out->preload_skus = s->cfg->preload_skus;
    out->cache_ttl_s = s->cfg->cache_ttl_s;
    out->has_bloom = s->bloom != NULL;
    if (s->bloom)
        bloom_stats_get(s->bloom, &out->bloom);
    out->has_cache = s->cache != NULL;
    if (s->cache)
        cache_stats_get(s->cache, &out->cache);
    out->cold_loads = s->cold_loads;
    out->cold_waits = s->cold_waits;
    out->cold_loaded = s->cold_loaded;
    out->cold_missing = s->cold_missing;
    out->cold_failed = s->cold_failed;
    out->cold_in_flight = s->n_cold;
    out->sharded = s->ring != NULL;
    out->nodes = s->ring ? (uint32_t)ring_nodes(s->ring, &(const ring_node *){NULL}) : 1;
    out->ring_version = s->ring ? ring_version(s->ring) : 0;
    out->takeovers_pending = s->n_prefetch;
    out->forget_pending = (uint32_t)s->n_forget;
    out->ring_settled = s->n_prefetch == 0 && s->n_forget == 0;
    out->forwarded = s->fwd_calls;
    out->forward_failed = s->fwd_failed;
    out->not_owner = s->not_owner;
    out->fence_drops = s->fence_drops;
    out->order_lookups = s->order_lookups;
    out->ring_changes = s->ring_changes;
    if (s->peers)
        peer_stats_get(s->peers, &out->peers);
    out->peer_auth_ok = s->peer_auth_ok;
    out->peer_auth_failed = s->peer_auth_failed + out->peers.auth_failures;
    out->peer_only_refused = s->peer_only_refused;
    out->supplier_enabled = s->supsync != NULL;
    if (s->supsync)
        supsync_stats_get(s->supsync, &out->sync);
    if (s->purch)
        purchase_stats_get(s->purch, &out->purchase);
    if (s->supc)
        supplier_client_stats(s->supc, &out->client);
    engine_each_supplier(s->eng, trust_fill, out);
    notify_stats_get(s->notify, &out->notify);
    out->alerts_total = s->alerts_total;
    out->alerts_no_cache = s->alerts_no_cache;
    out->coordinator = s->cart != NULL;
    if (s->cart != NULL)
        cart_stats_get(s->cart, &out->cart);
    out->lines_reserves = s->lines_reserves;
    out->lines_total = s->lines_total;
    out->lines_coordinated = s->lines_coordinated;
}
