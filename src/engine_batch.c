/* engine_batch.c — batches: assembled from the FIFO heads, sealed for the
 * store, then finalized (committed) or restored (aborted, unknown) and the
 * ops answered. Pure. */
#include "engine_internal.h"

static void cancel_fifo(engine *e, eng_sku *s, eng_err err);

/* ------------------------------------------------------------ batches */

static eng_batch *batch_get(engine *e)
{
    eng_batch *b = e->free_batches;
    if (b != NULL) {
        e->free_batches = b->next_free;
    } else {
        size_t cap = e->lim.batch_ops_max;
        /* An op writes at most OP_ROWS_MAX rows of each kind, a supplier
         * report up to ENG_SETTLE_PER_REPORT more; ei_batch_full() stops
         * taking ops before any array could overflow. */
        size_t rows = 2 * cap + ENG_SETTLE_PER_REPORT + 2 * OP_ROWS_ALL;
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->sw_cap = cap + ENG_LINES_MAX;
        b->rows_cap = rows;
        b->sw = calloc(b->sw_cap, sizeof(*b->sw));
        b->sku_rows = calloc(b->sw_cap, sizeof(*b->sku_rows));
        b->ow = calloc(rows, sizeof(*b->ow));
        b->order_rows = calloc(rows, sizeof(*b->order_rows));
        b->ledger = calloc(rows, sizeof(*b->ledger));
        b->jobs = calloc(rows, sizeof(*b->jobs));
        b->alerts = calloc(rows, sizeof(*b->alerts));
        b->alert_text = calloc(rows, sizeof(*b->alert_text));
        b->supw = calloc(cap, sizeof(*b->supw));
        b->sup_rows = calloc(cap, sizeof(*b->sup_rows));
        b->bal = calloc(ENG_ASIDE_ALERTS_PER_BATCH, sizeof(*b->bal));
        if (!b->sw || !b->sku_rows || !b->ow || !b->order_rows || !b->ledger || !b->jobs ||
            !b->alerts || !b->alert_text || !b->supw || !b->sup_rows || !b->bal) {
            ei_batch_free_mem(b);
            return NULL;
        }
    }
    b->ops_head = b->ops_tail = NULL;
    b->n_ops = b->n_sw = b->n_ow = b->n_ledger = 0;
    b->n_jobs = b->n_alerts = b->n_supw = b->n_bal = 0;
    b->next_free = NULL;
    b->state = B_FLIGHT;
    return b;
}

static void batch_put(engine *e, eng_batch *b)
{
    b->state = B_FREE;
    if (b->cap != e->lim.batch_ops_max) {
        ei_batch_free_mem(b);
        return;
    }
    b->next_free = e->free_batches;
    e->free_batches = b;
}

static void batch_append_op(eng_batch *b, eng_op *op)
{
    op->next = NULL;
    op->prev = b->ops_tail;
    if (b->ops_tail)
        b->ops_tail->next = op;
    else
        b->ops_head = op;
    b->ops_tail = op;
    b->n_ops++;
}

/* Builds the exported rows from the working state after all decisions. */
void ei_batch_seal(eng_batch *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n_sw; i++) {
        if (!b->sw[i].dirty)
            continue;
        const eng_sku *s = b->sw[i].sku;
        eng_sku_row *r = &b->sku_rows[k++];
        r->sku = s->name;
        r->insert = !b->sw[i].before_exists;
        r->c = s->c;
        r->mapping = s->mapping;
        r->map = (s->mapping == ENG_MAP_OK || s->mapping == ENG_MAP_BROKEN) ? s->map : NULL;
        r->epoch = s->epoch;
    }
    b->n_sku_rows = k;
    for (size_t i = 0; i < b->n_ow; i++) {
        eng_order_row *r = &b->order_rows[i];
        r->insert = b->ow[i].before.status == ENG_ST_NONE;
        const eng_order *o = b->ow[i].o;
        r->erase = o->status == ENG_ST_NONE;
        ei_order_to_view(o, &r->o);
        eng_status st = r->o.status;
        r->notify = st != b->ow[i].before.status &&
                    (st == ENG_ST_PURCHASED || st == ENG_ST_FAILED || st == ENG_ST_EXPIRED);
        if (r->notify && ei_order_is_cart(o->head)) {
            /* Told once per batch, when the whole order reached it. */
            eng_order *h = o->head;
            r->notify = h->notify_mark != b->id + 1 && ei_order_status_working(h) == st;
            if (r->notify)
                h->notify_mark = b->id + 1;
        }
    }
    for (size_t i = 0; i < b->n_supw; i++) {
        b->sup_rows[i].supplier_id = b->supw[i].p->id;
        b->sup_rows[i].t = b->supw[i].p->t;
    }
}

