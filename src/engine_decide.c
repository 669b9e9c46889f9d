/* engine_decide.c — the decisions: each op decided in arrival order
 * against its SKUs' counters, the rows it writes added to the batch. Pure. */
#include "engine_internal.h"

/* Every SKU taken into the batch has a sku_write (it blocks the SKU);
 * only the dirty ones are written. */
struct sku_write *ei_take_sku(eng_batch *b, eng_sku *s)
{
    assert(s->inflight == NULL);
    assert(b->n_sw < b->sw_cap);
    struct sku_write *w = &b->sw[b->n_sw++];
    w->sku = s;
    w->dirty = false;
    w->taken = 0;
    w->before_exists = s->exists;
    w->before_mapping = s->mapping;
    w->before = s->c;
    if (s->map != NULL)
        w->before_map = *s->map;
    s->inflight = w;
    return w;
}

/* True when the batch may not take another op: a single op could then
 * overflow one of its row arrays. */
bool ei_batch_full(const eng_batch *b)
{
    size_t room = b->rows_cap - ENG_SETTLE_PER_REPORT - OP_ROWS_ALL;
    return b->n_ops >= b->cap || b->n_sw >= b->cap || b->n_ow >= room ||
           b->n_ledger >= room || b->n_jobs >= room || b->n_alerts >= room;
}

static void touch_order(eng_batch *b, eng_order *o)
{
    if (o->inflight != NULL)
        return;
    assert(b->n_ow < b->rows_cap);
    struct order_write *w = &b->ow[b->n_ow++];
    w->o = o;
    ei_order_to_view(o, &w->before);
    o->inflight = w;
}

static void ledger_add(eng_batch *b, const eng_sku *s, const char *order_id, eng_move move,
                       int64_t d_on_hand, int64_t d_own_res, int64_t d_sup_res,
                       int64_t d_sup_rep, const char *reason)
{
    assert(b->n_ledger < b->rows_cap);
    eng_ledger_row *r = &b->ledger[b->n_ledger++];
    r->sku = s->name;
    r->order_id = order_id;
    r->move = move;
    r->d_own_on_hand = d_on_hand;
    r->d_own_reserved = d_own_res;
    r->d_supplier_reserved = d_sup_res;
    r->d_supplier_reported = d_sup_rep;
    r->reason = reason;
    r->at_ms = b->now_ms;
}

static void job_add(eng_batch *b, const eng_order *o, bool insert, eng_job_state st)
{
    assert(b->n_jobs < b->rows_cap);
    eng_job_row *j = &b->jobs[b->n_jobs++];
    j->insert = insert;
    j->order_id = o->id;
    j->line_no = o->line_no;
    j->sku = o->sku->name;
    j->qty = o->from_supplier;
    if (insert && o->sku->map != NULL)
        j->map = *o->sku->map;
    else
        memset(&j->map, 0, sizeof(j->map));
    j->state = st;
    j->at_ms = b->now_ms;
}

/* kind is a literal and order_id an order's own (orders outlive their
 * batches); the reason is copied: the op that gave it may be answered,
 * and freed, before an UNKNOWN batch is resolved. */
void ei_alert_add_named(eng_batch *b, const char *kind, const char *sku,
                            const char *order_id, const char *reason)
{
    assert(b->n_alerts < b->rows_cap);
    char *text = b->alert_text[b->n_alerts];
    eng_alert_row *a = &b->alerts[b->n_alerts++];
    ei_utf8_copy_cut(text, reason, ENG_REASON_MAX + 1);
    a->kind = kind;
    a->sku = sku;
    a->order_id = order_id;
    a->reason = text;
    a->at_ms = b->now_ms;
}

static void alert_add(eng_batch *b, const char *kind, const eng_sku *s, const char *order_id,
                      const char *reason)
{
    ei_alert_add_named(b, kind, s->name, order_id, reason);
}

/* A supplier's settings are about to change in this batch: keep the
 * before-image once per batch. NULL on out of memory (nothing changes). */
static eng_supp *touch_supp(engine *e, eng_batch *b, const char *id)
{
    eng_supp *p = ei_supp_get(e, id);
    if (p == NULL)
        return NULL;
    if (p->last_batch != b->id + 1) {
        assert(b->n_supw < b->cap);
        b->supw[b->n_supw].p = p;
        b->supw[b->n_supw].before = p->t;
        b->n_supw++;
        p->last_batch = b->id + 1;
    }
    return p;
}

