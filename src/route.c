/* route.c — a sharded node's routing: who owns a SKU, forwarding to the
 * owner, order lookups, not_found only from the truth, the cart
 * coordinator's glue, ring reloads and forgetting SKUs that moved; see
 * route.h. */
#include "stockd/route.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/node.h"
#include "stockd/coldload.h"
#include "stockd/core.h"
#include "stockd/reply.h"
#include "stockd/rpc.h"

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

bool route_sharded(const server *s)
{
    return s->ring != NULL;
}

uint32_t route_owner_of(const server *s, const char *sku)
{
    return ring_owner(s->ring, sku, strlen(sku));
}

const ring_node *route_node_at(const server *s, uint32_t i)
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
        rpc_count_at(s, r->m, ENG_E_UNAVAILABLE, r->start_ns);
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
        rpc_count_at(s, r->m, relayed_result(error), r->start_ns);
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
    const ring_node *n = route_node_at(s, node);
    /* By name, not index: a SIGHUP may replace the ring before the reply. */
    memcpy(r->owner, n->name, sizeof r->owner);
    if (r->start_ns == 0)
        r->start_ns = s->frame_start_ns;
    req_hold(r, c);
    s->fwd_calls++;
    peer_call(s->peers, n->name, n->host, n->port, rpc_method_name(m), params_map, "_fwd",
              ring_version(s->ring), (uint32_t)deadline_ms, fwd_reply_cb, r);
}

/* The params of an order call rebuilt from its op, with the SKU as hint
 * (the request's own params are gone once handle_request returns). */
static void kv_str(msgpack_object_kv *kv, const char *key, const char *val)
{
    kv->key.type = MSGPACK_OBJECT_STR;
    kv->key.via.str.ptr = key;
    kv->key.via.str.size = (uint32_t)strlen(key);
    kv->val.type = MSGPACK_OBJECT_STR;
    kv->val.via.str.ptr = val;
    kv->val.via.str.size = (uint32_t)strlen(val);
}

static void order_params(req *r, msgpack_object_kv kv[2], msgpack_object *map)
{
    kv_str(&kv[0], "order_id", r->op.order_id);
    kv_str(&kv[1], "sku", r->op.sku);
    map->type = MSGPACK_OBJECT_MAP;
    map->via.map.size = 2;
    map->via.map.ptr = kv;
}

/* An order call that waited (held on its connection) is answered now
 * with an engine error. */
static void order_call_fail(server *s, req *r, eng_err err)
{
    r->op.err = err;
    rpc_count_at(s, r->m, err, r->start_ns);
    rpc_pack_eng_error(s, r->msgid, &r->op);
    req_finish(s, r);
}

/* The order is known to be on sku: route the waiting call (counted in
 * held on its connection) as if the client had named that SKU. */
static void order_route_sku(server *s, req *r, const char *sku)
{
    conn *c = r->c;
    req_reroute(r);
    snprintf(r->op.sku, sizeof r->op.sku, "%s", sku);
    uint32_t o = route_owner_of(s, sku);
    if (o != s->self) {
        msgpack_object_kv kv[2];
        msgpack_object map;
        order_params(r, kv, &map);
        forward(s, c, r, r->msgid, r->m, o, &map, r->deadline_ms);
    } else {
        rpc_local_request(s, c, r, r->msgid, r->m, r->deadline_ms);
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
    rpc_count_at(s, r->m, err, r->start_ns);
    if (why != NULL) {
        codec_pack_response_err_head(&s->pk, r->msgid, eng_err_code(err), why, true, 1);
        codec_pack_kv_str(&s->pk, "owner", route_node_at(s, s->self)->name);
        codec_pack_response_err_tail(&s->pk);
    } else {
        rpc_pack_eng_error(s, r->msgid, &r->op);
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
    } else if (route_owner_of(s, sku) != s->self && !r->fwd) {
        s->nf_routed++;
        order_route_sku(s, r, sku);
    } else {
        s->nf_stale++;
        route_forget_later(s, sku);
        char why[ENG_ID_MAX + 96];
        snprintf(why, sizeof why, "this instance's copy of sku %s is out of date (taken over "
                 "elsewhere); retry", sku);
        nf_answer(s, r, ENG_E_UNAVAILABLE, why);
    }
}

/* Starts the check for a request held on its connection (its answer is
 * then nf_checked_cb's). False when no check is needed: the caller
 * answers not_found itself. */
bool route_nf_needed(const server *s, const req *r)
{
    return route_sharded(s) && s->st != NULL && rpc_method_is_order(r->m) &&
           r->op.part_lines == 0 && !r->nf_checked;
}

bool route_nf_verify(server *s, req *r)
{
    if (!route_nf_needed(s, r))
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
    core_pump_schedule(arg);
}

void route_coordinator_start(server *s)
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
    rpc_count_at(s, r->m, response_result(data, len), r->start_ns);
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
    rpc_count(s, m, ENG_E_UNAVAILABLE);
    rpc_reply_error(s, c, msgid, "unavailable",
                       "orders of several lines need the coordinator (not built yet)", true, NULL,
                       NULL);
    req_put(s, r);
    return true;
}

