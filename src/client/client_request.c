/* client_request.c — packing requests: one open frame at a time in the
 * output buffer, checked before it is queued, and the typed encoders.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------- requests */

stockd_rc stockd_request_begin(stockd_client *c, const char *method, msgpack_packer **pk)
{
    client_reset_call(c);
    *pk = NULL;
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is already open");
    if (c->inflight >= c->max_inflight)
        return client_fail(c, STOCKD_ERR_USAGE, "%u requests in flight (the limit)",
                           c->inflight);
    if (!method || strlen(method) == 0 || strlen(method) > CLIENT_MAX_METHOD_BYTES)
        return client_fail(c, STOCKD_ERR_USAGE, "bad method name");
    c->req_start = c->out.size;
    c->req_msgid = c->next_msgid++;
    if (codec_pack_request_head(&c->pk, c->req_msgid, method) != 0) {
        c->out.size = c->req_start;
        return client_fail(c, STOCKD_ERR_USAGE, "out of memory packing a request");
    }
    c->req_open = true;
    *pk = &c->pk;
    return STOCKD_OK;
}

void stockd_request_abort(stockd_client *c)
{
    if (!c->req_open)
        return;
    c->out.size = c->req_start;   /* drops the partial frame; sbuffer keeps its memory */
    c->req_open = false;
}

/* The open frame must be one request whose params array holds one map. */
static bool client_request_ok(stockd_client *c)
{
    const uint8_t *p = (const uint8_t *)c->out.data + c->req_start;
    size_t n = c->out.size - c->req_start, fl;
    if (codec_frame_check(p, n, SIZE_MAX, CLIENT_MAX_DEPTH, &fl) != CODEC_FRAME_OK || fl != n)
        return false;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    rpc_msg m;
    bool ok = msgpack_unpack_next(&u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS &&
              rpc_msg_parse(&u.data, &m, NULL) && m.params->via.array.size == 1 &&
              m.params->via.array.ptr[0].type == MSGPACK_OBJECT_MAP;
    msgpack_unpacked_destroy(&u);
    return ok;
}

stockd_rc stockd_request_end(stockd_client *c, uint32_t *msgid)
{
    if (!c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "no request is open");
    if (!client_request_ok(c)) {
        stockd_request_abort(c);
        return client_fail(c, STOCKD_ERR_USAGE, "params must be exactly one map");
    }
    c->req_open = false;
    c->inflight++;
    if (msgid)
        *msgid = c->req_msgid;
    if (c->out.size - c->out_sent >= CLIENT_SEND_AT_BYTES)
        return client_flush_until(c, client_now_ms() + c->timeout_ms);
    return STOCKD_OK;
}

stockd_rc stockd_request_call(stockd_client *c, stockd_reply *reply)
{
    uint32_t msgid;
    stockd_rc rc = stockd_request_end(c, &msgid);
    if (rc != STOCKD_OK)
        return rc;
    return stockd_recv(c, msgid, reply);
}

/* ---------------------------------------------------------- typed: send */

/* Ends a typed request whose packing returned pack_rc. */
stockd_rc client_end_typed(stockd_client *c, int pack_rc, uint32_t *msgid)
{
    if (pack_rc != 0) {
        stockd_request_abort(c);
        return client_fail(c, STOCKD_ERR_USAGE, "out of memory packing a request");
    }
    return stockd_request_end(c, msgid);
}

int client_pack_token(stockd_client *c, msgpack_packer *pk)
{
    return c->has_token ? codec_pack_kv_str(pk, "token", c->token) : 0;
}

/* The optional tail of a reserve, the same for one SKU and for lines: only
 * what differs from the server's default is sent. */
static uint32_t reserve_opts_n(int64_t hold_ms, int64_t deadline_ms, bool check)
{
    return (uint32_t)(hold_ms != 0) + (deadline_ms != 0) + check;
}

static int pack_reserve_opts(msgpack_packer *pk, int64_t hold_ms, int64_t deadline_ms, bool check)
{
    int r = 0;
    if (!r && hold_ms != 0)
        r = codec_pack_kv_int(pk, "hold_ms", hold_ms);
    if (!r && deadline_ms != 0)
        r = codec_pack_kv_int(pk, "deadline_ms", deadline_ms);
    if (!r && check)
        r = codec_pack_kv_bool(pk, "check", true);
    return r;
}

stockd_rc stockd_send_reserve(stockd_client *c, const stockd_reserve_req *req, uint32_t *msgid)
{
    if (!req || !req->order_id || !req->sku)
        return client_fail(c, STOCKD_ERR_USAGE, "reserve needs order_id and sku");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "reserve", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 3 + reserve_opts_n(req->hold_ms, req->deadline_ms, req->check);
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "order_id", req->order_id) ||
            codec_pack_kv_str(pk, "sku", req->sku) || codec_pack_kv_int(pk, "qty", req->qty) ||
            pack_reserve_opts(pk, req->hold_ms, req->deadline_ms, req->check);
    return client_end_typed(c, r, msgid);
}

