/* client_decode.c — what the server sends, decoded: frames cut off the
 * input (bounded by codec_frame_check before msgpack-c allocates), the RPC
 * header, error maps, order records and stock views. No I/O here.
 */
#include "client_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- frames */

/* Cuts the next complete frame off the input into a heap copy. Returns OK
 * with *bytes set, OK with *bytes NULL when more input is needed, or
 * PROTOCOL (connection closed) when the stream is malformed. */
stockd_rc client_next_frame(stockd_client *c, uint8_t **bytes, size_t *len)
{
    *bytes = NULL;
    size_t fl;
    codec_frame r = codec_frame_check(c->in + c->in_off, c->in_len - c->in_off,
                                      STOCKD_MAX_REPLY_BYTES, CLIENT_MAX_DEPTH, &fl);
    if (r == CODEC_FRAME_NEED_MORE)
        return STOCKD_OK;
    if (r == CODEC_FRAME_TOO_LARGE)
        return client_broken(c, STOCKD_ERR_PROTOCOL, "reply larger than %u bytes",
                             STOCKD_MAX_REPLY_BYTES);
    if (r != CODEC_FRAME_OK)
        return client_broken(c, STOCKD_ERR_PROTOCOL, "malformed msgpack from server");
    uint8_t *copy = malloc(fl);
    if (!copy)
        return client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for a reply");
    memcpy(copy, c->in + c->in_off, fl);
    c->in_off += fl;
    *bytes = copy;
    *len = fl;
    return STOCKD_OK;
}

/* Unpacks a checked frame into u and reads its RPC header. */
stockd_rc client_unpack(stockd_client *c, const uint8_t *bytes, size_t len,
                        msgpack_unpacked *u, rpc_msg *m)
{
    size_t off = 0;
    msgpack_unpacked_destroy(u);
    msgpack_unpacked_init(u);
    if (msgpack_unpack_next(u, (const char *)bytes, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "reply could not be unpacked");
    const char *why = "?";
    if (!rpc_msg_parse(&u->data, m, &why))
        return client_fail(c, STOCKD_ERR_PROTOCOL, "bad reply: %s", why);
    return STOCKD_OK;
}

void client_copy_str(const msgpack_object *o, char *buf, size_t buf_len)
{
    assert(buf_len > 0);
    buf[0] = '\0';
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return;
    size_t n = o->via.str.size < buf_len - 1 ? o->via.str.size : buf_len - 1;
    memcpy(buf, o->via.str.ptr, n);
    buf[n] = '\0';
}

bool client_get_int(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = codec_map_get(map, key);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    return false;
}

/* Fills c->err from an error map. */
stockd_rc client_parse_error(stockd_client *c, const msgpack_object *e)
{
    stockd_error *err = &c->err;
    const msgpack_object *code = codec_map_get(e, "code");
    if (e->type != MSGPACK_OBJECT_MAP || !code || code->type != MSGPACK_OBJECT_STR)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "error reply without a code");
    client_copy_str(code, err->code, sizeof(err->code));
    client_copy_str(codec_map_get(e, "message"), err->message, sizeof(err->message));
    const msgpack_object *r = codec_map_get(e, "retryable");
    err->retryable = r && r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean;
    err->has_available = client_get_int(e, "available", &err->available);
    client_copy_str(codec_map_get(e, "status"), err->status, sizeof(err->status));
    client_copy_str(codec_map_get(e, "field"), err->field, sizeof(err->field));
    client_copy_str(codec_map_get(e, "outcome"), err->outcome, sizeof(err->outcome));
    client_copy_str(codec_map_get(e, "method"), err->method, sizeof(err->method));
    err->has_line = client_get_int(e, "line", &err->line);
    client_copy_str(codec_map_get(e, "sku"), err->sku, sizeof(err->sku));
    snprintf(c->errstr, sizeof(c->errstr), "%s: %s", err->code, err->message);
    return STOCKD_ERR_SERVER;
}

/* -------------------------------------------------------- typed: replies */

/* The "lines" of an order record (absent: none listed). */
static stockd_rc client_order_lines(stockd_client *c, const msgpack_object *a, stockd_order *out)
{
    if (a == NULL)
        return STOCKD_OK;
    if (a->type != MSGPACK_OBJECT_ARRAY)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "order record lines is not an array");
    for (uint32_t i = 0; i < a->via.array.size && i < STOCKD_MAX_LINES; i++) {
        const msgpack_object *l = &a->via.array.ptr[i];
        stockd_order_line *o = &out->lines[i];
        if (l->type != MSGPACK_OBJECT_MAP || !client_get_int(l, "line", &o->line) ||
            !client_get_int(l, "qty", &o->qty) || !client_get_int(l, "from_own", &o->from_own) ||
            !client_get_int(l, "from_supplier", &o->from_supplier))
            return client_fail(c, STOCKD_ERR_PROTOCOL, "order record line %u lacks a field", i);
        client_copy_str(codec_map_get(l, "sku"), o->sku, sizeof(o->sku));
        client_copy_str(codec_map_get(l, "status"), o->status, sizeof(o->status));
        client_copy_str(codec_map_get(l, "upstream_order_id"), o->upstream_order_id,
                        sizeof(o->upstream_order_id));
        out->n_lines_listed = i + 1;
    }
    return STOCKD_OK;
}

