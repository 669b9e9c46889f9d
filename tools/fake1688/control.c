/* control.c — the fake's JSON control API (its own port; see docs/fake1688.md).
 *
 * Every answer is a JSON object with "ok": true, or "ok": false and "error"
 * (HTTP 400 for a bad request, 404 for an unknown path or object). Updates
 * are validated whole before anything changes.
 */
#include "fake1688.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

typedef struct ctl {
    fk_state *st;
    struct evhttp_request *req;
    enum evhttp_cmd_type method;
    const char *path;
    json_t *body; /* NULL for GET */
    int64_t now_ms;
    char err[256];
} ctl;

static const char *fault_names[FK_FAULT__N] = {"none", "qos", "401", "5xx", "reset", "timeout",
                                                "garbage"};

static void answer(ctl *c, int status, json_t *obj)
{
    if (!obj)
        obj = json_object();
    json_object_set_new(obj, "ok", json_boolean(status == 200));
    if (status != 200)
        json_object_set_new(obj, "error", json_string(c->err));
    fk_reply(c->st, c->req, status, obj, FK_FAULT_NONE, false);
}

static int fail(ctl *c, int status, const char *msg)
{
    snprintf(c->err, sizeof c->err, "%s", msg);
    return status;
}

/* ---- catalogue ---------------------------------------------------------- */

static int put_products(ctl *c, json_t *list, bool replace_all)
{
    size_t n = json_array_size(list);
    if (!json_is_array(list))
        return fail(c, 400, "products must be an array");
    if (n > c->st->max_products)
        return fail(c, 400, "more products than --max-products");
    fk_product **made = calloc(n ? n : 1, sizeof *made);
    assert(made);
    for (size_t i = 0; i < n; i++) {
        made[i] = fk_product_from_json(json_array_get(list, i), c->now_ms, c->err, sizeof c->err);
        if (!made[i]) {
            for (size_t k = 0; k < i; k++)
                fk_product_free(made[k]);
            free(made);
            return 400;
        }
    }
    if (replace_all) {
        fk_product *p, *t;
        HASH_ITER(hh, c->st->products, p, t) {
            HASH_DEL(c->st->products, p);
            fk_product_free(p);
        }
        c->st->n_products = 0;
    }
    int rc = 200;
    for (size_t i = 0; i < n; i++) {
        if (fk_product_put(c->st, made[i]) != 0) {
            fk_product_free(made[i]);
            rc = fail(c, 400, "catalogue full (--max-products); later products not added");
        }
    }
    free(made);
    return rc;
}

static int do_products(ctl *c, json_t **out)
{
    json_t *list = json_object_get(c->body, "products");
    if (list)
        return put_products(c, list, false);
    json_t *one = json_array();
    json_array_append(one, c->body);
    int rc = put_products(c, one, false);
    json_decref(one);
    (void)out;
    return rc;
}

static int get_product(ctl *c, const char *id_text, json_t **out)
{
    char *end;
    long long id = strtoll(id_text, &end, 10);
    fk_product *p = *end ? NULL : fk_product_find(c->st, id);
    if (!p)
        return fail(c, 404, "no such product");
    *out = json_pack("{s:o}", "product", fk_product_state_json(c->st, p, c->now_ms));
    return 200;
}

static int list_products(ctl *c, json_t **out)
{
    json_t *a = json_array();
    for (fk_product *p = c->st->products; p; p = p->hh.next)
        json_array_append_new(a, fk_product_state_json(c->st, p, c->now_ms));
    *out = json_pack("{s:o}", "products", a);
    return 200;
}

/* Finds body.offer_id / body.spec_id; spec optional unless need_spec. */
static int target(ctl *c, fk_product **p, fk_sku **s, bool need_spec)
{
    json_t *o = json_object_get(c->body, "offer_id"), *sp = json_object_get(c->body, "spec_id");
    *p = json_is_integer(o) ? fk_product_find(c->st, json_integer_value(o)) : NULL;
    if (!*p)
        return fail(c, 404, "no such offer_id");
    *s = json_is_string(sp) ? fk_sku_find(*p, json_string_value(sp)) : NULL;
    if (need_spec && !*s)
        return fail(c, 404, "no such spec_id in that offer");
    return 200;
}