/* Adaptive trust (engine.h eng_trust): the factor in use moves. */
static void trust_adapt(engine *e, eng_batch *b, const eng_sku *s, bool success)
{
    if (s->map == NULL)
        return;
    eng_supp *p = touch_supp(e, b, s->map->supplier_id);
    if (p == NULL)
        return;
    double *f = p->t.event_mode ? &p->t.event_trust : &p->t.trust;
    if (success) {
        *f += e->lim.trust_step;
        if (*f > p->t.ceiling)
            *f = p->t.ceiling;
    } else {
        *f *= e->lim.trust_cut;
    }
    assert(eng_trust_valid(&p->t));
}

/* The live offer no longer matches the mapping: stop selling its stock. */
static void map_break(engine *e, eng_batch *b, eng_sku *s, const char *reason)
{
    if (s->mapping != ENG_MAP_OK)
        return;
    s->mapping = ENG_MAP_BROKEN;
    ei_sku_recompute_sellable(e, s);
    alert_add(b, "mapping_broken", s, "", reason);
    e->st.mappings_broken++;
}

/* Returns an order's stock to the SKU (release, expire). */
static void order_return_stock(eng_batch *b, eng_order *o, eng_status to, eng_move move)
{
    eng_sku *s = o->sku;
    touch_order(b, o);
    s->c.own_reserved -= o->from_own;
    s->c.supplier_reserved -= o->from_supplier;
    ei_counters_check(&s->c);
    o->status = to;
    o->hold_expires_at_ms = 0;
    o->updated_at_ms = b->now_ms;
    o->available = eng_available(&s->c);
    ledger_add(b, s, o->id, move, 0, -o->from_own, -o->from_supplier, 0, "");
}

/* The op's view of its order: the whole order, or the line / part. */
static void op_view(eng_op *op, const eng_order *o)
{
    if (ei_order_is_cart(o->head))
        ei_order_whole_view(o->head, false, &op->order);
    else
        ei_order_to_view(o, &op->order);
}

/* Whether line o of a reserve takes supplier units that are to be checked
 * ("Checks"): units of a 1688-mapped SKU, asked for by the op or by its
 * supplier's check_before_confirm. Decided before any line is taken. */
static bool line_needs_check(const engine *e, const eng_op *op, const eng_order *o)
{
    const eng_sku *s = o->sku;
    if (s->mapping != ENG_MAP_OK || s->map == NULL || o->qty <= s->c.own_on_hand - s->c.own_reserved)
        return false;
    eng_trust t;
    return op->check || (engine_supplier_trust(e, s->map->supplier_id, &t) && t.check_before_confirm);
}

/* Takes a line's quantity: own stock first, then supplier stock. hold_ms:
 * the hold (0: confirmed at once); reason: the line's (NULL: none). */
static void reserve_line(eng_batch *b, const eng_op *op, eng_order *o, int64_t hold_ms,
                         const char *reason)
{
    eng_sku *s = o->sku;
    int64_t own_free = s->c.own_on_hand - s->c.own_reserved;
    int32_t from_own = (int32_t)(o->qty < own_free ? o->qty : own_free);
    int32_t from_sup = o->qty - from_own;
    touch_order(b, o);
    s->c.own_reserved += from_own;
    s->c.supplier_reserved += from_sup;
    ei_counters_check(&s->c);
    o->status = hold_ms > 0 ? ENG_ST_HELD : ENG_ST_CONFIRMED;
    o->from_own = from_own;
    o->from_supplier = from_sup;
    o->created_at_ms = o->updated_at_ms = b->now_ms;
    o->hold_expires_at_ms = hold_ms > 0 ? b->now_ms + hold_ms : 0;
    if (reason != NULL)
        ei_set_str(&o->reason, reason);
    o->available = eng_available(&s->c);
    ledger_add(b, s, o->id, ENG_MOVE_RESERVE, 0, from_own, from_sup, 0, "");
    if (ei_purchase_due(o))
        job_add(b, o, true, ENG_JOB_PENDING);
    if (o->part) {
        o->attempt = op->attempt;
        if (ei_part_deciding(o))
            ei_dec_link(o);
    }
}

