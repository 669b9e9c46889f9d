/* sn_stockd.c — stockd in the sales night: the SKUs mapped to the fake's
 * offers with sku.put, each order one `reserve` (a cart with `lines`), and
 * stockd's own supplier side (its sync, its purchase worker, its alerts)
 * against the same fake1688. stockd must run with --supplier-url pointing
 * at the fake's API and its timers scaled to the night's clock
 * (`stockbench --mode salesnight --stockd-flags` prints them).
 *
 * stockd buys asynchronously; to give it the same footing as the recipes
 * (whose purchase runs before the next event) the runner waits after each
 * order with supplier units until order.update says purchased or failed.
 *
 * Time: a stockd started with --test-clock yes (`--stockd-flags` prints
 * it) keeps its supplier rounds, synced_at, purchased_at, the upstream
 * lag and hold expiry on a manual clock. Before every event this system
 * moves that clock with test.clock to the event's simulated time (scaled
 * by --minute-ms, the scale of the flags, from the clock's value when the
 * system opened) and waits for the answer, which comes once the rounds
 * that fell due ran and their calls and writes settled; and it waits for
 * each order's purchase without the --settle cap. So the night is
 * replayed exactly. A stockd without the option answers test.clock
 * invalid_state (an older one unknown_method): its rounds then run on its
 * own wall clock, the purchase wait is capped at --settle, and its counts
 * can move by a few between runs of a seed.
 *
 * stockd-checked sends "check": true with each reserve (answer only what
 * the 1688 order check accepts). A server without that option answers
 * `invalid` naming "check": the system is then reported as not available.
 */
#include "db.h"
#include "sn_sys.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stockd/client.h"
#include "stockd/codec.h"

#define SN_SD_TIMEOUT_MS 10000
#define SN_SD_PIPELINE 256
#define SN_SD_SYNC_WAIT_S 60          /* the first snapshot of every mapping */
#define SN_SD_FINISH_WAIT_S 60        /* purchases still running at the end */
#define SN_SD_POLL_MS 200              /* test clock: order.get if no notification by then */
#define SN_SD_CLOCK_TIMEOUT_MS 90000  /* test.clock: stockd gives up settling after 60 s */

enum { OS_NONE = 0, OS_AWAITING, OS_FINAL };

typedef struct sd {
    bool checked;
    stockd_client *c, *sub;
    uint8_t *os;                      /* per order: OS_* */
    uint32_t awaiting;
    char prefix[40];                  /* "sn<nonce>-" */
    bool tclock;                      /* stockd runs --test-clock: test.clock drives it */
    int64_t clock0_ms;                /* its clock at simulated 0 */
    int64_t clock_at_ms;              /* where the last test.clock left it */
    uint32_t caught_up;               /* purchases found final by order.get, not told */
    char err[512];
} sd;

static int fail(sn_ctx *c, sd *s, const char *what, stockd_client *cl)
{
    snprintf(c->note, sizeof c->note, "stockd %s: %.400s", what,
             cl ? stockd_client_errstr(cl) : s->err);
    return -1;
}

/* test.clock {"now_ms": now_ms} (0: no move, only wait for stockd to
 * settle). 0 with *now_out (stockd's clock after it); 1 = refused because
 * stockd runs without --test-clock (or predates it); -1 on other errors. */
static int test_clock(sn_ctx *c, sd *s, int64_t now_ms, int64_t *now_out)
{
    msgpack_packer *pk;
    stockd_reply rep;
    if (stockd_request_begin(s->c, "test.clock", &pk) != STOCKD_OK)
        return fail(c, s, "test.clock", s->c);
    int r = now_ms > 0 ? msgpack_pack_map(pk, 1) || codec_pack_kv_int(pk, "now_ms", now_ms)
                       : msgpack_pack_map(pk, 0);
    if (r) {
        stockd_request_abort(s->c);
        return fail(c, s, "test.clock", s->c);
    }
    /* It waits for stockd to settle (at most a minute there). */
    stockd_client_set_timeout(s->c, SN_SD_CLOCK_TIMEOUT_MS);
    stockd_rc rc = stockd_request_call(s->c, &rep);
    stockd_client_set_timeout(s->c, SN_SD_TIMEOUT_MS);
    if (rc == STOCKD_ERR_SERVER) {
        const stockd_error *e = stockd_client_error(s->c);
        if (strcmp(e->code, "invalid_state") == 0 || strcmp(e->code, "unknown_method") == 0)
            return 1;
        return fail(c, s, "test.clock", s->c);
    }
    const msgpack_object *now = rc == STOCKD_OK ? codec_map_get(rep.result, "now_ms") : NULL;
    const msgpack_object *settled = rc == STOCKD_OK ? codec_map_get(rep.result, "settled") : NULL;
    if (now == NULL || now->type != MSGPACK_OBJECT_POSITIVE_INTEGER || settled == NULL ||
        settled->type != MSGPACK_OBJECT_BOOLEAN) {
        if (rc == STOCKD_OK)
            snprintf(s->err, sizeof s->err, "test.clock: answer without now_ms and settled");
        return fail(c, s, "test.clock", rc == STOCKD_OK ? NULL : s->c);
    }
    if (!settled->via.boolean)
        c->clock_unsettled++;
    *now_out = (int64_t)now->via.u64;
    s->clock_at_ms = *now_out;
    return 0;
}