static int do_stock(ctl *c, json_t **out)
{
    fk_product *p;
    fk_sku *s;
    int rc = target(c, &p, &s, true);
    if (rc != 200)
        return rc;
    json_t *real = json_object_get(c->body, "real"), *delta = json_object_get(c->body, "delta");
    json_t *rep = json_object_get(c->body, "reported"), *inf = json_object_get(c->body, "inflation");
    if ((real && (!json_is_integer(real) || json_integer_value(real) < 0 ||
                  json_integer_value(real) > FK_QTY_MAX)) ||
        (delta && (!json_is_integer(delta) || json_integer_value(delta) < -FK_QTY_MAX ||
                   json_integer_value(delta) > FK_QTY_MAX)) ||
        (rep && !json_is_null(rep) &&
         (!json_is_integer(rep) || json_integer_value(rep) < 0 ||
          json_integer_value(rep) > FK_QTY_MAX)) ||
        (inf && !json_is_null(inf) &&
         (!json_is_number(inf) || json_number_value(inf) <= 0 || json_number_value(inf) > 1000)))
        return fail(c, 400, "real 0.., delta, reported 0..|null, inflation (0,1000]|null");
    if (rep)
        s->reported_fixed = json_is_null(rep) ? -1 : json_integer_value(rep);
    if (inf)
        s->inflation = json_is_null(inf) ? 0 : json_number_value(inf);
    int64_t v = real ? json_integer_value(real) : s->real;
    if (delta)
        v += json_integer_value(delta);
    fk_sku_set_real(c->st, p, s, v, c->now_ms, true);
    *out = json_pack("{s:o}", "product", fk_product_state_json(c->st, p, c->now_ms));
    return 200;
}

/* ---- link changes ------------------------------------------------------- */

static void push_change(ctl *c, fk_product *p, const char *type, const char *action,
                        const char *status)
{
    char ids[24];
    if (c->st->cfg.push_requires_follow && !p->followed)
        return;
    snprintf(ids, sizeof ids, "%lld", (long long)p->offer_id);
    json_t *d = json_pack("{s:s, s:s}", "productIds", ids, "memberId", p->member_id);
    if (action)
        json_object_set_new(d, "action", json_string(action));
    if (status)
        json_object_set_new(d, "status", json_string(status));
    char when[32];
    time_t t = (time_t)(c->now_ms / 1000) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    json_object_set_new(d, "msgSendTime", json_string(when));
    fk_push_enqueue(c->st, type, p->member_id, d, 0);
}

static int link_spec_removed(ctl *c, fk_product *p, fk_sku *s)
{
    if (!s)
        return fail(c, 404, "no such spec_id in that offer");
    if (p->n_skus == 1)
        return fail(c, 400, "cannot remove the last SKU (set the product offline instead)");
    json_decref(s->attributes);
    size_t i = (size_t)(s - p->skus);
    memmove(s, s + 1, (p->n_skus - i - 1) * sizeof *s);
    p->n_skus--;
    push_change(c, p, "PRODUCT_RELATION_VIEW_PRODUCT_CHANGE", "sku_delete", NULL);
    return 200;
}

static int link_spec_added(ctl *c, fk_product *p)
{
    json_t *sj = json_object_get(c->body, "sku");
    json_t *one = json_pack("{s:I, s:[O]}", "offer_id", (json_int_t)p->offer_id, "skus", sj);
    fk_product *tmp = sj ? fk_product_from_json(one, c->now_ms, c->err, sizeof c->err) : NULL;
    json_decref(one);
    if (!tmp)
        return sj ? 400 : fail(c, 400, "spec_added needs sku {sku_id, spec_id, price_fen, real}");
    int rc = 200;
    if (p->n_skus >= FK_MAX_SKUS)
        rc = fail(c, 400, "too many SKUs");
    else if (fk_sku_find(p, tmp->skus[0].spec_id))
        rc = fail(c, 400, "spec_id exists");
    if (rc == 200) {
        fk_sku *grown = realloc(p->skus, (p->n_skus + 1) * sizeof *grown);
        assert(grown);
        p->skus = grown;
        p->skus[p->n_skus++] = tmp->skus[0];
        tmp->n_skus = 0; /* moved, attributes included */
        push_change(c, p, "PRODUCT_RELATION_VIEW_PRODUCT_CHANGE", "sku_new", NULL);
    }
    fk_product_free(tmp);
    return rc;
}

