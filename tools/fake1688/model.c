/* model.c — the fake supplier's catalogue and orders.
 *
 * Per SKU the fake keeps the hidden real quantity (what create/preview
 * check) and derives the reported amountOnSale from it: the real figure as
 * it was lag_ms ago, times the inflation factor (per SKU or global), unless
 * a fixed reported figure is set. The lag needs the recent history of the
 * real figure: FK_HIST entries, pruned to what the lag still needs.
 */
#include "fake1688.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t hist_value_at(const fk_sku *s, int64_t t_ms)
{
    assert(s->hist_n > 0);
    for (unsigned i = s->hist_n; i-- > 0;) {
        if (s->hist[i].at_ms <= t_ms)
            return s->hist[i].real;
    }
    /* Older than everything we know: the oldest figure is the best guess. */
    return s->hist[0].real;
}

static void hist_push(fk_sku *s, int64_t now_ms, int64_t lag_ms, int64_t real)
{
    /* Entries before the newest one at or before now-lag are never read. */
    unsigned keep_from = 0;
    for (unsigned i = 0; i < s->hist_n; i++) {
        if (s->hist[i].at_ms <= now_ms - lag_ms)
            keep_from = i;
    }
    if (s->hist_n == FK_HIST && keep_from == 0)
        keep_from = 1; /* full and all still needed: lose the oldest */
    if (keep_from) {
        memmove(s->hist, s->hist + keep_from, (s->hist_n - keep_from) * sizeof s->hist[0]);
        s->hist_n -= keep_from;
    }
    assert(s->hist_n < FK_HIST);
    s->hist[s->hist_n++] = (fk_hist_entry){now_ms, real};
}

int64_t fk_sku_reported(const fk_state *st, const fk_sku *s, int64_t now_ms)
{
    if (s->reported_fixed >= 0)
        return s->reported_fixed;
    double f = s->inflation > 0 ? s->inflation : st->cfg.inflation;
    double v = floor((double)hist_value_at(s, now_ms - st->cfg.lag_ms) * f);
    if (v < 0)
        return 0;
    return v > (double)FK_QTY_MAX ? FK_QTY_MAX : (int64_t)v;
}

int64_t fk_product_reported(const fk_state *st, const fk_product *p, int64_t now_ms)
{
    int64_t sum = 0;
    for (size_t i = 0; i < p->n_skus; i++)
        sum += fk_sku_reported(st, &p->skus[i], now_ms);
    return sum;
}

void fk_sku_set_real(fk_state *st, fk_product *p, fk_sku *s, int64_t real, int64_t now_ms,
                     bool push)
{
    if (real < 0)
        real = 0;
    if (real > FK_QTY_MAX)
        real = FK_QTY_MAX;
    if (real == s->real)
        return;
    int64_t delta = real - s->real;
    s->real = real;
    hist_push(s, now_ms, st->cfg.lag_ms, real);
    /* The push shows what the supplier reports, so it lags like the figure. */
    if (push && (!st->cfg.push_requires_follow || p->followed))
        fk_push_inventory(st, p->offer_id, s->sku_id, delta, st->cfg.lag_ms);
}

fk_product *fk_product_find(fk_state *st, int64_t offer_id)
{
    fk_product *p = NULL;
    HASH_FIND(hh, st->products, &offer_id, sizeof offer_id, p);
    return p;
}

fk_sku *fk_sku_find(fk_product *p, const char *spec_id)
{
    for (size_t i = 0; i < p->n_skus; i++) {
        if (strcmp(p->skus[i].spec_id, spec_id) == 0)
            return &p->skus[i];
    }
    return NULL;
}

void fk_product_free(fk_product *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_skus; i++)
        json_decref(p->skus[i].attributes);
    free(p->skus);
    free(p);
}

int fk_product_put(fk_state *st, fk_product *p)
{
    fk_product *old = fk_product_find(st, p->offer_id);
    if (old) {
        HASH_DEL(st->products, old);
        fk_product_free(old);
        st->n_products--;
    } else if (st->n_products >= st->max_products) {
        return -1;
    }
    HASH_ADD(hh, st->products, offer_id, sizeof p->offer_id, p);
    st->n_products++;
    return 0;
}

