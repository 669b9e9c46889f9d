/* rpc.c — the request: decoded from a frame, authorized (admin token,
 * peer handshake, peer-only fields), answered from memory or routed and
 * queued, then answered exactly once; see rpc.h and node.h. */
#include "stockd/orderload.h"
#include "stockd/rpc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/check.h"
#include "stockd/check_plan.h"
#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/node.h"
#include "stockd/coldload.h"
#include "stockd/core.h"
#include "stockd/reply.h"
#include "stockd/route.h"
#include "stockd/testclock.h"

/* ------------------------------------------------------------ replies */

/* Sends what was packed into s->out to the connection, if it still has a
 * socket. */
void rpc_flush(server *s, conn *c)
{
    conn_send(c, s->out.data, s->out.size);
    msgpack_sbuffer_clear(&s->out);
}

/* An order record (reply.h), with the lines of a whole order of several
 * lines from the engine; in parts mode a multi-line order here is a part. */
void rpc_pack_order(server *s, msgpack_packer *pk, const eng_order_view *o)
{
    size_t nl = 0;
    if (o->n_lines > 1 && !s->parts_mode)
        nl = engine_order_lines(s->eng, o->order_id, s->line_buf, ENG_LINES_MAX);
    reply_order(pk, o, s->parts_mode, s->line_buf, nl);
}

/* Counts an answer to a request read at start_ns. */
void rpc_count_at(server *s, enum method m, int res, int64_t start_ns)
{
    assert(m < M_COUNT && res < RES_COUNT);
    s->results[m][res]++;
    int64_t d = clock_mono_ns() - start_ns;
    hist_record(&s->latency_us[m], d > 0 ? (uint64_t)d / 1000 : 0);
}

/* Counts an answer to the frame being handled now. */
const char *rpc_result_name(int r)
{
    return r < ENG_E_COUNT_ ? eng_err_code((eng_err)r)
         : r == RES_UNAUTHORIZED ? "unauthorized"
         : r == RES_TOO_LARGE ? "too_large" : "unknown_method";
}

void rpc_count(server *s, enum method m, int res)
{
    rpc_count_at(s, m, res, s->frame_start_ns);
}

/* The error answer of op (reply.h), naming what was set aside at load
 * when a miss was about a SKU or order set aside. */
void rpc_pack_eng_error(server *s, uint32_t msgid, const eng_op *op)
{
    char aside[ENG_REASON_MAX + 1];
    bool is_aside = (op->err == ENG_E_UNKNOWN_SKU || op->err == ENG_E_NOT_FOUND) &&
                    op->err_aside[0] == '\0' && engine_aside_of(s->eng, op, aside);
    reply_eng_error(&s->pk, msgid, op, is_aside ? aside : NULL);
}

void rpc_reply_error(server *s, conn *c, uint32_t msgid, const char *code,
                               const char *message, bool retryable, const char *dkey,
                               const char *dval)
{
    reply_error(&s->pk, msgid, code, message, retryable, dkey, dval);
    rpc_flush(s, c);
}

void rpc_reply_invalid(server *s, conn *c, uint32_t msgid, enum method m,
                          const char *field, const char *problem)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s: %s", field, problem);
    rpc_count(s, m, ENG_E_INVALID);
    rpc_reply_error(s, c, msgid, "invalid", msg, false, "field", field);
}

/* ------------------------------------------------------------ requests */

req *req_get(server *s)
{
    req *r = s->free_reqs;
    if (r != NULL) {
        s->free_reqs = r->next_free;
    } else if ((r = calloc(1, sizeof(*r))) == NULL) {
        return NULL;
    }
    assert(r->state == REQ_FREE);
    r->state = REQ_PARSING;
    memset(&r->op, 0, sizeof(r->op));
    r->op.ctx = r;
    r->op.err_line = -1;
    r->next_free = NULL;
    r->cart_routed = false;
    r->fwd = false;
    r->check = false;
    r->nf_checked = false;
    r->order_reloaded = false;
    r->reload_sku = false;
    return r;
}

/* Releases a request; its lines (rpc_parse) go with it. A request answered
 * at once goes straight here; one that waited comes through req_finish. */