stockd_rc stockd_send_reserve_lines(stockd_client *c, const stockd_reserve_lines_req *req,
                                    uint32_t *msgid)
{
    if (!req || !req->order_id || !req->lines || req->n_lines == 0 ||
        req->n_lines > STOCKD_MAX_LINES)
        return client_fail(c, STOCKD_ERR_USAGE, "reserve needs order_id and 1..%d lines",
                           STOCKD_MAX_LINES);
    for (size_t i = 0; i < req->n_lines; i++) {
        if (!req->lines[i].sku)
            return client_fail(c, STOCKD_ERR_USAGE, "line %zu has no sku", i);
    }
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "reserve", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 2 + reserve_opts_n(req->hold_ms, req->deadline_ms, req->check);
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "order_id", req->order_id) ||
            codec_pack_cstr(pk, "lines") || msgpack_pack_array(pk, (uint32_t)req->n_lines);
    for (size_t i = 0; i < req->n_lines && !r; i++)
        r = msgpack_pack_map(pk, 2) || codec_pack_kv_str(pk, "sku", req->lines[i].sku) ||
            codec_pack_kv_int(pk, "qty", req->lines[i].qty);
    if (!r)
        r = pack_reserve_opts(pk, req->hold_ms, req->deadline_ms, req->check);
    return client_end_typed(c, r, msgid);
}

static stockd_rc client_send_one_str(stockd_client *c, const char *method, const char *key,
                                     const char *val, uint32_t *msgid)
{
    if (!val)
        return client_fail(c, STOCKD_ERR_USAGE, "%s needs %s", method, key);
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, method, &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, 1) || codec_pack_kv_str(pk, key, val);
    return client_end_typed(c, r, msgid);
}

stockd_rc stockd_send_order_op(stockd_client *c, const char *method, const char *order_id,
                               uint32_t *msgid)
{
    if (!method || (strcmp(method, "confirm") && strcmp(method, "release") &&
                    strcmp(method, "ship") && strcmp(method, "order.get")))
        return client_fail(c, STOCKD_ERR_USAGE, "not an order method: %s",
                           method ? method : "(null)");
    return client_send_one_str(c, method, "order_id", order_id, msgid);
}

stockd_rc stockd_send_stock_get(stockd_client *c, const char *sku, uint32_t *msgid)
{
    return client_send_one_str(c, "stock.get", "sku", sku, msgid);
}

static int client_pack_supplier(msgpack_packer *pk, const stockd_sku_put_req *req)
{
    return codec_pack_cstr(pk, "supplier") ||
           msgpack_pack_map(pk, 3 + req->has_sku_id + req->has_cap) ||
           codec_pack_kv_str(pk, "supplier_id", req->supplier_id) ||
           codec_pack_kv_int(pk, "offer_id", req->offer_id) ||
           codec_pack_kv_str(pk, "spec_id", req->spec_id) ||
           (req->has_sku_id && codec_pack_kv_int(pk, "sku_id", req->sku_id)) ||
           (req->has_cap && codec_pack_kv_int(pk, "cap", req->cap));
}

stockd_rc stockd_send_sku_put(stockd_client *c, const stockd_sku_put_req *req, uint32_t *msgid)
{
    if (!req || !req->sku)
        return client_fail(c, STOCKD_ERR_USAGE, "sku.put needs sku");
    if (req->has_supplier && (!req->supplier_id || !req->spec_id))
        return client_fail(c, STOCKD_ERR_USAGE, "supplier needs supplier_id and spec_id");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "sku.put", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 1 + req->has_own_on_hand + req->has_supplier_reported + req->has_supplier +
                 c->has_token;
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "sku", req->sku) ||
            (req->has_own_on_hand && codec_pack_kv_int(pk, "own_on_hand", req->own_on_hand)) ||
            (req->has_supplier_reported &&
             codec_pack_kv_int(pk, "supplier_reported", req->supplier_reported)) ||
            (req->has_supplier && client_pack_supplier(pk, req)) || client_pack_token(c, pk);
    return client_end_typed(c, r, msgid);
}

stockd_rc stockd_send_stock_adjust(stockd_client *c, const char *sku, int64_t delta,
                                   const char *reason, uint32_t *msgid)
{
    if (!sku || !reason)
        return client_fail(c, STOCKD_ERR_USAGE, "stock.adjust needs sku and reason");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "stock.adjust", &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, 3 + c->has_token) || codec_pack_kv_str(pk, "sku", sku) ||
            codec_pack_kv_int(pk, "delta", delta) || codec_pack_kv_str(pk, "reason", reason) ||
            client_pack_token(c, pk);
    return client_end_typed(c, r, msgid);
}