bool ei_in_batch(const eng_batch *b, const eng_sku *s)
{
    return s->inflight != NULL && s->inflight >= b->sw && s->inflight < b->sw + b->n_sw;
}

/* True when every ticket of op heads its FIFO and its SKU is free or in b;
 * *need is how many SKUs b would have to take. */
static bool tickets_ready(const eng_batch *b, const eng_op *op, size_t *need)
{
    size_t n = 0;
    for (const eng_op *t = op->tk_next; t != NULL; t = t->tk_next) {
        const eng_sku *s = t->sku_p;
        if (s->q_head != t)
            return false;
        if (s->inflight == NULL)
            n++;
        else if (!ei_in_batch(b, s))
            return false;
    }
    *need = n;
    return true;
}

/* Decides an op that waited on several FIFOs, once it heads all of them:
 * every SKU it names joins the batch, so the decision is one commit.
 * False when it must wait (a sibling FIFO is behind, or the batch is full);
 * then a later pass over the sibling SKU takes it. */
static bool take_tickets(engine *e, eng_batch *b, eng_op *op)
{
    size_t need;
    if (!tickets_ready(b, op, &need) || b->n_sw + need > b->sw_cap)
        return false;
    for (eng_op *t = op->tk_next; t != NULL; t = t->tk_next) {
        eng_sku *s = t->sku_p;
        if (s->inflight == NULL) {
            (void)ei_take_sku(b, s);
            if (s->exists)
                ei_sku_recompute_sellable(e, s);
        }
        ei_fifo_unlink(e, t);  /* keeps t->sku_p: read below */
    }
    op->state_ = OP_BATCHED;
    batch_append_op(b, op);
    bool wrote = ei_decide(e, b, op);
    eng_op *t = op->tk_next;
    while (t != NULL) {
        eng_op *next = t->tk_next;
        if (wrote)
            t->sku_p->inflight->dirty = true;
        ei_internal_op_free(e, t);
        t = next;
    }
    op->tk_next = NULL;
    return true;
}

/* Decides the ops at the head of a SKU the batch holds, up to
 * batch_sku_ops_max, stopping at an order that must wait for a sibling. */
static void drain_sku(engine *e, eng_batch *b, struct sku_write *w)
{
    eng_sku *s = w->sku;
    while (w->taken < e->lim.batch_sku_ops_max && !ei_batch_full(b) && s->q_head != NULL) {
        eng_op *op = s->q_head;
        w->taken++;
        if (op->tk_parent != NULL) {
            if (!take_tickets(e, b, op->tk_parent))
                break;
            continue;
        }
        ei_fifo_unlink(e, op);
        op->state_ = OP_BATCHED;
        batch_append_op(b, op);
        if (ei_decide(e, b, op))
            w->dirty = true;
        if (op->park_) {
            /* It waits off the FIFO: not in this batch, not answered. */
            assert(b->ops_tail == op);
            b->ops_tail = op->prev;
            if (b->ops_tail)
                b->ops_tail->next = NULL;
            else
                b->ops_head = NULL;
            b->n_ops--;
            op->park_ = false;
            ei_park(e, s, op);
            if (!op->waited_)
                e->st.park_waits++;
            op->waited_ = true;
        }
    }
}

bool engine_has_ready(const engine *e)
{
    return e->ready_head != NULL || e->pal_len > 0;
}

/* Set-aside alerts ride in the next batch (alerts are written by batches,
 * so none is lost): the oldest ENG_ASIDE_ALERTS_PER_BATCH. */
static void take_aside_alerts(engine *e, eng_batch *b)
{
    size_t n = e->pal_len < ENG_ASIDE_ALERTS_PER_BATCH ? e->pal_len : ENG_ASIDE_ALERTS_PER_BATCH;
    if (n == 0)
        return;
    memcpy(b->bal, e->pal, n * sizeof(*b->bal));
    memmove(e->pal, e->pal + n, (e->pal_len - n) * sizeof(*e->pal));
    e->pal_len -= n;
    b->n_bal = n;
    for (size_t i = 0; i < n; i++)
        ei_alert_add_named(b, "set_aside", b->bal[i].sku, b->bal[i].order_id, b->bal[i].why);
}