void req_put(server *s, req *r)
{
    assert(r->state != REQ_FREE && r->state != REQ_WAITING);
    r->state = REQ_FREE;
    rpc_op_free_lines(&r->op);
    r->next_free = s->free_reqs;
    s->free_reqs = r;
}

/* Sends what was packed for a request held on its connection (conn_hold)
 * and ends it: the one way every answer that waited (engine, deadline,
 * cold load, forward) leaves, so the connection is freed exactly when its
 * last request is answered. */
void req_finish(server *s, req *r)
{
    assert(r->state == REQ_WAITING);
    r->state = REQ_ANSWERED;
    conn *c = r->c;
    rpc_flush(s, c);
    req_put(s, r);
    conn_release(c);
}

void req_authorized(req *r)
{
    assert(r->state == REQ_PARSING);
    r->state = REQ_AUTHORIZED;
}

void req_reroute(req *r)
{
    assert(r->state == REQ_WAITING);
    r->state = REQ_AUTHORIZED;
}

void req_hold(req *r, conn *c)
{
    assert(r->state == REQ_AUTHORIZED || r->state == REQ_WAITING);
    r->state = REQ_WAITING;
    conn_hold(c);
}

/* A reserve the engine answered with a record: held for its check (the
 * check starts), a retry of one under check (it waits for it), or a
 * retry of one its check refused (check_failed again, from the record,
 * so also after a restart). True when answered or handed on here. */
static bool check_reserve_done(server *s, req *r)
{
    const eng_order_view *o = &r->op.order;
    if (r->op.checking) {
        check_start(s, r);
        return true;
    }
    if (o->status == ENG_ST_HELD && strcmp(o->reason, ENG_CHECK_PENDING) == 0) {
        check_wait(s, r);
        return true;
    }
    if (o->status == ENG_ST_FAILED && check_refused_reason(o->reason)) {
        rpc_count_at(s, r->m, ENG_E_CHECK_FAILED, r->start_ns);
        codec_pack_response_err_head(&s->pk, r->msgid, "check_failed", o->reason, false, 1);
        codec_pack_kv_str(&s->pk, "order_id", o->order_id);
        codec_pack_response_err_tail(&s->pk);
        req_finish(s, r);
        return true;
    }
    return false;
}

/* The engine answered a request: reply and release it. */
void rpc_done_cb(eng_op *op, void *arg)
{
    server *s = arg;
    req *r = op->ctx;
    evtimer_del(&r->timer);
    if (op->err == ENG_E_NOT_FOUND && route_nf_verify(s, r))
        return;  /* MariaDB answers (nf_checked_cb) */
    if (r->m == M_RESERVE && op->err == ENG_OK && check_reserve_done(s, r))
        return;
    rpc_count_at(s, r->m, op->err, r->start_ns);
    if (op->outcome_unknown)
        s->outcome_unknown++;
    if (op->err == ENG_OK) {
        codec_pack_response_ok_head(&s->pk, r->msgid);
        /* A link just committed (new, changed, or a repair of a broken
         * one) is synced now: waiting for the next round would leave the
         * SKU without supplier stock for up to --supplier-sync-ms. The
         * engine applied the batch before answering, so the sync reads it.
         * The same working link again is left alone. */
        if (r->m == M_SKU_PUT && op->mapping_new)
            supsync_poke_sku(s->supsync, op->sku);
        if (r->m == M_SKU_PUT || r->m == M_ADJUST)
            reply_stock(&s->pk, &op->stock);
        else if (r->m == M_SUPPLIER_PUT)
            reply_trust(&s->pk, op->supplier.supplier_id, &op->trust);
        else
            rpc_pack_order(s, &s->pk, &op->order);
    } else {
        rpc_pack_eng_error(s, r->msgid, op);
    }
    req_finish(s, r);
}

void rpc_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    req *r = arg;
    server *s = cl(r->c)->srv;
    if (!engine_cancel(s->eng, &r->op))
        return;  /* already decided: the commit (bounded by its timeout) answers */
    r->op.err = ENG_E_DEADLINE;
    rpc_count_at(s, r->m, ENG_E_DEADLINE, r->start_ns);
    rpc_pack_eng_error(s, r->msgid, &r->op);
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

