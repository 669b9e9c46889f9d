/* mode_rpc.c — msgpack-rpc against stockd: `ping` (the bare reactor) and
 * `stockd` (reserve, confirmed unless --hold-ms).
 *
 * Each connection pipelines up to --pipeline requests. Replies may come
 * back in any order (stockd answers per batch), so the msgid carries the
 * slot: msgid = generation << 10 | slot, and a reply whose msgid does not
 * match the slot's current request is a protocol error. Bytes from the
 * server are checked by codec_frame_check() before msgpack-c sees them.
 *
 * Setup creates the run's SKUs with sku.put, pipelined over every
 * connection. The audit reads stockd's own MariaDB (--db) directly.
 *
 * --ring-aware (a sharded cluster): the ring is fetched once with the C
 * client library (stockd_ring_fetch through the first --target, which may
 * be a balancer) and each SKU's owner computed up front. Each of the
 * --connections is then a bundle of one connection per node; the driver
 * sees the bundle (capacity --pipeline) and a request goes out on the
 * bundle's connection to its SKU's owner, so no request is forwarded. A
 * bundle never has more than --pipeline requests in flight, so neither has
 * any of its connections.
 */
#include "db.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <msgpack.h>

#include "stockd/client.h"
#include "stockd/codec.h"

#define RPC_FRAME_MAX (1u << 20)
#define RPC_DEPTH_MAX 16u
#define RPC_SLOT_BITS 10u
_Static_assert((1u << RPC_SLOT_BITS) >= BENCH_PIPELINE_MAX, "a slot index fits the msgid");

typedef enum rpc_kind {
    RPC_K_FREE = 0,  /**< slot unused */
    RPC_K_ORDER,     /**< a driver request (reserve or ping) */
    RPC_K_PUT,       /**< setup: sku.put */
    RPC_K_STATS,     /**< stats, before and after the run */
} rpc_kind;

typedef struct rpc_pending {
    rpc_kind kind;
    uint32_t msgid;
    bench_req *q;
} rpc_pending;

typedef struct rpc_conn {
    bench_run *r;
    struct rpc_mode *mode;
    struct bufferevent *bev;
    uint32_t idx;                     /* driver index; UINT32_MAX before registration */
    bool up, dead;
    uint32_t gen;
    uint32_t cap;
    uint32_t n_pending;
    rpc_pending slots[BENCH_PIPELINE_MAX];
    uint32_t free_slots[BENCH_PIPELINE_MAX];
    uint32_t n_free;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
} rpc_conn;

typedef struct rpc_stats {
    bool have;
    uint32_t answers;                 /* nodes that answered (summed below) */
    int64_t batches, batch_ops, commits;
} rpc_stats;

/* --ring-aware: one connection per node, in ring node order. */
typedef struct rpc_bundle {
    rpc_conn **node;
} rpc_bundle;

typedef struct rpc_mode {
    bool is_ping;
    rpc_conn *conns;
    uint32_t n_conns;
    uint32_t n_settled;
    /* setup */
    uint32_t puts_next, puts_done, puts_failed;
    char put_error[160];
    /* --mix and the audit's expectations: live orders are at least
     * live_lo and at most live_hi (+ replies that never came) */
    uint64_t rng;
    uint64_t live_lo, live_hi;
    /* --lines: replies whose cart detail contradicts the request (an
     * insufficient naming no line of the cart, a record without its lines) */
    uint64_t bad_detail;
    char bad_detail_first[160];
    /* stats */
    uint32_t stats_done;
    rpc_stats stats_before, stats_after, *stats_into;
    /* --ring-aware */
    bool ring;
    uint32_t n_nodes;                 /* 1 without a ring */
    uint8_t *owner_of;                /* per SKU index: its node */
    rpc_bundle *bundles;              /* --connections of them */
    rpc_conn **bundle_conns;          /* n_bundles x n_nodes pointers into conns */
    stockd_cluster *router;           /* the C library's blocking ring-aware client */
} rpc_mode;

/* The connection a request for sku goes out on. */
static rpc_conn *rpc_route(rpc_mode *m, void *driver_conn, uint32_t sku)
{
    if (!m->ring)
        return driver_conn;
    return ((rpc_bundle *)driver_conn)->node[m->owner_of[sku]];
}

/* ---- sending ---- */

static int rpc_slot_take(rpc_conn *c, rpc_kind kind, bench_req *q, uint32_t *msgid)
{
    if (c->dead || !c->up || c->n_free == 0)
        return -1;
    uint32_t k = c->free_slots[--c->n_free];
    assert(c->slots[k].kind == RPC_K_FREE);
    c->gen = (c->gen + 1) & ((1u << (32 - RPC_SLOT_BITS)) - 1);
    *msgid = c->gen << RPC_SLOT_BITS | k;
    c->slots[k] = (rpc_pending){ .kind = kind, .msgid = *msgid, .q = q };
    c->n_pending++;
    return 0;
}