/* ---- JSON in ---------------------------------------------------------- */

static int get_str(json_t *j, const char *k, char *dst, size_t cap, const char *dflt, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(j, k);
    const char *s = dflt;
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "%s must be a string", k);
            return -1;
        }
        s = json_string_value(v);
    }
    if (strlen(s) >= cap) {
        snprintf(err, errlen, "%s is longer than %zu bytes", k, cap - 1);
        return -1;
    }
    strcpy(dst, s);
    return 0;
}

static int get_int(json_t *j, const char *k, int64_t lo, int64_t hi, int64_t dflt, int64_t *out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(j, k);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer in %lld..%lld", k, (long long)lo,
                 (long long)hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int get_bool(json_t *j, const char *k, bool dflt, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(j, k);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s must be true or false", k);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int sku_from_json(json_t *j, fk_sku *s, int64_t now_ms, char *err, size_t errlen)
{
    int64_t real, reported;
    json_t *price = json_object_get(j, "price");
    json_t *infl = json_object_get(j, "inflation");
    json_t *attrs = json_object_get(j, "attributes");
    if (!json_is_object(j)) {
        snprintf(err, errlen, "each sku must be an object");
        return -1;
    }
    if (get_int(j, "sku_id", 1, INT64_MAX, 0, &s->sku_id, err, errlen) ||
        get_str(j, "spec_id", s->spec_id, sizeof s->spec_id, "", err, errlen) ||
        get_str(j, "cargo_number", s->cargo_number, sizeof s->cargo_number, "", err, errlen) ||
        get_int(j, "price_fen", 0, FK_PRICE_MAX, -1, &s->price_fen, err, errlen) ||
        get_int(j, "real", 0, FK_QTY_MAX, 0, &real, err, errlen) ||
        get_int(j, "reported", 0, FK_QTY_MAX, -1, &reported, err, errlen))
        return -1;
    if (!s->sku_id || !s->spec_id[0]) {
        snprintf(err, errlen, "each sku needs sku_id and spec_id");
        return -1;
    }
    if (s->price_fen < 0) {
        if (!json_is_number(price) || json_number_value(price) < 0 ||
            json_number_value(price) * 100 > (double)FK_PRICE_MAX) {
            snprintf(err, errlen, "each sku needs price_fen or price (yuan)");
            return -1;
        }
        s->price_fen = (int64_t)llround(json_number_value(price) * 100);
    }
    s->inflation = 0;
    if (infl && !json_is_null(infl)) {
        if (!json_is_number(infl) || json_number_value(infl) <= 0 ||
            json_number_value(infl) > 1000) {
            snprintf(err, errlen, "inflation must be a number in (0, 1000]");
            return -1;
        }
        s->inflation = json_number_value(infl);
    }
    if (attrs && !json_is_null(attrs)) {
        char *t = json_is_array(attrs) ? json_dumps(attrs, JSON_COMPACT) : NULL;
        size_t tl = t ? strlen(t) : SIZE_MAX;
        free(t);
        if (tl > FK_MAX_ATTRS_BYTES) {
            snprintf(err, errlen, "attributes must be an array of at most %u bytes",
                     FK_MAX_ATTRS_BYTES);
            return -1;
        }
        s->attributes = json_deep_copy(attrs);
    } else {
        s->attributes = json_array();
    }
    s->real = real;
    s->reported_fixed = reported;
    s->hist_n = 1;
    s->hist[0] = (fk_hist_entry){now_ms, real};
    return 0;
}

static int product_fields(json_t *j, fk_product *p, char *err, size_t errlen)
{
    char dflt_subject[64];
    snprintf(dflt_subject, sizeof dflt_subject, "fake product %lld", (long long)p->offer_id);
    if (get_str(j, "status", p->status, sizeof p->status, "published", err, errlen) ||
        get_str(j, "subject", p->subject, sizeof p->subject, dflt_subject, err, errlen) ||
        get_str(j, "supplier", p->supplier, sizeof p->supplier, "fake-seller", err, errlen) ||
        get_str(j, "member_id", p->member_id, sizeof p->member_id, "b2b-fakeseller", err,
                errlen) ||
        get_str(j, "force_error", p->force_error, sizeof p->force_error, "", err, errlen) ||
        get_int(j, "min_order_quantity", 1, FK_QTY_MAX, 1, &p->min_order_quantity, err,
                errlen) ||
        get_int(j, "batch_number", 1, FK_QTY_MAX, 1, &p->batch_number, err, errlen) ||
        get_int(j, "post_fee_fen", 0, FK_PRICE_MAX, 0, &p->post_fee_fen, err, errlen) ||
        get_bool(j, "support_online_trade", true, &p->support_online_trade, err, errlen) ||
        get_bool(j, "consign", true, &p->consign, err, errlen) ||
        get_bool(j, "followed", false, &p->followed, err, errlen))
        return -1;
    return 0;
}

fk_product *fk_product_from_json(json_t *j, int64_t now_ms, char *err, size_t errlen)
{
    json_t *skus = json_object_get(j, "skus");
    if (!json_is_object(j)) {
        snprintf(err, errlen, "a product must be an object");
        return NULL;
    }
    fk_product *p = calloc(1, sizeof *p);
    assert(p);
    p->last_update_ms = now_ms;
    if (get_int(j, "offer_id", 1, INT64_MAX, 0, &p->offer_id, err, errlen) ||
        product_fields(j, p, err, errlen))
        goto bad;
    if (!p->offer_id) {
        snprintf(err, errlen, "offer_id is required");
        goto bad;
    }
    if (!json_is_array(skus) || json_array_size(skus) < 1 ||
        json_array_size(skus) > FK_MAX_SKUS) {
        snprintf(err, errlen, "skus must be an array of 1..%d SKUs", FK_MAX_SKUS);
        goto bad;
    }
    p->skus = calloc(json_array_size(skus), sizeof p->skus[0]);
    assert(p->skus);
    for (size_t i = 0; i < json_array_size(skus); i++) {
        if (sku_from_json(json_array_get(skus, i), &p->skus[i], now_ms, err, errlen) != 0)
            goto bad;
        p->n_skus++;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(p->skus[k].spec_id, p->skus[i].spec_id) == 0 ||
                p->skus[k].sku_id == p->skus[i].sku_id) {
                snprintf(err, errlen, "duplicate spec_id or sku_id in offer %lld",
                         (long long)p->offer_id);
                goto bad;
            }
        }
    }
    return p;
bad:
    fk_product_free(p);
    return NULL;
}