/* The first line that cannot be met, or NULL: all lines are checked
 * before any is taken (lines of one SKU were summed at submit). */
static eng_order *first_unmet(eng_op *op, eng_order *h)
{
    FOR_LINES(h, l) {
        const eng_sku *s = l->sku;
        int64_t avail = s->exists ? eng_available(&s->c) : 0;
        if (!s->exists) {
            op->err = ENG_E_UNKNOWN_SKU;
        } else if (l->qty > avail) {
            op->err = ENG_E_INSUFFICIENT;
            op->err_available = avail;
        } else {
            continue;
        }
        op->err_line = op->n_lines > 0 ? ei_op_line_index(op, l) : -1;
        return l;
    }
    return NULL;
}

static void decide_reserve(engine *e, eng_batch *b, eng_op *op, eng_order *h)
{
    assert(h != NULL && h->head == h && h->pending > 0);
    h->pending--;
    if (h->status != ENG_ST_NONE) {
        /* A retry: the current record, nothing changes. */
        bool same;
        if (ei_order_is_cart(h)) {
            eng_cart c;
            int32_t bad;
            same = op->n_lines > 0 && eng_cart_of(op->lines, op->n_lines, &c, &bad) &&
                   ei_cart_matches(h, &c);
        } else {
            same = strcmp(h->sku->name, op->sku) == 0 && h->qty == op->qty;
        }
        if (!same) {
            op->err = ENG_E_CONFLICT;
            return;
        }
        if (h->part && h->status == ENG_ST_HELD && op->attempt != 0) {
            /* Another coordination of the order found it held: its part
             * now (an erase by the one before is refused), deciding. */
            h->attempt = op->attempt;
            ei_dec_link(h);
        }
        op_view(op, h);
        return;
    }
    if (first_unmet(op, h) != NULL) {
        if (h->part && op->err == ENG_E_INSUFFICIENT && ei_short_for_deciding(h->sku, h->qty)) {
            op->err_deciding = true;
            if (op->wait_ms > 0 && !op->wait_over_) {
                /* Wait for the deciding parts instead (engine.h "Waiting"):
                 * nothing was decided, the placeholder stays. */
                op->err = ENG_OK;
                op->err_available = 0;
                op->err_line = -1;
                op->park_ = true;
                h->pending++;
                return;
            }
            if (op->wait_over_)
                e->st.park_timeouts++;
        }
        ei_order_maybe_drop(e, h);
        return;
    }
    bool check = false;
    FOR_LINES(h, l)
        check = check || line_needs_check(e, op, l);
    /* A part's hold belongs to its coordinator's decision, which has no
     * step for a check: a supplier that asks for one before any yes is
     * refused here rather than sold unchecked. */
    if (check && (h->part || op->check_off || op->check_hold_ms < ENG_HOLD_MS_MIN)) {
        op->err = ENG_E_CHECK_FAILED;  /* nothing can check it: hold nothing */
        ei_order_maybe_drop(e, h);
        return;
    }
    FOR_LINES(h, l)
        reserve_line(b, op, l, check ? op->check_hold_ms : op->hold_ms,
                     check ? ENG_CHECK_PENDING : NULL);
    op->checking = check;
    op_view(op, h);
}

static void confirm_line(eng_batch *b, eng_order *o);
static void expire_all(eng_batch *b, eng_order *h);

/* Whether every line of h is held for its check ("Checks"). */
static bool order_checking(const eng_order *h)
{
    FOR_LINES((eng_order *)h, l)
        if (l->status != ENG_ST_HELD || l->reason == NULL || strcmp(l->reason, ENG_CHECK_PENDING) != 0)
            return false;
    return true;
}

/* The check passed: the order is the client's now (confirmed, or held for
 * the client's hold from its creation). */
