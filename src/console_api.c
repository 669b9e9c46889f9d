/* console_api.c — the console's JSON API (console_int.h): live open
 * alerts from MariaDB, reserve and refusal rates, a SKU's and a supplier's
 * views, and the actions, each through the RPC path of the instance that
 * owns what it changes. */
#include "stockd/console_int.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/rpc_parse.h"
#include "stockd/stats.h"


/* ------------------------------------------------------------ rates */

void cs_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    console *c = arg;
    stats_snapshot *m = malloc(sizeof *m);  /* large: not on the stack */
    if (!m)
        return;
    server_stats_get(c->srv, m);
    rate_sample x = {.t_ms = clock_wall_ms()};
    for (uint32_t i = 0; i < m->n_methods; i++) {
        if (!m->methods[i].name || strcmp(m->methods[i].name, "reserve") != 0)
            continue;
        for (uint32_t r = 0; r < m->n_results; r++) {
            if (r == ENG_OK)
                x.ok += m->methods[i].results[r];
            else
                x.refused += m->methods[i].results[r];
        }
    }
    free(m);
    c->samples[c->samples_head] = x;
    c->samples_head = (c->samples_head + 1) % CONSOLE_RATE_SAMPLES;
    if (c->n_samples < CONSOLE_RATE_SAMPLES)
        c->n_samples++;
}

/* [[t_ms, reserved/s, refused/s], ...] over the last minute, oldest first. */
static json_t *rates_json(const console *c)
{
    json_t *a = json_array();
    uint32_t n = c->n_samples < 61 ? c->n_samples : 61;
    for (uint32_t i = 1; a && i < n; i++) {
        const rate_sample *prev = &c->samples[(c->samples_head + CONSOLE_RATE_SAMPLES - n + i - 1) %
                                              CONSOLE_RATE_SAMPLES];
        const rate_sample *cur = &c->samples[(c->samples_head + CONSOLE_RATE_SAMPLES - n + i) %
                                             CONSOLE_RATE_SAMPLES];
        double dt = (double)(cur->t_ms - prev->t_ms) / 1000.0;
        if (dt <= 0)
            dt = 1;
        json_array_append_new(a, json_pack("[I, f, f]", (json_int_t)cur->t_ms,
                                           (double)(cur->ok - prev->ok) / dt,
                                           (double)(cur->refused - prev->refused) / dt));
    }
    return a;
}

/* ------------------------------------------------------------ alerts */

/* MariaDB strings are bytes, and a reason cut to 128 bytes may end inside
 * a character: what is not UTF-8 is shown with '?' in its place (JSON
 * must be UTF-8; json_string refuses the rest). */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char buf[512];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 1 < sizeof buf;) {
        size_t len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
                   : (*p & 0xf8) == 0xf0 ? 4 : 0;
        size_t have = strnlen((const char *)p, 4);
        if (len == 0 || have < len || n + len >= sizeof buf ||
            !rpc_utf8_valid(p, len)) {
            buf[n++] = '?';
            p++;
            continue;
        }
        memcpy(buf + n, p, len);
        n += len;
        p += len;
    }
    buf[n] = '\0';
    return json_string(buf);
}

static json_t *alert_json(const store_alert *a)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_integer(a->id));
    json_object_set_new(o, "kind", json_text(a->kind));
    json_object_set_new(o, "sku", json_text(a->sku));
    json_object_set_new(o, "reason", json_text(a->reason));
    json_object_set_new(o, "at", json_integer(a->at_ms));
    if (a->order_id[0])
        json_object_set_new(o, "order_id", json_text(a->order_id));
    if (a->acked_at) {
        json_object_set_new(o, "acked_at", json_integer(a->acked_at));
        json_object_set_new(o, "acked_by", json_text(a->acked_by));
        if (a->ack_note[0])
            json_object_set_new(o, "note", json_text(a->ack_note));
    }
    return o;
}

static json_t *alerts_json(int n, const store_alert *rows)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, alert_json(&rows[i]));
    return a;
}

static void live_answer(console *c, pending *p)
{
    json_object_set_new(p->out, "node", json_string(c->cfg->node));
    json_object_set_new(p->out, "now", json_integer(clock_wall_ms()));
    json_object_set(p->out, "alerts", c->alerts ? c->alerts : json_null());
    json_object_set_new(p->out, "alerts_at", json_integer(c->alerts_at_ms));
    if (c->alerts_error[0])
        json_object_set_new(p->out, "alerts_error", json_string(c->alerts_error));
    json_object_set_new(p->out, "rates", rates_json(c));
    p->waiting = 1;
    cs_pending_done(p);
}