/* ---- JSON out --------------------------------------------------------- */

/* 1688's wire dates: yyyyMMddHHmmssSSS+0800 (or "yyyy-MM-dd HH:mm:ss"). */
static json_t *fmt_time(int64_t ms, bool plain)
{
    char buf[48];
    time_t t = (time_t)(ms / 1000) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    if (plain)
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    else
        snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02d%03d+0800", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

static json_t *yuan(int64_t fen)
{
    return json_real((double)fen / 100.0);
}

static json_t *sku_info_json(const fk_state *st, const fk_sku *s, int64_t now_ms)
{
    return json_pack("{s:O, s:I, s:o, s:o, s:I, s:s, s:s}", "attributes", s->attributes,
                     "amountOnSale", (json_int_t)fk_sku_reported(st, s, now_ms), "price",
                     yuan(s->price_fen), "retailPrice", yuan(s->price_fen), "skuId",
                     (json_int_t)s->sku_id, "specId", s->spec_id, "cargoNumber", s->cargo_number);
}

json_t *fk_product_info_json(const fk_state *st, const fk_product *p, int64_t now_ms)
{
    json_t *skus = json_array();
    int64_t min_price = INT64_MAX;
    for (size_t i = 0; i < p->n_skus; i++) {
        json_array_append_new(skus, sku_info_json(st, &p->skus[i], now_ms));
        if (p->skus[i].price_fen < min_price)
            min_price = p->skus[i].price_fen;
    }
    json_t *sale = json_pack(
        "{s:b, s:b, s:f, s:I, s:I, s:s, s:i, s:[{s:I, s:o}], s:s}", "supportOnlineTrade",
        p->support_online_trade, "mixWholeSale", 1, "amountOnSale",
        (double)fk_product_reported(st, p, now_ms), "minOrderQuantity",
        (json_int_t)p->min_order_quantity, "batchNumber", (json_int_t)p->batch_number, "unit",
        "\xe4\xb8\xaa", "quoteType", 1, "priceRanges", "startQuantity",
        (json_int_t)p->min_order_quantity, "price", yuan(min_price), "invReduceType", "1");
    json_t *info = json_pack(
        "{s:I, s:s, s:i, s:s, s:s, s:s, s:{s:[]}, s:o, s:o, s:{s:f, s:i, s:s}, s:s, s:s, s:o}",
        "productID", (json_int_t)p->offer_id, "productType", "wholesale", "categoryID", 1031910,
        "categoryName", "fake", "status", p->status, "subject", p->subject, "image", "images",
        "skuInfos", skus, "saleInfo", sale, "shippingInfo", "unitWeight", 0.3,
        "freightTemplateID", 1, "sendGoodsAddressText", "\xe6\xb5\x99\xe6\xb1\x9f\xe7\x9c\x81",
        "supplierLoginId", p->supplier, "sellerLoginId", p->supplier, "lastUpdateTime",
        fmt_time(p->last_update_ms, false));
    assert(info);
    return info;
}

/* The control view: the hidden figures next to what is reported. */
json_t *fk_product_state_json(const fk_state *st, const fk_product *p, int64_t now_ms)
{
    json_t *skus = json_array();
    for (size_t i = 0; i < p->n_skus; i++) {
        const fk_sku *s = &p->skus[i];
        json_array_append_new(
            skus, json_pack("{s:I, s:s, s:I, s:I, s:I, s:o, s:o, s:O}", "sku_id",
                            (json_int_t)s->sku_id, "spec_id", s->spec_id, "price_fen",
                            (json_int_t)s->price_fen, "real", (json_int_t)s->real, "reported",
                            (json_int_t)fk_sku_reported(st, s, now_ms), "reported_fixed",
                            s->reported_fixed >= 0 ? json_integer(s->reported_fixed) : json_null(),
                            "inflation", s->inflation > 0 ? json_real(s->inflation) : json_null(),
                            "attributes", s->attributes));
    }
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:s, s:o}", "offer_id",
                     (json_int_t)p->offer_id, "status", p->status, "subject", p->subject,
                     "supplier", p->supplier, "min_order_quantity",
                     (json_int_t)p->min_order_quantity, "batch_number",
                     (json_int_t)p->batch_number, "support_online_trade", p->support_online_trade,
                     "followed", p->followed, "force_error", p->force_error, "skus", skus);
}

