/* rpc_parse.c — method table and params validation (see rpc_parse.h).
 * Moved out of server.c unchanged in behaviour so it can be fuzzed. */
#include "stockd/rpc_parse.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[M_COUNT] = {
    "ping", "reserve", "confirm", "release", "ship", "order.get",
    "stock.get", "sku.put", "stock.adjust", "stats", "cluster.ring",
    "order.subscribe", "alerts.list", "supplier.put", "supplier.get", "peer.hello",
    "peer.auth", "alerts.ack", "sku.recheck", "test.clock", "(unknown)",
};

const char *rpc_method_name(enum method m)
{
    assert(m < M_COUNT);
    return method_names[m];
}

enum field {
    F_ORDER_ID = 0, F_SKU, F_QTY, F_HOLD_MS, F_DEADLINE_MS, F_DELTA, F_REASON,
    F_OWN_ON_HAND, F_SUPPLIER, F_SUPPLIER_REPORTED, F_TOKEN, F_FWD,
    F_LIMIT, F_SUPPLIER_ID, F_TRUST, F_TRUST_CEILING, F_EVENT_MODE, F_EVENT_TRUST,
    F_LINES, F_PART_LINES, F_LINE_NO, F_DECIDED, F_AS_FAILED, F_UPDATE,
    F_NODE, F_NONCE, F_KEYS, F_MAC, F_ID, F_BY, F_NOTE, F_ATTEMPT, F_WAIT_MS, F_ERASE,
    F_CHECK, F_CHECK_BEFORE_CONFIRM, F_NOW_MS, F_COUNT
};
static const char *const field_names[F_COUNT] = {
    "order_id", "sku", "qty", "hold_ms", "deadline_ms", "delta", "reason",
    "own_on_hand", "supplier", "supplier_reported", "token", "_fwd",
    "limit", "supplier_id", "trust", "trust_ceiling", "event_mode", "event_trust",
    "lines", "part_lines", "line_no", "decided", "as_failed", "update",
    "node", "nonce", "keys", "mac", "id", "by", "note", "attempt", "wait_ms", "erase",
    "check", "check_before_confirm", "now_ms",
};
_Static_assert(F_COUNT <= 64, "field bits must fit in rpc_parsed.seen");
#define B(f) (UINT64_C(1) << (f))
/* Fields of one line of a cross-shard order, sent only by stockd peers
 * (requests carrying "_fwd"). */
#define PART_BITS (B(F_PART_LINES) | B(F_LINE_NO))
/* Fields only an authenticated peer connection may send (peer_auth.h); on
 * any other connection a request naming one is unauthorized, whatever
 * else it holds. release's "reason" is a peer's too (stock.adjust's is
 * the admin's). */
#define PEER_ONLY_BITS (B(F_FWD) | PART_BITS | B(F_DECIDED) | B(F_AS_FAILED) | B(F_UPDATE) | \
                        B(F_ATTEMPT) | B(F_WAIT_MS) | B(F_ERASE))

typedef struct method_spec {
    uint64_t allowed;
    uint64_t required;
    bool admin;
} method_spec;