static int link_sku_modify(ctl *c, fk_product *p, fk_sku *s, bool price)
{
    if (!s)
        return fail(c, 404, "no such spec_id in that offer");
    if (price) {
        json_t *v = json_object_get(c->body, "price_fen");
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > FK_PRICE_MAX)
            return fail(c, 400, "price needs price_fen");
        s->price_fen = json_integer_value(v);
    } else {
        json_t *a = json_object_get(c->body, "attributes");
        char *t = json_is_array(a) ? json_dumps(a, JSON_COMPACT) : NULL;
        size_t tl = t ? strlen(t) : SIZE_MAX;
        free(t);
        if (tl > FK_MAX_ATTRS_BYTES)
            return fail(c, 400, "attributes needs an array (at most 4096 bytes)");
        json_decref(s->attributes);
        s->attributes = json_deep_copy(a);
    }
    push_change(c, p, "PRODUCT_RELATION_VIEW_PRODUCT_CHANGE", "sku_modify", NULL);
    return 200;
}

static int link_status(ctl *c, fk_product *p, const char *action)
{
    json_t *st = json_object_get(c->body, "status");
    const char *s = strcmp(action, "online") == 0    ? "published"
                    : strcmp(action, "offline") == 0 ? "member expired"
                                                     : NULL;
    if (json_is_string(st))
        s = json_string_value(st);
    if (!s || !*s || strlen(s) >= sizeof p->status)
        return fail(c, 400, "status needs a status string");
    snprintf(p->status, sizeof p->status, "%s", s);
    if (strcmp(action, "offline") == 0)
        push_change(c, p, "PRODUCT_RELATION_VIEW_PRODUCT_EXPIRE", NULL,
                    "RELATION_VIEW_PRODUCT_EXPIRE");
    else if (strcmp(action, "online") == 0)
        push_change(c, p, "PRODUCT_RELATION_VIEW_PRODUCT_REPOST", NULL,
                    "RELATION_VIEW_PRODUCT_REPOST");
    else
        push_change(c, p, "PRODUCT_RELATION_VIEW_PRODUCT_CHANGE", "modify", NULL);
    return 200;
}

static int do_link(ctl *c, json_t **out)
{
    fk_product *p;
    fk_sku *s;
    const char *action = json_string_value(json_object_get(c->body, "action"));
    int rc = target(c, &p, &s, false);
    if (rc != 200)
        return rc;
    if (!action)
        return fail(c, 400, "action is required");
    if (strcmp(action, "spec_removed") == 0)
        rc = link_spec_removed(c, p, s);
    else if (strcmp(action, "spec_added") == 0)
        rc = link_spec_added(c, p);
    else if (strcmp(action, "price") == 0 || strcmp(action, "attributes") == 0)
        rc = link_sku_modify(c, p, s, strcmp(action, "price") == 0);
    else if (strcmp(action, "offline") == 0 || strcmp(action, "online") == 0 ||
             strcmp(action, "status") == 0)
        rc = link_status(c, p, action);
    else
        rc = fail(c, 400, "action: spec_removed|spec_added|price|attributes|offline|online|status");
    if (rc == 200) {
        p->last_update_ms = c->now_ms;
        *out = json_pack("{s:o}", "product", fk_product_state_json(c->st, p, c->now_ms));
    }
    return rc;
}

/* ---- config and faults -------------------------------------------------- */

static int api_mask(ctl *c, json_t *list, uint32_t *mask)
{
    size_t i;
    json_t *v;
    *mask = 0;
    if (!json_is_array(list))
        return fail(c, 400, "API lists must be arrays of API names");
    json_array_foreach(list, i, v) {
        int a = json_is_string(v) ? fk_api_from_name(json_string_value(v)) : -1;
        if (a < 0)
            return fail(c, 400, "unknown API name in list");
        *mask |= 1u << a;
    }
    return 200;
}

static json_t *mask_json(uint32_t mask)
{
    json_t *a = json_array();
    for (int i = 0; i < FK_API__N; i++) {
        if (mask & (1u << i))
            json_array_append_new(a, json_string(fk_api_name((fk_api)i)));
    }
    return a;
}

static json_t *config_json(const fk_config *k)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b}",
                     "app_key", k->app_key, "app_secret", k->app_secret, "access_token",
                     k->access_token, "push_url", k->push_url, "acl_deny",
                     mask_json(k->acl_deny_mask), "lag_ms", (json_int_t)k->lag_ms, "inflation",
                     k->inflation, "latency_ms", (json_int_t)k->latency_ms, "latency_jitter_ms",
                     (json_int_t)k->latency_jitter_ms, "cancel_min_age_ms",
                     (json_int_t)k->cancel_min_age_ms, "pay_timeout_s",
                     (json_int_t)k->pay_timeout_s, "qos_limit_per_s",
                     (json_int_t)k->qos_limit_per_s, "idempotent", k->idempotent,
                     "push_requires_follow", k->push_requires_follow, "check_signature",
                     k->check_signature);
}