/* ---- orders ------------------------------------------------------------ */

fk_order *fk_order_find(fk_state *st, uint64_t id)
{
    fk_order *o = NULL;
    HASH_FIND(hh, st->orders, &id, sizeof id, o);
    return o;
}

fk_outc *fk_outc_get(fk_state *st, const char *out_order_id, bool create)
{
    fk_outc *c = NULL;
    HASH_FIND_STR(st->outcs, out_order_id, c);
    if (c || !create)
        return c;
    if (st->n_outcs >= st->max_orders)
        return NULL;
    c = calloc(1, sizeof *c);
    assert(c && strlen(out_order_id) <= FK_ID_MAX);
    strcpy(c->out_order_id, out_order_id);
    HASH_ADD_STR(st->outcs, out_order_id, c);
    st->n_outcs++;
    return c;
}

static const char *pay_status(const fk_order *o)
{
    if (strcmp(o->status, "waitbuyerpay") == 0)
        return "1";
    if (strcmp(o->status, "cancel") == 0)
        return "8";
    return "2";
}

json_t *fk_order_json(const fk_state *st, const fk_order *o)
{
    char ids[24];
    (void)st;
    snprintf(ids, sizeof ids, "%llu", (unsigned long long)o->id);
    json_t *items = json_array();
    for (size_t i = 0; i < o->n_items; i++) {
        const fk_item *it = &o->items[i];
        char sub[32];
        snprintf(sub, sizeof sub, "%llu%02zu", (unsigned long long)o->id, i);
        json_array_append_new(
            items, json_pack("{s:I, s:I, s:s, s:I, s:o, s:o, s:s, s:i, s:o, s:s, s:s}",
                             "productID", (json_int_t)it->offer_id, "skuID",
                             (json_int_t)it->sku_id, "specId", it->spec_id, "quantity",
                             (json_int_t)it->qty, "price", yuan(it->price_fen), "itemAmount",
                             yuan(it->price_fen * it->qty), "status", o->status,
                             "logisticsStatus", 1, "gmtPayExpireTime",
                             fmt_time(o->pay_expire_ms, true), "subItemIDString", sub, "name",
                             "fake item"));
    }
    int64_t total = o->goods_fen + o->post_fee_fen;
    json_t *base = json_pack(
        "{s:I, s:s, s:s, s:o, s:o, s:o, s:i, s:o, s:o, s:I, s:i, s:s, s:s, s:s, s:s}", "id",
        (json_int_t)o->id, "idOfStr", ids, "status", o->status, "totalAmount", yuan(total),
        "shippingFee", yuan(o->post_fee_fen), "sumProductPayment", yuan(o->goods_fen), "discount",
        0, "createTime", fmt_time(o->created_ms, false), "modifyTime",
        fmt_time(o->modified_ms, false), "payTimeout",
        (json_int_t)((o->pay_expire_ms - o->created_ms) / 1000), "payTimeoutType", 0,
        "outOrderId", o->out_order_id, "tradeTypeCode", "assureTrade", "buyerLoginId",
        "fake-buyer", "tradeType", "50060");
    if (o->close_reason[0]) {
        json_object_set_new(base, "closeReason", json_string(o->close_reason));
        json_object_set_new(base, "closeOperateType", json_string(o->close_op));
    }
    return json_pack("{s:o, s:o, s:[{s:s, s:o}]}", "baseInfo", base, "productItems", items,
                     "tradeTerms", "payStatus", pay_status(o), "phasAmount", yuan(total));
}

