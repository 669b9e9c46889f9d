/* supplier_parse.c — see include/stockd/supplier_parse.h. */
#include "stockd/supplier_parse.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PARSE_BODY_MAX (64u << 20) /* the client caps far lower; a bound anyway */
#define PREVIEW_ENTRIES_MAX 16

static const struct {
    const char *ns, *name;
} api_names[SUPPLIER_API__N] = {
    [SUPPLIER_API_PRODUCT_GET] = {"com.alibaba.product", "alibaba.product.get"},
    [SUPPLIER_API_PREVIEW] = {"com.alibaba.trade", "alibaba.createOrder.preview"},
    [SUPPLIER_API_CREATE] = {"com.alibaba.trade", "alibaba.trade.fastCreateOrder"},
    [SUPPLIER_API_BUYER_VIEW] = {"com.alibaba.trade", "alibaba.trade.get.buyerView"},
    [SUPPLIER_API_CANCEL] = {"com.alibaba.trade", "alibaba.trade.cancel"},
};

const char *supplier_api_namespace(supplier_api api)
{
    assert(api < SUPPLIER_API__N);
    return api_names[api].ns;
}

const char *supplier_api_name(supplier_api api)
{
    assert(api < SUPPLIER_API__N);
    return api_names[api].name;
}

const char *supplier_outcome_name(supplier_outcome o)
{
    switch (o) {
    case SUPPLIER_OK: return "ok";
    case SUPPLIER_RETRYABLE: return "retryable";
    case SUPPLIER_DEFINITIVE: return "definitive";
    }
    return "?";
}

const char *supplier_kind_name(supplier_kind k)
{
    static const char *const names[SUPPLIER_KIND__N] = {
        "none", "qos", "connect", "http5xx", "timeout", "io", "garbage", "aborted"};
    return k < SUPPLIER_KIND__N ? names[k] : "?";
}

bool supplier_kind_maybe_executed(supplier_kind k)
{
    return k != SUPPLIER_KIND_NONE && k != SUPPLIER_KIND_QOS && k != SUPPLIER_KIND_CONNECT;
}

/* ---- small string helpers -------------------------------------------------- */

/* Copies at most cap-1 bytes of s[0..len), never splitting a UTF-8 sequence,
 * control bytes turned into spaces (the text ends up in logs and alerts). */
static void copy_text(char *dst, size_t cap, const char *s, size_t len)
{
    assert(cap > 0);
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n < len) {
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    dst[n] = '\0';
}

void supplier_result_set(supplier_result *r, supplier_outcome o, supplier_kind k,
                         const char *code, const char *message)
{
    r->outcome = o;
    r->kind = o == SUPPLIER_RETRYABLE ? k : SUPPLIER_KIND_NONE;
    copy_text(r->code, sizeof r->code, code ? code : "", code ? strlen(code) : 0);
    copy_text(r->message, sizeof r->message, message ? message : "",
              message ? strlen(message) : 0);
}

void supplier_redact(char *s, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    if (!s || sl < 4)
        return;
    char *p = s;
    while ((p = strstr(p, secret)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + sl, strlen(p + sl) + 1);
        p += 3;
    }
}

bool supplier_yuan_text_to_fen(const char *s, int64_t *fen)
{
    int64_t whole = 0, frac = 0;
    int ndig = 0, nfrac = 0;
    const char *p = s;
    if (!s || !*s)
        return false;
    for (; *p >= '0' && *p <= '9'; p++, ndig++) {
        if (whole > SUPPLIER_AMOUNT_MAX / 100)
            return false;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, nfrac++) {
            if (nfrac >= 2 && *p != '0')
                return false; /* sub-fen precision: not money we can hold */
            if (nfrac < 2)
                frac = frac * 10 + (*p - '0');
        }
        if (nfrac == 0)
            return false;
    }
    if (*p || ndig == 0)
        return false;
    if (nfrac == 1)
        frac *= 10;
    int64_t v = whole * 100 + frac;
    if (v > SUPPLIER_AMOUNT_MAX)
        return false;
    *fen = v;
    return true;
}

