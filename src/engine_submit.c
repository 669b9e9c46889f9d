/* engine_submit.c — taking requests in: one ticket per SKU FIFO (carts:
 * one in each FIFO they name), tombstones of released parts, cancel
 * (engine.h "Submitting"). Pure. */
#include "engine_internal.h"

/* ------------------------------------------------------------ submit */

eng_op *ei_internal_op_new(engine *e)
{
    eng_op *op = e->free_ops;
    if (op != NULL) {
        e->free_ops = op->next;
    } else if ((op = malloc(sizeof(*op))) == NULL) {
        return NULL;
    }
    memset(op, 0, sizeof(*op));
    return op;
}

void ei_internal_op_free(engine *e, eng_op *op)
{
    op->next = e->free_ops;
    e->free_ops = op;
}

/* A whole order of several lines (not a part): its ops take tickets. */
bool ei_order_is_cart(const eng_order *h)
{
    return h->n_lines > 1 && !h->part;
}

eng_order *ei_order_of_op(const engine *e, const eng_op *op)
{
    okey key;
    ei_op_key(op, &key);
    return ei_order_find(e, &key);
}

/* The line an outcome op names: the order's line line_no (a part or a
 * single order: the head). */
/* Line line_no of order_id: a part (part), a line of a whole order, or a
 * single-SKU order itself. */
eng_order *ei_line_find(const engine *e, const char *order_id, int32_t line_no, bool part)
{
    okey key;
    ei_make_key(order_id, line_no, part, &key);
    eng_order *h = ei_order_find(e, &key);
    if (h == NULL)
        return NULL;
    return ei_order_is_cart(h) ? ei_order_line(h, line_no) : h;
}

eng_order *ei_line_of_op(const engine *e, const eng_op *op)
{
    return ei_line_find(e, op->order_id, op->line_no, op->part_lines > 1);
}

static void tickets_free(engine *e, eng_op *op)
{
    eng_op *t = op->tk_next;
    while (t != NULL) {
        eng_op *next = t->tk_next;
        if (t->state_ == OP_QUEUED)
            ei_fifo_unlink(e, t);
        eng_sku *s = t->sku_p;
        ei_internal_op_free(e, t);
        ei_ready_push(e, s);  /* its FIFO may have waited behind the ticket */
        t = next;
    }
    op->tk_next = NULL;
}

/* Queues op on every SKU in skus[0..n) at once, one ticket each (the
 * arrival order on one loop is a total order, so waiting for the head
 * of every FIFO cannot deadlock). */
static eng_err push_tickets(engine *e, eng_op *op, eng_sku *const *skus, size_t n)
{
    assert(n >= 2 && op->tk_next == NULL);
    eng_op **tail = &op->tk_next;
    for (size_t i = 0; i < n; i++) {
        eng_op *t = ei_internal_op_new(e);
        if (t == NULL) {
            eng_op *u = op->tk_next;
            while (u != NULL) {
                eng_op *next = u->tk_next;
                ei_internal_op_free(e, u);
                u = next;
            }
            op->tk_next = NULL;
            return ENG_E_INTERNAL;
        }
        t->kind = op->kind;
        t->tk_parent = op;
        t->line_no = (int32_t)i;
        *tail = t;
        tail = &t->tk_next;
    }
    size_t i = 0;
    for (eng_op *t = op->tk_next; t != NULL; t = t->tk_next)
        ei_fifo_push(e, skus[i++], t);
    op->sku_p = NULL;
    op->state_ = OP_QUEUED;
    return ENG_OK;
}