static void end_check(engine *e, eng_batch *b, eng_op *op, eng_order *h)
{
    if (!order_checking(h)) {
        op->err = ENG_E_INVALID_STATE;
        return;
    }
    int64_t until = op->hold_ms > 0 ? h->created_at_ms + op->hold_ms : 0;
    if (b->now_ms >= h->hold_expires_at_ms || (op->hold_ms > 0 && b->now_ms >= until)) {
        expire_all(b, h);
        e->st.holds_expired++;
        op->err = ENG_E_EXPIRED;
        return;
    }
    FOR_LINES(h, l) {
        if (op->hold_ms == 0) {
            confirm_line(b, l);
        } else {
            touch_order(b, l);
            l->hold_expires_at_ms = until;
            l->updated_at_ms = b->now_ms;
        }
        ei_set_str(&l->reason, NULL);
    }
}

/* The check could not be made: the order never was (a retry decides anew). */
static void erase_checking(eng_batch *b, eng_op *op, eng_order *h)
{
    if (!order_checking(h)) {
        op->err = ENG_E_INVALID_STATE;
        return;
    }
    FOR_LINES(h, l)
        order_return_stock(b, l, ENG_ST_NONE, ENG_MOVE_RELEASE);
}

static bool line_shippable(const eng_order *l)
{
    return (l->status == ENG_ST_CONFIRMED && l->from_supplier == 0) ||
           l->status == ENG_ST_PURCHASED;
}

eng_status ei_order_status_working(const eng_order *h)
{
    if (h->line_next == NULL)
        return h->status;
    eng_line_view lv[ENG_LINES_MAX];
    size_t n = 0;
    FOR_LINES((eng_order *)h, l) {
        lv[n].status = l->status;
        lv[n].from_supplier = l->from_supplier;
        n++;
    }
    return eng_order_status_of(lv, n);
}

static void confirm_line(eng_batch *b, eng_order *o)
{
    touch_order(b, o);
    if (o->reason != NULL && strcmp(o->reason, ENG_CHECK_PENDING) == 0)
        ei_set_str(&o->reason, NULL);  /* a gateway confirmed it while it was checked */
    o->status = ENG_ST_CONFIRMED;
    o->hold_expires_at_ms = 0;
    o->updated_at_ms = b->now_ms;
    o->available = eng_available(&o->sku->c);
    if (ei_purchase_due(o))
        job_add(b, o, true, ENG_JOB_PENDING);
}

static void ship_line(eng_batch *b, eng_order *o)
{
    eng_sku *s = o->sku;
    touch_order(b, o);
    s->c.own_on_hand -= o->from_own;
    s->c.own_reserved -= o->from_own;
    ei_counters_check(&s->c);
    o->status = ENG_ST_SHIPPED;
    o->updated_at_ms = b->now_ms;
    o->available = eng_available(&s->c);
    ledger_add(b, s, o->id, ENG_MOVE_SHIP, -o->from_own, -o->from_own, 0, 0, "");
}

/* A line's purchase failed for good: every other line still held or
 * confirmed gives its stock back and ends failed (all or nothing); lines
 * already bought stay bought (the alert of the failed line says so). */
static void fail_open_lines(eng_batch *b, eng_order *h, const eng_order *except,
                            const char *reason)
{
    FOR_LINES(h, l) {
        if (l == except || (l->status != ENG_ST_CONFIRMED && l->status != ENG_ST_HELD))
            continue;
        if (l->status == ENG_ST_CONFIRMED && ei_purchase_due(l))
            job_add(b, l, false, ENG_JOB_CANCELLED);
        order_return_stock(b, l, ENG_ST_FAILED, ENG_MOVE_FAIL);
        ei_set_str(&l->reason, reason);
    }
}

static void expire_all(eng_batch *b, eng_order *h)
{
    FOR_LINES(h, l)
        order_return_stock(b, l, ENG_ST_EXPIRED, ENG_MOVE_EXPIRE);
}

/* A part of an order that never was (engine.h "Erasing"): its stock back,
 * its row deleted when the batch commits (ei_batch_seal), a ghost after. */
static void erase_part(eng_batch *b, eng_op *op, eng_order *h)
{
    assert(h->part);
    if (op->attempt != 0 && (h->attempt != op->attempt || h->status != ENG_ST_HELD)) {
        op->err = ENG_E_CONFLICT;  /* another coordination's part now */
    } else if (h->status == ENG_ST_HELD) {
        order_return_stock(b, h, ENG_ST_NONE, ENG_MOVE_RELEASE);
    } else if (h->status == ENG_ST_RELEASED || h->status == ENG_ST_EXPIRED) {
        touch_order(b, h);
        h->status = ENG_ST_NONE;
        h->updated_at_ms = b->now_ms;
    } else {
        op->err = ENG_E_INVALID_STATE;
    }
}