/* The order number of one of this night's order ids, or -1. */
static int64_t order_no_of(const sn_ctx *c, const sd *s, const char *order_id)
{
    size_t n = strlen(s->prefix);
    if (strncmp(order_id, s->prefix, n) != 0 || order_id[n] != 'o')
        return -1;
    char *end = NULL;
    unsigned long long v = strtoull(order_id + n + 1, &end, 10);
    if (end == order_id + n + 1 || *end != '\0' || v >= c->sc->n_orders)
        return -1;
    return (int64_t)v;
}

/* purchased / failed: what became of an order's supplier units. */
static void on_final(sn_ctx *c, sd *s, const stockd_order *o)
{
    int64_t k = order_no_of(c, s, o->order_id);
    if (k < 0 || s->os[k] != OS_AWAITING)
        return;
    bool purchased = strcmp(o->status, "purchased") == 0 || strcmp(o->status, "shipped") == 0;
    bool failed = strcmp(o->status, "failed") == 0;
    if (!purchased && !failed)
        return;
    const sn_event *ev = &c->sc->events[c->acct->order_ev[k]];
    const sn_answer_rec *r = &c->acct->rec[k];
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        if (r->from_sup[i] == 0)
            continue;
        bool bought = purchased;
        if (o->n_lines > 1 && i < o->n_lines_listed)
            bought = strcmp(o->lines[i].status, "purchased") == 0 ||
                     strcmp(o->lines[i].status, "shipped") == 0;
        if (bought)
            sn_acct_bought(c->acct, (uint32_t)k, i,
                           c->price_changed[c->sc->skus[ev->line_sku[i]].offer]);
    }
    if (failed)
        sn_acct_cancel(c->acct, (uint32_t)k, sn_fate_of_code(o->reason));
    s->os[k] = OS_FINAL;
    s->awaiting--;
}

/* Takes order.update notifications until `until_order` is final (for
 * UINT32_MAX: until none awaits), waiting at most wait_ms for more. */
static int drain_updates(sn_ctx *c, sd *s, uint32_t until_order, int wait_ms)
{
    uint64_t deadline = sn_mono_ns() + (uint64_t)wait_ms * 1000000u;
    for (;;) {
        bool done = until_order == UINT32_MAX ? s->awaiting == 0 : s->os[until_order] != OS_AWAITING;
        uint64_t now = sn_mono_ns();
        if (done)
            return 0;
        const msgpack_object *msg = NULL;
        /* 0: only what has arrived already (the loop ends at the first NULL) */
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000u) + 1;
        if (stockd_next_notification(s->sub, left, &msg) != STOCKD_OK)
            return fail(c, s, "order.subscribe", s->sub);
        if (msg == NULL)
            return 0;
        stockd_order o;
        if (stockd_notification_order(s->sub, msg, &o) == STOCKD_OK)
            on_final(c, s, &o);
    }
}

/* Reads order k with order.get and takes its record as a notification
 * (a final one ends its wait); *o is the record. */
static int read_order(sn_ctx *c, sd *s, uint32_t k, char *id, size_t id_len, stockd_order *o)
{
    sn_order_name(c, k, id, id_len);
    if (stockd_order_get(s->c, id, o) != STOCKD_OK)
        return fail(c, s, "order.get", s->c);
    on_final(c, s, o);
    return 0;
}

/* Until order k's purchase is final (on the test clock): its notification,
 * else order.get every SN_SD_POLL_MS (a listener can miss a notification:
 * PROTOCOL says to catch up with order.get), at most SN_SD_FINISH_WAIT_S. */
