/* core.c — the engine's pump and what follows a commit: batches handed to
 * the store, outcomes applied, then notifications, alerts, cache refreshes,
 * purchase kicks and cart events; the expiry tick; see core.h. */
#include "stockd/orderload.h"
#include "stockd/core.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/node.h"
#include "stockd/coldload.h"
#include "stockd/route.h"
#include "stockd/rpc.h"

/* ------------------------------------------------------------ order.subscribe, alerts (notify.h) */

/* [2, "order.update", [order record]] to every listener. */
static void notify_order(server *s, const eng_order_view *o)
{
    if (notify_listeners(s->notify) == 0)
        return;
    rpc_pack_order(s, notify_begin(s->notify), o);
    notify_end(s->notify);
}

void server_alert_load(server *s, const char *kind, const char *sku, const char *order_id,
                       const char *reason, int64_t at_ms)
{
    notify_alert(s->notify, kind, sku, order_id, reason, at_ms);
}

/* A committed alert: the log, the ring, and Redis (best effort). */
static void alert_note(server *s, const eng_alert_row *a)
{
    char at[24];
    snprintf(at, sizeof at, "%lld", (long long)a->at_ms);
    LOG_W("support alert", "kind", a->kind, "sku", a->sku, "order_id", a->order_id,
          "reason", a->reason, "at", at);
    s->alerts_total++;
    notify_alert(s->notify, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
    if (s->cache != NULL)
        (void)cache_xadd_alert(s->cache, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
    else
        s->alerts_no_cache++;
}

/* What a committed batch asks for once the engine has applied it (the
 * batch and its rows are gone by then: SKU names are copied). */
typedef struct notify_ref {
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;
    bool part;
} notify_ref;

/* A part whose purchase failed for good (cart_part_failed). */
typedef struct failed_ref {
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;
    int32_t n_lines;
    char reason[ENG_REASON_MAX + 1];
} failed_ref;

typedef struct post_commit {
    bool wake;                    /* new purchase jobs */
    size_t n_pokes;
    char (*pokes)[ENG_ID_MAX + 1]; /* SKUs whose new orders took supplier units */
    size_t n_notes;
    notify_ref *notes;            /* orders (or parts) order.subscribe hears of */
    size_t n_failed;
    failed_ref *failed;           /* parts whose purchase failed: the order fails whole */
} post_commit;

/* Parts of cross-shard orders whose purchase failed for good in this
 * batch: the job row says "failed" (a cascade's own failures cancel jobs,
 * never fail them, so a cascade never cascades again). */
static void note_failed_parts(server *s, eng_batch *b, post_commit *pc)
{
    const eng_job_row *jobs;
    size_t nj = eng_batch_job_rows(b, &jobs);
    size_t want = 0;
    for (size_t i = 0; i < nj; i++)
        want += jobs[i].state == ENG_JOB_FAILED;
    if (want == 0)
        return;
    const eng_order_row *orows;
    size_t no = eng_batch_order_rows(b, &orows);
    pc->failed = malloc(want * sizeof *pc->failed);
    if (pc->failed == NULL) {
        LOG_E("out of memory: a failed line's order is not failed whole (support: purchase_failed alert)");
        return;
    }
    for (size_t i = 0; i < nj; i++) {
        if (jobs[i].state != ENG_JOB_FAILED)
            continue;
        for (size_t k = 0; k < no; k++) {
            const eng_order_view *o = &orows[k].o;
            if (o->n_lines <= 1 || o->line_no != jobs[i].line_no || o->status != ENG_ST_FAILED)
                continue;
            /* A job row names its line by (order_id, line_no). */
            if (strcmp(o->order_id, jobs[i].order_id) != 0)
                continue;
            failed_ref *f = &pc->failed[pc->n_failed++];
            memcpy(f->order_id, o->order_id, sizeof f->order_id);
            f->line_no = o->line_no;
            f->n_lines = o->n_lines;
            memcpy(f->reason, o->reason, sizeof f->reason);
            break;
        }
    }
}

/* A batch committed: refresh the Redis keys of its SKUs (coalesced and
 * pipelined by the cache module after this round of callbacks, from the
 * committed state), put new SKUs into the Bloom filter, tell order.subscribe
 * listeners, note alerts, and collect what must follow the commit. */
static void note_committed(server *s, eng_batch *b, post_commit *pc)
{
    const eng_sku_row *rows;
    size_t n = eng_batch_sku_rows(b, &rows);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].insert && s->bloom)
            bloom_add(s->bloom, rows[i].sku, strlen(rows[i].sku));
        if (s->cache)
            cache_mark(s->cache, rows[i].sku);
    }
    const eng_order_row *orows;
    size_t no = eng_batch_order_rows(b, &orows);
    size_t want = 0, notes = 0;
    for (size_t i = 0; i < no; i++) {
        notes += orows[i].notify;
        want += orows[i].insert && orows[i].o.from_supplier > 0;
    }
    /* Listeners hear of the whole order (a cart: every line) once the
     * engine has applied the batch: collected here, told in post_committed.
     * A part's change is for every node's listeners (cart_order_changed),
     * whoever listens here. */
    bool any = notify_listeners(s->notify) > 0 || (s->parts_mode && s->cart != NULL);
    if (notes > 0 && any && (pc->notes = malloc(notes * sizeof *pc->notes)) != NULL) {
        for (size_t i = 0; i < no; i++) {
            if (!orows[i].notify)
                continue;
            notify_ref *nr = &pc->notes[pc->n_notes++];
            memcpy(nr->order_id, orows[i].o.order_id, sizeof nr->order_id);
            nr->line_no = orows[i].o.line_no;
            nr->part = s->parts_mode && orows[i].o.n_lines > 1;
        }
    }
    if (want > 0 && s->supsync != NULL && (pc->pokes = malloc(want * sizeof *pc->pokes)) != NULL) {
        for (size_t i = 0; i < no; i++) {
            if (orows[i].insert && orows[i].o.from_supplier > 0)
                memcpy(pc->pokes[pc->n_pokes++], orows[i].o.sku, ENG_ID_MAX + 1);
        }
    }
    const eng_job_row *jobs;
    size_t nj = eng_batch_job_rows(b, &jobs);
    for (size_t i = 0; i < nj && !pc->wake; i++)
        pc->wake = jobs[i].insert;
    const eng_alert_row *alerts;
    size_t na = eng_batch_alert_rows(b, &alerts);
    for (size_t i = 0; i < na; i++)
        alert_note(s, &alerts[i]);
    if (s->parts_mode && s->cart != NULL)
        note_failed_parts(s, b, pc);
}

