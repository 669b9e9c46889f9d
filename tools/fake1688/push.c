/* push.c — message push to the configured URL, one message at a time.
 *
 * Framing (reference §8, marked unverified there): POST, form fields
 * `message` (the JSON envelope {msgId, gmtBorn, type, userInfo, data}) and
 * `_aop_signature` = the params-only signature over "message" + JSON with
 * the app secret. The receiver answers "success" (any 2xx counts as ok).
 * A failed delivery (no 2xx) is tried again 200 ms later, FK_PUSH_ATTEMPTS
 * times in all, then counted as failed and dropped.
 */
#include "fake1688.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

struct fk_push {
    fk_push *next;
    int64_t due_ms;
    char type[FK_TEXT_MAX + 1];
    char user[FK_ID_MAX + 1];
    json_t *data;            /* owned; NULL for an inventory message */
    int64_t offer_id, sku_id, delta;
    char *text;              /* owned; the envelope, built at the first attempt */
    int attempts;
};

static void push_free(fk_push *m)
{
    json_decref(m->data);
    free(m->text);
    free(m);
}

static void on_push_timer(evutil_socket_t fd, short what, void *arg);

void fk_push_init(fk_state *st)
{
    st->push_timer = evtimer_new(st->base, on_push_timer, st);
    assert(st->push_timer);
}

void fk_push_clear(fk_state *st)
{
    while (st->push_head) {
        fk_push *m = st->push_head;
        st->push_head = m->next;
        push_free(m);
    }
    st->push_tail = NULL;
    st->n_push = 0;
    if (st->push_timer)
        evtimer_del(st->push_timer);
    if (st->push_conn) {
        struct evhttp_connection *c = st->push_conn;
        st->push_conn = NULL;
        evhttp_connection_free(c);
    }
    if (st->push_sending) {
        push_free(st->push_sending);
        st->push_sending = NULL;
    }
}

static void kick(fk_state *st)
{
    if (st->push_sending || !st->push_head)
        return;
    int64_t d = st->push_head->due_ms - fk_now_ms();
    if (d < 0)
        d = 0;
    struct timeval tv = {(time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000)};
    evtimer_add(st->push_timer, &tv);
}

static int enqueue(fk_state *st, fk_push *m)
{
    if (!st->cfg.push_url[0] || st->n_push >= FK_PUSH_QUEUE_MAX) {
        /* Without a URL there is nobody to tell: not a drop. */
        if (st->cfg.push_url[0])
            st->counters.push_dropped++;
        push_free(m);
        return -1;
    }
    m->next = NULL;
    /* Ordered by due time; nearly always an append. */
    if (!st->push_tail || st->push_tail->due_ms <= m->due_ms) {
        if (st->push_tail)
            st->push_tail->next = m;
        else
            st->push_head = m;
        st->push_tail = m;
    } else {
        fk_push **pp = &st->push_head;
        while ((*pp)->due_ms <= m->due_ms)
            pp = &(*pp)->next;
        m->next = *pp;
        *pp = m;
    }
    st->n_push++;
    st->counters.push_queued++;
    evtimer_del(st->push_timer);
    kick(st);
    return 0;
}

int fk_push_enqueue(fk_state *st, const char *type, const char *user_info, json_t *data,
                    int64_t delay_ms)
{
    fk_push *m = calloc(1, sizeof *m);
    assert(m && strlen(type) <= FK_TEXT_MAX && strlen(user_info) <= FK_ID_MAX);
    m->due_ms = fk_now_ms() + delay_ms;
    strcpy(m->type, type);
    strcpy(m->user, user_info);
    m->data = data;
    return enqueue(st, m);
}

void fk_push_inventory(fk_state *st, int64_t offer_id, int64_t sku_id, int64_t delta,
                       int64_t delay_ms)
{
    fk_push *m = calloc(1, sizeof *m);
    assert(m);
    m->due_ms = fk_now_ms() + delay_ms;
    strcpy(m->type, "PRODUCT_PRODUCT_INVENTORY_CHANGE");
    m->offer_id = offer_id;
    m->sku_id = sku_id;
    m->delta = delta;
    enqueue(st, m);
}

/* Figures are read now, at delivery: they show what is reported now. */
static json_t *inventory_data(fk_state *st, fk_push *m, int64_t now_ms)
{
    fk_product *p = fk_product_find(st, m->offer_id);
    fk_sku *s = NULL;
    for (size_t i = 0; p && i < p->n_skus; i++) {
        if (p->skus[i].sku_id == m->sku_id)
            s = &p->skus[i];
    }
    if (!s)
        return NULL;
    snprintf(m->user, sizeof m->user, "%s", p->member_id);
    return json_pack("{s:[{s:I, s:I, s:I, s:I, s:I, s:I}]}", "OfferInventoryChangeList",
                     "offerId", (json_int_t)p->offer_id, "offerOnSale",
                     (json_int_t)fk_product_reported(st, p, now_ms), "skuId",
                     (json_int_t)s->sku_id, "skuOnSale",
                     (json_int_t)fk_sku_reported(st, s, now_ms), "quantity",
                     (json_int_t)m->delta, "bizTime", (json_int_t)now_ms);
}