static const method_spec specs[M_COUNT] = {
    [M_PING] = {B(F_TOKEN) | B(F_FWD), 0, false},
    /* sku + qty or lines: checked after the fields (reserve_shape) */
    [M_RESERVE] = {B(F_ORDER_ID) | B(F_SKU) | B(F_QTY) | B(F_LINES) | B(F_HOLD_MS) | B(F_DEADLINE_MS) |
                   B(F_TOKEN) | B(F_FWD) | PART_BITS | B(F_ATTEMPT) | B(F_WAIT_MS) | B(F_CHECK),
                   B(F_ORDER_ID), false},
    [M_CONFIRM] = {B(F_ORDER_ID) | B(F_SKU) | B(F_DEADLINE_MS) | B(F_TOKEN) | B(F_FWD) | PART_BITS |
                   B(F_DECIDED), B(F_ORDER_ID), false},
    /* as_failed / reason: a peer's cascade onto a part (checked in peer_only_check) */
    [M_RELEASE] = {B(F_ORDER_ID) | B(F_SKU) | B(F_DEADLINE_MS) | B(F_TOKEN) | B(F_FWD) | PART_BITS |
                   B(F_AS_FAILED) | B(F_REASON) | B(F_ATTEMPT) | B(F_ERASE), B(F_ORDER_ID), false},
    [M_SHIP] = {B(F_ORDER_ID) | B(F_SKU) | B(F_DEADLINE_MS) | B(F_TOKEN) | B(F_FWD) | PART_BITS,
                B(F_ORDER_ID), false},
    [M_ORDER_GET] = {B(F_ORDER_ID) | B(F_SKU) | B(F_TOKEN) | B(F_FWD) | PART_BITS, B(F_ORDER_ID), false},
    [M_STOCK_GET] = {B(F_SKU) | B(F_TOKEN) | B(F_FWD), B(F_SKU), false},
    [M_SKU_PUT] = {B(F_SKU) | B(F_OWN_ON_HAND) | B(F_SUPPLIER) | B(F_SUPPLIER_REPORTED) |
                   B(F_DEADLINE_MS) | B(F_TOKEN) | B(F_FWD), B(F_SKU), true},
    [M_ADJUST] = {B(F_SKU) | B(F_DELTA) | B(F_REASON) | B(F_DEADLINE_MS) | B(F_TOKEN) | B(F_FWD),
                  B(F_SKU) | B(F_DELTA) | B(F_REASON), true},
    [M_STATS] = {B(F_TOKEN), 0, false},
    [M_CLUSTER_RING] = {B(F_TOKEN), 0, false},
    /* update: a peer hands this node's listeners an order's record */
    [M_ORDER_SUBSCRIBE] = {B(F_TOKEN) | B(F_FWD) | B(F_UPDATE), 0, false},
    [M_ALERTS_LIST] = {B(F_LIMIT) | B(F_TOKEN), 0, false},
    [M_SUPPLIER_PUT] = {B(F_SUPPLIER_ID) | B(F_TRUST) | B(F_TRUST_CEILING) | B(F_EVENT_MODE) |
                        B(F_EVENT_TRUST) | B(F_CHECK_BEFORE_CONFIRM) | B(F_DEADLINE_MS) | B(F_TOKEN),
                        B(F_SUPPLIER_ID), true},
    [M_SUPPLIER_GET] = {B(F_SUPPLIER_ID) | B(F_TOKEN), B(F_SUPPLIER_ID), false},
    [M_PEER_HELLO] = {B(F_NODE) | B(F_NONCE) | B(F_KEYS), B(F_NODE) | B(F_NONCE) | B(F_KEYS), false},
    [M_PEER_AUTH] = {B(F_MAC), B(F_MAC), false},
    [M_ALERTS_ACK] = {B(F_ID) | B(F_BY) | B(F_NOTE) | B(F_TOKEN), B(F_ID) | B(F_BY), true},
    [M_SKU_RECHECK] = {B(F_SKU) | B(F_TOKEN) | B(F_FWD), B(F_SKU), true},
    /* testing only (testclock.h): refused unless the server runs --test-clock */
    [M_TEST_CLOCK] = {B(F_NOW_MS) | B(F_TOKEN), 0, true},
};

bool rpc_utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c == 0)
            return false;  /* ids travel as C strings */
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static bool order_id_valid(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool get_str(const msgpack_object *v, char *dst, size_t max, bool utf8, rpc_perr *e, const char *f)
{
    e->field = f;
    if (v->type != MSGPACK_OBJECT_STR) {
        e->problem = "must be a string";
        return false;
    }
    size_t n = v->via.str.size;
    if (n == 0 || n > max) {
        e->problem = n == 0 ? "must not be empty" : "too long";
        return false;
    }
    if (utf8 && !rpc_utf8_valid((const unsigned char *)v->via.str.ptr, n)) {
        e->problem = "must be valid UTF-8 without NUL";
        return false;
    }
    memcpy(dst, v->via.str.ptr, n);
    dst[n] = '\0';
    return true;
}

/* A supplier id names the Redis key stock:{supplier}:{sku}: without ':' and
 * other than "own" (own-warehouse SKUs' keys), the key splits one way. */
static bool get_supplier_id(const msgpack_object *v, char *dst, rpc_perr *e, const char *f)
{
    if (!get_str(v, dst, ENG_ID_MAX, true, e, f))
        return false;
    if (strchr(dst, ':') != NULL || strcmp(dst, "own") == 0) {
        e->problem = "must not contain ':' nor be \"own\" (the cache key stock:{supplier}:{sku} "
                     "would be ambiguous)";
        return false;
    }
    return true;
}

static bool get_int(const msgpack_object *v, int64_t lo, int64_t hi, int64_t *out, rpc_perr *e, const char *f)
{
    e->field = f;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX || (int64_t)v->via.u64 > hi || (int64_t)v->via.u64 < lo) {
            e->problem = "out of range";
            return false;
        }
        *out = (int64_t)v->via.u64;
        return true;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (v->via.i64 < lo || v->via.i64 > hi) {
            e->problem = "out of range";
            return false;
        }
        *out = v->via.i64;
        return true;
    }
    e->problem = "must be an integer";
    return false;
}

