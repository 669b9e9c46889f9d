/* engine_read.c — what the engine answers without a batch: stock and
 * order views, what is due to expire, supplier figures that become ops,
 * the purchase jobs' claims. Pure. */
#include "engine_internal.h"

bool engine_stock_get(const engine *e, const char *sku, eng_stock_view *out)
{
    const eng_sku *s = ei_sku_find(e, sku);
    if (s == NULL)
        return false;
    if (s->inflight != NULL) {
        const struct sku_write *w = s->inflight;
        if (!w->before_exists)
            return false;
        ei_stock_view(e, s, &w->before, w->before_mapping, s->map ? &w->before_map : NULL, out);
        return true;
    }
    if (!s->exists)
        return false;
    ei_stock_view(e, s, &s->c, s->mapping, s->map, out);
    return true;
}

bool engine_knows_sku(const engine *e, const char *sku)
{
    return ei_sku_find(e, sku) != NULL;  /* a SKU set aside included: never reloaded */
}

bool engine_sku_supplier(const engine *e, const char *sku, eng_supplier_map *out)
{
    const eng_sku *s = ei_sku_find(e, sku);
    if (s == NULL)
        return false;
    /* An in-flight batch may change the mapping: readers see the committed one. */
    if (s->inflight != NULL) {
        if (!s->inflight->before_exists || s->inflight->before_mapping != ENG_MAP_OK)
            return false;
        *out = s->inflight->before_map;
        return true;
    }
    if (!s->exists || s->mapping != ENG_MAP_OK || s->map == NULL)
        return false;
    *out = *s->map;
    return true;
}

/* True when the order has a committed record. */
static bool order_committed(const eng_order *h)
{
    if (h->inflight != NULL)
        return h->inflight->before.status != ENG_ST_NONE;
    return h->status != ENG_ST_NONE;
}

bool engine_order_get(const engine *e, const char *order_id, eng_order_view *out)
{
    const eng_order *o = ei_order_find_id(e, order_id);
    if (o == NULL || !order_committed(o))
        return false;
    if (ei_order_is_cart(o))
        ei_order_whole_view(o, true, out);
    else
        ei_line_committed(o, out);
    return true;
}

bool engine_part_get(const engine *e, const char *order_id, int32_t line_no, eng_order_view *out)
{
    if (line_no < 0 || line_no >= ENG_LINES_MAX)
        return false;
    okey key;
    ei_make_key(order_id, line_no, true, &key);
    const eng_order *o = ei_order_find(e, &key);
    if (o == NULL || !o->part || !order_committed(o))
        return false;
    ei_line_committed(o, out);
    return true;
}

size_t engine_order_lines(const engine *e, const char *order_id, eng_line_view *out, size_t max)
{
    const eng_order *h = ei_order_find_id(e, order_id);
    if (h == NULL || !order_committed(h))
        return 0;
    size_t n = 0;
    FOR_LINES((eng_order *)h, l) {
        if (n == max)
            break;
        eng_order_view v;
        ei_line_committed(l, &v);
        ei_view_to_line(&v, &out[n++]);
    }
    return n;
}

/* ------------------------------------------------------------ expiry */

uint32_t engine_expire_due(engine *e, int64_t now_ms)
{
    uint32_t n = ei_park_due(e, now_ms) ? 1 : 0;
    while (e->heap_len > 0 && e->heap[0].at_ms <= now_ms && n < e->lim.expire_per_tick_max) {
        struct heap_item it = e->heap[0];
        eng_order *o = it.o;
        /* Entries go stale when the hold was confirmed or released; the
         * order itself is committed and never freed, so o is valid. */
        bool retry = o->part && it.at_ms > o->hold_expires_at_ms;  /* engine_part_retry */
        if (o->status != ENG_ST_HELD || (o->hold_expires_at_ms != it.at_ms && !retry)) {
            ei_heap_pop(e);
            continue;
        }
        if (o->part) {
            /* Only the coordinator's decision may end a part's hold. */
            ei_heap_pop(e);
            if (!o->part_listed) {
                o->part_listed = true;
                o->due_next = NULL;
                if (e->due_tail)
                    e->due_tail->due_next = o;
                else
                    e->due_head = o;
                e->due_tail = o;
            }
            continue;
        }
        eng_op *op = ei_internal_op_new(e);
        if (op == NULL)
            break;  /* retried next tick */
        ei_heap_pop(e);
        op->kind = ENG_OP_EXPIRE;
        ei_copy_id(op->sku, o->sku->name);
        op->qty = o->qty;
        eng_order_view v;
        ei_order_to_view(o, &v);
        ei_copy_id(op->order_id, v.order_id);
        /* internal: bypasses the queue limits */
        if (ei_queue_on_order(e, op, o, false) != ENG_OK) {
            ei_internal_op_free(e, op);
            (void)ei_heap_push(e, o->hold_expires_at_ms, o);
            break;
        }
        n++;
    }
    return n;
}