/* ---- JSON value readers ------------------------------------------------------- */

static bool get_i64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9e15)
            return false;
        *out = (int64_t)d;
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0 || len > 19 || strspn(s, "0123456789") != len)
            return false;
        errno = 0;
        long long x = strtoll(s, NULL, 10);
        if (errno)
            return false;
        *out = (int64_t)x;
        return true;
    }
    return false;
}

/* A quantity: integer, whole real (Double on 1688) or digit string; the
 * fractional part of a real is dropped (never rounds stock up). */
static bool get_amount(const json_t *v, int64_t *out)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0 || d > (double)SUPPLIER_AMOUNT_MAX)
            return false;
        *out = (int64_t)floor(d);
        return true;
    }
    int64_t x;
    if (!get_i64(v, &x) || x < 0 || x > SUPPLIER_AMOUNT_MAX)
        return false;
    *out = x;
    return true;
}

/* Yuan as a number or text, into fen. */
static bool get_yuan(const json_t *v, int64_t *fen)
{
    if (json_is_string(v))
        return supplier_yuan_text_to_fen(json_string_value(v), fen);
    if (json_is_integer(v) || json_is_real(v)) {
        double d = json_number_value(v);
        if (!isfinite(d) || d < 0 || d > (double)SUPPLIER_AMOUNT_MAX / 100)
            return false;
        *fen = (int64_t)llround(d * 100.0);
        return true;
    }
    return false;
}

static void opt_yuan(const json_t *obj, const char *key, int64_t *fen)
{
    if (!get_yuan(json_object_get(obj, key), fen))
        *fen = -1;
}

static void opt_fen(const json_t *obj, const char *key, int64_t *fen)
{
    if (!get_amount(json_object_get(obj, key), fen))
        *fen = -1;
}

/* A string, or an integer printed; "" for anything else. */
static void get_text(const json_t *v, char *dst, size_t cap)
{
    if (json_is_string(v)) {
        copy_text(dst, cap, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        snprintf(dst, cap, "%lld", (long long)json_integer_value(v));
    } else {
        dst[0] = '\0';
    }
}

/* An id that must fit exactly (no silent cut): string or integer. */
static bool get_id(const json_t *v, char *dst, size_t cap)
{
    char tmp[256];
    if (json_is_string(v) && json_string_length(v) >= sizeof tmp)
        return false;
    get_text(v, tmp, sizeof tmp);
    size_t len = strlen(tmp);
    if (len == 0 || len >= cap)
        return false;
    memcpy(dst, tmp, len + 1);
    return true;
}

static const char *obj_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* true/"true" vs false/"false" (buyerView types success as a String). */
static bool is_false(const json_t *v)
{
    return json_is_false(v) || (json_is_string(v) && strcmp(json_string_value(v), "false") == 0);
}

static bool is_true_or_absent(const json_t *v)
{
    return !v || json_is_null(v) || json_is_true(v) ||
           (json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

/* ---- the normaliser ------------------------------------------------------------- */

static void set_http_code(supplier_result *r, supplier_outcome o, supplier_kind k, int status,
                          const char *msg)
{
    char code[32];
    snprintf(code, sizeof code, "http.%d", status);
    supplier_result_set(r, o, k, code, msg);
}

static void transport_result(const supplier_response *rsp, supplier_result *r)
{
    const char *m = rsp->xfer_error;
    switch (rsp->xfer) {
    case SUPPLIER_XFER_CONNECT:
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_CONNECT, "client.Connect", m);
        break;
    case SUPPLIER_XFER_TIMEOUT:
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_TIMEOUT, "client.Timeout", m);
        break;
    case SUPPLIER_XFER_IO:
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_IO, "client.IO", m);
        break;
    case SUPPLIER_XFER_ABORTED:
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_ABORTED, "client.Aborted", m);
        break;
    case SUPPLIER_XFER_TOO_LARGE:
        supplier_result_set(r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE,
                            "client.ResponseTooLarge", m ? m : "answer over the size cap");
        break;
    case SUPPLIER_XFER_LOCAL:
    default:
        supplier_result_set(r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.Local", m);
        break;
    }
}