/* A factor 0..1: a float (32 or 64 bit), or the integers 0 and 1. */
static bool get_factor(const msgpack_object *v, double *out, rpc_perr *e, const char *f)
{
    e->field = f;
    double x;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
        x = v->via.f64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= 1)
        x = (double)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        e->problem = "out of range (0..1)";
        return false;
    } else {
        e->problem = "must be a number";
        return false;
    }
    if (!(x >= 0.0 && x <= 1.0)) {  /* NaN fails too */
        e->problem = "out of range (0..1)";
        return false;
    }
    *out = x;
    return true;
}

static bool parse_supplier(const msgpack_object *v, eng_supplier_map *m, rpc_perr *e)
{
    e->field = "supplier";
    if (v->type != MSGPACK_OBJECT_MAP) {
        e->problem = "must be a map";
        return false;
    }
    memset(m, 0, sizeof(*m));
    m->cap = -1;
    unsigned seen = 0;
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        const msgpack_object *k = &v->via.map.ptr[i].key, *val = &v->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) {
            e->problem = "keys must be strings";
            return false;
        }
        size_t kn = k->via.str.size;
        const char *kp = k->via.str.ptr;
        if (kn == 11 && memcmp(kp, "supplier_id", 11) == 0) {
            if (!get_supplier_id(val, m->supplier_id, e, "supplier.supplier_id"))
                return false;
            seen |= 1;
        } else if (kn == 8 && memcmp(kp, "offer_id", 8) == 0) {
            if (!get_int(val, 1, INT64_MAX, &m->offer_id, e, "supplier.offer_id"))
                return false;
            seen |= 2;
        } else if (kn == 7 && memcmp(kp, "spec_id", 7) == 0) {
            if (!get_str(val, m->spec_id, ENG_ID_MAX, true, e, "supplier.spec_id"))
                return false;
            seen |= 4;
        } else if (kn == 6 && memcmp(kp, "sku_id", 6) == 0) {
            if (!get_int(val, 1, INT64_MAX, &m->sku_id, e, "supplier.sku_id"))
                return false;
        } else if (kn == 3 && memcmp(kp, "cap", 3) == 0) {
            if (!get_int(val, 0, ENG_STOCK_MAX, &m->cap, e, "supplier.cap"))
                return false;
        } else {
            e->field = "supplier";
            e->problem = "unknown key (supplier_id, offer_id, spec_id, sku_id, cap)";
            return false;
        }
    }
    if (seen != 7) {
        e->field = !(seen & 1) ? "supplier.supplier_id" : !(seen & 2) ? "supplier.offer_id" : "supplier.spec_id";
        e->problem = "required";
        return false;
    }
    return true;
}

/* Names a line's field in e->unknown ("lines[3].qty"), so the message
 * points at the exact map the client got wrong. */
static const char *line_field(rpc_perr *e, uint32_t i, const char *key)
{
    snprintf(e->unknown, sizeof e->unknown, "lines[%u]%s%s", i, key[0] ? "." : "", key);
    return e->unknown;
}