static void alerts_answer_waiters(console *c)
{
    pending *w = c->waiters;
    c->waiters = NULL;
    while (w) {
        pending *next = w->next_waiter;
        live_answer(c, w);
        w = next;
    }
}

static void alerts_cb(void *arg, int result, const store_alert *rows)
{
    console *c = arg;
    c->alerts_inflight = false;
    if (result >= 0) {
        json_decref(c->alerts);
        c->alerts = alerts_json(result, rows);
        c->alerts_error[0] = '\0';
        c->alerts_mono_ms = clock_mono_ms();
        c->alerts_at_ms = clock_wall_ms();
    } else {
        snprintf(c->alerts_error, sizeof c->alerts_error,
                 "MariaDB did not answer: the alerts shown may be old");
    }
    alerts_answer_waiters(c);
}

void cs_on_live(console *c, httpd_req *req)
{
    pending *p = cs_pending_new(c, req, P_LIVE);
    if (!p)
        return;
    store *st = server_store(c->srv);
    if (c->alerts && clock_mono_ms() - c->alerts_mono_ms < CONSOLE_ALERTS_FRESH_MS) {
        live_answer(c, p);
        return;
    }
    httpd_defer(req);
    p->next_waiter = c->waiters;
    c->waiters = p;
    if (c->alerts_inflight)
        return;
    if (st && store_alerts_open(st, CONSOLE_ALERTS_MAX, alerts_cb, c) == 0) {
        c->alerts_inflight = true;
        return;
    }
    snprintf(c->alerts_error, sizeof c->alerts_error, "MariaDB queries are busy or off");
    alerts_answer_waiters(c);
}

/* ------------------------------------------------------------ SKU and supplier views */

static void stock_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                     const char *reason)
{
    sub *s = ctx;
    pending *p = s->p;
    int status;
    json_t *o = cs_rpc_outcome(error, result, reason, &status);
    json_object_set_new(p->out, "stock", o);
    cs_pending_done(p);
}

static void moves_cb(void *arg, int result, const store_sku_move *rows)
{
    sub *s = arg;
    pending *p = s->p;
    if (result < 0) {
        json_object_set_new(p->out, "moves_error", json_string("MariaDB did not answer"));
    } else {
        json_t *a = json_array();
        for (int i = 0; a && i < result; i++) {
            const store_sku_move *m = &rows[i];
            json_t *o = json_pack("{s:o, s:o, s:I, s:o, s:I, s:I, s:I}", "order_id",
                                  json_text(m->order_id), "move", json_text(m->move), "at",
                                  (json_int_t)m->at_ms, "status", json_text(m->status), "qty",
                                  (json_int_t)m->qty, "from_own", (json_int_t)m->from_own,
                                  "from_supplier", (json_int_t)m->from_supplier);
            if (o && m->reason[0])
                json_object_set_new(o, "reason", json_text(m->reason));
            if (o)
                json_array_append_new(a, o);
        }
        json_object_set_new(p->out, "moves", a);
    }
    cs_pending_done(p);
}

void cs_on_sku(console *c, httpd_req *req)
{
    char sku[ENG_ID_MAX + 1];
    if (!cs_query_param(req, "sku", sku, ENG_ID_MAX)) {
        cs_reply_error(req, 400, "invalid", "sku: 1..64 bytes of UTF-8, percent-encoded", NULL);
        return;
    }
    pending *p = cs_pending_new(c, req, P_SKU);
    if (!p)
        return;
    json_object_set_new(p->out, "sku", json_string(sku));
    httpd_defer(req);
    p->waiting = 1;  /* held until both are asked */
    char host[HOST_MAX + 1];
    int port;
    cs_self_addr(c->cfg, host, sizeof host, &port);
    params ps = {0};
    cs_p_str(&ps, "sku", sku);
    p->subs[0] = (sub){.p = p, .idx = 0};
    p->waiting++;
    if (crpc_call(c->rpc, host, port, "stock.get", cs_pack_params, &ps, CONSOLE_RPC_TIMEOUT_MS,
                  stock_cb, &p->subs[0]) != 0) {
        p->waiting--;
        json_object_set_new(p->out, "stock", json_pack("{s:s, s:s}", "error",
                                                       "too many console calls", "code", "busy"));
    }
    p->subs[1] = (sub){.p = p, .idx = 1};
    store *st = server_store(c->srv);
    p->waiting++;
    if (!st || store_sku_moves(st, sku, CONSOLE_MOVES_MAX, moves_cb, &p->subs[1]) != 0) {
        p->waiting--;
        json_object_set_new(p->out, "moves_error", json_string("MariaDB queries are busy"));
    }
    cs_pending_done(p);
}