static int set_str(ctl *c, const char *key, char *dst, size_t cap, bool allow_empty)
{
    json_t *v = json_object_get(c->body, key);
    if (!v)
        return 200;
    if (!json_is_string(v) || strlen(json_string_value(v)) >= cap ||
        (!allow_empty && !*json_string_value(v))) {
        snprintf(c->err, sizeof c->err, "%s must be a string of %s..%zu bytes", key,
                 allow_empty ? "0" : "1", cap - 1);
        return 400;
    }
    strcpy(dst, json_string_value(v));
    return 200;
}

static int set_int(ctl *c, const char *key, int64_t lo, int64_t hi, int64_t *dst)
{
    json_t *v = json_object_get(c->body, key);
    if (!v)
        return 200;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(c->err, sizeof c->err, "%s must be an integer in %lld..%lld", key,
                 (long long)lo, (long long)hi);
        return 400;
    }
    *dst = json_integer_value(v);
    return 200;
}

static int set_bool(ctl *c, const char *key, bool *dst)
{
    json_t *v = json_object_get(c->body, key);
    if (!v)
        return 200;
    if (!json_is_boolean(v)) {
        snprintf(c->err, sizeof c->err, "%s must be true or false", key);
        return 400;
    }
    *dst = json_is_true(v);
    return 200;
}

static int set_real(ctl *c, const char *key, double lo, double hi, double *dst)
{
    json_t *v = json_object_get(c->body, key);
    if (!v)
        return 200;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        snprintf(c->err, sizeof c->err, "%s must be a number in %g..%g", key, lo, hi);
        return 400;
    }
    *dst = json_number_value(v);
    return 200;
}

static int do_config(ctl *c, json_t **out)
{
    fk_config k = c->st->cfg;
    if (c->body) {
        int rc = 200;
        json_t *acl = json_object_get(c->body, "acl_deny");
        if (set_str(c, "app_key", k.app_key, sizeof k.app_key, false) != 200 ||
            set_str(c, "app_secret", k.app_secret, sizeof k.app_secret, false) != 200 ||
            set_str(c, "access_token", k.access_token, sizeof k.access_token, false) != 200 ||
            set_str(c, "push_url", k.push_url, sizeof k.push_url, true) != 200 ||
            set_int(c, "lag_ms", 0, 86400000, &k.lag_ms) != 200 ||
            set_real(c, "inflation", 0.001, 1000, &k.inflation) != 200 ||
            set_int(c, "latency_ms", 0, 600000, &k.latency_ms) != 200 ||
            set_int(c, "latency_jitter_ms", 0, 600000, &k.latency_jitter_ms) != 200 ||
            set_int(c, "cancel_min_age_ms", 0, 86400000, &k.cancel_min_age_ms) != 200 ||
            set_int(c, "pay_timeout_s", 1, 30 * 86400, &k.pay_timeout_s) != 200 ||
            set_int(c, "qos_limit_per_s", 0, 10000000, &k.qos_limit_per_s) != 200 ||
            set_bool(c, "idempotent", &k.idempotent) != 200 ||
            set_bool(c, "push_requires_follow", &k.push_requires_follow) != 200 ||
            set_bool(c, "check_signature", &k.check_signature) != 200 ||
            (acl && api_mask(c, acl, &k.acl_deny_mask) != 200))
            rc = 400;
        if (rc != 200)
            return rc;
        if (k.qos_limit_per_s != c->st->cfg.qos_limit_per_s) {
            c->st->qos_tokens = (double)k.qos_limit_per_s;
            c->st->qos_at_ms = c->now_ms;
        }
        c->st->cfg = k;
    }
    *out = json_pack("{s:o}", "config", config_json(&c->st->cfg));
    return 200;
}

static int fault_kind(const char *name)
{
    for (int i = 1; i < FK_FAULT__N; i++) {
        if (strcmp(fault_names[i], name) == 0)
            return i;
    }
    return -1;
}