/* The gateway envelope {error_code, error_message, exception?}. */
static void gateway_result(const json_t *doc, int status, supplier_result *r)
{
    char code[SUPPLIER_CODE_MAX];
    get_text(json_object_get(doc, "error_code"), code, sizeof code);
    const char *msg = obj_str(doc, "error_message");
    if (!msg)
        msg = obj_str(doc, "exception");
    if (!code[0])
        snprintf(code, sizeof code, "http.%d", status);
    if (strstr(code, "FrequencyLimit"))
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_QOS, code, msg);
    else if (status >= 500 || strstr(code, "ISPInvokeError") || strstr(code, "ISPInvokeTimeout") ||
             strstr(code, "ServiceUnavailable"))
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_HTTP5XX, code, msg);
    else
        supplier_result_set(r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, code, msg);
}

/* "code" as a business code: empty, "200", "0", 0, "success" mean none. */
static bool biz_code(const json_t *v, char *dst, size_t cap)
{
    get_text(v, dst, cap);
    if (!dst[0] || strcmp(dst, "200") == 0 || strcmp(dst, "0") == 0 ||
        strcmp(dst, "success") == 0 || strcmp(dst, "SUCCESS") == 0) {
        dst[0] = '\0';
        return false;
    }
    return true;
}

static const char *first_msg(const json_t *obj)
{
    static const char *const keys[] = {"errorMsg", "errorMessage", "message", "errMsg"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *m = obj_str(obj, keys[i]);
        if (m)
            return m;
    }
    return NULL;
}

/* Create: result.success false or failedOfferList[] without an order. */
static bool create_failed(const json_t *doc, char *code, size_t cap, const char **msg)
{
    const json_t *res = json_object_get(doc, "result");
    if (!json_is_object(res))
        return false;
    const json_t *failed = json_object_get(res, "failedOfferList");
    const json_t *f0 = json_is_array(failed) ? json_array_get(failed, 0) : NULL;
    bool has_order = obj_str(res, "orderId") || json_is_integer(json_object_get(res, "orderId")) ||
                     json_array_size(json_object_get(res, "orderList")) > 0;
    if (!is_false(json_object_get(res, "success")) && (has_order || !f0))
        return false;
    if (!code[0] && !biz_code(json_object_get(res, "code"), code, cap) && json_is_object(f0))
        biz_code(json_object_get(f0, "errorCode"), code, cap);
    if (!*msg)
        *msg = first_msg(res);
    if (!*msg && json_is_object(f0))
        *msg = obj_str(f0, "errorMessage");
    return true;
}

/* Preview: an entry with status false failed (resultCode, message). */
static bool preview_failed(const json_t *doc, char *code, size_t cap, const char **msg)
{
    const json_t *list = json_object_get(doc, "orderPreviewResuslt");
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) {
        if (json_is_object(e) && is_false(json_object_get(e, "status"))) {
            biz_code(json_object_get(e, "resultCode"), code, cap);
            *msg = first_msg(e);
            return true;
        }
    }
    return false;
}

/* Step 5 of the header's rules; fills r and returns true on a failure. */
static bool business_error(supplier_api api, const json_t *doc, supplier_result *r)
{
    char code[SUPPLIER_CODE_MAX] = "";
    const char *msg = first_msg(doc);
    bool failed = is_false(json_object_get(doc, "success"));
    if (biz_code(json_object_get(doc, "errorCode"), code, sizeof code))
        failed = true;
    else if (biz_code(json_object_get(doc, "code"), code, sizeof code))
        failed = true;
    if (obj_str(doc, "errMsg") || obj_str(doc, "errorMsg"))
        failed = true;
    if (api == SUPPLIER_API_CREATE && create_failed(doc, code, sizeof code, &msg))
        failed = true;
    if (!failed && api == SUPPLIER_API_PREVIEW && preview_failed(doc, code, sizeof code, &msg))
        failed = true;
    if (!failed)
        return false;
    supplier_result_set(r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, code[0] ? code : "biz.Error",
                        msg);
    return true;
}

