/* cart_coord.c — the phases of one coordination (cart_internal.h):
 * parts placed on their SKUs' owners (all at once, or one by one in SKU
 * order when a part must wait for carts still deciding), the decision
 * asked of MariaDB, the parts confirmed or released, and the answer from
 * what they replied. Every part is reached through peer_call, this node
 * included through its own address: one path for every part.
 */
#include "cart_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "stockd/clock.h"

/* ------------------------------------------------------------ peer calls */

static void part_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                          const char *reason);

/* Budget of a call of the current phase: what is left of the client's
 * deadline, at least CART_PHASE_MIN_MS after the first phase. */
static int64_t phase_budget(const coord *co)
{
    int64_t left = co->end_ms - clock_mono_ms();
    if (co->phase != CP_PLACE && left < CART_PHASE_MIN_MS)
        left = CART_PHASE_MIN_MS;
    if (left < 1)
        left = 1;
    if (left > CART_DEADLINE_MAX_MS)
        left = CART_DEADLINE_MAX_MS;
    return left;
}

/* Sends method for part p to its SKU's owner (this node included, through
 * its own address: one path for every part). */
static void part_call(cart *c, coord *co, cart_part *p, const char *method)
{
    const ring_node *nodes;
    size_t nn = ring_nodes(c->env.rg, &nodes);
    uint32_t o = ring_owner(c->env.rg, p->sku, strlen(p->sku));
    assert(o < nn);
    (void)nn;
    int64_t budget = phase_budget(co);
    msgpack_object_kv kv[12];
    uint32_t k = 0;
    cart_kv_str(&kv[k++], "order_id", co->order_id);
    cart_kv_str(&kv[k++], "sku", p->sku);
    bool reserve = strcmp(method, "reserve") == 0;
    bool release = strcmp(method, "release") == 0;
    if (reserve) {
        cart_kv_int(&kv[k++], "qty", p->qty);
        int64_t hold = co->hold_ms > 0 ? co->hold_ms : (int64_t)c->env.cfg->cart_hold_ms;
        if (!co->plain || co->hold_ms > 0)
            cart_kv_int(&kv[k++], "hold_ms", hold);
    }
    if (!co->plain) {
        cart_kv_int(&kv[k++], "part_lines", co->n_lines);
        cart_kv_int(&kv[k++], "line_no", p->line_no);
        /* Waiting (engine.h): a part held for the client is never waited
         * for, so its placement may wait in parallel; a deciding part
         * waits only in the one global order (CP_SEQ). */
        int64_t wait = budget - CART_WAIT_MARGIN_MS;
        bool may_wait = co->phase == CP_SEQ || (co->phase == CP_PLACE && co->attempt == 0);
        if (reserve && co->attempt != 0)
            cart_kv_int(&kv[k++], "attempt", (int64_t)co->attempt);
        if (reserve && may_wait && wait > 0)
            cart_kv_int(&kv[k++], "wait_ms", wait < ENG_WAIT_MS_MAX ? wait : ENG_WAIT_MS_MAX);
        if (release && co->erase) {
            cart_kv_bool(&kv[k++], "erase", true);
            if (co->phase == CP_RETREAT)
                cart_kv_int(&kv[k++], "attempt", (int64_t)co->attempt);
        }
    }
    if (strcmp(method, "order.get") != 0)
        cart_kv_int(&kv[k++], "deadline_ms", budget);
    if (strcmp(method, "confirm") == 0)
        cart_kv_bool(&kv[k++], "decided", true);
    assert(k <= 12);
    msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = k, .ptr = kv}};
    p->res = CART_PR_NONE;
    co->pending++;
    peer_call(c->env.peers, nodes[o].name, nodes[o].host, nodes[o].port, method, &map, "_fwd",
              ring_version(c->env.rg), (uint32_t)(budget + CART_SLACK_MS), part_reply_cb, p);
}

/* Calls method on every part that sel accepts; false when none was. */
bool ct_parts_call(cart *c, coord *co, const char *method, bool (*sel)(const cart_part *p))
{
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        if (sel != NULL && !sel(p))
            continue;
        part_call(c, co, p, method);
        any = true;
    }
    return any;
}

/* ------------------------------------------------------------ phases */

static void phase_end(cart *c, coord *co);
static void decide_cb(const char *order_id, int result, const store_abort_why *why, void *arg);

/* What an abort of a reserve tells the client, kept with the decision so
 * that a retry tells it again: a refusal (not retryable) of the failing
 * part; false for a transport failure or a retryable error (nothing
 * stored: a retry then finds an abort without one, and answers expired). */