static int await_final(sn_ctx *c, sd *s, uint32_t k)
{
    uint64_t deadline = sn_mono_ns() + (uint64_t)SN_SD_FINISH_WAIT_S * 1000000000u;
    while (s->os[k] == OS_AWAITING) {
        if (drain_updates(c, s, k, SN_SD_POLL_MS) != 0)
            return -1;
        if (s->os[k] != OS_AWAITING)
            break;
        char id[96];
        stockd_order o;
        if (read_order(c, s, k, id, sizeof id, &o) != 0)
            return -1;
        if (s->os[k] != OS_AWAITING)
            s->caught_up++;
        if (s->os[k] == OS_AWAITING && sn_mono_ns() > deadline) {
            fprintf(stderr, "salesnight %s: order %s still %s after %d s\n", c->name, id,
                    o.status, SN_SD_FINISH_WAIT_S);
            break;
        }
    }
    return 0;
}

static int send_reserve(sn_ctx *c, sd *s, const sn_event *ev, stockd_order *out, bool *yes)
{
    char order_id[96], skus[SN_LINES_MAX][64];
    msgpack_packer *pk;
    sn_order_name(c, ev->no, order_id, sizeof order_id);
    for (uint32_t i = 0; i < ev->n_lines; i++)
        sn_sku_name(c, ev->line_sku[i], skus[i], sizeof skus[i]);
    if (stockd_request_begin(s->c, "reserve", &pk) != STOCKD_OK)
        return -1;
    uint32_t n = (ev->n_lines == 1 ? 3 : 2) + s->checked;
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "order_id", order_id);
    if (ev->n_lines == 1) {
        r = r || codec_pack_kv_str(pk, "sku", skus[0]) || codec_pack_kv_int(pk, "qty", ev->line_qty[0]);
    } else {
        r = r || codec_pack_cstr(pk, "lines") || msgpack_pack_array(pk, ev->n_lines);
        for (uint32_t i = 0; i < ev->n_lines && !r; i++)
            r = msgpack_pack_map(pk, 2) || codec_pack_kv_str(pk, "sku", skus[i]) ||
                codec_pack_kv_int(pk, "qty", ev->line_qty[i]);
    }
    if (s->checked)
        r = r || codec_pack_kv_bool(pk, "check", true);
    if (r) {
        stockd_request_abort(s->c);
        return -1;
    }
    uint32_t msgid;
    stockd_reply rep;
    stockd_rc rc = stockd_request_end(s->c, &msgid);
    if (rc == STOCKD_OK)
        rc = stockd_recv(s->c, msgid, &rep);
    if (rc == STOCKD_ERR_SERVER) {
        *yes = false;
        return 0;
    }
    if (rc != STOCKD_OK || stockd_reply_order(s->c, &rep, out) != STOCKD_OK)
        return -1;
    *yes = true;
    return 0;
}

static int sd_order(sn_ctx *c, void *st, const sn_event *ev)
{
    sd *s = st;
    stockd_order o;
    bool yes = false;
    uint64_t t0 = sn_mono_ns();
    if (send_reserve(c, s, ev, &o, &yes) != 0)
        return fail(c, s, "reserve", s->c);
    hist_record(&c->hist, (sn_mono_ns() - t0) / 1000u);
    c->answers++;
    if (!yes) {
        const stockd_error *e = stockd_client_error(s->c);
        int64_t orderable[SN_LINES_MAX];
        if (sn_truth_lines(c, ev, orderable) != 0)
            return fail(c, s, "truth", NULL);
        /* check_failed is 1688 refusing the units: a right answer, not an error. */
        bool error = strcmp(e->code, "insufficient") != 0 && strcmp(e->code, "check_failed") != 0;
        sn_acct_no(c->acct, ev, orderable, error);
        if (error)
            sn_note_refused(c, e->code, e->message);
        return 0;
    }
    int32_t from_own[SN_LINES_MAX] = {0}, from_sup[SN_LINES_MAX] = {0};
    if (ev->n_lines == 1) {
        from_own[0] = (int32_t)o.from_own;
        from_sup[0] = (int32_t)o.from_supplier;
    } else {
        if (o.n_lines_listed != ev->n_lines) {
            snprintf(s->err, sizeof s->err, "order %s: %u lines in the record, %u sent",
                     o.order_id, o.n_lines_listed, ev->n_lines);
            return fail(c, s, "reserve", NULL);
        }
        for (uint32_t i = 0; i < ev->n_lines; i++) {
            from_own[i] = (int32_t)o.lines[i].from_own;
            from_sup[i] = (int32_t)o.lines[i].from_supplier;
        }
    }
    sn_acct_yes(c->acct, ev, from_own, from_sup);
    if (o.from_supplier > 0) {
        s->os[ev->no] = OS_AWAITING;
        s->awaiting++;
        /* A notification can beat the reply: the record may be final already. */
        if (strcmp(o.status, "confirmed") != 0)
            on_final(c, s, &o);
        /* With the test clock nothing may move before the purchase ended:
         * the next event would otherwise race it. */
        if (s->tclock)
            return await_final(c, s, ev->no);
        return drain_updates(c, s, ev->no, (int)(c->so->settle_s * 1000));
    }
    return drain_updates(c, s, UINT32_MAX, 0);
}