/* confirm, release, ship, expire: on the whole order (every line), or on
 * a part. All lines or none: the checks run before any line changes. */
static void decide_order_op(engine *e, eng_batch *b, eng_op *op, eng_order *h)
{
    if (h == NULL || h->status == ENG_ST_NONE) {
        op->err = ENG_E_NOT_FOUND;
        return;
    }
    eng_status st = ei_order_status_working(h);
    bool lapsed = st == ENG_ST_HELD && b->now_ms >= h->hold_expires_at_ms;
    eng_order *blocking = NULL;
    switch (op->kind) {
    case ENG_OP_CONFIRM:
        if (op->checked) {
            end_check(e, b, op, h);
            st = ei_order_status_working(h);
        } else if (st == ENG_ST_HELD && lapsed && !(h->part && op->decided)) {
            /* A part's lapse is the coordinator's to settle. */
            if (!h->part)
                expire_all(b, h);
            op->err = ENG_E_EXPIRED;
        } else if (st == ENG_ST_HELD) {
            FOR_LINES(h, l)
                confirm_line(b, l);
        } else if (st == ENG_ST_EXPIRED) {
            op->err = ENG_E_EXPIRED;
        } else if (st == ENG_ST_RELEASED || st == ENG_ST_FAILED) {
            op->err = ENG_E_INVALID_STATE;
        }
        break;
    case ENG_OP_RELEASE:
        if (op->erase) {
            if (h->part)
                erase_part(b, op, h);
            else
                erase_checking(b, op, h);
            break;
        }
        if (op->as_failed) {
            fail_open_lines(b, h, NULL, op->reason[0] ? op->reason : "another line failed");
            break;
        }
        FOR_LINES(h, l)
            if (blocking == NULL && l->status != ENG_ST_HELD && l->status != ENG_ST_CONFIRMED)
                blocking = l;
        if (blocking == NULL) {
            eng_status to = op->as_expired ? ENG_ST_EXPIRED : ENG_ST_RELEASED;
            eng_move mv = op->as_expired ? ENG_MOVE_EXPIRE : ENG_MOVE_RELEASE;
            FOR_LINES(h, l) {
                if (l->status == ENG_ST_CONFIRMED && ei_purchase_due(l))
                    job_add(b, l, false, ENG_JOB_CANCELLED);
                order_return_stock(b, l, to, mv);
            }
        } else if (st != ENG_ST_RELEASED && st != ENG_ST_EXPIRED) {
            op->err = ENG_E_INVALID_STATE;
            st = blocking->status;
        }
        break;
    case ENG_OP_SHIP:
        /* Supplier units ship only once bought upstream (purchased). */
        FOR_LINES(h, l)
            if (blocking == NULL && !line_shippable(l))
                blocking = l;
        if (blocking == NULL) {
            FOR_LINES(h, l)
                ship_line(b, l);
        } else if (st != ENG_ST_SHIPPED) {
            op->err = ENG_E_INVALID_STATE;
            st = blocking->status;
        }
        break;
    case ENG_OP_EXPIRE:
        if (lapsed && !h->part) {
            expire_all(b, h);
            e->st.holds_expired++;
        }
        break;
    default:
        assert(!"not an order op");
    }
    if (op->err == ENG_E_INVALID_STATE)
        op->err_status = st;
    if (op->err == ENG_OK)
        op_view(op, h);
    if (op->err == ENG_OK && op->erase)
        op->order.status = ENG_ST_RELEASED;  /* its record is gone; its stock is back */
}

