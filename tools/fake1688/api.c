/* api.c — the fake gateway: POST /openapi/param2/1/{namespace}/{api}/{appKey}.
 *
 * Checks in the order of reference §10: API exists -> app key -> QoS ->
 * signature -> access_token -> ACL -> required params -> business. Gateway
 * refusals are non-2xx with {error_code, error_message, exception,
 * request_id}; business failures are HTTP 200 with each API's own envelope.
 * Injected faults: QoS / 401 / 5xx / reset before the API runs; timeout and
 * garbage after it ran (its effect stands, the answer is lost).
 */
#include "fake1688.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <xxhash.h>

typedef struct fk_call {
    fk_state *st;
    fk_api api;
    int64_t now_ms;
    supplier_param params[SUPPLIER_SIGN_MAX_PARAMS];
    size_t n;
} fk_call;

/* A handler fills *out (HTTP 200) and returns true for success, false for a
 * business failure; or returns false with *gw_code set for a gateway error. */
typedef bool (*fk_handler)(fk_call *c, json_t **out, const char **gw_code, char *msg,
                           size_t msglen);

typedef struct api_def {
    const char *ns;
    const char *name;
    const char *required[3];
    fk_handler fn;
} api_def;

static bool h_product_get(fk_call *, json_t **, const char **, char *, size_t);
static bool h_preview(fk_call *, json_t **, const char **, char *, size_t);
static bool h_create(fk_call *, json_t **, const char **, char *, size_t);
static bool h_buyer_view(fk_call *, json_t **, const char **, char *, size_t);
static bool h_cancel(fk_call *, json_t **, const char **, char *, size_t);
static bool h_follow(fk_call *, json_t **, const char **, char *, size_t);

static const api_def apis[FK_API__N] = {
    [FK_API_PRODUCT_GET] = {"com.alibaba.product", "alibaba.product.get",
                            {"productID", "webSite", NULL}, h_product_get},
    [FK_API_PREVIEW] = {"com.alibaba.trade", "alibaba.createOrder.preview",
                        {"addressParam", "cargoParamList", NULL}, h_preview},
    [FK_API_CREATE] = {"com.alibaba.trade", "alibaba.trade.fastCreateOrder",
                       {"addressParam", "cargoParamList", NULL}, h_create},
    [FK_API_BUYER_VIEW] = {"com.alibaba.trade", "alibaba.trade.get.buyerView",
                           {"webSite", NULL, NULL}, h_buyer_view},
    [FK_API_CANCEL] = {"com.alibaba.trade", "alibaba.trade.cancel",
                       {"webSite", "tradeID", NULL}, h_cancel},
    [FK_API_FOLLOW] = {"com.alibaba.product", "alibaba.product.follow.crossborder",
                       {"productId", NULL, NULL}, h_follow},
};

const char *fk_api_name(fk_api a)
{
    assert(a < FK_API__N);
    return apis[a].name;
}

int fk_api_from_name(const char *name)
{
    for (int i = 0; i < FK_API__N; i++) {
        if (strcmp(apis[i].name, name) == 0)
            return i;
    }
    return -1;
}

/* ---- helpers ---------------------------------------------------------- */

static const char *param(const fk_call *c, const char *key)
{
    const supplier_param *p = supplier_param_find(c->params, c->n, key);
    return p ? p->value : NULL;
}

static bool parse_id(const char *s, int64_t *out)
{
    if (!s || !*s || strlen(s) > 19)
        return false;
    int64_t v = 0;
    for (const char *q = s; *q; q++) {
        if (*q < '0' || *q > '9')
            return false;
        if (v > (INT64_MAX - (*q - '0')) / 10)
            return false;
        v = v * 10 + (*q - '0');
    }
    *out = v;
    return v > 0;
}

static json_t *gw_error(fk_state *st, const char *code, const char *msg)
{
    char rid[24];
    snprintf(rid, sizeof rid, "fk%016llx", (unsigned long long)++st->next_request_id);
    return json_pack("{s:s, s:s, s:s, s:s}", "error_code", code, "error_message", msg,
                     "exception", msg, "request_id", rid);
}

static int gw_status(const char *code)
{
    return strcmp(code, "401") == 0 ? 401 : 400;
}