static void rpc_flush(rpc_conn *c)
{
    bufferevent_write(c->bev, c->sb.data, c->sb.size);
    msgpack_sbuffer_clear(&c->sb);
}

#define RPC_HOLD_MS_DEFAULT 60000     /* --mix hold: long enough to outlive the run */

static bench_mix rpc_pick_kind(rpc_mode *m, const bench_opts *o)
{
    if (!o->has_mix)
        return BENCH_MIX_RESERVE;
    uint64_t total = 0;
    for (int k = 0; k < BENCH_MIX_COUNT_; k++)
        total += o->mix[k];
    assert(total > 0);
    uint64_t x = bench_rand(&m->rng) % total;
    for (int k = 0; k < BENCH_MIX_COUNT_; k++) {
        if (x < o->mix[k])
            return (bench_mix)k;
        x -= o->mix[k];
    }
    assert(!"weights changed");
    return BENCH_MIX_RESERVE;
}

/* "lines": [{"sku", "qty"}, ...]: the cart, one line per SKU (--lines). */
static void rpc_pack_lines(rpc_conn *c, const bench_req *q)
{
    msgpack_packer *pk = &c->pk;
    assert(q->n_lines >= 1 && q->n_lines <= BENCH_LINES_MAX);
    msgpack_pack_str(pk, 5);
    msgpack_pack_str_body(pk, "lines", 5);
    msgpack_pack_array(pk, q->n_lines);
    for (uint32_t i = 0; i < q->n_lines; i++) {
        char sku[BENCH_NAME_LEN];
        bench_sku_name(c->r, q->line_sku[i], sku, sizeof sku);
        msgpack_pack_map(pk, 2);
        codec_pack_kv_str(pk, "sku", sku);
        codec_pack_kv_int(pk, "qty", q->qty);
    }
}

/* Packs the request for the order's current step: q->stage is its kind
 * (bench_mix), q->tries its step (0 reserve or get, 1 confirm or release). */
static void rpc_pack_step(rpc_conn *c, uint32_t msgid, const bench_req *q)
{
    msgpack_packer *pk = &c->pk;
    const bench_opts *o = bench_opts_of(c->r);
    char sku[BENCH_NAME_LEN], oid[BENCH_NAME_LEN];
    if (c->mode->is_ping) {
        codec_pack_request_head(pk, msgid, "ping");
        msgpack_pack_map(pk, 0);
        return;
    }
    bench_sku_name(c->r, q->sku, sku, sizeof sku);
    bench_order_id(c->r, q->seq, oid, sizeof oid);
    if (q->stage == BENCH_MIX_GET) {
        codec_pack_request_head(pk, msgid, "stock.get");
        msgpack_pack_map(pk, 1);
        codec_pack_kv_str(pk, "sku", sku);
        return;
    }
    if (q->tries == 1) {
        codec_pack_request_head(pk, msgid, q->stage == BENCH_MIX_HOLD ? "confirm" : "release");
        msgpack_pack_map(pk, 1);
        codec_pack_kv_str(pk, "order_id", oid);
        return;
    }
    int64_t hold_ms = q->stage == BENCH_MIX_HOLD ? (o->hold_ms ? o->hold_ms : RPC_HOLD_MS_DEFAULT)
                    : q->stage == BENCH_MIX_RESERVE ? o->hold_ms : 0;
    codec_pack_request_head(pk, msgid, "reserve");
    if (o->lines > 0) {
        msgpack_pack_map(pk, hold_ms > 0 ? 3 : 2);
        codec_pack_kv_str(pk, "order_id", oid);
        rpc_pack_lines(c, q);
    } else {
        msgpack_pack_map(pk, hold_ms > 0 ? 4 : 3);
        codec_pack_kv_str(pk, "order_id", oid);
        codec_pack_kv_str(pk, "sku", sku);
        codec_pack_kv_int(pk, "qty", q->qty);
    }
    if (hold_ms > 0)
        codec_pack_kv_int(pk, "hold_ms", hold_ms);
}

static int rpc_send_step(rpc_conn *c, bench_req *q)
{
    uint32_t msgid;
    if (rpc_slot_take(c, RPC_K_ORDER, q, &msgid) != 0)
        return -1;
    rpc_pack_step(c, msgid, q);
    rpc_flush(c);
    return 0;
}

static void rpc_send(bench_run *r, void *state, bench_req *q)
{
    rpc_mode *m = state;
    rpc_conn *c = rpc_route(m, q->conn, q->sku);
    q->stage = rpc_pick_kind(m, bench_opts_of(r));
    q->tries = 0;
    q->not_reservation = m->is_ping || q->stage == BENCH_MIX_GET || q->stage == BENCH_MIX_RELEASE;
    if (rpc_send_step(c, q) != 0) {
        bench_conn_dead(r, c->idx);
        bench_done(r, q, "conn_lost");
    }
}

/* A reply (or a lost connection) for an order's step: account for what the
 * audit must find, then finish the order or send its second step. */