/* After engine_batch_done / engine_batch_resolve: the committed state is
 * visible, so the worker can claim the new jobs and the sync finds the
 * SKUs' committed mappings. */
static void post_committed(server *s, post_commit *pc)
{
    if (pc->wake && s->purch != NULL)
        purchase_wake(s->purch);
    for (size_t i = 0; i < pc->n_pokes; i++)
        supsync_poke_sku(s->supsync, pc->pokes[i]);
    free(pc->pokes);
    pc->pokes = NULL;
    pc->n_pokes = 0;
    for (size_t i = 0; i < pc->n_failed; i++) {
        const failed_ref *f = &pc->failed[i];
        cart_part_failed(s->cart, f->order_id, f->line_no, f->n_lines, f->reason);
    }
    free(pc->failed);
    pc->failed = NULL;
    pc->n_failed = 0;
    for (size_t i = 0; i < pc->n_notes; i++) {
        const notify_ref *n = &pc->notes[i];
        if (n->part) {
            /* One line of a cross-shard order: every node's listeners hear
             * the whole order once it is final (cart.h). */
            if (s->cart != NULL)
                cart_order_changed(s->cart, n->order_id);
            continue;
        }
        eng_order_view v;
        if (engine_order_get(s->eng, n->order_id, &v))
            notify_order(s, &v);
    }
    free(pc->notes);
    pc->notes = NULL;
    pc->n_notes = 0;
}

/* ------------------------------------------------------------ pump */

/* Notes when a batch went to the store, for the commit latency. A slot
 * whose commit never reported is reused after COMMITS_TRACKED others. */
static void commit_track(server *s, eng_batch *b)
{
    hist_record(&s->batch_ops, eng_batch_ops(b));
    uint64_t id = eng_batch_id(b);
    s->commits[id % COMMITS_TRACKED].batch_id = id + 1;  /* 0 = free slot */
    s->commits[id % COMMITS_TRACKED].start_ns = clock_mono_ns();
}

static void commit_untrack(server *s, eng_batch *b)
{
    uint64_t id = eng_batch_id(b);
    if (s->commits[id % COMMITS_TRACKED].batch_id != id + 1)
        return;
    int64_t d = clock_mono_ns() - s->commits[id % COMMITS_TRACKED].start_ns;
    hist_record(&s->commit_us, d > 0 ? (uint64_t)d / 1000 : 0);
    s->commits[id % COMMITS_TRACKED].batch_id = 0;
}