/* ---- cargo checks (preview and create share them) ----------------------- */

typedef struct cargo {
    int64_t offer_id;
    char spec_id[FK_ID_MAX + 1];
    int64_t qty;
    fk_product *p;
    fk_sku *s;
} cargo;

static bool json_id(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return *out > 0;
    }
    return json_is_string(v) && parse_id(json_string_value(v), out);
}

/* Parses cargoParamList; false means the param is malformed (gateway). */
static bool parse_cargo(const char *text, cargo *out, size_t *n)
{
    json_error_t err;
    json_t *a = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    bool ok = json_is_array(a) && json_array_size(a) >= 1 && json_array_size(a) <= FK_MAX_CARGO;
    for (size_t i = 0; ok && i < json_array_size(a); i++) {
        json_t *e = json_array_get(a, i), *spec = json_object_get(e, "specId");
        json_t *q = json_object_get(e, "quantity");
        cargo *c = &out[i];
        memset(c, 0, sizeof *c);
        ok = json_is_object(e) && json_id(json_object_get(e, "offerId"), &c->offer_id) &&
             json_is_number(q) && json_number_value(q) >= 1 &&
             json_number_value(q) <= (double)FK_QTY_MAX &&
             json_number_value(q) == floor(json_number_value(q)) &&
             (!spec || json_is_null(spec) ||
              (json_is_string(spec) && strlen(json_string_value(spec)) <= FK_ID_MAX));
        if (ok) {
            c->qty = (int64_t)json_number_value(q);
            if (json_is_string(spec))
                strcpy(c->spec_id, json_string_value(spec));
        }
    }
    *n = ok ? json_array_size(a) : 0;
    json_decref(a);
    return ok;
}

static bool valid_json_object(const char *text)
{
    json_t *o = json_loads(text, 0, NULL);
    bool ok = json_is_object(o);
    json_decref(o);
    return ok;
}

/* Sum of quantities in lines [0, n) for the same offer (and spec if given). */
static int64_t sum_qty(const cargo *c, size_t n, int64_t offer_id, const char *spec_id)
{
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].offer_id == offer_id && (!spec_id || strcmp(c[i].spec_id, spec_id) == 0))
            s += c[i].qty;
    }
    return s;
}

static size_t lines_of_offer(const cargo *c, size_t n, int64_t offer_id)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += c[i].offer_id == offer_id;
    return k;
}

/* The business rules of reference §4.2. Returns NULL when the order can be
 * placed, else the 500_00x code with msg filled and *bad the line. */
static const char *check_line(fk_state *st, cargo *c, size_t n, size_t i, const char *flow,
                              char *msg, size_t msglen)
{
    cargo *l = &c[i];
    l->p = fk_product_find(st, l->offer_id);
    if (!l->p || strcmp(l->p->status, "published") != 0 || !l->p->support_online_trade) {
        snprintf(msg, msglen, "\xe5\x95\x86\xe5\x93\x81[%lld]\xe4\xb8\x8d\xe6\x94\xaf\xe6\x8c\x81"
                              "\xe5\x9c\xa8\xe7\xba\xbf\xe4\xba\xa4\xe6\x98\x93",
                 (long long)l->offer_id); /* 商品[id]不支持在线交易 */
        return "500_001";
    }
    if (l->p->force_error[0]) {
        snprintf(msg, msglen, "forced by fake1688 for offer %lld", (long long)l->offer_id);
        return l->p->force_error;
    }
    if (c[0].p && strcmp(c[0].p->supplier, l->p->supplier) != 0) {
        snprintf(msg, msglen, "not the same seller");
        return "500_002";
    }
    if (!l->spec_id[0]) {
        snprintf(msg, msglen, "specId missing for offer %lld", (long long)l->offer_id);
        return "500_002";
    }
    l->s = fk_sku_find(l->p, l->spec_id);
    if (!l->s) {
        snprintf(msg, msglen, "specId %s does not belong to offerId %lld", l->spec_id,
                 (long long)l->offer_id);
        return "500_003";
    }
    if (l->s->price_fen == 0) {
        snprintf(msg, msglen, "sku price is 0");
        return "500_008";
    }
    if (flow && strcmp(flow, "saleproxy") == 0 && !l->p->consign) {
        snprintf(msg, msglen, "no consignment relationship");
        return "500_007";
    }
    int64_t offer_total = sum_qty(c, n, l->offer_id, NULL);
    if (offer_total < l->p->min_order_quantity) {
        snprintf(msg, msglen, "quantity below the minimum order quantity %lld",
                 (long long)l->p->min_order_quantity);
        return lines_of_offer(c, n, l->offer_id) > 1 ? "500_006" : "500_005";
    }
    if (l->qty % l->p->batch_number != 0) {
        snprintf(msg, msglen, "quantity is not a multiple of %lld", (long long)l->p->batch_number);
        return "500_009";
    }
    if (sum_qty(c, n, l->offer_id, l->spec_id) > l->s->real) {
        /* 商品[offer_spec]库存不足，请核实库存后订购。 */
        snprintf(msg, msglen,
                 "\xe5\x95\x86\xe5\x93\x81[%lld_%s]\xe5\xba\x93\xe5\xad\x98\xe4\xb8\x8d\xe8\xb6\xb3"
                 "\xef\xbc\x8c\xe8\xaf\xb7\xe6\xa0\xb8\xe5\xae\x9e\xe5\xba\x93\xe5\xad\x98\xe5\x90"
                 "\x8e\xe8\xae\xa2\xe8\xb4\xad\xe3\x80\x82",
                 (long long)l->offer_id, l->spec_id);
        return "500_004";
    }
    return NULL;
}