/* The purchase worker bought the order's supplier units upstream. */
static void decide_purchased(engine *e, eng_batch *b, eng_op *op, eng_order *o)
{
    if (o == NULL || o->status == ENG_ST_NONE) {
        op->err = ENG_E_NOT_FOUND;
        return;
    }
    const char *up = o->upstream_order_id ? o->upstream_order_id : "";
    if (o->status == ENG_ST_CONFIRMED && o->from_supplier > 0) {
        touch_order(b, o);
        o->status = ENG_ST_PURCHASED;
        ei_set_str(&o->upstream_order_id, op->upstream_order_id);
        o->purchased_at_ms = o->updated_at_ms = b->now_ms;
        o->available = eng_available(&o->sku->c);
        job_add(b, o, false, ENG_JOB_DONE);
        trust_adapt(e, b, o->sku, true);
        e->st.purchased++;
    } else if ((o->status == ENG_ST_RELEASED || o->status == ENG_ST_EXPIRED) &&
               strcmp(up, op->upstream_order_id) != 0) {
        /* Bought after the gateway let the order go: the units are the
         * shop's now, on a 1688 order nobody sells. Support cancels it. */
        touch_order(b, o);
        ei_set_str(&o->upstream_order_id, op->upstream_order_id);
        o->updated_at_ms = b->now_ms;
        alert_add(b, "purchase_after_release", o->sku, o->id, op->upstream_order_id);
    } else if (!(o->status == ENG_ST_PURCHASED || o->status == ENG_ST_SHIPPED ||
                 o->status == ENG_ST_RELEASED || o->status == ENG_ST_EXPIRED ||
                 o->status == ENG_ST_FAILED)) {
        op->err = ENG_E_INVALID_STATE;
        op->err_status = o->status;
        return;
    } else if (o->status == ENG_ST_FAILED && strcmp(up, op->upstream_order_id) != 0) {
        /* Another line failed the order after this one was sent: bought
         * for an order that will not ship. */
        touch_order(b, o);
        ei_set_str(&o->upstream_order_id, op->upstream_order_id);
        o->updated_at_ms = b->now_ms;
        alert_add(b, "purchase_after_release", o->sku, o->id, op->upstream_order_id);
    }
    op_view(op, o);
}

/* The purchase failed for good: the order is rolled back, and the SKU
 * learns what the check proved. */
static void decide_purchase_failed(engine *e, eng_batch *b, eng_op *op, eng_order *o)
{
    if (o == NULL || o->status == ENG_ST_NONE) {
        op->err = ENG_E_NOT_FOUND;
        return;
    }
    if (o->status == ENG_ST_FAILED) {
        op_view(op, o);  /* a repeat */
        return;
    }
    if (o->status != ENG_ST_CONFIRMED || o->from_supplier == 0) {
        op->err = ENG_E_INVALID_STATE;
        op->err_status = o->status;
        return;
    }
    eng_sku *s = o->sku;
    const char *why = op->reason[0] ? op->reason : eng_fail_kind_name(op->fail_kind);
    job_add(b, o, false, ENG_JOB_FAILED);
    order_return_stock(b, o, ENG_ST_FAILED, ENG_MOVE_FAIL);
    ei_set_str(&o->reason, why);
    alert_add(b, "purchase_failed", s, o->id, op->reason);
    if (ei_order_is_cart(o->head)) {
        /* All or nothing: the order's other lines not yet bought go too. */
        char other[ENG_REASON_MAX + 1];
        eng_line_failed_reason(o->line_no, why, other);
        fail_open_lines(b, o->head, o, other);
    } else if (o->part) {
        /* The order's other parts held here go in the same commit (their
         * purchase jobs cancelled, never sent); parts elsewhere are the
         * cascade's (cart.h). Only those whose SKU this batch holds: the
         * ones the op waited for. */
        char other[ENG_REASON_MAX + 1];
        eng_line_failed_reason(o->line_no, why, other);
        for (int32_t k = 0; k < o->n_lines; k++) {
            eng_order *sib = k == o->line_no ? NULL : ei_line_find(e, op->order_id, k, true);
            if (sib != NULL && sib->part && sib->n_lines == o->n_lines && ei_in_batch(b, sib->sku))
                fail_open_lines(b, sib, NULL, other);
        }
    }
    switch (op->fail_kind) {
    case ENG_FAIL_STOCK:
        /* The check proved the figure wrong; believe nothing until the
         * next sync, and believe this supplier less from now on. */
        if (s->c.supplier_reported != 0)
            ledger_add(b, s, "", ENG_MOVE_SYNC, 0, 0, 0, -s->c.supplier_reported, "check: insufficient");
        s->c.supplier_reported = 0;
        trust_adapt(e, b, s, false);
        break;
    case ENG_FAIL_LINK:
        map_break(e, b, s, op->reason);
        break;
    default:
        break;
    }
    ei_sku_recompute_sellable(e, s);
    o->available = eng_available(&s->c);
    e->st.purchase_failed++;
    op_view(op, o);
}