/* One line: a map of exactly sku and qty, with the top-level rules. */
static bool parse_line(const msgpack_object *v, uint32_t i, eng_line_in *out, rpc_perr *e)
{
    if (v->type != MSGPACK_OBJECT_MAP) {
        e->field = line_field(e, i, "");
        e->problem = "must be a map {sku, qty}";
        return false;
    }
    unsigned seen = 0;
    for (uint32_t k = 0; k < v->via.map.size; k++) {
        const msgpack_object *key = &v->via.map.ptr[k].key, *val = &v->via.map.ptr[k].val;
        bool is_sku = key->type == MSGPACK_OBJECT_STR && key->via.str.size == 3 &&
                      memcmp(key->via.str.ptr, "sku", 3) == 0;
        bool is_qty = key->type == MSGPACK_OBJECT_STR && key->via.str.size == 3 &&
                      memcmp(key->via.str.ptr, "qty", 3) == 0;
        if (!is_sku && !is_qty) {
            e->field = line_field(e, i, "");
            e->problem = "unknown key (a line is {sku, qty})";
            return false;
        }
        unsigned bit = is_sku ? 1u : 2u;
        if (seen & bit) {
            e->field = line_field(e, i, is_sku ? "sku" : "qty");
            e->problem = "given twice";
            return false;
        }
        seen |= bit;
        if (is_sku) {
            if (!get_str(val, out->sku, ENG_ID_MAX, true, e, line_field(e, i, "sku")))
                return false;
        } else {
            int64_t q;
            if (!get_int(val, 1, ENG_QTY_MAX, &q, e, line_field(e, i, "qty")))
                return false;
            out->qty = (int32_t)q;
        }
    }
    if (seen != 3) {
        e->field = line_field(e, i, (seen & 1) ? "qty" : "sku");
        e->problem = "required";
        return false;
    }
    return true;
}

/* "lines": 1..ENG_LINES_MAX maps, checked whole on the stack before the
 * one allocation (op->lines, freed by rpc_op_free_lines). Lines naming the
 * same SKU are summed by the engine, so their sum obeys the qty limit too. */
static bool parse_lines(const msgpack_object *v, eng_op *op, rpc_perr *e)
{
    e->field = "lines";
    if (v->type != MSGPACK_OBJECT_ARRAY) {
        e->problem = "must be an array of maps {sku, qty}";
        return false;
    }
    uint32_t n = v->via.array.size;
    if (n == 0 || n > ENG_LINES_MAX) {
        e->problem = n == 0 ? "must not be empty" : "too many (at most 50 lines)";
        return false;
    }
    _Static_assert(ENG_LINES_MAX == 50, "the message above names the limit");
    eng_line_in tmp[ENG_LINES_MAX];
    memset(tmp, 0, sizeof tmp);
    for (uint32_t i = 0; i < n; i++) {
        if (!parse_line(&v->via.array.ptr[i], i, &tmp[i], e))
            return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        int64_t sum = tmp[i].qty;
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(tmp[j].sku, tmp[i].sku) == 0)
                sum += tmp[j].qty;
        }
        if (sum > ENG_QTY_MAX) {
            e->field = line_field(e, i, "qty");
            e->problem = "the lines of one sku add up to more than 1000000";
            return false;
        }
    }
    eng_line_in *lines = malloc(n * sizeof *lines);
    if (lines == NULL) {
        e->problem = "out of memory";
        return false;
    }
    memcpy(lines, tmp, n * sizeof *lines);
    assert(op->lines == NULL);
    op->lines = lines;
    op->n_lines = n;
    return true;
}

void rpc_op_free_lines(eng_op *op)
{
    free((void *)op->lines);
    op->lines = NULL;
    op->n_lines = 0;
}

/* A peer's order record (order.subscribe update): relayed as it is to
 * this node's listeners, so only its identity is checked: order_id and
 * status strings of sane length. The frame limit bounds the rest. */
static bool update_valid(const msgpack_object *v)
{
    const msgpack_object *id = NULL, *st = NULL;
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        const msgpack_object *k = &v->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return false;
        if (k->via.str.size == 8 && memcmp(k->via.str.ptr, "order_id", 8) == 0)
            id = &v->via.map.ptr[i].val;
        else if (k->via.str.size == 6 && memcmp(k->via.str.ptr, "status", 6) == 0)
            st = &v->via.map.ptr[i].val;
    }
    return id != NULL && id->type == MSGPACK_OBJECT_STR && id->via.str.size >= 1 &&
           id->via.str.size <= ENG_ID_MAX &&
           rpc_utf8_valid((const unsigned char *)id->via.str.ptr, id->via.str.size) &&
           st != NULL && st->type == MSGPACK_OBJECT_STR && st->via.str.size >= 1 &&
           st->via.str.size <= 16;
}