static void rpc_order_reply(rpc_conn *c, bench_req *q, bool ok, const char *code, bool unknown)
{
    rpc_mode *m = c->mode;
    if (m->is_ping || q->stage == BENCH_MIX_GET) {
        bench_done(c->r, q, ok ? NULL : code);
        return;
    }
    if (q->tries == 0 && !ok) {
        m->live_hi += unknown;                     /* the reserve may have committed */
        bench_done(c->r, q, code);
        return;
    }
    if (q->tries == 0 && q->stage == BENCH_MIX_RESERVE) {
        m->live_lo++;
        m->live_hi++;
        bench_done(c->r, q, NULL);
        return;
    }
    if (q->tries == 0) {                            /* reserved: confirm or release it */
        q->tries = 1;
        if (rpc_send_step(c, q) != 0) {
            m->live_hi++;
            bench_done(c->r, q, "conn_lost");
        }
        return;
    }
    if (q->stage == BENCH_MIX_HOLD) {
        m->live_lo += ok;                           /* a failed confirm may leave the hold */
        m->live_hi++;
    } else if (!ok) {
        m->live_lo += !unknown;                     /* not released: still live */
        m->live_hi++;
    }
    bench_done(c->r, q, ok ? NULL : code);
}

static void rpc_send_put(rpc_conn *c, uint32_t sku_idx)
{
    const bench_opts *o = bench_opts_of(c->r);
    uint32_t msgid;
    int rc = rpc_slot_take(c, RPC_K_PUT, NULL, &msgid);
    assert(rc == 0);
    char sku[BENCH_NAME_LEN];
    bench_sku_name(c->r, sku_idx, sku, sizeof sku);
    codec_pack_request_head(&c->pk, msgid, "sku.put");
    msgpack_pack_map(&c->pk, o->admin_token[0] ? 3 : 2);
    codec_pack_kv_str(&c->pk, "sku", sku);
    codec_pack_kv_int(&c->pk, "own_on_hand", o->stock);
    if (o->admin_token[0])
        codec_pack_kv_str(&c->pk, "token", o->admin_token);
    rpc_flush(c);
}

static void rpc_send_stats(rpc_conn *c)
{
    const bench_opts *o = bench_opts_of(c->r);
    uint32_t msgid;
    if (rpc_slot_take(c, RPC_K_STATS, NULL, &msgid) != 0) {
        c->mode->stats_done++;
        return;
    }
    codec_pack_request_head(&c->pk, msgid, "stats");
    msgpack_pack_map(&c->pk, o->admin_token[0] ? 1 : 0);
    if (o->admin_token[0])
        codec_pack_kv_str(&c->pk, "token", o->admin_token);
    rpc_flush(c);
}

/* Keeps every connection's pipeline full of sku.put until all are sent. */
static void rpc_pump_puts(rpc_mode *m)
{
    const bench_opts *o = bench_opts_of(m->conns[0].r);
    if (m->ring) {                    /* each put to its owner, bundles in turn */
        while (m->puts_next < o->skus) {
            uint32_t b = m->puts_next % o->connections;
            rpc_conn *c = m->bundles[b].node[m->owner_of[m->puts_next]];
            if (c->dead || c->n_free == 0)
                return;               /* a reply to c pumps again */
            rpc_send_put(c, m->puts_next++);
        }
        return;
    }
    for (uint32_t i = 0; i < m->n_conns && m->puts_next < o->skus; i++) {
        rpc_conn *c = &m->conns[i];
        while (!c->dead && c->n_free > 0 && m->puts_next < o->skus)
            rpc_send_put(c, m->puts_next++);
    }
}

/* ---- receiving ---- */

static int64_t map_int(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = map ? codec_map_get(map, key) : NULL;
    if (v == NULL)
        return -1;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->via.u64;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    return -1;
}

/* stats: {"batches": {"batches", "batch_ops", ...}, "commits": {"ok", ...}} */
static void rpc_take_stats(rpc_mode *m, const msgpack_object *result)
{
    rpc_stats *s = m->stats_into;
    if (s == NULL || result == NULL || result->type != MSGPACK_OBJECT_MAP)
        return;
    const msgpack_object *b = codec_map_get(result, "batches");
    const msgpack_object *cm = codec_map_get(result, "commits");
    if (b == NULL || cm == NULL || b->type != MSGPACK_OBJECT_MAP || cm->type != MSGPACK_OBJECT_MAP)
        return;
    int64_t batches = map_int(b, "batches"), ops = map_int(b, "batch_ops");
    int64_t commits = map_int(cm, "ok");
    if (batches < 0 || ops < 0 || commits < 0)
        return;
    s->batches += batches;            /* --ring-aware: summed over the nodes */
    s->batch_ops += ops;
    s->commits += commits;
    s->answers++;
}