/* ---- typed readers -------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

static uint64_t fnv_json(uint64_t h, const json_t *v)
{
    char tmp[32];
    if (json_is_string(v))
        return fnv(h, json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        return fnv(h, tmp, (size_t)n);
    }
    return h;
}

static void append_text(char *dst, size_t cap, size_t *len, const char *s)
{
    if (!s || *len + 1 >= cap)
        return;
    copy_text(dst + *len, cap - *len, s, strlen(s));
    *len += strlen(dst + *len);
}

/* Readable text and fingerprint of one SKU's attributes. */
static void read_sku_attrs(const json_t *attrs, supplier_sku *s)
{
    uint64_t h = fnv(FNV_OFFSET, s->spec_id, strlen(s->spec_id) + 1);
    char price[32];
    int n = snprintf(price, sizeof price, "%lld", (long long)s->price_fen);
    h = fnv(h, price, (size_t)n + 1);
    size_t len = 0, i;
    const json_t *a;
    json_array_foreach(attrs, i, a) {
        if (!json_is_object(a))
            continue;
        h = fnv_json(h, json_object_get(a, "attributeID"));
        h = fnv(h, "\x1f", 1);
        h = fnv_json(h, json_object_get(a, "attValueID"));
        h = fnv(h, "\x1f", 1);
        h = fnv_json(h, json_object_get(a, "attributeValue"));
        h = fnv(h, "\x1e", 1);
        const char *name = obj_str(a, "attributeDisplayName");
        const char *value = obj_str(a, "attributeValue");
        if (!name)
            name = obj_str(a, "attributeName");
        if (!value)
            value = obj_str(a, "customValueName");
        if (len)
            append_text(s->attrs, sizeof s->attrs, &len, ";");
        append_text(s->attrs, sizeof s->attrs, &len, name ? name : "?");
        append_text(s->attrs, sizeof s->attrs, &len, ":");
        append_text(s->attrs, sizeof s->attrs, &len, value ? value : "?");
    }
    s->fingerprint = h;
}

static bool read_sku(const json_t *j, supplier_sku *s)
{
    if (!json_is_object(j) || !get_i64(json_object_get(j, "skuId"), &s->sku_id) ||
        !get_id(json_object_get(j, "specId"), s->spec_id, sizeof s->spec_id) ||
        !get_amount(json_object_get(j, "amountOnSale"), &s->amount_on_sale))
        return false;
    opt_yuan(j, "price", &s->price_fen);
    read_sku_attrs(json_object_get(j, "attributes"), s);
    return true;
}

static void read_sale_info(const json_t *si, supplier_product *p)
{
    int64_t x;
    p->support_online_trade = true;
    p->amount_on_sale = -1;
    p->min_order_quantity = 1;
    p->batch_number = 1;
    if (!json_is_object(si))
        return;
    p->support_online_trade = is_true_or_absent(json_object_get(si, "supportOnlineTrade"));
    if (get_amount(json_object_get(si, "amountOnSale"), &x))
        p->amount_on_sale = x;
    if (get_amount(json_object_get(si, "minOrderQuantity"), &x) && x > 0)
        p->min_order_quantity = x;
    if (get_amount(json_object_get(si, "batchNumber"), &x) && x > 0)
        p->batch_number = x;
    if (get_amount(json_object_get(si, "invReduceType"), &x) && (x == 1 || x == 2))
        p->inv_reduce_type = (int)x;
}