static int field_lookup(const char *p, size_t n)
{
    for (int f = 0; f < F_COUNT; f++) {
        if (strlen(field_names[f]) == n && memcmp(field_names[f], p, n) == 0)
            return f;
    }
    return -1;
}

static bool get_bool(const msgpack_object *v, bool *out, rpc_perr *e, const char *name)
{
    e->field = name;
    e->problem = "must be a boolean";
    *out = v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
    return v->type == MSGPACK_OBJECT_BOOLEAN;
}

/* A nonce or a MAC: exactly 32 bytes of bin, kept as a pointer into the
 * request (valid while it is). */
static bool get_bin32(const msgpack_object *v, const uint8_t **out, rpc_perr *e,
                      const char *name)
{
    _Static_assert(PEER_NONCE_BYTES == 32 && PEER_MAC_BYTES == 32, "both are 32 bytes");
    e->field = name;
    if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != 32) {
        e->problem = "must be 32 bytes (bin)";
        return false;
    }
    *out = (const uint8_t *)v->via.bin.ptr;
    return true;
}

/* The fields only peers send: the handshake's and the forwarding mark. */
static bool parse_peer_field(int f, const msgpack_object *v, rpc_parsed *pp, rpc_perr *e)
{
    switch (f) {
    case F_NODE:
        e->field = "node";
        if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
            v->via.str.size > PEER_NODE_MAX ||
            !rpc_utf8_valid((const unsigned char *)v->via.str.ptr, v->via.str.size)) {
            e->problem = "must be a node name (1..64 bytes)";
            return false;
        }
        memcpy(pp->peer_node, v->via.str.ptr, v->via.str.size);
        pp->peer_node[v->via.str.size] = '\0';
        return true;
    case F_NONCE:
        return get_bin32(v, &pp->peer_nonce, e, "nonce");
    case F_KEYS:
        e->field = "keys";
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size == 0 ||
            v->via.array.size > PEER_KEYS_MAX) {
            e->problem = "must be an array of 1..2 key ids";
            return false;
        }
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *k = &v->via.array.ptr[i];
            if (k->type != MSGPACK_OBJECT_BIN || k->via.bin.size != PEER_KEY_ID_BYTES) {
                e->problem = "each key id must be 8 bytes (bin)";
                return false;
            }
            memcpy(pp->peer_keys + i * PEER_KEY_ID_BYTES, k->via.bin.ptr, PEER_KEY_ID_BYTES);
        }
        pp->peer_n_keys = v->via.array.size;
        return true;
    case F_MAC:
        return get_bin32(v, &pp->peer_mac, e, "mac");
    case F_FWD:
        e->field = "_fwd";
        e->problem = "must be a positive integer (set by stockd peers)";
        pp->fwd = true;
        pp->fwd_ring = v->via.u64;
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    }
    return false;
}

