/* sn_fake.c — fake1688's control API and its signed gateway (sn_fake.h). */
#include "sn_fake.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "stockd/supplier_sign.h"

typedef struct buf {
    char *p;
    size_t n, cap;
    bool over;
} buf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    buf *b = arg;
    size_t n = size * nmemb;
    if (b->n + n + 1 > SN_FAKE_REPLY_MAX) {
        b->over = true;
        return 0;                    /* curl stops: the reply is too large */
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* One request on a kept-alive handle; *status = HTTP status, 0 on transport
 * failure (f->err says why). The caller frees b->p. */
static void http(sn_fake *f, CURL *h, const char *method, const char *url, const char *body,
                 const char *ctype, buf *b, long *status)
{
    struct curl_slist *hdr = NULL;
    char ct[96];
    *status = 0;
    memset(b, 0, sizeof *b);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)SN_FAKE_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hdr = curl_slist_append(hdr, ct);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    if (rc != CURLE_OK) {
        snprintf(f->err, sizeof f->err, "%s %s: %s%s", method, url, curl_easy_strerror(rc),
                 b->over ? " (reply too large)" : "");
        return;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
}

int sn_fake_ctl(sn_fake *f, const char *method, const char *path, json_t *body, json_t **out)
{
    char url[512];
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (out)
        *out = NULL;
    snprintf(url, sizeof url, "%s%s", f->ctl_url, path);
    buf b;
    long status;
    http(f, f->ctl, method, url, text ? text : "{}", "application/json", &b, &status);
    free(text);
    int rc = -1;
    json_t *j = status ? json_loadb(b.p ? b.p : "", b.n, 0, NULL) : NULL;
    if (status == 200 && json_is_true(json_object_get(j, "ok"))) {
        rc = 0;
        if (out)
            *out = json_incref(j);
    } else if (status) {
        const char *e = json_string_value(json_object_get(j, "error"));
        snprintf(f->err, sizeof f->err, "fake1688 %s %.80s: HTTP %ld: %.100s", method, path, status,
                 e ? e : "(no error text)");
    }
    json_decref(j);
    free(b.p);
    return rc;
}

int sn_fake_open(sn_fake *f, const char *ctl_url, const char *app_key, const char *secret,
                 const char *token, char *err, size_t err_len)
{
    memset(f, 0, sizeof *f);
    if (strlen(ctl_url) >= sizeof f->ctl_url || strlen(app_key) >= sizeof f->app_key ||
        strlen(secret) >= sizeof f->secret || strlen(token) >= sizeof f->token) {
        snprintf(err, err_len, "fake1688: URL or credentials too long");
        return -1;
    }
    snprintf(f->ctl_url, sizeof f->ctl_url, "%s", ctl_url);
    size_t n = strlen(f->ctl_url);
    if (n > 0 && f->ctl_url[n - 1] == '/')
        f->ctl_url[n - 1] = '\0';
    snprintf(f->app_key, sizeof f->app_key, "%s", app_key);
    snprintf(f->secret, sizeof f->secret, "%s", secret);
    snprintf(f->token, sizeof f->token, "%s", token);
    f->ctl = curl_easy_init();
    f->api = curl_easy_init();
    json_t *h = NULL;
    if (f->ctl == NULL || f->api == NULL) {
        snprintf(f->err, sizeof f->err, "curl_easy_init failed");
    } else if (sn_fake_ctl(f, "GET", "/health", NULL, &h) == 0) {
        json_int_t port = json_integer_value(json_object_get(h, "api_port"));
        json_decref(h);
        const char *host = strstr(f->ctl_url, "://");
        const char *colon = host ? strrchr(host + 3, ':') : NULL;
        if (port > 0 && port < 65536 && colon) {
            snprintf(f->api_url, sizeof f->api_url, "%.*s:%d", (int)(colon - f->ctl_url),
                     f->ctl_url, (int)port);
            return 0;
        }
        snprintf(f->err, sizeof f->err, "fake1688 %s: /health has no api_port", f->ctl_url);
    }
    snprintf(err, err_len, "%s", f->err);
    sn_fake_close(f);
    return -1;
}

void sn_fake_close(sn_fake *f)
{
    if (f->ctl)
        curl_easy_cleanup(f->ctl);
    if (f->api)
        curl_easy_cleanup(f->api);
    f->ctl = f->api = NULL;
}

/* A signed gateway call; kv holds n key/value pairs. The answer's JSON in
 * *out (NULL when it was not JSON); *status the HTTP status (0: transport). */
static void api_call(sn_fake *f, const char *ns, const char *api, const char *const *kv, size_t n,
                     json_t **out, long *status)
{
    supplier_param p[SUPPLIER_SIGN_MAX_PARAMS];
    char path[256], url[600], sig[SUPPLIER_SIGN_HEX_LEN + 1], body[8192];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        p[k++] = (supplier_param){kv[2 * i], strlen(kv[2 * i]), kv[2 * i + 1], strlen(kv[2 * i + 1])};
    p[k++] = (supplier_param){"access_token", 12, f->token, strlen(f->token)};
    snprintf(path, sizeof path, "param2/1/%s/%s/%s", ns, api, f->app_key);
    *out = NULL;
    *status = 0;
    if (supplier_sign(f->secret, strlen(f->secret), path, p, k, sig) != 0) {
        snprintf(f->err, sizeof f->err, "signing %s failed", api);
        return;
    }
    p[k++] = (supplier_param){"_aop_signature", 14, sig, SUPPLIER_SIGN_HEX_LEN};
    if (supplier_form_build(body, sizeof body, p, k) >= sizeof body) {
        snprintf(f->err, sizeof f->err, "%s: request too large", api);
        return;
    }
    snprintf(url, sizeof url, "%s/openapi/%s", f->api_url, path);
    buf b;
    f->api_calls++;
    http(f, f->api, "POST", url, body, "application/x-www-form-urlencoded", &b, status);
    if (*status)
        *out = json_loadb(b.p ? b.p : "", b.n, 0, NULL);
    free(b.p);
}

static sn_call_rc gateway_refusal(json_t *j, long status, char *code, size_t len)
{
    const char *c = json_string_value(json_object_get(j, "error_code"));
    snprintf(code, len, "%s", c ? c : status ? "http_error" : "transport");
    /* An unknown app, a bad signature or an ACL refusal will not pass on a
     * second try; limits, 5xx and transport failures may. */
    if (status == 400 && c && strcmp(c, "gw.QosAppFrequencyLimit") != 0)
        return SN_CALL_REFUSED;
    return SN_CALL_RETRY;
}

sn_call_rc sn_fake_product(sn_fake *f, int64_t offer_id, sn_product *out, char *code, size_t len)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, offer_id);
    const char *kv[] = {"productID", id, "webSite", "1688"};
    json_t *j;
    long status;
    memset(out, 0, sizeof *out);
    api_call(f, "com.alibaba.product", "alibaba.product.get", kv, 2, &j, &status);
    sn_call_rc rc;
    if (status != 200 || !json_is_object(j)) {
        rc = gateway_refusal(j, status, code, len);
    } else if (!json_is_true(json_object_get(j, "success"))) {
        snprintf(code, len, "not_found");
        rc = SN_CALL_OK;              /* the offer is gone: found stays false */
    } else {
        json_t *info = json_object_get(j, "productInfo");
        const char *st = json_string_value(json_object_get(info, "status"));
        out->found = true;
        out->published = st && strcmp(st, "published") == 0;
        json_t *skus = json_object_get(info, "skuInfos"), *s;
        size_t i;
        json_array_foreach(skus, i, s) {
            if (out->n == 8)
                break;
            const char *spec = json_string_value(json_object_get(s, "specId"));
            snprintf(out->spec_id[out->n], sizeof out->spec_id[0], "%s", spec ? spec : "");
            out->reported[out->n] = json_integer_value(json_object_get(s, "amountOnSale"));
            out->price_fen[out->n] = llround(json_number_value(json_object_get(s, "price")) * 100);
            out->n++;
        }
        code[0] = '\0';
        rc = SN_CALL_OK;
    }
    json_decref(j);
    return rc;
}