static bool abort_why(const coord *co, store_abort_why *out)
{
    if (co->kind != CK_RESERVE || co->fail_part < 0)
        return false;
    const cart_part *p = &co->parts[co->fail_part];
    if (p->res != CART_PR_ERROR || p->retryable || p->err == ENG_E_INTERNAL ||
        strlen(p->code) > STORE_ABORT_CODE_MAX)
        return false;
    memset(out, 0, sizeof *out);
    snprintf(out->code, sizeof out->code, "%s", p->code);
    out->line = p->client_line;
    snprintf(out->sku, sizeof out->sku, "%s", p->sku);
    out->available = p->has_available ? p->available : -1;
    return true;
}

void ct_start_decide(cart *c, coord *co, store_decision want)
{
    co->phase = CP_DECIDE;
    co->want = want;
    co->decide_tries++;
    co->store_wait = true;
    store_abort_why why;
    bool has_why = want == STORE_DECIDE_ABORT && abort_why(co, &why);
    if (store_cart_decide(c->env.st, co->order_id, want, has_why ? &why : NULL, decide_cb, co) != 0) {
        co->store_wait = false;
        ct_coord_answer_err(c, co, ENG_E_UNAVAILABLE, "decision not recorded (store busy); retry with the same order_id");
    }
}

bool ct_sel_all(const cart_part *p)
{
    (void)p;
    return true;
}

/* Releases of an abort: every part that may exist (one never placed
 * answers not_found, harmless); a part already ended needs none. */
static bool sel_release(const cart_part *p)
{
    if (p->res == CART_PR_ERROR && p->err == ENG_E_CONFLICT)
        return false;  /* not ours: the order_id names another order's line */
    return !(p->have_rec && cart_status_ended(p->rec.status));
}

static bool sel_held(const cart_part *p)
{
    return p->have_rec && p->rec.status == ENG_ST_HELD;
}

static void start_release(cart *c, coord *co, eng_err final_err, int32_t fail_part)
{
    co->phase = CP_RELEASE;
    co->final_err = final_err;
    co->fail_part = fail_part;
    if (fail_part >= 0)
        co->fail_copy = co->parts[fail_part];
    c->st.aborted++;
    if (!ct_parts_call(c, co, "release", sel_release))
        phase_end(c, co);
}

static void start_confirm(cart *c, coord *co)
{
    co->phase = CP_CONFIRM;
    c->st.confirmed++;
    if (!ct_parts_call(c, co, "confirm", sel_held))
        phase_end(c, co);
}

static bool sel_unreached(const cart_part *p)
{
    return p->res == CART_PR_FAIL;
}

/* The refusal a standing ABORT carries, as one instance answers it. */
static void answer_told(cart *c, coord *co)
{
    cart_part p;
    cart_told_part(co->told.code, co->told.line, co->told.sku, co->told.available, &p);
    msgpack_sbuffer_clear(&c->sb);
    cart_pack_error(&c->pk, co->msgid, p.err, p.code, p.msg, false, &p,
                    co->told.line >= 0 && p.sku[0]);
    ct_coord_answer(c, co);
}

/* Answers after confirm / ship / get calls: the first failure, else the
 * merged record. */
static void finish_records(cart *c, coord *co, bool skip_not_found)
{
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        if (p->res == CART_PR_FAIL) {
            ct_coord_answer_part_err(c, co, p);
            return;
        }
    }
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        if (p->res == CART_PR_ERROR && !(skip_not_found && p->err == ENG_E_NOT_FOUND)) {
            ct_coord_answer_part_err(c, co, p);
            return;
        }
        any = any || p->have_rec;
    }
    if (!any)
        ct_coord_answer_err(c, co, ENG_E_NOT_FOUND, "order not found");
    else
        ct_coord_answer_merged(c, co);
}

/* Answers what an abort decided, once its releases are done. */
static void finish_release(cart *c, coord *co)
{
    /* A release lost on the way (timeout, connection) would leave its part
     * held until the hold lapses: once more while the client waits. A
     * release finding nothing (the part never placed, or ended already)
     * answers not_found, which is fine here. */
    if (++co->release_rounds < CART_RELEASE_ROUNDS && ct_parts_call(c, co, "release", sel_unreached))
        return;
    if (co->has_told && co->kind == CK_RESERVE) {
        answer_told(c, co);
        return;
    }
    if (co->has_told) {
        /* A refused order left nothing: as on one instance. */
        ct_coord_answer_err(c, co, ENG_E_NOT_FOUND, "order not found");
        return;
    }
    if (co->fail_part >= 0) {
        ct_coord_answer_part_err(c, co, &co->fail_copy);
        return;
    }
    if (co->final_err != ENG_OK) {
        ct_coord_answer_err(c, co, co->final_err,
                         co->final_err == ENG_E_EXPIRED ? "the order was aborted (a hold lapsed or a line failed)"
                                                        : "order not settled; retry with the same order_id");
        return;
    }
    /* The release replies are the records now; a part that refused
     * (e.g. shipped) keeps its error as the answer, one that found
     * nothing to release does not. */
    finish_records(c, co, true);
}

