/* client_calls.c — the synchronous typed calls: send, wait for the reply,
 * convert it; and the calls whose result is the raw map.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- typed: sync */

/* Waits for the reply to a request (rc: how its sending went) and converts
 * it into whichever of ord and st is given (neither: not converted). */
stockd_rc client_wait_typed(stockd_client *c, stockd_rc rc, uint32_t msgid, stockd_order *ord,
                            stockd_stock *st)
{
    stockd_reply r;
    if (rc == STOCKD_OK)
        rc = stockd_recv(c, msgid, &r);
    if (rc == STOCKD_OK && ord)
        rc = stockd_reply_order(c, &r, ord);
    else if (rc == STOCKD_OK && st)
        rc = stockd_reply_stock(c, &r, st);
    return rc;
}

/* The synchronous call of a method that takes no params. */
stockd_rc client_call_empty(stockd_client *c, const char *method, stockd_reply *reply)
{
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, method, &pk);
    if (rc != STOCKD_OK)
        return rc;
    if (msgpack_pack_map(pk, 0) != 0)
        return client_end_typed(c, -1, NULL);
    return stockd_request_call(c, reply);
}

stockd_rc stockd_ping(stockd_client *c, char *node, size_t node_len, char *version,
                      size_t version_len)
{
    stockd_reply r;
    stockd_rc rc = client_call_empty(c, "ping", &r);
    if (rc != STOCKD_OK)
        return rc;
    if (node && node_len)
        client_copy_str(codec_map_get(r.result, "node"), node, node_len);
    if (version && version_len)
        client_copy_str(codec_map_get(r.result, "version"), version, version_len);
    return STOCKD_OK;
}

stockd_rc stockd_reserve(stockd_client *c, const stockd_reserve_req *req, stockd_order *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_reserve(c, req, &id);
    return client_wait_typed(c, rc, id, out, NULL);
}

stockd_rc stockd_reserve_lines(stockd_client *c, const stockd_reserve_lines_req *req,
                               stockd_order *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_reserve_lines(c, req, &id);
    return client_wait_typed(c, rc, id, out, NULL);
}

static stockd_rc client_order_op(stockd_client *c, const char *method, const char *order_id,
                                 stockd_order *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_order_op(c, method, order_id, &id);
    return client_wait_typed(c, rc, id, out, NULL);
}

stockd_rc stockd_confirm(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "confirm", order_id, out);
}

stockd_rc stockd_release(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "release", order_id, out);
}

stockd_rc stockd_ship(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "ship", order_id, out);
}

stockd_rc stockd_order_get(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "order.get", order_id, out);
}

stockd_rc stockd_stock_get(stockd_client *c, const char *sku, stockd_stock *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_stock_get(c, sku, &id);
    return client_wait_typed(c, rc, id, NULL, out);
}

stockd_rc stockd_sku_put(stockd_client *c, const stockd_sku_put_req *req, stockd_stock *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_sku_put(c, req, &id);
    return client_wait_typed(c, rc, id, NULL, out);
}

stockd_rc stockd_stock_adjust(stockd_client *c, const char *sku, int64_t delta,
                              const char *reason, stockd_stock *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_stock_adjust(c, sku, delta, reason, &id);
    return client_wait_typed(c, rc, id, NULL, out);
}

stockd_rc stockd_stats(stockd_client *c, const msgpack_object **stats)
{
    stockd_reply r;
    *stats = NULL;
    stockd_rc rc = client_call_empty(c, "stats", &r);
    if (rc == STOCKD_OK)
        *stats = r.result;
    return rc;
}

/* --------------------------------------------------------- supplier round */

/* Sends a request whose params were packed (pack_rc) and waits for it. */
static stockd_rc client_call_raw(stockd_client *c, int pack_rc, const msgpack_object **result)
{
    stockd_reply r;
    *result = NULL;
    if (pack_rc != 0)
        return client_end_typed(c, pack_rc, NULL);
    stockd_rc rc = stockd_request_call(c, &r);
    if (rc == STOCKD_OK)
        *result = r.result;
    return rc;
}

static int client_pack_factor(msgpack_packer *pk, const char *key, double v)
{
    return codec_pack_cstr(pk, key) || msgpack_pack_double(pk, v);
}

stockd_rc stockd_supplier_put(stockd_client *c, const stockd_supplier_put_req *req,
                              const msgpack_object **result)
{
    *result = NULL;
    if (!req || !req->supplier_id)
        return client_fail(c, STOCKD_ERR_USAGE, "supplier.put needs supplier_id");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "supplier.put", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 1 + req->has_trust + req->has_ceiling + req->has_event_mode +
                 req->has_event_trust + req->has_check_before_confirm + c->has_token;
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "supplier_id", req->supplier_id) ||
            (req->has_trust && client_pack_factor(pk, "trust", req->trust)) ||
            (req->has_ceiling && client_pack_factor(pk, "trust_ceiling", req->ceiling)) ||
            (req->has_event_mode && codec_pack_kv_bool(pk, "event_mode", req->event_mode)) ||
            (req->has_event_trust && client_pack_factor(pk, "event_trust", req->event_trust)) ||
            (req->has_check_before_confirm &&
             codec_pack_kv_bool(pk, "check_before_confirm", req->check_before_confirm)) ||
            client_pack_token(c, pk);
    return client_call_raw(c, r, result);
}

stockd_rc stockd_supplier_get(stockd_client *c, const char *supplier_id,
                              const msgpack_object **result)
{
    *result = NULL;
    if (!supplier_id)
        return client_fail(c, STOCKD_ERR_USAGE, "supplier.get needs supplier_id");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "supplier.get", &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, 1) || codec_pack_kv_str(pk, "supplier_id", supplier_id);
    return client_call_raw(c, r, result);
}

stockd_rc stockd_alerts_list(stockd_client *c, unsigned limit, const msgpack_object **alerts)
{
    *alerts = NULL;
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "alerts.list", &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, limit > 0) ||
            (limit > 0 && codec_pack_kv_int(pk, "limit", limit));
    rc = client_call_raw(c, r, alerts);
    if (rc == STOCKD_OK && (*alerts)->type != MSGPACK_OBJECT_ARRAY) {
        *alerts = NULL;
        return client_fail(c, STOCKD_ERR_PROTOCOL, "alerts.list result is not an array");
    }
    return rc;
}

stockd_rc stockd_order_subscribe(stockd_client *c)
{
    stockd_reply r;
    return client_call_empty(c, "order.subscribe", &r);
}