/* One node's answer of a fan-out (supplier.get, supplier.put). */
static void node_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                    const char *reason)
{
    sub *s = ctx;
    pending *p = s->p;
    int status;
    json_t *o = cs_rpc_outcome(error, result, reason, &status);
    json_object_set_new(o, "node", json_string(s->node));
    json_array_set_new(p->nodes, (size_t)s->idx, o);
    /* An action answers with the worst status of its nodes (200 when all
     * took it); a view stays 200 and shows each node's error. */
    if (p->kind == P_FANOUT && status > p->status)
        p->status = status;
    cs_pending_done(p);
}

static void supplier_alerts_cb(void *arg, int result, const store_alert *rows)
{
    sub *s = arg;
    pending *p = s->p;
    if (result < 0)
        json_object_set_new(p->out, "alerts_error", json_string("MariaDB did not answer"));
    else
        json_object_set_new(p->out, "alerts", alerts_json(result, rows));
    cs_pending_done(p);
}

/* Calls method with ps on every instance into p->nodes (p->waiting held
 * by the caller). */
static void fan_out(console *c, pending *p, const char *method, const params *ps)
{
    ring_node nodes[RING_NODES_MAX];
    size_t n = cs_nodes_get(c, nodes);
    p->nodes = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(p->nodes, json_null());
        sub *s = &p->subs[i];
        *s = (sub){.p = p, .idx = (int)i};
        cs_copy_cut(s->node, sizeof s->node, nodes[i].name);
        p->waiting++;
        if (crpc_call(c->rpc, nodes[i].host, nodes[i].port, method, cs_pack_params, ps,
                      CONSOLE_RPC_TIMEOUT_MS, node_cb, s) != 0) {
            p->waiting--;
            json_array_set_new(p->nodes, i, json_pack("{s:s, s:s, s:s}", "node", s->node,
                                                      "error", "too many console calls",
                                                      "code", "busy"));
            if (p->kind == P_FANOUT)
                p->status = 503;
        }
    }
}

static bool supplier_id_ok(const char *id)
{
    size_t n = strlen(id);
    return n >= 1 && n <= ENG_ID_MAX && !strchr(id, ':') &&
           rpc_utf8_valid((const unsigned char *)id, n);
}

void cs_on_supplier(console *c, httpd_req *req)
{
    char id[ENG_ID_MAX + 1];
    if (!cs_query_param(req, "id", id, ENG_ID_MAX) || !supplier_id_ok(id)) {
        cs_reply_error(req, 400, "invalid", "id: a supplier id, 1..64 bytes, percent-encoded", NULL);
        return;
    }
    pending *p = cs_pending_new(c, req, P_SUPPLIER);
    if (!p)
        return;
    json_object_set_new(p->out, "supplier_id", json_string(id));
    httpd_defer(req);
    p->waiting = 1;
    params ps = {0};
    cs_p_str(&ps, "supplier_id", id);
    fan_out(c, p, "supplier.get", &ps);
    sub *s = &p->subs[RING_NODES_MAX + 1];
    *s = (sub){.p = p, .idx = -1};
    store *st = server_store(c->srv);
    p->waiting++;
    if (!st || store_alerts_of_supplier(st, id, CONSOLE_MOVES_MAX, supplier_alerts_cb, s) != 0) {
        p->waiting--;
        json_object_set_new(p->out, "alerts_error", json_string("MariaDB queries are busy"));
    }
    cs_pending_done(p);
}

/* ------------------------------------------------------------ actions */

static void action_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                      const char *reason)
{
    sub *s = ctx;
    pending *p = s->p;
    json_decref(p->out);
    p->out = cs_rpc_outcome(error, result, reason, &p->status);
    cs_pending_done(p);
}

/* One RPC call on this instance (which routes it) answering req. */
static void act(console *c, httpd_req *req, const char *method, const params *ps)
{
    pending *p = cs_pending_new(c, req, P_ACTION);
    if (!p)
        return;
    char host[HOST_MAX + 1];
    int port;
    cs_self_addr(c->cfg, host, sizeof host, &port);
    p->subs[0] = (sub){.p = p};
    if (crpc_call(c->rpc, host, port, method, cs_pack_params, ps, CONSOLE_RPC_TIMEOUT_MS, action_cb,
                  &p->subs[0]) != 0) {
        cs_pending_free(p);
        cs_reply_error(req, 503, "busy", "too many console calls; try again", NULL);
        return;
    }
    httpd_defer(req);
    p->waiting = 1;
}