static json_t *faults_json(const fk_faults *f)
{
    json_t *rates = json_object(), *next = json_array();
    for (int i = 1; i < FK_FAULT__N; i++)
        json_object_set_new(rates, fault_names[i], json_real(f->rate[i]));
    for (size_t i = 0; i < f->next_n; i++)
        json_array_append_new(next, json_pack("{s:s, s:I}", "kind", fault_names[f->next[i].kind],
                                              "count", (json_int_t)f->next[i].count));
    return json_pack("{s:o, s:i, s:I, s:o, s:o, s:b, s:b}", "rates", rates, "http5xx_status",
                     f->http5xx_status, "timeout_hold_ms", (json_int_t)f->timeout_hold_ms, "apis",
                     mask_json(f->api_mask), "next", next, "refuse", f->refuse, "keyed",
                     f->keyed);
}

static int faults_next(ctl *c, json_t *list, fk_faults *f)
{
    size_t i;
    json_t *e;
    if (!json_is_array(list) || json_array_size(list) > FK_NEXT_MAX)
        return fail(c, 400, "next must be an array of at most 16 {kind, count}");
    f->next_n = 0;
    json_array_foreach(list, i, e) {
        json_t *cnt = json_object_get(e, "count");
        int k = fault_kind(json_string_value(json_object_get(e, "kind")) ?: "");
        if (k < 0 || (cnt && (!json_is_integer(cnt) || json_integer_value(cnt) < 1 ||
                              json_integer_value(cnt) > 1000000)))
            return fail(c, 400, "next: kind qos|401|5xx|reset|timeout|garbage, count 1..1000000");
        f->next[f->next_n].kind = (fk_fault)k;
        f->next[f->next_n++].count = cnt ? json_integer_value(cnt) : 1;
    }
    return 200;
}

static int faults_rates(ctl *c, json_t *rates, fk_faults *f)
{
    const char *k;
    json_t *v;
    if (!json_is_object(rates))
        return fail(c, 400, "rates must be an object {kind: probability}");
    json_object_foreach(rates, k, v) {
        int kind = fault_kind(k);
        if (kind < 0 || !json_is_number(v) || json_number_value(v) < 0 ||
            json_number_value(v) > 1)
            return fail(c, 400, "rates: qos|401|5xx|reset|timeout|garbage -> 0..1");
        f->rate[kind] = json_number_value(v);
    }
    return 200;
}

static int do_faults(ctl *c, json_t **out)
{
    fk_state *st = c->st;
    fk_faults f = st->faults;
    if (c->body) {
        json_t *v;
        int64_t status = f.http5xx_status, seed = -1;
        if (json_is_true(json_object_get(c->body, "clear"))) {
            memset(f.rate, 0, sizeof f.rate);
            f.next_n = 0;
            f.api_mask = 0;
            f.refuse = false;
        }
        if (((v = json_object_get(c->body, "rates")) && faults_rates(c, v, &f) != 200) ||
            ((v = json_object_get(c->body, "next")) && faults_next(c, v, &f) != 200) ||
            ((v = json_object_get(c->body, "apis")) && api_mask(c, v, &f.api_mask) != 200))
            return 400;
        if (set_int(c, "http5xx_status", 500, 599, &status) != 200 ||
            set_int(c, "timeout_hold_ms", 0, 600000, &f.timeout_hold_ms) != 200 ||
            set_int(c, "seed", 0, INT64_MAX, &seed) != 200 ||
            set_bool(c, "refuse", &f.refuse) != 200 || set_bool(c, "keyed", &f.keyed) != 200)
            return 400;
        f.http5xx_status = (int)status;
        if (f.refuse && !st->faults.refuse)
            fk_api_unlisten(st);
        if (!f.refuse && st->faults.refuse && fk_api_listen(st) != 0)
            return fail(c, 500, "could not listen again on the API port");
        if (seed >= 0) {
            st->rng = (uint64_t)seed * 2654435761u + 1;
            st->seed = (uint64_t)seed;
            fk_keyed_clear(st);
        }
        st->faults = f;
    }
    *out = json_pack("{s:o}", "faults", faults_json(&st->faults));
    return 200;
}

/* ---- counters, orders, push, reset ------------------------------------- */

static json_t *per_api(const int64_t *v)
{
    json_t *o = json_object();
    for (int i = 0; i < FK_API__N; i++)
        json_object_set_new(o, fk_api_name((fk_api)i), json_integer(v[i]));
    return o;
}