sn_call_rc sn_fake_order(sn_fake *f, bool create, int64_t offer_id, const char *spec_id,
                         int64_t qty, const char *out_order_id, char *code, size_t len)
{
    char cargo[256];
    snprintf(cargo, sizeof cargo, "[{\"offerId\":%" PRId64 ",\"specId\":\"%s\",\"quantity\":%" PRId64 "}]",
             offer_id, spec_id, qty);
    const char *kv[] = {"addressParam", "{\"addressId\":1}", "cargoParamList", cargo,
                        "outOrderId", out_order_id ? out_order_id : ""};
    json_t *j;
    long status;
    api_call(f, "com.alibaba.trade",
             create ? "alibaba.trade.fastCreateOrder" : "alibaba.createOrder.preview", kv,
             create && out_order_id ? 3 : 2, &j, &status);
    sn_call_rc rc;
    if (status != 200 || !json_is_object(j)) {
        rc = gateway_refusal(j, status, code, len);
    } else if (json_is_true(json_object_get(j, "success"))) {
        code[0] = '\0';
        rc = SN_CALL_OK;
    } else {
        /* preview: errorCode; create: result.failedOfferList[0].errorCode, or code */
        const char *c = json_string_value(json_object_get(j, "errorCode"));
        json_t *failed = json_object_get(json_object_get(j, "result"), "failedOfferList");
        if (!c)
            c = json_string_value(json_object_get(json_array_get(failed, 0), "errorCode"));
        if (!c)
            c = json_string_value(json_object_get(j, "code"));
        snprintf(code, len, "%s", c ? c : "unknown");
        rc = SN_CALL_REFUSED;
    }
    json_decref(j);
    return rc;
}

int64_t sn_fake_orderable(sn_fake *f, int64_t offer_id, const char *spec_id)
{
    char path[64];
    json_t *j;
    snprintf(path, sizeof path, "/products/%" PRId64, offer_id);
    if (sn_fake_ctl(f, "GET", path, NULL, &j) != 0)
        return -1;
    json_t *p = json_object_get(j, "product"), *s;
    const char *st = json_string_value(json_object_get(p, "status"));
    int64_t real = 0;
    size_t i;
    if (st && strcmp(st, "published") == 0 && json_is_true(json_object_get(p, "support_online_trade"))) {
        json_array_foreach(json_object_get(p, "skus"), i, s) {
            const char *spec = json_string_value(json_object_get(s, "spec_id"));
            if (spec && strcmp(spec, spec_id) == 0)
                real = json_integer_value(json_object_get(s, "real"));
        }
    }
    json_decref(j);
    return real;
}

int sn_fake_clock(sn_fake *f, int64_t now_ms)
{
    return sn_fake_ctl(f, "POST", "/clock", json_pack("{s:I}", "now_ms", (json_int_t)now_ms), NULL);
}

int64_t sn_fake_duplicates(sn_fake *f)
{
    json_t *j, *v;
    const char *k;
    if (sn_fake_ctl(f, "GET", "/counters", NULL, &j) != 0)
        return -1;
    int64_t dup = 0;
    json_object_foreach(json_object_get(j, "out_orders"), k, v)
        dup += json_integer_value(json_object_get(v, "orders")) > 1;
    json_decref(j);
    return dup;
}