/* Orders still awaiting at the end: notifications, and every half second
 * order.get of those left (a listener can miss a notification: PROTOCOL
 * says to catch up with order.get), at most SN_SD_FINISH_WAIT_S. */
static int settle_rest(sn_ctx *c, sd *s)
{
    uint64_t deadline = sn_mono_ns() + (uint64_t)SN_SD_FINISH_WAIT_S * 1000000000u;
    while (s->awaiting > 0 && sn_mono_ns() < deadline) {
        if (drain_updates(c, s, UINT32_MAX, 500) != 0)
            return -1;
        for (uint32_t k = 0; k < c->sc->n_orders && s->awaiting > 0; k++) {
            if (s->os[k] != OS_AWAITING)
                continue;
            char id[96];
            stockd_order o;
            if (read_order(c, s, k, id, sizeof id, &o) != 0)
                return -1;
        }
    }
    return 0;
}

/* Alerts from stockd's MariaDB; mapping alerts date the link detections. */
static int read_alerts(sn_ctx *c, sd *s)
{
    char err[256], sql[512];
    MYSQL *m = bench_db_connect(&c->o->db, c->o->db.db, false, err, sizeof err);
    if (m == NULL) {
        snprintf(s->err, sizeof s->err, "%s", err);
        return fail(c, s, "alerts", NULL);
    }
    snprintf(sql, sizeof sql, "SELECT kind, sku, reason, at FROM alerts WHERE sku LIKE '%s%%' "
                              "ORDER BY at", s->prefix);
    MYSQL_RES *res = NULL;
    if (mysql_query(m, sql) != 0 || (res = mysql_store_result(m)) == NULL) {
        snprintf(s->err, sizeof s->err, "%s", mysql_error(m));
        mysql_close(m);
        return fail(c, s, "alerts", NULL);
    }
    MYSQL_ROW row;
    uint64_t n = 0;
    double sim_per_wall = 60000.0 / c->so->minute_ms;
    /* Alert times are stockd's clock: the test clock's when it runs one. */
    int64_t at0 = s->tclock ? s->clock0_ms : c->wall0_unix_ms;
    while ((row = mysql_fetch_row(res)) != NULL) {
        n++;
        if (!row[0] || !row[1] || !row[2] || !row[3])
            continue;
        bool link = strcmp(row[0], "mapping_broken") == 0 || sn_fate_of_code(row[2]) == SN_FATE_LINK;
        char *end = NULL;
        unsigned long sku = strtoul(row[1] + strlen(s->prefix), &end, 10);
        if (!link || *end != '\0' || sku >= c->sc->n_skus || c->sc->skus[sku].offer < 0)
            continue;
        int32_t lk = c->link_of_offer[c->sc->skus[sku].offer];
        int64_t at_sim = (int64_t)((double)(strtoll(row[3], NULL, 10) - at0) * sim_per_wall);
        if (lk >= 0)
            for (uint32_t i = 0; i < c->sc->n_events; i++) {
                const sn_event *e = &c->sc->events[i];
                if (e->kind == SN_EV_LINK && e->no == (uint32_t)lk && at_sim >= e->t_ms - 1000)
                    sn_acct_link_detected(c->acct, (uint32_t)lk, at_sim);
            }
    }
    mysql_free_result(res);
    mysql_close(m);
    sn_acct_alert(c->acct, n);
    return 0;
}

/* Before each event: stockd's clock to the event's simulated time, and
 * whatever fell due on the way run and settled. */