static int do_counters(ctl *c, json_t **out)
{
    fk_counters *k = &c->st->counters;
    json_t *faults = json_object(), *outs = json_object();
    for (int i = 1; i < FK_FAULT__N; i++)
        json_object_set_new(faults, fault_names[i], json_integer(k->faults[i]));
    for (fk_outc *o = c->st->outcs; o; o = o->hh.next)
        json_object_set_new(outs, o->out_order_id,
                            json_pack("{s:I, s:I}", "create_calls", (json_int_t)o->create_calls,
                                      "orders", (json_int_t)o->orders));
    *out = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:O, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:o}",
        "calls", per_api(k->calls), "succeeded", per_api(k->ok), "business_errors",
        per_api(k->business_errors), "gateway_errors", per_api(k->gateway_errors), "faults",
        faults, "codes", k->by_code, "unknown_api", (json_int_t)k->unknown_api, "orders_created",
        (json_int_t)k->orders_created, "orders", (json_int_t)c->st->n_orders, "products",
        (json_int_t)c->st->n_products, "pending_replies", (json_int_t)c->st->n_pending, "push",
        "queued", (json_int_t)k->push_queued, "sent", (json_int_t)k->push_sent, "ok",
        (json_int_t)k->push_ok, "failed", (json_int_t)k->push_failed, "dropped",
        (json_int_t)k->push_dropped, "waiting", (json_int_t)c->st->n_push, "out_orders", outs);
    return 200;
}

static int do_orders(ctl *c, json_t **out)
{
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(c->req));
    json_t *list = json_array();
    if (evhttp_parse_query_str(query ? query : "", &q) != 0) {
        json_decref(list);
        return fail(c, 400, "bad query string");
    }
    const char *want = evhttp_find_header(&q, "out_order_id");
    for (fk_order *o = c->st->orders; o; o = o->hh.next) {
        if (want && strcmp(want, o->out_order_id) != 0)
            continue;
        json_array_append_new(list, fk_order_json(c->st, o));
        if (json_array_size(list) >= 10000)
            break;
    }
    evhttp_clear_headers(&q);
    *out = json_pack("{s:o}", "orders", list);
    return 200;
}

static int do_order_status(ctl *c, json_t **out)
{
    const char *id = json_string_value(json_object_get(c->body, "order_id"));
    const char *status = json_string_value(json_object_get(c->body, "status"));
    char *end = NULL;
    unsigned long long n = id ? strtoull(id, &end, 10) : 0;
    fk_order *o = id && !*end ? fk_order_find(c->st, n) : NULL;
    if (!o)
        return fail(c, 404, "no such order_id (a decimal string)");
    if (!status || !*status || strlen(status) >= sizeof o->status)
        return fail(c, 400, "status is required");
    if (strcmp(status, "cancel") == 0) {
        if (strcmp(o->status, "waitbuyerpay") != 0)
            return fail(c, 400, "only unpaid orders can be closed");
        fk_order_close(c->st, o, "sellerGoodsLack", "CLOSE_TRADE_BY_SELLER", c->now_ms);
    } else {
        snprintf(o->status, sizeof o->status, "%s", status);
        o->modified_ms = c->now_ms;
    }
    *out = json_pack("{s:o}", "order", fk_order_json(c->st, o));
    return 200;
}

static int do_push(ctl *c, json_t **out)
{
    const char *type = json_string_value(json_object_get(c->body, "type"));
    const char *user = json_string_value(json_object_get(c->body, "user_info"));
    json_t *data = json_object_get(c->body, "data");
    int64_t delay = 0;
    (void)out;
    if (!type || !*type || strlen(type) > FK_TEXT_MAX || !json_is_object(data) ||
        (user && strlen(user) > FK_ID_MAX))
        return fail(c, 400, "push needs type (string) and data (object)");
    if (set_int(c, "delay_ms", 0, 3600000, &delay) != 200)
        return 400;
    if (fk_push_enqueue(c->st, type, user ? user : "b2b-fakeseller", json_incref(data), delay) !=
        0)
        return fail(c, 400, "no push_url configured or push queue full");
    return 200;
}