static const char *check_cargo(fk_state *st, cargo *c, size_t n, const char *flow, char *msg,
                               size_t msglen, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        const char *code = check_line(st, c, n, i, flow, msg, msglen);
        if (code) {
            *bad = i;
            return code;
        }
    }
    return NULL;
}

/* Goods and carriage in fen; carriage once per offer. */
static void order_sums(const cargo *c, size_t n, int64_t *goods, int64_t *carriage)
{
    *goods = *carriage = 0;
    for (size_t i = 0; i < n; i++) {
        *goods += c[i].qty * c[i].s->price_fen;
        bool first = true;
        for (size_t k = 0; k < i; k++)
            first = first && c[k].offer_id != c[i].offer_id;
        if (first)
            *carriage += c[i].p->post_fee_fen;
    }
}

/* Common front of preview and create: parse and validate the JSON params. */
static bool parse_order_params(fk_call *c, cargo *lines, size_t *n, const char **gw_code,
                               char *msg, size_t msglen)
{
    if (!valid_json_object(param(c, "addressParam"))) {
        *gw_code = "gw.ParamInvalid";
        snprintf(msg, msglen, "Illegal argument addressParam");
        return false;
    }
    if (!parse_cargo(param(c, "cargoParamList"), lines, n)) {
        *gw_code = "gw.ParamInvalid";
        snprintf(msg, msglen, "Illegal argument cargoParamList");
        return false;
    }
    return true;
}

/* ---- APIs --------------------------------------------------------------- */

static bool h_product_get(fk_call *c, json_t **out, const char **gw_code, char *msg,
                          size_t msglen)
{
    int64_t id = 0;
    fk_product *p = parse_id(param(c, "productID"), &id) ? fk_product_find(c->st, id) : NULL;
    (void)gw_code;
    if (!p) {
        /* 商品[id]不存在 */
        snprintf(msg, msglen, "\xe5\x95\x86\xe5\x93\x81[%s]\xe4\xb8\x8d\xe5\xad\x98\xe5\x9c\xa8",
                 param(c, "productID"));
        *out = json_pack("{s:b, s:s}", "success", 0, "errMsg", msg);
        return false;
    }
    *out = json_pack("{s:o, s:[], s:b}", "productInfo",
                     fk_product_info_json(c->st, p, c->now_ms), "bizGroupInfos", "success", 1);
    return true;
}