static bool read_product(const json_t *doc, supplier_product *p)
{
    const json_t *info = json_object_get(doc, "productInfo");
    if (!json_is_object(info) || !get_i64(json_object_get(info, "productID"), &p->offer_id))
        return false;
    get_text(json_object_get(info, "status"), p->status, sizeof p->status);
    p->published = strcmp(p->status, "published") == 0;
    read_sale_info(json_object_get(info, "saleInfo"), p);
    const json_t *skus = json_object_get(info, "skuInfos");
    if (!skus || json_is_null(skus))
        return true;
    size_t n = json_array_size(skus);
    if (!json_is_array(skus) || n > SUPPLIER_SKUS_MAX)
        return false;
    if (n == 0)
        return true;
    p->skus = calloc(n, sizeof *p->skus);
    if (!p->skus)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!read_sku(json_array_get(skus, i), &p->skus[i]))
            return false;
    }
    p->n_skus = n;
    return true;
}

static bool read_cargo_line(const json_t *c, supplier_cargo_line *l)
{
    if (!json_is_object(c) || !get_i64(json_object_get(c, "offerId"), &l->offer_id))
        return false;
    get_text(json_object_get(c, "specId"), l->spec_id, sizeof l->spec_id);
    if (!get_i64(json_object_get(c, "skuId"), &l->sku_id))
        l->sku_id = 0;
    opt_yuan(c, "amount", &l->amount_fen);
    opt_yuan(c, "finalUnitPrice", &l->unit_price_fen);
    return true;
}

static bool read_preview(const json_t *doc, supplier_preview *p)
{
    const json_t *list = json_object_get(doc, "orderPreviewResuslt");
    if (!list)
        list = json_object_get(doc, "orderPreviewResult"); /* should the typo be fixed */
    size_t n = json_array_size(list), i;
    if (n == 0 || n > PREVIEW_ENTRIES_MAX)
        return false;
    const json_t *e;
    json_array_foreach(list, i, e) {
        int64_t pay, carriage = 0, goods = 0;
        if (!json_is_object(e) || !get_amount(json_object_get(e, "sumPayment"), &pay))
            return false;
        get_amount(json_object_get(e, "sumCarriage"), &carriage);
        get_amount(json_object_get(e, "sumPaymentNoCarriage"), &goods);
        p->sum_payment_fen += pay;
        p->sum_carriage_fen += carriage;
        p->sum_payment_no_carriage_fen += goods;
        if (i == 0)
            get_text(json_object_get(e, "flowFlag"), p->flow_flag, sizeof p->flow_flag);
        size_t j;
        const json_t *c;
        json_array_foreach(json_object_get(e, "cargoList"), j, c) {
            if (p->n_lines >= SUPPLIER_LINES_MAX || !read_cargo_line(c, &p->lines[p->n_lines]))
                return false;
            p->n_lines++;
        }
    }
    p->n_entries = n;
    return true;
}

static bool read_created(const json_t *doc, supplier_created *c)
{
    const json_t *res = json_object_get(doc, "result");
    if (!json_is_object(res))
        return false;
    opt_fen(res, "totalSuccessAmount", &c->total_success_amount_fen);
    opt_fen(res, "postFee", &c->post_fee_fen);
    if (get_id(json_object_get(res, "orderId"), c->order_ids[0], sizeof c->order_ids[0])) {
        c->n_orders = 1;
        return true;
    }
    const json_t *list = json_object_get(res, "orderList");
    size_t n = json_array_size(list);
    if (n == 0 || n > SUPPLIER_ORDERS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(list, i);
        if (!json_is_object(o) ||
            !get_id(json_object_get(o, "orderId"), c->order_ids[i], sizeof c->order_ids[i]))
            return false;
    }
    c->n_orders = n;
    return true;
}

static void read_view_items(const json_t *items, supplier_order_view *v)
{
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        if (v->n_items >= SUPPLIER_LINES_MAX)
            break; /* not an order of ours; the base info still counts */
        supplier_order_item *o = &v->items[v->n_items];
        if (!json_is_object(it) || !get_i64(json_object_get(it, "productID"), &o->offer_id))
            continue;
        if (!get_i64(json_object_get(it, "skuID"), &o->sku_id) &&
            !get_i64(json_object_get(it, "skuId"), &o->sku_id))
            o->sku_id = 0;
        get_text(json_object_get(it, "specId"), o->spec_id, sizeof o->spec_id);
        if (!get_amount(json_object_get(it, "quantity"), &o->quantity))
            o->quantity = 0;
        v->n_items++;
    }
}