static bool parse_field(int f, const msgpack_object *v, eng_op *op, rpc_parsed *pp, rpc_perr *e)
{
    int64_t x;
    switch (f) {
    case F_ORDER_ID:
        if (!get_str(v, op->order_id, ENG_ID_MAX, false, e, "order_id"))
            return false;
        /* All the bytes sent, not strlen: "\0x" or "ab\0x" would otherwise
         * pass as "" or alias the order "ab" (found by fuzz_request). */
        if (!order_id_valid(op->order_id, v->via.str.size)) {
            e->problem = "only A-Z a-z 0-9 . _ : - allowed";
            return false;
        }
        return true;
    case F_SKU:
        pp->sku_hint = true;
        return get_str(v, op->sku, ENG_ID_MAX, true, e, "sku");
    case F_QTY:
        if (!get_int(v, 1, ENG_QTY_MAX, &x, e, "qty"))
            return false;
        op->qty = (int32_t)x;
        return true;
    case F_HOLD_MS:
        return get_int(v, ENG_HOLD_MS_MIN, ENG_HOLD_MS_MAX, &op->hold_ms, e, "hold_ms");
    case F_DEADLINE_MS:
        return get_int(v, 1, 600000, &pp->deadline_ms, e, "deadline_ms");
    case F_DELTA:
        if (!get_int(v, -ENG_STOCK_MAX, ENG_STOCK_MAX, &op->delta, e, "delta"))
            return false;
        if (op->delta == 0) {
            e->problem = "must not be 0";
            return false;
        }
        return true;
    case F_REASON:
        return get_str(v, op->reason, ENG_REASON_MAX, true, e, "reason");
    case F_OWN_ON_HAND:
        op->has_own_on_hand = true;
        return get_int(v, 0, ENG_STOCK_MAX, &op->own_on_hand, e, "own_on_hand");
    case F_SUPPLIER_REPORTED:
        op->has_supplier_reported = true;
        return get_int(v, 0, ENG_STOCK_MAX, &op->supplier_reported, e, "supplier_reported");
    case F_SUPPLIER:
        op->has_supplier = true;
        return parse_supplier(v, &op->supplier, e);
    case F_TOKEN:
        e->field = "token";
        e->problem = "must be a string";
        pp->token = v;
        return v->type == MSGPACK_OBJECT_STR;
    case F_LIMIT:
        return get_int(v, 1, RPC_ALERTS_LIMIT_MAX, &pp->limit, e, "limit");
    case F_ID:
        return get_int(v, 1, INT64_MAX, &pp->alert_id, e, "id");
    case F_BY:
        return get_str(v, pp->ack_by, ENG_ID_MAX, true, e, "by");
    case F_NOTE:
        /* An empty note is a note not given: the column stays NULL. */
        if (v->type == MSGPACK_OBJECT_STR && v->via.str.size == 0) {
            pp->ack_note[0] = '\0';
            return true;
        }
        return get_str(v, pp->ack_note, RPC_ACK_NOTE_MAX, true, e, "note");
    case F_SUPPLIER_ID:
        return get_supplier_id(v, op->supplier.supplier_id, e, "supplier_id");
    case F_TRUST:
        pp->has_trust = true;
        return get_factor(v, &op->trust.trust, e, "trust");
    case F_TRUST_CEILING:
        pp->has_ceiling = true;
        return get_factor(v, &op->trust.ceiling, e, "trust_ceiling");
    case F_EVENT_TRUST:
        pp->has_event_trust = true;
        return get_factor(v, &op->trust.event_trust, e, "event_trust");
    case F_EVENT_MODE:
        pp->has_event_mode = true;
        return get_bool(v, &op->trust.event_mode, e, "event_mode");
    case F_CHECK:
        /* From gateways (any client): a boolean and nothing else. */
        return get_bool(v, &pp->check, e, "check");
    case F_NOW_MS:
        pp->has_now_ms = true;
        return get_int(v, 1, INT64_MAX, &pp->now_ms, e, "now_ms");
    case F_CHECK_BEFORE_CONFIRM:
        pp->has_check_before_confirm = true;
        return get_bool(v, &op->trust.check_before_confirm, e, "check_before_confirm");
    case F_LINES:
        return parse_lines(v, op, e);
    case F_PART_LINES:
        if (!get_int(v, 2, ENG_LINES_MAX, &x, e, "part_lines"))
            return false;
        op->part_lines = (int32_t)x;
        return true;
    case F_LINE_NO:
        if (!get_int(v, 0, ENG_LINES_MAX - 1, &x, e, "line_no"))
            return false;
        op->line_no = (int32_t)x;
        return true;
    case F_DECIDED:
        return get_bool(v, &op->decided, e, "decided");
    case F_AS_FAILED:
        return get_bool(v, &op->as_failed, e, "as_failed");
    case F_ATTEMPT:
        /* 2^62: every peer can make one without overflow in any int64 */
        if (!get_int(v, 1, (int64_t)1 << 62, &x, e, "attempt"))
            return false;
        op->attempt = (uint64_t)x;
        return true;
    case F_WAIT_MS:
        return get_int(v, 0, ENG_WAIT_MS_MAX, &op->wait_ms, e, "wait_ms");
    case F_ERASE:
        return get_bool(v, &op->erase, e, "erase");
    case F_UPDATE:
        e->field = "update";
        e->problem = "must be an order record (a map with order_id and status)";
        pp->update = v;
        return v->type == MSGPACK_OBJECT_MAP && update_valid(v);
    default:
        return parse_peer_field(f, v, pp, e);
    }
    return false;
}

/* Part fields: only from peers ("_fwd" may come after them in the map,
 * hence checked here), part_lines and line_no together, line_no below
 * part_lines; decided counts only on a part; a coordinator's attempt and
 * wait_ms (reserve) and erase (release, attempt only with it) only on a
 * part. */