static int sd_tick(sn_ctx *c, void *st)
{
    sd *s = st;
    if (!s->tclock)
        return 0;
    int64_t target = s->clock0_ms + llround((double)c->now_ms * c->so->minute_ms / 60000.0);
    int64_t now;
    if (target < s->clock_at_ms)
        target = s->clock_at_ms;
    int rc = test_clock(c, s, target, &now);
    if (rc == 1) {
        snprintf(s->err, sizeof s->err, "test.clock refused mid-night (was stockd restarted?)");
        return fail(c, s, "test.clock", NULL);
    }
    return rc;
}

static int sd_finish(sn_ctx *c, void *st)
{
    sd *s = st;
    if (settle_rest(c, s) != 0)
        return -1;
    if (s->awaiting > 0)
        fprintf(stderr, "salesnight %s: %u purchases still not final after %d s\n", c->name,
                s->awaiting, SN_SD_FINISH_WAIT_S);
    if (s->caught_up > 0)
        fprintf(stderr, "salesnight %s: %u purchases were final before their order.update "
                "came (order.get found them)\n", c->name, s->caught_up);
    return read_alerts(c, s);
}

static void sd_close(sn_ctx *c, void *st)
{
    (void)c;
    sd *s = st;
    if (s == NULL)
        return;
    stockd_client_free(s->c);
    stockd_client_free(s->sub);
    free(s->os);
    free(s);
}

/* stockd-checked: does the server know "check"? 1 = no (c->note says so). */
static int probe_check(sn_ctx *c, sd *s)
{
    char sku[64], id[64];
    snprintf(sku, sizeof sku, "%snosuch", s->prefix);
    snprintf(id, sizeof id, "%sprobe", s->prefix);
    msgpack_packer *pk;
    uint32_t msgid;
    stockd_reply rep;
    if (stockd_request_begin(s->c, "reserve", &pk) != STOCKD_OK)
        return -1;
    int r = msgpack_pack_map(pk, 4) || codec_pack_kv_str(pk, "order_id", id) ||
            codec_pack_kv_str(pk, "sku", sku) || codec_pack_kv_int(pk, "qty", 1) ||
            codec_pack_kv_bool(pk, "check", true);
    if (r) {
        stockd_request_abort(s->c);
        return -1;
    }
    stockd_rc rc = stockd_request_end(s->c, &msgid);
    if (rc == STOCKD_OK)
        rc = stockd_recv(s->c, msgid, &rep);
    if (rc == STOCKD_ERR_SERVER) {
        const stockd_error *e = stockd_client_error(s->c);
        if (strcmp(e->code, "invalid") == 0 && strcmp(e->field, "check") == 0) {
            snprintf(c->note, sizeof c->note, "stockd lacks the check option "
                                              "(reserve answers invalid, field \"check\")");
            return 1;
        }
        return 0;                     /* unknown_sku: the option was accepted */
    }
    return rc == STOCKD_OK ? 0 : -1;
}

static int put_skus(sn_ctx *c, sd *s)
{
    const sn_scenario *sc = c->sc;
    for (uint32_t base = 0; base < sc->n_skus; base += SN_SD_PIPELINE) {
        uint32_t ids[SN_SD_PIPELINE], n = 0;
        for (uint32_t k = base; k < sc->n_skus && k < base + SN_SD_PIPELINE; k++) {
            const sn_sku *sk = &sc->skus[k];
            char name[64], spec[72], sup[32];
            sn_sku_name(c, k, name, sizeof name);
            stockd_sku_put_req req = {.sku = name, .has_own_on_hand = true, .own_on_hand = sk->own};
            if (sk->offer >= 0) {
                const sn_offer *o = &sc->offers[sk->offer];
                sn_spec_id(o, sk->spec, spec, sizeof spec);
                snprintf(sup, sizeof sup, "sn-sup-%" PRIu32, o->supplier);
                req.has_supplier = true;
                req.supplier_id = sup;
                req.offer_id = o->offer_id;
                req.spec_id = spec;
                req.has_sku_id = true;
                req.sku_id = sn_sku_id(o, sk->spec);
            }
            if (stockd_send_sku_put(s->c, &req, &ids[n++]) != STOCKD_OK)
                return fail(c, s, "sku.put", s->c);
        }
        for (uint32_t i = 0; i < n; i++) {
            stockd_reply rep;
            if (stockd_recv(s->c, ids[i], &rep) != STOCKD_OK)
                return fail(c, s, "sku.put", s->c);
        }
    }
    return 0;
}