/* A read of something that is not there: answered now. */
static void reply_read_miss(server *s, conn *c, uint32_t msgid, enum method m, eng_op *op, eng_err err)
{
    op->err = err;
    rpc_count(s, m, err);
    rpc_pack_eng_error(s, msgid, op);
    rpc_flush(s, c);
}


/* The committed record an order call names: a part (a peer's call with
 * part_lines) or an order. */
bool rpc_order_read(const server *s, const eng_op *op, eng_order_view *out)
{
    if (op->part_lines > 0)
        return engine_part_get(s->eng, op->order_id, op->line_no, out);
    return engine_order_get(s->eng, op->order_id, out);
}

/* True when the order (or part) an order call names is in memory. */
bool rpc_order_known(const server *s, const eng_op *op)
{
    if (op->part_lines > 0)
        return engine_part_sku(s->eng, op->order_id, op->line_no, NULL);
    return engine_order_sku(s->eng, op->order_id, NULL);
}

/* sku.recheck on the SKU's owner: asks the supplier sync for the SKU's
 * offer now (coalesced with a call in flight), which refreshes the figure
 * and validates the link; the outcome shows in stock.get. */
void rpc_pack_recheck(server *s, uint32_t msgid, const eng_stock_view *v)
{
    bool mapped = v->mapping == ENG_MAP_OK || v->mapping == ENG_MAP_BROKEN;
    bool poke = mapped && s->supsync != NULL;
    if (poke)
        supsync_poke_sku(s->supsync, v->sku);
    codec_pack_response_ok_head(&s->pk, msgid);
    msgpack_pack_map(&s->pk, 3);
    codec_pack_kv_str(&s->pk, "sku", v->sku);
    codec_pack_kv_str(&s->pk, "mapping", eng_mapping_name(v->mapping));
    codec_pack_kv_bool(&s->pk, "rechecking", poke);
}