/* ---- Waiting in one global order (engine.h "Waiting").
 * The first placement goes to every owner at once and waits for nobody.
 * When a part finds its SKU short only because of parts of carts still
 * deciding, the cart backs out of every part it holds on a SKU after that
 * one (by SKU name: erased, only if still this coordination's) and places
 * the rest one by one in SKU order, each allowed to wait. A cart then
 * waits only while holding SKUs before the one it waits for, so no circle
 * of carts can wait on each other; a wait ends by the deadline. */

static int seq_cmp_sku(const coord *co, uint8_t a, uint8_t b)
{
    return strcmp(co->parts[a].sku, co->parts[b].sku);
}

static void seq_start(cart *c, coord *co)
{
    co->n_seq = 0;
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        if (p->res == CART_PR_RECORD && p->rec.status == ENG_ST_HELD)
            continue;
        /* Insertion by SKU: at most ENG_LINES_MAX. */
        uint32_t k = co->n_seq++;
        while (k > 0 && seq_cmp_sku(co, co->seq[k - 1], (uint8_t)i) > 0) {
            co->seq[k] = co->seq[k - 1];
            k--;
        }
        co->seq[k] = (uint8_t)i;
    }
    assert(co->n_seq > 0);
    co->phase = CP_SEQ;
    co->seq_at = 0;
    c->st.sequential++;
    part_call(c, co, &co->parts[co->seq[0]], "reserve");
}

static void start_retreat(cart *c, coord *co, int32_t wait)
{
    co->phase = CP_RETREAT;
    co->short_part = wait;
    co->erase = true;
    const char *at = co->parts[wait].sku;
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        p->retreat = p->res == CART_PR_RECORD && p->rec.status == ENG_ST_HELD && strcmp(p->sku, at) > 0;
        if (p->retreat) {
            part_call(c, co, p, "release");
            any = true;
        }
    }
    co->erase = false;
    if (!any)
        seq_start(c, co);
}

static void retreat_done(cart *c, coord *co)
{
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        if (!p->retreat)
            continue;
        p->retreat = false;
        if (p->res != CART_PR_RECORD || p->rec.status != ENG_ST_RELEASED) {
            /* Not erased (another coordination of the order holds it now,
             * or the owner did not answer): end this one by the decision. */
            co->fail_part = co->short_part;
            ct_start_decide(c, co, STORE_DECIDE_ABORT);
            return;
        }
        p->res = CART_PR_NONE;
        p->have_rec = false;
    }
    seq_start(c, co);
}

static void place_done(cart *c, coord *co);

static void seq_next(cart *c, coord *co)
{
    uint8_t i = co->seq[co->seq_at];
    cart_part *p = &co->parts[i];
    if (p->res != CART_PR_RECORD) {
        co->fail_part = i;
        ct_start_decide(c, co, STORE_DECIDE_ABORT);
        return;
    }
    if (++co->seq_at < co->n_seq) {
        part_call(c, co, &co->parts[co->seq[co->seq_at]], "reserve");
        return;
    }
    place_done(c, co);  /* every part answered: held, or ended (a retry) */
}

/* Reserve: every part answered (placed, refused or not reached). */
static void place_done(cart *c, coord *co)
{
    if (co->plain) {
        cart_part *p = &co->parts[0];
        if (p->res == CART_PR_RECORD) {
            co->n_lines = 1;
            ct_coord_answer_merged(c, co);  /* one line: the record with its lines */
        } else {
            ct_coord_answer_part_err(c, co, p);
        }
        return;
    }
    int32_t fail = -1, wait = -1;
    uint32_t held = 0, ended = 0;
    for (uint32_t i = 0; i < co->n; i++) {
        cart_part *p = &co->parts[i];
        if (p->res == CART_PR_ERROR && p->deciding && co->phase == CP_PLACE && co->attempt != 0) {
            /* Short only for carts still deciding: placed again, waiting,
             * in SKU order (below). */
            if (wait < 0 || strcmp(p->sku, co->parts[wait].sku) < 0)
                wait = (int32_t)i;
            continue;
        }
        if (p->res != CART_PR_RECORD) {
            if (fail < 0)
                fail = (int32_t)i;
            continue;
        }
        held += p->rec.status == ENG_ST_HELD;
        ended += cart_status_ended(p->rec.status);
    }
    if (fail < 0 && wait >= 0 && ended == 0) {
        start_retreat(c, co, wait);
        return;
    }
    if (fail < 0 && wait >= 0)
        fail = wait;
    co->fail_part = fail;
    if (fail >= 0) {
        ct_start_decide(c, co, STORE_DECIDE_ABORT);
        return;
    }
    if (ended == 0 && held == co->n && co->hold_ms > 0) {
        ct_coord_answer_merged(c, co);
        return;
    }
    if (ended == co->n) {
        ct_coord_answer_merged(c, co);  /* a retry of an order already ended */
        return;
    }
    ct_start_decide(c, co, ended == 0 ? STORE_DECIDE_CONFIRM : STORE_DECIDE_ABORT);
}