/* The batch did not commit: its set-aside alerts wait again, first. */
static void give_back_aside_alerts(engine *e, eng_batch *b)
{
    size_t room = ENG_ASIDE_ALERTS_MAX - e->pal_len, n = b->n_bal;
    if (n > room) {
        e->st.aside_alerts_dropped += n - room;
        n = room;
    }
    if (n > 0 && e->pal != NULL) {
        memmove(e->pal + n, e->pal, e->pal_len * sizeof(*e->pal));
        memcpy(e->pal, b->bal, n * sizeof(*e->pal));
        e->pal_len += n;
    }
    b->n_bal = 0;
}

eng_batch *engine_next_batch(engine *e, int64_t now_ms)
{
    if (e->ready_head == NULL && e->pal_len == 0)
        return NULL;
    eng_batch *b = batch_get(e);
    if (b == NULL)
        return NULL;  /* out of memory: the work stays queued */
    b->id = e->next_batch_id++;
    b->now_ms = now_ms;
    take_aside_alerts(e, b);
    /* Every SKU the batch takes is drained in turn (sw order), so the SKUs
     * an order of several lines pulls in ei_decide their following ops in the
     * same batch too. */
    size_t cur = 0;
    while (!ei_batch_full(b)) {
        if (cur < b->n_sw) {
            drain_sku(e, b, &b->sw[cur++]);
            continue;
        }
        eng_sku *s = ei_ready_pop(e);
        if (s == NULL)
            break;
        if (s->q_len == 0 || s->inflight != NULL)
            continue;
        size_t need;
        if (s->q_head->tk_parent != NULL && !tickets_ready(b, s->q_head->tk_parent, &need))
            continue;  /* waits on a sibling FIFO, whose pass takes it */
        (void)ei_take_sku(b, s);
        if (s->exists && !s->global)
            ei_sku_recompute_sellable(e, s);  /* trust may have moved since its last batch */
    }
    if (b->n_ops == 0 && b->n_bal == 0) {
        for (size_t i = 0; i < b->n_sw; i++) {
            b->sw[i].sku->inflight = NULL;
            ei_ready_push(e, b->sw[i].sku);
        }
        batch_put(e, b);
        return NULL;
    }
    ei_batch_seal(b);
    e->st.batches++;
    e->st.batch_ops += b->n_ops;
    e->st.batches_in_flight++;
    return b;
}

/* Calls done() for the batch's client ops (err overrides their decision
 * when not ENG_OK) and frees or re-arms the internal ones. */
static void answer_ops(engine *e, eng_batch *b, eng_err err, bool unknown, bool keep_internal)
{
    eng_op *op = b->ops_head, *keep_head = NULL, *keep_tail = NULL;
    size_t kept = 0;
    while (op != NULL) {
        eng_op *next = op->next;
        if (ei_op_internal(op)) {
            if (keep_internal) {
                op->next = NULL;
                if (keep_tail)
                    keep_tail->next = op;
                else
                    keep_head = op;
                keep_tail = op;
                kept++;
            } else {
                ei_internal_op_free(e, op);
                e->st.ops_done++;
            }
        } else {
            op->next = op->prev = NULL;
            op->state_ = OP_IDLE;
            if (err != ENG_OK) {
                op->err = err;
                op->outcome_unknown = unknown;
            }
            e->st.ops_done++;
            ei_op_done(e, op);  /* may free op */
        }
        op = next;
    }
    b->ops_head = keep_head;
    b->ops_tail = keep_tail;
    b->n_ops = kept;
}

/* The batch's decisions are committed: they become the readers' state. */
static void batch_finalize(engine *e, eng_batch *b)
{
    for (size_t i = 0; i < b->n_ow; i++) {
        eng_order *o = b->ow[i].o;
        const eng_order_view *before = &b->ow[i].before;
        o->inflight = NULL;
        if (o->head == o && o->status == ENG_ST_HELD &&
            (before->status != ENG_ST_HELD || before->hold_expires_at_ms != o->hold_expires_at_ms))
            (void)ei_heap_push(e, o->hold_expires_at_ms, o); /* OOM: expired by confirm */
        ei_pp_sync(e, o, false);
        if (o->status == ENG_ST_NONE && before->status != ENG_ST_NONE) {
            o->ghost = true;  /* erased: heap entries may still name it */
        }
        ei_fin_sync(e, o);
    }
    for (size_t i = 0; i < b->n_sw; i++) {
        eng_sku *s = b->sw[i].sku;
        s->inflight = NULL;
        /* What it wrote may be what its waiting reserves wait for. */
        if (b->sw[i].dirty)
            ei_unpark_all(e, s);
        ei_ready_push(e, s);
    }
}