static void handle_read_only(server *s, conn *c, uint32_t msgid, enum method m, req *r)
{
    msgpack_packer *pk = &s->pk;
    eng_op *op = &r->op;
    if (m == M_ORDER_SUBSCRIBE) {
        if (!notify_subscribe(s->notify, c)) {
            rpc_count(s, m, ENG_E_BUSY);
            rpc_reply_error(s, c, msgid, "busy", "too many order.subscribe connections", true,
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
            rpc_count(s, m, ENG_E_NOT_FOUND);
            rpc_reply_error(s, c, msgid, "not_found", "supplier not found", false, NULL, NULL);
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
        route_pack_ring(s);
    } else if (m == M_STOCK_GET) {
        eng_stock_view v;
        if (!engine_stock_get(s->eng, op->sku, &v)) {
            reply_read_miss(s, c, msgid, m, op, ENG_E_UNKNOWN_SKU);
            return;
        }
        codec_pack_response_ok_head(pk, msgid);
        reply_stock(pk, &v);
    } else if (m == M_SKU_RECHECK) {
        eng_stock_view v;
        if (!engine_stock_get(s->eng, op->sku, &v)) {
            reply_read_miss(s, c, msgid, m, op, ENG_E_UNKNOWN_SKU);
            return;
        }
        rpc_pack_recheck(s, msgid, &v);
    } else {
        assert(m == M_ORDER_GET);
        eng_order_view v;
        if (!rpc_order_read(s, op, &v)) {
            reply_read_miss(s, c, msgid, m, op, ENG_E_NOT_FOUND);
            return;
        }
        codec_pack_response_ok_head(pk, msgid);
        rpc_pack_order(s, pk, &v);
    }
    rpc_count(s, m, ENG_OK);
    rpc_flush(s, c);
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
    rpc_count(s, M_ORDER_SUBSCRIBE, ENG_OK);
    codec_pack_response_ok_head(&s->pk, msgid);
    msgpack_pack_map(&s->pk, 1);
    codec_pack_kv_int(&s->pk, "told", told);
    rpc_flush(s, c);
}

/* Marks r as waiting on c (answered later through req_finish). */
void req_wait(server *s, conn *c, req *r, uint32_t msgid, enum method m, int64_t deadline_ms)
{
    r->c = c;
    r->msgid = msgid;
    r->m = m;
    if (r->start_ns == 0)
        r->start_ns = s->frame_start_ns;
    r->deadline_ms = deadline_ms;
    req_hold(r, c);
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
        cur.check_before_confirm = false;
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
    if (!pp->has_check_before_confirm)
        t->check_before_confirm = cur.check_before_confirm;
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
    rpc_count(s, m, RES_UNAUTHORIZED);
    rpc_reply_error(s, c, msgid, "unauthorized", why, false, NULL, NULL);
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
    const char *self = route_sharded(s) ? route_node_at(s, s->self)->name : s->cfg->node;
    if (m == M_PEER_HELLO) {
        k->hello = k->peer = false;
        int node = route_sharded(s) ? ring_find(s->ring, pp->peer_node) : -1;
        if (!route_sharded(s) || s->keyring.n == 0) {
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
            rpc_count(s, m, ENG_E_INTERNAL);
            rpc_reply_error(s, c, msgid, "internal", "no random bytes", true, NULL, NULL);
            return;
        }
        memcpy(k->na, pp->peer_nonce, PEER_NONCE_BYTES);
        snprintf(k->node, sizeof k->node, "%s", pp->peer_node);
        k->hello = true;
        uint8_t mac[PEER_MAC_BYTES];
        peer_auth_mac(&s->keyring, k->key, PEER_B_TO_A, k->node, self, k->na, k->nb, mac);
        rpc_count(s, m, ENG_OK);
        codec_pack_response_ok_head(&s->pk, msgid);
        msgpack_pack_map(&s->pk, 4);
        codec_pack_kv_str(&s->pk, "node", self);
        pack_bin(&s->pk, "nonce", k->nb, PEER_NONCE_BYTES);
        pack_bin(&s->pk, "key", s->keyring.k[k->key].id, PEER_KEY_ID_BYTES);
        pack_bin(&s->pk, "mac", mac, PEER_MAC_BYTES);
        rpc_flush(s, c);
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
    rpc_count(s, m, ENG_OK);
    codec_pack_response_ok_head(&s->pk, msgid);
    msgpack_pack_map(&s->pk, 1);
    codec_pack_kv_bool(&s->pk, "ok", true);
    rpc_flush(s, c);
}

/* alerts.ack: MariaDB holds every instance's alerts, so the instance asked
 * answers (no routing); the first acknowledgement stands. */
static void ack_done(void *arg, int result, const store_alert *a)
{
    req *r = arg;
    server *s = cl(r->c)->srv;
    msgpack_packer *pk = &s->pk;
    if (result >= 1) {
        rpc_count_at(s, r->m, ENG_OK, r->start_ns);
        bool note = a->ack_note[0] != '\0';
        codec_pack_response_ok_head(pk, r->msgid);
        reply_alert_head(pk, 4 + note, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
        codec_pack_kv_int(pk, "id", a->id);
        codec_pack_kv_int(pk, "acked_at", a->acked_at);
        codec_pack_kv_str(pk, "acked_by", a->acked_by);
        if (note)
            codec_pack_kv_str(pk, "note", a->ack_note);
        codec_pack_kv_bool(pk, "acked_now", result == 1);
    } else if (result == 0) {
        rpc_count_at(s, r->m, ENG_E_NOT_FOUND, r->start_ns);
        codec_pack_response_err_head(pk, r->msgid, "not_found", "no such alert", false, 0);
        codec_pack_response_err_tail(pk);
    } else {
        rpc_count_at(s, r->m, ENG_E_UNAVAILABLE, r->start_ns);
        codec_pack_response_err_head(pk, r->msgid, "unavailable",
                                     "MariaDB unreachable or slow; acknowledging again is safe",
                                     true, 0);
        codec_pack_response_err_tail(pk);
    }
    req_finish(s, r);
}

static void alerts_ack(server *s, conn *c, req *r, uint32_t msgid, const rpc_parsed *pp)
{
    r->c = c;
    r->msgid = msgid;
    r->m = M_ALERTS_ACK;
    r->start_ns = s->frame_start_ns;
    bool down = s->st == NULL || s->draining;
    if (down ||
        store_alert_ack(s->st, pp->alert_id, pp->ack_by, pp->ack_note, clock_wall_ms(), ack_done,
                        r) != 0) {
        rpc_count(s, M_ALERTS_ACK, down ? ENG_E_UNAVAILABLE : ENG_E_BUSY);
        if (down)
            rpc_reply_error(s, c, msgid, "unavailable", "MariaDB unavailable", true, NULL, NULL);
        else
            rpc_reply_error(s, c, msgid, "busy", "too many support queries waiting", true, NULL,
                            NULL);
        req_put(s, r);
        return;
    }
    req_hold(r, c);
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
        rpc_count(s, M_UNKNOWN, RES_UNKNOWN_METHOD);
        rpc_reply_error(s, c, msg->msgid, "unknown_method", "unknown method", false, "method", name);
        return;
    }
    req *r = req_get(s);
    if (r == NULL) {
        rpc_count(s, m, ENG_E_INTERNAL);
        rpc_reply_error(s, c, msg->msgid, "internal", "out of memory", true, NULL, NULL);
        return;
    }
    rpc_parsed pp = {.deadline_ms = s->cfg->default_deadline_ms};
    rpc_perr pe = {"params", "invalid", false, ""};
    eng_op *op = &r->op;
    if (!rpc_parse_params(m, msg->params, cl(c)->peer, op, &pp, &pe)) {
        if (pe.unauthorized) {
            s->peer_only_refused++;
            rpc_count(s, m, RES_UNAUTHORIZED);
            rpc_reply_error(s, c, msg->msgid, "unauthorized", pe.problem, false, "field", pe.field);
        } else {
            rpc_reply_invalid(s, c, msg->msgid, m, pe.field, pe.problem);
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
        rpc_count(s, m, RES_UNAUTHORIZED);
        rpc_reply_error(s, c, msg->msgid, "unauthorized", "admin token required", false, NULL, NULL);
        req_put(s, r);
        return;
    }
    if (m == M_ALERTS_ACK) {
        req_authorized(r);
        alerts_ack(s, c, r, msg->msgid, &pp);
        return;
    }
    if (m == M_TEST_CLOCK) {
        req_authorized(r);
        testclock_request(s, c, r, msg->msgid, &pp);
        return;
    }
    if (m == M_SUPPLIER_PUT && !supplier_put_merge(s, op, &pp, &pe)) {
        rpc_reply_invalid(s, c, msg->msgid, m, pe.field, pe.problem);
        req_put(s, r);
        return;
    }
    if (op->n_lines > 0) {
        s->lines_reserves++;
        s->lines_total += op->n_lines;
    }
    req_authorized(r);
    r->c = c;
    r->msgid = msg->msgid;
    r->m = m;
    r->start_ns = s->frame_start_ns;
    r->deadline_ms = pp.deadline_ms;
    r->limit = (int32_t)pp.limit;
    r->fwd = pp.fwd;
    r->check = pp.check;
    if (route_sharded(s) && route_request(s, c, r, msg, m, &pp))
        return;
    rpc_local_request(s, c, r, msg->msgid, m, pp.deadline_ms);
}

/* A request this instance answers itself: from memory, after a cold load
 * (or takeover), or through the engine. Not held on its connection yet. */
void rpc_local_request(server *s, conn *c, req *r, uint32_t msgid, enum method m, int64_t deadline_ms)
{
    eng_op *op = &r->op;
    if (m == M_RESERVE) {
        /* A check (check.h) is due when the order takes supplier units to
         * check; without a supplier client none can be made. */
        op->check = r->check;
        op->check_off = s->supc == NULL;
        op->check_hold_ms = check_hold_ms(deadline_ms);
    }
    if (cold_intercept(s, c, r, msgid, m, deadline_ms))
        return;
    /* A "sku" hint that led here to one line of a cross-shard order, or
     * to no order at all: the coordinator finds the whole order. */
    if (route_hint_missed(s, r, m)) {
        s->order_lookups++;
        route_coordinate_order(s, c, r, msgid, m, deadline_ms);
        return;
    }
    /* An order that left memory (or was never loaded) is read back first. */
    if (orderload_intercept(s, c, r, msgid, m, deadline_ms))
        return;
    if (rpc_method_read_only(m)) {
        eng_order_view ov;
        r->m = m;
        if (m == M_ORDER_GET && route_nf_needed(s, r) && !rpc_order_read(s, op, &ov)) {
            req_wait(s, c, r, msgid, m, deadline_ms);
            route_nf_verify(s, r);
            return;
        }
        handle_read_only(s, c, msgid, m, r);
        req_put(s, r);
        return;
    }
    op->kind = rpc_method_op_kind(m);
    r->c = c;
    r->msgid = msgid;
    r->m = m;
    /* A store known to be down answers at once rather than queueing work
     * that cannot commit. */
    eng_err err = (!core_store_up(s) || s->draining) ? ENG_E_UNAVAILABLE
                                                      : engine_submit(s->eng, op, clock_wall_ms());
    if (err != ENG_OK) {
        op->err = err;
        /* Refused at once because memory has no committed record of the
         * order (none, or a placeholder): in a cluster that is not the
         * truth until MariaDB agrees, as for an answer from a batch. */
        if (err == ENG_E_NOT_FOUND && route_nf_needed(s, r)) {
            req_wait(s, c, r, msgid, m, deadline_ms);
            route_nf_verify(s, r);
            return;
        }
        rpc_count_at(s, m, err, r->start_ns);
        rpc_pack_eng_error(s, msgid, op);
        rpc_flush(s, c);
        req_put(s, r);
        return;
    }
    req_hold(r, c);
    evtimer_assign(&r->timer, s->base, rpc_deadline_cb, r);
    if (deadline_ms == (int64_t)s->cfg->default_deadline_ms && s->deadline_tv_default) {
        evtimer_add(&r->timer, s->deadline_tv_default);
    } else {
        struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};
        evtimer_add(&r->timer, &tv);
    }
    core_pump_schedule(s);
}

/* ------------------------------------------------------------ connections */

/* conn.h rpc_on_bad_frame: answered when the msgid could be read. */
void rpc_on_bad_frame(void *arg, conn *c, enum conn_bad why, int64_t msgid)
{
    server *s = arg;
    if (msgid < 0 || why == CONN_BAD_MALFORMED)
        return;
    char msg[96];
    if (why == CONN_BAD_TOO_MANY_VALUES) {
        snprintf(msg, sizeof msg, "more than %d values (no request needs so many)",
                 CONN_FRAME_VALUES_MAX);
        rpc_reply_invalid(s, c, (uint32_t)msgid, M_UNKNOWN, "message", msg);
        return;
    }
    snprintf(msg, sizeof(msg), "message larger than %u bytes", s->cfg->max_message_bytes);
    rpc_count(s, M_UNKNOWN, RES_TOO_LARGE);
    rpc_reply_error(s, c, (uint32_t)msgid, "too_large", msg, false, NULL, NULL);
}

void rpc_on_close(void *arg, conn *c)
{
    server *s = arg;
    notify_forget(s->notify, c);
}

/* conn.h rpc_on_frame: decodes one complete, size-checked frame and handles
 * it. Returns false when the connection must close. */
bool rpc_on_frame(void *arg, conn *c, const uint8_t *p, size_t n)
{
    server *s = arg;
    s->frame_start_ns = clock_mono_ns();
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
                rpc_reply_invalid(s, c, msgid, M_UNKNOWN, "message", "a request is [0, msgid, method, params]");
            else if (obj.via.array.ptr[2].type != MSGPACK_OBJECT_STR)
                rpc_reply_invalid(s, c, msgid, M_UNKNOWN, "method", "must be a string");
            else
                rpc_reply_invalid(s, c, msgid, M_UNKNOWN, "params", "must be an array holding one map");
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
