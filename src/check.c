/* check.c — a reserve answered only once the supplier's order check
 * accepted its supplier units; see check.h (the flow) and check_plan.h
 * (the rules). */
#include "stockd/check.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <uthash.h>

#include "stockd/check_plan.h"
#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/core.h"
#include "stockd/log.h"
#include "stockd/reply.h"
#include "stockd/purchase.h"
#include "stockd/rpc.h"

typedef struct check_ctx {
    UT_hash_handle hh;            /* in s->checks while listed */
    server *s;
    char order_id[ENG_ID_MAX + 1];
    req *r;                       /* the reserve; NULL once answered */
    req *waiters;                 /* retries (linked by next_free) */
    bool listed;
    unsigned calls, passed, pending;  /* preview calls: made, passed, on the wire */
    bool decided;                 /* the verdict is in: late answers are ignored */
    check_verdict verdict;
    char why[ENG_REASON_MAX + 1]; /* refusal (CHECK_REFUSED) or what went wrong */
    bool timer_set;
    struct event timer;
    bool op_queued;               /* op is the engine's until its on_done */
    eng_op op;                    /* the follow-up: confirm or release */
    /* What is checked, line by line, told to the purchase worker once the
     * check passed (it then does not preview the same line again); NULL
     * when it could not be kept (it previews again). */
    check_item *items;
    size_t n_items;
} check_ctx;

uint32_t check_active(const server *s)
{
    return s->checks_alive;
}

static void ctx_unlist(check_ctx *k)
{
    if (k->listed) {
        HASH_DEL(k->s->checks, k);
        k->listed = false;
    }
}

static void ctx_maybe_free(check_ctx *k)
{
    if (k->r != NULL || k->waiters != NULL || k->pending > 0 || k->op_queued)
        return;
    ctx_unlist(k);
    if (k->timer_set)
        evtimer_del(&k->timer);
    k->s->checks_alive--;
    free(k->items);
    free(k);
}

/* ------------------------------------------------------------ answers */

enum answer { A_RECORD, A_REFUSED, A_UNAVAILABLE, A_UNKNOWN };

static void pack_answer(server *s, req *r, enum answer a, const eng_order_view *o, const char *why)
{
    msgpack_packer *pk = &s->pk;
    switch (a) {
    case A_RECORD:
        rpc_count_at(s, r->m, ENG_OK, r->start_ns);
        codec_pack_response_ok_head(pk, r->msgid);
        rpc_pack_order(s, pk, o);
        return;
    case A_REFUSED:
        rpc_count_at(s, r->m, ENG_E_CHECK_FAILED, r->start_ns);
        codec_pack_response_err_head(pk, r->msgid, "check_failed", why, false, 1);
        codec_pack_kv_str(pk, "order_id", r->op.order_id);
        break;
    case A_UNAVAILABLE:
        rpc_count_at(s, r->m, ENG_E_UNAVAILABLE, r->start_ns);
        codec_pack_response_err_head(pk, r->msgid, "unavailable", why, true, 1);
        codec_pack_kv_str(pk, "reason", "check_unavailable");
        break;
    case A_UNKNOWN:
        rpc_count_at(s, r->m, ENG_E_UNAVAILABLE, r->start_ns);
        s->outcome_unknown++;
        codec_pack_response_err_head(pk, r->msgid, "unavailable", why, true, 2);
        codec_pack_kv_str(pk, "outcome", "unknown");
        codec_pack_kv_str(pk, "reason", "check_unavailable");
        break;
    }
    codec_pack_response_err_tail(pk);
}

/* Answers the reserve and every retry waiting for it, alike. */
static void answer_all(check_ctx *k, enum answer a, const eng_order_view *o, const char *why)
{
    server *s = k->s;
    ctx_unlist(k);
    if (k->r != NULL) {
        req *r = k->r;
        k->r = NULL;
        pack_answer(s, r, a, o, why);
        req_finish(s, r);
    }
    while (k->waiters != NULL) {
        req *w = k->waiters;
        k->waiters = w->next_free;
        w->next_free = NULL;
        pack_answer(s, w, a, o, why);
        req_finish(s, w);
    }
}

/* ------------------------------------------------------------ the follow-up */