static bool room_for(const engine *e, eng_sku *const *skus, size_t n)
{
    if (e->st.queued + n > e->lim.queue_total_max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (skus[i]->q_len + skus[i]->pk_len >= e->lim.queue_per_sku_max)
            return false;
    return true;
}

/* Queues an op on an order: one FIFO, or a ticket on every line's SKU. */
eng_err ei_queue_on_order(engine *e, eng_op *op, eng_order *h, bool limits)
{
    if (!ei_order_is_cart(h)) {
        if (limits && !room_for(e, &h->sku, 1))
            return ENG_E_BUSY;
        ei_fifo_push(e, h->sku, op);
        return ENG_OK;
    }
    eng_sku *skus[ENG_LINES_MAX];
    size_t n = 0;
    FOR_LINES(h, l)
        skus[n++] = l->sku;
    if (limits && !room_for(e, skus, n))
        return ENG_E_BUSY;
    return push_tickets(e, op, skus, n);
}

/* A SKU an order may be placed on: loaded, or being created by a queued
 * or in-flight sku.put. */
static eng_sku *sku_placeable(const engine *e, const char *name)
{
    eng_sku *s = ei_sku_find(e, name);
    if (s == NULL || (!s->exists && s->q_len == 0 && s->inflight == NULL))
        return NULL;
    return s;
}

bool eng_cart_of(const eng_line_in *in, uint32_t n, eng_cart *out, int32_t *bad_line)
{
    assert(n >= 1 && n <= ENG_LINES_MAX);
    int64_t sum[ENG_LINES_MAX] = {0};
    out->n = 0;
    for (uint32_t i = 0; i < n; i++) {
        assert(in[i].qty >= 1 && in[i].qty <= ENG_QTY_MAX);
        uint32_t k = 0;
        while (k < out->n && strcmp(out->line[k].sku, in[i].sku) != 0)
            k++;
        if (k == out->n) {
            out->line[k] = in[i];
            out->line[k].qty = 0;
            out->first[k] = (int32_t)i;
            out->n++;
        }
        sum[k] += in[i].qty;
        if (sum[k] > ENG_QTY_MAX) {
            *bad_line = out->first[k];
            return false;
        }
        out->line[k].qty = (int32_t)sum[k];
    }
    return true;
}

/* The line index of the request that first named line l of the order. */
int32_t ei_op_line_index(const eng_op *op, const eng_order *l)
{
    for (uint32_t i = 0; i < op->n_lines; i++)
        if (strcmp(op->lines[i].sku, l->sku->name) == 0)
            return (int32_t)i;
    return -1;
}

bool ei_cart_matches(const eng_order *h, const eng_cart *c)
{
    if (h->part || h->n_lines != (int32_t)c->n)
        return false;
    size_t i = 0;
    FOR_LINES((eng_order *)h, l) {
        if (i >= c->n || strcmp(l->sku->name, c->line[i].sku) != 0 || l->qty != c->line[i].qty)
            return false;
        i++;
    }
    return i == c->n;
}

static eng_err submit_cart_reserve(engine *e, eng_op *op, const eng_cart *cl)
{
    const eng_cart *c = cl;
    eng_order *h = ei_order_find_id(e, op->order_id);
    eng_sku *skus[ENG_LINES_MAX];
    if (h != NULL) {
        if (!ei_cart_matches(h, c))
            return op->err = ENG_E_CONFLICT;
        size_t n = 0;
        FOR_LINES(h, l)
            skus[n++] = l->sku;
    } else {
        for (size_t i = 0; i < c->n; i++) {
            if ((skus[i] = sku_placeable(e, c->line[i].sku)) == NULL) {
                op->err_line = c->first[i];
                return op->err = ENG_E_UNKNOWN_SKU;
            }
        }
    }
    if (!room_for(e, skus, c->n))
        return op->err = ENG_E_BUSY;
    bool created = false;
    if (h == NULL) {
        okey key;
        ei_make_key(op->order_id, 0, false, &key);
        if ((h = ei_order_new(e, &key, skus[0], c->line[0].qty)) == NULL)
            return op->err = ENG_E_INTERNAL;
        h->n_lines = (int32_t)c->n;
        created = true;
        for (size_t i = 1; i < c->n; i++) {
            if (ei_order_add_line(h, skus[i], c->line[i].qty, (int32_t)i) == NULL) {
                ei_order_free(e, h);
                return op->err = ENG_E_INTERNAL;
            }
        }
    }
    if (push_tickets(e, op, skus, c->n) != ENG_OK) {
        if (created)
            ei_order_free(e, h);
        return op->err = ENG_E_INTERNAL;
    }
    h->pending++;
    return ENG_OK;
}

/* A single-SKU reserve, or a part (part_lines > 1: line line_no). */
static struct tomb *tomb_find(const engine *e, const okey *k, int64_t now_ms)
{
    struct tomb *t = NULL;
    HASH_FIND(hh, e->tombs, k->b, k->len, t);
    return t != NULL && t->until_ms > now_ms ? t : NULL;
}

/* Remembers a part released before it was placed (see struct tomb). */
static void tomb_add(engine *e, const okey *k, int64_t now_ms)
{
    struct tomb *t = NULL;
    HASH_FIND(hh, e->tombs, k->b, k->len, t);
    if (t != NULL) {
        t->until_ms = now_ms + ENG_TOMB_MS;
        return;
    }
    if (e->tomb_ring == NULL &&
        (e->tomb_ring = calloc(ENG_TOMBS_MAX, sizeof(*e->tomb_ring))) == NULL)
        return;  /* OOM: the hold TTL still frees the part */
    struct tomb *old = e->tomb_ring[e->tomb_next];
    if (old != NULL) {
        HASH_DEL(e->tombs, old);
        free(old);
        e->n_tombs--;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        e->tomb_ring[e->tomb_next] = NULL;
        return;
    }
    memcpy(t->key, k->b, k->len + 1);
    t->key_len = (uint8_t)k->len;
    t->until_ms = now_ms + ENG_TOMB_MS;
    HASH_ADD(hh, e->tombs, key, t->key_len, t);
    e->tomb_ring[e->tomb_next] = t;
    e->tomb_next = (e->tomb_next + 1) % ENG_TOMBS_MAX;
    e->n_tombs++;
}

static eng_err submit_reserve(engine *e, eng_op *op, int64_t now_ms)
{
    assert(op->qty >= 1 && op->qty <= ENG_QTY_MAX);
    okey key;
    ei_op_key(op, &key);
    int32_t n_lines = op->part_lines > 1 ? op->part_lines : 1;
    eng_order *o = ei_order_find(e, &key);
    eng_sku *s;
    if (o == NULL && n_lines > 1 && tomb_find(e, &key, now_ms) != NULL)
        return op->err = ENG_E_EXPIRED;  /* its order was aborted before it arrived */
    if (o != NULL) {
        if (strcmp(o->sku->name, op->sku) != 0 || o->qty != op->qty || o->n_lines != n_lines ||
            o->line_no != (n_lines > 1 ? op->line_no : 0))
            return op->err = ENG_E_CONFLICT;
        s = o->sku;
    } else if ((s = sku_placeable(e, op->sku)) == NULL) {
        op->err_line = op->n_lines > 0 ? 0 : -1;
        return op->err = ENG_E_UNKNOWN_SKU;
    }
    if (!room_for(e, &s, 1))
        return op->err = ENG_E_BUSY;
    if (o == NULL) {
        if ((o = ei_order_new(e, &key, s, op->qty)) == NULL)
            return op->err = ENG_E_INTERNAL;
        if (n_lines > 1) {
            o->part = true;
            o->n_lines = n_lines;
            o->line_no = op->line_no;
        }
    }
    o->pending++;
    ei_fifo_push(e, s, op);
    return ENG_OK;
}

eng_err engine_submit(engine *e, eng_op *op, int64_t now_ms)
{
    assert(op->state_ == OP_IDLE);
    assert(!ei_op_internal(op) && op->tk_next == NULL);
    op->err = ENG_OK;
    op->outcome_unknown = false;
    op->err_line = -1;
    op->err_deciding = false;
    op->err_aside[0] = '\0';
    op->park_ = op->wait_over_ = op->waited_ = false;
    e->st.ops_submitted++;
    assert(op->part_lines == 0 ||
           (op->part_lines > 1 && op->part_lines <= ENG_LINES_MAX && op->line_no >= 0 &&
            op->line_no < op->part_lines));
    assert(op->wait_ms >= 0 && op->wait_ms <= ENG_WAIT_MS_MAX);
    /* Waiting and erasing are for parts only (the caller's syntax check). */
    assert((op->wait_ms == 0 && op->attempt == 0) ||
           (op->part_lines > 1 && (op->kind == ENG_OP_RESERVE || op->kind == ENG_OP_RELEASE)));
    assert(!op->erase || op->kind == ENG_OP_RELEASE);
    assert(!op->checked || op->kind == ENG_OP_CONFIRM);
    op->checking = false;
    op->wait_until_ = now_ms + op->wait_ms;
    /* Rows that could not be trusted at load: refused, never guessed at. */
    if (op->kind != ENG_OP_SUPPLIER_PUT && engine_aside_of(e, op, op->err_aside))
        return op->err = ENG_E_UNAVAILABLE;

    eng_sku *s = NULL;
    eng_order *o = NULL;
    switch (op->kind) {
    case ENG_OP_RESERVE:
        if (op->n_lines > 0 && op->part_lines == 0) {
            eng_cart c;
            if (!eng_cart_of(op->lines, op->n_lines, &c, &op->err_line))
                return op->err = ENG_E_INVALID;
            if (c.n > 1)
                return submit_cart_reserve(e, op, &c);
            /* One SKU, however many lines: a plain order. */
            ei_copy_id(op->sku, c.line[0].sku);
            op->qty = c.line[0].qty;
        }
        return submit_reserve(e, op, now_ms);
    case ENG_OP_CONFIRM:
    case ENG_OP_RELEASE:
    case ENG_OP_SHIP:
        o = ei_order_of_op(e, op);
        /* A part released before it was placed; an unconditional erase
         * counts a part erased earlier (a ghost) as not placed too. */
        if (op->kind == ENG_OP_RELEASE && op->part_lines > 1 &&
            (o == NULL || (o->ghost && o->status == ENG_ST_NONE && o->pending == 0 &&
                           !ei_order_inflight(o) && op->erase && op->attempt == 0))) {
            okey key;
            ei_op_key(op, &key);
            tomb_add(e, &key, now_ms);
        }
        /* A placeholder with reserves queued or in flight: wait behind
         * them in the same FIFO, so a pipelined reserve+confirm works. */
        if (o == NULL || (o->status == ENG_ST_NONE && !ei_order_inflight(o) && o->pending == 0))
            return op->err = ENG_E_NOT_FOUND;
        /* A part answers only to ops that name it as a part. */
        if (o->part != (op->part_lines > 1))
            return op->err = o->part ? ENG_E_INVALID : ENG_E_NOT_FOUND;
        if ((op->decided && op->kind != ENG_OP_CONFIRM) ||
            ((op->as_expired || op->as_failed) && op->kind != ENG_OP_RELEASE) ||
            (op->as_expired && op->as_failed) || (op->erase && (op->as_expired || op->as_failed)))
            return op->err = ENG_E_INVALID;
        return op->err = ei_queue_on_order(e, op, o, true);
    case ENG_OP_SKU_PUT:
        s = ei_sku_find(e, op->sku);
        if (s == NULL && (s = ei_sku_new(e, op->sku)) == NULL)
            return op->err = ENG_E_INTERNAL;
        break;
    case ENG_OP_ADJUST:
        s = ei_sku_find(e, op->sku);
        if (s == NULL || (!s->exists && s->q_len == 0 && s->inflight == NULL))
            return op->err = ENG_E_UNKNOWN_SKU;
        break;
    case ENG_OP_PURCHASED:
    case ENG_OP_PURCHASE_FAILED: {
        o = ei_line_of_op(e, op);
        if (o == NULL || o->status == ENG_ST_NONE)
            return op->err = ENG_E_NOT_FOUND;
        /* The worker holds a claim it must be able to end: no queue limit.
         * A failure fails the whole order: it waits for every line, and
         * for a part, for every other part of its order held here. */
        if (op->kind == ENG_OP_PURCHASE_FAILED && o->part) {
            eng_sku *skus[ENG_LINES_MAX];
            size_t n = 0;
            skus[n++] = o->sku;
            for (int32_t k = 0; k < o->n_lines; k++) {
                eng_order *sib = k == o->line_no ? NULL : ei_line_find(e, op->order_id, k, true);
                if (sib != NULL && sib->part && sib->n_lines == o->n_lines &&
                    (sib->status == ENG_ST_HELD || sib->status == ENG_ST_CONFIRMED))
                    skus[n++] = sib->sku;
            }
            if (n == 1) {
                ei_fifo_push(e, o->sku, op);
                return ENG_OK;
            }
            return op->err = push_tickets(e, op, skus, n);
        }
        if (op->kind == ENG_OP_PURCHASE_FAILED)
            return op->err = ei_queue_on_order(e, op, o->head, false);
        ei_fifo_push(e, o->sku, op);
        return ENG_OK;
    }
    case ENG_OP_SUPPLIER_PUT:
        if (!op->has_trust || !eng_trust_valid(&op->trust) || op->supplier.supplier_id[0] == '\0')
            return op->err = ENG_E_INVALID;
        s = &e->global;
        break;
    default:
        return op->err = ENG_E_INTERNAL;
    }
    if (!room_for(e, &s, 1))
        return op->err = ENG_E_BUSY;
    ei_fifo_push(e, s, op);
    return ENG_OK;
}

/* Drops a placeholder order nobody waits for any more. */
void ei_order_maybe_drop(engine *e, eng_order *o)
{
    o = o->head;
    /* A ghost stays: expiry heap entries may point at it. */
    if (o->status == ENG_ST_NONE && o->pending == 0 && !ei_order_inflight(o) && !o->ghost)
        ei_order_free(e, o);
}

bool engine_cancel(engine *e, eng_op *op)
{
    if (op->state_ == OP_PARKED) {
        ei_park_unlink(e, op);
    } else if (op->state_ != OP_QUEUED) {
        return false;
    } else if (op->tk_next != NULL) {
        tickets_free(e, op);
        op->state_ = OP_IDLE;
    } else {
        ei_fifo_unlink(e, op);
    }
    if (op->kind == ENG_OP_RESERVE) {
        eng_order *o = ei_order_of_op(e, op);
        assert(o != NULL && o->pending > 0);
        o->pending--;
        ei_order_maybe_drop(e, o);
    }
    e->st.ops_done++;
    return true;
}