bool engine_part_due(engine *e, int64_t now_ms, eng_part_ref *out)
{
    while (e->due_head != NULL) {
        eng_order *o = e->due_head;
        e->due_head = o->due_next;
        if (e->due_head == NULL)
            e->due_tail = NULL;
        o->due_next = NULL;
        o->part_listed = false;
        if (o->status != ENG_ST_HELD || o->hold_expires_at_ms > now_ms)
            continue;  /* settled or re-held meanwhile */
        eng_order_view v;
        ei_order_to_view(o, &v);
        ei_copy_id(out->order_id, v.order_id);
        out->line_no = o->line_no;
        out->part_lines = o->n_lines;
        return true;
    }
    return false;
}

void engine_part_retry(engine *e, const eng_part_ref *p, int64_t at_ms)
{
    okey key;
    ei_make_key(p->order_id, p->line_no, true, &key);
    eng_order *o = ei_order_find(e, &key);
    if (o != NULL && o->part && o->status == ENG_ST_HELD)
        (void)ei_heap_push(e, at_ms, o);  /* OOM: handed out again after a reload */
}

bool engine_supplier_report(engine *e, const char *sku, int64_t reported, int64_t synced_at_ms)
{
    return engine_supplier_report_for(e, sku, NULL, reported, synced_at_ms);
}

/* ------------------------------------------------------------ purchases */

bool engine_purchase_claim(engine *e, eng_purchase *out)
{
    eng_order *o = e->pp_head;
    while (o != NULL && o->claimed)
        o = o->pp_next;
    if (o == NULL)
        return false;
    o->claimed = true;
    e->pp_claimed++;
    memset(out, 0, sizeof(*out));
    eng_order_view v;
    ei_order_to_view(o, &v);
    ei_copy_id(out->order_id, v.order_id);
    out->line_no = o->line_no;
    out->part_lines = o->part ? o->n_lines : 0;
    ei_copy_id(out->sku, o->sku->name);
    out->qty = o->from_supplier;
    out->recovered = o->recovered;
    /* The committed mapping: an in-flight batch may be changing it. */
    const eng_sku *s = o->sku;
    eng_mapping m = s->inflight ? s->inflight->before_mapping : s->mapping;
    out->mapped = m == ENG_MAP_OK && s->map != NULL;
    if (out->mapped)
        out->map = s->inflight ? s->inflight->before_map : *s->map;
    return true;
}

void engine_purchase_unclaim(engine *e, const eng_purchase *p)
{
    eng_order *o = ei_line_find(e, p->order_id, p->line_no, p->part_lines > 1);
    if (o == NULL || !o->in_purchases || !o->claimed)
        return;
    o->claimed = false;
    assert(e->pp_claimed > 0);
    e->pp_claimed--;
}

void engine_purchase_counts(const engine *e, uint32_t *unclaimed, uint32_t *claimed)
{
    *claimed = e->pp_claimed;
    *unclaimed = (uint32_t)(e->st.purchases_pending - e->pp_claimed);
}

int64_t engine_next_expiry_ms(const engine *e, int64_t now_ms)
{
    int64_t at = e->heap_len > 0 ? e->heap[0].at_ms : INT64_MAX;
    for (const eng_sku *s = e->pk_skus; s != NULL; s = s->pk_next)
        for (const eng_op *op = s->pk_head; op != NULL; op = op->next)
            if (op->wait_until_ < at)
                at = op->wait_until_;
    if (at == INT64_MAX)
        return -1;
    return at > now_ms ? at - now_ms : 0;
}