/* The batch's decisions did not happen: every before-image comes back. */
void ei_batch_restore(engine *e, eng_batch *b)
{
    give_back_aside_alerts(e, b);
    for (size_t i = b->n_ow; i-- > 0;) {
        eng_order *o = b->ow[i].o;
        ei_order_from_view(o, &b->ow[i].before);
        o->inflight = NULL;
        if (ei_part_deciding(o))
            ei_dec_link(o);  /* pruned on the way, deciding again */
    }
    /* Trust settings come back unless a later batch moved them again (then
     * that batch's view stands: trust is advice, not an account). */
    for (size_t i = b->n_supw; i-- > 0;) {
        eng_supp *p = b->supw[i].p;
        if (p->last_batch == b->id + 1)
            p->t = b->supw[i].before;
    }
    /* Lines go with their head (an order created by this batch). */
    for (size_t i = 0; i < b->n_ow; i++)
        b->ow[i].head = b->ow[i].o->head == b->ow[i].o;
    for (size_t i = 0; i < b->n_ow; i++)
        if (b->ow[i].head)
            ei_order_maybe_drop(e, b->ow[i].o);
    for (size_t i = 0; i < b->n_sw; i++) {
        struct sku_write *w = &b->sw[i];
        eng_sku *s = w->sku;
        s->c = w->before;
        s->exists = w->before_exists;
        s->mapping = w->before_mapping;
        if (s->map != NULL)
            *s->map = w->before_map;
        s->inflight = NULL;
        /* Waits decided against what did not happen: again. */
        ei_unpark_all(e, s);
        ei_ready_push(e, s);
    }
    /* Holds whose expiry was undone are due again. */
    for (eng_op *op = b->ops_head; op != NULL; op = op->next) {
        if (op->kind != ENG_OP_EXPIRE)
            continue;
        eng_order *o = ei_order_of_op(e, op);
        if (o != NULL && o->status == ENG_ST_HELD)
            (void)ei_heap_push(e, o->hold_expires_at_ms, o);
    }
}

void engine_batch_done(engine *e, eng_batch *b, eng_outcome outcome)
{
    assert(b->state == B_FLIGHT);
    assert(e->st.batches_in_flight > 0);
    switch (outcome) {
    case ENG_COMMITTED:
        e->st.batches_committed++;
        batch_finalize(e, b);
        answer_ops(e, b, ENG_OK, false, false);
        break;
    case ENG_ABORTED:
        e->st.batches_aborted++;
        ei_batch_restore(e, b);
        answer_ops(e, b, ENG_E_UNAVAILABLE, false, false);
        break;
    case ENG_UNKNOWN:
        /* The SKUs stay blocked and the state stays as decided until
         * engine_batch_resolve(); the clients learn now that nobody knows. */
        e->st.batches_unknown++;
        b->state = B_UNKNOWN;
        answer_ops(e, b, ENG_E_UNAVAILABLE, true, true);
        return;
    }
    e->st.batches_in_flight--;
    batch_put(e, b);
}

void engine_batch_resolve(engine *e, eng_batch *b, bool committed)
{
    assert(b->state == B_UNKNOWN);
    if (committed)
        batch_finalize(e, b);
    else
        ei_batch_restore(e, b);
    answer_ops(e, b, ENG_OK, false, false);  /* only internal ops remain */
    e->st.batches_in_flight--;
    batch_put(e, b);
}

void engine_cancel_all(engine *e, eng_err err)
{
    eng_sku *s, *tmp;
    HASH_ITER(hh, e->skus, s, tmp)
        cancel_fifo(e, s, err);
    cancel_fifo(e, &e->global, err);
}

/* Takes the op at a FIFO's head (or the op its ticket stands for, off
 * every FIFO) out of the engine and answers it with err. An expiry's hold
 * comes due again when reheap (its heap entry was popped when it was
 * queued); a supplier report is dropped (the next sync reports again). */
void ei_answer_queued(engine *e, eng_op *first, eng_err err, bool reheap)
{
    eng_op *op = first->tk_parent != NULL ? first->tk_parent : first;
    bool ok = engine_cancel(e, op);
    assert(ok);
    (void)ok;
    if (op->kind == ENG_OP_EXPIRE) {
        eng_order *o = reheap ? ei_order_of_op(e, op) : NULL;
        if (o != NULL && o->status == ENG_ST_HELD)
            (void)ei_heap_push(e, o->hold_expires_at_ms, o);
    }
    if (ei_op_internal(op)) {
        ei_internal_op_free(e, op);
        return;
    }
    op->err = err;
    ei_op_done(e, op);
}

static void cancel_fifo(engine *e, eng_sku *s, eng_err err)
{
    ei_unpark_all(e, s);
    while (s->q_head != NULL)
        ei_answer_queued(e, s->q_head, err, true);
}