static bool h_preview(fk_call *c, json_t **out, const char **gw_code, char *msg, size_t msglen)
{
    cargo lines[FK_MAX_CARGO];
    size_t n, bad;
    const char *flow = param(c, "flow");
    if (!parse_order_params(c, lines, &n, gw_code, msg, msglen))
        return false;
    const char *code = check_cargo(c->st, lines, n, flow, msg, msglen, &bad);
    if (code) {
        fk_count_code(c->st, code);
        *out = json_pack("{s:b, s:s, s:s}", "success", 0, "errorCode", code, "errorMsg", msg);
        return false;
    }
    int64_t goods, carriage;
    order_sums(lines, n, &goods, &carriage);
    json_t *cl = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(
            cl, json_pack("{s:I, s:s, s:I, s:f, s:f, s:[]}", "offerId",
                          (json_int_t)lines[i].offer_id, "specId", lines[i].spec_id, "skuId",
                          (json_int_t)lines[i].s->sku_id, "amount",
                          (double)(lines[i].qty * lines[i].s->price_fen) / 100.0,
                          "finalUnitPrice", (double)lines[i].s->price_fen / 100.0,
                          "cargoPromotionList"));
    }
    json_t *r = json_pack(
        "{s:b, s:s, s:[s], s:I, s:I, s:I, s:i, s:o, s:[], s:[{s:s, s:s, s:s, s:b}]}", "status", 1,
        "flowFlag", flow && *flow ? flow : "general", "tradeModeNameList", "assureTrade",
        "sumPayment", (json_int_t)(goods + carriage), "sumCarriage", (json_int_t)carriage,
        "sumPaymentNoCarriage", (json_int_t)goods, "discountFee", 0, "cargoList", cl,
        "shopPromotionList", "tradeModelList", "tradeType", "assureTrade", "name",
        "\xe6\x8b\x85\xe4\xbf\x9d\xe4\xba\xa4\xe6\x98\x93", "description", "fake", "opSupport", 1);
    *out = json_pack("{s:b, s:[o]}", "success", 1, "orderPreviewResuslt", r);
    return true;
}

static json_t *create_ok(const fk_order *o)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%llu", (unsigned long long)o->id);
    return json_pack("{s:b, s:{s:b, s:s, s:I, s:I, s:[]}}", "success", 1, "result", "success", 1,
                     "orderId", ids, "totalSuccessAmount",
                     (json_int_t)(o->goods_fen + o->post_fee_fen), "postFee",
                     (json_int_t)o->post_fee_fen, "failedOfferList");
}

static json_t *create_fail(const char *code, const char *msg, const cargo *l)
{
    char offer[24];
    snprintf(offer, sizeof offer, "%lld", (long long)(l ? l->offer_id : 0));
    return json_pack("{s:b, s:s, s:s, s:{s:b, s:[{s:s, s:s, s:s, s:s}]}}", "success", 0, "code",
                     code, "message", msg, "result", "success", 0, "failedOfferList", "offerId",
                     offer, "specId", l ? l->spec_id : "", "errorCode", code, "errorMessage", msg);
}

static fk_order *place_order(fk_state *st, cargo *lines, size_t n, const char *out_id,
                             int64_t now_ms)
{
    fk_order *o = calloc(1, sizeof *o);
    assert(o);
    o->items = calloc(n, sizeof o->items[0]);
    assert(o->items);
    o->id = st->next_order_id++;
    snprintf(o->out_order_id, sizeof o->out_order_id, "%s", out_id ? out_id : "");
    snprintf(o->status, sizeof o->status, "waitbuyerpay");
    o->created_ms = o->modified_ms = now_ms;
    o->pay_expire_ms = now_ms + st->cfg.pay_timeout_s * 1000;
    order_sums(lines, n, &o->goods_fen, &o->post_fee_fen);
    for (size_t i = 0; i < n; i++) {
        fk_item *it = &o->items[i];
        it->offer_id = lines[i].offer_id;
        it->sku_id = lines[i].s->sku_id;
        snprintf(it->spec_id, sizeof it->spec_id, "%s", lines[i].spec_id);
        it->qty = lines[i].qty;
        it->price_fen = lines[i].s->price_fen;
        /* invReduceType 1: placing the order takes the stock. */
        fk_sku_set_real(st, lines[i].p, lines[i].s, lines[i].s->real - lines[i].qty, now_ms,
                        true);
    }
    o->n_items = n;
    HASH_ADD(hh, st->orders, id, sizeof o->id, o);
    st->n_orders++;
    st->counters.orders_created++;
    return o;
}