static void follow_done(eng_op *op, void *arg)
{
    check_ctx *k = arg;
    server *s = k->s;
    k->op_queued = false;
    if (s->checks_down) {
        ctx_maybe_free(k);
        return;
    }
    if (op->err == ENG_E_UNAVAILABLE || op->err == ENG_E_BUSY || op->err == ENG_E_INTERNAL) {
        /* Not committed, or not known to be: the hold lapses (its expiry
         * is the backstop); a retry reads what MariaDB holds. */
        s->checks_unknown++;
        LOG_W("check: follow-up not committed; the hold lapses", "order_id", k->order_id,
              "err", eng_err_code(op->err));
        answer_all(k, A_UNKNOWN, NULL,
                   "supplier check: its outcome could not be committed; retry with the same "
                   "order_id");
    } else if (k->verdict == CHECK_PASS) {
        eng_order_view v;
        if (op->err == ENG_OK) {
            s->checks_passed++;
            for (size_t i = 0; i < k->n_items; i++)
                purchase_note_checked(s->purch, k->order_id, k->items[i].line_no,
                                      k->items[i].offer_id, k->items[i].spec_id,
                                      k->items[i].sku_id, (int32_t)k->items[i].qty,
                                      clock_wall_ms());
            answer_all(k, A_RECORD, &op->order, NULL);
        } else if (op->err == ENG_E_EXPIRED) {
            s->checks_unavailable++;
            answer_all(k, A_UNAVAILABLE, NULL,
                       "supplier check: the hold lapsed before the check ended; nothing is held");
        } else if (engine_order_get(s->eng, k->order_id, &v)) {
            /* Changed meanwhile (its gateway released or confirmed it):
             * what it is now. */
            answer_all(k, A_RECORD, &v, NULL);
        } else {
            answer_all(k, A_UNAVAILABLE, NULL, "supplier check: the order changed meanwhile");
        }
    } else if (k->verdict == CHECK_REFUSED) {
        s->checks_refused++;
        answer_all(k, A_REFUSED, NULL, k->why);
    } else {
        s->checks_unavailable++;
        answer_all(k, A_UNAVAILABLE, NULL, k->why);
    }
    ctx_maybe_free(k);
}

/* The verdict is in: commit it, then answer (follow_done). */
static void decide(check_ctx *k, check_verdict v, const char *why)
{
    server *s = k->s;
    if (k->decided)
        return;
    k->decided = true;
    k->verdict = v;
    snprintf(k->why, sizeof k->why, "%s", why ? why : "");
    if (k->timer_set) {
        evtimer_del(&k->timer);
        k->timer_set = false;
    }
    eng_op *op = &k->op;
    memset(op, 0, sizeof *op);
    snprintf(op->order_id, sizeof op->order_id, "%s", k->order_id);
    op->on_done = follow_done;
    op->on_done_arg = k;
    if (v == CHECK_PASS) {
        op->kind = ENG_OP_CONFIRM;
        op->checked = true;
        op->hold_ms = k->r != NULL ? k->r->op.hold_ms : 0;
    } else if (v == CHECK_REFUSED) {
        op->kind = ENG_OP_RELEASE;
        op->as_failed = true;
        snprintf(op->reason, sizeof op->reason, "%s", k->why);
    } else {
        op->kind = ENG_OP_RELEASE;
        op->erase = true;
    }
    LOG_D("check: decided", "order_id", k->order_id, "verdict",
          v == CHECK_PASS ? "pass" : v == CHECK_REFUSED ? "refused" : "unavailable", "why", k->why);
    eng_err err = s->draining || !core_store_up(s) ? ENG_E_UNAVAILABLE
                                                   : engine_submit(s->eng, op, clock_wall_ms());
    if (err != ENG_OK) {
        op->err = err;
        follow_done(op, k);
        return;
    }
    k->op_queued = true;
    core_pump_schedule(s);
}

/* ------------------------------------------------------------ the calls */

static void preview_done(const supplier_reply *reply, void *arg)
{
    check_ctx *k = arg;
    server *s = k->s;
    assert(k->pending > 0);
    k->pending--;
    if (s->checks_down || k->decided) {
        ctx_maybe_free(k);
        return;
    }
    const supplier_result *res = &reply->res;
    check_verdict v = check_verdict_of(res);
    if (v == CHECK_REFUSED) {
        char why[ENG_REASON_MAX + 1];
        check_refusal(res, why);
        LOG_I("check: refused by the supplier", "order_id", k->order_id, "code", res->code,
              "message", res->message);
        decide(k, CHECK_REFUSED, why);
    } else if (v == CHECK_UNAVAILABLE) {
        char why[ENG_REASON_MAX + 1];
        eng_why_fmt(why, "supplier check could not be made (%s%s%s); nothing is held, retry",
                    res->outcome == SUPPLIER_RETRYABLE ? supplier_kind_name(res->kind) : res->code,
                    res->message[0] ? ": " : "", res->message);
        decide(k, CHECK_UNAVAILABLE, why);
    } else if (++k->passed == k->calls) {
        decide(k, CHECK_PASS, NULL);
    }
}