static int do_reset(ctl *c)
{
    fk_state *st = c->st;
    fk_model_clear(st);
    fk_push_clear(st);
    json_decref(st->counters.by_code);
    memset(&st->counters, 0, sizeof st->counters);
    st->counters.by_code = json_object();
    st->cfg = st->cfg0;
    if (st->faults.refuse && fk_api_listen(st) != 0)
        return fail(c, 500, "could not listen again on the API port");
    memset(&st->faults, 0, sizeof st->faults);
    st->faults.http5xx_status = 503;
    st->faults.timeout_hold_ms = 30000;
    st->qos_tokens = 0;
    st->seed = 0;
    fk_keyed_clear(st);
    st->clock_manual = false;
    st->clock_ms = 0;
    return 200;
}

/* GET /clock; POST /clock {"now_ms": N} sets the manual clock (never
 * backwards: the lag history is ordered by time), {"manual": false} goes
 * back to the wall clock. */
static int do_clock(ctl *c, json_t **out)
{
    fk_state *st = c->st;
    if (c->body) {
        json_t *m = json_object_get(c->body, "manual");
        json_t *n = json_object_get(c->body, "now_ms");
        if (m && !json_is_boolean(m))
            return fail(c, 400, "manual must be a boolean");
        if (m && json_is_false(m)) {
            if (n)
                return fail(c, 400, "now_ms needs the manual clock");
            st->clock_manual = false;
        } else if (n) {
            if (!json_is_integer(n) || json_integer_value(n) < 0 ||
                json_integer_value(n) > INT64_C(1) << 50)
                return fail(c, 400, "now_ms must be an integer 0..2^50");
            int64_t v = json_integer_value(n);
            if (st->clock_manual && v < st->clock_ms)
                return fail(c, 400, "now_ms may not go backwards (POST /reset first)");
            st->clock_manual = true;
            st->clock_ms = v;
        } else {
            return fail(c, 400, "give now_ms, or manual: false");
        }
    }
    *out = json_pack("{s:b, s:I}", "manual", st->clock_manual, "now_ms",
                     (json_int_t)fk_model_now_ms(st));
    return 200;
}

/* ---- routing ------------------------------------------------------------ */

static int route(ctl *c, json_t **out)
{
    bool get = c->method == EVHTTP_REQ_GET, post = !get;
    const char *p = c->path;
    if (get && strcmp(p, "/health") == 0) {
        *out = json_pack("{s:i, s:i}", "api_port", c->st->api_port, "control_port",
                         c->st->ctl_port);
        return 200;
    }
    if (post && strcmp(p, "/reset") == 0)
        return do_reset(c);
    if (post && strcmp(p, "/catalogue") == 0)
        return put_products(c, json_object_get(c->body, "products"), true);
    if (post && strcmp(p, "/products") == 0)
        return do_products(c, out);
    if (get && strcmp(p, "/products") == 0)
        return list_products(c, out);
    if (get && strncmp(p, "/products/", 10) == 0)
        return get_product(c, p + 10, out);
    if (post && strcmp(p, "/stock") == 0)
        return do_stock(c, out);
    if (post && strcmp(p, "/link") == 0)
        return do_link(c, out);
    if (strcmp(p, "/config") == 0)
        return do_config(c, out);
    if (strcmp(p, "/clock") == 0)
        return do_clock(c, out);
    if (strcmp(p, "/faults") == 0)
        return do_faults(c, out);
    if (get && strcmp(p, "/counters") == 0)
        return do_counters(c, out);
    if (get && strcmp(p, "/orders") == 0)
        return do_orders(c, out);
    if (post && strcmp(p, "/order") == 0)
        return do_order_status(c, out);
    if (post && strcmp(p, "/push") == 0)
        return do_push(c, out);
    return fail(c, 404, "unknown control path or method");
}

void fk_control_handle(struct evhttp_request *req, void *arg)
{
    ctl c = {.st = arg, .req = req, .method = evhttp_request_get_command(req),
             .now_ms = fk_model_now_ms(arg)};
    json_t *out = NULL;
    int status;
    c.path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!c.path)
        c.path = "";
    if (c.method != EVHTTP_REQ_GET) {
        size_t len;
        json_error_t je;
        char *text = fk_read_body(req, FK_CTL_BODY_MAX, &len);
        c.body = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &je) : NULL;
        free(text);
        if (!json_is_object(c.body)) {
            json_decref(c.body);
            status = fail(&c, 400, "the body must be a JSON object");
            answer(&c, status, NULL);
            return;
        }
    }
    status = route(&c, &out);
    if (status != 200) {
        json_decref(out);
        out = NULL;
    }
    json_decref(c.body);
    answer(&c, status, out);
}