static bool h_create(fk_call *c, json_t **out, const char **gw_code, char *msg, size_t msglen)
{
    cargo lines[FK_MAX_CARGO];
    size_t n, bad = 0;
    fk_state *st = c->st;
    const char *out_id = param(c, "outOrderId");
    fk_outc *oc = NULL;
    if (out_id && strlen(out_id) > FK_ID_MAX) {
        *gw_code = "gw.ParamInvalid";
        snprintf(msg, msglen, "Illegal argument outOrderId");
        return false;
    }
    if (!parse_order_params(c, lines, &n, gw_code, msg, msglen))
        return false;
    if (out_id && *out_id) {
        /* Without its counter an outOrderId could not be deduplicated. */
        oc = fk_outc_get(st, out_id, true);
        if (!oc) {
            fk_count_code(st, "ORDER_LIMIT");
            *out = create_fail("ORDER_LIMIT", "fake1688 outOrderId table full", &lines[0]);
            return false;
        }
        oc->create_calls++;
    }
    if (oc && oc->orders > 0 && st->cfg.idempotent) {
        fk_order *prev = fk_order_find(st, oc->first_order_id);
        if (prev) {
            *out = create_ok(prev);
            return true;
        }
    }
    const char *code = check_cargo(st, lines, n, param(c, "flow"), msg, msglen, &bad);
    if (!code && st->n_orders >= st->max_orders) {
        code = "ORDER_LIMIT";
        snprintf(msg, msglen, "fake1688 holds at most %zu orders", st->max_orders);
    }
    if (code) {
        fk_count_code(st, code);
        *out = create_fail(code, msg, &lines[bad]);
        return false;
    }
    fk_order *o = place_order(st, lines, n, out_id, c->now_ms);
    if (oc) {
        oc->orders++;
        if (!oc->first_order_id)
            oc->first_order_id = o->id;
    }
    *out = create_ok(o);
    return true;
}

static json_t *order_error(const char *code, const char *msg, bool string_success)
{
    return json_pack("{s:o, s:s, s:s}", "success",
                     string_success ? json_string("false") : json_false(), "errorCode", code,
                     "errorMessage", msg);
}

static fk_order *lookup_order(fk_call *c, const char *id_param)
{
    int64_t id;
    const char *s = param(c, id_param);
    fk_order *o = NULL;
    if (s && parse_id(s, &id)) {
        o = fk_order_find(c->st, (uint64_t)id);
    } else if (!s && (s = param(c, "outOrderId")) && *s) {
        fk_outc *oc = fk_outc_get(c->st, s, false);
        o = oc && oc->first_order_id ? fk_order_find(c->st, oc->first_order_id) : NULL;
    }
    /* Pay timeouts are swept each second; a lookup sees them at once. */
    if (o && o->pay_expire_ms <= c->now_ms && strcmp(o->status, "waitbuyerpay") == 0)
        fk_order_close(c->st, o, "other", "CLOSE_TRADE_BY_SYSTEM", c->now_ms);
    return o;
}

static bool h_buyer_view(fk_call *c, json_t **out, const char **gw_code, char *msg,
                         size_t msglen)
{
    if (!param(c, "orderId") && !param(c, "outOrderId")) {
        *gw_code = "gw.ParamMissing";
        snprintf(msg, msglen, "Required argument orderId");
        return false;
    }
    fk_order *o = lookup_order(c, "orderId");
    if (!o) {
        fk_count_code(c->st, "ORDER_NOT_EXIST");
        *out = order_error("ORDER_NOT_EXIST", "order does not exist", true);
        return false;
    }
    *out = json_pack("{s:s, s:o}", "success", "true", "result", fk_order_json(c->st, o));
    return true;
}