static void decide_supplier_put(engine *e, eng_batch *b, eng_op *op)
{
    eng_supp *p = touch_supp(e, b, op->supplier.supplier_id);
    if (p == NULL) {
        op->err = ENG_E_INTERNAL;
        return;
    }
    p->t = op->trust;
}

/* The same upstream spec: what the figures are read from (cap and
 * fingerprint aside). */
static bool map_same_link(const eng_supplier_map *a, const eng_supplier_map *b)
{
    return strcmp(a->supplier_id, b->supplier_id) == 0 && a->offer_id == b->offer_id &&
           strcmp(a->spec_id, b->spec_id) == 0 && a->sku_id == b->sku_id;
}

static void decide_sku_put(engine *e, eng_batch *b, eng_op *op, eng_sku *s)
{
    eng_counters c = s->exists ? s->c : (eng_counters){0};
    eng_mapping mapping = s->exists ? s->mapping : ENG_MAP_NONE;
    op->mapping_new = op->has_supplier &&
                      !(s->exists && s->mapping == ENG_MAP_OK && s->map != NULL &&
                        map_same_link(s->map, &op->supplier));
    if (op->has_own_on_hand) {
        if (op->own_on_hand < c.own_reserved) {
            op->err = ENG_E_INSUFFICIENT;
            op->err_available = s->exists ? eng_available(&s->c) : 0;
            return;
        }
        c.own_on_hand = op->own_on_hand;
    }
    if (op->has_supplier) {
        if (s->map == NULL && (s->map = malloc(sizeof(*s->map))) == NULL) {
            op->err = ENG_E_INTERNAL;
            return;
        }
        *s->map = op->supplier;
        mapping = ENG_MAP_OK;
        (void)ei_supp_get(e, op->supplier.supplier_id);  /* OOM: defaults all the same */
    }
    if (op->has_supplier_reported) {
        c.supplier_reported = op->supplier_reported;
        c.supplier_synced_at_ms = b->now_ms;
        if (mapping == ENG_MAP_NONE)
            mapping = ENG_MAP_MANUAL;
    }
    int64_t d_on_hand = c.own_on_hand - (s->exists ? s->c.own_on_hand : 0);
    int64_t d_rep = c.supplier_reported - (s->exists ? s->c.supplier_reported : 0);
    s->c = c;
    s->mapping = mapping;
    s->exists = true;
    ei_sku_recompute_sellable(e, s);
    ei_counters_check(&s->c);
    ledger_add(b, s, "", ENG_MOVE_PUT, d_on_hand, 0, 0, d_rep, "");
    ei_stock_view(e, s, &s->c, s->mapping, s->map, &op->stock);
}

static void decide_adjust(engine *e, eng_batch *b, eng_op *op, eng_sku *s)
{
    if (!s->exists) {
        op->err = ENG_E_UNKNOWN_SKU;
        return;
    }
    int64_t nv = s->c.own_on_hand + op->delta;
    if (nv < s->c.own_reserved) {
        op->err = ENG_E_INSUFFICIENT;
        op->err_available = eng_available(&s->c);
        return;
    }
    if (nv > ENG_STOCK_MAX) {
        op->err = ENG_E_INVALID;
        return;
    }
    s->c.own_on_hand = nv;
    ei_counters_check(&s->c);
    ledger_add(b, s, "", ENG_MOVE_ADJUST, op->delta, 0, 0, 0, op->reason);
    ei_stock_view(e, s, &s->c, s->mapping, s->map, &op->stock);
}

static bool same_map(const eng_supplier_map *a, const eng_supplier_map *b)
{
    return a->offer_id == b->offer_id && a->sku_id == b->sku_id &&
           strcmp(a->spec_id, b->spec_id) == 0 && strcmp(a->supplier_id, b->supplier_id) == 0;
}

/* Bought units a snapshot taken at synced_at_ms must already show leave
 * supplier_reserved, each exactly once. */