void cs_on_ack(console *c, httpd_req *req, const session *se)
{
    json_t *j = cs_body_object(req, "id,note");
    if (!j)
        return;
    bool bad = false;
    json_t *id = json_object_get(j, "id");
    const char *note = cs_field_str(req, j, "note", RPC_ACK_NOTE_MAX, false, true, &bad);
    if (!bad && (!json_is_integer(id) || json_integer_value(id) < 1)) {
        cs_reply_error(req, 400, "invalid", "id: the alert's id, an integer >= 1", NULL);
        bad = true;
    }
    if (!bad) {
        params ps = {0};
        cs_p_int(&ps, "id", (int64_t)json_integer_value(id));
        cs_p_str(&ps, "by", se->name);
        if (note && note[0])
            cs_p_str(&ps, "note", note);
        cs_p_token(&ps, c->cfg);
        act(c, req, "alerts.ack", &ps);
    }
    json_decref(j);
}

static bool order_id_ok(const char *s)
{
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("._:-", *s)))
            return false;
    return true;
}

void cs_on_release(console *c, httpd_req *req)
{
    json_t *j = cs_body_object(req, "order_id,sku");
    if (!j)
        return;
    bool bad = false;
    const char *oid = cs_field_str(req, j, "order_id", ENG_ID_MAX, true, false, &bad);
    const char *sku = bad ? NULL : cs_field_str(req, j, "sku", ENG_ID_MAX, false, false, &bad);
    if (!bad && !order_id_ok(oid)) {
        cs_reply_error(req, 400, "invalid", "order_id: only A-Z a-z 0-9 . _ : -", NULL);
        bad = true;
    }
    if (!bad) {
        params ps = {0};
        cs_p_str(&ps, "order_id", oid);
        if (sku)
            cs_p_str(&ps, "sku", sku);
        act(c, req, "release", &ps);
    }
    json_decref(j);
}

void cs_on_recheck(console *c, httpd_req *req)
{
    json_t *j = cs_body_object(req, "sku");
    if (!j)
        return;
    bool bad = false;
    const char *sku = cs_field_str(req, j, "sku", ENG_ID_MAX, true, false, &bad);
    if (!bad) {
        params ps = {0};
        cs_p_str(&ps, "sku", sku);
        cs_p_token(&ps, c->cfg);
        act(c, req, "sku.recheck", &ps);
    }
    json_decref(j);
}

static bool factor_ok(json_t *v)
{
    double d = json_is_real(v) ? json_real_value(v) : json_is_integer(v)
                                                          ? (double)json_integer_value(v) : -1;
    return (json_is_real(v) || json_is_integer(v)) && d >= 0.0 && d <= 1.0;
}

/* supplier.put on every instance: trust is per node. */
void cs_on_supplier_put(console *c, httpd_req *req)
{
    json_t *j = cs_body_object(req, "supplier_id,event_mode,trust,event_trust");
    if (!j)
        return;
    bool bad = false;
    const char *id = cs_field_str(req, j, "supplier_id", ENG_ID_MAX, true, false, &bad);
    json_t *em = json_object_get(j, "event_mode");
    json_t *tr = json_object_get(j, "trust");
    json_t *et = json_object_get(j, "event_trust");
    const char *why = NULL;
    if (!bad && !supplier_id_ok(id))
        why = "supplier_id: 1..64 bytes without ':'";
    else if (!bad && em && !json_is_boolean(em))
        why = "event_mode: true or false";
    else if (!bad && ((tr && !factor_ok(tr)) || (et && !factor_ok(et))))
        why = "trust, event_trust: a number 0..1";
    else if (!bad && !em && !tr && !et)
        why = "give event_mode, trust or event_trust";
    if (why) {
        cs_reply_error(req, 400, "invalid", why, NULL);
        bad = true;
    }
    if (!bad) {
        pending *p = cs_pending_new(c, req, P_FANOUT);
        if (p) {
            params ps = {0};
            cs_p_str(&ps, "supplier_id", id);
            if (em)
                cs_p_bool(&ps, "event_mode", json_is_true(em));
            if (tr)
                cs_p_dbl(&ps, "trust", json_number_value(tr));
            if (et)
                cs_p_dbl(&ps, "event_trust", json_number_value(et));
            cs_p_token(&ps, c->cfg);
            httpd_defer(req);
            p->waiting = 1;
            fan_out(c, p, "supplier.put", &ps);
            cs_pending_done(p);
        }
    }
    json_decref(j);
}