static bool h_cancel(fk_call *c, json_t **out, const char **gw_code, char *msg, size_t msglen)
{
    static const char *reasons[] = {"buyerCancel", "sellerGoodsLack", "other"};
    const char *reason = param(c, "cancelReason");
    fk_order *o = lookup_order(c, "tradeID");
    const char *code = NULL, *m = NULL;
    (void)gw_code;
    (void)msg;
    (void)msglen;
    if (!reason || !*reason)
        reason = "buyerCancel";
    bool known = false;
    for (size_t i = 0; i < 3; i++)
        known = known || strcmp(reason, reasons[i]) == 0;
    if (!known)
        code = "400_1", m = "cancelReason must be buyerCancel, sellerGoodsLack or other";
    else if (!o)
        code = "ORDER_NOT_EXIST", m = "order does not exist";
    else if (strcmp(o->status, "waitbuyerpay") != 0)
        code = "ORDER_STATUS_ERROR", m = "only unpaid orders can be cancelled";
    else if (c->now_ms - o->created_ms < c->st->cfg.cancel_min_age_ms)
        code = "CLOSE_ORDER_TOO_FAST", m = "order was created too recently to close";
    if (code) {
        fk_count_code(c->st, code);
        *out = order_error(code, m, false);
        return false;
    }
    fk_order_close(c->st, o, reason, "CLOSE_TRADE_BY_BUYER", c->now_ms);
    *out = json_pack("{s:b}", "success", 1);
    return true;
}

static bool h_follow(fk_call *c, json_t **out, const char **gw_code, char *msg, size_t msglen)
{
    int64_t id = 0;
    fk_product *p = parse_id(param(c, "productId"), &id) ? fk_product_find(c->st, id) : NULL;
    (void)gw_code;
    (void)msg;
    (void)msglen;
    if (!p) {
        *out = json_pack("{s:i, s:s}", "code", 1, "message", "product does not exist");
        return false;
    }
    p->followed = true;
    *out = json_pack("{s:i, s:s}", "code", 0, "message", "success");
    return true;
}

/* ---- the gateway -------------------------------------------------------- */

/* The params of s ("a=1&b=2") that name the call, in the order sent:
 * not _aop_timestamp and _aop_signature (they change with every attempt),
 * access_token (the credentials of one run: a replay signs in anew) or
 * outOrderId / orderId (they name a run's own orders, which a replay names
 * afresh). */
static void hash_params(XXH3_state_t *x, const char *s)
{
    static const char *const skip[] = {"_aop_timestamp=", "_aop_signature=", "access_token=",
                                       "outOrderId=", "orderId="};
    for (const char *p = s; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        bool keep = true;
        for (size_t i = 0; i < sizeof skip / sizeof skip[0] && keep; i++)
            keep = strncmp(p, skip[i], strlen(skip[i])) != 0;
        if (keep) {
            XXH3_64bits_update(x, p, len);
            XXH3_64bits_update(x, "&", 1);
        }
        p = amp ? amp + 1 : p + len;
    }
}

/* A request's identity for keyed draws: the API and the params that name
 * the call (hash_params), from the query string and the body. Never 0. */
static uint64_t request_hash(struct evhttp_request *req, fk_api api)
{
    XXH3_state_t *x = XXH3_createState();
    assert(x != NULL);
    XXH3_64bits_reset(x);
    XXH3_64bits_update(x, &api, sizeof api);
    hash_params(x, evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)));
    size_t n = 0;
    char *body = fk_read_body(req, FK_BODY_MAX, &n);
    hash_params(x, body);
    free(body);
    uint64_t h = XXH3_64bits_digest(x);
    XXH3_freeState(x);
    return h ? h : 1;
}

/* The n-th draw for this request (n = earlier requests with its hash);
 * false when the table is full or out of memory (the sequence then). */
static bool keyed_base(fk_state *st, uint64_t h, uint64_t *out)
{
    if (!st->keyed_hash) {
        st->keyed_hash = calloc(FK_KEYED_MAX, sizeof *st->keyed_hash);
        st->keyed_seen = calloc(FK_KEYED_MAX, sizeof *st->keyed_seen);
        if (!st->keyed_hash || !st->keyed_seen) {
            fk_keyed_clear(st);
            return false;
        }
    }
    size_t i = (size_t)(h % FK_KEYED_MAX);
    while (st->keyed_hash[i] != 0 && st->keyed_hash[i] != h)
        i = (i + 1) % FK_KEYED_MAX;
    if (st->keyed_hash[i] == 0) {
        if (st->keyed_used >= FK_KEYED_MAX * 3 / 4)
            return false;
        st->keyed_hash[i] = h;
        st->keyed_used++;
    }
    const uint64_t key[2] = { h, st->keyed_seen[i]++ };
    *out = XXH3_64bits_withSeed(key, sizeof key, st->seed);
    return true;
}