static void on_push_done(struct evhttp_request *req, void *arg)
{
    fk_state *st = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    fk_push *m = st->push_sending;
    if (!m)
        return; /* cleared while in flight */
    st->push_sending = NULL;
    if (code >= 200 && code < 300) {
        st->counters.push_ok++;
        push_free(m);
    } else if (m->attempts >= FK_PUSH_ATTEMPTS) {
        st->counters.push_failed++;
        push_free(m);
    } else {
        /* Back to the queue, 200 ms on; the queue is bounded, so it may go. */
        m->due_ms = fk_now_ms() + 200;
        if (enqueue(st, m) == 0)
            st->counters.push_queued--; /* the same message, not a new one */
    }
    kick(st);
}

static struct evhttp_connection *connection_for(fk_state *st, const char *host, int port)
{
    if (st->push_conn && st->push_conn_port == port && strcmp(st->push_conn_host, host) == 0)
        return st->push_conn;
    if (st->push_conn)
        evhttp_connection_free(st->push_conn);
    st->push_conn = evhttp_connection_base_new(st->base, NULL, host, (unsigned short)port);
    if (!st->push_conn)
        return NULL;
    evhttp_connection_set_timeout(st->push_conn, 5);
    evhttp_connection_set_retries(st->push_conn, 0);
    snprintf(st->push_conn_host, sizeof st->push_conn_host, "%s", host);
    st->push_conn_port = port;
    return st->push_conn;
}

static bool send_message(fk_state *st, const char *text)
{
    struct evhttp_uri *u = evhttp_uri_parse(st->cfg.push_url);
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    int port = u && evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    struct evhttp_connection *conn = host ? connection_for(st, host, port) : NULL;
    bool ok = false;
    if (conn) {
        char target[FK_TEXT_MAX * 2 + 2], sig[SUPPLIER_SIGN_HEX_LEN + 1];
        const char *path = evhttp_uri_get_path(u), *q = evhttp_uri_get_query(u);
        snprintf(target, sizeof target, "%s%s%s", path && *path ? path : "/", q ? "?" : "",
                 q ? q : "");
        supplier_param p[2] = {{"message", 7, text, strlen(text)}, {"_aop_signature", 14, sig, 0}};
        supplier_sign(st->cfg.app_secret, strlen(st->cfg.app_secret), "", p, 1, sig);
        p[1].value_len = strlen(sig);
        size_t need = supplier_form_build(NULL, 0, p, 2);
        char *body = malloc(need + 1);
        assert(body);
        supplier_form_build(body, need + 1, p, 2);
        struct evhttp_request *req = evhttp_request_new(on_push_done, st);
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Host", host);
        /* A fresh connection per push: reusing one the receiver is closing
         * loses the message in a race. Pushes are rare; connects are cheap. */
        evhttp_add_header(h, "Connection", "close");
        evhttp_add_header(h, "Content-Type", "application/x-www-form-urlencoded; charset=UTF-8");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, need);
        free(body);
        ok = evhttp_make_request(conn, req, EVHTTP_REQ_POST, target) == 0;
    }
    if (u)
        evhttp_uri_free(u);
    return ok;
}

static void on_push_timer(evutil_socket_t fd, short what, void *arg)
{
    fk_state *st = arg;
    int64_t now = fk_now_ms();
    (void)fd;
    (void)what;
    while (st->push_head && !st->push_sending && st->push_head->due_ms <= now) {
        fk_push *m = st->push_head;
        st->push_head = m->next;
        if (!st->push_head)
            st->push_tail = NULL;
        st->n_push--;
        if (!m->text) {
            json_t *data = m->data ? json_incref(m->data) : inventory_data(st, m, now);
            if (!data || !st->cfg.push_url[0]) {
                json_decref(data);
                st->counters.push_dropped++;
                push_free(m);
                continue;
            }
            json_t *env = json_pack("{s:I, s:I, s:s, s:s, s:o}", "msgId",
                                    (json_int_t)st->next_msg_id++, "gmtBorn", (json_int_t)now,
                                    "type", m->type, "userInfo", m->user, "data", data);
            m->text = json_dumps(env, JSON_COMPACT);
            json_decref(env);
            assert(m->text);
        }
        m->attempts++;
        st->counters.push_sent++;
        if (st->cfg.push_url[0] && send_message(st, m->text)) {
            st->push_sending = m;
        } else {
            st->counters.push_failed++;
            push_free(m);
        }
    }
    kick(st);
}