/* The error's "code" as a short outcome name; "error" when it has none. */
static void error_code(const msgpack_object *err, char *buf, size_t len)
{
    const msgpack_object *code = err->type == MSGPACK_OBJECT_MAP ? codec_map_get(err, "code") : NULL;
    if (code == NULL || code->type != MSGPACK_OBJECT_STR || code->via.str.size == 0) {
        snprintf(buf, len, "error");
        return;
    }
    uint32_t n = code->via.str.size < len - 1 ? code->via.str.size : (uint32_t)len - 1;
    memcpy(buf, code->via.str.ptr, n);
    buf[n] = '\0';
}

static bool error_outcome_unknown(const msgpack_object *err)
{
    const msgpack_object *v = err->type == MSGPACK_OBJECT_MAP ? codec_map_get(err, "outcome") : NULL;
    return v != NULL && v->type == MSGPACK_OBJECT_STR && v->via.str.size == 7 &&
           memcmp(v->via.str.ptr, "unknown", 7) == 0;
}

static bool str_is(const msgpack_object *v, const char *s)
{
    size_t n = strlen(s);
    return v != NULL && v->type == MSGPACK_OBJECT_STR && v->via.str.size == n &&
           memcmp(v->via.str.ptr, s, n) == 0;
}

static void rpc_bad_detail(rpc_mode *m, const bench_req *q, const char *why)
{
    if (m->bad_detail++ == 0)
        snprintf(m->bad_detail_first, sizeof m->bad_detail_first, "order %" PRIu64 ": %s",
                 q->seq, why);
}

/* --lines, the reserve step of a cart: a success carries the record with
 * all its lines (PROTOCOL.md: a record of n_lines > 1); an insufficient names a line of the cart (index into the
 * lines sent), that line's SKU and a non-negative availability. */
static void rpc_check_cart(rpc_conn *c, const bench_req *q, bool ok, const char *code,
                           const rpc_msg *msg)
{
    rpc_mode *m = c->mode;
    if (ok) {
        const msgpack_object *res = msg->result;
        const msgpack_object *l = res && res->type == MSGPACK_OBJECT_MAP ? codec_map_get(res, "lines")
                                                                         : NULL;
        /* A cart of one line is a single-SKU order: its record has no lines. */
        if (l == NULL ? q->n_lines > 1
                      : l->type != MSGPACK_OBJECT_ARRAY || l->via.array.size != q->n_lines)
            rpc_bad_detail(m, q, "record without its lines");
        return;
    }
    if (strcmp(code, "insufficient") != 0)
        return;
    int64_t line = map_int(msg->error, "line"), avail = map_int(msg->error, "available");
    char sku[BENCH_NAME_LEN];
    if (line < 0 || line >= (int64_t)q->n_lines || avail < 0) {
        rpc_bad_detail(m, q, "insufficient without a valid line/available");
        return;
    }
    bench_sku_name(c->r, q->line_sku[line], sku, sizeof sku);
    if (!str_is(codec_map_get(msg->error, "sku"), sku))
        rpc_bad_detail(m, q, "insufficient names another sku than its line");
    else if (avail >= q->qty)
        rpc_bad_detail(m, q, "insufficient line has available >= qty");
}

static void rpc_complete(rpc_conn *c, rpc_pending p, const rpc_msg *msg)
{
    rpc_mode *m = c->mode;
    bool ok = msg->error == NULL || msg->error->type == MSGPACK_OBJECT_NIL;
    char code[BENCH_CODE_LEN];
    if (!ok)
        error_code(msg->error, code, sizeof code);
    switch (p.kind) {
    case RPC_K_ORDER:
        if (bench_opts_of(c->r)->lines > 0 && !m->is_ping && p.q->tries == 0 &&
            p.q->stage != BENCH_MIX_GET)
            rpc_check_cart(c, p.q, ok, code, msg);
        rpc_order_reply(c, p.q, ok, code, !ok && error_outcome_unknown(msg->error));
        return;
    case RPC_K_PUT:
        m->puts_done++;
        if (!ok && m->puts_failed++ == 0)
            snprintf(m->put_error, sizeof m->put_error, "sku.put failed: %s", code);
        rpc_pump_puts(m);
        return;
    case RPC_K_STATS:
        if (ok)
            rpc_take_stats(m, msg->result);
        m->stats_done++;
        return;
    case RPC_K_FREE:
        break;
    }
    assert(!"reply for a free slot");
}

/* Fails every pending request of a broken connection. */
static void rpc_conn_fail(rpc_conn *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->idx != UINT32_MAX)
        bench_conn_dead(c->r, c->idx);
    fprintf(stderr, "stockbench: connection %" PRIu32 ": %s\n", c->idx, why);
    for (uint32_t k = 0; k < c->cap; k++) {
        rpc_pending p = c->slots[k];
        if (p.kind == RPC_K_FREE)
            continue;
        c->slots[k].kind = RPC_K_FREE;
        c->n_pending--;
        if (p.kind == RPC_K_ORDER)
            rpc_order_reply(c, p.q, false, "conn_lost", true);
        else if (p.kind == RPC_K_PUT) {
            c->mode->puts_done++;
            c->mode->puts_failed++;
        } else {
            c->mode->stats_done++;
        }
    }
}