static void coordinate_reserve(server *s, conn *c, req *r, uint32_t msgid, int64_t deadline_ms)
{
    s->lines_coordinated++;
    if (r->check) {
        /* Its parts are decided on their owners without a check: refused
         * rather than answered unchecked. */
        rpc_reply_invalid(s, c, msgid, M_RESERVE, "check",
                          "not supported on an order whose lines live on several instances");
        req_put(s, r);
        return;
    }
    if (coordinator_off(s, c, r, msgid, M_RESERVE))
        return;
    req_wait(s, c, r, msgid, M_RESERVE, deadline_ms);
    eng_op *op = &r->op;
    cart_reserve(s->cart, msgid, op->order_id, op->lines, op->n_lines, op->hold_ms, deadline_ms,
                 cart_reply_cb, r);
}

void route_coordinate_order(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                             int64_t deadline_ms)
{
    assert(s->cart != NULL && rpc_method_is_order(m));
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
bool route_hint_missed(const server *s, const req *r, enum method m)
{
    if (s->cart == NULL || !route_sharded(s) || !rpc_method_is_order(m) || r->op.part_lines > 0 ||
        r->cart_routed)
        return false;
    return part_here(s, r->op.order_id) || !engine_order_sku(s->eng, r->op.order_id, NULL);
}

/* Routes a request on a sharded instance. Returns true when it was
 * answered or sent elsewhere; false when this instance handles it. */
bool route_request(server *s, conn *c, req *r, const rpc_msg *msg, enum method m, const rpc_parsed *pp)
{
    /* Not about one SKU: answered by the instance asked (per node). */
    if (m == M_PING || m == M_STATS || m == M_CLUSTER_RING || m == M_ORDER_SUBSCRIBE ||
        m == M_ALERTS_LIST || m == M_SUPPLIER_PUT || m == M_SUPPLIER_GET || m == M_ALERTS_ACK)
        return false;
    eng_op *op = &r->op;
    if (m == M_RESERVE && op->n_lines > 0) {
        coordinate_reserve(s, c, r, msg->msgid, pp->deadline_ms);
        return true;
    }
    /* A client's call on an order of several lines held here as a part:
     * the coordinator answers for the whole order. */
    if (rpc_method_is_order(m) && !pp->fwd && s->cart != NULL && part_here(s, op->order_id)) {
        route_coordinate_order(s, c, r, msg->msgid, m, pp->deadline_ms);
        return true;
    }
    bool by_sku = m == M_RESERVE || m == M_STOCK_GET || m == M_SKU_PUT || m == M_ADJUST ||
                  m == M_SKU_RECHECK || pp->sku_hint;
    if (!by_sku && engine_order_sku(s->eng, op->order_id, op->sku)) {
        /* Held here: its SKU is ours, unless it moved away and waits to be
         * forgotten; then it goes to the owner like any call naming it. */
        if (route_owner_of(s, op->sku) == s->self)
            return false;
        if (!pp->fwd) {
            msgpack_object_kv kv[2];
            msgpack_object map;
            order_params(r, kv, &map);
            forward(s, c, r, msg->msgid, m, route_owner_of(s, op->sku), &map, pp->deadline_ms);
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
            route_coordinate_order(s, c, r, msg->msgid, m, pp->deadline_ms);
            return true;
        }
        r->c = c;
        r->msgid = msg->msgid;
        r->m = m;
        r->start_ns = s->frame_start_ns;
        r->deadline_ms = pp->deadline_ms;
        req_hold(r, c);
        s->order_lookups++;
        if (store_find_order_sku(s->st, op->order_id, order_found_cb, r) != 0) {
            conn_release(c);
            op->err = ENG_E_BUSY;
            rpc_count(s, m, op->err);
            rpc_pack_eng_error(s, msg->msgid, op);
            rpc_flush(s, c);
            req_put(s, r);
        }
        return true;
    }
    uint32_t o = route_owner_of(s, op->sku);
    if (o == s->self)
        return false;
    if (pp->fwd) {
        /* Our ring and the sender's disagree (a change under way): never
         * decide for a SKU this instance does not own. */
        s->not_owner++;
        rpc_count(s, m, ENG_E_UNAVAILABLE);
        reply_unavailable_owner(&s->pk, msg->msgid, "not the owner of this sku (ring change); retry",
                                route_node_at(s, o)->name, false);
        rpc_flush(s, c);
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
void route_pack_ring(server *s)
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
void route_forget_later(server *s, const char *sku)
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
void route_forget_sweep(server *s)
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
    if (route_owner_of(s, sku) != s->self)
        route_forget_later(s, sku);
}

/* SIGHUP with a new peer list: a new ring; SKUs that moved away are
 * forgotten when idle (their in-flight batches commit or fail the fence
 * first); SKUs that moved here are taken over at their first request. */
void route_ring_reload(server *s)
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
    route_forget_sweep(s);
    char ver[24], cnt[16];
    snprintf(ver, sizeof ver, "%016llx", (unsigned long long)ring_version(nr));
    snprintf(cnt, sizeof cnt, "%zu", n);
    LOG_I("ring changed", "version", ver, "nodes", cnt);
}