stockd_rc stockd_reply_order(stockd_client *c, const stockd_reply *r, stockd_order *out)
{
    memset(out, 0, sizeof(*out));
    const msgpack_object *m = r->result;
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "order record is not a map");
    const msgpack_object *id = codec_map_get(m, "order_id");
    const msgpack_object *status = codec_map_get(m, "status");
    if (!id || id->type != MSGPACK_OBJECT_STR || !status || status->type != MSGPACK_OBJECT_STR ||
        !client_get_int(m, "qty", &out->qty) || !client_get_int(m, "from_own", &out->from_own) ||
        !client_get_int(m, "from_supplier", &out->from_supplier) ||
        !client_get_int(m, "available", &out->available))
        return client_fail(c, STOCKD_ERR_PROTOCOL, "order record lacks a required field");
    client_copy_str(id, out->order_id, sizeof(out->order_id));
    client_copy_str(status, out->status, sizeof(out->status));
    client_copy_str(codec_map_get(m, "sku"), out->sku, sizeof(out->sku));
    (void)client_get_int(m, "created_at", &out->created_at);
    (void)client_get_int(m, "updated_at", &out->updated_at);
    (void)client_get_int(m, "hold_expires_at", &out->hold_expires_at);
    client_copy_str(codec_map_get(m, "upstream_order_id"), out->upstream_order_id,
                    sizeof(out->upstream_order_id));
    client_copy_str(codec_map_get(m, "reason"), out->reason, sizeof(out->reason));
    (void)client_get_int(m, "purchased_at", &out->purchased_at);
    const msgpack_object *settled = codec_map_get(m, "supplier_settled");
    out->supplier_settled = settled && settled->type == MSGPACK_OBJECT_BOOLEAN && settled->via.boolean;
    out->n_lines = 1;
    out->part_line = -1;
    (void)client_get_int(m, "n_lines", &out->n_lines);
    (void)client_get_int(m, "line", &out->part_line);
    return client_order_lines(c, codec_map_get(m, "lines"), out);
}

stockd_rc stockd_reply_stock(stockd_client *c, const stockd_reply *r, stockd_stock *out)
{
    memset(out, 0, sizeof(*out));
    const msgpack_object *m = r->result;
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "stock view is not a map");
    if (!client_get_int(m, "available", &out->available) ||
        !client_get_int(m, "own_on_hand", &out->own_on_hand) ||
        !client_get_int(m, "own_reserved", &out->own_reserved))
        return client_fail(c, STOCKD_ERR_PROTOCOL, "stock view lacks a required field");
    client_copy_str(codec_map_get(m, "sku"), out->sku, sizeof(out->sku));
    (void)client_get_int(m, "supplier_reported", &out->supplier_reported);
    (void)client_get_int(m, "supplier_sellable", &out->supplier_sellable);
    (void)client_get_int(m, "supplier_reserved", &out->supplier_reserved);
    (void)client_get_int(m, "supplier_synced_at", &out->supplier_synced_at);
    client_copy_str(codec_map_get(m, "mapping"), out->mapping, sizeof(out->mapping));
    out->cap = -1;
    const msgpack_object *sup = codec_map_get(m, "supplier");
    if (sup && sup->type == MSGPACK_OBJECT_MAP) {
        out->has_supplier = true;
        client_copy_str(codec_map_get(sup, "supplier_id"), out->supplier_id, sizeof(out->supplier_id));
        client_copy_str(codec_map_get(sup, "spec_id"), out->spec_id, sizeof(out->spec_id));
        (void)client_get_int(sup, "offer_id", &out->offer_id);
        (void)client_get_int(sup, "sku_id", &out->sku_id);
        (void)client_get_int(sup, "cap", &out->cap);
    }
    const msgpack_object *t = codec_map_get(m, "trust");
    if (t && (t->type == MSGPACK_OBJECT_FLOAT64 || t->type == MSGPACK_OBJECT_FLOAT32))
        out->trust = t->via.f64;
    return STOCKD_OK;
}


stockd_rc stockd_notification_order(stockd_client *c, const msgpack_object *msg, stockd_order *out)
{
    memset(out, 0, sizeof(*out));
    if (!msg || msg->type != MSGPACK_OBJECT_ARRAY || msg->via.array.size != 3)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "not a notification");
    const msgpack_object *method = &msg->via.array.ptr[1], *params = &msg->via.array.ptr[2];
    if (method->type != MSGPACK_OBJECT_STR || method->via.str.size != 12 ||
        memcmp(method->via.str.ptr, "order.update", 12) != 0 ||
        params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size != 1)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "not an order.update notification");
    stockd_reply r = {.result = &params->via.array.ptr[0]};
    return stockd_reply_order(c, &r, out);
}