static fk_fault decide_fault(fk_state *st, fk_api api, struct evhttp_request *req)
{
    fk_faults *f = &st->faults;
    if (f->api_mask && !(f->api_mask & (1u << api)))
        return FK_FAULT_NONE;
    if (f->next_n) {
        fk_fault k = f->next[0].kind;
        if (--f->next[0].count <= 0) {
            memmove(f->next, f->next + 1, (f->next_n - 1) * sizeof f->next[0]);
            f->next_n--;
        }
        return k;
    }
    uint64_t base = 0;
    bool keyed = false, tried = false;
    for (int k = 1; k < FK_FAULT__N; k++) {
        if (!(f->rate[k] > 0))
            continue;
        if (f->keyed && !tried) {
            tried = true;
            keyed = keyed_base(st, request_hash(req, api), &base);
        }
        uint64_t kk = (uint64_t)k;
        double u = keyed ? (double)(XXH3_64bits_withSeed(&kk, sizeof kk, base) >> 11) / 9007199254740992.0
                         : fk_rand01(st);
        if (u < f->rate[k])
            return (fk_fault)k;
    }
    return FK_FAULT_NONE;
}

static bool qos_take(fk_state *st, int64_t now_ms)
{
    double limit = (double)st->cfg.qos_limit_per_s;
    if (limit <= 0)
        return true;
    /* The clock can jump back when a manual clock is set (POST /clock): no
     * refill then, rather than a debt that refuses everything. */
    if (now_ms > st->qos_at_ms)
        st->qos_tokens += (double)(now_ms - st->qos_at_ms) * limit / 1000.0;
    st->qos_at_ms = now_ms;
    if (st->qos_tokens > limit)
        st->qos_tokens = limit;
    if (st->qos_tokens < 1)
        return false;
    st->qos_tokens -= 1;
    return true;
}

/* Splits "param2/1/ns/name/appKey" in place; false if the shape is wrong. */
static bool split_path(char *p, char *seg[5])
{
    for (int i = 0; i < 5; i++) {
        seg[i] = p;
        char *slash = strchr(p, '/');
        if (i < 4) {
            if (!slash)
                return false;
            *slash = '\0';
            p = slash + 1;
        } else if (slash) {
            return false;
        }
    }
    return strcmp(seg[0], "param2") == 0;
}

static int find_api(char *seg[5])
{
    if (strcmp(seg[1], "1") != 0)
        return -1;
    for (int i = 0; i < FK_API__N; i++) {
        if (strcmp(apis[i].ns, seg[2]) == 0 && strcmp(apis[i].name, seg[3]) == 0)
            return i;
    }
    return -1;
}

/* Query string then body, joined by '&', parsed in place into c->params. */
static char *read_params(struct evhttp_request *req, fk_call *c, bool *ok)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    size_t blen = 0, qlen = q ? strlen(q) : 0;
    char *body = fk_read_body(req, FK_BODY_MAX, &blen);
    *ok = false;
    if (!body || qlen > FK_BODY_MAX)
        return body;
    char *all = malloc(qlen + 1 + blen + 1);
    assert(all);
    memcpy(all, q ? q : "", qlen);
    all[qlen] = '&';
    memcpy(all + qlen + 1, body, blen + 1);
    free(body);
    *ok = supplier_form_parse(all, qlen + 1 + blen, c->params, SUPPLIER_SIGN_MAX_PARAMS,
                              &c->n) == 0;
    return all;
}