static void budget_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    check_ctx *k = arg;
    k->timer_set = false;
    decide(k, CHECK_UNAVAILABLE,
           "supplier check did not answer within the request's deadline; nothing is held, retry");
}

/* The lines to check, as the engine decided them (committed just now). */
static size_t items_of(server *s, const req *r, check_item *items)
{
    eng_line_view lines[ENG_LINES_MAX];
    size_t nl = engine_order_lines(s->eng, r->op.order_id, lines, ENG_LINES_MAX), n = 0;
    for (size_t i = 0; i < nl; i++) {
        eng_supplier_map map;
        eng_trust t;
        if (lines[i].from_supplier <= 0 || !engine_sku_supplier(s->eng, lines[i].sku, &map))
            continue;
        if (!r->check && !(engine_supplier_trust(s->eng, map.supplier_id, &t) &&
                           t.check_before_confirm))
            continue;
        check_item *it = &items[n++];
        it->offer_id = map.offer_id;
        snprintf(it->spec_id, sizeof it->spec_id, "%s", map.spec_id);
        it->sku_id = map.sku_id;
        it->qty = lines[i].from_supplier;
        it->line_no = lines[i].line_no;
    }
    return n;
}

void check_start(server *s, req *r)
{
    check_ctx *k = calloc(1, sizeof *k);
    if (k == NULL) {
        /* Nothing can check it: the hold lapses; never a yes. */
        pack_answer(s, r, A_UNKNOWN, NULL, "out of memory for the supplier check");
        req_finish(s, r);
        return;
    }
    k->s = s;
    k->r = r;
    snprintf(k->order_id, sizeof k->order_id, "%s", r->op.order_id);
    s->checks_alive++;
    s->checks_started++;
    check_ctx *dup = NULL;
    HASH_FIND_STR(s->checks, k->order_id, dup);
    if (dup == NULL) {
        HASH_ADD_STR(s->checks, order_id, k);
        k->listed = true;
    }
    check_item items[ENG_LINES_MAX];
    check_call calls[ENG_LINES_MAX];
    size_t ni = items_of(s, r, items);
    if (ni > 0 && (k->items = malloc(ni * sizeof *k->items)) != NULL) {
        memcpy(k->items, items, ni * sizeof *items);
        k->n_items = ni;
    }
    size_t nc = check_plan(items, ni, calls);
    if (nc == 0) {
        decide(k, CHECK_PASS, NULL);  /* nothing left to check (cannot happen: defensive) */
        return;
    }
    if (s->supc == NULL) {
        decide(k, CHECK_UNAVAILABLE, "no supplier API (--supplier-url) to check supplier units");
        return;
    }
    int64_t elapsed_ms = (clock_mono_ns() - r->start_ns) / 1000000;
    int64_t budget = check_budget_ms(r->deadline_ms, elapsed_ms);
    evtimer_assign(&k->timer, s->base, budget_cb, k);
    struct timeval tv = {budget / 1000, (budget % 1000) * 1000};
    evtimer_add(&k->timer, &tv);
    k->timer_set = true;
    k->calls = (unsigned)nc;
    for (size_t i = 0; i < nc; i++) {
        if (supplier_order_preview(s->supc, calls[i].lines, calls[i].n, s->cfg->supplier_address,
                                   NULL, preview_done, k) != 0) {
            decide(k, CHECK_UNAVAILABLE,
                   "supplier check refused locally (call queue full); nothing is held, retry");
            return;
        }
        k->pending++;
        s->check_previews++;
    }
}

void check_wait(server *s, req *r)
{
    check_ctx *k = NULL;
    HASH_FIND_STR(s->checks, r->op.order_id, k);
    if (k == NULL) {
        pack_answer(s, r, A_UNKNOWN, NULL,
                    "the supplier check of this order did not finish here; its hold lapses, "
                    "retry with the same order_id");
        req_finish(s, r);
        return;
    }
    s->check_waits++;
    r->next_free = k->waiters;
    k->waiters = r;
}

void check_shutdown(server *s)
{
    s->checks_down = true;
    check_ctx *k, *tmp;
    HASH_ITER(hh, s->checks, k, tmp) {
        if (k->timer_set) {
            evtimer_del(&k->timer);
            k->timer_set = false;
        }
        k->decided = true;
        answer_all(k, A_UNKNOWN, NULL, "stockd is stopping; retry with the same order_id");
        if (k->op_queued && engine_cancel(s->eng, &k->op))
            k->op_queued = false;
        ctx_maybe_free(k);
    }
}