static void settle_bought(engine *e, eng_batch *b, eng_sku *s, int64_t synced_at_ms)
{
    uint32_t n = 0;
    for (eng_order *o = s->orders; o != NULL && n < ENG_SETTLE_PER_REPORT; o = o->sku_next) {
        if ((o->status != ENG_ST_PURCHASED && o->status != ENG_ST_SHIPPED) ||
            o->supplier_settled || o->from_supplier == 0 || o->purchased_at_ms <= 0 ||
            o->purchased_at_ms > synced_at_ms - e->lim.upstream_lag_ms)
            continue;
        touch_order(b, o);
        o->supplier_settled = true;
        s->c.supplier_reserved -= o->from_supplier;
        ei_counters_check(&s->c);
        ledger_add(b, s, o->id, ENG_MOVE_SETTLE, 0, 0, -o->from_supplier, 0, "");
        e->st.settled_units += (uint64_t)o->from_supplier;
        n++;
    }
}

/* What a sync saw: only for a mapped SKU still mapped as it was read.
 * Returns whether it wrote (the SKU row, for synced_at, even when the
 * figure is unchanged; a ledger row only when it changed). */
static bool decide_supplier_report(engine *e, eng_batch *b, eng_op *op, eng_sku *s)
{
    if (!s->exists || s->mapping != ENG_MAP_OK || s->map == NULL)
        return false;
    if (op->has_supplier && !same_map(&op->supplier, s->map))
        return false;
    if (op->reason[0] != '\0') {
        map_break(e, b, s, op->reason);
        return true;
    }
    if (op->fingerprint != 0 && s->map->fingerprint != op->fingerprint) {
        if (s->map->fingerprint != 0) {
            map_break(e, b, s, "fingerprint changed (price or attributes)");
            return true;
        }
        s->map->fingerprint = op->fingerprint;  /* first sight: adopted */
    }
    /* A figure asked for before the one we hold (a retried push, a slow
     * call) is older news: it must not undo the newer one. */
    if (op->synced_at_ms < s->c.supplier_synced_at_ms)
        return true;
    int64_t d_rep = op->supplier_reported - s->c.supplier_reported;
    s->c.supplier_reported = op->supplier_reported;
    if (op->synced_at_ms > s->c.supplier_synced_at_ms)
        s->c.supplier_synced_at_ms = op->synced_at_ms;
    ei_counters_check(&s->c);
    if (d_rep != 0)
        ledger_add(b, s, "", ENG_MOVE_SYNC, 0, 0, 0, d_rep, "");
    settle_bought(e, b, s, op->synced_at_ms);
    ei_sku_recompute_sellable(e, s);
    return true;
}

/* Decides one op against its SKU's working state; returns whether it
 * wrote anything. Any write makes the SKU row dirty, so every batch that
 * touches a SKU passes that SKU's epoch fence. */
bool ei_decide(engine *e, eng_batch *b, eng_op *op)
{
    eng_sku *s = op->sku_p;
    size_t ledger_before = b->n_ledger, ow_before = b->n_ow, alerts_before = b->n_alerts;
    switch (op->kind) {
    case ENG_OP_RESERVE:
        decide_reserve(e, b, op, ei_order_of_op(e, op));
        break;
    case ENG_OP_CONFIRM:
    case ENG_OP_RELEASE:
    case ENG_OP_SHIP:
    case ENG_OP_EXPIRE:
        decide_order_op(e, b, op, ei_order_of_op(e, op));
        break;
    case ENG_OP_SKU_PUT:
        decide_sku_put(e, b, op, s);
        break;
    case ENG_OP_ADJUST:
        decide_adjust(e, b, op, s);
        break;
    case ENG_OP_SUPPLIER_REPORT:
        return decide_supplier_report(e, b, op, s);
    case ENG_OP_PURCHASED:
        decide_purchased(e, b, op, ei_line_of_op(e, op));
        break;
    case ENG_OP_PURCHASE_FAILED:
        decide_purchase_failed(e, b, op, ei_line_of_op(e, op));
        break;
    case ENG_OP_SUPPLIER_PUT:
        decide_supplier_put(e, b, op);
        return false;  /* no SKU row: its supplier row makes the batch */
    default:
        assert(!"bad op kind");
    }
    return b->n_ledger != ledger_before || b->n_ow != ow_before || b->n_alerts != alerts_before;
}