/* One checked frame: a response to one of our slots, or a protocol error. */
static int rpc_handle_frame(rpc_conn *c, const uint8_t *p, size_t len)
{
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_clear(&c->zone);
    if (msgpack_unpack((const char *)p, len, &off, &c->zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        off != len)
        return -1;
    rpc_msg msg;
    const char *why = NULL;
    if (!rpc_msg_parse(&obj, &msg, &why) || msg.type != RPC_RESPONSE)
        return -1;
    uint32_t k = msg.msgid & ((1u << RPC_SLOT_BITS) - 1);
    if (k >= c->cap || c->slots[k].kind == RPC_K_FREE || c->slots[k].msgid != msg.msgid)
        return -1;
    rpc_pending pend = c->slots[k];
    c->slots[k].kind = RPC_K_FREE;
    c->free_slots[c->n_free++] = k;
    c->n_pending--;
    rpc_complete(c, pend, &msg);
    return 0;
}

static void rpc_read_cb(struct bufferevent *bev, void *arg)
{
    rpc_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || c->dead)
        return;
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    assert(p != NULL);
    size_t off = 0;
    while (off < len && !c->dead) {
        size_t flen = 0;
        codec_frame f = codec_frame_check(p + off, len - off, RPC_FRAME_MAX, RPC_DEPTH_MAX, &flen);
        if (f == CODEC_FRAME_NEED_MORE)
            break;
        if (f != CODEC_FRAME_OK || rpc_handle_frame(c, p + off, flen) != 0) {
            rpc_conn_fail(c, "protocol error in a reply");
            return;
        }
        off += flen;
    }
    evbuffer_drain(in, off);
}

static void rpc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    rpc_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->up = true;
        c->mode->n_settled++;
        return;
    }
    if (!c->up) {
        c->dead = true;
        c->mode->n_settled++;
        return;
    }
    rpc_conn_fail(c, (what & BEV_EVENT_EOF) ? "closed by the server" : "socket error");
}

/* ---- setup ---- */

static int rpc_conn_start(bench_run *r, rpc_mode *m, rpc_conn *c, const bench_addr *a,
                          char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    c->r = r;
    c->mode = m;
    c->idx = UINT32_MAX;
    c->cap = o->pipeline;
    for (uint32_t k = 0; k < c->cap; k++)
        c->free_slots[k] = c->cap - 1 - k;
    c->n_free = c->cap;
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    msgpack_zone_init(&c->zone, 8192);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, a->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, a->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        sl = sizeof *s6;
    } else {
        snprintf(err, err_len, "bad target host %s", a->host);
        return -1;
    }
    c->bev = bufferevent_socket_new(bench_base(r), -1, BEV_OPT_CLOSE_ON_FREE);
    assert(c->bev != NULL);
    bufferevent_setcb(c->bev, rpc_read_cb, NULL, rpc_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl) != 0) {
        snprintf(err, err_len, "connect %s:%u failed", a->host, a->port);
        return -1;
    }
    return 0;
}

static void rpc_close(bench_run *r, void *state)
{
    (void)r;
    rpc_mode *m = state;
    for (uint32_t i = 0; i < m->n_conns; i++) {
        rpc_conn *c = &m->conns[i];
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        msgpack_sbuffer_destroy(&c->sb);
        msgpack_zone_destroy(&c->zone);
    }
    free(m->conns);
    free(m->owner_of);
    free(m->bundles);
    free(m->bundle_conns);
    stockd_cluster_free(m->router);
    free(m);
}

/* A live connection with a free slot to node k (any node without a ring). */
static rpc_conn *rpc_conn_to(rpc_mode *m, uint32_t k)
{
    for (uint32_t i = 0; i < m->n_conns; i++) {
        rpc_conn *c = &m->conns[i];
        if ((!m->ring || i % m->n_nodes == k) && !c->dead && c->n_free > 0)
            return c;
    }
    return NULL;
}

/* stats from every node (one without a ring), summed. */
static int rpc_fetch_stats(bench_run *r, rpc_mode *m, rpc_stats *into)
{
    memset(into, 0, sizeof *into);
    m->stats_into = into;
    uint32_t target = m->stats_done;
    for (uint32_t k = 0; k < m->n_nodes; k++) {
        rpc_conn *c = rpc_conn_to(m, k);
        if (c == NULL)
            break;
        target++;
        rpc_send_stats(c);
    }
    int rc = bench_wait(r, &m->stats_done, target, 5000);
    m->stats_into = NULL;
    into->have = rc == 0 && into->answers == m->n_nodes;
    return into->have ? 0 : -1;
}