static void reset_connection(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    if (bev)
        shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

/* Runs the checks after the path; returns the gateway code or NULL. */
static const char *gateway_checks(fk_call *c, const char *url_path, fk_fault fault, char *msg,
                                  size_t msglen)
{
    fk_state *st = c->st;
    const supplier_param *sig = supplier_param_find(c->params, c->n, "_aop_signature");
    if (st->cfg.check_signature) {
        char want[SUPPLIER_SIGN_HEX_LEN + 1];
        if (!sig || !sig->value_len) {
            snprintf(msg, msglen, "Request need signature");
            return "gw.SignatureMissing";
        }
        if (supplier_sign(st->cfg.app_secret, strlen(st->cfg.app_secret), url_path, c->params,
                          c->n, want) != 0 ||
            !supplier_sign_equal(want, sig->value)) {
            snprintf(msg, msglen, "Signature invalid");
            return "gw.SignatureInvalid";
        }
    }
    const char *tok = param(c, "access_token");
    if (fault == FK_FAULT_401 || !tok || strcmp(tok, st->cfg.access_token) != 0) {
        snprintf(msg, msglen, "Request need user authorized");
        return "401";
    }
    if (st->cfg.acl_deny_mask & (1u << c->api)) {
        snprintf(msg, msglen, "AppKey is not allowed(acl)");
        return "gw.APIACLDecline";
    }
    for (int i = 0; i < 3 && apis[c->api].required[i]; i++) {
        const char *v = param(c, apis[c->api].required[i]);
        if (!v || !*v) {
            snprintf(msg, msglen, "Required argument %s", apis[c->api].required[i]);
            return "gw.ParamMissing";
        }
    }
    return NULL;
}

static void refuse(fk_state *st, struct evhttp_request *req, int api, const char *code,
                   const char *msg, int status)
{
    if (api >= 0)
        st->counters.gateway_errors[api]++;
    fk_count_code(st, code);
    fk_reply(st, req, status, gw_error(st, code, msg), FK_FAULT_NONE, true);
}

void fk_api_handle(struct evhttp_request *req, void *arg)
{
    fk_state *st = arg;
    fk_call call, *c = &call;
    char path[512], msg[512];
    char *seg[5];
    c->st = st;
    c->n = 0;
    c->now_ms = fk_model_now_ms(st);
    const char *raw = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!raw || strncmp(raw, "/openapi/", 9) != 0 || strlen(raw + 9) >= sizeof path) {
        st->counters.unknown_api++;
        refuse(st, req, -1, "gw.APIUnsupported", "API not found", 400);
        return;
    }
    strcpy(path, raw + 9);
    int api = split_path(path, seg) ? find_api(seg) : -1;
    if (api < 0) {
        st->counters.unknown_api++;
        refuse(st, req, -1, "gw.APIUnsupported", "API not found", 400);
        return;
    }
    c->api = (fk_api)api;
    st->counters.calls[api]++;
    if (!*seg[4] || strcmp(seg[4], st->cfg.app_key) != 0) {
        const char *code = *seg[4] ? "gw.AppKeyNotFound" : "gw.AppKeyMissing";
        refuse(st, req, api, code, "App key not found", 400);
        return;
    }
    fk_fault fault = decide_fault(st, c->api, req);
    if (fault != FK_FAULT_NONE)
        st->counters.faults[fault]++;
    if (fault == FK_FAULT_QOS || !qos_take(st, c->now_ms)) {
        refuse(st, req, api, "gw.QosAppFrequencyLimit", "App call exceeds limited frequency", 400);
        return;
    }
    if (fault == FK_FAULT_5XX) {
        refuse(st, req, api, "gw.ServiceUnavailable", "Service unavailable",
               st->faults.http5xx_status);
        return;
    }
    if (fault == FK_FAULT_RESET) {
        reset_connection(req);
        refuse(st, req, api, "gw.ConnectionReset", "reset", 503);
        return;
    }
    /* The signed path is the unsplit one: rebuild it from the raw path. */
    strcpy(path, raw + 9);
    bool parsed;
    char *buf = read_params(req, c, &parsed);
    if (!parsed) {
        free(buf);
        refuse(st, req, api, "gw.ParamInvalid", "Malformed or oversized form body", 400);
        return;
    }
    const char *code = gateway_checks(c, path, fault, msg, sizeof msg);
    if (code) {
        refuse(st, req, api, code, msg, gw_status(code));
        free(buf);
        return;
    }
    json_t *out = NULL;
    const char *gw_code = NULL;
    bool ok = apis[api].fn(c, &out, &gw_code, msg, sizeof msg);
    free(buf);
    if (gw_code) {
        assert(!out);
        refuse(st, req, api, gw_code, msg, gw_status(gw_code));
        return;
    }
    assert(out);
    if (ok)
        st->counters.ok[api]++;
    else
        st->counters.business_errors[api]++;
    fk_reply(st, req, 200, out,
             fault == FK_FAULT_TIMEOUT || fault == FK_FAULT_GARBAGE ? fault : FK_FAULT_NONE, true);
}