void core_pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    s->pump_armed = false;
    if (s->sink.commit == NULL)
        return;
    /* Bounded: each round takes at least one op off a queue. */
    for (int rounds = 0; rounds < 64 && engine_has_ready(s->eng); rounds++) {
        if (!s->sink.can_commit(s->sink.st))
            return;  /* on_idle pumps again */
        eng_batch *b = engine_next_batch(s->eng, clock_wall_ms());
        if (b == NULL)
            return;
        if (eng_batch_is_empty(b)) {
            engine_batch_done(s->eng, b, ENG_COMMITTED);
            continue;
        }
        commit_track(s, b);
        int rc = s->sink.commit(s->sink.st, b);
        assert(rc == 0);
        (void)rc;
    }
    if (engine_has_ready(s->eng) && s->sink.can_commit(s->sink.st))
        core_pump_schedule(s);
}

void core_pump_schedule(server *s)
{
    if (s->pump_armed)
        return;
    s->pump_armed = true;
    event_active(s->pump_ev, EV_TIMEOUT, 0);
}

void core_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    if (s->n_forget > 0)
        route_forget_sweep(s);
    /* Also work queued outside any request (alerts of rows set aside at
     * load): nothing else would start its batch. */
    if (engine_expire_due(s->eng, clock_wall_ms()) > 0 || engine_has_ready(s->eng))
        core_pump_schedule(s);
    if (s->cart != NULL)
        cart_settle_due(s->cart);  /* this node's parts whose hold lapsed */
    orderload_evict(s);
}

static void on_commit(eng_batch *b, eng_outcome outcome, const char *err, void *arg)
{
    server *s = arg;
    commit_untrack(s, b);
    if (outcome != ENG_COMMITTED)
        LOG_W("batch not committed", "outcome", outcome == ENG_ABORTED ? "aborted" : "unknown",
              "error", err ? err : "");
    post_commit pc = {0};
    if (outcome == ENG_COMMITTED)
        note_committed(s, b, &pc);
    if (outcome == ENG_ABORTED && s->ring != NULL && err != NULL && strstr(err, "epoch fence")) {
        /* Another instance took (some of) these SKUs over: our memory of
         * them is stale. Forget them; a request that still comes here
         * takes them over again from MariaDB. */
        const eng_sku_row *rows;
        size_t n = eng_batch_sku_rows(b, &rows);
        for (size_t i = 0; i < n; i++)
            route_forget_later(s, rows[i].sku);
        s->fence_drops += n;
    }
    if (outcome == ENG_ABORTED)
        orderload_note_abort(s, b, err);
    engine_batch_done(s->eng, b, outcome);
    post_committed(s, &pc);
    if (outcome == ENG_UNKNOWN)
        s->sink.resolve(s->sink.st, b);
    core_pump_schedule(s);
}

static void on_resolve(eng_batch *b, bool committed, void *arg)
{
    server *s = arg;
    LOG_I("unknown batch resolved", "committed", committed ? "yes" : "no");
    post_commit pc = {0};
    if (committed)
        note_committed(s, b, &pc);
    engine_batch_resolve(s->eng, b, committed);
    post_committed(s, &pc);
    core_pump_schedule(s);
}

static void on_idle(void *arg)
{
    server *s = arg;
    if (!core_store_up(s)) {
        /* Work waiting for a store that is gone: tell its clients now. */
        engine_cancel_all(s->eng, ENG_E_UNAVAILABLE);
        return;
    }
    core_pump_schedule(s);
}

void core_set_sink(server *s, const core_sink *sink)
{
    s->sink = *sink;
    core_pump_schedule(s);
}

bool core_store_up(const server *s)
{
    return s->sink.up != NULL && s->sink.up(s->sink.st);
}

void server_store_callbacks(server *s, store_callbacks *out)
{
    out->on_commit = on_commit;
    out->on_resolve = on_resolve;
    out->on_idle = on_idle;
    out->arg = s;
}

/* ------------------------------------------------------------ lifecycle */

void core_limits_from_cfg(const stockd_config *cfg, eng_limits *lim)
{
    eng_limits_default(lim);
    lim->queue_per_sku_max = cfg->queue_per_sku_max;
    lim->queue_total_max = cfg->queue_total_max;
    lim->batch_ops_max = cfg->batch_ops_max;
    lim->batch_sku_ops_max = cfg->batch_sku_ops_max;
    lim->expire_per_tick_max = cfg->expire_per_tick_max;
    lim->upstream_lag_ms = cfg->supplier_upstream_lag_ms;
    lim->trust_default.trust = cfg->supplier_trust;
    lim->trust_default.ceiling = 1.0;
    lim->trust_default.event_mode = false;
    lim->trust_default.event_trust = cfg->supplier_event_trust;
    lim->trust_cut = cfg->supplier_trust_cut;
    lim->trust_step = cfg->supplier_trust_step;
}