static int rpc_create_skus(bench_run *r, rpc_mode *m, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    rpc_pump_puts(m);
    unsigned timeout_ms = 30000u + o->skus / 10u;     /* >= 10k puts/s expected */
    if (bench_wait(r, &m->puts_done, o->skus, timeout_ms) != 0) {
        snprintf(err, err_len, "sku.put: %" PRIu32 " of %" PRIu32 " answered in %u ms",
                 m->puts_done, o->skus, timeout_ms);
        return -1;
    }
    if (m->puts_failed > 0) {
        snprintf(err, err_len, "%s (%" PRIu32 " of %" PRIu32 " failed)",
                 m->put_error[0] ? m->put_error : "sku.put: connection lost", m->puts_failed, o->skus);
        return -1;
    }
    return 0;
}

/* --ring-aware: fetches cluster.ring through the first target (blocking:
 * setup runs before the clock), fills nodes[] and every SKU's owner. */
static int rpc_ring_setup(bench_run *r, rpc_mode *m, bench_addr *nodes, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    char seed[BENCH_HOST_LEN + 16];
    snprintf(seed, sizeof seed, "%s:%u", o->targets[0].host, o->targets[0].port);
    m->router = stockd_cluster_new();
    assert(m->router != NULL);
    if (stockd_cluster_connect(m->router, seed, 5000) != STOCKD_OK) {
        snprintf(err, err_len, "--ring-aware: %s", stockd_cluster_errstr(m->router));
        return -1;
    }
    const stockd_ring *ring = stockd_cluster_ring(m->router);
    m->n_nodes = (uint32_t)stockd_ring_node_count(ring);
    assert(m->n_nodes >= 1 && m->n_nodes <= STOCKD_RING_NODES_MAX);
    if ((uint64_t)o->connections * m->n_nodes > BENCH_CONNS_MAX) {
        snprintf(err, err_len, "--ring-aware: %u connections x %u nodes is over %u",
                 o->connections, m->n_nodes, BENCH_CONNS_MAX);
        return -1;
    }
    for (uint32_t k = 0; k < m->n_nodes; k++) {
        char e[160];
        if (bench_parse_addr(stockd_ring_node_addr(ring, k), NULL, &nodes[k], e, sizeof e) != 0) {
            snprintf(err, err_len, "--ring-aware: node %s: %s", stockd_ring_node_name(ring, k), e);
            return -1;
        }
    }
    m->owner_of = malloc(o->skus);
    assert(m->owner_of != NULL);
    for (uint32_t i = 0; i < o->skus; i++) {
        char sku[BENCH_NAME_LEN];
        bench_sku_name(r, i, sku, sizeof sku);
        m->owner_of[i] = (uint8_t)stockd_ring_owner(ring, sku, strlen(sku));
    }
    printf("ring-aware: %u nodes, ring version %s, %u connections to each\n", m->n_nodes,
           stockd_ring_version(ring), o->connections);
    m->ring = true;
    return 0;
}

/* Connection b * n_nodes + k is bundle b's connection to node k. */
static void rpc_ring_bundle(rpc_mode *m, uint32_t n_bundles)
{
    m->bundles = calloc(n_bundles, sizeof *m->bundles);
    m->bundle_conns = calloc((size_t)n_bundles * m->n_nodes, sizeof *m->bundle_conns);
    assert(m->bundles != NULL && m->bundle_conns != NULL);
    for (uint32_t b = 0; b < n_bundles; b++) {
        m->bundles[b].node = &m->bundle_conns[(size_t)b * m->n_nodes];
        for (uint32_t k = 0; k < m->n_nodes; k++)
            m->bundles[b].node[k] = &m->conns[(size_t)b * m->n_nodes + k];
    }
}

static int rpc_open_common(bench_run *r, void **state, bool is_ping, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    if (o->n_targets == 0) {
        snprintf(err, err_len, "%s needs --target HOST:PORT", is_ping ? "ping" : "stockd");
        return -1;
    }
    rpc_mode *m = calloc(1, sizeof *m);
    assert(m != NULL);
    *state = m;
    m->is_ping = is_ping;
    m->rng = o->seed ^ 0x6d6978ULL;
    m->n_nodes = 1;
    bench_addr nodes[STOCKD_RING_NODES_MAX];
    if (o->ring_aware && rpc_ring_setup(r, m, nodes, err, err_len) != 0)
        goto fail;
    uint32_t n_conns = o->connections * m->n_nodes;
    m->conns = calloc(n_conns, sizeof *m->conns);
    assert(m->conns != NULL);
    for (uint32_t i = 0; i < n_conns; i++) {
        const bench_addr *a = m->ring ? &nodes[i % m->n_nodes] : &o->targets[i % o->n_targets];
        m->n_conns++;
        if (rpc_conn_start(r, m, &m->conns[i], a, err, err_len) != 0)
            goto fail;
    }
    if (bench_wait(r, &m->n_settled, m->n_conns, 10000) != 0) {
        snprintf(err, err_len, "stockd: connections did not come up in 10 s");
        goto fail;
    }
    for (uint32_t i = 0; i < m->n_conns; i++) {
        if (!m->conns[i].up) {
            const bench_addr *a = m->ring ? &nodes[i % m->n_nodes] : &o->targets[i % o->n_targets];
            snprintf(err, err_len, "connect %s:%u: refused", a->host, a->port);
            goto fail;
        }
    }
    if (m->ring)
        rpc_ring_bundle(m, o->connections);
    if (!is_ping && !o->no_setup && rpc_create_skus(r, m, err, err_len) != 0)
        goto fail;
    if (!is_ping)
        (void)rpc_fetch_stats(r, m, &m->stats_before);
    if (m->ring) {
        for (uint32_t b = 0; b < o->connections; b++) {
            uint32_t idx = bench_add_conn(r, &m->bundles[b], o->pipeline);
            for (uint32_t k = 0; k < m->n_nodes; k++)
                m->bundles[b].node[k]->idx = idx;
        }
        return 0;
    }
    for (uint32_t i = 0; i < m->n_conns; i++)
        m->conns[i].idx = bench_add_conn(r, &m->conns[i], m->conns[i].cap);
    return 0;
fail:
    rpc_close(r, m);
    return -1;
}