/* Until stockd's own sync has read every mapping once (its first
 * snapshot after the sku.put), bounded. */
static int wait_synced(sn_ctx *c, sd *s)
{
    const sn_scenario *sc = c->sc;
    uint64_t deadline = sn_mono_ns() + (uint64_t)SN_SD_SYNC_WAIT_S * 1000000000u;
    uint32_t from = 0;
    while (from < sc->n_skus) {
        if (sc->skus[from].offer < 0) {
            from++;
            continue;
        }
        char name[64];
        stockd_stock st;
        sn_sku_name(c, from, name, sizeof name);
        if (stockd_stock_get(s->c, name, &st) != STOCKD_OK)
            return fail(c, s, "stock.get", s->c);
        if (st.supplier_synced_at > 0) {
            from++;
            continue;
        }
        if (sn_mono_ns() > deadline) {
            snprintf(s->err, sizeof s->err, "SKU %s not synced after %d s: is stockd's "
                     "--supplier-url the fake's API, with --stockd-flags?", name, SN_SD_SYNC_WAIT_S);
            return fail(c, s, "sync", NULL);
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int sd_open_common(sn_ctx *c, void **st, bool checked, char *err, size_t len)
{
    const bench_opts *o = c->o;
    if (o->n_targets == 0 || !o->has_db) {
        snprintf(err, len, "%s needs --target and --db (stockd's database, for its alerts)",
                 checked ? "stockd-checked" : "stockd");
        return -1;
    }
    sd *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    *st = s;
    s->checked = checked;
    snprintf(s->prefix, sizeof s->prefix, "sn%s-", c->nonce);
    s->os = calloc(c->sc->n_orders + 1u, 1);
    s->c = stockd_client_new();
    s->sub = stockd_client_new();
    char addr[96];
    snprintf(addr, sizeof addr, "%s:%u", o->targets[0].host, o->targets[0].port);
    int rc = -1;
    if (!s->os || !s->c || !s->sub) {
        snprintf(c->note, sizeof c->note, "out of memory");
    } else if (stockd_client_connect(s->c, addr, SN_SD_TIMEOUT_MS) != STOCKD_OK ||
               stockd_client_connect(s->sub, addr, SN_SD_TIMEOUT_MS) != STOCKD_OK) {
        fail(c, s, "connect", stockd_client_connected(s->c) ? s->sub : s->c);
    } else {
        stockd_client_set_timeout(s->c, SN_SD_TIMEOUT_MS);
        if (o->admin_token[0])
            stockd_client_set_token(s->c, o->admin_token);
        rc = checked ? probe_check(c, s) : 0;
        if (rc == 0 && stockd_order_subscribe(s->sub) != STOCKD_OK)
            rc = fail(c, s, "order.subscribe", s->sub);
        if (rc == 0) {
            /* Does stockd run the test clock? Then its sync of the new
             * mappings (sku.put asks for it at once) settles before the
             * night starts, and simulated 0 is its clock then. */
            int64_t now = 0;
            int t = test_clock(c, s, 0, &now);
            if (t < 0)
                rc = -1;
            s->tclock = t == 0;
        }
        if (rc == 0 && (put_skus(c, s) != 0 || wait_synced(c, s) != 0))
            rc = -1;
        if (rc == 0 && s->tclock && test_clock(c, s, 0, &s->clock0_ms) != 0)
            rc = -1;
        c->test_clock = s->tclock;
    }
    if (rc != 0) {
        if (rc < 0)
            snprintf(err, len, "%s", c->note);
        sd_close(c, s);
        *st = NULL;
    }
    return rc;
}

static int sd_open(sn_ctx *c, void **st, char *err, size_t len)
{
    return sd_open_common(c, st, false, err, len);
}

static int sd_open_checked(sn_ctx *c, void **st, char *err, size_t len)
{
    return sd_open_common(c, st, true, err, len);
}

const sn_system sn_sys_stockd = {
    .name = "stockd", .open = sd_open, .tick = sd_tick, .order = sd_order, .finish = sd_finish,
    .close = sd_close,
};

const sn_system sn_sys_stockd_checked = {
    .name = "stockd-checked", .open = sd_open_checked, .tick = sd_tick, .order = sd_order,
    .finish = sd_finish, .close = sd_close,
};