static bool parts_check(enum method m, eng_op *op, const rpc_parsed *pp, rpc_perr *e)
{
    uint64_t placing = pp->seen & (B(F_ATTEMPT) | B(F_WAIT_MS) | B(F_ERASE));
    if (placing != 0 && (pp->seen & PART_BITS) != PART_BITS) {
        /* A coordinator's placement of a part, or its erase (cart.h). */
        e->field = field_names[__builtin_ctzll(placing)];
        e->problem = "only on a part (part_lines, line_no)";
        return false;
    }
    if ((pp->seen & B(F_ATTEMPT)) && m == M_RELEASE && !op->erase) {
        e->field = "attempt";
        e->problem = "only with erase true";
        return false;
    }
    uint64_t given = pp->seen & (PART_BITS | B(F_DECIDED));
    if (given == 0)
        return true;
    if (!pp->fwd) {
        e->field = field_names[__builtin_ctzll(given)];
        e->problem = "unknown field";
        return false;
    }
    if (given == B(F_DECIDED)) {
        /* A peer's confirm of a single-SKU order: nothing to override. */
        op->decided = false;
        return true;
    }
    if ((given & PART_BITS) != PART_BITS) {
        e->field = (given & B(F_PART_LINES)) ? "line_no" : "part_lines";
        e->problem = "required with the other part field";
        return false;
    }
    if (op->line_no >= op->part_lines) {
        e->field = "line_no";
        e->problem = "out of range (0..part_lines-1)";
        return false;
    }
    return true;
}

/* Fields only a peer sends outside the part fields: release's as_failed
 * and reason (a failed line's cascade onto another part: both need the
 * part fields, reason only with as_failed true), order.subscribe's update.
 * Checked after the map: "_fwd" may come last. */
static bool peer_only_check(enum method m, eng_op *op, const rpc_parsed *pp, rpc_perr *e)
{
    uint64_t peer = m == M_RELEASE ? (B(F_AS_FAILED) | B(F_REASON))
                  : m == M_ORDER_SUBSCRIBE ? (B(F_UPDATE) | B(F_FWD)) : 0;
    uint64_t given = pp->seen & peer;
    if (given == 0)
        return true;
    if (!pp->fwd) {
        e->field = field_names[__builtin_ctzll(given)];
        e->problem = "unknown field";
        return false;
    }
    if (m == M_ORDER_SUBSCRIBE) {
        if (!(given & B(F_UPDATE))) {
            e->field = "update";
            e->problem = "required on a peer's order.subscribe";
            return false;
        }
        return true;
    }
    if (op->part_lines == 0) {
        e->field = (given & B(F_AS_FAILED)) ? "as_failed" : "reason";
        e->problem = "only on a part (part_lines, line_no)";
        return false;
    }
    if ((given & B(F_REASON)) && !op->as_failed) {
        e->field = "reason";
        e->problem = "only with as_failed true";
        return false;
    }
    return true;
}

/* reserve: sku and qty, or lines (a part: sku and qty). */
static bool reserve_shape(const eng_op *op, const rpc_parsed *pp, rpc_perr *e)
{
    bool lines = pp->seen & B(F_LINES);
    uint64_t one = pp->seen & (B(F_SKU) | B(F_QTY));
    if (lines && one) {
        e->field = "lines";
        e->problem = "give either lines or sku and qty, not both";
        return false;
    }
    if (lines && op->part_lines > 0) {
        e->field = "lines";
        e->problem = "a part is one line (sku and qty)";
        return false;
    }
    if ((lines || op->part_lines > 0) && strlen(op->order_id) > ENG_CART_ID_MAX) {
        e->field = "order_id";
        e->problem = "at most 61 bytes with lines (a line is bought upstream as <order_id>#<line>)";
        return false;
    }
    if (!lines && one != (B(F_SKU) | B(F_QTY))) {
        e->field = (one & B(F_SKU)) ? "qty" : "sku";
        e->problem = one ? "required" : "required (or lines)";
        return false;
    }
    return true;
}

/* A peer-only field named anywhere in the map, before anything else is
 * judged: such a request from a client is refused as unauthorized even
 * when it is also malformed, so probing teaches nothing. */