static int rpc_open_stockd(bench_run *r, void **state, char *err, size_t err_len)
{
    return rpc_open_common(r, state, false, err, err_len);
}

static int rpc_open_ping(bench_run *r, void **state, char *err, size_t err_len)
{
    return rpc_open_common(r, state, true, err, err_len);
}

#define RPC_RING_CHECK_SKUS 16u

/* --ring-aware: a few SKUs read back through the library's blocking router
 * (ring refresh and owner connections included), so a wrong owner or a
 * broken router shows in the output and not only in the figures. */
static void rpc_ring_check(bench_run *r, rpc_mode *m)
{
    const bench_opts *o = bench_opts_of(r);
    uint32_t n = o->skus < RPC_RING_CHECK_SKUS ? o->skus : RPC_RING_CHECK_SKUS, ok = 0;
    if (o->no_setup)
        return;
    for (uint32_t i = 0; i < n; i++) {
        char sku[BENCH_NAME_LEN];
        bench_sku_name(r, i, sku, sizeof sku);
        stockd_stock st;
        stockd_rc rc = stockd_cluster_stock_get(m->router, sku, &st);
        if (rc == STOCKD_OK && strcmp(st.sku, sku) == 0)
            ok++;
        else
            fprintf(stderr, "stockbench: ring check %s: %s\n", sku, stockd_cluster_errstr(m->router));
    }
    printf("ring check: %u/%u SKUs read from their owners through the router (%u ring refreshes)\n",
           ok, n, stockd_cluster_refreshes(m->router));
}

static void rpc_after(bench_run *r, void *state, bench_result *res)
{
    rpc_mode *m = state;
    if (m->ring && !m->is_ping)
        rpc_ring_check(r, m);
    if (!m->stats_before.have || rpc_fetch_stats(r, m, &m->stats_after) != 0)
        return;
    res->has_server_stats = true;
    res->srv_batches = (double)(m->stats_after.batches - m->stats_before.batches);
    res->srv_batch_ops = (double)(m->stats_after.batch_ops - m->stats_before.batch_ops);
    res->srv_commits = (double)(m->stats_after.commits - m->stats_before.commits);
}

/* ---- audit ---- */

typedef struct audit_q {
    const char *what;
    char sql[1024];
    int64_t got;
} audit_q;

#define RPC_AUDIT_QS 5

/* The audit's queries for the run's SKUs and orders. Orders are stored one
 * row per line (PROTOCOL.md): a cart counts once, its rows must
 * be all live or none, all N of them, each with --qty; the counters check
 * is per line row and holds unchanged. */
static void rpc_audit_sql(const bench_opts *o, const char *n, audit_q *q)
{
    const char *live = "status IN ('held','confirmed','purchased','shipped')";
    const char *holding = "status IN ('held','confirmed','purchased')";
    snprintf(q[0].sql, sizeof q[0].sql, "SELECT COUNT(*) FROM sku WHERE sku LIKE 'b%s-%%'", n);
    snprintf(q[1].sql, sizeof q[1].sql,
             "SELECT COUNT(*) FROM sku WHERE sku LIKE 'b%s-%%' AND (own_reserved > own_on_hand"
             " OR own_reserved < 0 OR supplier_reserved < 0)", n);
    snprintf(q[2].sql, sizeof q[2].sql, "SELECT COUNT(%s) FROM orders WHERE order_id LIKE 'o%s-%%'"
             " AND %s", o->lines ? "DISTINCT order_id" : "*", n, live);
    snprintf(q[3].sql, sizeof q[3].sql,
             "SELECT COUNT(*) FROM sku s LEFT JOIN (SELECT sku, SUM(from_own) fo, SUM(from_supplier) fs"
             " FROM orders WHERE order_id LIKE 'o%s-%%' AND %s GROUP BY sku) o ON o.sku = s.sku"
             " WHERE s.sku LIKE 'b%s-%%' AND (s.own_reserved <> COALESCE(o.fo, 0)"
             " OR s.supplier_reserved <> COALESCE(o.fs, 0))", n, holding, n);
    if (o->lines == 0) {
        snprintf(q[4].sql, sizeof q[4].sql, "SELECT 0");
        return;
    }
    snprintf(q[4].sql, sizeof q[4].sql,
             "SELECT COUNT(*) FROM (SELECT order_id FROM orders WHERE order_id LIKE 'o%s-%%'"
             " GROUP BY order_id HAVING SUM(%s) NOT IN (0, %" PRIu32 ") OR SUM(%s) > 0 AND"
             " (COUNT(DISTINCT sku) <> %" PRIu32 " OR MIN(n_lines) <> %" PRIu32
             " OR MAX(n_lines) <> %" PRIu32 " OR MIN(qty) <> %" PRId32 " OR MAX(qty) <> %" PRId32
             ")) x", n, live, o->lines, live, o->lines, o->lines, o->lines, o->qty, o->qty);
}