void fk_order_close(fk_state *st, fk_order *o, const char *reason, const char *op,
                    int64_t now_ms)
{
    assert(strcmp(o->status, "waitbuyerpay") == 0);
    /* invReduceType 1: the order took the stock, closing gives it back. */
    for (size_t i = 0; i < o->n_items; i++) {
        fk_product *p = fk_product_find(st, o->items[i].offer_id);
        fk_sku *s = p ? fk_sku_find(p, o->items[i].spec_id) : NULL;
        if (s)
            fk_sku_set_real(st, p, s, s->real + o->items[i].qty, now_ms, true);
    }
    snprintf(o->status, sizeof o->status, "cancel");
    snprintf(o->close_reason, sizeof o->close_reason, "%s", reason);
    snprintf(o->close_op, sizeof o->close_op, "%s", op);
    o->modified_ms = now_ms;
}

void fk_orders_sweep(fk_state *st, int64_t now_ms)
{
    fk_order *o, *tmp;
    HASH_ITER(hh, st->orders, o, tmp) {
        if (o->pay_expire_ms <= now_ms && strcmp(o->status, "waitbuyerpay") == 0)
            fk_order_close(st, o, "other", "CLOSE_TRADE_BY_SYSTEM", now_ms);
    }
}

void fk_model_clear(fk_state *st)
{
    fk_product *p, *pt;
    HASH_ITER(hh, st->products, p, pt) {
        HASH_DEL(st->products, p);
        fk_product_free(p);
    }
    fk_order *o, *ot;
    HASH_ITER(hh, st->orders, o, ot) {
        HASH_DEL(st->orders, o);
        free(o->items);
        free(o);
    }
    fk_outc *c, *ct;
    HASH_ITER(hh, st->outcs, c, ct) {
        HASH_DEL(st->outcs, c);
        free(c);
    }
    st->n_products = st->n_orders = st->n_outcs = 0;
}