static bool read_view(const json_t *doc, supplier_order_view *v)
{
    const json_t *base = json_object_get(json_object_get(doc, "result"), "baseInfo");
    if (!json_is_object(base))
        return false;
    if (!get_id(json_object_get(base, "idOfStr"), v->order_id, sizeof v->order_id) &&
        !get_id(json_object_get(base, "id"), v->order_id, sizeof v->order_id))
        return false;
    get_text(json_object_get(base, "status"), v->status, sizeof v->status);
    if (!v->status[0])
        return false;
    get_text(json_object_get(base, "outOrderId"), v->out_order_id, sizeof v->out_order_id);
    get_text(json_object_get(base, "closeReason"), v->close_reason, sizeof v->close_reason);
    get_text(json_object_get(base, "closeOperateType"), v->close_operate_type,
             sizeof v->close_operate_type);
    opt_yuan(base, "totalAmount", &v->total_amount_fen);
    opt_yuan(base, "shippingFee", &v->shipping_fee_fen);
    read_view_items(json_object_get(json_object_get(doc, "result"), "productItems"), v);
    return true;
}

static bool read_typed(const json_t *doc, supplier_reply *out)
{
    switch (out->api) {
    case SUPPLIER_API_PRODUCT_GET: return read_product(doc, &out->u.product);
    case SUPPLIER_API_PREVIEW: return read_preview(doc, &out->u.preview);
    case SUPPLIER_API_CREATE: return read_created(doc, &out->u.created);
    case SUPPLIER_API_BUYER_VIEW: return read_view(doc, &out->u.view);
    case SUPPLIER_API_CANCEL: return true;
    case SUPPLIER_API__N: break;
    }
    return false;
}

/* ---- entry points ----------------------------------------------------------------- */

void supplier_reply_clear(supplier_reply *r)
{
    if (r->api == SUPPLIER_API_PRODUCT_GET)
        free(r->u.product.skus);
    memset(&r->u, 0, sizeof r->u);
}

/* Steps 2–6 for an HTTP answer. */
static void answer_result(const supplier_response *rsp, supplier_reply *out)
{
    supplier_result *r = &out->res;
    int st = rsp->http_status;
    json_t *doc = NULL;
    if (rsp->body && rsp->body_len > 0 && rsp->body_len <= PARSE_BODY_MAX)
        doc = json_loadb(rsp->body, rsp->body_len, 0, NULL);
    if (json_is_object(doc) && json_object_get(doc, "error_code")) {
        gateway_result(doc, st, r);
    } else if (st >= 500 || st == 408) {
        set_http_code(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_HTTP5XX, st, NULL);
    } else if (st == 429) {
        set_http_code(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_QOS, st, NULL);
    } else if (st < 200 || st > 299) {
        set_http_code(r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, st, NULL);
    } else if (!json_is_object(doc)) {
        supplier_result_set(r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_GARBAGE, "client.Garbage",
                            "answer is not a JSON object");
    } else if (!business_error(out->api, doc, r)) {
        if (read_typed(doc, out)) {
            supplier_result_set(r, SUPPLIER_OK, SUPPLIER_KIND_NONE, NULL, NULL);
        } else {
            supplier_reply_clear(out);
            supplier_result_set(r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.BadShape",
                                "answer lacks the fields this API must have");
        }
    }
    json_decref(doc);
}

void supplier_parse(const supplier_response *rsp, supplier_reply *out)
{
    assert(out->api < SUPPLIER_API__N);
    memset(&out->res, 0, sizeof out->res);
    memset(&out->u, 0, sizeof out->u);
    out->res.http_status = rsp->http_status;
    if (rsp->xfer != SUPPLIER_XFER_OK)
        transport_result(rsp, &out->res);
    else
        answer_result(rsp, out);
    out->res.http_status = rsp->http_status;
}