static bench_audit_rc rpc_audit_stockd(bench_run *r, void *state, const bench_result *res,
                                       char *msg, size_t msg_len)
{
    rpc_mode *m = state;
    const bench_opts *o = bench_opts_of(r);
    if (!o->has_db) {
        snprintf(msg, msg_len, "skipped: no --db (stockd's database) to audit");
        return BENCH_AUDIT_NONE;
    }
    if (o->sku_prefix[0]) {
        snprintf(msg, msg_len, "skipped: --sku-prefix (SKUs not this run's own)");
        return BENCH_AUDIT_NONE;
    }
    char err[512];
    MYSQL *db = bench_db_connect(&o->db, o->db.db, false, err, sizeof err);
    if (db == NULL) {
        snprintf(msg, msg_len, "audit: %s", err);
        return BENCH_AUDIT_ERROR;
    }
    audit_q q[RPC_AUDIT_QS] = { { .what = "skus" }, { .what = "oversold" }, { .what = "orders" },
                                { .what = "counters" }, { .what = "carts" } };
    rpc_audit_sql(o, bench_nonce(r), q);
    for (unsigned i = 0; i < RPC_AUDIT_QS; i++) {
        if (bench_db_scalar(db, q[i].sql, &q[i].got, err, sizeof err) != 0) {
            mysql_close(db);
            snprintf(msg, msg_len, "audit: %s", err);
            return BENCH_AUDIT_ERROR;
        }
    }
    mysql_close(db);
    uint64_t rows = (uint64_t)q[2].got;
    uint64_t lo = m->live_lo, hi = m->live_hi + res->unknown_total;
    if ((uint64_t)q[0].got != o->skus || q[1].got != 0 || rows < lo || rows > hi || q[3].got != 0 ||
        q[4].got != 0 || m->bad_detail != 0) {
        snprintf(msg, msg_len,
                 "FAILED: skus %" PRId64 "/%" PRIu32 ", oversold skus %" PRId64 ", live orders %"
                 PRIu64 " vs %" PRIu64 "..%" PRIu64 " expected from the replies, skus whose reserved"
                 " counters != sums over live orders %" PRId64 ", carts not all-or-nothing %" PRId64
                 ", replies with a wrong cart detail %" PRIu64 "%s%s",
                 q[0].got, o->skus, q[1].got, rows, lo, hi, q[3].got, q[4].got, m->bad_detail,
                 m->bad_detail ? " (first: " : "", m->bad_detail ? m->bad_detail_first : "");
        if (m->bad_detail)
            snprintf(msg + strlen(msg), msg_len - strlen(msg), ")");
        return BENCH_AUDIT_FAILED;
    }
    if (o->lines > 0)
        snprintf(msg, msg_len, "ok (%" PRIu64 " live carts of %" PRIu32 " lines, all or nothing, %"
                 PRIu32 " skus, none oversold, counters = sums over lines)", rows, o->lines, o->skus);
    else
        snprintf(msg, msg_len, "ok (%" PRIu64 " live orders, %" PRIu32 " skus, none oversold,"
                 " counters = sums over orders)", rows, o->skus);
    return BENCH_AUDIT_OK;
}

static bench_audit_rc rpc_audit_ping(bench_run *r, void *state, const bench_result *res,
                                     char *msg, size_t msg_len)
{
    (void)r;
    (void)state;
    (void)res;
    snprintf(msg, msg_len, "none (no writes)");
    return BENCH_AUDIT_NONE;
}

const bench_mode_ops bench_mode_stockd = {
    .name = "stockd",
    .reserves = true,
    .open = rpc_open_stockd,
    .send = rpc_send,
    .after = rpc_after,
    .audit = rpc_audit_stockd,
    .close = rpc_close,
};

const bench_mode_ops bench_mode_ping = {
    .name = "ping",
    .reserves = false,
    .open = rpc_open_ping,
    .send = rpc_send,
    .audit = rpc_audit_ping,
    .close = rpc_close,
};