static void decide_cb(const char *order_id, int result, const store_abort_why *why, void *arg)
{
    (void)order_id;
    coord *co = arg;
    co->store_wait = false;
    cart *c = co->owner;
    if (c == NULL) {
        if (co->pending == 0)
            free(co);
        return;
    }
    assert(co->phase == CP_DECIDE);
    if (result < 0 && co->decide_tries < CART_DECIDE_TRIES) {
        /* Again, from the loop (the store's reader is not to be called
         * from inside its delivery): giving up leaves every part held
         * until its hold lapses, which is what stockbench's audit saw. */
        co->defer_decide = true;
        ct_coord_defer(c, co);
        return;
    }
    if (result < 0) {
        /* Nothing known: leave the parts; their holds lapse and settle. */
        if (co->kind == CK_RESERVE && co->fail_part >= 0 && co->parts[co->fail_part].res == CART_PR_ERROR)
            ct_coord_answer_part_err(c, co, &co->parts[co->fail_part]);
        else
            ct_coord_answer_err(c, co, ENG_E_UNAVAILABLE,
                             "order decision not recorded (MariaDB); retry with the same order_id");
        return;
    }
    bool confirm = result == STORE_DECIDE_CONFIRM;
    if (!confirm && why != NULL) {
        /* A refused order: it leaves nothing, and says so again. */
        co->has_told = true;
        co->told = *why;
        co->erase = true;
    }
    switch (co->kind) {
    case CK_RESERVE:
        if (confirm) {
            /* Decided (now or by an earlier attempt): every part exists. */
            co->final_err = ENG_OK;
            start_confirm(c, co);
        } else if (co->fail_part >= 0 || co->has_told) {
            /* Refused (a part refused or not reached): no part of it
             * stays, none tells a record (engine.h "Erasing"). */
            co->erase = true;
            start_release(c, co, ENG_OK, co->fail_part);
        } else {
            /* A fresh confirm that lost to a lapsed part, or a retry finding
             * a half-ended order: finish the abort; the order is over. */
            start_release(c, co, ENG_E_EXPIRED, -1);
        }
        return;
    case CK_CONFIRM:
        if (confirm && co->fail_part < 0) {
            co->phase = CP_CONFIRM;
            c->st.confirmed++;
            ct_parts_call(c, co, "confirm", ct_sel_all);
        } else {
            start_release(c, co, ENG_E_EXPIRED, -1);
        }
        return;
    case CK_RELEASE:
        co->phase = CP_RELEASE;
        co->final_err = ENG_OK;
        co->fail_part = -1;
        c->st.aborted++;
        ct_parts_call(c, co, "release", ct_sel_all);
        return;
    default:
        assert(!"decision for a call that needs none");
    }
}

/* All peer calls of the phase ended. */
static void phase_end(cart *c, coord *co)
{
    switch (co->phase) {
    case CP_PLACE:
        place_done(c, co);
        return;
    case CP_RETREAT:
        retreat_done(c, co);
        return;
    case CP_SEQ:
        seq_next(c, co);
        return;
    case CP_CONFIRM:
        finish_records(c, co, false);
        return;
    case CP_RELEASE:
        finish_release(c, co);
        return;
    case CP_OP:
        if (co->kind == CK_WATCH)
            ct_watch_finish(c, co);
        else
            finish_records(c, co, co->kind == CK_GET);
        return;
    default:
        assert(!"peer calls ended in a phase without any");
    }
}

static void part_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                          const char *reason)
{
    cart_part *p = ctx;
    coord *co = p->co;
    assert(co->pending > 0);
    co->pending--;
    if (co->owner == NULL) {
        if (co->pending == 0 && !co->store_wait)
            free(co);
        return;
    }
    cart_part_take_reply(p, error, result, reason);
    if (co->pending == 0)
        phase_end(co->owner, co);
}