static bool peer_fields_allowed(enum method m, const msgpack_object *map, bool peer, rpc_perr *e)
{
    if (peer)
        return true;
    uint64_t bits = PEER_ONLY_BITS | (m == M_RELEASE ? B(F_REASON) : 0);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            continue;
        int f = field_lookup(k->via.str.ptr, k->via.str.size);
        if (f >= 0 && (bits & B(f))) {
            e->field = field_names[f];
            e->problem = "only an authenticated cluster peer may send this field";
            e->unauthorized = true;
            return false;
        }
    }
    return true;
}

/* Validates params ([{...}]) against the method's fields into op. */
bool rpc_parse_params(enum method m, const msgpack_object *params, bool peer, eng_op *op,
                      rpc_parsed *pp, rpc_perr *e)
{
    e->field = "params";
    e->unauthorized = false;
    if (params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size != 1 ||
        params->via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
        e->problem = "must be an array holding one map";
        return false;
    }
    const msgpack_object *map = &params->via.array.ptr[0];
    if (!peer_fields_allowed(m, map, peer, e))
        return false;
    const method_spec *spec = &specs[m];
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) {
            e->problem = "keys must be strings";
            return false;
        }
        int f = field_lookup(k->via.str.ptr, k->via.str.size);
        if (f < 0 || !(spec->allowed & B(f))) {
            size_t n = k->via.str.size < ENG_ID_MAX ? k->via.str.size : ENG_ID_MAX;
            if (n > 0)  /* "" may be a NULL pointer in msgpack-c */
                memcpy(e->unknown, k->via.str.ptr, n);
            e->unknown[n] = '\0';
            if (!rpc_utf8_valid((const unsigned char *)e->unknown, n))
                strcpy(e->unknown, "?");
            e->field = e->unknown;
            e->problem = "unknown field";
            return false;
        }
        if (pp->seen & B(f)) {
            e->field = field_names[f];
            e->problem = "given twice";
            return false;
        }
        pp->seen |= B(f);
        if (!parse_field(f, &map->via.map.ptr[i].val, op, pp, e))
            return false;
    }
    uint64_t missing = spec->required & ~pp->seen;
    if (missing) {
        e->field = field_names[__builtin_ctzll(missing)];
        e->problem = "required";
        return false;
    }
    return parts_check(m, op, pp, e) && peer_only_check(m, op, pp, e) &&
           (m != M_RESERVE || reserve_shape(op, pp, e));
}


enum method rpc_method_lookup(const char *p, uint32_t n)
{
    for (int m = 0; m < M_UNKNOWN; m++) {
        if (strlen(method_names[m]) == n && memcmp(method_names[m], p, n) == 0)
            return (enum method)m;
    }
    return M_UNKNOWN;
}

bool rpc_method_admin(enum method m)
{
    assert(m < M_COUNT);
    return specs[m].admin;
}

bool rpc_method_names_sku(enum method m)
{
    return m == M_STOCK_GET || m == M_RESERVE || m == M_SKU_PUT || m == M_ADJUST ||
           m == M_SKU_RECHECK;
}

bool rpc_method_is_order(enum method m)
{
    return m == M_CONFIRM || m == M_RELEASE || m == M_SHIP || m == M_ORDER_GET;
}

eng_op_kind rpc_method_op_kind(enum method m)
{
    static const eng_op_kind kinds[M_COUNT] = {
        [M_RESERVE] = ENG_OP_RESERVE, [M_CONFIRM] = ENG_OP_CONFIRM, [M_RELEASE] = ENG_OP_RELEASE,
        [M_SHIP] = ENG_OP_SHIP, [M_SKU_PUT] = ENG_OP_SKU_PUT, [M_ADJUST] = ENG_OP_ADJUST,
        [M_SUPPLIER_PUT] = ENG_OP_SUPPLIER_PUT,
    };
    assert(m < M_COUNT);
    return kinds[m];
}

bool rpc_method_read_only(enum method m)
{
    return m == M_PING || m == M_STATS || m == M_STOCK_GET || m == M_ORDER_GET ||
           m == M_CLUSTER_RING || m == M_ORDER_SUBSCRIBE || m == M_ALERTS_LIST ||
           m == M_SUPPLIER_GET || m == M_SKU_RECHECK;
}
